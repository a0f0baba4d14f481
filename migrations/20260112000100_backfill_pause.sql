-- Backfills pause, unpause and cancel (#14 ops2), as Airflow 3's do: a paused backfill starts
-- no more of its queued runs until unpaused (`store::runs::start_oldest_queued` skips them);
-- cancelling pauses it, fails its queued runs, leaves running ones to finish and completes it.
-- `updated_at` is when one of these last changed it (NULL: never since it was created).
ALTER TABLE backfills ADD COLUMN is_paused boolean NOT NULL DEFAULT false;
ALTER TABLE backfills ADD COLUMN updated_at timestamptz;
