-- Security (#17): Airflow's four roles, revocable tokens and sessions, API keys for
-- machines, and sign-in throttling shared by every web process.

-- Airflow's roles, from most to least: admin, op, user, viewer. (The new values are not used
-- in this migration's transaction, as Postgres requires.)
ALTER TYPE user_role ADD VALUE IF NOT EXISTS 'op' BEFORE 'viewer';
ALTER TYPE user_role ADD VALUE IF NOT EXISTS 'user' BEFORE 'viewer';

-- Every token and session carries the version it was issued under; bumping it (a password
-- or role change, a logout) refuses all of them at once, in every process.
ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;

-- Long-lived, named, revocable keys for machines (`upiflow tokens create`). Only a SHA-256
-- of the key is kept: the key is 32 random bytes, so a slow hash adds nothing, and a request
-- costs one lookup of the unique index on `key_hash`. Revoked rows stay, as the history of
-- who held which name; the name rule is the web's (`upiflow_web::api_keys`), the CHECK a net.
CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    role         user_role NOT NULL,
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- The operating-system user who ran `upiflow tokens create`.
    created_by   text,
    -- Updated at most once a minute (not on every request), so a scrape stays a read.
    last_used_at timestamptz,
    -- `--expires-in`; NULL: until revoked.
    expires_at   timestamptz CHECK (expires_at > created_at),
    revoked_at   timestamptz
);
-- One live key per name; a revoked name may be used again.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Failed sign-ins, by what they are counted against: `user:NAME` and `addr:IP` (see
-- web/src/throttle.rs). A sign-in inserts its rows before the password is checked (so
-- concurrent attempts cannot all slip under the limit) and deletes them if it succeeds.
-- The clock is the database's, so every web process counts the same window. Rows older than
-- the window are deleted as new ones come in, so the table holds about one window's worth.
CREATE TABLE sign_in_failures (
    id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,
    at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The throttle's check: the newest failures of one key.
CREATE INDEX sign_in_failures_key_at ON sign_in_failures (key, at);
-- The sweep of rows past the window, whatever their key.
CREATE INDEX sign_in_failures_at ON sign_in_failures (at);
