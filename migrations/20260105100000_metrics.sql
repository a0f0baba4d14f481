-- What the payments dashboard and /metrics read: exact rollups of the clean transactions,
-- the scheduler's loop times, a cumulative histogram of task tries, and a few indexes for
-- cheap reads.

-- Rollups of clean_upi_transactions (one row per transaction, latest event wins), kept
-- exact by statement-level triggers: every insert, upsert, update or delete of clean rows
-- adds the new row versions and subtracts the old ones in the same transaction, so a
-- transaction whose status (or minute, bank, merchant, amount) changes moves its count.
-- Minute and hour buckets are instants; hours and days are Asia/Kolkata's (the days of
-- the daily_upi_aggregation DAG).
CREATE TABLE upi_rollup_minute (
    minute     timestamptz NOT NULL,
    status     text NOT NULL,
    payer_bank text NOT NULL,
    txns       bigint NOT NULL,
    amount     numeric(18, 2) NOT NULL,
    PRIMARY KEY (minute, status, payer_bank)
);

CREATE TABLE upi_rollup_hour (
    hour       timestamptz NOT NULL,   -- start of an Asia/Kolkata hour
    status     text NOT NULL,
    payer_bank text NOT NULL,
    txns       bigint NOT NULL,
    amount     numeric(18, 2) NOT NULL,
    PRIMARY KEY (hour, status, payer_bank)
);

CREATE TABLE upi_rollup_merchant_day (
    day      date NOT NULL,            -- Asia/Kolkata date
    merchant text NOT NULL,            -- the payee VPA, as in merchant_upi_summary
    txns     bigint NOT NULL,
    amount   numeric(18, 2) NOT NULL,
    PRIMARY KEY (day, merchant)
);

-- Transition tables hold exactly the row versions a statement inserted, replaced or
-- deleted (for INSERT ... ON CONFLICT DO UPDATE: the inserted rows in the INSERT trigger's
-- new table, the updated ones in the UPDATE trigger's old and new tables). `d` below is
-- (event_time, status, payer, payee, amount, n) with n = +1 for a new row version and -1
-- for an old one. Net-zero changes (an update that moves nothing) touch no rollup row.
--
-- One transaction at a time maintains the rollups: the EXCLUSIVE lock (readers are not
-- blocked) is taken first and held to commit. Writers of live events all update the rows
-- of the current minute and hour anyway, so this costs no parallelism, and it rules out
-- deadlocks: an INSERT ... ON CONFLICT DO UPDATE fires both the INSERT and the UPDATE
-- trigger, two sorted upserts whose lock orders could otherwise interleave with another
-- writer's.
CREATE FUNCTION upi_rollup_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    src text := CASE TG_OP
        WHEN 'INSERT' THEN
            'SELECT event_time, status, payer, payee, amount, 1 AS n FROM upi_new_rows'
        WHEN 'DELETE' THEN
            'SELECT event_time, status, payer, payee, amount, -1 AS n FROM upi_old_rows'
        ELSE
            'SELECT event_time, status, payer, payee, amount, 1 AS n FROM upi_new_rows
             UNION ALL
             SELECT event_time, status, payer, payee, amount, -1 AS n FROM upi_old_rows'
        END;
BEGIN
    LOCK TABLE upi_rollup_minute, upi_rollup_hour, upi_rollup_merchant_day IN EXCLUSIVE MODE;
    EXECUTE format($q$
        INSERT INTO upi_rollup_minute AS r (minute, status, payer_bank, txns, amount)
        SELECT date_trunc('minute', event_time), status, split_part(payer, '@', 2),
               sum(n), sum(n * amount)
        FROM (%s) d
        GROUP BY 1, 2, 3
        HAVING sum(n) <> 0 OR sum(n * amount) <> 0
        ON CONFLICT (minute, status, payer_bank) DO UPDATE
        SET txns = r.txns + EXCLUDED.txns, amount = r.amount + EXCLUDED.amount$q$, src);
    EXECUTE format($q$
        INSERT INTO upi_rollup_hour AS r (hour, status, payer_bank, txns, amount)
        SELECT date_trunc('hour', event_time, 'Asia/Kolkata'), status,
               split_part(payer, '@', 2), sum(n), sum(n * amount)
        FROM (%s) d
        GROUP BY 1, 2, 3
        HAVING sum(n) <> 0 OR sum(n * amount) <> 0
        ON CONFLICT (hour, status, payer_bank) DO UPDATE
        SET txns = r.txns + EXCLUDED.txns, amount = r.amount + EXCLUDED.amount$q$, src);
    EXECUTE format($q$
        INSERT INTO upi_rollup_merchant_day AS r (day, merchant, txns, amount)
        SELECT (event_time AT TIME ZONE 'Asia/Kolkata')::date, payee, sum(n), sum(n * amount)
        FROM (%s) d
        GROUP BY 1, 2
        HAVING sum(n) <> 0 OR sum(n * amount) <> 0
        ON CONFLICT (day, merchant) DO UPDATE
        SET txns = r.txns + EXCLUDED.txns, amount = r.amount + EXCLUDED.amount$q$, src);
    RETURN NULL;
END
$fn$;

CREATE FUNCTION upi_rollup_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    TRUNCATE upi_rollup_minute, upi_rollup_hour, upi_rollup_merchant_day;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER upi_rollup_insert AFTER INSERT ON clean_upi_transactions
    REFERENCING NEW TABLE AS upi_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION upi_rollup_apply();
CREATE TRIGGER upi_rollup_update AFTER UPDATE ON clean_upi_transactions
    REFERENCING OLD TABLE AS upi_old_rows NEW TABLE AS upi_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION upi_rollup_apply();
CREATE TRIGGER upi_rollup_delete AFTER DELETE ON clean_upi_transactions
    REFERENCING OLD TABLE AS upi_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION upi_rollup_apply();
CREATE TRIGGER upi_rollup_truncate AFTER TRUNCATE ON clean_upi_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION upi_rollup_truncate();

-- Rows stored before this migration.
INSERT INTO upi_rollup_minute (minute, status, payer_bank, txns, amount)
SELECT date_trunc('minute', event_time), status, split_part(payer, '@', 2), count(*), sum(amount)
FROM clean_upi_transactions GROUP BY 1, 2, 3;
INSERT INTO upi_rollup_hour (hour, status, payer_bank, txns, amount)
SELECT date_trunc('hour', event_time, 'Asia/Kolkata'), status, split_part(payer, '@', 2),
       count(*), sum(amount)
FROM clean_upi_transactions GROUP BY 1, 2, 3;
INSERT INTO upi_rollup_merchant_day (day, merchant, txns, amount)
SELECT (event_time AT TIME ZONE 'Asia/Kolkata')::date, payee, count(*), sum(amount)
FROM clean_upi_transactions GROUP BY 1, 2;

-- Daily panels read the DAG's summaries by date.
CREATE INDEX merchant_upi_summary_date ON merchant_upi_summary (date);
-- Dead letters of a time range.
CREATE INDEX dead_letter_upi_transactions_received_at
    ON dead_letter_upi_transactions (received_at);

-- Every scheduler records the end of each loop (one upsert per loop), so /metrics can tell
-- how long ago scheduling last happened.
CREATE TABLE scheduler_loops (
    scheduler_id text PRIMARY KEY,
    last_loop_at timestamptz NOT NULL,
    loop_seconds double precision NOT NULL
);

-- The try-duration histogram of /metrics, cumulative since the first scrape: each scrape
-- adds the tries that ended since the cursor, so a scrape reads only recent tries.
-- `le` is a bucket's upper bound in seconds ('Infinity' for the last); counts per bucket
-- are not cumulative here (the exposition makes them so).
CREATE TABLE metrics_task_tries (
    dag_id  text NOT NULL,
    outcome try_outcome NOT NULL,
    le      double precision NOT NULL,
    tries   bigint NOT NULL,
    seconds double precision NOT NULL,
    PRIMARY KEY (dag_id, outcome, le)
);
CREATE TABLE metrics_cursors (
    name text PRIMARY KEY,
    upto timestamptz NOT NULL
);
CREATE INDEX task_tries_ended_at ON task_tries (ended_at);
-- Queue depth: task instances waiting for a worker.
CREATE INDEX task_instances_waiting ON task_instances (state)
    WHERE state IN ('scheduled', 'queued');
