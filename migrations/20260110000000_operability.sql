-- Operability: the notification outbox, run deadlines and the audit log (issue #13).

-- The outbox. A row is written in the same transaction as the state change that caused it
-- (a try's failure or retry, a success, a missed deadline), then delivered by any scheduler,
-- at least once, retried with backoff. `id` is the stable id a receiver de-duplicates on;
-- `dedupe_key` makes enqueueing the same cause twice a no-op.
CREATE TYPE notification_event AS ENUM ('on_failure', 'on_retry', 'on_success', 'on_deadline_miss');

CREATE TABLE notifications (
    id              uuid PRIMARY KEY,
    dedupe_key      text NOT NULL UNIQUE,
    event           notification_event NOT NULL,
    -- The notifier's name and its definition as the run's DAG version had it (kind, url, ...).
    notifier        text NOT NULL,
    spec            jsonb NOT NULL,
    dag_id          text NOT NULL,
    run_id          text NOT NULL,
    task_id         text,
    try_number      integer,
    -- The message as receivers get it (dag, run, task, try, error, logical date, link).
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    -- Set when the attempts are used up; the row stays for the record.
    gave_up_at      timestamptz,
    last_error      text
);
CREATE INDEX notifications_due ON notifications (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX notifications_by_run ON notifications (dag_id, run_id);

-- Every delivery attempt, kept for the record.
CREATE TABLE notification_attempts (
    id              bigserial PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    ok              boolean NOT NULL,
    -- The receiver's answer (HTTP status, SMTP reply, exit code) or why there was none.
    detail          text,
    UNIQUE (notification_id, attempt)
);

-- Deadlines (Airflow 3.1's deadline alerts): the time a run must be finished by, computed when
-- the run is created from the DAG's `deadline`; `deadline_missed_at` is set once, by the
-- scheduler that noticed, in the transaction that enqueues `on_deadline_miss`.
ALTER TABLE dag_runs ADD COLUMN deadline_at timestamptz;
ALTER TABLE dag_runs ADD COLUMN deadline_missed_at timestamptz;
CREATE INDEX dag_runs_deadline_due ON dag_runs (deadline_at)
    WHERE deadline_at IS NOT NULL AND deadline_missed_at IS NULL AND state IN ('queued', 'running');

-- The audit log (Airflow's `log` table, served as /api/v2/eventLogs): every change through the
-- CLI, the API or the UI, and every sign-in, with who, what, which DAG/run/task and from where.
CREATE TABLE event_log (
    id           bigserial PRIMARY KEY,
    dttm         timestamptz NOT NULL DEFAULT now(),
    -- What happened: trigger, clear, mark, pause, backfill, variable.set, login, ...
    event        text NOT NULL,
    -- Who: the signed-in user, or the operating-system user for the CLI.
    owner        text,
    dag_id       text,
    run_id       text,
    task_id      text,
    try_number   integer,
    logical_date timestamptz,
    -- Where from: cli, api or ui, and the client's address.
    source       text NOT NULL,
    remote_addr  text,
    -- success, refused (not allowed, or a failed sign-in) or failed (allowed, but it failed).
    outcome      text NOT NULL DEFAULT 'success',
    extra        jsonb
);
CREATE INDEX event_log_dttm ON event_log (dttm);
CREATE INDEX event_log_by_dag ON event_log (dag_id, dttm);

