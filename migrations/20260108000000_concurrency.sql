-- Concurrency control (issue #11): pools, priority and per-DAG/per-task limits, as in Airflow.

-- A pool limits how many slots the task instances in it may hold at once, across every
-- worker (Airflow's `slot_pool`). `default_pool` always exists (128 slots, Airflow's
-- `default_pool_task_slot_count`); `upiflow pools set default_pool N` resizes it.
CREATE TABLE pools (
    name             text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]+$' AND length(name) <= 256),
    slots            integer NOT NULL CHECK (slots >= 0),
    description      text,
    -- Airflow's flag; upiflow has no deferred state, so it is stored and reported only.
    include_deferred boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pools (name, slots, description) VALUES ('default_pool', 128, 'Default pool');

-- What the claim orders and limits by, fixed when the task instance is created from its DAG
-- version (as Airflow stores them on the task instance): the pool and the slots a try takes,
-- the effective priority (its weight rule applied), the task's own cap across runs.
ALTER TABLE task_instances
    ADD COLUMN pool                   text NOT NULL DEFAULT 'default_pool',
    ADD COLUMN pool_slots             integer NOT NULL DEFAULT 1 CHECK (pool_slots >= 1),
    ADD COLUMN priority_weight        integer NOT NULL DEFAULT 1,
    ADD COLUMN max_active_tis_per_dag integer CHECK (max_active_tis_per_dag >= 1);
-- The claim's order, kept on the row so the claim walks an index and stops at its limit
-- instead of sorting every runnable row: whether the run belongs to a backfill that yields to
-- scheduled runs, the effective weight, the run's logical date (set by `runs::create`).
ALTER TABLE task_instances
    ADD COLUMN yields       boolean NOT NULL DEFAULT false,
    ADD COLUMN logical_date timestamptz;
UPDATE task_instances ti SET logical_date = r.logical_date, yields = r.backfill_id IS NOT NULL
FROM dag_runs r WHERE r.id = ti.run_pk;
CREATE INDEX task_instances_claim_order
    ON task_instances (yields, priority_weight DESC, logical_date, id)
    WHERE state IN ('scheduled', 'up_for_retry');
-- The claim's counts read only running rows.
CREATE INDEX task_instances_running_by_pool ON task_instances (pool) WHERE state = 'running';

-- Airflow 3's max_active_tasks: task instances of one run running at once.
ALTER TABLE dags ADD COLUMN max_active_tasks integer NOT NULL DEFAULT 16
    CHECK (max_active_tasks >= 1);

-- Backfill runs are limited by their backfill alone (its max_active_runs, else the DAG's),
-- never by nor against the scheduled runs' max_active_runs, as in Airflow 3. Their tasks come
-- after those of other runs in the claim unless the backfill does not yield.
ALTER TABLE backfills ADD COLUMN yield_to_scheduled boolean NOT NULL DEFAULT true;
