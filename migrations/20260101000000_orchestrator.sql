-- Orchestrator metadata: DAGs and their versions, runs, task instances, tries and their logs.
-- States are Postgres enums so a typo is an error, not a new state.

CREATE TYPE run_state AS ENUM ('queued', 'running', 'success', 'failed');
CREATE TYPE run_type AS ENUM ('scheduled', 'manual', 'backfill');
-- NULL in task_instances.state means "no status yet" (waiting for upstream), as in Airflow.
CREATE TYPE ti_state AS ENUM (
    'scheduled', 'queued', 'running', 'success', 'failed',
    'up_for_retry', 'upstream_failed', 'skipped');
CREATE TYPE try_outcome AS ENUM ('success', 'failed', 'timed_out', 'zombie');
CREATE TYPE log_stream AS ENUM ('system', 'stdout', 'stderr');

CREATE TABLE dags (
    dag_id          text PRIMARY KEY,
    is_paused       boolean NOT NULL DEFAULT false,
    fileloc         text,
    -- The version the files currently define; runs keep the version they were created with.
    latest_hash     text,
    description     text,
    schedule        text,
    timezone        text,
    max_active_runs integer NOT NULL DEFAULT 16,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every distinct definition a DAG ever had, content-addressed: workers execute the exact
-- version a run was created with, whatever the files say now.
CREATE TABLE dag_versions (
    dag_id     text NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    hash       text NOT NULL,
    spec       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dag_id, hash)
);

CREATE TABLE dag_runs (
    id                  bigserial PRIMARY KEY,
    dag_id              text NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    run_id              text NOT NULL,
    logical_date        timestamptz NOT NULL,
    data_interval_start timestamptz NOT NULL,
    data_interval_end   timestamptz NOT NULL,
    run_type            run_type NOT NULL,
    state               run_state NOT NULL DEFAULT 'queued',
    conf                jsonb NOT NULL DEFAULT '{}',
    dag_hash            text NOT NULL,
    queued_at           timestamptz NOT NULL DEFAULT now(),
    start_date          timestamptz,
    end_date            timestamptz,
    FOREIGN KEY (dag_id, dag_hash) REFERENCES dag_versions (dag_id, hash),
    -- One run per id and one per logical date: creating a run twice is a no-op, not a race.
    UNIQUE (dag_id, run_id),
    UNIQUE (dag_id, logical_date),
    CHECK (data_interval_start <= data_interval_end)
);
CREATE INDEX dag_runs_active ON dag_runs (dag_id, state) WHERE state IN ('queued', 'running');

CREATE TABLE task_instances (
    id            bigserial PRIMARY KEY,
    run_pk        bigint NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id        text NOT NULL,
    run_id        text NOT NULL,
    task_id       text NOT NULL,
    state         ti_state,
    -- Tries started so far; the running try is number try_number.
    try_number    integer NOT NULL DEFAULT 0,
    max_tries     integer NOT NULL,
    next_retry_at timestamptz,
    worker        text,
    queued_at     timestamptz,
    start_date    timestamptz,
    end_date      timestamptz,
    UNIQUE (run_pk, task_id),
    CHECK (state <> 'up_for_retry' OR next_retry_at IS NOT NULL)
);
-- The claim query reads only runnable rows; keep that index small.
CREATE INDEX task_instances_runnable ON task_instances (id)
    WHERE state IN ('scheduled', 'up_for_retry');
CREATE INDEX task_instances_running ON task_instances (worker) WHERE state = 'running';
CREATE INDEX task_instances_by_dag_task ON task_instances (dag_id, task_id);

CREATE TABLE task_tries (
    id          bigserial PRIMARY KEY,
    ti_id       bigint NOT NULL REFERENCES task_instances (id) ON DELETE CASCADE,
    try_number  integer NOT NULL,
    worker      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    outcome     try_outcome,
    error       text,
    UNIQUE (ti_id, try_number)
);

CREATE TABLE task_logs (
    id     bigserial PRIMARY KEY,
    try_id bigint NOT NULL REFERENCES task_tries (id) ON DELETE CASCADE,
    at     timestamptz NOT NULL,
    stream log_stream NOT NULL,
    line   text NOT NULL
);
CREATE INDEX task_logs_by_try ON task_logs (try_id, id);

CREATE TABLE workers (
    worker_id    text PRIMARY KEY,
    hostname     text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
