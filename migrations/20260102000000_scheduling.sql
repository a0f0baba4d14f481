-- Scheduling in time: the scheduler's cursor per DAG, the ledger of intervals that were not
-- run, backfills as records, and the errors of DAG files that do not parse.

-- Logical date of the next interval the scheduler will create; NULL before the first.
ALTER TABLE dags ADD COLUMN next_dagrun timestamptz;
-- When the DAG was last unpaused: intervals that ended before it were skipped while paused.
ALTER TABLE dags ADD COLUMN unpaused_at timestamptz;
-- False once its file is gone from the DAGs folder; an invalid file keeps its DAG active.
ALTER TABLE dags ADD COLUMN is_active boolean NOT NULL DEFAULT true;

CREATE TYPE missed_reason AS ENUM ('catchup_disabled', 'paused');

-- Nothing vanishes silently: intervals the scheduler skipped, for listing and backfilling.
CREATE TABLE missed_intervals (
    dag_id              text NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    logical_date        timestamptz NOT NULL,
    data_interval_start timestamptz NOT NULL,
    data_interval_end   timestamptz NOT NULL,
    reason              missed_reason NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, logical_date)
);

CREATE TYPE backfill_state AS ENUM ('running', 'success', 'failed');

CREATE TABLE backfills (
    id           bigserial PRIMARY KEY,
    dag_id       text NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    -- Runs whose logical date lies in [from_date, to_date], both inclusive.
    from_date    timestamptz NOT NULL,
    to_date      timestamptz NOT NULL,
    rerun_failed boolean NOT NULL DEFAULT false,
    reset        boolean NOT NULL DEFAULT false,
    created_by   text NOT NULL,
    state        backfill_state NOT NULL DEFAULT 'running',
    total        integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CHECK (from_date <= to_date)
);

ALTER TABLE dag_runs ADD COLUMN backfill_id bigint REFERENCES backfills (id) ON DELETE SET NULL;
CREATE INDEX dag_runs_by_backfill ON dag_runs (backfill_id) WHERE backfill_id IS NOT NULL;

CREATE TABLE import_errors (
    fileloc    text NOT NULL,
    line       integer NOT NULL,
    message    text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX import_errors_by_file ON import_errors (fileloc);
