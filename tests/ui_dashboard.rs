//! The payments dashboard and /metrics in-process (tower `oneshot`) against a real Postgres:
//! panels show exactly the inserted numbers (read from the SVG's data attributes), a status
//! change moves exactly one count, empty ranges say so, bad ranges are a 400 page, sessions
//! and credentials are required, and /metrics is parseable exposition with known values.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use chrono::{DateTime, DurationRound, NaiveDate, Utc};
use common::*;
use sqlx::PgPool;
use tower::ServiceExt;
use upiflow_tasks::upi::ingest::writer::{self, Row};
use upiflow_web::auth::{self, Role};

struct Ui {
    app: axum::Router,
    db: TestDb,
    cookie: String,
}

async fn ui() -> Ui {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let state = web_state(&db.pool).await;
    let c = upiflow_web::ui::session::start(
        &state.token_key,
        "vic",
        upiflow_web::auth::Grant {
            role: Role::Viewer,
            version: 0,
        },
        false,
    )
    .unwrap();
    Ui {
        app: upiflow_web::app(state),
        cookie: format!("{}={}", c.name(), c.value()),
        db,
    }
}

impl Ui {
    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::builder().method("GET").uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A page as the signed-in viewer; it must answer 200.
    async fn page(&self, uri: &str) -> String {
        let (status, _, body) = self.get(uri, &[("cookie", &self.cookie)]).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        body
    }
}

/// The markup of panel `id` (from its `data-panel` to the end of its section).
fn panel<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("data-panel=\"{id}\""))
        .unwrap_or_else(|| panic!("no panel {id}"));
    let end = html[at..].find("</section>").map_or(html.len(), |e| at + e);
    &html[at..end]
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// `key -> data-v` of every element of a panel that has `key_attr` (data-x, data-slice,
/// data-row + data-col).
fn values(panel: &str, key_attr: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for tag in panel.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        if let (Some(k), Some(v)) = (attr(tag, key_attr), attr(tag, "data-v")) {
            let k = match attr(tag, "data-col") {
                Some(c) if key_attr == "data-row" => format!("{k}/{c}"),
                _ => k.to_string(),
            };
            out.insert(k, v.to_string());
        }
    }
    out
}

fn sum(v: &BTreeMap<String, String>) -> f64 {
    v.values().filter_map(|s| s.parse::<f64>().ok()).sum()
}

fn minute_key(t: DateTime<Utc>) -> String {
    t.duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ist_date(t: DateTime<Utc>) -> NaiveDate {
    upiflow_tasks::upi::dashboard::ist_date(t)
}

async fn txn(
    pool: &PgPool,
    id: &str,
    payer: &str,
    payee: &str,
    amount: f64,
    status: &str,
    at: DateTime<Utc>,
) {
    sqlx::query(
        "INSERT INTO clean_upi_transactions
            (txn_id, payer, payee, amount, status, event_time, kafka_partition, kafka_offset)
         VALUES ($1, $2, $3, $4::numeric, $5, $6, 0, 0)",
    )
    .bind(id)
    .bind(payer)
    .bind(payee)
    .bind(amount)
    .bind(status)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

/// A minute boundary far enough from now that a test's events stay inside "the last hour"
/// and their minutes are whole.
fn minutes_ago(n: i64) -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::minutes(n))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
        + chrono::Duration::seconds(20)
}

#[tokio::test]
async fn live_panels_show_the_inserted_numbers() {
    let ui = ui().await;
    let pool = &ui.db.pool;
    let (t1, t2) = (minutes_ago(12), minutes_ago(5));
    for i in 0..3 {
        txn(
            pool,
            &format!("a{i}"),
            "u1@oksbi",
            "shop@upi",
            100.0,
            "SUCCESS",
            t1,
        )
        .await;
    }
    txn(pool, "a3", "u2@ybl", "shop@upi", 40.0, "FAILED", t1).await;
    txn(pool, "b0", "u3@ybl", "cafe@upi", 25.5, "SUCCESS", t2).await;
    txn(pool, "b1", "u4@ybl", "cafe@upi", 25.5, "SUCCESS", t2).await;
    txn(pool, "b2", "u5@oksbi", "cafe@upi", 9.0, "PENDING", t2).await;

    let html = ui.page("/payments?range=1h").await;
    let tpm = values(panel(&html, "tpm"), "data-x");
    assert_eq!(tpm.len(), 60, "one point per minute of the hour");
    assert_eq!(tpm[&minute_key(t1)], "4");
    assert_eq!(tpm[&minute_key(t2)], "3");
    assert_eq!(sum(&tpm), 7.0);
    assert!(panel(&html, "tpm").contains("<title>"), "tooltips");
    assert!(panel(&html, "tpm").contains("Transactions: 4"));

    let failures = values(panel(&html, "failures"), "data-x");
    assert_eq!(failures[&minute_key(t1)], "1");
    assert_eq!(sum(&failures), 1.0);

    let split = values(panel(&html, "status"), "data-slice");
    assert_eq!(
        split,
        BTreeMap::from([
            ("FAILED".into(), "1".into()),
            ("PENDING".into(), "1".into()),
            ("SUCCESS".into(), "5".into()),
        ])
    );

    // Banks, biggest first, values per status (SUCCESS, FAILED, PENDING).
    let banks = values(panel(&html, "banks"), "data-x");
    assert_eq!(banks["oksbi"], "3,0,1");
    assert_eq!(banks["ybl"], "2,1,0");
    let p = panel(&html, "banks");
    assert!(p.find("data-x=\"oksbi\"") < p.find("data-x=\"ybl\""));

    let totals = panel(&html, "totals");
    assert!(totals.contains("data-v=\"7\""), "{totals}");

    // Heatmap: the IST day and hour of the events.
    let heat = values(panel(&html, "heatmap"), "data-row");
    let cell = |t: DateTime<Utc>| {
        let local = t.with_timezone(&chrono::FixedOffset::east_opt(19800).unwrap());
        format!("{}/{}", ist_date(t), chrono::Timelike::hour(&local))
    };
    let (c1, c2) = (cell(t1), cell(t2));
    if c1 == c2 {
        assert_eq!(heat[&c1], "7");
    } else {
        assert_eq!((heat[&c1].as_str(), heat[&c2].as_str()), ("4", "3"));
    }
    assert_eq!(sum(&heat), 7.0);

    // Today's top merchants by amount (today in IST; the events may straddle midnight).
    let top = values(panel(&html, "top-merchants"), "data-x");
    if ist_date(t1) == ist_date(Utc::now()) && ist_date(t2) == ist_date(Utc::now()) {
        assert_eq!(top["shop@upi"], "340");
        assert_eq!(top["cafe@upi"], "60");
        let p = panel(&html, "top-merchants");
        assert!(p.find("shop@upi") < p.find("cafe@upi"));
        assert!(p.contains("4 transactions"));
    }

    // The same numbers over 7 days (read from the hourly rollup).
    let html = ui.page("/payments?range=7d").await;
    assert_eq!(sum(&values(panel(&html, "tpm"), "data-x")), 7.0);
    assert_eq!(values(panel(&html, "status"), "data-slice")["SUCCESS"], "5");
}

#[tokio::test]
async fn daily_and_ingest_panels_show_their_tables() {
    let ui = ui().await;
    let pool = &ui.db.pool;
    let today = ist_date(Utc::now());
    let (d1, d2) = (
        today - chrono::Duration::days(2),
        today - chrono::Duration::days(1),
    );
    sqlx::query(
        "INSERT INTO daily_upi_summary (date, total_txns, success_txns, failed_txns, pending_txns, total_amount)
         VALUES ($1, 10, 7, 2, 1, 1234.50), ($2, 20, 15, 4, 1, 99.99)",
    )
    .bind(d1)
    .bind(d2)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO merchant_upi_summary (merchant, date, total_txns, amount)
         VALUES ('big@upi', $1, 3, 1000), ('big@upi', $2, 1, 50), ('small@upi', $2, 2, 10)",
    )
    .bind(d1)
    .bind(d2)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ingest_instances (instance_id, consumer_group, kafka_topic, events_total, events_per_sec)
         VALUES ('ingest-a', 'g', 'upi_transactions', 5000, 123.5),
                ('ingest-dead', 'g', 'upi_transactions', 1, 99)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE ingest_instances SET heartbeat_at = now() - interval '5 minutes' WHERE instance_id = 'ingest-dead'")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO ingest_lag (consumer_group, kafka_topic, kafka_partition, high_watermark, next_offset, lag)
         VALUES ('g', 'upi_transactions', 0, 10, 5, 5), ('g', 'upi_transactions', 1, 10, 3, 7)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ingest_offsets (consumer_group, kafka_topic, kafka_partition, next_offset, max_event_time, watermark)
         VALUES ('g', 'upi_transactions', 0, 5, now() - interval '65 seconds', now() - interval '70 seconds')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dead_letter_upi_transactions (kafka_topic, kafka_partition, kafka_offset, payload, reason)
         VALUES ('upi_transactions', 0, 1, '{}', 'unknown status `DONE`'),
                ('upi_transactions', 0, 2, '{}', 'unknown status `X`'),
                ('upi_transactions', 1, 1, '{', 'invalid JSON: EOF while parsing')",
    )
    .execute(pool)
    .await
    .unwrap();

    let html = ui.page("/payments?range=24h").await;
    let totals = values(panel(&html, "daily-totals"), "data-x");
    assert_eq!(totals.len(), 7, "the last 7 days at least");
    assert_eq!(totals[&d1.to_string()], "10");
    assert_eq!(totals[&d2.to_string()], "20");
    assert_eq!(
        totals[&today.to_string()],
        "",
        "today is not summarised yet"
    );
    let status = values(panel(&html, "daily-status"), "data-x");
    assert_eq!(status[&d1.to_string()], "7,2,1");
    assert_eq!(status[&d2.to_string()], "15,4,1");
    let amount = values(panel(&html, "daily-amount"), "data-x");
    assert_eq!(amount[&d1.to_string()], "1234.50");
    assert!(panel(&html, "daily-amount").contains("₹1,234.50"));
    let trend = values(panel(&html, "merchant-trend"), "data-x");
    // Series in order of amount: big@upi, then small@upi.
    assert_eq!(trend[&d1.to_string()], "1000,0");
    assert_eq!(trend[&d2.to_string()], "50,10");

    let rate = panel(&html, "ingest-rate");
    assert!(rate.contains("data-v=\"123.5\""), "{rate}");
    assert!(rate.contains("ingest-a") && !rate.contains("ingest-dead"));
    let lag = values(panel(&html, "consumer-lag"), "data-x");
    assert_eq!(lag["upi_transactions · 0"], "5");
    assert_eq!(lag["upi_transactions · 1"], "7");
    // Each partition's event-time watermark, under its lag; 1 has none yet.
    let lag_panel = panel(&html, "consumer-lag");
    assert!(lag_panel.contains("(1m 10s behind now)"), "{lag_panel}");
    assert!(
        lag_panel.contains("no event-time watermark yet"),
        "{lag_panel}"
    );
    let dead = panel(&html, "dead-letters");
    assert_eq!(values(dead, "data-x")["unknown status"], "2");
    assert_eq!(values(dead, "data-x")["invalid JSON"], "1");
    assert!(dead.contains("3 in total"));
}

fn event(txn: &str, status: &str, at: DateTime<Utc>) -> Option<Vec<u8>> {
    Some(
        serde_json::json!({
            "txn_id": txn, "payer": "user1@oksbi", "payee": "shop@upi", "amount": 10.0,
            "status": status, "timestamp": at.to_rfc3339(),
        })
        .to_string()
        .into_bytes(),
    )
}

#[tokio::test]
async fn a_status_change_moves_exactly_one_count() {
    let ui = ui().await;
    let pool = &ui.db.pool;
    let (t1, t2) = (minutes_ago(20), minutes_ago(3));
    const OUT_OF_ORDER: Duration = Duration::from_secs(7);
    let row = |offset: i64, payload| Row {
        partition: 0,
        offset,
        kafka_timestamp: None,
        payload,
    };
    // Through the ingest writer: two transactions, one PENDING.
    writer::write_batch(
        pool,
        "g",
        "upi_transactions",
        &[
            row(0, event("t-1", "PENDING", t1)),
            row(1, event("t-2", "SUCCESS", t1)),
        ],
        &BTreeMap::new(),
        OUT_OF_ORDER,
    )
    .await
    .unwrap();
    let split = |html: &str| values(panel(html, "status"), "data-slice");
    let html = ui.page("/payments?range=1h").await;
    assert_eq!(split(&html)["PENDING"], "1");
    assert_eq!(split(&html)["SUCCESS"], "1");

    // t-1 succeeds later (in another minute): exactly one count moves.
    writer::write_batch(
        pool,
        "g",
        "upi_transactions",
        &[row(2, event("t-1", "SUCCESS", t2))],
        &BTreeMap::from([(0, 2)]),
        OUT_OF_ORDER,
    )
    .await
    .unwrap();
    // A stale event (older than what is stored) changes nothing.
    writer::write_batch(
        pool,
        "g",
        "upi_transactions",
        &[row(3, event("t-1", "FAILED", t1))],
        &BTreeMap::from([(0, 3)]),
        OUT_OF_ORDER,
    )
    .await
    .unwrap();
    // The partition's event-time watermark: the largest event time stored (t2) minus the
    // bound, moved in the offsets' transaction; the stale event did not move it back.
    let (max_event, mark): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT max_event_time, watermark FROM ingest_offsets
         WHERE consumer_group = 'g' AND kafka_topic = 'upi_transactions' AND kafka_partition = 0",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(max_event.timestamp(), t2.timestamp());
    assert_eq!(mark.timestamp(), t2.timestamp() - 7);
    for range in ["1h", "24h", "7d"] {
        let html = ui.page(&format!("/payments?range={range}")).await;
        let s = split(&html);
        assert_eq!(
            (
                s["SUCCESS"].as_str(),
                s["FAILED"].as_str(),
                s["PENDING"].as_str()
            ),
            ("2", "0", "0"),
            "{range}"
        );
        assert_eq!(sum(&values(panel(&html, "tpm"), "data-x")), 2.0, "{range}");
    }
    let html = ui.page("/payments?range=1h").await;
    let tpm = values(panel(&html, "tpm"), "data-x");
    assert_eq!(tpm[&minute_key(t1)], "1", "t-1 left its first minute");
    assert_eq!(tpm[&minute_key(t2)], "1", "and counts in its new one");
    assert_eq!(values(panel(&html, "banks"), "data-x")["oksbi"], "2,0,0");

    // The rollups agree with the clean table exactly, whatever the path.
    let disagree: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
            SELECT date_trunc('minute', event_time) m, status, count(*) n FROM clean_upi_transactions GROUP BY 1, 2
         ) c FULL JOIN (SELECT minute m, status, sum(txns) n FROM upi_rollup_minute GROUP BY 1, 2 HAVING sum(txns) <> 0) r
           USING (m, status)
         WHERE c.n IS DISTINCT FROM r.n",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(disagree, 0);
}

#[tokio::test]
async fn an_empty_range_says_so() {
    let ui = ui().await;
    // Only old data: 40 days ago, outside every range.
    txn(
        &ui.db.pool,
        "old",
        "u@oksbi",
        "m@upi",
        5.0,
        "SUCCESS",
        Utc::now() - chrono::Duration::days(40),
    )
    .await;
    for range in ["1h", "30d"] {
        let html = ui.page(&format!("/payments?range={range}")).await;
        for id in [
            "tpm",
            "status",
            "failures",
            "banks",
            "heatmap",
            "top-merchants",
            "daily-totals",
            "daily-status",
            "daily-amount",
            "merchant-trend",
            "dead-letters",
        ] {
            let p = panel(&html, id);
            assert!(p.contains("no data in this range"), "{range} {id}: {p}");
            assert!(!p.contains("<svg"), "{range} {id}: no broken chart");
        }
    }
}

#[tokio::test]
async fn fragments_refresh_the_panels_alone() {
    let ui = ui().await;
    txn(
        &ui.db.pool,
        "x",
        "u@ybl",
        "m@upi",
        1.0,
        "SUCCESS",
        minutes_ago(30),
    )
    .await;
    let html = ui.page("/payments?range=6h").await;
    for part in ["live", "daily", "ingest"] {
        assert!(
            html.contains(&format!(
                "data-refresh=\"/payments/panels/{part}?range=6h\""
            )),
            "{part}"
        );
    }
    assert!(html.contains("<option value=\"6h\" selected"));
    let (status, _, frag) = ui
        .get(
            "/payments/panels/live?range=6h",
            &[("cookie", &ui.cookie), ("x-fragment", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(frag.contains("data-panel=\"tpm\"") && !frag.contains("<html"));
    assert_eq!(values(panel(&frag, "tpm"), "data-x").len(), 72);
}

#[tokio::test]
async fn bad_ranges_are_a_400_page_and_sessions_are_required() {
    let ui = ui().await;
    for uri in [
        "/payments?range=2h",
        "/payments?range=",
        "/payments?range=%3Cscript%3E",
        "/payments/panels/live?range=1y",
    ] {
        let (status, _, body) = ui.get(uri, &[("cookie", &ui.cookie)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body.contains("<html") && body.contains("unknown time range"),
            "{uri}: {body}"
        );
        assert!(!body.contains("<script>"));
    }
    let (status, _, _) = ui
        .get("/payments/panels/weekly", &[("cookie", &ui.cookie)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    for uri in ["/payments", "/payments/panels/live?range=1h"] {
        let (status, headers, _) = ui.get(uri, &[]).await;
        assert!(status.is_redirection(), "{uri}: {status}");
        let to = headers["location"].to_str().unwrap();
        assert!(to.starts_with("/login?next="), "{to}");
    }
}

// ---------------------------------------------------------------------------------------
// /metrics

/// Parses the text exposition format (0.0.4): every sample line must be `name{labels} value`
/// with a `# TYPE` for its family. Returns `name{labels}` -> value.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("labels in braces");
            for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no TYPE for {line}");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        samples.insert(series.to_string(), v);
    }
    samples
}

#[tokio::test]
async fn metrics_need_credentials_and_report_known_values() {
    let ui = ui().await;
    let pool = &ui.db.pool;

    // Without credentials (and a browser session is not enough): 401.
    let (status, headers, _) = ui.get("/metrics", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    let (status, _, _) = ui.get("/metrics", &[("cookie", &ui.cookie)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = ui
        .get(
            "/metrics",
            &[("authorization", &basic("vic", "wrong-password"))],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A DAG with runs and tries of known durations.
    let dir = dags_dir(&[(
        "d.toml",
        "dag_id = \"d\"\nschedule = \"none\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "d.toml");
    let hash = {
        let mut conn = pool.acquire().await.unwrap();
        upiflow_engine::store::dags::sync(&mut conn, &dag)
            .await
            .unwrap()
    };
    let mut ti_ids = Vec::new();
    for (i, state) in ["success", "running", "running", "failed"]
        .iter()
        .enumerate()
    {
        let run_pk: i64 = sqlx::query_scalar(
            "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start, data_interval_end,
                                   run_type, state, dag_hash)
             VALUES ('d', $1, $2, $2, $2, 'manual', $3::run_state, $4) RETURNING id",
        )
        .bind(format!("r{i}"))
        .bind(Utc::now() - chrono::Duration::days(i as i64 + 1))
        .bind(state)
        .bind(&hash)
        .fetch_one(pool)
        .await
        .unwrap();
        let ti_state = ["success", "queued", "scheduled", "failed"][i];
        let ti: i64 = sqlx::query_scalar(
            "INSERT INTO task_instances (run_pk, dag_id, run_id, task_id, state, max_tries)
             VALUES ($1, 'd', $2, 'a', $3::ti_state, 1) RETURNING id",
        )
        .bind(run_pk)
        .bind(format!("r{i}"))
        .bind(ti_state)
        .fetch_one(pool)
        .await
        .unwrap();
        ti_ids.push(ti);
    }
    let try_of = |ti: i64, n: i32, secs: f64, outcome: &'static str| {
        sqlx::query(
            "INSERT INTO task_tries (ti_id, try_number, worker, started_at, ended_at, outcome)
             VALUES ($1, $2, 'w', now() - $3 * interval '1 second', now(), $4::try_outcome)",
        )
        .bind(ti)
        .bind(n)
        .bind(secs)
        .bind(outcome)
        .execute(pool)
    };
    try_of(ti_ids[0], 1, 0.3, "success").await.unwrap();
    try_of(ti_ids[3], 1, 2.0, "failed").await.unwrap();
    try_of(ti_ids[3], 2, 45.0, "timed_out").await.unwrap();

    sqlx::query(
        "INSERT INTO ingest_instances (instance_id, consumer_group, kafka_topic, events_per_sec)
         VALUES ('ingest-a', 'g', 'upi_transactions', 250.25)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ingest_lag (consumer_group, kafka_topic, kafka_partition, high_watermark, next_offset, lag)
         VALUES ('g', 'upi_transactions', 2, 100, 58, 42)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ingest_offsets (consumer_group, kafka_topic, kafka_partition, next_offset, max_event_time, watermark)
         VALUES ('g', 'upi_transactions', 2, 58, '2026-11-29T10:00:05Z', '2026-11-29T10:00:00Z')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO dead_letter_upi_transactions (kafka_topic, kafka_partition, kafka_offset, payload, reason)
         SELECT 'upi_transactions', 0, i, '{}', 'invalid JSON' FROM generate_series(1, 3) i",
    )
    .execute(pool)
    .await
    .unwrap();

    // A real scheduler records its loops.
    let empty = dags_dir(&[]);
    let stop = tokio_util::sync::CancellationToken::new();
    let scheduler = upiflow_engine::scheduler::Scheduler::new(
        pool.clone(),
        upiflow_tasks::registry(),
        upiflow_engine::scheduler::SchedulerConfig::new(empty),
    );
    let handle = tokio::spawn(scheduler.run(stop.clone()));
    let mut looped = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM scheduler_loops")
            .fetch_one(pool)
            .await
            .unwrap();
        if n > 0 {
            looped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert!(looped, "the scheduler records its loop time");

    let auth = basic("vic", "viewer-password");
    let scrape = || async {
        let (status, headers, body) = ui.get("/metrics", &[("authorization", &auth)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            headers["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        (parse_exposition(&body), body)
    };
    let (m, body) = scrape().await;
    let at = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{body}"));
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="0.1"}"#),
        0.0
    );
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="0.5"}"#),
        1.0
    );
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="2.5"}"#),
        2.0
    );
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="30"}"#),
        2.0
    );
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="60"}"#),
        3.0
    );
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="+Inf"}"#),
        3.0
    );
    assert_eq!(
        at(r#"upiflow_task_try_duration_seconds_count{dag_id="d"}"#),
        3.0
    );
    assert!((at(r#"upiflow_task_try_duration_seconds_sum{dag_id="d"}"#) - 47.3).abs() < 1e-6);
    assert_eq!(
        at(r#"upiflow_task_tries_total{dag_id="d",outcome="success"}"#),
        1.0
    );
    assert_eq!(
        at(r#"upiflow_task_tries_total{dag_id="d",outcome="failed"}"#),
        1.0
    );
    assert_eq!(
        at(r#"upiflow_task_tries_total{dag_id="d",outcome="timed_out"}"#),
        1.0
    );
    assert_eq!(at(r#"upiflow_dag_runs{dag_id="d",state="running"}"#), 2.0);
    assert_eq!(at(r#"upiflow_dag_runs{dag_id="d",state="success"}"#), 1.0);
    assert_eq!(at(r#"upiflow_dag_runs{dag_id="d",state="queued"}"#), 0.0);
    assert_eq!(at(r#"upiflow_task_queue_depth{state="scheduled"}"#), 1.0);
    assert_eq!(at(r#"upiflow_task_queue_depth{state="queued"}"#), 1.0);
    let lag = at("upiflow_scheduler_loop_lag_seconds");
    assert!((0.0..60.0).contains(&lag), "{lag}");
    assert!(m.contains_key("upiflow_scheduler_loop_duration_seconds"));
    assert_eq!(
        at(r#"upiflow_ingest_events_per_second{ingest_instance="ingest-a"}"#),
        250.25
    );
    assert_eq!(
        at(
            r#"upiflow_ingest_consumer_lag{consumer_group="g",topic="upi_transactions",partition="2"}"#
        ),
        42.0
    );
    assert_eq!(
        at(
            r#"upiflow_ingest_event_time_watermark_seconds{consumer_group="g",topic="upi_transactions",partition="2"}"#
        ),
        1_795_946_400.0,
        "2026-11-29T10:00:00Z"
    );
    assert_eq!(at("upiflow_ingest_dead_letters_total"), 3.0);

    // Scraping again counts nothing twice; a new try counts once.
    let (m, _) = scrape().await;
    assert_eq!(
        m[r#"upiflow_task_try_duration_seconds_count{dag_id="d"}"#],
        3.0
    );
    try_of(ti_ids[1], 1, 0.05, "success").await.unwrap();
    let (m, _) = scrape().await;
    assert_eq!(
        m[r#"upiflow_task_try_duration_seconds_count{dag_id="d"}"#],
        4.0
    );
    assert_eq!(
        m[r#"upiflow_task_try_duration_seconds_bucket{dag_id="d",le="0.1"}"#],
        1.0
    );
    assert_eq!(
        m[r#"upiflow_task_tries_total{dag_id="d",outcome="success"}"#],
        2.0
    );
}

/// The seam: a web without a product has no dashboard routes and no product metrics, and
/// still serves the orchestrator's own.
#[tokio::test]
async fn without_a_product_there_is_no_dashboard_and_no_ingest_metrics() {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO dead_letter_upi_transactions (kafka_topic, kafka_partition, kafka_offset, payload, reason)
         VALUES ('upi_transactions', 0, 1, '{}', 'invalid JSON: x')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    let c = upiflow_web::ui::session::start(
        &state.token_key,
        "vic",
        upiflow_web::auth::Grant {
            role: Role::Viewer,
            version: 0,
        },
        false,
    )
    .unwrap();
    let ui = Ui {
        app: upiflow_web::app(state),
        cookie: format!("{}={}", c.name(), c.value()),
        db,
    };
    for uri in ["/payments", "/payments?range=1h", "/payments/panels/live"] {
        let (status, _, _) = ui.get(uri, &[("cookie", &ui.cookie)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    // No link to a page that is not there.
    let (status, _, home) = ui.get("/", &[("cookie", &ui.cookie)]).await;
    assert_eq!(status, StatusCode::OK, "{home}");
    assert!(home.contains(">Backfills<"), "{home}");
    assert!(!home.contains("href=\"/payments\""), "{home}");
    let (status, _, body) = ui
        .get(
            "/metrics",
            &[("authorization", &basic("vic", "viewer-password"))],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("# TYPE upiflow_task_queue_depth gauge"),
        "{body}"
    );
    assert!(!body.contains("upiflow_ingest"), "{body}");

    // The same database with the product registered: the page and the families are back.
    let state = web_state(&ui.db.pool).await;
    let app = upiflow_web::app(state);
    let with = Ui {
        app,
        cookie: ui.cookie.clone(),
        db: TestDb {
            pool: ui.db.pool.clone(),
            url: ui.db.url.clone(),
        },
    };
    with.page("/payments").await;
    let home = with.page("/").await;
    assert!(home.contains("href=\"/payments\">Payments<"), "{home}");
    let (_, _, body) = with
        .get(
            "/metrics",
            &[("authorization", &basic("vic", "viewer-password"))],
        )
        .await;
    assert!(
        body.contains("upiflow_ingest_dead_letters_total 1"),
        "{body}"
    );
}
