-- Connections and variables (issue #12), as Airflow's `connection` and `variable` tables.
-- Passwords, extras and variable values are Fernet tokens when their `is_*encrypted` flag is
-- set (the engine encrypts with UPIFLOW_FERNET_KEY; without a key they are stored as given
-- and flagged so, as Airflow does). This table never sees a key.

-- Airflow's connection id rule (sanitize_conn_id), in ASCII: the same check as
-- upiflow_engine::secrets::valid_conn_id, so no other writer can store an id the engine
-- would refuse (nor one an environment variable name could not spell).
CREATE TABLE connections (
    conn_id            text PRIMARY KEY CHECK (conn_id ~ '^[A-Za-z0-9_#!().:/\\-]{1,250}$'),
    conn_type          text NOT NULL CHECK (conn_type <> ''),
    description        text,
    host               text,
    schema             text,
    login              text,
    -- A Fernet token if is_encrypted, else the password itself.
    password           text,
    port               integer CHECK (port BETWEEN 1 AND 65535),
    -- A JSON object's text, or its Fernet token if is_extra_encrypted.
    extra              text,
    is_encrypted       boolean NOT NULL DEFAULT false,
    is_extra_encrypted boolean NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Airflow keeps a variable's value as text (JSON values as their text).
CREATE TABLE variables (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 250),
    -- A Fernet token if is_encrypted, else the value itself.
    val          text NOT NULL,
    description  text,
    is_encrypted boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
