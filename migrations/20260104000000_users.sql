-- Users of the web UI and API. Nothing is open by default: every request authenticates.
CREATE TYPE user_role AS ENUM ('admin', 'viewer');

CREATE TABLE users (
    username      text PRIMARY KEY,
    -- argon2id PHC string; the password itself is never stored.
    password_hash text NOT NULL,
    role          user_role NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The key that signs API tokens, made once per database so every web process agrees.
CREATE TABLE web_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
