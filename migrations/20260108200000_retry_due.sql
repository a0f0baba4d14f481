-- When the earliest pending retry is due: the claim reads it with every look (to know when
-- to look again), so it must not walk every runnable task instance to find it.
CREATE INDEX task_instances_retry_due ON task_instances (next_retry_at)
    WHERE state = 'up_for_retry';
