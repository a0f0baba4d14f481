-- Manual state changes (issue #11): marking task instances and runs, as Airflow's "mark".

-- A try that was running when its task instance was marked is stopped by its worker and
-- closed by the mark itself, with this outcome (its error says which state and who).
-- Not used in this transaction, so adding the value here is allowed.
ALTER TYPE try_outcome ADD VALUE IF NOT EXISTS 'marked';

-- Airflow 3's notes on runs and task instances (its `dag_run_note`/`task_instance_note`
-- content, at most 1000 characters as Airflow's API allows); who wrote it last is kept too.
ALTER TABLE dag_runs
    ADD COLUMN note text CHECK (char_length(note) <= 1000),
    ADD COLUMN note_user text;
ALTER TABLE task_instances
    ADD COLUMN note text CHECK (char_length(note) <= 1000),
    ADD COLUMN note_user text;
