-- The seed's daily summary, for the run's day only, copied from the day's fact row (which
-- always exists after fact_upi_aggregates, zeros included). Upsert: a re-run replaces it.
INSERT INTO daily_upi_summary AS d
    (date, total_txns, success_txns, failed_txns, pending_txns, total_amount, updated_at)
SELECT f.txn_date, f.total_txns, f.success_txns, f.failed_txns, f.pending_txns, f.total_amount,
       now()
FROM fact_upi_aggregates f
WHERE f.txn_date = :ds
ON CONFLICT (date) DO UPDATE
SET total_txns   = EXCLUDED.total_txns,
    success_txns = EXCLUDED.success_txns,
    failed_txns  = EXCLUDED.failed_txns,
    pending_txns = EXCLUDED.pending_txns,
    total_amount = EXCLUDED.total_amount,
    updated_at   = EXCLUDED.updated_at;
