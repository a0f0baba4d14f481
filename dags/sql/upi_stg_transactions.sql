-- Staging: the clean transactions whose (latest) event time lies in the run's data interval
-- [data_interval_start, data_interval_end), with the derived columns, tagged txn_date = :ds.
-- Range predicates on event_time (never a function of it), so the
-- clean_upi_transactions(event_time) index serves them.
--
-- Delete-then-insert of the day: afterwards the day's rows are exactly the interval's clean
-- rows, whatever was staged before, so a retry, a re-run or a backfill gives the same rows
-- and a transaction whose event time moved to another day stops counting here. The delete
-- finds the day through the txn_date index.
DELETE FROM stg_upi_transactions
WHERE txn_date = :ds;

-- The day was emptied above and clean has one row per txn_id, so the insert cannot repeat
-- one (the DAG's `unique` quality check asserts it for every day).
INSERT INTO stg_upi_transactions
    (txn_id, payer, payee, amount, status, event_time, txn_date, payer_bank, merchant_id)
SELECT c.txn_id,
       c.payer,
       c.payee,
       c.amount,
       c.status,
       c.event_time,
       :ds,
       split_part(c.payer, '@', 2),   -- 'user12@oksbi'  -> 'oksbi'
       split_part(c.payee, '@', 1)    -- 'merchant7@upi' -> 'merchant7'
FROM clean_upi_transactions c
WHERE c.event_time >= :data_interval_start
  AND c.event_time < :data_interval_end;
