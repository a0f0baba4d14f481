-- Merchants seen on the run's day, merged into the dimension: first_seen and last_seen only
-- ever widen (least/greatest), so days may be run, re-run or backfilled in any order and
-- give the same rows. If one merchant_id has several payee VPAs (same name at different
-- handles), `merchant` is the smallest VPA seen, also independent of the order of runs.
-- ORDER BY: concurrent runs of different days update the same merchants; taking the row
-- locks in one order avoids deadlocks between them.
INSERT INTO dim_merchants AS d (merchant_id, merchant, first_seen, last_seen, updated_at)
SELECT s.merchant_id, min(s.payee), :ds, :ds, now()
FROM stg_upi_transactions s
WHERE s.txn_date = :ds
GROUP BY s.merchant_id
ORDER BY s.merchant_id
ON CONFLICT (merchant_id) DO UPDATE
SET merchant   = least(d.merchant, EXCLUDED.merchant),
    first_seen = least(d.first_seen, EXCLUDED.first_seen),
    last_seen  = greatest(d.last_seen, EXCLUDED.last_seen),
    updated_at = EXCLUDED.updated_at
WHERE (d.merchant, d.first_seen, d.last_seen)
      IS DISTINCT FROM
      (least(d.merchant, EXCLUDED.merchant), least(d.first_seen, EXCLUDED.first_seen),
       greatest(d.last_seen, EXCLUDED.last_seen));
