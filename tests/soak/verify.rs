//! The end-of-soak checks. The UPI figures are recomputed here from the raw payloads with
//! the documented rules (DESIGN.md: non-empty txn_id/payer/payee, 0 < amount <= 100000, a
//! known status, a parseable timestamp; the latest event by event time wins per txn_id, ties
//! to the later offset), not from the pipeline's own clean or staging tables.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Asia::Kolkata;
use sqlx::PgPool;

#[derive(Debug, Default)]
pub struct Ingested {
    pub raw: i64,
    pub clean: i64,
    pub dead: i64,
    /// Per partition: (partition, rows, lowest offset, highest offset).
    pub partitions: Vec<(i32, i64, i64, i64)>,
}

impl Ingested {
    /// Offsets of each partition form one run 0..n without holes (nothing skipped).
    pub fn contiguous(&self) -> bool {
        self.partitions
            .iter()
            .all(|(_, n, lo, hi)| *lo == 0 && *hi == n - 1)
    }
}

pub async fn ingested(pool: &PgPool, topic: &str) -> sqlx::Result<Ingested> {
    let raw: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw_upi_transactions WHERE kafka_topic = $1")
            .bind(topic)
            .fetch_one(pool)
            .await?;
    let clean: i64 = sqlx::query_scalar("SELECT count(*) FROM clean_upi_transactions")
        .fetch_one(pool)
        .await?;
    let dead: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dead_letter_upi_transactions WHERE kafka_topic = $1",
    )
    .bind(topic)
    .fetch_one(pool)
    .await?;
    let partitions = sqlx::query_as(
        "SELECT kafka_partition, count(*), min(kafka_offset), max(kafka_offset)
         FROM raw_upi_transactions WHERE kafka_topic = $1 GROUP BY 1 ORDER BY 1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(Ingested {
        raw,
        clean,
        dead,
        partitions,
    })
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Day {
    pub total: i64,
    pub success: i64,
    pub failed: i64,
    pub pending: i64,
    pub amount_cents: i64,
}

/// Merchant (payee VPA) and day -> (transactions, amount in cents).
pub type Merchants = BTreeMap<(String, NaiveDate), (i64, i64)>;

#[derive(Debug, Default)]
pub struct Independent {
    pub valid_messages: u64,
    pub invalid_messages: u64,
    pub txns: u64,
    pub days: BTreeMap<NaiveDate, Day>,
    pub merchants: Merchants,
}

type Position = (DateTime<Utc>, i32, i64);

struct Event {
    payee: String,
    cents: i64,
    status: &'static str,
    at: DateTime<Utc>,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

/// The event of a payload if it is valid by the documented rules.
fn valid_event(payload: &str) -> Option<(String, Event)> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let o = v.as_object()?;
    let text = |k: &str| {
        o.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let (txn, _payer, payee) = (text("txn_id")?, text("payer")?, text("payee")?);
    let amount = o.get("amount")?.as_f64()?;
    if !(amount > 0.0 && amount <= 100_000.0) {
        return None;
    }
    let status = match o.get("status")?.as_str()? {
        "SUCCESS" => "SUCCESS",
        "FAILED" => "FAILED",
        "PENDING" => "PENDING",
        _ => return None,
    };
    let at = parse_time(o.get("timestamp")?.as_str()?)?;
    let cents = (amount * 100.0).round() as i64;
    Some((
        txn,
        Event {
            payee,
            cents,
            status,
            at,
        },
    ))
}

pub fn ist_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Kolkata).date_naive()
}

/// Every day and merchant figure, from `raw_upi_transactions.payload` alone.
pub async fn independent(pool: &PgPool, topic: &str) -> sqlx::Result<Independent> {
    let rows: Vec<(i32, i64, String)> = sqlx::query_as(
        "SELECT kafka_partition, kafka_offset, payload FROM raw_upi_transactions WHERE kafka_topic = $1",
    )
    .bind(topic)
    .fetch_all(pool)
    .await?;
    let mut out = Independent::default();
    // txn_id -> ((event time, partition, offset), event): the greatest key wins.
    let mut latest: HashMap<String, (Position, Event)> = HashMap::new();
    for (p, off, payload) in rows {
        let Some((txn, e)) = valid_event(&payload) else {
            out.invalid_messages += 1;
            continue;
        };
        out.valid_messages += 1;
        let key = (e.at, p, off);
        match latest.get(&txn) {
            Some((k, _)) if *k >= key => {}
            _ => {
                latest.insert(txn, (key, e));
            }
        }
    }
    out.txns = latest.len() as u64;
    for (_, e) in latest.into_values() {
        let date = ist_date(e.at);
        let d = out.days.entry(date).or_default();
        d.total += 1;
        d.amount_cents += e.cents;
        match e.status {
            "SUCCESS" => d.success += 1,
            "FAILED" => d.failed += 1,
            _ => d.pending += 1,
        }
        let m = out.merchants.entry((e.payee, date)).or_default();
        m.0 += 1;
        m.1 += e.cents;
    }
    Ok(out)
}

/// daily_upi_summary for `[from, to]`.
pub async fn summary_days(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<BTreeMap<NaiveDate, Day>> {
    let rows: Vec<(NaiveDate, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT date, total_txns, success_txns, failed_txns, pending_txns,
                (total_amount * 100)::bigint
         FROM daily_upi_summary WHERE date BETWEEN $1 AND $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(d, total, success, failed, pending, amount_cents)| {
            (
                d,
                Day {
                    total,
                    success,
                    failed,
                    pending,
                    amount_cents,
                },
            )
        })
        .collect())
}

/// merchant_upi_summary for `[from, to]`.
pub async fn summary_merchants(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Merchants> {
    let rows: Vec<(String, NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT merchant, date, total_txns, (amount * 100)::bigint
         FROM merchant_upi_summary WHERE date BETWEEN $1 AND $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(m, d, n, c)| ((m, d), (n, c)))
        .collect())
}

#[derive(Debug, Default)]
pub struct Runs {
    pub total: i64,
    pub by_state: BTreeMap<String, i64>,
    pub by_type: BTreeMap<String, i64>,
    pub logical_dates: Vec<DateTime<Utc>>,
    /// Task instances of these runs not in state success.
    pub tis_not_success: i64,
}

pub async fn runs(pool: &PgPool, dag_id: &str) -> sqlx::Result<Runs> {
    let rows: Vec<(DateTime<Utc>, String, String)> = sqlx::query_as(
        "SELECT logical_date, state::text, run_type::text FROM dag_runs WHERE dag_id = $1
         ORDER BY logical_date",
    )
    .bind(dag_id)
    .fetch_all(pool)
    .await?;
    let mut r = Runs::default();
    for (ld, state, ty) in rows {
        r.total += 1;
        *r.by_state.entry(state).or_default() += 1;
        *r.by_type.entry(ty).or_default() += 1;
        r.logical_dates.push(ld);
    }
    r.tis_not_success = sqlx::query_scalar(
        "SELECT count(*) FROM task_instances
         WHERE dag_id = $1 AND state IS DISTINCT FROM 'success'",
    )
    .bind(dag_id)
    .fetch_one(pool)
    .await?;
    Ok(r)
}

pub async fn active_runs(pool: &PgPool, dag_id: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM dag_runs WHERE dag_id = $1 AND state IN ('queued', 'running')",
    )
    .bind(dag_id)
    .fetch_one(pool)
    .await
}

#[derive(Debug, Default)]
pub struct Tries {
    pub total: i64,
    pub by_outcome: BTreeMap<String, i64>,
    /// Tries still without an end although the soak is over.
    pub open: i64,
    /// Pairs of tries of one task instance whose [started_at, ended_at] intersect.
    pub overlaps: i64,
    pub overlap_examples: Vec<String>,
    /// Task instances whose tries are not numbered 1..try_number.
    pub misnumbered: i64,
}

pub async fn tries(pool: &PgPool) -> sqlx::Result<Tries> {
    let mut t = Tries::default();
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT outcome::text, count(*) FROM task_tries GROUP BY 1")
            .fetch_all(pool)
            .await?;
    for (o, n) in rows {
        t.total += n;
        *t.by_outcome
            .entry(o.unwrap_or_else(|| "none".into()))
            .or_default() += n;
    }
    t.open = sqlx::query_scalar("SELECT count(*) FROM task_tries WHERE ended_at IS NULL")
        .fetch_one(pool)
        .await?;
    let overlaps: Vec<(String, String, i32, i32, String, String)> = sqlx::query_as(
        "SELECT ti.run_id, ti.task_id, a.try_number, b.try_number,
                a.started_at::text || ' .. ' || coalesce(a.ended_at::text, 'open'),
                b.started_at::text || ' .. ' || coalesce(b.ended_at::text, 'open')
         FROM task_tries a
         JOIN task_tries b ON b.ti_id = a.ti_id AND b.try_number > a.try_number
         JOIN task_instances ti ON ti.id = a.ti_id
         WHERE a.started_at < coalesce(b.ended_at, 'infinity')
           AND b.started_at < coalesce(a.ended_at, 'infinity')",
    )
    .fetch_all(pool)
    .await?;
    t.overlaps = overlaps.len() as i64;
    t.overlap_examples = overlaps
        .iter()
        .take(5)
        .map(|(r, k, a, b, sa, sb)| format!("{r} {k}: try {a} [{sa}] and try {b} [{sb}]"))
        .collect();
    t.misnumbered = sqlx::query_scalar(
        "SELECT count(*) FROM task_instances ti
         WHERE ti.try_number <> (SELECT count(*) FROM task_tries t WHERE t.ti_id = ti.id)
            OR EXISTS (SELECT 1 FROM task_tries t WHERE t.ti_id = ti.id
                       AND (t.try_number < 1 OR t.try_number > ti.try_number))",
    )
    .fetch_one(pool)
    .await?;
    Ok(t)
}

/// What the command tasks themselves wrote (`begin|end RUN TASK TRY NANOS`): the actual
/// execution of each try, independent of what the workers recorded. Pairs of tries of one
/// task instance that really ran at the same time, and tries that never wrote their end.
/// A try without an end ran at most until `killed_by` says its worker was SIGKILLed (plus
/// a second for its process group to be killed); without that, it counts as never ending.
#[derive(Debug, Default)]
pub struct Executions {
    pub tries: usize,
    pub unfinished: usize,
    /// Tries without an end whose worker the soak did not kill.
    pub unexplained: usize,
    pub overlaps: usize,
    pub overlap_examples: Vec<String>,
}

/// A try's (begin, end) in nanoseconds since the epoch, as far as it wrote them.
type Span = (Option<u128>, Option<u128>);

pub fn executions(log: &str, killed_by: &HashMap<(String, String, u32), u128>) -> Executions {
    let mut by_ti: HashMap<(String, String), BTreeMap<u32, Span>> = HashMap::new();
    for line in log.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        let [what, run, task, try_n, ns] = w[..] else {
            continue;
        };
        let (Ok(try_n), Ok(ns)) = (try_n.parse::<u32>(), ns.parse::<u128>()) else {
            continue;
        };
        let slot = by_ti
            .entry((run.to_string(), task.to_string()))
            .or_default()
            .entry(try_n)
            .or_default();
        match what {
            "begin" => slot.0 = Some(ns),
            "end" => slot.1 = Some(ns),
            _ => {}
        }
    }
    let mut e = Executions::default();
    for ((run, task), tries) in by_ti {
        let mut spans: Vec<(u32, u128, u128)> = Vec::new();
        for (n, (b, end)) in tries {
            e.tries += 1;
            let end = end.or_else(|| {
                e.unfinished += 1;
                let bound = killed_by
                    .get(&(run.clone(), task.clone(), n))
                    .map(|k| k + 1_000_000_000);
                if bound.is_none() {
                    e.unexplained += 1;
                }
                bound
            });
            if let Some(b) = b {
                spans.push((n, b, end.unwrap_or(u128::MAX)));
            }
        }
        spans.sort_by_key(|s| s.1);
        for w in spans.windows(2) {
            if w[0].2 > w[1].1 {
                e.overlaps += 1;
                if e.overlap_examples.len() < 5 {
                    e.overlap_examples.push(format!(
                        "{run} {task}: try {} ran until {} ns, try {} began at {} ns",
                        w[0].0, w[0].2, w[1].0, w[1].1
                    ));
                }
            }
        }
    }
    e
}

/// (run_id, task_id, try) -> the worker process id that ran it (from `host:pid:random`).
pub async fn try_workers(
    pool: &PgPool,
    dag_id: &str,
) -> sqlx::Result<HashMap<(String, String, u32), u32>> {
    let rows: Vec<(String, String, i32, String)> = sqlx::query_as(
        "SELECT ti.run_id, ti.task_id, t.try_number, t.worker
         FROM task_tries t JOIN task_instances ti ON ti.id = t.ti_id WHERE ti.dag_id = $1",
    )
    .bind(dag_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(r, k, n, w)| {
            let pid = w.rsplit(':').nth(1)?.parse().ok()?;
            Some(((r, k, n as u32), pid))
        })
        .collect())
}
