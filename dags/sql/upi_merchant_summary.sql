-- Per merchant (the payee VPA, as in the seed) for the run's day: transactions and amount.
-- One statement reads the day's staging once: merchants of :ds that no longer have any
-- transaction that day are deleted, the others upserted. The two touch disjoint rows, as
-- data-modifying CTEs require.
WITH day AS (
    SELECT payee AS merchant, count(*) AS total_txns, sum(amount) AS amount
    FROM stg_upi_transactions
    WHERE txn_date = :ds
    GROUP BY payee
), gone AS (
    DELETE FROM merchant_upi_summary m
    WHERE m.date = :ds
      AND NOT EXISTS (SELECT 1 FROM day WHERE day.merchant = m.merchant)
)
INSERT INTO merchant_upi_summary AS m (merchant, date, total_txns, amount, updated_at)
SELECT day.merchant, :ds, day.total_txns, day.amount, now()
FROM day
ON CONFLICT (merchant, date) DO UPDATE
SET total_txns = EXCLUDED.total_txns,
    amount     = EXCLUDED.amount,
    updated_at = EXCLUDED.updated_at;
