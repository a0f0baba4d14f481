-- A backfill's own limit on how many of its runs run at once (Airflow 3's
-- BackfillPostBody.max_active_runs). NULL: only the DAG's max_active_runs applies. Backfill
-- runs still count against the DAG's limit too, so the tighter of the two holds.
ALTER TABLE backfills ADD COLUMN max_active_runs integer
    CHECK (max_active_runs IS NULL OR max_active_runs >= 1);
