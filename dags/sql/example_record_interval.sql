-- Records which interval ran; an idempotent upsert keyed by the run's day.
CREATE TABLE IF NOT EXISTS example_intervals (
    ds          date PRIMARY KEY,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    greeting    text NOT NULL,
    run_id      text NOT NULL
);

INSERT INTO example_intervals (ds, starts_at, ends_at, greeting, run_id)
VALUES (:ds, :data_interval_start, :data_interval_end, :params.greeting, :run_id)
ON CONFLICT (ds) DO UPDATE
SET starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
    greeting = EXCLUDED.greeting, run_id = EXCLUDED.run_id;
