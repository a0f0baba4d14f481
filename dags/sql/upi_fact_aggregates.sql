-- The day's facts (txn_date = :ds) from staging. An aggregate without GROUP BY always yields
-- one row, so a day without transactions gets zeros (and NULL rate/avg/min/max), which the
-- summaries report as 0 rather than as a missing day. Upsert: a re-run replaces the row.
INSERT INTO fact_upi_aggregates AS f
    (txn_date, total_txns, success_txns, failed_txns, pending_txns, total_amount,
     success_amount, success_rate, avg_amount, min_amount, max_amount,
     distinct_payers, distinct_payees, distinct_banks, updated_at)
SELECT :ds,
       count(*),
       count(*) FILTER (WHERE status = 'SUCCESS'),
       count(*) FILTER (WHERE status = 'FAILED'),
       count(*) FILTER (WHERE status = 'PENDING'),
       coalesce(sum(amount), 0),
       coalesce(sum(amount) FILTER (WHERE status = 'SUCCESS'), 0),
       -- A fraction in [0, 1]; NULL when there is nothing to divide.
       round(count(*) FILTER (WHERE status = 'SUCCESS')::numeric / nullif(count(*), 0), 4),
       round(avg(amount), 2),
       min(amount),
       max(amount),
       count(DISTINCT payer),
       count(DISTINCT payee),
       count(DISTINCT payer_bank),
       now()
FROM stg_upi_transactions
WHERE txn_date = :ds
ON CONFLICT (txn_date) DO UPDATE
SET total_txns      = EXCLUDED.total_txns,
    success_txns    = EXCLUDED.success_txns,
    failed_txns     = EXCLUDED.failed_txns,
    pending_txns    = EXCLUDED.pending_txns,
    total_amount    = EXCLUDED.total_amount,
    success_amount  = EXCLUDED.success_amount,
    success_rate    = EXCLUDED.success_rate,
    avg_amount      = EXCLUDED.avg_amount,
    min_amount      = EXCLUDED.min_amount,
    max_amount      = EXCLUDED.max_amount,
    distinct_payers = EXCLUDED.distinct_payers,
    distinct_payees = EXCLUDED.distinct_payees,
    distinct_banks  = EXCLUDED.distinct_banks,
    updated_at      = EXCLUDED.updated_at;
