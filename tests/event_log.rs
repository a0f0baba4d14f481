//! The audit log against a real Postgres: every changing action of the CLI (the real binary),
//! the API and the UI (in-process, and over a real socket for the client's address) writes
//! one `event_log` row with its user, source and outcome; refusals are logged as refused;
//! `GET /api/v2/eventLogs` filters and pages exactly; the `/events` page shows the rows to a
//! viewer.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};

const DAG: &str = "dag_id = \"d\"\nschedule = \"@daily\"\nstart_date = \"2024-01-01\"\n\
    catchup = false\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n";

struct Env {
    db: TestDb,
    app: axum::Router,
    dir: std::path::PathBuf,
}

async fn env() -> Env {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let dir = dags_dir(&[("d.toml", DAG)]);
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &load(&dir, "d.toml"))
        .await
        .unwrap();
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    Env {
        app: upiflow_web::app(state),
        db,
        dir,
    }
}

/// One row of `event_log`, as the tests compare it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    id: i64,
    event: String,
    owner: Option<String>,
    dag_id: Option<String>,
    run_id: Option<String>,
    task_id: Option<String>,
    logical_date: Option<chrono::DateTime<chrono::Utc>>,
    source: String,
    remote_addr: Option<String>,
    outcome: String,
    extra: Option<Value>,
}

async fn rows_after(pool: &PgPool, after_id: i64) -> Vec<Row> {
    sqlx::query_as(
        "SELECT id, event, owner, dag_id, run_id, task_id, logical_date, source, remote_addr, \
         outcome, extra FROM event_log WHERE id > $1 ORDER BY id",
    )
    .bind(after_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn last_id(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM event_log")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The one row written since `since`, which must be exactly one.
async fn one_new(pool: &PgPool, since: &mut i64, what: &str) -> Row {
    let rows = rows_after(pool, *since).await;
    assert_eq!(rows.len(), 1, "{what}: expected one new row, got {rows:#?}");
    *since = rows[0].id;
    rows.into_iter().next().unwrap()
}

fn whole_text(r: &Row) -> String {
    format!("{r:?}")
}

impl Env {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A UI request: (status, location, set-cookies, body).
    async fn form(
        &self,
        method: &str,
        uri: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> (StatusCode, Option<String>, Vec<String>, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let req = match form {
            Some(f) => req
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(f.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let cookies = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .collect();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            location,
            cookies,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// Logs in through the form; `Some(session cookie)` on success.
    async fn login(&self, user: &str, password: &str) -> Option<String> {
        let (_, _, cookies, page) = self.form("GET", "/login", None, None).await;
        let twin = cookies
            .iter()
            .find(|c| c.starts_with("upiflow_login_csrf="))
            .unwrap()
            .clone();
        let csrf = hidden(&page, "csrf");
        let form = format!("username={user}&password={password}&csrf={csrf}&next=%2F");
        let (status, _, cookies, _) = self.form("POST", "/login", Some(&twin), Some(&form)).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        cookies
            .into_iter()
            .find(|c| c.starts_with("upiflow_session=") && c.len() > "upiflow_session=".len())
    }
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).expect("hidden input") + marker.len();
    page[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn every_api_change_and_sign_in_is_logged_with_its_user_and_refusals_as_refused() {
    let e = env().await;
    let pool = &e.db.pool;
    let admin = basic("ada", "admin-password");
    let viewer = basic("vic", "viewer-password");
    let mut since = last_id(pool).await;

    // Reads write nothing.
    for uri in ["/api/v2/dags", "/api/v2/dags/d", "/api/v2/eventLogs"] {
        let (status, _) = e.call("GET", uri, Some(&admin), None).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
    assert!(rows_after(pool, since).await.is_empty());

    // Trigger.
    let (status, run) = e
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": "2024-01-02T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_string();
    let r = one_new(pool, &mut since, "trigger").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.source.as_str(),
            r.outcome.as_str()
        ),
        ("trigger_dag_run", Some("ada"), "api", "success")
    );
    assert_eq!(r.dag_id.as_deref(), Some("d"));
    assert_eq!(
        r.logical_date.map(|d| d.to_rfc3339()),
        Some("2024-01-02T00:00:00+00:00".into())
    );
    assert_eq!(r.extra.as_ref().unwrap()["method"], "POST");

    // Pause.
    let (status, _) = e
        .call(
            "PATCH",
            "/api/v2/dags/d",
            Some(&admin),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = one_new(pool, &mut since, "pause").await;
    assert_eq!(
        (r.event.as_str(), r.dag_id.as_deref()),
        ("patch_dag", Some("d"))
    );
    assert_eq!(r.extra.as_ref().unwrap()["is_paused"], true);

    // Mark: the target is in the path.
    let (status, body) = e
        .call(
            "PATCH",
            &format!("/api/v2/dags/d/dagRuns/{run_id}/taskInstances/a"),
            Some(&admin),
            Some(json!({"new_state": "success"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = one_new(pool, &mut since, "mark").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.dag_id.as_deref(),
            r.run_id.as_deref(),
            r.task_id.as_deref()
        ),
        (
            "patch_task_instance",
            Some("d"),
            Some(run_id.as_str()),
            Some("a")
        )
    );

    // A dry-run clear changes nothing and is not logged (as in Airflow); a real one is, its
    // target named by the body.
    let (status, _) = e
        .call(
            "POST",
            "/api/v2/dags/d/clearTaskInstances",
            Some(&admin),
            Some(json!({"dag_run_id": run_id, "task_ids": ["a"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(rows_after(pool, since).await.is_empty());
    let (status, body) = e
        .call(
            "POST",
            "/api/v2/dags/d/clearTaskInstances",
            Some(&admin),
            Some(json!({"dag_run_id": run_id, "task_ids": ["a"], "dry_run": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = one_new(pool, &mut since, "clear").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.dag_id.as_deref(),
            r.run_id.as_deref(),
            r.task_id.as_deref(),
            r.outcome.as_str()
        ),
        (
            "post_clear_task_instances",
            Some("d"),
            Some(run_id.as_str()),
            Some("a"),
            "success"
        )
    );

    // Backfill: the DAG is named by the body.
    let (status, body) = e
        .call(
            "POST",
            "/api/v2/backfills",
            Some(&admin),
            Some(json!({"dag_id": "d", "from_date": "2024-01-03T00:00:00Z",
                        "to_date": "2024-01-04T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let r = one_new(pool, &mut since, "backfill").await;
    assert_eq!(
        (r.event.as_str(), r.dag_id.as_deref()),
        ("create_backfill", Some("d"))
    );

    // Connections and variables: recorded, their secrets never.
    let steps: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            "/api/v2/connections".into(),
            Some(
                json!({"connection_id": "c1", "conn_type": "postgres", "host": "db",
                        "password": "pw-s3cret", "extra": "{\"token\": \"tok-s3cret\"}"}),
            ),
            "post_connection",
        ),
        (
            "PATCH",
            "/api/v2/connections/c1".into(),
            Some(json!({"connection_id": "c1", "conn_type": "postgres",
                        "password": "pw2-s3cret"})),
            "patch_connection",
        ),
        (
            "DELETE",
            "/api/v2/connections/c1".into(),
            None,
            "delete_connection",
        ),
        (
            "POST",
            "/api/v2/variables".into(),
            Some(json!({"key": "k1", "value": "val-s3cret"})),
            "post_variable",
        ),
        (
            "PATCH",
            "/api/v2/variables/k1".into(),
            Some(json!({"key": "k1", "value": "val2-s3cret"})),
            "patch_variable",
        ),
        (
            "DELETE",
            "/api/v2/variables/k1".into(),
            None,
            "delete_variable",
        ),
        (
            "POST",
            "/api/v2/pools".into(),
            Some(json!({"name": "p1", "slots": 2})),
            "post_pool",
        ),
        ("DELETE", "/api/v2/pools/p1".into(), None, "delete_pool"),
    ];
    for (m, uri, body, event) in steps {
        let (status, got) = e.call(m, &uri, Some(&admin), body).await;
        assert!(status.is_success(), "{m} {uri}: {status} {got}");
        let r = one_new(pool, &mut since, event).await;
        assert_eq!(
            (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
            (event, Some("ada"), "success"),
            "{m} {uri}"
        );
        assert!(!whole_text(&r).contains("s3cret"), "{m} {uri}: {r:?}");
        let extra = r.extra.unwrap();
        match event {
            "post_connection" => {
                assert_eq!(extra["connection_id"], "c1");
                assert_eq!(extra["password"], "***");
                assert_eq!(extra["extra"], json!({"token": "***"}));
            }
            "delete_connection" => assert_eq!(extra["connection_id"], "c1"),
            "post_variable" => assert_eq!(extra["value"], "***"),
            "delete_variable" => assert_eq!(extra["variable_key"], "k1"),
            "delete_pool" => assert_eq!(extra["pool_name"], "p1"),
            _ => {}
        }
    }

    // A viewer's attempt is refused, and logged as refused with the viewer's name.
    let (status, _) = e
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&viewer),
            Some(json!({"logical_date": "2024-01-09T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = one_new(pool, &mut since, "viewer trigger").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.outcome.as_str(),
            r.dag_id.as_deref()
        ),
        ("trigger_dag_run", Some("vic"), "refused", Some("d"))
    );
    assert_eq!(r.extra.as_ref().unwrap()["status"], 403);

    // No credentials: refused, anonymous.
    let (status, _) = e
        .call(
            "PATCH",
            "/api/v2/dags/d",
            None,
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = one_new(pool, &mut since, "anonymous pause").await;
    assert_eq!(
        (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
        ("patch_dag", Some("anonymous"), "refused")
    );

    // Allowed but failed: an unknown DAG.
    let (status, _) = e
        .call(
            "POST",
            "/api/v2/dags/nope/dagRuns",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = one_new(pool, &mut since, "failed trigger").await;
    assert_eq!(
        (r.event.as_str(), r.outcome.as_str(), r.dag_id.as_deref()),
        ("trigger_dag_run", "failed", Some("nope"))
    );
    assert_eq!(r.extra.as_ref().unwrap()["status"], 404);

    // Bad Basic credentials, even on a read: one refused sign-in per request, with the
    // name it gave and never the password.
    for _ in 0..2 {
        let (status, _) = e
            .call(
                "GET",
                "/api/v2/dags",
                Some(&basic("ada", "wrong-pass-s3cret")),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let r = one_new(pool, &mut since, "bad basic").await;
        assert_eq!(
            (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
            ("login", Some("ada"), "refused")
        );
        assert_eq!(r.extra.as_ref().unwrap()["auth"], "basic");
        assert!(!whole_text(&r).contains("s3cret"), "{r:?}");
    }

    // Tokens: a sign-in each, success or refused.
    let (status, _) = e
        .call(
            "POST",
            "/auth/token",
            None,
            Some(json!({"username": "ada", "password": "admin-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = one_new(pool, &mut since, "token").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.outcome.as_str(),
            r.source.as_str()
        ),
        ("login", Some("ada"), "success", "api")
    );
    assert!(!whole_text(&r).contains("admin-password"), "{r:?}");
    let (status, _) = e
        .call(
            "POST",
            "/auth/token",
            None,
            Some(json!({"username": "mallory", "password": "guess-s3cret"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let r = one_new(pool, &mut since, "bad token").await;
    assert_eq!(
        (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
        ("login", Some("mallory"), "refused")
    );
    assert!(!whole_text(&r).contains("s3cret"), "{r:?}");
}

#[tokio::test]
async fn every_ui_change_and_sign_in_is_logged_with_its_user() {
    let e = env().await;
    let pool = &e.db.pool;
    let mut since = last_id(pool).await;

    assert!(e.login("ada", "wrong-pass-s3cret").await.is_none());
    let r = one_new(pool, &mut since, "failed login").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.outcome.as_str(),
            r.source.as_str()
        ),
        ("login", Some("ada"), "refused", "ui")
    );
    assert!(!whole_text(&r).contains("s3cret"), "{r:?}");
    let session = e.login("ada", "admin-password").await.unwrap();
    let r = one_new(pool, &mut since, "login").await;
    assert_eq!(
        (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
        ("login", Some("ada"), "success")
    );
    let (_, _, _, home) = e.form("GET", "/", Some(&session), None).await;
    let csrf = hidden(&home, "csrf");

    // Trigger, then the run's clear and mark, by form.
    let (status, _, _, page) = e
        .form(
            "POST",
            "/dags/d/trigger",
            Some(&session),
            Some(&format!("csrf={csrf}&logical_date=2024-01-05&conf=")),
        )
        .await;
    assert!(status.is_redirection(), "{status}: {page}");
    let r = one_new(pool, &mut since, "ui trigger").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.source.as_str(),
            r.dag_id.as_deref(),
            r.outcome.as_str()
        ),
        ("trigger_dag_run", Some("ada"), "ui", Some("d"), "success")
    );
    let run_id: String = sqlx::query_scalar("SELECT run_id FROM dag_runs WHERE dag_id = 'd'")
        .fetch_one(pool)
        .await
        .unwrap();
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let run_path = format!("/dags/d/runs/{}", enc(&run_id));
    for (path, form, event) in [
        (
            format!("{run_path}/tasks/a/mark"),
            format!("csrf={csrf}&state=success"),
            "patch_task_instance",
        ),
        (
            format!("{run_path}/tasks/a/clear"),
            format!("csrf={csrf}"),
            "post_clear_task_instances",
        ),
        (
            format!("{run_path}/mark"),
            format!("csrf={csrf}&state=failed"),
            "patch_dag_run",
        ),
    ] {
        let (status, _, _, page) = e.form("POST", &path, Some(&session), Some(&form)).await;
        assert!(status.is_redirection(), "{path}: {status}: {page}");
        let r = one_new(pool, &mut since, event).await;
        assert_eq!(
            (
                r.event.as_str(),
                r.dag_id.as_deref(),
                r.run_id.as_deref(),
                r.outcome.as_str()
            ),
            (event, Some("d"), Some(run_id.as_str()), "success"),
            "{path}"
        );
        if event != "patch_dag_run" {
            assert_eq!(r.task_id.as_deref(), Some("a"));
        }
        assert!(!r.extra.as_ref().unwrap().to_string().contains(&csrf));
    }

    let steps = [
        ("/dags/d/pause", "paused=true".to_string(), "patch_dag"),
        (
            "/dags/d/backfill",
            "from=2024-01-06&to=2024-01-07".to_string(),
            "create_backfill",
        ),
        ("/pools", "name=p1&slots=2".to_string(), "post_pool"),
        ("/pools/p1/delete", String::new(), "delete_pool"),
        (
            "/variables",
            "key=k1&value=val-s3cret".to_string(),
            "post_variable",
        ),
        ("/variables/k1/delete", String::new(), "delete_variable"),
        (
            "/connections",
            "conn_id=c1&uri=postgres%3A%2F%2Fu%3Apw-s3cret%40db%3A5432%2Fx".to_string(),
            "post_connection",
        ),
        ("/connections/c1/delete", String::new(), "delete_connection"),
    ];
    for (path, fields, event) in steps {
        let form = format!("csrf={csrf}&{fields}");
        let (status, _, _, page) = e.form("POST", path, Some(&session), Some(&form)).await;
        assert!(status.is_redirection(), "{path}: {status}: {page}");
        let r = one_new(pool, &mut since, event).await;
        assert_eq!(
            (
                r.event.as_str(),
                r.owner.as_deref(),
                r.source.as_str(),
                r.outcome.as_str()
            ),
            (event, Some("ada"), "ui", "success"),
            "{path}"
        );
        assert!(!whole_text(&r).contains("s3cret"), "{path}: {r:?}");
        let extra = r.extra.unwrap();
        match event {
            "patch_dag" => assert_eq!(extra["paused"], "true"),
            "create_backfill" => assert_eq!(r.dag_id.as_deref(), Some("d")),
            "delete_pool" => assert_eq!(extra["pool_name"], "p1"),
            "post_variable" => assert_eq!(extra["value"], "***"),
            "post_connection" => {
                assert_eq!(extra["connection_id"], "c1");
                assert_eq!(extra["uri"], "postgres://u:***@db:5432/x");
            }
            _ => {}
        }
    }

    // A viewer's attempt is refused and logged with the viewer's name.
    let vsession = e.login("vic", "viewer-password").await.unwrap();
    one_new(pool, &mut since, "viewer login").await;
    let (_, _, _, vhome) = e.form("GET", "/", Some(&vsession), None).await;
    let vcsrf = hidden(&vhome, "csrf");
    let (status, _, _, _) = e
        .form(
            "POST",
            "/dags/d/pause",
            Some(&vsession),
            Some(&format!("csrf={vcsrf}&paused=false")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = one_new(pool, &mut since, "viewer pause").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.outcome.as_str(),
            r.dag_id.as_deref()
        ),
        ("patch_dag", Some("vic"), "refused", Some("d"))
    );
    // A form without a session: refused (its answer is a redirect to the login page).
    let (status, _, _, _) = e
        .form("POST", "/dags/d/pause", None, Some("paused=false"))
        .await;
    assert!(status.is_redirection());
    let r = one_new(pool, &mut since, "no session").await;
    assert_eq!(
        (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
        ("patch_dag", Some("anonymous"), "refused")
    );
    let (status, _, _, _) = e
        .form(
            "POST",
            "/logout",
            Some(&session),
            Some(&format!("csrf={csrf}")),
        )
        .await;
    assert!(status.is_redirection());
    let r = one_new(pool, &mut since, "logout").await;
    assert_eq!(
        (r.event.as_str(), r.owner.as_deref(), r.outcome.as_str()),
        ("logout", Some("ada"), "success")
    );
}

fn upiflow(db_url: &str, dags: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("UPIFLOW_HOME", dags.join(".upiflow"))
        .env("RUST_LOG", "warn")
        // The OS user the CLI records (Airflow's getpass.getuser() reads LOGNAME first).
        .env("LOGNAME", "opsuser")
        .env("USER", "opsuser")
        .output()
        .expect("run upiflow")
}

#[tokio::test]
async fn every_changing_cli_command_is_logged_with_the_os_user() {
    let e = env().await;
    let pool = &e.db.pool;
    let url = &e.db.url;
    let dir = &e.dir;
    let mut since = last_id(pool).await;
    let ok = |out: &Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };

    let out = upiflow(url, dir, &["trigger", "d", "--logical-date", "2024-01-02"]);
    ok(&out, "trigger");
    let r = one_new(pool, &mut since, "cli trigger").await;
    let run_id: String = sqlx::query_scalar("SELECT run_id FROM dag_runs WHERE dag_id = 'd'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.source.as_str(),
            r.outcome.as_str(),
            r.dag_id.as_deref(),
            r.run_id.as_deref()
        ),
        (
            "cli_dag_trigger",
            Some("opsuser"),
            "cli",
            "success",
            Some("d"),
            Some(run_id.as_str())
        )
    );
    assert!(r.logical_date.is_some());
    assert_eq!(r.remote_addr, None);

    let steps: Vec<(Vec<&str>, &str)> = vec![
        (vec!["dags", "pause", "d"], "cli_dag_pause"),
        (vec!["dags", "unpause", "d"], "cli_dag_unpause"),
        (
            vec!["tasks", "mark", "d", &run_id, "a", "--state", "success"],
            "cli_task_mark",
        ),
        (vec!["clear", "d", &run_id, "a"], "cli_task_clear"),
        (
            vec!["runs", "mark", "d", &run_id, "--state", "failed"],
            "cli_dag_run_mark",
        ),
        (
            vec![
                "backfill",
                "d",
                "--from",
                "2024-01-03",
                "--to",
                "2024-01-04",
            ],
            "cli_create_backfill",
        ),
        (vec!["pools", "set", "p1", "3"], "cli_pool_set"),
        (vec!["pools", "delete", "p1"], "cli_pool_delete"),
        (
            vec![
                "connections",
                "add",
                "c1",
                "--uri",
                "postgres://u:pw-s3cret@db:5432/x",
            ],
            "cli_connections_add",
        ),
        (
            vec!["connections", "delete", "c1"],
            "cli_connections_delete",
        ),
        (
            vec!["variables", "set", "k1", "val-s3cret"],
            "cli_variables_set",
        ),
        (vec!["variables", "delete", "k1"], "cli_variables_delete"),
        (
            vec![
                "users",
                "create",
                "--username",
                "bob",
                "--password",
                "pass-s3cret",
                "--role",
                "viewer",
            ],
            "cli_users_create",
        ),
    ];
    for (args, event) in steps {
        let out = upiflow(url, dir, &args);
        ok(&out, event);
        let r = one_new(pool, &mut since, event).await;
        assert_eq!(
            (
                r.event.as_str(),
                r.owner.as_deref(),
                r.source.as_str(),
                r.outcome.as_str()
            ),
            (event, Some("opsuser"), "cli", "success"),
            "{args:?}"
        );
        assert!(!whole_text(&r).contains("s3cret"), "{args:?}: {r:?}");
        if ["cli_task_mark", "cli_task_clear"].contains(&event) {
            assert_eq!(
                (
                    r.dag_id.as_deref(),
                    r.run_id.as_deref(),
                    r.task_id.as_deref()
                ),
                (Some("d"), Some(run_id.as_str()), Some("a")),
                "{event}"
            );
        }
        if event.starts_with("cli_dag_") || event == "cli_create_backfill" {
            assert_eq!(r.dag_id.as_deref(), Some("d"), "{event}");
        }
        let extra = r.extra.unwrap();
        match event {
            "cli_dag_pause" => assert_eq!(extra["is_paused"], true),
            "cli_users_create" => assert_eq!(extra["username"], "bob"),
            "cli_variables_set" => assert_eq!(extra["key"], "k1"),
            "cli_pool_delete" => assert_eq!(extra["pool_name"], "p1"),
            _ => {}
        }
        assert!(extra["host_name"].is_string());
    }

    // A command that fails is logged as failed, with the error.
    let out = upiflow(url, dir, &["pools", "delete", "no_such_pool"]);
    assert!(!out.status.success());
    let r = one_new(pool, &mut since, "failed delete").await;
    assert_eq!(
        (r.event.as_str(), r.outcome.as_str()),
        ("cli_pool_delete", "failed")
    );
    let error = r.extra.as_ref().unwrap()["error"].as_str().unwrap();
    assert!(error.contains("no_such_pool"), "{error}");

    // Reads write nothing.
    for args in [
        vec!["dags", "list"],
        vec!["pools", "list"],
        vec!["runs", "d"],
    ] {
        ok(&upiflow(url, dir, &args), "read");
    }
    assert!(rows_after(pool, since).await.is_empty());
}

/// Rows with known fields and times, recorded through the engine.
async fn seed(pool: &PgPool) -> (Vec<i64>, chrono::DateTime<chrono::Utc>) {
    use upiflow_engine::audit::{Event, Outcome, Source, record};
    let t0: chrono::DateTime<chrono::Utc> = "2025-03-01T00:00:00Z".parse().unwrap();
    let plan = [
        ("trigger_dag_run", "ada", Some("alpha")),
        ("patch_dag", "vic", Some("beta")),
        ("trigger_dag_run", "ada", Some("alpha")),
        ("login", "ada", None),
        ("patch_dag", "ada", Some("alpha")),
        ("trigger_dag_run", "vic", Some("beta")),
        ("login", "vic", None),
    ];
    let mut ids = Vec::new();
    for (i, (event, owner, dag)) in plan.iter().enumerate() {
        let mut ev = Event::new(*event, Source::Api, Outcome::Success);
        ev.owner = Some(owner.to_string());
        ev.dag_id = dag.map(str::to_string);
        if i == 2 {
            ev.run_id = Some("r1".into());
            ev.task_id = Some("t1".into());
        }
        record(pool, &ev).await.unwrap();
        let id: i64 = sqlx::query_scalar("SELECT max(id) FROM event_log")
            .fetch_one(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE event_log SET dttm = $1 WHERE id = $2")
            .bind(t0 + chrono::TimeDelta::hours(i as i64))
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        ids.push(id);
    }
    (ids, t0)
}

#[tokio::test]
async fn the_event_log_api_filters_and_pages_exactly_and_refuses_bad_input() {
    let e = env().await;
    let (ids, t0) = seed(&e.db.pool).await;
    let viewer = basic("vic", "viewer-password");
    let list = |q: String| {
        let e = &e;
        let viewer = viewer.clone();
        async move {
            let (status, body) = e
                .call("GET", &format!("/api/v2/eventLogs{q}"), Some(&viewer), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            let got: Vec<i64> = body["event_logs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["event_log_id"].as_i64().unwrap())
                .collect();
            (got, body["total_entries"].as_i64().unwrap(), body)
        }
    };
    let pick = |idx: &[usize]| idx.iter().map(|&i| ids[i]).collect::<Vec<_>>();

    let (got, total, _) = list(String::new()).await;
    assert_eq!((got, total), (ids.clone(), 7));
    let (got, total, _) = list("?dag_id=alpha".into()).await;
    assert_eq!((got, total), (pick(&[0, 2, 4]), 3));
    let (got, total, _) = list("?event=patch_dag".into()).await;
    assert_eq!((got, total), (pick(&[1, 4]), 2));
    let (got, total, _) = list("?owner=vic".into()).await;
    assert_eq!((got, total), (pick(&[1, 5, 6]), 3));
    let (got, _, _) = list("?owner=ada&event=trigger_dag_run".into()).await;
    assert_eq!(got, pick(&[0, 2]));
    let after = (t0 + chrono::TimeDelta::hours(1)).to_rfc3339();
    let before = (t0 + chrono::TimeDelta::hours(5)).to_rfc3339();
    let q = serde_urlencoded::to_string([("after", &after), ("before", &before)]).unwrap();
    let (got, total, _) = list(format!("?{q}")).await;
    assert_eq!((got, total), (pick(&[2, 3, 4]), 3), "strictly between");
    let (got, total, _) = list("?included_events=login,patch_dag".into()).await;
    assert_eq!((got, total), (pick(&[1, 3, 4, 6]), 4));
    let (got, total, _) = list("?excluded_events=login&excluded_events=patch_dag".into()).await;
    assert_eq!((got, total), (pick(&[0, 2, 5]), 3));
    let (got, _, _) = list("?dag_id_pattern=ETA".into()).await;
    assert_eq!(got, pick(&[1, 5]));
    let (got, _, _) = list("?run_id=r1&task_id=t1&map_index=-1".into()).await;
    assert_eq!(got, pick(&[2]));
    let (got, total, _) = list("?map_index=3".into()).await;
    assert_eq!((got, total), (vec![], 0));
    // Paging: newest first, two per page, the second page; the total counts all matches.
    let (got, total, _) = list("?order_by=-id&limit=2&offset=2".into()).await;
    assert_eq!((got, total), (pick(&[4, 3]), 7));
    let (got, total, _) = list("?order_by=-when&limit=3".into()).await;
    assert_eq!((got, total), (pick(&[6, 5, 4]), 7));
    let (got, _, _) = list("?order_by=owner&order_by=-event_log_id&limit=4".into()).await;
    assert_eq!(got, pick(&[4, 3, 2, 0]));
    let (got, total, _) = list("?limit=0".into()).await;
    assert_eq!((got, total), (vec![], 7));

    // One event, in Airflow's shape.
    let (status, one) = e
        .call(
            "GET",
            &format!("/api/v2/eventLogs/{}", ids[2]),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["event"], "trigger_dag_run");
    assert_eq!(one["owner"], "ada");
    assert_eq!(one["dag_id"], "alpha");
    assert_eq!(one["dag_display_name"], "alpha");
    assert_eq!(
        (one["run_id"].clone(), one["task_id"].clone()),
        (json!("r1"), json!("t1"))
    );
    assert_eq!(one["map_index"], -1);
    assert_eq!(one["when"], "2025-03-01T02:00:00.000000Z");
    let extra: Value = serde_json::from_str(one["extra"].as_str().unwrap()).unwrap();
    assert_eq!(
        (extra["source"].clone(), extra["outcome"].clone()),
        (json!("api"), json!("success"))
    );
    for key in [
        "event_log_id",
        "when",
        "dag_id",
        "task_id",
        "run_id",
        "map_index",
        "try_number",
        "event",
        "logical_date",
        "owner",
        "extra",
        "dag_display_name",
    ] {
        assert!(one.get(key).is_some(), "{key}: {one}");
    }
    let (status, body) = e
        .call("GET", "/api/v2/eventLogs/999999", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["detail"].as_str().unwrap().contains("999999"),
        "{body}"
    );

    // Bad input: a 4xx that says what is wrong.
    for (q, want, says) in [
        ("?surprise=1", StatusCode::UNPROCESSABLE_ENTITY, "surprise"),
        (
            "?before=yesterday",
            StatusCode::UNPROCESSABLE_ENTITY,
            "before",
        ),
        (
            "?after=2025-13-01",
            StatusCode::UNPROCESSABLE_ENTITY,
            "after",
        ),
        ("?order_by=bogus", StatusCode::BAD_REQUEST, "bogus"),
        ("?limit=5000", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        ("?offset=-1", StatusCode::UNPROCESSABLE_ENTITY, "offset"),
        (
            "?try_number=x",
            StatusCode::UNPROCESSABLE_ENTITY,
            "try_number",
        ),
        (
            "?teams=a",
            StatusCode::UNPROCESSABLE_ENTITY,
            "not supported",
        ),
        (
            "?dag_id=a&dag_id=b",
            StatusCode::UNPROCESSABLE_ENTITY,
            "dag_id",
        ),
        ("/abc", StatusCode::UNPROCESSABLE_ENTITY, ""),
        ("/1?x=1", StatusCode::UNPROCESSABLE_ENTITY, "x"),
    ] {
        let (status, body) = e
            .call("GET", &format!("/api/v2/eventLogs{q}"), Some(&viewer), None)
            .await;
        assert_eq!(status, want, "{q}: {body}");
        assert!(body.to_string().contains(says), "{q}: {body}");
        assert!(!body["detail"].is_null(), "{q}: {body}");
    }
    let (status, _) = e.call("GET", "/api/v2/eventLogs", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_events_page_shows_a_viewer_the_newest_rows_first_with_filters_and_pages() {
    let e = env().await;
    let (ids, _) = seed(&e.db.pool).await;
    // 60 more, so there is a second page of 50.
    for i in 0..60 {
        let mut ev = upiflow_engine::audit::Event::new(
            "post_variable",
            upiflow_engine::audit::Source::Ui,
            upiflow_engine::audit::Outcome::Refused,
        );
        ev.owner = Some(format!("bulk{i}"));
        upiflow_engine::audit::record(&e.db.pool, &ev)
            .await
            .unwrap();
    }
    let session = e.login("vic", "viewer-password").await.unwrap();
    let row_ids = |page: &str| -> Vec<i64> {
        page.match_indices("data-event-id=\"")
            .map(|(at, m)| {
                page[at + m.len()..]
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    };
    let (status, _, _, page) = e.form("GET", "/events", Some(&session), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("href=\"/events\""), "nav link");
    let first = row_ids(&page);
    assert_eq!(first.len(), 50);
    assert!(first.windows(2).all(|w| w[0] > w[1]), "newest first");
    // 7 seeded + 60 + the viewer's own sign-in.
    assert!(page.contains("68 event(s) · page 1 of 2"), "{page}");
    let (_, _, _, page2) = e.form("GET", "/events?page=2", Some(&session), None).await;
    let second = row_ids(&page2);
    assert_eq!(second.len(), 18);
    assert!(second[0] < *first.last().unwrap());

    let (_, _, _, p) = e
        .form(
            "GET",
            "/events?dag_id=alpha&event=trigger_dag_run&owner=ada",
            Some(&session),
            None,
        )
        .await;
    assert_eq!(row_ids(&p), vec![ids[2], ids[0]]);
    assert!(p.contains("href=\"/dags/alpha/runs/r1/tasks/t1\""), "{p}");
    let (_, _, _, p) = e
        .form("GET", "/events?outcome=refused", Some(&session), None)
        .await;
    assert!(p.contains("60 event(s)"), "{p}");

    for bad in [
        "/events?outcome=maybe",
        "/events?page=0",
        "/events?page=x",
        "/events?nope=1",
    ] {
        let (status, _, _, p) = e.form("GET", bad, Some(&session), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(p.contains("error-message"), "{bad}: {p}");
    }
    // Without a session: the login page.
    let (status, location, _, _) = e.form("GET", "/events", None, None).await;
    assert!(status.is_redirection());
    assert!(location.unwrap().starts_with("/login"));
}

#[tokio::test]
async fn a_request_over_a_real_socket_records_the_clients_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = env().await;
    let state = upiflow_web::AppState::new(e.db.pool.clone()).await.unwrap();
    let listener = upiflow_web::listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(upiflow_web::serve(listener, state, async move {
        s.cancelled().await
    }));
    let mut since = last_id(&e.db.pool).await;
    let body = r#"{"is_paused": true}"#;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "PATCH /api/v2/dags/d HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        basic("vic", "viewer-password"),
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    sock.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let r = one_new(&e.db.pool, &mut since, "socket").await;
    assert_eq!(
        (
            r.event.as_str(),
            r.owner.as_deref(),
            r.outcome.as_str(),
            r.remote_addr.as_deref()
        ),
        ("patch_dag", Some("vic"), "refused", Some("127.0.0.1"))
    );
    stop.cancel();
}

#[tokio::test]
async fn a_change_goes_through_when_the_audit_log_cannot_be_written() {
    let e = env().await;
    let pool = &e.db.pool;
    sqlx::query("ALTER TABLE event_log RENAME TO event_log_away")
        .execute(pool)
        .await
        .unwrap();
    let (status, body) = e
        .call(
            "PATCH",
            "/api/v2/dags/d",
            Some(&basic("ada", "admin-password")),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_paused"], true);
    let out = upiflow(&e.db.url, &e.dir, &["dags", "unpause", "d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("could not record the audit event"),
        "the CLI says the row is missing"
    );
    let paused: bool = sqlx::query_scalar("SELECT is_paused FROM dags WHERE dag_id = 'd'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(!paused, "the unpause happened");
    sqlx::query("ALTER TABLE event_log_away RENAME TO event_log")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(last_id(pool).await, 0, "nothing was written meanwhile");
}

#[tokio::test]
async fn a_body_with_a_nul_or_a_float_at_f64s_limit_is_recorded_and_the_log_still_reads() {
    // Found by schemathesis: Postgres refused a NUL (the row was lost), and a float near
    // f64::MAX came back from jsonb as 309 digits that do not parse, so every list with
    // that row was a 500.
    let e = env().await;
    let admin = basic("ada", "admin-password");
    let mut since = last_id(&e.db.pool).await;
    let (s, b) = e
        .call(
            "POST",
            "/api/v2/variables",
            Some(&admin),
            Some(json!({"key": "nul", "value": "a\u{0}b", "description": "x\u{0}y"})),
        )
        .await;
    assert!(s.is_client_error() || s.is_success(), "{s}: {b}");
    let row = one_new(&e.db.pool, &mut since, "post_variable").await;
    assert!(!format!("{row:?}").contains('\u{0}'), "{row:?}");
    let (s, b) = e
        .call(
            "POST",
            "/api/v2/pools",
            Some(&admin),
            Some(json!({"name": "huge", "slots": 1.7976931348623157e308_f64, "description": "d"})),
        )
        .await;
    assert!(s.is_client_error(), "{s}: {b}");
    one_new(&e.db.pool, &mut since, "post_pool").await;
    let (s, b) = e
        .call("GET", "/api/v2/eventLogs?limit=100", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events: Vec<&str> = b["event_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"post_variable") && events.contains(&"post_pool"),
        "{events:?}"
    );
}
