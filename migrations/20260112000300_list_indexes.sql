-- #14 bench_api: the API's task-instance lists filter a DAG's instances by state, with or
-- without a task (Airflow's `ti_dag_state` and `ti_state_lkp` indexes serve the same
-- queries). The state joins the (dag_id, task_id) index, which it replaces: a lookup by DAG
-- and task reads the same prefix.
DROP INDEX task_instances_by_dag_task;
CREATE INDEX task_instances_by_dag_task_state ON task_instances (dag_id, task_id, state);
CREATE INDEX task_instances_by_dag_state ON task_instances (dag_id, state);
