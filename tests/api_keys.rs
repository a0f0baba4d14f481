//! API keys for machines (`upiflow tokens create|list|revoke`) through the real binary, two
//! real `upiflow web` processes and a real Postgres: a key works on the API with exactly its
//! role, in every process, until it is revoked (then at once nowhere); it is shown once and
//! never again (not in `tokens list`, not in the audit log); expired, forged and malformed
//! keys are refused; `last_used_at` is written at most once a minute; bad input is refused.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use upiflow_web::auth::Role;

fn upiflow(db_url: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("UPIFLOW_DAGS_FOLDER", dir)
        .env("UPIFLOW_HOME", dir.join(".upiflow"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run upiflow")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `tokens ARGS...`, which must succeed: (stdout, stderr).
fn ok(db: &TestDb, dir: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["tokens"];
    all.extend_from_slice(args);
    let out = upiflow(&db.url, dir, &all);
    assert!(
        out.status.success(),
        "{all:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

/// `tokens ARGS...`, which must fail with exit code 1 and no panic: its stderr.
fn refused(db: &TestDb, dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["tokens"];
    all.extend_from_slice(args);
    let out = upiflow(&db.url, dir, &all);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{all:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(text(&out.stdout).trim().is_empty(), "{all:?} printed a key");
    stderr
}

/// `tokens create`: the key, checked to be printed alone on stdout with the hint on stderr.
fn create(db: &TestDb, dir: &Path, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["create", "--name", name, "--role", role];
    args.extend_from_slice(extra);
    let (stdout, stderr) = ok(db, dir, &args);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key alone on stdout: {stdout:?}");
    let key = lines[0].to_string();
    assert!(key.starts_with("upf_") && key.len() == 47, "{key}");
    assert!(stderr.contains("shown this once"), "{stderr}");
    key
}

/// A `upiflow web` process on `db` with `dir` as its DAGs folder.
fn start_web(db: &TestDb, dir: &Path) -> WebProcess {
    let home = dir.join(".upiflow");
    WebProcess::start(
        &db.url,
        &[
            ("UPIFLOW_DAGS_FOLDER", dir.as_os_str()),
            ("UPIFLOW_HOME", home.as_os_str()),
        ],
    )
}

/// One HTTP request: (status, body).
async fn send(
    method: &str,
    url: &str,
    authorization: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let body = match json {
        Some(j) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(j.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = client.request(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, text(&body))
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Every audit-log row, as text.
async fn event_log(db: &TestDb) -> Vec<String> {
    sqlx::query_scalar("SELECT e::text FROM event_log e ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// The SHA-256 of a key in hex (computed by Postgres), to look for in outputs.
async fn hash_hex(db: &TestDb, key: &str) -> String {
    sqlx::query_scalar("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')")
        .bind(key)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_works_with_exactly_its_role_in_every_web_process_until_revoked() {
    let db = fresh_db().await;
    let dir = dags_dir(&[]);
    let scrape = create(&db, &dir, "prometheus", "viewer", &[]);
    let deploy = create(&db, &dir, "deployer", "op", &["--expires-in", "90d"]);
    let (a, b) = (start_web(&db, &dir), start_web(&db, &dir));

    // A viewer key reads (the metrics, the API) in both processes...
    for web in [&a, &b] {
        let (s, body) = send(
            "GET",
            &format!("{}/metrics", web.base),
            Some(&bearer(&scrape)),
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("upiflow_"), "{body}");
        let (s, _) = send(
            "GET",
            &format!("{}/api/v2/pools", web.base),
            Some(&bearer(&scrape)),
            None,
        )
        .await;
        assert_eq!(s, 200);
    }
    // ... and changes nothing: a 403 that says why.
    let pool = r#"{"name": "etl", "slots": 3}"#;
    let (s, body) = send(
        "POST",
        &format!("{}/api/v2/pools", a.base),
        Some(&bearer(&scrape)),
        Some(pool),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body.contains("prometheus") && body.contains("viewer"),
        "{body}"
    );
    // An op key may create a pool; the other process sees it.
    let (s, body) = send(
        "POST",
        &format!("{}/api/v2/pools", a.base),
        Some(&bearer(&deploy)),
        Some(pool),
    )
    .await;
    assert!((200..300).contains(&s), "{s} {body}");
    let (s, body) = send(
        "GET",
        &format!("{}/api/v2/pools/etl", b.base),
        Some(&bearer(&deploy)),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    // ... but not a connection (admin only).
    let conn = r#"{"connection_id": "c1", "conn_type": "postgres"}"#;
    let (s, body) = send(
        "POST",
        &format!("{}/api/v2/connections", b.base),
        Some(&bearer(&deploy)),
        Some(conn),
    )
    .await;
    assert_eq!(s, 403, "{body}");

    // A key does not log out: it is revoked instead, and says so.
    let (s, body) = send(
        "POST",
        &format!("{}/auth/logout", a.base),
        Some(&bearer(&deploy)),
        None,
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.contains("upiflow tokens revoke --name deployer"),
        "{body}"
    );

    // `tokens list` shows each key's name, role, creator and use, never the key.
    let (list, _) = ok(&db, &dir, &["list"]);
    for key in [&scrape, &deploy] {
        let h = hash_hex(&db, key).await;
        assert!(!list.contains(key.as_str()) && !list.contains(&h), "{list}");
    }
    let row = |name: &str| -> String {
        list.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in {list}"))
            .to_string()
    };
    let os_user = std::env::var("LOGNAME")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default();
    let p = row("prometheus");
    assert!(p.contains(" viewer ") && p.contains(&os_user), "{p}");
    let used: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE name = 'prometheus'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(used.is_some(), "a used key has a last use");
    // Four columns of times for deployer: created, last used, expires (no revoked yet).
    let d = row("deployer");
    assert!(d.contains(" op "), "{d}");
    assert_eq!(
        d.matches(':').count(),
        6,
        "created, last used, expires: {d}"
    );

    // Revoked: refused at once by both processes.
    ok(&db, &dir, &["revoke", "--name", "prometheus"]);
    for web in [&a, &b] {
        let (s, _) = send(
            "GET",
            &format!("{}/metrics", web.base),
            Some(&bearer(&scrape)),
            None,
        )
        .await;
        assert_eq!(s, 401);
    }
    // The name can be used again, with a new key; the old one stays dead.
    let again = create(&db, &dir, "prometheus", "viewer", &[]);
    assert_ne!(again, scrape);
    for web in [&a, &b] {
        let (s, _) = send(
            "GET",
            &format!("{}/metrics", web.base),
            Some(&bearer(&again)),
            None,
        )
        .await;
        assert_eq!(s, 200);
        let (s, _) = send(
            "GET",
            &format!("{}/metrics", web.base),
            Some(&bearer(&scrape)),
            None,
        )
        .await;
        assert_eq!(s, 401);
    }
    let (list, _) = ok(&db, &dir, &["list"]);
    assert_eq!(
        list.lines()
            .filter(|l| l.trim_start().starts_with("prometheus "))
            .count(),
        2,
        "{list}"
    );
    assert!(!list.contains(&again) && !list.contains(&scrape), "{list}");

    // The audit log names the key as the owner of what it did, and never holds a key.
    let log = event_log(&db).await;
    for key in [&scrape, &deploy, &again] {
        let h = hash_hex(&db, key).await;
        for row in &log {
            assert!(!row.contains(key.as_str()) && !row.contains(&h), "{row}");
            assert!(!row.contains(&key[4..20]), "{row}");
        }
    }
    // Its rows say a key made them, so a key's name is never taken for a user's.
    let by_key: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT owner FROM event_log WHERE extra->>'auth' = 'api_key' ORDER BY owner",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(by_key, ["deployer", "prometheus"]);
    let owners: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT event, coalesce(owner, ''), outcome FROM event_log WHERE source <> 'cli' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        owners.contains(&("post_pool".into(), "prometheus".into(), "refused".into())),
        "{owners:?}"
    );
    assert!(
        owners.contains(&("post_pool".into(), "deployer".into(), "success".into())),
        "{owners:?}"
    );
    let cli: Vec<(String, String)> = sqlx::query_as(
        "SELECT event, extra->>'name' FROM event_log WHERE source = 'cli' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        cli,
        [
            ("cli_tokens_create", "prometheus"),
            ("cli_tokens_create", "deployer"),
            ("cli_tokens_revoke", "prometheus"),
            ("cli_tokens_create", "prometheus"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

/// An in-process server (the same `serve` the binary runs) on a free port.
async fn serve(db: &TestDb) -> (String, tokio_util::sync::CancellationToken) {
    let state = web_state(&db.pool).await;
    let listener = upiflow_web::listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(upiflow_web::serve(listener, state, async move {
        s.cancelled().await
    }));
    (base, stop)
}

#[tokio::test]
async fn expired_forged_and_malformed_keys_are_refused() {
    let db = fresh_db().await;
    let dir = dags_dir(&[]);
    let (base, stop) = serve(&db).await;
    let metrics = format!("{base}/metrics");

    // Expiring in real time.
    // (5 s, so the first use comes before it even on a loaded machine.)
    let short = create(&db, &dir, "short", "viewer", &["--expires-in", "5s"]);
    let (s, _) = send("GET", &metrics, Some(&bearer(&short)), None).await;
    assert_eq!(s, 200, "valid before it expires");
    // Wait until the database's clock has passed the expiry.
    let started = std::time::Instant::now();
    loop {
        let expired: bool =
            sqlx::query_scalar("SELECT expires_at <= now() FROM api_keys WHERE name = 'short'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if expired {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, _) = send("GET", &metrics, Some(&bearer(&short)), None).await;
    assert_eq!(s, 401, "expired");
    let (list, _) = ok(&db, &dir, &["list"]);
    assert!(list.contains("(expired)"), "{list}");
    // An expired key still holds its name until it is revoked.
    let e = refused(
        &db,
        &dir,
        &["create", "--name", "short", "--role", "viewer"],
    );
    assert!(e.contains("exists already") && e.contains("revoke"), "{e}");
    ok(&db, &dir, &["revoke", "--name", "short"]);
    create(&db, &dir, "short", "viewer", &[]);

    // A forged key: the right prefix and shape, but never made.
    let real = create(&db, &dir, "real", "admin", &[]);
    let (s, _) = send("GET", &metrics, Some(&bearer(&real)), None).await;
    assert_eq!(s, 200);
    let mut forged = real.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for bad in [
        forged.as_str(),
        "upf_",
        "upf_short",
        &format!("{real}A"),
        &format!("upf_{}", "!".repeat(43)),
        &real[..real.len() - 1],
    ] {
        let (s, body) = send("GET", &metrics, Some(&bearer(bad)), None).await;
        assert_eq!(s, 401, "{bad}: {body}");
        let (s, _) = send(
            "GET",
            &format!("{base}/api/v2/pools"),
            Some(&bearer(bad)),
            None,
        )
        .await;
        assert_eq!(s, 401, "{bad}");
    }
    // A key is not a password: Basic with it is refused.
    let (s, _) = send("GET", &metrics, Some(&basic("real", &real)), None).await;
    assert_eq!(s, 401);
    stop.cancel();
}

#[tokio::test]
async fn last_use_is_written_at_most_once_a_minute() {
    let db = fresh_db().await;
    let (base, stop) = serve(&db).await;
    let key = upiflow_web::api_keys::create(&db.pool, "scraper", Role::Viewer, "test", None)
        .await
        .unwrap();
    let last = async || -> Option<chrono::DateTime<chrono::Utc>> {
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE name = 'scraper'")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    let set_last = async |ago: i32| {
        sqlx::query("UPDATE api_keys SET last_used_at = now() - $1 * interval '1 second'")
            .bind(ago)
            .execute(&db.pool)
            .await
            .unwrap();
    };
    let scrape = async || {
        let (s, _) = send("GET", &format!("{base}/metrics"), Some(&bearer(&key)), None).await;
        assert_eq!(s, 200);
    };
    assert_eq!(last().await, None, "never used");
    scrape().await;
    let first = last().await.expect("the first use is recorded");
    scrape().await;
    assert_eq!(
        last().await,
        Some(first),
        "a second use within a minute writes nothing"
    );
    set_last(30).await;
    let thirty = last().await;
    scrape().await;
    assert_eq!(last().await, thirty, "30 s ago: not written again");
    set_last(61).await;
    let old = last().await.unwrap();
    scrape().await;
    let now = last().await.unwrap();
    assert!(now > old + chrono::Duration::seconds(60), "{old} -> {now}");
    stop.cancel();
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let db = fresh_db().await;
    let dir = dags_dir(&[]);
    let long = "n".repeat(65);
    for name in ["", "has space", "slash/x", "ключ", long.as_str()] {
        let e = refused(&db, &dir, &["create", "--name", name, "--role", "viewer"]);
        assert!(e.contains("1-64 characters"), "{name:?}: {e}");
        let e = refused(&db, &dir, &["revoke", "--name", name]);
        assert!(e.contains("1-64 characters"), "{name:?}: {e}");
    }
    for (expiry, says) in [
        ("soon", "expected a duration"),
        ("", "expected a duration"),
        ("-5d", "expected a duration"),
        ("0s", "at least one second"),
        ("1000y", "at most"),
    ] {
        let flag = format!("--expires-in={expiry}");
        let e = refused(
            &db,
            &dir,
            &["create", "--name", "x", "--role", "viewer", &flag],
        );
        assert!(
            e.contains("--expires-in") && e.contains(says),
            "{expiry:?}: {e}"
        );
    }
    let e = refused(&db, &dir, &["revoke", "--name", "nobody"]);
    assert!(e.contains("no API key named `nobody`"), "{e}");
    let key = create(&db, &dir, "ci", "user", &[]);
    let e = refused(&db, &dir, &["create", "--name", "ci", "--role", "admin"]);
    assert!(
        e.contains("exists already") && e.contains("upiflow tokens revoke --name ci"),
        "{e}"
    );
    ok(&db, &dir, &["revoke", "--name", "ci"]);
    let e = refused(&db, &dir, &["revoke", "--name", "ci"]);
    assert!(e.contains("revoked already"), "{e}");
    // An unknown role is clap's error (exit 2), naming the roles there are.
    let out = upiflow(
        &db.url,
        &dir,
        &["tokens", "create", "--name", "x", "--role", "root"],
    );
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(e.contains("admin") && e.contains("viewer"), "{e}");

    // Only `ci` was ever stored; the refusals are audited as failed, without any key.
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM api_keys")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(names, ["ci"]);
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM event_log WHERE event LIKE 'cli_tokens_%' AND outcome = 'failed'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(failed, 5 * 2 + 5 + 1 + 1 + 1);
    let h = hash_hex(&db, &key).await;
    for row in event_log(&db).await {
        assert!(!row.contains(&key) && !row.contains(&h), "{row}");
    }
}
