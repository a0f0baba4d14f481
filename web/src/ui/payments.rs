//! `/payments`: the live payments dashboard (the seed's Grafana panels, as server-rendered
//! SVG). Three regions refresh themselves through `data-refresh` fragments: the live panels
//! and ingest health every 5 s, the daily panels every minute.
//!
//! Where each panel reads, so every query stays cheap at 10,000,000 events:
//! - minute and hour panels (volume, failures, status split, banks, heatmap, today's top
//!   merchants): the rollups `upi_rollup_minute` (ranges up to 24 h), `upi_rollup_hour`
//!   (7 and 30 days) and `upi_rollup_merchant_day`, kept exact by triggers on
//!   `clean_upi_transactions` (see migrations/20260105100000_metrics.sql);
//! - daily panels: the DAG's `daily_upi_summary` and `merchant_upi_summary`;
//! - ingest health: `ingest_instances`, `ingest_lag`, `dead_letter_upi_transactions`.
//!
//! Times are shown in IST (Asia/Kolkata, UTC+05:30 all year), the zone of the DAG's days.
//! A range ends at the end of the current bucket, so its buckets are whole and the numbers
//! of a bucket are exact.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use sqlx::PgPool;

use super::charts::{self, Row, Series, Slice, Unit, XAxis, color};
use super::{Nav, UiError, UiUser, page};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/payments", get(dashboard))
        .route("/payments/panels/{part}", get(fragment))
}

/// Asia/Kolkata has been UTC+05:30 without daylight saving since 1945.
const IST_SECS: i32 = 5 * 3600 + 1800;

fn ist() -> FixedOffset {
    FixedOffset::east_opt(IST_SECS).expect("a valid offset")
}

/// The IST date of an instant.
pub fn ist_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&ist()).date_naive()
}

/// The instant an IST date starts.
fn ist_midnight(d: NaiveDate) -> DateTime<Utc> {
    ist()
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has no gaps")
        .with_timezone(&Utc)
}

/// The time ranges the selector offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Range {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "6h")]
    SixHours,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Range {
    pub const ALL: [Range; 5] = [
        Range::Hour,
        Range::SixHours,
        Range::Day,
        Range::Week,
        Range::Month,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::SixHours => "6h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Range::Hour => "Last hour",
            Range::SixHours => "Last 6 hours",
            Range::Day => "Last 24 hours",
            Range::Week => "Last 7 days",
            Range::Month => "Last 30 days",
        }
    }

    fn seconds(self) -> i64 {
        match self {
            Range::Hour => 3600,
            Range::SixHours => 6 * 3600,
            Range::Day => 24 * 3600,
            Range::Week => 7 * 86400,
            Range::Month => 30 * 86400,
        }
    }

    /// The width of a time bucket: about 60 to 170 buckets per range.
    fn bucket(self) -> i64 {
        match self {
            Range::Hour => 60,
            Range::SixHours => 300,
            Range::Day => 900,
            Range::Week => 3600,
            Range::Month => 6 * 3600,
        }
    }

    /// Where a tick label goes (every this many seconds, IST-aligned).
    fn tick(self) -> i64 {
        match self {
            Range::Hour => 600,
            Range::SixHours => 3600,
            Range::Day => 3 * 3600,
            Range::Week => 86400,
            Range::Month => 5 * 86400,
        }
    }
}

/// What a dashboard shows for a range at an instant: the aligned time window, its buckets,
/// and the days of the daily panels.
#[derive(Clone, Debug)]
pub struct Window {
    pub range: Range,
    /// `[start, end)`, both on bucket boundaries (IST-aligned).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The IST days of the daily panels and the heatmap: the days the window touches, and
    /// at least the last 7.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

impl Window {
    pub fn new(range: Range, now: DateTime<Utc>) -> Self {
        let b = range.bucket();
        let local = now.timestamp() + i64::from(IST_SECS);
        let end_local = local.div_euclid(b) * b + b;
        let end =
            DateTime::from_timestamp(end_local - i64::from(IST_SECS), 0).expect("a time in range");
        let start = end - Duration::seconds(range.seconds());
        let last_day = ist_date(end - Duration::seconds(1));
        let first_day = ist_date(start).min(last_day - Duration::days(6));
        Self {
            range,
            start,
            end,
            now,
            first_day,
            last_day,
        }
    }

    pub fn bucket_secs(&self) -> i64 {
        self.range.bucket()
    }

    /// The rollup a time-bucketed query reads, and its time column.
    fn rollup(&self) -> (&'static str, &'static str) {
        if self.range.bucket() < 3600 {
            ("upi_rollup_minute", "minute")
        } else {
            ("upi_rollup_hour", "hour")
        }
    }

    pub fn buckets(&self) -> Vec<DateTime<Utc>> {
        let b = self.range.bucket();
        let n = self.range.seconds() / b;
        (0..n)
            .map(|i| self.start + Duration::seconds(i * b))
            .collect()
    }

    pub fn days(&self) -> Vec<NaiveDate> {
        self.first_day
            .iter_days()
            .take_while(|d| *d <= self.last_day)
            .collect()
    }

    /// The IST day the top-merchants panel shows.
    pub fn today(&self) -> NaiveDate {
        ist_date(self.now)
    }
}

// ---------------------------------------------------------------------------------------
// Queries: one per panel (or group of panels fed by one result). The benchmark
// (examples/bench_dashboard.rs) runs these same functions.

/// Transactions and amount per bucket and status over the window.
#[derive(Debug, Default, Clone)]
pub struct Volume {
    pub buckets: Vec<DateTime<Utc>>,
    /// Per status (SUCCESS, FAILED, PENDING): transactions per bucket.
    pub txns: [Vec<f64>; 3],
    pub amount: [f64; 3],
}

pub const STATUSES: [&str; 3] = ["SUCCESS", "FAILED", "PENDING"];
const STATUS_COLORS: [&str; 3] = [color::SUCCESS, color::FAILED, color::PENDING];

fn status_index(s: &str) -> Option<usize> {
    STATUSES.iter().position(|x| *x == s)
}

impl Volume {
    pub fn total(&self) -> f64 {
        self.txns.iter().flatten().fold(0.0, |a, b| a + b)
    }
    pub fn by_status(&self, i: usize) -> f64 {
        self.txns[i].iter().fold(0.0, |a, b| a + b)
    }
    fn per_bucket(&self) -> Vec<f64> {
        (0..self.buckets.len())
            .map(|i| self.txns.iter().map(|s| s[i]).sum())
            .collect()
    }
}

pub async fn volume(pool: &PgPool, w: &Window) -> Result<Volume, sqlx::Error> {
    let (table, col) = w.rollup();
    let rows: Vec<(DateTime<Utc>, String, i64, f64)> = sqlx::query_as(&format!(
        "SELECT date_bin(make_interval(secs => $3), {col}, TIMESTAMPTZ '2000-01-01 00:00:00+05:30'),
                status, sum(txns)::int8, sum(amount)::float8
         FROM {table}
         WHERE {col} >= $1 AND {col} < $2
         GROUP BY 1, 2"
    ))
    .bind(w.start)
    .bind(w.end)
    .bind(w.bucket_secs() as f64)
    .fetch_all(pool)
    .await?;
    let buckets = w.buckets();
    let index: HashMap<DateTime<Utc>, usize> =
        buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
    let mut v = Volume {
        txns: std::array::from_fn(|_| vec![0.0; buckets.len()]),
        buckets,
        amount: [0.0; 3],
    };
    for (bucket, status, txns, amount) in rows {
        if let (Some(&i), Some(s)) = (index.get(&bucket), status_index(&status)) {
            v.txns[s][i] += txns as f64;
            v.amount[s] += amount;
        }
    }
    Ok(v)
}

/// Transactions per payer bank (the handle after `@`) and status over the window.
pub async fn banks(pool: &PgPool, w: &Window) -> Result<Vec<(String, [f64; 3])>, sqlx::Error> {
    let (table, col) = w.rollup();
    let rows: Vec<(String, String, i64)> = sqlx::query_as(&format!(
        "SELECT payer_bank, status, sum(txns)::int8 FROM {table}
         WHERE {col} >= $1 AND {col} < $2
         GROUP BY 1, 2"
    ))
    .bind(w.start)
    .bind(w.end)
    .fetch_all(pool)
    .await?;
    let mut by: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for (bank, status, n) in rows {
        if let Some(s) = status_index(&status) {
            by.entry(bank).or_default()[s] += n as f64;
        }
    }
    let mut out: Vec<(String, [f64; 3])> = by
        .into_iter()
        .filter(|(_, v)| v.iter().sum::<f64>() > 0.0)
        .collect();
    out.sort_by(|a, b| {
        b.1.iter()
            .sum::<f64>()
            .total_cmp(&a.1.iter().sum::<f64>())
            .then(a.0.cmp(&b.0))
    });
    Ok(out)
}

/// Transactions per IST day and hour of the window's days: `(day, hour) -> count`.
pub async fn heatmap(
    pool: &PgPool,
    w: &Window,
) -> Result<HashMap<(NaiveDate, u32), f64>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT hour, sum(txns)::int8 FROM upi_rollup_hour
         WHERE hour >= $1 AND hour < $2
         GROUP BY 1",
    )
    .bind(ist_midnight(w.first_day))
    .bind(ist_midnight(w.last_day + Duration::days(1)))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(h, n)| {
            let local = h.with_timezone(&ist());
            (
                (local.date_naive(), chrono::Timelike::hour(&local)),
                n as f64,
            )
        })
        .collect())
}

/// The ten merchants with the largest amount today (IST): `(merchant, txns, amount)`.
pub async fn top_merchants(
    pool: &PgPool,
    w: &Window,
) -> Result<Vec<(String, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT merchant, txns, amount::float8 FROM upi_rollup_merchant_day
         WHERE day = $1 AND txns > 0
         ORDER BY amount DESC, merchant
         LIMIT 10",
    )
    .bind(w.today())
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Daily {
    pub date: NaiveDate,
    pub total_txns: i64,
    pub success_txns: i64,
    pub failed_txns: i64,
    pub pending_txns: i64,
    pub total_amount: f64,
}

/// The DAG's daily summaries of the window's days.
pub async fn daily(pool: &PgPool, w: &Window) -> Result<Vec<Daily>, sqlx::Error> {
    sqlx::query_as(
        "SELECT date, total_txns, success_txns, failed_txns, pending_txns, total_amount::float8
         FROM daily_upi_summary WHERE date BETWEEN $1 AND $2 ORDER BY date",
    )
    .bind(w.first_day)
    .bind(w.last_day)
    .fetch_all(pool)
    .await
}

/// The five merchants with the largest amount over the window's days, and their amount
/// per day (from the DAG's merchant summary): `(merchant, date, amount)`.
pub async fn merchant_trend(
    pool: &PgPool,
    w: &Window,
) -> Result<Vec<(String, NaiveDate, f64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH top AS (
             SELECT merchant, sum(amount) AS amount FROM merchant_upi_summary
             WHERE date BETWEEN $1 AND $2
             GROUP BY merchant ORDER BY sum(amount) DESC, merchant LIMIT 5)
         SELECT m.merchant, m.date, m.amount::float8
         FROM merchant_upi_summary m JOIN top USING (merchant)
         WHERE m.date BETWEEN $1 AND $2
         ORDER BY top.amount DESC, m.merchant, m.date",
    )
    .bind(w.first_day)
    .bind(w.last_day)
    .fetch_all(pool)
    .await
}

/// Ingest processes that reported in the last 30 s: `(instance, events/s, events total)`.
pub async fn ingest_rate(pool: &PgPool) -> Result<Vec<(String, f64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT instance_id, events_per_sec, events_total FROM ingest_instances
         WHERE stopped_at IS NULL AND heartbeat_at > now() - interval '30 seconds'
         ORDER BY instance_id",
    )
    .fetch_all(pool)
    .await
}

/// Consumer lag per partition as last recorded: `(group, topic, partition, lag, age s)`.
pub async fn consumer_lag(
    pool: &PgPool,
) -> Result<Vec<(String, String, i32, i64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT consumer_group, kafka_topic, kafka_partition, lag,
                EXTRACT(EPOCH FROM now() - updated_at)::float8
         FROM ingest_lag ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
}

/// Dead letters received in the window by kind of reason (its text up to the first `:` or
/// backquote, e.g. `unknown status`), and the total ever received.
pub async fn dead_letters(
    pool: &PgPool,
    w: &Window,
) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT trim(split_part(split_part(reason, ':', 1), '`', 1)), count(*)
         FROM dead_letter_upi_transactions
         WHERE received_at >= $1 AND received_at < $2
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
    )
    .bind(w.start)
    .bind(w.end)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letter_upi_transactions")
        .fetch_one(pool)
        .await?;
    Ok((kinds, total))
}

// ---------------------------------------------------------------------------------------
// Pages.

#[derive(Deserialize)]
struct RangeParams {
    range: Option<Range>,
}

fn parse_range(q: Result<Query<RangeParams>, QueryRejection>) -> Result<Range, UiError> {
    match q {
        Ok(Query(p)) => Ok(p.range.unwrap_or(Range::Day)),
        Err(_) => Err(UiError::BadRequest(format!(
            "unknown time range; choose one of {}",
            Range::ALL.map(Range::key).join(", ")
        ))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Live,
    Daily,
    Ingest,
}

impl Part {
    fn path(self) -> &'static str {
        match self {
            Part::Live => "live",
            Part::Daily => "daily",
            Part::Ingest => "ingest",
        }
    }
    fn every(self) -> u32 {
        match self {
            Part::Daily => 60,
            Part::Live | Part::Ingest => 5,
        }
    }
}

async fn render(pool: &PgPool, part: Part, w: &Window) -> Result<Markup, UiError> {
    Ok(match part {
        Part::Live => live_panels(pool, w).await?,
        Part::Daily => daily_panels(pool, w).await?,
        Part::Ingest => ingest_panels(pool, w).await?,
    })
}

async fn dashboard(
    State(s): State<AppState>,
    user: UiUser,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Markup, UiError> {
    let range = parse_range(q)?;
    let w = Window::new(range, Utc::now());
    let mut regions = Vec::new();
    for (part, heading) in [
        (Part::Live, None),
        (
            Part::Daily,
            Some("Daily (from the daily_upi_aggregation DAG)"),
        ),
        (Part::Ingest, Some("Ingest health")),
    ] {
        regions.push((part, heading, render(&s.pool, part, &w).await?));
    }
    Ok(page(
        "Payments",
        &user,
        Nav::Payments,
        html! {
            div.dash-head {
                h1 { "Payments" }
                form.range-form method="get" action="/payments" {
                    label for="range" { "Time range" }
                    select #range name="range" data-autosubmit {
                        @for r in Range::ALL {
                            option value=(r.key()) selected[r == range] { (r.label()) }
                        }
                    }
                    noscript { button type="submit" { "Show" } }
                }
                span.muted.tz { "Times in IST (Asia/Kolkata) · refreshes every few seconds" }
            }
            @for (part, heading, body) in &regions {
                @if let Some(h) = heading { h2.dash-section { (h) } }
                div.panel-grid id={ "panels-" (part.path()) }
                    data-refresh={ "/payments/panels/" (part.path()) "?range=" (range.key()) }
                    data-every=(part.every()) {
                    (body)
                }
            }
        },
    ))
}

async fn fragment(
    State(s): State<AppState>,
    _user: UiUser,
    Path(part): Path<String>,
    q: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Markup, UiError> {
    let part = match part.as_str() {
        "live" => Part::Live,
        "daily" => Part::Daily,
        "ingest" => Part::Ingest,
        other => return Err(UiError::NotFound(format!("no panels named `{other}`"))),
    };
    let range = parse_range(q)?;
    render(&s.pool, part, &Window::new(range, Utc::now())).await
}

fn panel(id: &str, title: &str, sub: Option<&str>, body: Markup) -> Markup {
    html! {
        section.panel data-panel=(id) {
            header.panel-head {
                h3 { (title) }
                @if let Some(sub) = sub { span.muted { (sub) } }
            }
            (body)
        }
    }
}

fn bucket_name(secs: i64) -> &'static str {
    match secs {
        60 => "minute",
        300 => "5 minutes",
        900 => "15 minutes",
        3600 => "hour",
        21600 => "6 hours",
        _ => "bucket",
    }
}

/// The time axis of the window's buckets, labelled in IST.
fn time_axis(w: &Window, buckets: &[DateTime<Utc>]) -> XAxis {
    let tick = w.range.tick();
    let b = w.bucket_secs();
    let fmt_tick = if tick >= 86400 {
        if w.range == Range::Week {
            "%a %d"
        } else {
            "%d %b"
        }
    } else {
        "%H:%M"
    };
    let mut x = XAxis::default();
    for (i, t) in buckets.iter().enumerate() {
        let local = t.with_timezone(&ist());
        let to = (*t + Duration::seconds(b)).with_timezone(&ist());
        x.keys
            .push(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        x.names.push(if b == 60 {
            format!("{} IST", local.format("%a %d %b %H:%M"))
        } else {
            format!(
                "{}–{} IST",
                local.format("%a %d %b %H:%M"),
                to.format("%H:%M")
            )
        });
        if *t <= w.now && w.now < *t + Duration::seconds(b) {
            x.partial_from = Some(i);
        }
        if (t.timestamp() + i64::from(IST_SECS)) % tick == 0 {
            x.ticks.push((i, local.format(fmt_tick).to_string()));
        }
    }
    x
}

/// The day axis of the window's days, at most about 8 labels.
fn day_axis(days: &[NaiveDate]) -> XAxis {
    let every = days.len().div_ceil(8).max(1);
    let mut x = XAxis::default();
    for (i, d) in days.iter().enumerate() {
        x.keys.push(d.to_string());
        x.names.push(d.format("%a %d %b %Y").to_string());
        // Label the latest day, and every `every`-th counting back from it.
        if (days.len() - 1 - i).is_multiple_of(every) {
            x.ticks.push((i, d.format("%d %b").to_string()));
        }
    }
    x
}

async fn live_panels(pool: &PgPool, w: &Window) -> Result<Markup, UiError> {
    let vol = volume(pool, w).await?;
    let banks = banks(pool, w).await?;
    let heat = heatmap(pool, w).await?;
    let top = top_merchants(pool, w).await?;

    let total = vol.total();
    let x = time_axis(w, &vol.buckets);
    let per = bucket_name(w.bucket_secs());
    let tpm = if total > 0.0 {
        charts::line(
            "Transactions per bucket",
            &x,
            &[Series::new(
                "Transactions",
                color::PRIMARY,
                vol.per_bucket(),
            )],
            Unit::Count,
            true,
        )
    } else {
        charts::empty()
    };
    let failed = vol.by_status(1);
    let failures = if total > 0.0 {
        charts::line(
            "Failures per bucket",
            &x,
            &[Series::new("Failed", color::FAILED, vol.txns[1].clone())],
            Unit::Count,
            true,
        )
    } else {
        charts::empty()
    };
    let split = if total > 0.0 {
        let slices: Vec<Slice> = (0..3)
            .map(|i| Slice {
                name: STATUSES[i].into(),
                color: STATUS_COLORS[i],
                value: vol.by_status(i),
            })
            .collect();
        charts::donut("Status split", &slices, Unit::Count, "transactions")
    } else {
        charts::empty()
    };
    let status_legend: Vec<(&str, &'static str)> = STATUSES
        .iter()
        .copied()
        .zip(STATUS_COLORS.iter().copied())
        .collect();
    let bank_chart = if banks.is_empty() {
        charts::empty()
    } else {
        let rows: Vec<Row> = banks
            .iter()
            .map(|(b, v)| Row {
                label: if b.is_empty() {
                    "(none)".into()
                } else {
                    b.clone()
                },
                values: v.to_vec(),
                note: None,
            })
            .collect();
        charts::hbars("By payer bank", &rows, &status_legend, Unit::Count)
    };

    // Heatmap: the window's days (oldest first) x 24 IST hours; hours still to come are
    // blank, not zero.
    let days = w.days();
    let now_hour = w.now.with_timezone(&ist());
    let heat_chart = if heat.values().any(|v| *v > 0.0) {
        let rows: Vec<String> = days
            .iter()
            .map(|d| d.format("%a %d %b").to_string())
            .collect();
        let row_keys: Vec<String> = days.iter().map(|d| d.to_string()).collect();
        let columns: Vec<String> = (0..24).map(|h| format!("{h:02}")).collect();
        let values: Vec<Vec<Option<f64>>> = days
            .iter()
            .map(|d| {
                (0..24u32)
                    .map(|h| {
                        let start = ist_midnight(*d) + Duration::hours(i64::from(h));
                        let future = start > now_hour;
                        (!future).then(|| heat.get(&(*d, h)).copied().unwrap_or(0.0))
                    })
                    .collect()
            })
            .collect();
        let name = |i: usize, j: usize| {
            format!(
                "{} {:02}:00–{:02}:00 IST",
                days[i].format("%a %d %b"),
                j,
                (j + 1) % 24
            )
        };
        charts::heatmap(
            "Transactions by day and hour",
            &charts::Heatmap {
                rows: &rows,
                columns: &columns,
                row_keys: &row_keys,
                values: &values,
                cell_name: &name,
                column_every: 3,
            },
            Unit::Count,
        )
    } else {
        charts::empty()
    };

    let top_chart = if top.is_empty() {
        charts::empty()
    } else {
        let rows: Vec<Row> = top
            .iter()
            .map(|(m, n, amount)| Row {
                label: m.clone(),
                values: vec![*amount],
                note: Some(format!("{} transactions", Unit::Count.full(*n as f64))),
            })
            .collect();
        charts::hbars(
            "Top 10 merchants today",
            &rows,
            &[("Amount", color::AMOUNT)],
            Unit::Rupees,
        )
    };

    let amount: f64 = vol.amount.iter().fold(0.0, |a, b| a + b);
    let success_rate = if total > 0.0 {
        format!("{:.1}%", vol.by_status(0) / total * 100.0)
    } else {
        "–".into()
    };
    let range_sub = format!(
        "{} · {} – {} IST",
        w.range.label(),
        w.start.with_timezone(&ist()).format("%d %b %H:%M"),
        w.end.with_timezone(&ist()).format("%d %b %H:%M")
    );
    Ok(html! {
        section.panel.stats data-panel="totals" {
            div.stat { span.stat-value data-v=(total) { (Unit::Count.full(total)) } span.stat-label { "transactions" } }
            div.stat { span.stat-value { (success_rate) } span.stat-label { "succeeded" } }
            div.stat { span.stat-value.failed data-v=(failed) { (Unit::Count.full(failed)) } span.stat-label { "failed" } }
            div.stat { span.stat-value { (Unit::Rupees.short(amount)) } span.stat-label { "amount" } }
            div.stat.range-note { span.muted { (range_sub) } }
        }
        (panel("tpm", &format!("Transactions per {per}"), Some("live"), tpm))
        (panel("status", "Status split", Some(w.range.label()), split))
        (panel("failures", &format!("Failures per {per}"), Some("live"), failures))
        (panel("banks", "Transactions by payer bank", Some(w.range.label()), bank_chart))
        (panel("heatmap", "Transactions by day and hour", Some("IST days × hours"), heat_chart))
        (panel("top-merchants", "Top 10 merchants today", Some(&format!("by amount · {}", w.today().format("%d %b %Y"))), top_chart))
    })
}

async fn daily_panels(pool: &PgPool, w: &Window) -> Result<Markup, UiError> {
    let rows = daily(pool, w).await?;
    let trend = merchant_trend(pool, w).await?;
    let days = w.days();
    let x = day_axis(&days);
    let by_day: HashMap<NaiveDate, &Daily> = rows.iter().map(|r| (r.date, r)).collect();
    let col = |f: &dyn Fn(&Daily) -> f64| -> Vec<Option<f64>> {
        days.iter().map(|d| by_day.get(d).map(|r| f(r))).collect()
    };
    let sub = format!(
        "{} – {}",
        w.first_day.format("%d %b"),
        w.last_day.format("%d %b %Y")
    );
    let has = !rows.is_empty();
    let totals = if has {
        charts::stacked_bars(
            "Daily transactions",
            &x,
            &[Series {
                name: "Transactions".into(),
                color: color::PRIMARY,
                values: col(&|r| r.total_txns as f64),
            }],
            Unit::Count,
        )
    } else {
        charts::empty()
    };
    let status = if has {
        let s = [
            Series {
                name: "SUCCESS".into(),
                color: color::SUCCESS,
                values: col(&|r| r.success_txns as f64),
            },
            Series {
                name: "FAILED".into(),
                color: color::FAILED,
                values: col(&|r| r.failed_txns as f64),
            },
            Series {
                name: "PENDING".into(),
                color: color::PENDING,
                values: col(&|r| r.pending_txns as f64),
            },
        ];
        charts::stacked_bars("Daily transactions by status", &x, &s, Unit::Count)
    } else {
        charts::empty()
    };
    let amount = if has {
        charts::line(
            "Daily amount",
            &x,
            &[Series {
                name: "Amount".into(),
                color: color::AMOUNT,
                values: col(&|r| r.total_amount),
            }],
            Unit::Rupees,
            true,
        )
    } else {
        charts::empty()
    };
    let trend_chart = if trend.is_empty() {
        charts::empty()
    } else {
        let mut order: Vec<&str> = Vec::new();
        let mut values: HashMap<&str, HashMap<NaiveDate, f64>> = HashMap::new();
        for (m, d, a) in &trend {
            if !order.contains(&m.as_str()) {
                order.push(m);
            }
            values.entry(m).or_default().insert(*d, *a);
        }
        let series: Vec<Series> = order
            .iter()
            .enumerate()
            .map(|(i, m)| Series {
                name: (*m).to_string(),
                color: color::PALETTE[i % color::PALETTE.len()],
                values: days
                    .iter()
                    .map(|d| {
                        by_day
                            .contains_key(d)
                            .then(|| values[m].get(d).copied().unwrap_or(0.0))
                    })
                    .collect(),
            })
            .collect();
        charts::line("Merchant trend", &x, &series, Unit::Rupees, false)
    };
    let missing = days.iter().filter(|d| !by_day.contains_key(d)).count();
    let note = (has && missing > 0).then(|| {
        format!(
            "{sub} · {missing} day{} not summarised yet",
            if missing == 1 { "" } else { "s" }
        )
    });
    let sub_or_note = note.as_deref().unwrap_or(&sub);
    Ok(html! {
        (panel("daily-totals", "Daily transactions", Some(sub_or_note), totals))
        (panel("daily-status", "Daily success / failed / pending", Some(&sub), status))
        (panel("daily-amount", "Daily amount", Some(&sub), amount))
        (panel("merchant-trend", "Merchant trend", Some("top 5 merchants by amount, per day"), trend_chart))
    })
}

async fn ingest_panels(pool: &PgPool, w: &Window) -> Result<Markup, UiError> {
    let rate = ingest_rate(pool).await?;
    let lag = consumer_lag(pool).await?;
    let (dead, dead_total) = dead_letters(pool, w).await?;
    let total_rate: f64 = rate.iter().fold(0.0, |a, r| a + r.1);
    let rate_body = html! {
        div.big-stat {
            span.stat-value data-v=(format!("{total_rate:.1}")) { (Unit::Rate.full(total_rate)) }
            span.stat-label { "events/s" }
        }
        @if rate.is_empty() {
            div.chart-empty { "no ingest process has reported in the last 30 s" }
        } @else {
            (charts::hbars(
                "Events per second by ingest process",
                &rate.iter().map(|(id, r, n)| Row {
                    label: id.clone(),
                    values: vec![*r],
                    note: Some(format!("{} events since start", Unit::Count.full(*n as f64))),
                }).collect::<Vec<_>>(),
                &[("events/s", color::PRIMARY)],
                Unit::Rate,
            ))
        }
    };
    let total_lag: i64 = lag.iter().map(|l| l.3).sum();
    let lag_body = if lag.is_empty() {
        html! { div.chart-empty { "no consumer lag recorded yet" } }
    } else {
        let rows: Vec<Row> = lag
            .iter()
            .map(|(g, t, p, l, age)| Row {
                label: format!("{t} · {p}"),
                values: vec![*l as f64],
                note: Some(format!("group {g}, recorded {age:.0} s ago")),
            })
            .collect();
        charts::hbars(
            "Consumer lag per partition",
            &rows,
            &[("lag", color::PENDING)],
            Unit::Count,
        )
    };
    let in_range: i64 = dead.iter().map(|d| d.1).sum();
    let dead_body = html! {
        div.big-stat {
            span.stat-value data-v=(in_range) { (Unit::Count.full(in_range as f64)) }
            span.stat-label { "in range · " (Unit::Count.full(dead_total as f64)) " in total" }
        }
        @if dead.is_empty() {
            (charts::empty())
        } @else {
            (charts::hbars(
                "Dead letters by reason",
                &dead.iter().map(|(k, n)| Row { label: k.clone(), values: vec![*n as f64], note: None }).collect::<Vec<_>>(),
                &[("dead letters", color::FAILED)],
                Unit::Count,
            ))
        }
    };
    Ok(html! {
        (panel("ingest-rate", "Ingest rate", Some("now"), rate_body))
        (panel("consumer-lag", "Consumer lag per partition", Some(&format!("messages behind · total {}", Unit::Count.full(total_lag as f64))), lag_body))
        (panel("dead-letters", "Dead letters", Some(w.range.label()), dead_body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_on_ist_bucket_boundaries() {
        let now: DateTime<Utc> = "2024-01-10T10:07:31Z".parse().unwrap();
        let w = Window::new(Range::Hour, now);
        assert_eq!(
            w.end,
            "2024-01-10T10:08:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(w.buckets().len(), 60);
        // Hours start at :30 UTC in IST.
        let w = Window::new(Range::Week, now);
        assert_eq!(
            w.end,
            "2024-01-10T10:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(w.buckets().len(), 168);
        let w = Window::new(Range::Month, now);
        // 6-hour buckets start at 00, 06, 12, 18 IST = 18:30, 00:30, 06:30, 12:30 UTC.
        assert_eq!(
            w.end,
            "2024-01-10T12:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(w.buckets().len(), 120);
        assert_eq!(w.days().len(), 31);
        let w = Window::new(Range::Hour, now);
        assert_eq!(w.days().len(), 7);
        assert_eq!(w.last_day, "2024-01-10".parse::<NaiveDate>().unwrap());
    }
}
