//! The DAG-level and global endpoints of the JSON API ("dagsapi", #14) in-process against a
//! real Postgres: tasks, tags, stats, warnings, import errors and the absent concepts, each
//! answer checked against Airflow's own document, each filter shown to filter, 401 without
//! credentials, 403 for a viewer on a change, bad input a 4xx with a `detail`.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
use upiflow_web::auth::{self, Role};

const D: &str = r#"
dag_id = "d"
description = "first"
schedule = "@daily"
start_date = "2024-01-01"
tags = ["upi", "daily"]
[params]
n = 1
[defaults]
retries = 2
retry_delay = "90s"
retry_exponential_backoff = true
timeout = "1d 2s"
[[tasks]]
id = "b_extract"
kind = "command"
command = ["true"]
priority_weight = 5
[[tasks]]
id = "a_load"
kind = "noop"
upstream = ["b_extract"]
trigger_rule = "all_done"
[[tasks]]
id = "c_report"
kind = "noop"
upstream = ["b_extract"]
priority_weight = 9
"#;

const E: &str = r#"
dag_id = "e"
schedule = "none"
tags = ["finance", "upi"]
[[tasks]]
id = "only"
kind = "noop"
"#;

struct Api {
    app: axum::Router,
    db: TestDb,
}

async fn api() -> Api {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let dir = dags_dir(&[("d.toml", D), ("e.toml", E)]);
    let mut conn = db.pool.acquire().await.unwrap();
    for dag in [load(&dir, "d.toml"), load(&dir, "e.toml")] {
        upiflow_engine::store::dags::sync(&mut conn, &dag)
            .await
            .unwrap();
    }
    let state = web_state(&db.pool).await;
    Api {
        app: upiflow_web::app(state),
        db,
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
        call_app(&self.app, method, uri, auth, body).await
    }

    /// A GET as the viewer that must answer 200 in Airflow's shape for `path`.
    async fn ok(&self, uri: &str, path: &str) -> Value {
        let (status, body) = self.call("GET", uri, Some(&viewer()), None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_airflow_shape("get", path, status, &body);
        body
    }

    /// A GET as the viewer that must answer `want` with a `detail` message.
    async fn refused(&self, uri: &str, want: StatusCode) -> String {
        let (status, body) = self.call("GET", uri, Some(&viewer()), None).await;
        assert_eq!(status, want, "{uri}: {body}");
        match &body["detail"] {
            Value::String(s) => s.clone(),
            Value::Null => panic!("{uri}: no detail in {body}"),
            other => other.to_string(),
        }
    }
}

fn viewer() -> String {
    basic("vic", "viewer-password")
}

fn admin() -> String {
    basic("ada", "admin-password")
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tasks_come_from_the_current_version_in_airflow_shape_and_sort_by_order_by() {
    let a = api().await;
    const LIST: &str = "/api/v2/dags/{dag_id}/tasks";
    let body = a.ok("/api/v2/dags/d/tasks", LIST).await;
    assert_eq!(body["total_entries"], 3);
    assert_eq!(
        strings(&body["tasks"], "task_id"),
        ["a_load", "b_extract", "c_report"]
    );
    let body = a
        .ok("/api/v2/dags/d/tasks?order_by=-priority_weight", LIST)
        .await;
    assert_eq!(
        strings(&body["tasks"], "task_id"),
        ["c_report", "b_extract", "a_load"]
    );
    let body = a
        .ok("/api/v2/dags/d/tasks?order_by=operator_name", LIST)
        .await;
    assert_eq!(strings(&body["tasks"], "operator_name")[0], "command");

    let t = a
        .ok(
            "/api/v2/dags/d/tasks/b_extract",
            "/api/v2/dags/{dag_id}/tasks/{task_id}",
        )
        .await;
    assert_eq!(t["operator_name"], "command");
    assert_eq!(t["retries"], 2.0);
    assert_eq!(
        t["retry_delay"],
        json!({"__type": "TimeDelta", "days": 0, "seconds": 90, "microseconds": 0})
    );
    assert_eq!(
        t["execution_timeout"],
        json!({"__type": "TimeDelta", "days": 1, "seconds": 2, "microseconds": 0})
    );
    assert_eq!(t["retry_exponential_backoff"], 2.0);
    assert_eq!(t["priority_weight"], 5.0);
    assert_eq!(t["pool"], "default_pool");
    assert_eq!(t["downstream_task_ids"], json!(["a_load", "c_report"]));
    assert_eq!(t["params"], json!({"n": 1}));
    assert_eq!(t["start_date"], "2024-01-01T00:00:00Z");
    let t = a
        .ok(
            "/api/v2/dags/d/tasks/a_load",
            "/api/v2/dags/{dag_id}/tasks/{task_id}",
        )
        .await;
    assert_eq!(t["trigger_rule"], "all_done");
    assert_eq!(t["downstream_task_ids"], json!([]));

    let m = a
        .refused(
            "/api/v2/dags/d/tasks?order_by=colour",
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(m.contains("colour"), "{m}");
    a.refused("/api/v2/dags/nope/tasks", StatusCode::NOT_FOUND)
        .await;
    let m = a
        .refused("/api/v2/dags/d/tasks/nope", StatusCode::NOT_FOUND)
        .await;
    assert!(m.contains("nope"), "{m}");
    let m = a
        .refused(
            "/api/v2/dags/d/tasks?limit=3",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(m.contains("limit"), "{m}");
}

#[tokio::test]
async fn dag_tags_are_distinct_sorted_and_filtered_by_pattern() {
    let a = api().await;
    const P: &str = "/api/v2/dagTags";
    let body = a.ok(P, P).await;
    assert_eq!(body["tags"], json!(["daily", "finance", "upi"]));
    assert_eq!(body["total_entries"], 3);
    let body = a.ok("/api/v2/dagTags?order_by=-name", P).await;
    assert_eq!(body["tags"], json!(["upi", "finance", "daily"]));
    let body = a.ok("/api/v2/dagTags?tag_name_pattern=AN", P).await;
    assert_eq!(body["tags"], json!(["finance"]));
    let body = a.ok("/api/v2/dagTags?tag_name_prefix_pattern=da", P).await;
    assert_eq!(body["tags"], json!(["daily"]));
    let body = a.ok("/api/v2/dagTags?limit=1&offset=1", P).await;
    assert_eq!(body["tags"], json!(["finance"]));
    assert_eq!(body["total_entries"], 3);
    a.refused("/api/v2/dagTags?order_by=dag_id", StatusCode::BAD_REQUEST)
        .await;
    a.refused("/api/v2/dagTags?limit=-1", StatusCode::UNPROCESSABLE_ENTITY)
        .await;
}

#[tokio::test]
async fn dag_stats_count_runs_per_state_for_the_dags_asked() {
    let a = api().await;
    const P: &str = "/api/v2/dagStats";
    let body = a.ok(P, P).await;
    assert_eq!(body, json!({"dags": [], "total_entries": 0}));
    for day in [5, 6] {
        let (status, run) = a
            .call(
                "POST",
                "/api/v2/dags/d/dagRuns",
                Some(&admin()),
                Some(json!({ "logical_date": format!("2024-01-{day:02}T00:00:00Z") })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{run}");
    }
    let (status, run) = a
        .call(
            "POST",
            "/api/v2/dags/e/dagRuns",
            Some(&admin()),
            Some(json!({ "logical_date": "2024-01-05T00:00:00Z" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let body = a.ok(P, P).await;
    assert_eq!(body["total_entries"], 2);
    let d = &body["dags"][0];
    assert_eq!(d["dag_id"], "d");
    let count = |d: &Value, state: &str| {
        d["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["state"] == state)
            .unwrap()["count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(d["stats"].as_array().unwrap().len(), 4);
    // A triggered run starts running at once (upiflow has no queue for runs under the limit).
    assert_eq!(count(d, "running"), 2, "{d}");
    assert_eq!(
        count(d, "queued") + count(d, "success") + count(d, "failed"),
        0
    );
    let body = a.ok("/api/v2/dagStats?dag_ids=e", P).await;
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["dags"][0]["dag_id"], "e");
    assert_eq!(count(&body["dags"][0], "running"), 1);
    let body = a.ok("/api/v2/dagStats?dag_ids=e,d", P).await;
    assert_eq!(body["total_entries"], 2);
    let body = a.ok("/api/v2/dagStats?dag_ids=nope", P).await;
    assert_eq!(body["total_entries"], 0);
    a.refused(
        "/api/v2/dagStats?dag_id=d",
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn import_errors_are_one_per_broken_file_with_every_problem_and_filter() {
    let a = api().await;
    const P: &str = "/api/v2/importErrors";
    let body = a.ok(P, P).await;
    assert_eq!(body, json!({"import_errors": [], "total_entries": 0}));
    let mut conn = a.db.pool.acquire().await.unwrap();
    upiflow_engine::store::dag_files::replace_import_errors(
        &mut conn,
        &[
            "/dags/broken.toml".to_string(),
            "/dags/broken.toml".to_string(),
            "/dags/other/bad.toml".to_string(),
        ],
        &[7, 3, 1],
        &[
            "unknown key `scheduel`",
            "tasks: a cycle a -> a",
            "not TOML",
        ],
    )
    .await
    .unwrap();
    drop(conn);
    let body = a.ok(P, P).await;
    assert_eq!(body["total_entries"], 2);
    let broken = body["import_errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["filename"] == "/dags/broken.toml")
        .unwrap()
        .clone();
    assert_eq!(
        broken["stack_trace"],
        "/dags/broken.toml:3: tasks: a cycle a -> a\n/dags/broken.toml:7: unknown key `scheduel`"
    );
    assert_eq!(broken["bundle_name"], "dags-folder");
    let id = broken["import_error_id"].as_i64().unwrap();
    assert!(id > 0);

    let one = a
        .ok(
            &format!("/api/v2/importErrors/{id}"),
            "/api/v2/importErrors/{import_error_id}",
        )
        .await;
    assert_eq!(one, broken);
    a.refused("/api/v2/importErrors/12345", StatusCode::NOT_FOUND)
        .await;
    let m = a
        .refused("/api/v2/importErrors/abc", StatusCode::UNPROCESSABLE_ENTITY)
        .await;
    assert!(!m.is_empty());

    let body = a.ok("/api/v2/importErrors?filename_pattern=OTHER", P).await;
    assert_eq!(
        strings(&body["import_errors"], "filename"),
        ["/dags/other/bad.toml"]
    );
    let body = a
        .ok("/api/v2/importErrors?filename_prefix_pattern=/dags/b", P)
        .await;
    assert_eq!(
        strings(&body["import_errors"], "filename"),
        ["/dags/broken.toml"]
    );
    let body = a
        .ok("/api/v2/importErrors?filename=/dags/other/bad.toml", P)
        .await;
    assert_eq!(body["total_entries"], 1);
    let body = a.ok("/api/v2/importErrors?order_by=-filename", P).await;
    assert_eq!(
        strings(&body["import_errors"], "filename"),
        ["/dags/other/bad.toml", "/dags/broken.toml"]
    );
    let body = a
        .ok("/api/v2/importErrors?order_by=filename&limit=1", P)
        .await;
    assert_eq!(
        strings(&body["import_errors"], "filename"),
        ["/dags/broken.toml"]
    );
    assert_eq!(body["total_entries"], 2);
    let body = a
        .ok("/api/v2/importErrors?bundle_name=dags-folder", P)
        .await;
    assert_eq!(body["total_entries"], 2);
    let body = a.ok("/api/v2/importErrors?bundle_name=elsewhere", P).await;
    assert_eq!(body["total_entries"], 0);
    a.refused(
        "/api/v2/importErrors?order_by=colour",
        StatusCode::BAD_REQUEST,
    )
    .await;
    a.refused(
        "/api/v2/importErrors?limit=5000",
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}

#[tokio::test]
async fn dag_warnings_are_truthfully_empty_and_check_their_parameters() {
    let a = api().await;
    const P: &str = "/api/v2/dagWarnings";
    let body = a.ok(P, P).await;
    assert_eq!(body, json!({"dag_warnings": [], "total_entries": 0}));
    let body = a
        .ok(
            "/api/v2/dagWarnings?dag_id=d&warning_type=non-existent%20pool",
            P,
        )
        .await;
    assert_eq!(body["total_entries"], 0);
    let m = a
        .refused(
            "/api/v2/dagWarnings?warning_type=loud",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(m.contains("loud"), "{m}");
    a.refused(
        "/api/v2/dagWarnings?order_by=colour",
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn absent_concepts_answer_airflows_empty_shape_or_a_501_with_a_detail() {
    let a = api().await;
    for (uri, path) in [
        ("/api/v2/plugins", "/api/v2/plugins"),
        ("/api/v2/plugins?limit=10", "/api/v2/plugins"),
        (
            "/api/v2/plugins/importErrors",
            "/api/v2/plugins/importErrors",
        ),
        ("/api/v2/providers", "/api/v2/providers"),
        ("/api/v2/assets", "/api/v2/assets"),
        ("/api/v2/assets/aliases", "/api/v2/assets/aliases"),
        ("/api/v2/assets/events", "/api/v2/assets/events"),
    ] {
        let body = a.ok(uri, path).await;
        assert_eq!(body["total_entries"], 0, "{uri}");
    }
    let m = a
        .refused(
            "/api/v2/assets?name_pattern=x",
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(m.contains("no assets"), "{m}");
    a.refused(
        "/api/v2/providers?limit=x",
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let m = a.refused("/api/v2/jobs", StatusCode::NOT_IMPLEMENTED).await;
    assert!(m.contains("job"), "{m}");
    // Favourites are served now (tests/api_dags2.rs); a viewer may keep its own.
    for uri in ["/api/v2/dags/d/favorite", "/api/v2/dags/d/unfavorite"] {
        let (status, body) = a.call("POST", uri, Some(&viewer()), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{uri}: {body}");
    }
    let (status, body) = a
        .call("PUT", "/api/v2/parseDagFile/abc", Some(&admin()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("parsing queue"));
}

#[tokio::test]
async fn every_new_route_answers_401_without_credentials_and_is_documented() {
    let a = api().await;
    let routes = [
        ("GET", "/api/v2/dags/d/tasks", "/api/v2/dags/{dag_id}/tasks"),
        (
            "GET",
            "/api/v2/dags/d/tasks/a_load",
            "/api/v2/dags/{dag_id}/tasks/{task_id}",
        ),
        ("GET", "/api/v2/dagTags", "/api/v2/dagTags"),
        ("GET", "/api/v2/dagStats", "/api/v2/dagStats"),
        ("GET", "/api/v2/dagWarnings", "/api/v2/dagWarnings"),
        ("GET", "/api/v2/importErrors", "/api/v2/importErrors"),
        (
            "GET",
            "/api/v2/importErrors/1",
            "/api/v2/importErrors/{import_error_id}",
        ),
        ("GET", "/api/v2/plugins", "/api/v2/plugins"),
        (
            "GET",
            "/api/v2/plugins/importErrors",
            "/api/v2/plugins/importErrors",
        ),
        ("GET", "/api/v2/providers", "/api/v2/providers"),
        ("GET", "/api/v2/assets", "/api/v2/assets"),
        ("GET", "/api/v2/assets/aliases", "/api/v2/assets/aliases"),
        ("GET", "/api/v2/assets/events", "/api/v2/assets/events"),
        (
            "POST",
            "/api/v2/dags/d/favorite",
            "/api/v2/dags/{dag_id}/favorite",
        ),
        (
            "POST",
            "/api/v2/dags/d/unfavorite",
            "/api/v2/dags/{dag_id}/unfavorite",
        ),
    ];
    let (_, doc) = a
        .call("GET", "/api/v2/openapi.json", Some(&viewer()), None)
        .await;
    for (m, uri, path) in routes {
        let (status, body) = a.call(m, uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {uri}");
        assert!(body["detail"].is_string(), "{m} {uri}: {body}");
        let method = m.to_lowercase();
        assert!(
            doc["paths"][path][&method].is_object(),
            "{m} {path} is not in our document"
        );
        assert!(
            airflow()["paths"][path][&method].is_object(),
            "{m} {path} is not Airflow's"
        );
    }
}
