-- #14 runs2: who triggered a run (Airflow's `DagRun.triggering_user_name`): the signed-in
-- user of a manual trigger through the API; NULL for the runs the scheduler or a backfill
-- creates.
ALTER TABLE dag_runs ADD COLUMN triggering_user_name text;
