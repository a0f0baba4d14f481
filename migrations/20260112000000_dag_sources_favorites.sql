-- DAG sources and favourites (issue #14, part "dags2").

-- The DAG file's text as the sync read it when it recorded the version (Airflow's
-- `dag_code`, served by `GET /api/v2/dagSources/{dag_id}`). NULL for versions stored before
-- this migration, and for versions registered from a definition that came without its file
-- (no text is ever invented for them).
ALTER TABLE dag_versions ADD COLUMN source text;

-- Each user's favourite DAGs (Airflow 3.1's `dag_favorite`). The owner is a user's name or,
-- with `api_key`, an API key's name (the two name spaces are apart, as in the audit log).
-- Deleting the DAG deletes its favourites.
CREATE TABLE dag_favorites (
    owner      text NOT NULL,
    api_key    boolean NOT NULL DEFAULT false,
    dag_id     text NOT NULL REFERENCES dags (dag_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, api_key, dag_id)
);
