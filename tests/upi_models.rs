//! The UPI SQL models of the shipped `daily_upi_aggregation` DAG, run by the real engine on a
//! real Postgres: backfilled days equal an independent computation straight from
//! `clean_upi_transactions`, a late event changes only its own day, a transaction that moves
//! to another day stops counting in the old one, re-runs are idempotent, and an empty day
//! is a row of zeros.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use common::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use upiflow_engine::Dag;
use upiflow_engine::backfill::{self, Request};
use upiflow_engine::store::dags::VersionCache;

/// The three IST days the data is about (plus a little of the days either side).
const FIRST: &str = "2024-03-10";
const LAST: &str = "2024-03-12";

/// The transforms every test expects in the shipped DAG, with their upstreams.
const TRANSFORMS: &[(&str, &[&str])] = &[
    ("staging", &[]),
    ("fact_upi_aggregates", &["staging"]),
    ("daily_summary", &["fact_upi_aggregates"]),
    ("merchant_summary", &["daily_summary"]),
    ("dim_merchants", &["staging"]),
];

/// The shipped DAG file, reduced to its `sql` tasks: tasks of other kinds (the ingest
/// supervisor needs a Kafka broker) are not what these tests are about.
fn shipped_transforms() -> Dag {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dags/daily_upi_aggregation.toml");
    let mut dag = upiflow_engine::dag::load_dag_file(&path, &upiflow_tasks::registry())
        .unwrap_or_else(|e| panic!("the shipped DAG should be valid: {e:?}"));
    assert_eq!(dag.dag_id, "daily_upi_aggregation");
    assert_eq!(dag.timezone, "Asia/Kolkata");
    dag.tasks.retain(|t| t.kind == "sql");
    let kept: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
    for task in &mut dag.tasks {
        task.upstream.retain(|u| kept.contains(u));
    }
    // Rebuild the lookups for the reduced task list.
    let dag = Dag::from_json(dag.to_json()).expect("the transforms alone form a valid DAG");
    for (id, upstream) in TRANSFORMS {
        let task = dag
            .task(id)
            .unwrap_or_else(|| panic!("the shipped DAG has a `{id}` sql task"));
        assert_eq!(&task.upstream, upstream, "upstream of `{id}`");
    }
    dag
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Deterministic transactions from 2024-03-09 22:00 IST to 2024-03-13 02:10 IST: all three
/// statuses, five banks, twelve merchants at three handles, and hand-placed rows on both sides
/// of IST midnights (and on UTC midnight, which is mid-morning in Kolkata).
const SEED: &str = r#"
INSERT INTO clean_upi_transactions
    (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
SELECT 'T' || lpad(i::text, 5, '0'),
       'user' || (i * 7 % 40) || '@'
           || (ARRAY['oksbi', 'okaxis', 'okhdfcbank', 'ybl', 'paytm'])[1 + (i * 7 % 40) % 5],
       'merchant' || (i * 13 % 12) || '@' || (ARRAY['upi', 'okicici', 'ybl'])[1 + (i * 13 % 12) % 3],
       1 + (i * 7919 % 99900) / 100.0,
       CASE WHEN i % 10 < 7 THEN 'SUCCESS' WHEN i % 10 < 9 THEN 'FAILED' ELSE 'PENDING' END,
       timestamptz '2024-03-09 22:00:00+05:30' + i * interval '457 seconds',
       i % 3,
       i
FROM generate_series(1, 600) AS i;

INSERT INTO clean_upi_transactions
    (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
VALUES
    -- The last instant of the 9th (IST): outside the three days.
    ('B0', 'edge0@oksbi', 'merchant1@okicici', 10.00, 'SUCCESS', '2024-03-09 23:59:59.999999+05:30', 0, 1000),
    -- The first instant of the 10th.
    ('B1', 'edge1@sbi', 'merchant2@ybl', 11.00, 'FAILED', '2024-03-10 00:00:00+05:30', 1, 1000),
    -- The last instant of the 10th, pending, at a merchant seen nowhere else.
    ('B2', 'edge2@axl', 'lonely@upi', 12.50, 'PENDING', '2024-03-10 23:59:59.999999+05:30', 2, 1000),
    -- The first instant of the 11th.
    ('B3', 'edge3@oksbi', 'merchant0@upi', 13.00, 'SUCCESS', '2024-03-11 00:00:00+05:30', 0, 1001),
    -- UTC midnight: 05:30 on the 11th in Kolkata, pending.
    ('B4', 'edge4@ybl', 'merchant5@okicici', 14.25, 'PENDING', '2024-03-11 00:00:00+00', 1, 1001),
    -- The last instant of the 12th, and the first of the 13th (outside).
    ('B5', 'edge5@paytm', 'merchant3@upi', 100000.00, 'SUCCESS', '2024-03-12 18:29:59.999999+00', 2, 1001),
    ('B6', 'edge6@paytm', 'merchant3@upi', 15.00, 'SUCCESS', '2024-03-12 18:30:00+00', 0, 1002);
"#;

/// One row of a table: the day it belongs to and the rest of the row as Postgres prints it.
type Rows = Vec<(NaiveDate, String)>;

/// Every model table (without `updated_at`/`loaded_at`), each row keyed by its day.
#[derive(Debug, Clone, PartialEq)]
struct Tables {
    stg: Rows,
    fact: Rows,
    daily: Rows,
    merchant: Rows,
    dim: Rows,
}

impl Tables {
    /// The rows of one day in every day-keyed table (dim_merchants is not per day).
    fn day(&self, d: NaiveDate) -> Tables {
        let pick = |rows: &Rows| rows.iter().filter(|r| r.0 == d).cloned().collect();
        Tables {
            stg: pick(&self.stg),
            fact: pick(&self.fact),
            daily: pick(&self.daily),
            merchant: pick(&self.merchant),
            dim: Vec::new(),
        }
    }
}

const ACTUAL: [&str; 5] = [
    "SELECT txn_date, ROW(txn_id, payer, payee, amount, status, event_time, payer_bank, merchant_id)::text
     FROM stg_upi_transactions",
    "SELECT txn_date, ROW(total_txns, success_txns, failed_txns, pending_txns, total_amount,
                          success_amount, success_rate, avg_amount, min_amount, max_amount,
                          distinct_payers, distinct_payees, distinct_banks)::text
     FROM fact_upi_aggregates",
    "SELECT date, ROW(total_txns, success_txns, failed_txns, pending_txns, total_amount)::text
     FROM daily_upi_summary",
    "SELECT date, ROW(merchant, total_txns, amount)::text FROM merchant_upi_summary",
    "SELECT first_seen, ROW(merchant_id, merchant, first_seen, last_seen)::text FROM dim_merchants",
];

/// The same tables computed independently, straight from the clean rows grouped by their
/// Kolkata calendar day, with other functions than the models use ($1..$2: the days).
const EXPECTED: [&str; 5] = [
    "WITH c AS (SELECT *, (event_time AT TIME ZONE 'Asia/Kolkata')::date AS d FROM clean_upi_transactions)
     SELECT d, ROW(txn_id, payer, payee, amount, status, event_time,
                   substring(payer FROM '@(.*)$'), substring(payee FROM '^[^@]*'))::text
     FROM c WHERE d BETWEEN $1 AND $2",
    "WITH c AS (SELECT *, (event_time AT TIME ZONE 'Asia/Kolkata')::date AS d FROM clean_upi_transactions)
     SELECT d, ROW(count(*),
                   sum(CASE status WHEN 'SUCCESS' THEN 1 ELSE 0 END)::bigint,
                   sum(CASE status WHEN 'FAILED' THEN 1 ELSE 0 END)::bigint,
                   sum(CASE status WHEN 'PENDING' THEN 1 ELSE 0 END)::bigint,
                   sum(amount)::numeric(16, 2),
                   sum(CASE status WHEN 'SUCCESS' THEN amount ELSE 0 END)::numeric(16, 2),
                   avg(CASE status WHEN 'SUCCESS' THEN 1 ELSE 0 END)::numeric(7, 4),
                   (sum(amount) / count(*))::numeric(12, 2),
                   min(amount), max(amount),
                   (SELECT count(*) FROM (SELECT DISTINCT payer FROM c c2 WHERE c2.d = c.d) p),
                   (SELECT count(*) FROM (SELECT DISTINCT payee FROM c c2 WHERE c2.d = c.d) p),
                   (SELECT count(*) FROM (SELECT DISTINCT substring(payer FROM '@(.*)$') FROM c c2
                                          WHERE c2.d = c.d) p))::text
     FROM c WHERE d BETWEEN $1 AND $2 GROUP BY d",
    "WITH c AS (SELECT *, (event_time AT TIME ZONE 'Asia/Kolkata')::date AS d FROM clean_upi_transactions)
     SELECT d, ROW(count(*),
                   sum(CASE status WHEN 'SUCCESS' THEN 1 ELSE 0 END)::bigint,
                   sum(CASE status WHEN 'FAILED' THEN 1 ELSE 0 END)::bigint,
                   sum(CASE status WHEN 'PENDING' THEN 1 ELSE 0 END)::bigint,
                   sum(amount)::numeric(16, 2))::text
     FROM c WHERE d BETWEEN $1 AND $2 GROUP BY d",
    "WITH c AS (SELECT *, (event_time AT TIME ZONE 'Asia/Kolkata')::date AS d FROM clean_upi_transactions)
     SELECT d, ROW(payee, count(*), sum(amount)::numeric(16, 2))::text
     FROM c WHERE d BETWEEN $1 AND $2 GROUP BY d, payee",
    "WITH c AS (SELECT *, (event_time AT TIME ZONE 'Asia/Kolkata')::date AS d FROM clean_upi_transactions)
     SELECT min(d), ROW(substring(payee FROM '^[^@]*'), min(payee), min(d), max(d))::text
     FROM c WHERE d BETWEEN $1 AND $2 GROUP BY substring(payee FROM '^[^@]*')",
];

/// A fresh database with the seed data, the shipped transforms and a worker running them.
struct Pipeline {
    db: TestDb,
    dag: Dag,
    cache: VersionCache,
    stop: CancellationToken,
    worker: JoinHandle<()>,
}

impl Pipeline {
    async fn start() -> Self {
        let db = fresh_db().await;
        sqlx::raw_sql(SEED)
            .execute(&db.pool)
            .await
            .expect("seed data");
        let (stop, worker) = spawn_worker(&db.pool, fast_worker("upi"));
        Self {
            db,
            dag: shipped_transforms(),
            cache: VersionCache::new(),
            stop,
            worker,
        }
    }

    async fn sql(&self, statement: &str) {
        sqlx::raw_sql(statement)
            .execute(&self.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }

    /// Backfills the days `from..=to` (re-running finished ones with `reset`) and waits until
    /// every run succeeded; fails at the first task error instead of waiting out retries.
    async fn run_days(&self, from: &str, to: &str, reset: bool) {
        let at = |d: &str| upiflow_engine::dag::parse_datetime_in(d, self.dag.tz()).unwrap();
        let since = chrono::Utc::now();
        let b = backfill::start(
            &self.db.pool,
            &self.cache,
            &self.dag,
            &Request {
                from: at(from),
                to: at(to),
                rerun_failed: false,
                reset,
                created_by: "test".into(),
                max_active_runs: None,
                yield_to_scheduled: true,
            },
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let errors: Vec<(String, String)> = sqlx::query_as(
                "SELECT ti.task_id, tt.error FROM task_tries tt JOIN task_instances ti ON ti.id = tt.ti_id
                 WHERE tt.error IS NOT NULL AND tt.started_at >= $1",
            )
            .bind(since)
            .fetch_all(&self.db.pool)
            .await
            .unwrap();
            assert!(errors.is_empty(), "tasks failed: {errors:#?}");
            let p = backfill::progress(&self.db.pool, &b).await.unwrap();
            assert_eq!(p.failed, 0, "{p:?}");
            if p.success == p.total {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "days {from}..{to} did not finish: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn rows(&self, query: &str, days: Option<(NaiveDate, NaiveDate)>) -> Rows {
        let sql = format!("SELECT * FROM ({query}) t ORDER BY 1, 2");
        let mut q = sqlx::query_as(&sql);
        if let Some((from, to)) = days {
            q = q.bind(from).bind(to);
        }
        q.fetch_all(&self.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    async fn tables(&self, queries: &[&str; 5], days: Option<(&str, &str)>) -> Tables {
        let days = days.map(|(a, b)| (date(a), date(b)));
        Tables {
            stg: self.rows(queries[0], days).await,
            fact: self.rows(queries[1], days).await,
            daily: self.rows(queries[2], days).await,
            merchant: self.rows(queries[3], days).await,
            dim: self.rows(queries[4], days).await,
        }
    }

    /// What the models wrote.
    async fn actual(&self) -> Tables {
        self.tables(&ACTUAL, None).await
    }

    /// What they should have written for the days `from..=to`, computed independently.
    async fn expected(&self, from: &str, to: &str) -> Tables {
        self.tables(&EXPECTED, Some((from, to))).await
    }

    async fn finish(self) {
        self.stop.cancel();
        self.worker.await.unwrap();
    }
}

/// Table by table, so a failure names the table.
fn assert_same(actual: &Tables, expected: &Tables) {
    assert_eq!(actual.stg, expected.stg, "stg_upi_transactions");
    assert_eq!(actual.fact, expected.fact, "fact_upi_aggregates");
    assert_eq!(actual.daily, expected.daily, "daily_upi_summary");
    assert_eq!(actual.merchant, expected.merchant, "merchant_upi_summary");
    assert_eq!(actual.dim, expected.dim, "dim_merchants");
}

#[tokio::test]
async fn backfilled_days_equal_an_independent_computation_from_clean_transactions() {
    let p = Pipeline::start().await;
    p.run_days(FIRST, LAST, false).await;
    let actual = p.actual().await;
    let expected = p.expected(FIRST, LAST).await;
    assert_same(&actual, &expected);

    // The data covers what it should, so the comparison means something.
    assert_eq!(actual.daily.len(), 3);
    let ids: Vec<&str> = actual
        .stg
        .iter()
        .filter_map(|(_, row)| row.get(1..3))
        .collect();
    for edge in ["B1", "B2", "B3", "B4", "B5"] {
        assert!(ids.contains(&edge), "{edge} is staged");
    }
    for outside in ["B0", "B6"] {
        assert!(!ids.contains(&outside), "{outside} lies outside the days");
    }
    let (success, failed, pending): (i64, i64, i64) = sqlx::query_as(
        "SELECT sum(success_txns)::bigint, sum(failed_txns)::bigint, sum(pending_txns)::bigint
         FROM daily_upi_summary",
    )
    .fetch_one(&p.db.pool)
    .await
    .unwrap();
    assert!(success > 0 && failed > 0 && pending > 0);
    let banks: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT payer_bank) FROM stg_upi_transactions")
            .fetch_one(&p.db.pool)
            .await
            .unwrap();
    assert!(banks >= 5, "{banks} banks");
    assert!(actual.dim.len() >= 12, "{} merchants", actual.dim.len());
    p.finish().await;
}

#[tokio::test]
async fn a_late_event_changes_only_its_own_day_when_that_day_is_rerun() {
    let p = Pipeline::start().await;
    p.run_days(FIRST, LAST, false).await;
    let before = p.actual().await;

    // B4 (pending, 05:30 on the 11th) succeeds ten minutes later: the ingest overwrites it.
    p.sql(
        "UPDATE clean_upi_transactions
         SET status = 'SUCCESS', event_time = event_time + interval '10 minutes',
             kafka_offset = kafka_offset + 1, updated_at = now()
         WHERE txn_id = 'B4' AND status = 'PENDING'",
    )
    .await;
    p.run_days("2024-03-11", "2024-03-11", true).await;
    let after = p.actual().await;
    assert_same(&after, &p.expected(FIRST, LAST).await);

    for untouched in ["2024-03-10", "2024-03-12"] {
        assert_eq!(
            after.day(date(untouched)),
            before.day(date(untouched)),
            "{untouched} must not change"
        );
    }
    assert_eq!(after.dim, before.dim);
    let day = date("2024-03-11");
    assert_ne!(after.day(day).fact, before.day(day).fact);
    assert_ne!(after.day(day).stg, before.day(day).stg);
    let counts = |t: &Tables| -> (i64, i64) {
        let row = &t.day(day).daily[0].1;
        let cols: Vec<i64> = row
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .take(4)
            .map(|c| c.parse().unwrap())
            .collect();
        (cols[1], cols[3])
    };
    let (success_before, pending_before) = counts(&before);
    assert_eq!(counts(&after), (success_before + 1, pending_before - 1));
    // The merchant's count and amount do not depend on status.
    assert_eq!(after.merchant, before.merchant);

    // And running the day once more changes nothing.
    p.run_days("2024-03-11", "2024-03-11", true).await;
    assert_eq!(p.actual().await, after);
    p.finish().await;
}

#[tokio::test]
async fn rerunning_days_gives_identical_rows() {
    let p = Pipeline::start().await;
    p.run_days(FIRST, LAST, false).await;
    let first = p.actual().await;
    p.run_days(FIRST, LAST, true).await;
    assert_eq!(p.actual().await, first);
    p.run_days("2024-03-11", "2024-03-11", true).await;
    assert_eq!(p.actual().await, first);
    p.finish().await;
}

#[tokio::test]
async fn a_transaction_moved_to_the_next_day_stops_counting_in_the_old_day() {
    let p = Pipeline::start().await;
    p.run_days(FIRST, LAST, false).await;
    let before = p.actual().await;
    let lonely = |t: &Tables| -> Vec<NaiveDate> {
        t.merchant
            .iter()
            .filter(|(_, row)| row.starts_with("(lonely@upi,"))
            .map(|(d, _)| *d)
            .collect()
    };
    assert_eq!(lonely(&before), [date("2024-03-10")]);

    // B2, pending at the last instant of the 10th, succeeds just after midnight: it now
    // belongs to the 11th.
    p.sql(
        "UPDATE clean_upi_transactions
         SET status = 'SUCCESS', event_time = timestamptz '2024-03-11 00:00:05+05:30',
             kafka_offset = kafka_offset + 1, updated_at = now()
         WHERE txn_id = 'B2'",
    )
    .await;

    // The old day first: it drops the transaction (and the merchant it alone brought).
    p.run_days("2024-03-10", "2024-03-10", true).await;
    let mid = p.actual().await;
    let expected = p.expected(FIRST, LAST).await;
    let ten = date("2024-03-10");
    assert_eq!(mid.day(ten), expected.day(ten));
    assert_eq!(lonely(&mid), Vec::<NaiveDate>::new());
    // The 11th has not run again yet, so it does not count it yet.
    let eleven = date("2024-03-11");
    assert_eq!(mid.day(eleven), before.day(eleven));

    // Then the new day picks it up.
    p.run_days("2024-03-11", "2024-03-11", true).await;
    let after = p.actual().await;
    assert_same(
        &Tables {
            dim: Vec::new(),
            ..after.clone()
        },
        &Tables {
            dim: Vec::new(),
            ..expected
        },
    );
    assert_eq!(lonely(&after), [eleven]);
    // The dimension only widens: `lonely` was seen on the 10th and is seen on the 11th.
    let dim: (NaiveDate, NaiveDate) = sqlx::query_as(
        "SELECT first_seen, last_seen FROM dim_merchants WHERE merchant_id = 'lonely'",
    )
    .fetch_one(&p.db.pool)
    .await
    .unwrap();
    assert_eq!(dim, (ten, eleven));
    p.finish().await;
}

#[tokio::test]
async fn a_day_without_transactions_gets_a_row_of_zeros() {
    let p = Pipeline::start().await;
    p.run_days("2024-03-20", "2024-03-20", false).await;
    let fact: String = sqlx::query_scalar(
        "SELECT ROW(total_txns, success_txns, failed_txns, pending_txns, total_amount,
                    success_amount, success_rate, avg_amount, min_amount, max_amount,
                    distinct_payers, distinct_payees, distinct_banks)::text
         FROM fact_upi_aggregates WHERE txn_date = '2024-03-20'",
    )
    .fetch_one(&p.db.pool)
    .await
    .unwrap();
    assert_eq!(fact, "(0,0,0,0,0.00,0.00,,,,,0,0,0)");
    let daily = p.actual().await.daily;
    assert_eq!(daily, [(date("2024-03-20"), "(0,0,0,0,0.00)".to_string())]);
    let merchants: i64 = sqlx::query_scalar("SELECT count(*) FROM merchant_upi_summary")
        .fetch_one(&p.db.pool)
        .await
        .unwrap();
    assert_eq!(merchants, 0);
    p.finish().await;
}
