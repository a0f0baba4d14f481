//! The DAG-level endpoints of part "dags2" (#14) in-process against a real Postgres, with a
//! real scheduler sync of a real DAGs folder and a real worker: `PATCH /dags`, `DELETE
//! /dags/{dag_id}`, `/details`, `/dagSources`, `/dagVersions` and favourites. Each answer is
//! checked against Airflow's own document, each filter shown to filter, 401 without
//! credentials, 403 for a viewer on a change, bad input a 4xx with a `detail`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_engine::scheduler::{Scheduler, SchedulerConfig};
use upiflow_web::auth::{self, Role};

const D: &str = r#"dag_id = "d"
description = "first"
schedule = "@daily"
start_date = "2024-01-01"
timezone = "Asia/Kolkata"
catchup = true
max_active_tasks = 3
tags = ["upi", "daily"]
[params]
n = 1
[[tasks]]
id = "a"
kind = "noop"
max_active_tis_per_dag = 1
"#;

const E: &str = r#"dag_id = "e"
schedule = "none"
tags = ["finance", "upi"]
[[tasks]]
id = "only"
kind = "noop"
"#;

const F: &str = r#"dag_id = "f_other"
schedule = "none"
tags = ["finance"]
[[tasks]]
id = "only"
kind = "noop"
"#;

/// A DAG whose one task runs for a while.
const SLOW: &str = r#"dag_id = "slow"
schedule = "none"
[[tasks]]
id = "s"
kind = "command"
command = ["sh", "-c", "sleep 3"]
"#;

struct Api {
    app: axum::Router,
    db: TestDb,
    dir: PathBuf,
    scheduler: tokio::sync::Mutex<Scheduler>,
}

/// Users of every role that matters, the DAG files in a folder, synced by a real scheduler.
async fn api(files: &[(&str, &str)]) -> Api {
    let db = fresh_db().await;
    for (name, password, role) in [
        ("ada", "admin-password", Role::Admin),
        ("oli", "op-password", Role::Op),
        ("vic", "viewer-password", Role::Viewer),
    ] {
        auth::create_user(&db.pool, name, password, role)
            .await
            .unwrap();
    }
    let dir = dags_dir(files);
    let mut scheduler = Scheduler::new(
        db.pool.clone(),
        upiflow_tasks::registry(),
        SchedulerConfig::new(dir.clone()),
    );
    scheduler.sync_files().await.unwrap();
    let state = web_state(&db.pool).await;
    Api {
        app: upiflow_web::app(state),
        db,
        dir,
        scheduler: tokio::sync::Mutex::new(scheduler),
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, bytes, _) = self.raw(method, uri, auth, body, None).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The answer's status, body bytes and content type.
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
        accept: Option<&str>,
    ) -> (StatusCode, Vec<u8>, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, bytes.to_vec(), ctype)
    }

    /// Triggers a run of `dag_id` at `logical_date` (`null`: the latest interval) as an
    /// admin; it must answer 200.
    async fn trigger(&self, dag_id: &str, logical_date: Value) -> Value {
        let (status, run) = self
            .call(
                "POST",
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(&admin()),
                Some(json!({ "logical_date": logical_date })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        run
    }

    /// A GET as `who` that must answer 200 in Airflow's shape for `path`.
    async fn ok(&self, uri: &str, path: &str, who: &str) -> Value {
        let (status, body) = self.call("GET", uri, Some(who), None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_airflow_shape("get", path, status, &body);
        body
    }

    /// A call that must answer `want` with a `detail` (a string, or FastAPI's 422 list).
    async fn refused(
        &self,
        method: &str,
        uri: &str,
        who: Option<&str>,
        body: Option<Value>,
        want: StatusCode,
    ) -> String {
        let (status, b) = self.call(method, uri, who, body).await;
        assert_eq!(status, want, "{method} {uri}: {b}");
        match &b["detail"] {
            Value::String(s) => s.clone(),
            Value::Null => panic!("{method} {uri}: no detail in {b}"),
            other => other.to_string(),
        }
    }

    async fn patch_dags(&self, query: &str, paused: bool) -> Value {
        let uri = format!("/api/v2/dags?{query}");
        let (status, body) = self
            .call(
                "PATCH",
                &uri,
                Some(&op()),
                Some(json!({"is_paused": paused})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_airflow_shape("patch", "/api/v2/dags", status, &body);
        body
    }

    async fn paused(&self) -> Vec<String> {
        let body = self
            .ok("/api/v2/dags?paused=true", "/api/v2/dags", &viewer())
            .await;
        ids(&body["dags"])
    }

    /// The scheduler's sync of the DAGs folder, as its loop runs it.
    async fn sync(&self) {
        self.scheduler.lock().await.sync_files().await.unwrap();
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).unwrap();
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

fn viewer() -> String {
    basic("vic", "viewer-password")
}

fn op() -> String {
    basic("oli", "op-password")
}

fn admin() -> String {
    basic("ada", "admin-password")
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["dag_id"].as_str().unwrap().to_string())
        .collect()
}

// ---- PATCH /api/v2/dags and update_mask ---------------------------------------------------

#[tokio::test]
async fn patch_dags_pauses_exactly_the_dags_its_filters_keep() {
    let a = api(&[("d.toml", D), ("e.toml", E), ("f.toml", F)]).await;
    assert!(a.paused().await.is_empty());

    // dag_id_pattern: a case-insensitive substring.
    let body = a.patch_dags("dag_id_pattern=_OTH", true).await;
    assert_eq!(ids(&body["dags"]), ["f_other"]);
    assert_eq!(body["dags"][0]["is_paused"], true, "answered as it is now");
    assert_eq!(body["total_entries"], 1);
    assert_eq!(a.paused().await, ["f_other"]);

    // paused: only the paused ones are unpaused.
    let body = a.patch_dags("paused=true", false).await;
    assert_eq!(ids(&body["dags"]), ["f_other"]);
    assert!(a.paused().await.is_empty());

    // tags (any, the default) and tags_match_mode=all.
    let body = a.patch_dags("tags=finance&tags=daily", true).await;
    assert_eq!(ids(&body["dags"]), ["d", "e", "f_other"]);
    a.patch_dags("", false).await;
    let body = a
        .patch_dags("tags=finance&tags=upi&tags_match_mode=all", true)
        .await;
    assert_eq!(ids(&body["dags"]), ["e"]);
    assert_eq!(a.paused().await, ["e"]);
    a.patch_dags("", false).await;

    // dag_id_prefix_pattern: case-sensitive prefix, `|` alternatives.
    let body = a.patch_dags("dag_id_prefix_pattern=f_|d", true).await;
    assert_eq!(ids(&body["dags"]), ["d", "f_other"]);
    a.patch_dags("", false).await;

    // limit/offset: one page is changed, total_entries counts all the filters keep.
    let body = a.patch_dags("limit=1&offset=1", true).await;
    assert_eq!(ids(&body["dags"]), ["e"]);
    assert_eq!(body["total_entries"], 3);
    assert_eq!(a.paused().await, ["e"]);
    a.patch_dags("", false).await;

    // exclude_stale (default true): a DAG whose file is gone is left alone unless asked.
    std::fs::remove_file(a.dir.join("f.toml")).unwrap();
    a.sync().await;
    let body = a.patch_dags("", true).await;
    assert_eq!(ids(&body["dags"]), ["d", "e"]);
    let body = a.patch_dags("exclude_stale=false&paused=true", false).await;
    assert_eq!(ids(&body["dags"]), ["d", "e"]);
    let body = a.patch_dags("exclude_stale=false", true).await;
    assert_eq!(ids(&body["dags"]), ["d", "e", "f_other"]);

    // update_mask: only exactly `is_paused`, as Airflow.
    a.patch_dags("update_mask=is_paused&dag_id_pattern=d", false)
        .await;
    for (uri, want) in [
        (
            "/api/v2/dags?update_mask=description",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v2/dags?update_mask=is_paused&update_mask=is_paused",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v2/dags/d?update_mask=tags", StatusCode::BAD_REQUEST),
        ("/api/v2/dags?owners=ada", StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/v2/dags?limit=1001", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/api/v2/dags?paused=maybe",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/v2/dags?tags_match_mode=some",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/api/v2/dags?dag_ids=d", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let m = a
            .refused(
                "PATCH",
                uri,
                Some(&op()),
                Some(json!({"is_paused": true})),
                want,
            )
            .await;
        if want == StatusCode::BAD_REQUEST {
            assert!(
                m.starts_with("Only `is_paused` field can be updated through the REST API"),
                "{m}"
            );
        }
    }
    let (status, body) = a
        .call(
            "PATCH",
            "/api/v2/dags/d?update_mask=is_paused",
            Some(&op()),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("patch", "/api/v2/dags/{dag_id}", status, &body);
    assert_eq!(body["is_paused"], true);
    // Bodies: required, typed, no unknown fields.
    for bad in [
        json!({}),
        json!({"is_paused": "yes"}),
        json!({"is_paused": true, "x": 1}),
    ] {
        a.refused(
            "PATCH",
            "/api/v2/dags",
            Some(&op()),
            Some(bad),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // Who may: nobody without credentials, not a viewer; the paused set is unchanged.
    let before = a.paused().await;
    a.refused(
        "PATCH",
        "/api/v2/dags",
        None,
        Some(json!({"is_paused": false})),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    a.refused(
        "PATCH",
        "/api/v2/dags",
        Some(&viewer()),
        Some(json!({"is_paused": false})),
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(a.paused().await, before);
}

// ---- DELETE /api/v2/dags/{dag_id} ----------------------------------------------------------

#[tokio::test]
async fn delete_dag_removes_its_metadata_refuses_while_a_task_runs_and_the_file_brings_it_back() {
    let a = api(&[("slow.toml", SLOW), ("e.toml", E)]).await;
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("dags2"));
    let run = a.trigger("slow", Value::Null).await;
    let run_id = run["dag_run_id"].as_str().unwrap().to_string();
    a.call("POST", "/api/v2/dags/slow/favorite", Some(&viewer()), None)
        .await;
    // Wait until the task runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a
        .scalar("SELECT count(*) FROM task_instances WHERE dag_id = 'slow' AND state = 'running'")
        .await
        == 0
    {
        assert!(Instant::now() < deadline, "the task never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Airflow's 409 while a task instance is running; nothing is deleted.
    let m = a
        .refused(
            "DELETE",
            "/api/v2/dags/slow",
            Some(&op()),
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert!(m.contains(&format!("{run_id}/s")), "{m}");
    assert_eq!(
        a.scalar("SELECT count(*) FROM dag_runs WHERE dag_id = 'slow'")
            .await,
        1
    );
    // Who may: not without credentials, not a viewer, nor for a DAG that does not exist.
    a.refused(
        "DELETE",
        "/api/v2/dags/slow",
        None,
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    a.refused(
        "DELETE",
        "/api/v2/dags/slow",
        Some(&viewer()),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    let m = a
        .refused(
            "DELETE",
            "/api/v2/dags/nope",
            Some(&op()),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(m, "The Dag with ID: `nope` was not found");
    a.refused(
        "DELETE",
        "/api/v2/dags/slow?cascade=true",
        Some(&op()),
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Once the try has ended: a 204 and everything recorded of it is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = a
            .call("DELETE", "/api/v2/dags/slow", Some(&op()), None)
            .await;
        if status == StatusCode::NO_CONTENT {
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(Instant::now() < deadline, "the task never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    for table in [
        "dags",
        "dag_versions",
        "dag_runs",
        "task_instances",
        "dag_favorites",
    ] {
        assert_eq!(
            a.scalar(&format!(
                "SELECT count(*) FROM {table} WHERE dag_id = 'slow'"
            ))
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(a.scalar("SELECT count(*) FROM task_tries").await, 0);
    // The other DAG is untouched; the audit log keeps its rows (Airflow keeps its `log`).
    assert_eq!(
        a.scalar("SELECT count(*) FROM dags WHERE dag_id = 'e'")
            .await,
        1
    );
    assert!(
        a.scalar("SELECT count(*) FROM event_log WHERE dag_id = 'slow' AND event = 'delete_dag'")
            .await
            >= 1
    );
    a.refused(
        "GET",
        "/api/v2/dags/slow",
        Some(&viewer()),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    a.refused(
        "DELETE",
        "/api/v2/dags/slow",
        Some(&op()),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;

    // The file is still in the folder: the next sync records the DAG again, afresh.
    a.sync().await;
    let body = a
        .ok("/api/v2/dags/slow", "/api/v2/dags/{dag_id}", &viewer())
        .await;
    assert_eq!(body["is_paused"], false);
    let versions = a
        .ok(
            "/api/v2/dags/slow/dagVersions",
            "/api/v2/dags/{dag_id}/dagVersions",
            &viewer(),
        )
        .await;
    assert_eq!(versions["total_entries"], 1);
    assert_eq!(versions["dag_versions"][0]["version_number"], 1);
    let runs = a
        .ok(
            "/api/v2/dags/slow/dagRuns",
            "/api/v2/dags/{dag_id}/dagRuns",
            &viewer(),
        )
        .await;
    assert_eq!(runs["total_entries"], 0);
}

// ---- GET /api/v2/dags/{dag_id}/details -----------------------------------------------------

#[tokio::test]
async fn details_answer_every_field_of_airflows_shape_from_the_definition() {
    let a = api(&[("d.toml", D), ("e.toml", E)]).await;
    let path = "/api/v2/dags/{dag_id}/details";
    let d = a.ok("/api/v2/dags/d/details", path, &viewer()).await;
    assert_eq!(d["dag_id"], "d");
    assert_eq!(d["description"], "first");
    assert_eq!(d["catchup"], true);
    assert_eq!(d["timezone"], "Asia/Kolkata");
    // Midnight in the DAG's timezone.
    assert_eq!(d["start_date"], "2023-12-31T18:30:00Z");
    assert!(d["end_date"].is_null());
    assert_eq!(d["max_active_tasks"], 3);
    assert_eq!(d["concurrency"], 3);
    assert_eq!(d["has_task_concurrency_limits"], true);
    assert_eq!(
        d["params"],
        json!({"n": {"value": 1, "description": null, "schema": {}}})
    );
    assert_eq!(d["timetable_summary"], "@daily");
    assert_eq!(d["is_favorite"], false);
    assert_eq!(d["active_runs_count"], 0);
    assert_eq!(d["latest_dag_version"]["version_number"], 1);
    assert_eq!(d["file_token"], d["latest_dag_version"]["bundle_version"]);
    for absent in [
        "dag_run_timeout",
        "asset_expression",
        "doc_md",
        "default_args",
        "owner_links",
    ] {
        assert!(d[absent].is_null(), "{absent}: {}", d[absent]);
    }
    // The list's fields agree with the details'.
    let one = a
        .ok("/api/v2/dags/d", "/api/v2/dags/{dag_id}", &viewer())
        .await;
    for k in [
        "max_active_tasks",
        "has_task_concurrency_limits",
        "file_token",
        "tags",
    ] {
        assert_eq!(one[k], d[k], "{k}");
    }
    let e = a.ok("/api/v2/dags/e/details", path, &viewer()).await;
    assert_eq!(e["has_task_concurrency_limits"], false);
    assert_eq!(e["catchup"], false);
    assert_eq!(e["timetable_periodic"], false);
    // The caller's own favourite.
    let (status, _) = a
        .call("POST", "/api/v2/dags/d/favorite", Some(&viewer()), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let d = a.ok("/api/v2/dags/d/details", path, &viewer()).await;
    assert_eq!(d["is_favorite"], true);
    let d = a.ok("/api/v2/dags/d/details", path, &admin()).await;
    assert_eq!(d["is_favorite"], false);

    let m = a
        .refused(
            "GET",
            "/api/v2/dags/nope/details",
            Some(&viewer()),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(m, "The Dag with ID: `nope` was not found");
    a.refused(
        "GET",
        "/api/v2/dags/d/details",
        None,
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    a.refused(
        "GET",
        "/api/v2/dags/d/details?x=1",
        Some(&viewer()),
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

// ---- GET /api/v2/dagSources/{dag_id} -------------------------------------------------------

#[tokio::test]
async fn dag_sources_serve_each_versions_own_text_and_never_invent_one() {
    let a = api(&[("d.toml", D)]).await;
    let path = "/api/v2/dagSources/{dag_id}";
    let v1 = a.ok("/api/v2/dagSources/d", path, &viewer()).await;
    assert_eq!(
        v1,
        json!({"content": D, "dag_id": "d", "version_number": 1, "dag_display_name": "d"})
    );
    // A new definition: a new version with its own text; the first keeps its own.
    let d2 = D.replace("description = \"first\"", "description = \"second\"");
    a.write("d.toml", &d2);
    a.sync().await;
    let now = a.ok("/api/v2/dagSources/d", path, &viewer()).await;
    assert_eq!(now["content"], d2.as_str());
    assert_eq!(now["version_number"], 2);
    // A comment alone changes no version (the hash is of the definition), only its text.
    let commented = format!("# a comment\n{d2}");
    a.write("d.toml", &commented);
    a.sync().await;
    let now = a.ok("/api/v2/dagSources/d", path, &viewer()).await;
    assert_eq!(now["content"], commented.as_str());
    assert_eq!(now["version_number"], 2);
    assert_eq!(
        a.scalar("SELECT count(*) FROM dag_versions WHERE dag_id = 'd'")
            .await,
        2
    );
    let first = a
        .ok("/api/v2/dagSources/d?version_number=1", path, &viewer())
        .await;
    assert_eq!(first["content"], D);
    assert_eq!(first["version_number"], 1);

    // As plain text on request; 406 for what Airflow does not serve.
    let (status, bytes, ctype) = a
        .raw(
            "GET",
            "/api/v2/dagSources/d?version_number=1",
            Some(&viewer()),
            None,
            Some("text/plain"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert_eq!(String::from_utf8(bytes).unwrap(), D);
    let (status, bytes, ctype) = a
        .raw(
            "GET",
            "/api/v2/dagSources/d",
            Some(&viewer()),
            None,
            Some("*/*"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
    let (status, bytes, _) = a
        .raw(
            "GET",
            "/api/v2/dagSources/d",
            Some(&viewer()),
            None,
            Some("image/png"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_airflow_shape("get", path, status, &body);

    // Unknown versions and DAGs, bad numbers, no credentials.
    let m = a
        .refused(
            "GET",
            "/api/v2/dagSources/d?version_number=3",
            Some(&viewer()),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(
        m,
        "The source code of the DAG d, version_number 3 was not found"
    );
    a.refused(
        "GET",
        "/api/v2/dagSources/nope",
        Some(&viewer()),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    for bad in [
        "version_number=x",
        "version_number=1&version_number=2",
        "file_token=1",
    ] {
        a.refused(
            "GET",
            &format!("/api/v2/dagSources/d?{bad}"),
            Some(&viewer()),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    a.refused(
        "GET",
        "/api/v2/dagSources/d",
        None,
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A version stored before upiflow kept file text (as the migration leaves old rows).
    sqlx::query("UPDATE dag_versions SET source = NULL WHERE spec->>'description' = 'first'")
        .execute(&a.db.pool)
        .await
        .unwrap();
    let m = a
        .refused(
            "GET",
            "/api/v2/dagSources/d?version_number=1",
            Some(&viewer()),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert!(m.contains("version 1") && m.contains("not kept"), "{m}");
    // The current version still has its text.
    a.ok("/api/v2/dagSources/d", path, &viewer()).await;
}

// ---- GET /api/v2/dags/{dag_id}/dagVersions[/{version_number}] ------------------------------

#[tokio::test]
async fn dag_versions_are_numbered_as_runs_show_them_and_filter_order_and_page() {
    let a = api(&[("d.toml", D), ("e.toml", E)]).await;
    // A run on the first version, before the file changes twice.
    let first_run = a.trigger("d", json!("2024-01-04T00:00:00Z")).await;
    let d2 = D.replace("first", "second");
    a.write("d.toml", &d2);
    a.sync().await;
    a.write("d.toml", &D.replace("first", "third"));
    a.sync().await;
    let list = "/api/v2/dags/{dag_id}/dagVersions";
    let all = a.ok("/api/v2/dags/d/dagVersions", list, &viewer()).await;
    assert_eq!(all["total_entries"], 3);
    let numbers = |v: &Value| -> Vec<i64> {
        v["dag_versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["version_number"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&all), [1, 2, 3]);
    // `~`: every DAG's.
    let every = a.ok("/api/v2/dags/~/dagVersions", list, &viewer()).await;
    assert_eq!(every["total_entries"], 4);
    // Filters.
    let two = a
        .ok(
            "/api/v2/dags/d/dagVersions?version_number=2",
            list,
            &viewer(),
        )
        .await;
    assert_eq!(numbers(&two), [2]);
    let hash = two["dag_versions"][0]["bundle_version"]
        .as_str()
        .unwrap()
        .to_string();
    let by_hash = a
        .ok(
            &format!("/api/v2/dags/~/dagVersions?bundle_version={hash}"),
            list,
            &viewer(),
        )
        .await;
    assert_eq!(numbers(&by_hash), [2]);
    let none = a
        .ok(
            "/api/v2/dags/d/dagVersions?bundle_name=other",
            list,
            &viewer(),
        )
        .await;
    assert_eq!(none["total_entries"], 0);
    let same = a
        .ok(
            "/api/v2/dags/d/dagVersions?bundle_name=dags-folder",
            list,
            &viewer(),
        )
        .await;
    assert_eq!(same["total_entries"], 3);
    // Order and page.
    let desc = a
        .ok(
            "/api/v2/dags/d/dagVersions?order_by=-version_number",
            list,
            &viewer(),
        )
        .await;
    assert_eq!(numbers(&desc), [3, 2, 1]);
    let desc = a
        .ok("/api/v2/dags/d/dagVersions?order_by=-id", list, &viewer())
        .await;
    assert_eq!(numbers(&desc), [3, 2, 1]);
    let page = a
        .ok(
            "/api/v2/dags/d/dagVersions?limit=1&offset=1",
            list,
            &viewer(),
        )
        .await;
    assert_eq!(numbers(&page), [2]);
    assert_eq!(page["total_entries"], 3);

    // One version.
    let one = "/api/v2/dags/{dag_id}/dagVersions/{version_number}";
    let v3 = a.ok("/api/v2/dags/d/dagVersions/3", one, &viewer()).await;
    assert_eq!(v3, all["dag_versions"][2]);
    let m = a
        .refused(
            "GET",
            "/api/v2/dags/d/dagVersions/4",
            Some(&viewer()),
            None,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(
        m,
        "The DagVersion with dag_id: `d` and version_number: `4` was not found"
    );
    a.refused(
        "GET",
        "/api/v2/dags/nope/dagVersions/1",
        Some(&viewer()),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    a.refused(
        "GET",
        "/api/v2/dags/nope/dagVersions",
        Some(&viewer()),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    for bad in [
        "/api/v2/dags/d/dagVersions/x",
        "/api/v2/dags/d/dagVersions?version_number=x",
        "/api/v2/dags/d/dagVersions?limit=-1",
        "/api/v2/dags/d/dagVersions?dag_id=d",
    ] {
        a.refused(
            "GET",
            bad,
            Some(&viewer()),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // Airflow's 400 for a sort key it does not have.
    let m = a
        .refused(
            "GET",
            "/api/v2/dags/d/dagVersions?order_by=hash",
            Some(&viewer()),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(m.contains("hash"), "{m}");
    a.refused(
        "GET",
        "/api/v2/dags/d/dagVersions",
        None,
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    a.refused(
        "GET",
        "/api/v2/dags/d/dagVersions/1",
        None,
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A run carries the same version (number and id) as the list and the details.
    let run = a.trigger("d", json!("2024-01-05T00:00:00Z")).await;
    assert_eq!(run["dag_versions"][0], v3);
    assert_eq!(first_run["dag_versions"][0], all["dag_versions"][0]);
    // The lists read each row's version in their own query: the same numbers and ids.
    let runs = a
        .ok(
            "/api/v2/dags/d/dagRuns?order_by=logical_date",
            "/api/v2/dags/{dag_id}/dagRuns",
            &viewer(),
        )
        .await;
    let listed: Vec<&Value> = runs["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["dag_versions"][0])
        .collect();
    assert_eq!(listed, [&all["dag_versions"][0], &v3]);
    let tis = a
        .ok(
            "/api/v2/dags/d/dagRuns/~/taskInstances?order_by=logical_date",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
            &viewer(),
        )
        .await;
    let tis = tis["task_instances"].as_array().unwrap();
    assert!(tis.len() >= 2, "{tis:?}");
    assert_eq!(tis[0]["dag_version"], all["dag_versions"][0]);
    assert_eq!(tis[tis.len() - 1]["dag_version"], v3);
    let details = a
        .ok(
            "/api/v2/dags/d/details",
            "/api/v2/dags/{dag_id}/details",
            &viewer(),
        )
        .await;
    assert_eq!(details["latest_dag_version"], v3);
}

// ---- favourites ---------------------------------------------------------------------------

#[tokio::test]
async fn favorites_are_each_callers_own_and_filter_the_dag_list() {
    let a = api(&[("d.toml", D), ("e.toml", E), ("f.toml", F)]).await;
    let key = upiflow_web::api_keys::create(&a.db.pool, "vic", Role::Viewer, "test", None)
        .await
        .unwrap();
    let by_key = format!("Bearer {key}");
    let favourites = |who: String, fav: bool| {
        let a = &a;
        async move {
            let body = a
                .ok(
                    &format!("/api/v2/dags?is_favorite={fav}"),
                    "/api/v2/dags",
                    &who,
                )
                .await;
            ids(&body["dags"])
        }
    };
    assert!(favourites(viewer(), true).await.is_empty());
    for (who, dag) in [(viewer(), "e"), (viewer(), "d"), (admin(), "f_other")] {
        let (status, body) = a
            .call(
                "POST",
                &format!("/api/v2/dags/{dag}/favorite"),
                Some(&who),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    assert_eq!(favourites(viewer(), true).await, ["d", "e"]);
    assert_eq!(favourites(viewer(), false).await, ["f_other"]);
    assert_eq!(favourites(admin(), true).await, ["f_other"]);
    // An API key named like a user keeps its own list.
    assert!(favourites(by_key.clone(), true).await.is_empty());
    let (status, _) = a
        .call("POST", "/api/v2/dags/e/favorite", Some(&by_key), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(favourites(by_key.clone(), true).await, ["e"]);
    assert_eq!(favourites(viewer(), true).await, ["d", "e"]);
    // Airflow's 409s: favourite twice, unfavourite what is not one.
    let m = a
        .refused(
            "POST",
            "/api/v2/dags/d/favorite",
            Some(&viewer()),
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert!(m.contains("already"), "{m}");
    let (status, _) = a
        .call("POST", "/api/v2/dags/d/unfavorite", Some(&viewer()), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(favourites(viewer(), true).await, ["e"]);
    let m = a
        .refused(
            "POST",
            "/api/v2/dags/d/unfavorite",
            Some(&viewer()),
            None,
            StatusCode::CONFLICT,
        )
        .await;
    assert!(m.contains("not marked"), "{m}");
    // Unknown DAG, no credentials, bad input.
    for uri in ["/api/v2/dags/nope/favorite", "/api/v2/dags/nope/unfavorite"] {
        let m = a
            .refused("POST", uri, Some(&viewer()), None, StatusCode::NOT_FOUND)
            .await;
        assert_eq!(m, "The Dag with ID: `nope` was not found");
        a.refused("POST", uri, None, None, StatusCode::UNAUTHORIZED)
            .await;
    }
    a.refused(
        "POST",
        "/api/v2/dags/d/favorite?user=ada",
        Some(&viewer()),
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    a.refused(
        "GET",
        "/api/v2/dags?is_favorite=perhaps",
        Some(&viewer()),
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // The filter composes with the others.
    let body = a
        .ok(
            "/api/v2/dags?is_favorite=false&tags=finance",
            "/api/v2/dags",
            &viewer(),
        )
        .await;
    assert_eq!(ids(&body["dags"]), ["f_other"]);
}

// ---- through Airflow's own Python client ---------------------------------------------------

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("UPIFLOW_AIRFLOW_CLIENT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/airflow-client-venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: scripts/test.sh installs apache-airflow-client there",
        venv.display()
    );
    venv
}

/// Apache Airflow's official Python client (`tests/airflow_client/dags2.py`) against a real
/// server on a local port: its models accept every answer of these routes.
#[tokio::test]
async fn airflows_python_client_reads_and_changes_dags_through_these_routes() {
    const HELLO: &str = "dag_id = \"hello\"\nschedule = \"@daily\"\nstart_date = \"2026-01-01\"\n\
        catchup = false\n[params]\nwho = \"world\"\n[[tasks]]\nid = \"greet\"\nkind = \"noop\"\n";
    let a = api(&[("hello.toml", HELLO)]).await;
    auth::create_user(&a.db.pool, "airflow", "airflow-password", Role::Admin)
        .await
        .unwrap();
    let state = web_state(&a.db.pool).await;
    let listener = upiflow_web::listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(upiflow_web::serve(listener, state, async move {
        s.cancelled().await
    }));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/airflow_client/dags2.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(&script)
            .env("UPIFLOW_URL", &url)
            .env("UPIFLOW_USER", "airflow")
            .env("UPIFLOW_PASSWORD", "airflow-password")
            .env("DAG_FILE", a.dir.join("hello.toml"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client script finishes")
    .expect("python runs");
    stop.cancel();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "Airflow's client failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert_eq!(
        a.scalar("SELECT count(*) FROM dags WHERE dag_id = 'hello'")
            .await,
        0,
        "the client deleted it"
    );
}
