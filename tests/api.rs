//! The JSON API in-process (tower `oneshot`) against a real Postgres: authentication on every
//! route, roles, Airflow's field names and status codes, bad input answered with a 4xx.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};

/// Three tasks: `extract` fails its first try and succeeds on the retry, `load` fails both
/// its tries, `report` is then upstream_failed; the run fails.
const PIPELINE: &str = r#"
dag_id = "p"
schedule = "@daily"
[defaults]
retries = 1
retry_delay = "100ms"
[[tasks]]
id = "extract"
kind = "command"
command = ["sh", "-c", "echo extracting try $UPIFLOW_TRY_NUMBER; test $UPIFLOW_TRY_NUMBER -ge 2"]
[[tasks]]
id = "load"
kind = "command"
upstream = ["extract"]
command = ["sh", "-c", "echo loading; echo cannot load >&2; exit 1"]
[[tasks]]
id = "report"
kind = "noop"
upstream = ["load"]
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
    let dir = dags_dir(&[
        (
            "d.toml",
            "dag_id = \"d\"\ndescription = \"<script>alert(1)</script>\"\nschedule = \"@daily\"\ntags = [\"upi\"]\n\
         [params]\nn = 1\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
        ),
        ("p.toml", PIPELINE),
    ]);
    let mut conn = db.pool.acquire().await.unwrap();
    for dag in [load(&dir, "d.toml"), load(&dir, "p.toml")] {
        upiflow_engine::store::dags::sync(&mut conn, &dag)
            .await
            .unwrap();
    }
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    Api {
        app: upiflow_web::app(state),
        db,
    }
}

impl Api {
    /// Like `call`, with extra request headers, answering the raw body and the headers.
    async fn raw(
        &self,
        uri: &str,
        auth: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut req = Request::builder()
            .method("GET")
            .uri(uri)
            .header("authorization", auth);
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
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_app(&self.app, method, uri, auth, body).await
    }
}

#[tokio::test]
async fn every_route_answers_401_without_credentials() {
    let a = api().await;
    // Version and health are public, as in Airflow.
    for uri in ["/api/v2/version", "/api/v2/monitor/health"] {
        let (status, body) = a.call("GET", uri, None, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    for (m, uri) in [
        ("GET", "/api/v2/dags"),
        ("GET", "/api/v2/dags/d"),
        ("PATCH", "/api/v2/dags/d"),
        ("GET", "/api/v2/dags/d/dagRuns"),
        ("POST", "/api/v2/dags/d/dagRuns"),
        ("GET", "/api/v2/dags/d/dagRuns/x"),
        ("PATCH", "/api/v2/dags/d/dagRuns/x"),
        ("GET", "/api/v2/dags/d/dagRuns/x/taskInstances"),
        ("PATCH", "/api/v2/dags/d/dagRuns/x/taskInstances/a"),
        ("PATCH", "/api/v2/dags/d/dagRuns/x/taskInstances/a/dry_run"),
        ("GET", "/api/v2/dags/~/dagRuns/~/taskInstances"),
        ("GET", "/api/v2/dags/d/dagRuns/x/taskInstances/a"),
        ("GET", "/api/v2/dags/d/dagRuns/x/taskInstances/a/tries"),
        ("GET", "/api/v2/dags/d/dagRuns/x/taskInstances/a/logs/1"),
        ("POST", "/api/v2/dags/d/clearTaskInstances"),
        ("POST", "/api/v2/backfills"),
        ("GET", "/api/v2/backfills/1"),
        ("DELETE", "/api/v2/dags/d/dagRuns/x"),
        ("POST", "/api/v2/dags/d/dagRuns/x/clear"),
        ("POST", "/api/v2/dags/~/dagRuns/list"),
        ("GET", "/api/v2/backfills?dag_id=d"),
        ("POST", "/api/v2/backfills/dry_run"),
        ("GET", "/api/v2/openapi.json"),
        ("GET", "/api/v2/eventLogs"),
        ("GET", "/api/v2/eventLogs/1"),
    ] {
        let (status, body) = a.call(m, uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {uri}");
        assert!(body["detail"].is_string(), "{m} {uri}: {body}");
        let (status, _) = a.call(m, uri, Some("Bearer not.a.token"), None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{m} {uri} with a forged token"
        );
    }
    let (status, _) = a
        .call(
            "GET",
            "/api/v2/dags",
            Some(&basic("ada", "wrong-password")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_from_auth_token_opens_the_api_and_viewers_cannot_change_anything() {
    let a = api().await;
    let (status, body) = a
        .call(
            "POST",
            "/auth/token",
            None,
            Some(json!({"username": "vic", "password": "viewer-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let viewer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let (status, _) = a
        .call(
            "POST",
            "/auth/token",
            None,
            Some(json!({"username": "vic", "password": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = a
        .call(
            "POST",
            "/auth/token",
            None,
            Some(json!({"username": "vic"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = a
        .call("GET", "/api/v2/dags?limit=10", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total_entries"], 2);
    let d = &body["dags"][0];
    assert_eq!(
        (d["dag_id"].as_str(), d["is_paused"].as_bool()),
        (Some("d"), Some(false))
    );
    // Untrusted text is returned as data, unchanged (escaping is the page's job).
    assert_eq!(d["description"], "<script>alert(1)</script>");
    assert_eq!(
        d["tags"],
        json!([{"name": "upi", "dag_id": "d", "dag_display_name": "d"}])
    );
    for (m, uri, b) in [
        ("PATCH", "/api/v2/dags/d", json!({"is_paused": true})),
        (
            "POST",
            "/api/v2/dags/d/dagRuns",
            json!({"logical_date": null}),
        ),
    ] {
        let (status, body) = a.call(m, uri, Some(&viewer), Some(b)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{m} {uri}: {body}");
    }
    let (status, body) = a.call("GET", "/api/v2/version", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["version"].is_string());
    let (status, body) = a
        .call("GET", "/api/v2/monitor/health", Some(&viewer), None)
        .await;
    assert_eq!(
        (status, body["metadatabase"]["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
}

#[tokio::test]
async fn an_admin_triggers_pauses_and_reads_runs_with_airflow_fields() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let (status, run) = a
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": "2024-01-05T10:00:00Z", "conf": {"n": 2}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["logical_date"], "2024-01-05T00:00:00Z");
    assert_eq!(run["data_interval_end"], "2024-01-06T00:00:00Z");
    assert_eq!(
        (run["run_type"].as_str(), run["conf"]["n"].as_i64()),
        (Some("manual"), Some(2))
    );
    let id = run["dag_run_id"].as_str().unwrap().to_string();
    // The same logical date again is a conflict; a bad conf is a 400; bad JSON a 422.
    let (status, body) = a
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": "2024-01-05T11:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = a
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": null, "conf": {"nope": 1}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown param `nope`")
    );
    let (status, _) = a
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": "yesterday"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = a
        .call(
            "POST",
            "/api/v2/dags/zzz/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = a
        .call(
            "GET",
            "/api/v2/dags/d/dagRuns?limit=1&offset=0",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["total_entries"].as_i64(),
            body["dag_runs"].as_array().unwrap().len()
        ),
        (Some(1), 1)
    );
    let (status, body) = a
        .call(
            "GET",
            &format!("/api/v2/dags/d/dagRuns/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, body["dag_run_id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let (status, _) = a
        .call("GET", "/api/v2/dags/d/dagRuns/nope", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = a
        .call("GET", "/api/v2/dags/d/dagRuns?limit=-1", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = a
        .call(
            "PATCH",
            "/api/v2/dags/d",
            Some(&admin),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(
        (status, body["is_paused"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, _) = a
        .call(
            "PATCH",
            "/api/v2/dags/d",
            Some(&admin),
            Some(json!({"is_paused": "yes"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = a.call("GET", "/api/v2/dags/nope", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(a.db);
}

// ---- Airflow's OpenAPI document: every answer must fit Airflow's response schema. ----

const TIS: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances";

/// Triggers `p` at 2024-01-05 and runs it to its end with a worker; returns its run id.
async fn run_pipeline(a: &Api, admin: &str) -> String {
    let (status, run) = a
        .call(
            "POST",
            "/api/v2/dags/p/dagRuns",
            Some(admin),
            Some(json!({"logical_date": "2024-01-05T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let id = run["dag_run_id"].as_str().unwrap().to_string();
    wait_for_state(a, admin, &id, "failed").await;
    id
}

async fn wait_for_state(a: &Api, auth: &str, run_id: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, run) = a
            .call(
                "GET",
                &format!("/api/v2/dags/p/dagRuns/{run_id}"),
                Some(auth),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        if run["state"] == want {
            return run;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "run did not become {want}: {run}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn by_task(body: &Value) -> std::collections::BTreeMap<String, Value> {
    body["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task_id"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

#[tokio::test]
async fn task_instances_of_a_real_run_with_tries_and_logs_in_airflow_shape() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let viewer = basic("vic", "viewer-password");
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("api"));
    let run_id = run_pipeline(&a, &admin).await;
    stop.cancel();
    worker.await.unwrap();

    let (status, run) = a
        .call(
            "GET",
            &format!("/api/v2/dags/p/dagRuns/{run_id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_airflow_shape(
        "get",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        status,
        &run,
    );
    assert_eq!(run["dag_versions"][0]["version_number"], 1);

    let base = format!("/api/v2/dags/p/dagRuns/{run_id}/taskInstances");
    let (status, body) = a.call("GET", &base, Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("get", TIS, status, &body);
    assert_eq!(body["total_entries"], 3);
    let tis = by_task(&body);
    let e = &tis["extract"];
    assert_eq!(
        (
            e["state"].as_str(),
            e["try_number"].as_i64(),
            e["max_tries"].as_i64()
        ),
        (Some("success"), Some(2), Some(1))
    );
    assert_eq!(e["operator"], "command");
    assert_eq!(e["dag_run_id"], run_id.as_str());
    assert_eq!(e["map_index"], -1);
    assert!(
        e["hostname"].is_string() && e["duration"].is_number(),
        "{e}"
    );
    assert_eq!(e["dag_version"]["version_number"], 1);
    assert_eq!(
        (
            tis["load"]["state"].as_str(),
            tis["report"]["state"].as_str()
        ),
        (Some("failed"), Some("upstream_failed"))
    );

    // Filters, order and pages; bad ones are 422 (400 for an order Airflow refuses).
    for (query, want) in [
        ("?state=failed", vec!["load"]),
        (
            "?state=success&state=upstream_failed",
            vec!["extract", "report"],
        ),
        ("?task_id=load", vec!["load"]),
        ("?order_by=-task_id", vec!["report", "load", "extract"]),
        ("?order_by=task_id&limit=1&offset=1", vec!["load"]),
        (
            "?logical_date_gte=2024-01-05T00:00:00Z&state=failed",
            vec!["load"],
        ),
        ("?logical_date_gt=2024-01-05T00:00:00Z", vec![]),
        (
            "?end_date_lte=2000-01-01T00:00:00Z&order_by=task_id",
            vec![],
        ),
        (
            "?end_date_gte=2000-01-01T00:00:00Z&order_by=task_id",
            vec!["extract", "load", "report"],
        ),
        (
            "?run_after_lte=2024-01-06T00:00:00Z&state=success",
            vec!["extract"],
        ),
        ("?map_index=-1&state=failed", vec!["load"]),
        ("?map_index=0", vec![]),
    ] {
        let (status, body) = a
            .call("GET", &format!("{base}{query}"), Some(&viewer), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let got: Vec<&str> = body["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{query}");
    }
    let (_, body) = a
        .call("GET", &format!("{base}?limit=1"), Some(&viewer), None)
        .await;
    assert_eq!(
        (
            body["total_entries"].as_i64(),
            body["task_instances"].as_array().unwrap().len()
        ),
        (Some(3), 1)
    );
    for query in [
        "?state=bogus",
        "?limit=x",
        "?limit=5000",
        "?offset=-1",
        "?start_date_gte=yesterday",
        "?unknown_filter=1&task_id=extract",
        "?executor=LocalExecutor",
        "?task_id=a&task_id=b",
    ] {
        let (status, body) = a
            .call("GET", &format!("{base}{query}"), Some(&viewer), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_airflow_shape("get", TIS, status, &body);
    }
    let (status, body) = a
        .call(
            "GET",
            &format!("{base}?order_by=password"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_airflow_shape("get", TIS, status, &body);
    // `~` lists across runs and DAGs; a SQL-looking id is just an unknown id.
    let (status, body) = a
        .call(
            "GET",
            "/api/v2/dags/~/dagRuns/~/taskInstances",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(
        (status, body["total_entries"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    let (_, body) = a
        .call(
            "GET",
            "/api/v2/dags/d/dagRuns/~/taskInstances",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(body["total_entries"], 0);
    for (uri, want) in [
        (
            "/api/v2/dags/nope/dagRuns/~/taskInstances",
            StatusCode::NOT_FOUND,
        ),
        (
            &format!("/api/v2/dags/d/dagRuns/{run_id}/taskInstances"),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v2/dags/p/dagRuns/x'%20OR%201=1--/taskInstances",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v2/dags/~/dagRuns/x/taskInstances",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = a.call("GET", uri, Some(&viewer), None).await;
        assert_eq!(status, want, "{uri}: {body}");
        assert!(body["detail"].is_string(), "{uri}: {body}");
        assert_airflow_shape("get", TIS, status, &body);
    }

    // One task instance.
    let one = format!("{TIS}/{{task_id}}");
    let (status, body) = a
        .call("GET", &format!("{base}/extract"), Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_airflow_shape("get", &one, status, &body);
    assert_eq!(body["id"], tis["extract"]["id"]);
    for uri in [
        format!("{base}/nope"),
        "/api/v2/dags/p/dagRuns/nope/taskInstances/extract".to_string(),
        format!("/api/v2/dags/nope/dagRuns/{run_id}/taskInstances/extract"),
    ] {
        let (status, body) = a.call("GET", &uri, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_airflow_shape("get", &one, status, &body);
    }

    // Its tries: the failed first one and the successful retry, on this machine.
    let tries = format!("{TIS}/{{task_id}}/tries");
    let (status, body) = a
        .call("GET", &format!("{base}/extract/tries"), Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_airflow_shape("get", &tries, status, &body);
    let got: Vec<(i64, &str)> = body["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["try_number"].as_i64().unwrap(),
                t["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [(1, "failed"), (2, "success")]);
    assert_eq!(body["total_entries"], 2);
    let (status, _) = a
        .call(
            "GET",
            &format!("{base}/extract/tries?map_index=3"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = a
        .call(
            "GET",
            &format!("{base}/extract/tries?map_index=x"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = a
        .call("GET", &format!("{base}/nope/tries"), Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Logs of each try, in JSON and in NDJSON.
    let logs = format!("{TIS}/{{task_id}}/logs/{{try_number}}");
    let (status, body) = a
        .call(
            "GET",
            &format!("{base}/extract/logs/1"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("get", &logs, status, &body);
    let events: Vec<&str> = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"extracting try 1"), "{events:?}");
    assert!(!events.contains(&"extracting try 2"), "{events:?}");
    assert!(
        body["continuation_token"].is_null(),
        "an ended try is read to its end"
    );
    let (_, body) = a
        .call("GET", &format!("{base}/load/logs/2"), Some(&viewer), None)
        .await;
    let stderr: Vec<&Value> = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["stream"] == "stderr")
        .collect();
    assert_eq!(stderr.len(), 1, "{body}");
    assert_eq!(stderr[0]["event"], "cannot load");
    let (status, headers, text) = a
        .raw(
            &format!("{base}/extract/logs/2?full_content=true"),
            &viewer,
            &[("accept", "application/x-ndjson")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert!(headers.get("airflow-continuation-token").is_none());
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["event"] == "extracting try 2"),
        "{text}"
    );
    let (status, _, text) = a
        .raw(
            &format!("{base}/extract/logs/1"),
            &viewer,
            &[("accept", "text/plain")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{text}");
    for (uri, want) in [
        (format!("{base}/extract/logs/3"), StatusCode::NOT_FOUND),
        (format!("{base}/extract/logs/0"), StatusCode::NOT_FOUND),
        (format!("{base}/nope/logs/1"), StatusCode::NOT_FOUND),
        (
            format!("{base}/extract/logs/-1"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{base}/extract/logs/one"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{base}/extract/logs/1?token=forged"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{base}/extract/logs/1?full_content=maybe"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = a.call("GET", &uri, Some(&viewer), None).await;
        assert_eq!(status, want, "{uri}: {body}");
        assert_airflow_shape("get", &logs, status, &body);
    }
}

#[tokio::test]
async fn clearing_task_instances_lists_them_dry_and_reruns_them_for_an_admin() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let viewer = basic("vic", "viewer-password");
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("api"));
    let run_id = run_pipeline(&a, &admin).await;
    let clear = "/api/v2/dags/p/clearTaskInstances";
    let path = "/api/v2/dags/{dag_id}/clearTaskInstances";

    let (status, body) = a.call("POST", clear, None, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_airflow_shape("post", path, status, &body);
    let (status, body) = a.call("POST", clear, Some(&viewer), Some(json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_airflow_shape("post", path, status, &body);

    // Airflow's defaults: a dry run of the failed instances (here across every run).
    let (status, body) = a.call("POST", clear, Some(&admin), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("post", path, status, &body);
    let tis = by_task(&body);
    assert_eq!(tis.keys().collect::<Vec<_>>(), ["load", "report"]);
    assert_eq!(tis["load"]["state"], "failed", "a dry run changes nothing");
    let (status, body) = a
        .call(
            "POST",
            clear,
            Some(&admin),
            Some(
                json!({"dag_run_id": run_id, "only_failed": false, "task_ids": ["extract"],
                        "include_downstream": true}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_task(&body).len(), 3);
    let (status, body) = a
        .call(
            "POST",
            clear,
            Some(&admin),
            Some(
                json!({"dag_run_id": run_id, "only_failed": false, "task_ids": ["load"],
                        "include_upstream": true}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        by_task(&body).keys().collect::<Vec<_>>(),
        ["extract", "load"]
    );
    let (_, body) = a
        .call(
            "POST",
            clear,
            Some(&admin),
            Some(json!({"start_date": "2024-01-06T00:00:00Z"})),
        )
        .await;
    assert_eq!(body["total_entries"], 0, "no run from that date on");

    // Bad input.
    for (b, want) in [
        (json!({"dry_run": "yes"}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"surprise": 1}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"task_ids": "load"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"dag_run_id": "nope"}), StatusCode::NOT_FOUND),
        (json!({"task_ids": ["nope"]}), StatusCode::NOT_FOUND),
    ] {
        let (status, body) = a.call("POST", clear, Some(&admin), Some(b.clone())).await;
        assert_eq!(status, want, "{b}: {body}");
        assert_airflow_shape("post", path, status, &body);
    }
    let (status, _) = a
        .call(
            "POST",
            "/api/v2/dags/nope/clearTaskInstances",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // For real: `load` and what follows it run again (and `load` fails again).
    let (status, body) = a
        .call(
            "POST",
            clear,
            Some(&admin),
            Some(
                json!({"dry_run": false, "dag_run_id": run_id, "task_ids": ["load"],
                        "include_downstream": true, "only_failed": false}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("post", path, status, &body);
    let tis = by_task(&body);
    assert_eq!(tis.keys().collect::<Vec<_>>(), ["load", "report"]);
    assert_ne!(tis["load"]["state"], "failed", "{body}");
    assert!(tis["report"]["state"].is_null(), "{body}");
    assert_eq!(tis["load"]["max_tries"], 3, "a fresh allowance of retries");
    wait_for_state(&a, &admin, &run_id, "failed").await;
    stop.cancel();
    worker.await.unwrap();
    let (_, body) = a
        .call(
            "GET",
            &format!("/api/v2/dags/p/dagRuns/{run_id}/taskInstances/load/tries"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(body["total_entries"], 4, "{body}");
    let (_, body) = a
        .call(
            "GET",
            &format!("/api/v2/dags/p/dagRuns/{run_id}/taskInstances/extract/tries"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(body["total_entries"], 2, "extract was not cleared");
}

#[tokio::test]
async fn backfills_are_created_by_admins_and_read_back() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let viewer = basic("vic", "viewer-password");
    let post = "/api/v2/backfills";
    let good = json!({"dag_id": "d", "from_date": "2024-01-01T00:00:00Z",
                      "to_date": "2024-01-03T00:00:00Z"});

    let (status, body) = a.call("POST", post, None, Some(good.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_airflow_shape("post", post, status, &body);
    let (status, body) = a
        .call("POST", post, Some(&viewer), Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_airflow_shape("post", post, status, &body);

    let (status, b) = a.call("POST", post, Some(&admin), Some(good.clone())).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_airflow_shape("post", post, status, &b);
    assert_eq!(
        (
            b["dag_id"].as_str(),
            b["reprocess_behavior"].as_str(),
            b["dag_run_conf"].clone()
        ),
        (Some("d"), Some("none"), json!({}))
    );
    assert_eq!(b["from_date"], "2024-01-01T00:00:00Z");
    assert!(b["completed_at"].is_null());
    let id = b["id"].as_i64().unwrap();
    let (_, runs) = a
        .call("GET", "/api/v2/dags/d/dagRuns", Some(&viewer), None)
        .await;
    assert_eq!(runs["total_entries"], 3);
    assert!(
        runs["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["run_type"] == "backfill" && r["triggered_by"] == "backfill")
    );

    // The same request again resumes the same backfill.
    let (_, again) = a.call("POST", post, Some(&admin), Some(good.clone())).await;
    assert_eq!(again["id"], id);
    let mut failed = good.clone();
    failed["reprocess_behavior"] = json!("failed");
    let (status, b2) = a.call("POST", post, Some(&admin), Some(failed)).await;
    assert_eq!(
        (status, b2["reprocess_behavior"].as_str()),
        (StatusCode::OK, Some("failed"))
    );
    assert_ne!(b2["id"], id);

    let one = "/api/v2/backfills/{backfill_id}";
    let (status, body) = a
        .call(
            "GET",
            &format!("/api/v2/backfills/{id}"),
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!((status, body["id"].as_i64()), (StatusCode::OK, Some(id)));
    assert_airflow_shape("get", one, status, &body);
    for (uri, want) in [
        ("/api/v2/backfills/999999", StatusCode::NOT_FOUND),
        ("/api/v2/backfills/abc", StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/v2/backfills/-1", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/api/v2/backfills/99999999999999999999999",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = a.call("GET", uri, Some(&viewer), None).await;
        assert_eq!(status, want, "{uri}: {body}");
        assert_airflow_shape("get", one, status, &body);
    }

    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("to_date");
    for (b, want) in [
        (missing, StatusCode::UNPROCESSABLE_ENTITY),
        (
            with("from_date", json!("last week")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with("reprocess_behavior", json!("sometimes")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with("run_backwards", json!(true)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            with("dag_run_conf", json!({"n": 2})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (with("surprise", json!(1)), StatusCode::UNPROCESSABLE_ENTITY),
        (
            with("to_date", json!("2023-12-01T00:00:00Z")),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (with("dag_id", json!("nope")), StatusCode::NOT_FOUND),
        (
            with("dag_id", json!("d'; DROP TABLE dags; --")),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, body) = a.call("POST", post, Some(&admin), Some(b.clone())).await;
        assert_eq!(status, want, "{b}: {body}");
        assert_airflow_shape("post", post, status, &body);
    }
    let (status, body) = a.call("GET", "/api/v2/dags", Some(&viewer), None).await;
    assert_eq!(body["total_entries"], 2, "{body}");
    assert_airflow_shape("get", "/api/v2/dags", status, &body);
}

#[tokio::test]
async fn the_answers_of_the_first_endpoints_fit_airflows_schemas_too() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    for (method, uri, template, body) in [
        ("get", "/api/v2/version", "/api/v2/version", None),
        (
            "get",
            "/api/v2/monitor/health",
            "/api/v2/monitor/health",
            None,
        ),
        ("get", "/api/v2/dags", "/api/v2/dags", None),
        ("get", "/api/v2/dags/d", "/api/v2/dags/{dag_id}", None),
        ("get", "/api/v2/dags/nope", "/api/v2/dags/{dag_id}", None),
        (
            "patch",
            "/api/v2/dags/d",
            "/api/v2/dags/{dag_id}",
            Some(json!({"is_paused": false})),
        ),
        (
            "patch",
            "/api/v2/dags/d",
            "/api/v2/dags/{dag_id}",
            Some(json!({"is_paused": 1})),
        ),
        (
            "post",
            "/api/v2/dags/d/dagRuns",
            "/api/v2/dags/{dag_id}/dagRuns",
            Some(json!({"logical_date": "2024-02-01T00:00:00Z"})),
        ),
        (
            "get",
            "/api/v2/dags/d/dagRuns",
            "/api/v2/dags/{dag_id}/dagRuns",
            None,
        ),
        (
            "get",
            "/api/v2/dags/d/dagRuns?limit=-5",
            "/api/v2/dags/{dag_id}/dagRuns",
            None,
        ),
    ] {
        let (status, got) = a
            .call(&method.to_uppercase(), uri, Some(&admin), body)
            .await;
        assert_airflow_shape(method, template, status, &got);
    }
}

#[tokio::test]
async fn our_openapi_document_lists_every_route_with_airflows_paths_and_fields() {
    let a = api().await;
    let viewer = basic("vic", "viewer-password");
    let (status, doc) = a
        .call("GET", "/api/v2/openapi.json", Some(&viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        (
            schemes["HTTPBearer"]["scheme"].as_str(),
            schemes["HTTPBasic"]["scheme"].as_str()
        ),
        (Some("bearer"), Some("basic"))
    );
    let mut ours = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ours.push((method.to_uppercase(), path.clone()));
        }
    }
    ours.sort();
    // Every route served is documented (and nothing else).
    let mut served: Vec<(String, String)> = [
        ("POST", "/auth/token"),
        ("POST", "/auth/logout"),
        ("GET", "/api/v2/version"),
        ("GET", "/api/v2/monitor/health"),
        ("GET", "/api/v2/openapi.json"),
        ("GET", "/api/v2/dags"),
        ("GET", "/api/v2/dags/{dag_id}"),
        ("PATCH", "/api/v2/dags/{dag_id}"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns"),
        ("POST", "/api/v2/dags/{dag_id}/dagRuns"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"),
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"),
        ("GET", TIS),
        (
            "PATCH",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        ),
        (
            "PATCH",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
        ),
        (
            "GET",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        ),
        (
            "GET",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries",
        ),
        (
            "GET",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
        ),
        ("POST", "/api/v2/dags/{dag_id}/clearTaskInstances"),
        ("POST", "/api/v2/backfills"),
        ("GET", "/api/v2/backfills/{backfill_id}"),
        // #14 runsapi
        ("DELETE", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}"),
        ("POST", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear"),
        ("POST", "/api/v2/dags/{dag_id}/dagRuns/list"),
        ("GET", "/api/v2/backfills"),
        ("POST", "/api/v2/backfills/dry_run"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/tries/{task_try_number}"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/tries/{task_try_number}"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/listMapped"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/wait"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies"),
        ("GET", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dependencies"),
        ("PUT", "/api/v2/backfills/{backfill_id}/pause"),
        ("PUT", "/api/v2/backfills/{backfill_id}/unpause"),
        ("PUT", "/api/v2/backfills/{backfill_id}/cancel"),
        ("GET", "/api/v2/pools"),
        ("POST", "/api/v2/pools"),
        ("GET", "/api/v2/pools/{pool_name}"),
        ("PATCH", "/api/v2/pools/{pool_name}"),
        ("DELETE", "/api/v2/pools/{pool_name}"),
        ("GET", "/api/v2/connections"),
        ("POST", "/api/v2/connections"),
        ("POST", "/api/v2/connections/test"),
        ("GET", "/api/v2/connections/{connection_id}"),
        ("PATCH", "/api/v2/connections/{connection_id}"),
        ("DELETE", "/api/v2/connections/{connection_id}"),
        ("GET", "/api/v2/variables"),
        ("POST", "/api/v2/variables"),
        ("GET", "/api/v2/variables/{variable_key}"),
        ("PATCH", "/api/v2/variables/{variable_key}"),
        ("DELETE", "/api/v2/variables/{variable_key}"),
        ("GET", "/api/v2/eventLogs"),
        ("GET", "/api/v2/eventLogs/{event_log_id}"),
        // dagsapi (#14)
        ("GET", "/api/v2/dags/{dag_id}/tasks"),
        ("GET", "/api/v2/dags/{dag_id}/tasks/{task_id}"),
        ("GET", "/api/v2/dagTags"),
        ("GET", "/api/v2/dagStats"),
        ("GET", "/api/v2/dagWarnings"),
        ("GET", "/api/v2/importErrors"),
        ("GET", "/api/v2/importErrors/{import_error_id}"),
        ("GET", "/api/v2/plugins"),
        ("GET", "/api/v2/plugins/importErrors"),
        ("GET", "/api/v2/providers"),
        ("GET", "/api/v2/assets"),
        ("GET", "/api/v2/assets/aliases"),
        ("GET", "/api/v2/assets/events"),
        ("POST", "/api/v2/dags/{dag_id}/favorite"),
        ("POST", "/api/v2/dags/{dag_id}/unfavorite"),
        // dags2 (#14)
        ("PATCH", "/api/v2/dags"),
        ("DELETE", "/api/v2/dags/{dag_id}"),
        ("GET", "/api/v2/dags/{dag_id}/details"),
        ("GET", "/api/v2/dagSources/{dag_id}"),
        ("GET", "/api/v2/dags/{dag_id}/dagVersions"),
        ("GET", "/api/v2/dags/{dag_id}/dagVersions/{version_number}"),
        // ops2 (#14)
        ("PATCH", "/api/v2/pools"),
        ("PATCH", "/api/v2/connections"),
        ("PATCH", "/api/v2/variables"),
        ("GET", "/api/v2/config"),
        ("GET", "/api/v2/config/section/{section}/option/{option}"),
        ("POST", "/auth/token/cli"),
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns"), // runs2 (#14)
        ("POST", "/api/v2/dags/{dag_id}/clearDagRuns"), // runs2 (#14)
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances"), // runs2 (#14)
        ("POST", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list"), // runs2 (#14)
        ("DELETE", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}"), // runs2 (#14)
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}"), // runs2 (#14)
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run"), // runs2 (#14)
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    served.sort();
    assert_eq!(ours, served);

    let airflow = airflow();
    for (method, path) in &ours {
        let m = method.to_lowercase();
        // Each documented route is served and authenticates: 401 without credentials.
        let uri = path
            .replace("{backfill_id}", "1")
            .replace("{try_number}", "1")
            .replace("{task_try_number}", "1")
            .replace("{map_index}", "-1")
            .replace(['{', '}'], "");
        let (status, _) = a.call(method, &uri, None, None).await;
        let want = if path == "/auth/token" || path == "/auth/token/cli" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else if path == "/api/v2/version" || path == "/api/v2/monitor/health" {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(status, want, "{method} {uri}");
        if path.starts_with("/auth/") || path == "/api/v2/openapi.json" {
            continue; // Simple auth manager's routes; our own document.
        }
        // Airflow has the same route, and our documented answer has every field it requires.
        let theirs = &airflow["paths"][path][&m];
        assert!(theirs.is_object(), "Airflow has no {method} {path}");
        let ok = "200";
        let ours_answers = &doc["paths"][path][&m]["responses"];
        if ours_answers[ok].is_null() && ours_answers["501"].is_object() {
            continue; // A concept upiflow lacks (dagsapi's absent.rs): a 501, not a 200.
        }
        let their_schema = resolve(
            airflow,
            &theirs["responses"][ok]["content"]["application/json"]["schema"],
        );
        let our_schema = resolve(
            &doc,
            &doc["paths"][path][&m]["responses"][ok]["content"]["application/json"]["schema"],
        );
        for name in their_schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            assert!(
                our_schema["properties"].get(name).is_some(),
                "{method} {path}: our document lacks `{name}`"
            );
            assert!(
                our_schema["required"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|n| n == name)),
                "{method} {path}: our document does not require `{name}`"
            );
        }
    }
}

#[tokio::test]
async fn the_log_of_a_running_try_is_read_on_with_its_continuation_token() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let dir = dags_dir(&[(
        "slow.toml",
        "dag_id = \"slow\"\n[[tasks]]\nid = \"s\"\nkind = \"command\"\n\
         command = [\"sh\", \"-c\", \"echo first; sleep 2; echo second\"]\n",
    )]);
    let mut conn = a.db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &load(&dir, "slow.toml"))
        .await
        .unwrap();
    drop(conn);
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("api"));
    let (status, run) = a
        .call(
            "POST",
            "/api/v2/dags/slow/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let logs = format!(
        "/api/v2/dags/slow/dagRuns/{}/taskInstances/s/logs/1",
        run["dag_run_id"].as_str().unwrap()
    );
    let events = |body: &Value| -> Vec<String> {
        body["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["event"].as_str().unwrap().to_string())
            .collect()
    };
    // While the try runs, the answer so far and a token to read on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let first = loop {
        let (status, body) = a.call("GET", &logs, Some(&admin), None).await;
        if status == StatusCode::OK && events(&body).contains(&"first".to_string()) {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no first line: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!events(&first).contains(&"second".to_string()), "{first}");
    let mut token = first["continuation_token"]
        .as_str()
        .expect("a running try's log goes on")
        .to_string();
    // Reading on with each token returns only new lines, until the try has ended.
    let mut rest = Vec::new();
    loop {
        let (status, body) = a
            .call("GET", &format!("{logs}?token={token}"), Some(&admin), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        rest.extend(events(&body));
        match body["continuation_token"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
        assert!(std::time::Instant::now() < deadline, "the log never ended");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(rest.contains(&"second".to_string()), "{rest:?}");
    assert!(!rest.contains(&"first".to_string()), "{rest:?}");
    stop.cancel();
    worker.await.unwrap();
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_with_a_message() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let big = "x".repeat(upiflow_web::BODY_LIMIT + 1);
    let (status, body) = a
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(&admin),
            Some(json!({ "logical_date": null, "conf": { "blob": big } })),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("KiB"), "{body}");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
}

// ---- Health: each part as it is. ----

#[tokio::test]
async fn health_reports_the_scheduler_from_its_own_loop_record_not_from_workers() {
    let a = api().await;
    let path = "/api/v2/monitor/health";
    let health = || async {
        let (status, body) = a.call("GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_airflow_shape("get", path, status, &body);
        body
    };
    // No scheduler ever ran: unhealthy, no heartbeat; no triggerer nor DAG processor.
    let body = health().await;
    assert_eq!(body["metadatabase"]["status"], "healthy");
    assert_eq!(
        body["scheduler"],
        json!({"status": "unhealthy", "latest_scheduler_heartbeat": null})
    );
    assert_eq!(
        body["triggerer"],
        json!({"status": null, "latest_triggerer_heartbeat": null})
    );
    assert_eq!(
        body["dag_processor"],
        json!({"status": null, "latest_dag_processor_heartbeat": null})
    );
    // A worker heart-beating is no scheduler.
    sqlx::query("INSERT INTO workers (worker_id, hostname, pid) VALUES ('w1', 'h', 1)")
        .execute(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(health().await["scheduler"]["status"], "unhealthy");
    // A scheduler that just finished a loop: healthy, with that time.
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO scheduler_loops (scheduler_id, last_loop_at, loop_seconds)
         VALUES ('s1', now() - interval '5 seconds', 0.01) RETURNING last_loop_at",
    )
    .fetch_one(&a.db.pool)
    .await
    .unwrap();
    let body = health().await;
    assert_eq!(body["scheduler"]["status"], "healthy", "{body}");
    let beat = body["scheduler"]["latest_scheduler_heartbeat"]
        .as_str()
        .unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(beat).unwrap(),
        at,
        "{beat}"
    );
    // Its last loop 31 s ago (past Airflow's 30 s threshold): unhealthy, still with the time.
    sqlx::query("UPDATE scheduler_loops SET last_loop_at = now() - interval '31 seconds'")
        .execute(&a.db.pool)
        .await
        .unwrap();
    let body = health().await;
    assert_eq!(body["scheduler"]["status"], "unhealthy", "{body}");
    assert!(body["scheduler"]["latest_scheduler_heartbeat"].is_string());
    // The newest of several schedulers counts.
    sqlx::query(
        "INSERT INTO scheduler_loops (scheduler_id, last_loop_at, loop_seconds)
         VALUES ('s2', now(), 0.01)",
    )
    .execute(&a.db.pool)
    .await
    .unwrap();
    assert_eq!(health().await["scheduler"]["status"], "healthy");
    // A database that does not answer in time: unhealthy, answered as JSON (not a 500).
    let mut locker = a.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE scheduler_loops IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let body = health().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(body["metadatabase"]["status"], "unhealthy", "{body}");
    assert_eq!(body["scheduler"]["status"], "unhealthy", "{body}");
    locker.rollback().await.unwrap();
    assert_eq!(health().await["metadatabase"]["status"], "healthy");
    // Health takes no parameters.
    let (status, body) = a.call("GET", &format!("{path}?x=1"), None, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

// ---- Nothing accepted and ignored. ----

fn detail(body: &Value) -> String {
    match &body["detail"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Creates a manual run of `d` at `day` (2024-01-DD) and returns its id.
async fn trigger_d(a: &Api, admin: &str, day: u32) -> String {
    let (status, run) = a
        .call(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(admin),
            Some(json!({ "logical_date": format!("2024-01-{day:02}T00:00:00Z") })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    run["dag_run_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_unknown_query_parameter_or_body_field_is_refused_by_name_on_every_route() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let run = trigger_d(&a, &admin, 5).await;
    let gets = [
        "/api/v2/version".to_string(),
        "/api/v2/monitor/health".to_string(),
        "/api/v2/openapi.json".to_string(),
        "/api/v2/dags".to_string(),
        "/api/v2/dags/d".to_string(),
        "/api/v2/dags/d/dagRuns".to_string(),
        "/api/v2/dags/~/dagRuns".to_string(),
        format!("/api/v2/dags/d/dagRuns/{run}"),
        format!("/api/v2/dags/d/dagRuns/{run}/taskInstances"),
        "/api/v2/dags/~/dagRuns/~/taskInstances".to_string(),
        format!("/api/v2/dags/d/dagRuns/{run}/taskInstances/a"),
        format!("/api/v2/dags/d/dagRuns/{run}/taskInstances/a/tries"),
        format!("/api/v2/dags/d/dagRuns/{run}/taskInstances/a/logs/1"),
        "/api/v2/backfills/1".to_string(),
    ];
    for uri in &gets {
        // Also after parameters the route does take.
        let takes_limit =
            uri.ends_with("dagRuns") || uri.ends_with("taskInstances") || uri.ends_with("dags");
        let with_limit = if takes_limit {
            "?limit=1&surprise_param=1"
        } else {
            "?surprise_param=1"
        };
        for q in ["?surprise_param=1", with_limit] {
            let (status, body) = a
                .call("GET", &format!("{uri}{q}"), Some(&admin), None)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}{q}: {body}");
            assert!(detail(&body).contains("surprise_param"), "{uri}{q}: {body}");
        }
    }
    let good_backfill = json!({"dag_id": "d", "from_date": "2024-02-01T00:00:00Z",
                               "to_date": "2024-02-02T00:00:00Z"});
    let bodies = [
        ("PATCH", "/api/v2/dags/d", json!({"is_paused": false})),
        (
            "POST",
            "/api/v2/dags/d/dagRuns",
            json!({"logical_date": "2024-03-01T00:00:00Z"}),
        ),
        (
            "POST",
            "/api/v2/dags/d/clearTaskInstances",
            json!({"dry_run": true}),
        ),
        ("POST", "/api/v2/backfills", good_backfill),
        (
            "POST",
            "/auth/token",
            json!({"username": "ada", "password": "admin-password"}),
        ),
    ];
    for (m, uri, good) in &bodies {
        let mut bad = good.clone();
        bad["surprise_field"] = json!(1);
        let (status, body) = a.call(m, uri, Some(&admin), Some(bad)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{m} {uri}: {body}"
        );
        assert!(
            detail(&body).contains("surprise_field"),
            "{m} {uri}: {body}"
        );
        let (status, body) = a
            .call(
                m,
                &format!("{uri}?surprise_param=1"),
                Some(&admin),
                Some(good.clone()),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{m} {uri}: {body}"
        );
        assert!(
            detail(&body).contains("surprise_param"),
            "{m} {uri}: {body}"
        );
        // Nothing happened: the same good request still works.
        let (status, body) = a.call(m, uri, Some(&admin), Some(good.clone())).await;
        assert!(status.is_success(), "{m} {uri}: {status} {body}");
    }
    // Airflow 2's `only_active` is no Airflow 3 parameter: unknown.
    let (status, body) = a
        .call("GET", "/api/v2/dags?only_active=true", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail(&body).contains("unknown query parameter `only_active`"));
}

/// A value Airflow's document allows for a query parameter, to probe whether we take it.
fn sample(name: &str, schema: &Value, path: &str) -> &'static str {
    match name {
        "order_by" if path == "/api/v2/dags" => "dag_id",
        "order_by" => "id",
        "state" if path.ends_with("taskInstances") => "success",
        "state" | "dag_run_state" | "last_dag_run_state" => "success",
        "run_type" => "manual",
        "tags_match_mode" => "any",
        "update_mask" => "is_paused",
        "map_index" => "-1",
        "token" => "",
        _ => {
            let s = resolve(airflow(), schema);
            let s = s["anyOf"].as_array().map_or(s, |b| &b[0]);
            let s = if s["type"] == "array" { &s["items"] } else { s };
            match (s["type"].as_str(), s["format"].as_str()) {
                (Some("integer"), _) => "1",
                (Some("number"), _) => "1.5",
                (Some("boolean"), _) => "true",
                (Some("string"), Some("date-time")) => "2024-01-01T00:00:00Z",
                (Some("string"), Some("date")) => "2024-01-01",
                _ => "x",
            }
        }
    }
}

#[tokio::test]
async fn every_parameter_airflow_documents_is_implemented_or_refused_as_unsupported() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    // A run that really ran, so its task has a try and a log.
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("api"));
    let run = trigger_d(&a, &admin, 5).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, r) = a
            .call(
                "GET",
                &format!("/api/v2/dags/d/dagRuns/{run}"),
                Some(&admin),
                None,
            )
            .await;
        if r["state"] == "success" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    let (_, ours) = a
        .call("GET", "/api/v2/openapi.json", Some(&admin), None)
        .await;
    let mut implemented = 0;
    let mut refused = Vec::new();
    for (method, path) in [
        ("get", "/api/v2/dags"),
        ("patch", "/api/v2/dags/{dag_id}"),
        ("get", "/api/v2/dags/{dag_id}/dagRuns"),
        ("get", TIS),
        ("get", &format!("{TIS}/{{task_id}}/tries")),
        ("get", &format!("{TIS}/{{task_id}}/logs/{{try_number}}")),
        ("get", "/api/v2/eventLogs"),
    ] {
        let uri = path
            .replace("{dag_id}", "d")
            .replace("{dag_run_id}", &run)
            .replace("{task_id}", "a")
            .replace("{try_number}", "1");
        let body = (method == "patch").then(|| json!({"is_paused": false}));
        let our_params: Vec<&str> = ours["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let theirs = airflow()["paths"][path][method]["parameters"]
            .as_array()
            .unwrap();
        for p in theirs.iter().filter(|p| p["in"] == "query") {
            let name = p["name"].as_str().unwrap();
            let value = sample(name, &p["schema"], path);
            let (status, got) = a
                .call(
                    &method.to_uppercase(),
                    &format!("{uri}?{name}={value}"),
                    Some(&admin),
                    body.clone(),
                )
                .await;
            if status.is_success() {
                assert!(
                    our_params.contains(&name),
                    "{method} {path}: `{name}` is taken but not in our document"
                );
                implemented += 1;
            } else {
                assert_eq!(
                    status,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{path} {name}={value}: {got}"
                );
                let d = detail(&got);
                assert!(
                    d.contains(&format!("`{name}` is not supported by upiflow")),
                    "{path} {name}: {d}"
                );
                assert!(
                    !our_params.contains(&name),
                    "{path}: `{name}` is documented"
                );
                refused.push(name.to_string());
            }
        }
        // Everything our document lists is one of Airflow's parameters, and taken.
        for name in &our_params {
            assert!(
                theirs.iter().any(|p| p["name"] == *name),
                "{path}: our `{name}` is not Airflow's"
            );
        }
    }
    assert!(implemented >= 60, "{implemented} implemented");
    for name in [
        "owners",
        "cursor",
        "executor",
        "conf_contains",
        "updated_at_gte",
    ] {
        assert!(refused.iter().any(|r| r == name), "{name}: {refused:?}");
    }
}

async fn ids(a: &Api, uri: &str, field: &str, key: &str) -> (Vec<String>, i64) {
    let admin = basic("ada", "admin-password");
    let (status, body) = a.call("GET", uri, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    let got = body[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_string())
        .collect();
    (got, body["total_entries"].as_i64().unwrap())
}

#[tokio::test]
async fn the_dag_list_filters_for_real() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let dir = dags_dir(&[
        (
            "alpha_x.toml",
            "dag_id = \"alpha_x\"\ntags = [\"upi\", \"daily\"]\n[[tasks]]\nid = \"t\"\nkind = \"noop\"\n",
        ),
        (
            "beta.toml",
            "dag_id = \"beta\"\ntags = [\"daily\"]\n[[tasks]]\nid = \"t\"\nkind = \"noop\"\n",
        ),
        (
            "gone.toml",
            "dag_id = \"gone\"\n[[tasks]]\nid = \"t\"\nkind = \"noop\"\n",
        ),
    ]);
    let mut conn = a.db.pool.acquire().await.unwrap();
    for f in ["alpha_x.toml", "beta.toml", "gone.toml"] {
        upiflow_engine::store::dags::sync(&mut conn, &load(&dir, f))
            .await
            .unwrap();
    }
    sqlx::query("UPDATE dags SET is_active = false WHERE dag_id = 'gone'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let (status, _) = a
        .call(
            "PATCH",
            "/api/v2/dags/beta",
            Some(&admin),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // d's latest run failed after an earlier success; p's only run succeeded.
    let r1 = trigger_d(&a, &admin, 1).await;
    let r2 = trigger_d(&a, &admin, 2).await;
    for (run, state, start) in [
        (&r1, "success", "2024-03-01"),
        (&r2, "failed", "2024-03-05"),
    ] {
        sqlx::query(
            "UPDATE dag_runs SET state = $2::run_state, start_date = $3::timestamptz,
                end_date = $3::timestamptz + interval '1 hour' WHERE run_id = $1 AND dag_id = 'd'",
        )
        .bind(run)
        .bind(state)
        .bind(start)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    let (status, run) = a
        .call(
            "POST",
            "/api/v2/dags/p/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": "2024-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    sqlx::query(
        "UPDATE dag_runs SET state = 'success', start_date = '2024-04-01', end_date = '2024-04-02'
         WHERE dag_id = 'p' AND run_id = $1",
    )
    .bind(run["dag_run_id"].as_str().unwrap())
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO import_errors (fileloc, line, message) SELECT fileloc, 1, 'x' FROM dags WHERE dag_id = 'p'")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    for (q, want) in [
        ("", vec!["alpha_x", "beta", "d", "p"]),
        (
            "?exclude_stale=false",
            vec!["alpha_x", "beta", "d", "gone", "p"],
        ),
        ("?paused=true", vec!["beta"]),
        ("?paused=false", vec!["alpha_x", "d", "p"]),
        ("?tags=daily", vec!["alpha_x", "beta"]),
        ("?tags=upi&tags=daily", vec!["alpha_x", "beta", "d"]),
        ("?tags=upi&tags=daily&tags_match_mode=all", vec!["alpha_x"]),
        ("?tags=nothing", vec![]),
        ("?dag_id_pattern=ALP", vec!["alpha_x"]),
        ("?dag_id_pattern=bet%7Cp", vec!["alpha_x", "beta", "p"]),
        ("?dag_id_pattern=a_x", vec!["alpha_x"]),
        ("?dag_id_pattern=~", vec!["alpha_x", "beta", "d", "p"]),
        ("?dag_id_prefix_pattern=alpha_", vec!["alpha_x"]),
        ("?dag_id_prefix_pattern=ALPHA", vec![]),
        ("?dag_display_name_pattern=et", vec!["beta"]),
        ("?last_dag_run_state=failed", vec!["d"]),
        ("?last_dag_run_state=success", vec!["p"]),
        ("?dag_run_state=success", vec!["d", "p"]),
        (
            "?dag_run_state=failed&dag_run_state=success",
            vec!["d", "p"],
        ),
        (
            "?dag_run_start_date_gte=2024-03-02T00:00:00Z",
            vec!["d", "p"],
        ),
        (
            "?dag_run_start_date_gte=2024-03-02T00:00:00Z&dag_run_state=success",
            vec!["p"],
        ),
        ("?dag_run_end_date_lt=2024-03-02T00:00:00Z", vec!["d"]),
        ("?has_import_errors=true", vec!["p"]),
        ("?has_import_errors=false", vec!["alpha_x", "beta", "d"]),
        ("?bundle_name=dags-folder&paused=true", vec!["beta"]),
        ("?bundle_name=other", vec![]),
        ("?order_by=-dag_id", vec!["p", "d", "beta", "alpha_x"]),
        ("?order_by=-last_run_start_date&limit=2", vec!["p", "d"]),
        ("?limit=2&offset=1", vec!["beta", "d"]),
    ] {
        let (got, total) = ids(&a, &format!("/api/v2/dags{q}"), "dags", "dag_id").await;
        assert_eq!(got, want, "{q}");
        if !q.contains("limit") {
            assert_eq!(total, want.len() as i64, "{q}");
        }
    }
    let (_, total) = ids(&a, "/api/v2/dags?limit=2&offset=1", "dags", "dag_id").await;
    assert_eq!(total, 4, "the total counts every match, not the page");
    for (q, name) in [
        ("?paused=perhaps", "paused"),
        ("?tags_match_mode=some", "tags_match_mode"),
        ("?last_dag_run_state=dreaming", "last_dag_run_state"),
        ("?dag_run_start_date_gte=soon", "dag_run_start_date_gte"),
        ("?order_by=fileloc", "order_by"),
        ("?owners=ada", "owners"),
        ("?paused=true&paused=false", "paused"),
    ] {
        let (status, body) = a
            .call("GET", &format!("/api/v2/dags{q}"), Some(&admin), None)
            .await;
        assert!(status.is_client_error(), "{q}: {status}");
        assert!(detail(&body).contains(name), "{q}: {body}");
        assert_airflow_shape("get", "/api/v2/dags", status, &body);
    }
}

#[tokio::test]
async fn the_run_list_filters_for_real_and_tilde_lists_every_dag() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    // A backfill of days 10 and 11 and a run of p; then runs of d on days 1..4: success
    // (60 s), failed (600 s), running, queued (the backfill's runs queued too).
    let (status, body) = a
        .call(
            "POST",
            "/api/v2/backfills",
            Some(&admin),
            Some(json!({"dag_id": "d", "from_date": "2024-01-10T00:00:00Z",
                        "to_date": "2024-01-11T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, p_run) = a
        .call(
            "POST",
            "/api/v2/dags/p/dagRuns",
            Some(&admin),
            Some(json!({"logical_date": "2024-01-20T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let p_run = p_run["dag_run_id"].as_str().unwrap().to_string();
    let mut runs = Vec::new();
    for day in 1..=4 {
        runs.push(trigger_d(&a, &admin, day).await);
    }
    sqlx::query(
        "UPDATE dag_runs SET state = 'queued', start_date = NULL WHERE run_type = 'backfill'",
    )
    .execute(&a.db.pool)
    .await
    .unwrap();
    for (id, state, start, secs) in [
        (&runs[0], "success", "2024-02-01T00:00:00Z", 60.0),
        (&runs[1], "failed", "2024-02-02T00:00:00Z", 600.0),
        (&runs[2], "running", "2024-02-03T00:00:00Z", -1.0),
        (&runs[3], "queued", "", -1.0),
    ] {
        sqlx::query(
            "UPDATE dag_runs SET state = $2::run_state,
                start_date = NULLIF($3, '')::timestamptz,
                end_date = CASE WHEN $4 < 0 THEN NULL
                           ELSE NULLIF($3, '')::timestamptz + make_interval(secs => $4) END
             WHERE dag_id = 'd' AND run_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(start)
        .bind(secs)
        .execute(&a.db.pool)
        .await
        .unwrap();
    }
    let bf = |day: u32| format!("backfill__2024-01-{day:02}T00:00:00+00:00");
    let (r1, r2, r3, r4) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    let base = "/api/v2/dags/d/dagRuns";
    let s = |v: &[&String]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (q, want) in [
        ("", s(&[&bf(10), &bf(11), r1, r2, r3, r4])),
        ("?state=failed", s(&[r2])),
        ("?state=failed&state=success", s(&[r1, r2])),
        ("?state=failed,running", s(&[r2, r3])),
        ("?run_type=backfill", s(&[&bf(10), &bf(11)])),
        ("?run_type=manual&state=queued", s(&[r4])),
        (
            "?logical_date_gte=2024-01-02T00:00:00Z&logical_date_lte=2024-01-03T00:00:00Z",
            s(&[r2, r3]),
        ),
        (
            "?logical_date_gt=2024-01-04T00:00:00Z",
            s(&[&bf(10), &bf(11)]),
        ),
        ("?logical_date_lt=2024-01-02T00:00:00Z", s(&[r1])),
        ("?run_after_lte=2024-01-03T00:00:00Z", s(&[r1, r2])),
        ("?start_date_gte=2024-02-02T00:00:00Z", s(&[r2, r3])),
        ("?start_date_lt=2024-02-02T00:00:00Z", s(&[r1])),
        ("?end_date_lte=2024-02-01T12:00:00Z", s(&[r1])),
        ("?end_date_gt=2024-02-01T12:00:00Z", s(&[r2])),
        ("?duration_gte=100", s(&[r2])),
        ("?duration_lt=100", s(&[r1])),
        ("?run_id_pattern=BACKFILL", s(&[&bf(10), &bf(11)])),
        ("?run_id_pattern=01-01%7C01-11", s(&[&bf(11), r1])),
        (
            "?run_id_prefix_pattern=manual__2024-01-0",
            s(&[r1, r2, r3, r4]),
        ),
        ("?order_by=-logical_date&limit=2", s(&[&bf(11), &bf(10)])),
        (
            "?order_by=state&order_by=-id&limit=3",
            s(&[r4, &bf(11), &bf(10)]),
        ),
        ("?order_by=-duration&limit=2", s(&[r2, r1])),
        ("?limit=2&offset=1", s(&[&bf(11), r1])),
    ] {
        let (got, total) = ids(&a, &format!("{base}{q}"), "dag_runs", "dag_run_id").await;
        assert_eq!(got, want, "{q}");
        if !q.contains("limit") {
            assert_eq!(total, want.len() as i64, "{q}");
        }
    }
    let (_, total) = ids(&a, &format!("{base}?limit=1"), "dag_runs", "dag_run_id").await;
    assert_eq!(total, 6);
    // `~`: the runs of every DAG, which the DAG id patterns then narrow.
    let (got, total) = ids(
        &a,
        "/api/v2/dags/~/dagRuns?state=queued",
        "dag_runs",
        "dag_id",
    )
    .await;
    assert_eq!(got, ["d", "d", "d"], "the backfill's two and r4");
    assert_eq!(total, 3);
    let (got, _) = ids(
        &a,
        "/api/v2/dags/~/dagRuns?dag_id_pattern=P",
        "dag_runs",
        "dag_run_id",
    )
    .await;
    assert_eq!(got, [p_run]);
    let (got, _) = ids(
        &a,
        "/api/v2/dags/~/dagRuns?dag_id_prefix_pattern=d&run_type=backfill",
        "dag_runs",
        "dag_run_id",
    )
    .await;
    assert_eq!(got, [bf(10), bf(11)]);
    let path = "/api/v2/dags/{dag_id}/dagRuns";
    for (q, name, want) in [
        ("?state=sleeping", "state", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "?run_type=asset_triggered",
            "run_type",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "?start_date_gte=monday",
            "start_date_gte",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "?duration_gte=long",
            "duration_gte",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("?order_by=conf", "order_by", StatusCode::BAD_REQUEST),
        ("?cursor=", "cursor", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "?updated_at_gte=2024-01-01T00:00:00Z",
            "updated_at_gte",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, body) = a
            .call("GET", &format!("{base}{q}"), Some(&admin), None)
            .await;
        assert_eq!(status, want, "{q}: {body}");
        assert!(detail(&body).contains(name), "{q}: {body}");
        assert_airflow_shape("get", path, status, &body);
    }
    let (status, _) = a
        .call("GET", "/api/v2/dags/nope/dagRuns", Some(&admin), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn trigger_backfill_and_patch_fields_are_honoured_or_refused_by_name() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let post = "/api/v2/dags/d/dagRuns";
    let path = "/api/v2/dags/{dag_id}/dagRuns";
    let day = |d: u32| format!("2024-01-{d:02}T00:00:00Z");
    for (body, field) in [
        (
            json!({"logical_date": day(1), "note": "x".repeat(1001)}),
            "note",
        ),
        (
            json!({"logical_date": day(1), "partition_key": "k"}),
            "partition_key",
        ),
        (
            json!({"logical_date": day(1), "dag_run_id": "has space"}),
            "dag_run_id",
        ),
        (
            json!({"logical_date": day(1), "data_interval_start": day(1),
                   "data_interval_end": day(3)}),
            "data_interval_start",
        ),
        (
            json!({"logical_date": day(1), "data_interval_start": day(1)}),
            "data_interval_end",
        ),
        (
            json!({"logical_date": day(1), "run_after": "2999-01-01T00:00:00Z"}),
            "run_after",
        ),
    ] {
        let (status, got) = a.call("POST", post, Some(&admin), Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {got}");
        assert!(detail(&got).contains(field), "{body}: {got}");
        assert_airflow_shape("post", path, status, &got);
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "a refused trigger creates nothing");
    // What upiflow would do anyway is accepted, with Airflow's null defaults.
    let (status, run) = a
        .call(
            "POST",
            post,
            Some(&admin),
            Some(
                json!({"logical_date": day(1), "dag_run_id": "manual__2024-01-01T00:00:00+00:00",
                        "data_interval_start": day(1), "data_interval_end": day(2),
                        "run_after": day(2), "note": "kept", "partition_key": null, "conf": null}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["dag_run_id"], "manual__2024-01-01T00:00:00+00:00");
    assert_eq!(run["note"], "kept");

    // Backfills: d's own limit is 16.
    let bf = "/api/v2/backfills";
    let body = |extra: Value| {
        let mut b = json!({"dag_id": "d", "from_date": day(5), "to_date": day(6)});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, field) in [
        (json!({"max_active_runs": 0}), "max_active_runs"),
        (
            json!({"run_on_latest_version": false}),
            "run_on_latest_version",
        ),
        (json!({"run_backwards": true}), "run_backwards"),
        (json!({"dag_run_conf": {"n": 3}}), "dag_run_conf"),
    ] {
        let (status, got) = a
            .call("POST", bf, Some(&admin), Some(body(extra.clone())))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}: {got}");
        assert!(detail(&got).contains(field), "{extra}: {got}");
        assert_airflow_shape("post", bf, status, &got);
    }
    for (extra, holds) in [
        (
            json!({"max_active_runs": 16, "run_on_latest_version": true, "run_backwards": false,
                   "dag_run_conf": {}, "reprocess_behavior": "none"}),
            16,
        ),
        // Its own limit, independent of the DAG's 16 (backfill runs never count against
        // the scheduled runs' limit, as in Airflow 3).
        (
            json!({"max_active_runs": 50, "reprocess_behavior": "failed"}),
            50,
        ),
        // Asked again with a lower limit: the same backfill, now held to 10.
        (
            json!({"max_active_runs": 10, "reprocess_behavior": "none"}),
            10,
        ),
    ] {
        let (status, got) = a
            .call("POST", bf, Some(&admin), Some(body(extra.clone())))
            .await;
        assert_eq!(status, StatusCode::OK, "{extra}: {got}");
        assert_eq!(got["max_active_runs"], holds, "the limit that holds");
        assert_eq!(
            got["yield_to_scheduled"], true,
            "the default: behind scheduled runs"
        );
    }
    // Asked again not to yield: the same backfill now competes with scheduled runs.
    let (status, got) = a
        .call(
            "POST",
            bf,
            Some(&admin),
            Some(body(
                json!({"reprocess_behavior": "none", "yield_to_scheduled": false}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["yield_to_scheduled"], false);
    let stored: bool = sqlx::query_scalar("SELECT yield_to_scheduled FROM backfills WHERE id = $1")
        .bind(got["id"].as_i64().unwrap())
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert!(!stored);

    // PATCH's update_mask: only is_paused.
    let (status, got) = a
        .call(
            "PATCH",
            "/api/v2/dags/d?update_mask=is_paused",
            Some(&admin),
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(
        (status, got["is_paused"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, got) = a
        .call(
            "PATCH",
            "/api/v2/dags/d?update_mask=description",
            Some(&admin),
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{got}");
    assert!(detail(&got).contains("update_mask"));
    assert_airflow_shape("patch", "/api/v2/dags/{dag_id}", status, &got);
    let (_, got) = a.call("GET", "/api/v2/dags/d", Some(&admin), None).await;
    assert_eq!(got["is_paused"], true, "the refused patch changed nothing");
}

#[tokio::test]
async fn clear_fields_are_honoured_or_refused_and_running_instances_are_a_409() {
    let a = api().await;
    let admin = basic("ada", "admin-password");
    let run = trigger_d(&a, &admin, 5).await;
    let clear = "/api/v2/dags/d/clearTaskInstances";
    let path = "/api/v2/dags/{dag_id}/clearTaskInstances";
    for (body, field) in [
        (
            json!({"dry_run": false, "reset_dag_runs": false}),
            "reset_dag_runs",
        ),
        (
            json!({"run_on_latest_version": true}),
            "run_on_latest_version",
        ),
        (json!({"note": "why"}), "note"),
        (
            json!({"dag_run_id": run, "start_date": "2024-01-01T00:00:00Z"}),
            "start_date",
        ),
    ] {
        let (status, got) = a
            .call("POST", clear, Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {got}");
        assert!(detail(&got).contains(field), "{body}: {got}");
        assert_airflow_shape("post", path, status, &got);
    }
    // A dry run may say reset_dag_runs=false: it changes nothing either way.
    let (status, _) = a
        .call(
            "POST",
            clear,
            Some(&admin),
            Some(json!({"dry_run": true, "reset_dag_runs": false, "only_failed": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A running task instance: listed by a dry run, a 409 for a real clear either way.
    sqlx::query("UPDATE task_instances SET state = 'running', try_number = 1 WHERE dag_id = 'd'")
        .execute(&a.db.pool)
        .await
        .unwrap();
    let real = json!({"dry_run": false, "only_failed": false, "dag_run_id": run});
    let (status, got) = a
        .call(
            "POST",
            clear,
            Some(&admin),
            Some(json!({"only_running": true, "only_failed": false})),
        )
        .await;
    assert_eq!(
        (status, got["total_entries"].as_i64()),
        (StatusCode::OK, Some(1))
    );
    let mut prevent = real.clone();
    prevent["prevent_running_task"] = json!(true);
    let (status, got) = a.call("POST", clear, Some(&admin), Some(prevent)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{got}");
    assert!(detail(&got).contains("prevent_running_task"), "{got}");
    let (status, got) = a
        .call("POST", clear, Some(&admin), Some(real.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{got}");
    assert!(detail(&got).contains("running"), "{got}");
    let state: String =
        sqlx::query_scalar("SELECT state::text FROM task_instances WHERE dag_id = 'd'")
            .fetch_one(&a.db.pool)
            .await
            .unwrap();
    assert_eq!(state, "running", "a refused clear changes nothing");
    // Once it has ended, a real clear resets it and puts the run back to running
    // (reset_dag_runs, Airflow's default).
    sqlx::raw_sql(
        "UPDATE task_instances SET state = 'failed', end_date = now() WHERE dag_id = 'd';
         UPDATE dag_runs SET state = 'failed', end_date = now() WHERE dag_id = 'd'",
    )
    .execute(&a.db.pool)
    .await
    .unwrap();
    let mut reset = real.clone();
    reset["reset_dag_runs"] = json!(true);
    reset["prevent_running_task"] = json!(true);
    let (status, got) = a.call("POST", clear, Some(&admin), Some(reset)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["total_entries"], 1);
    let state: String = sqlx::query_scalar("SELECT state::text FROM dag_runs WHERE dag_id = 'd'")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(state, "running");
}

/// The status and the JSON body of a response.
async fn status_and_json(resp: axum::response::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_value_the_database_cannot_hold_is_a_422_with_a_message_not_a_500() {
    let a = api().await;
    let ada = basic("ada", "admin-password");
    // Postgres text cannot hold a NUL character: the database refuses the bound value (a
    // class-22 data exception), which the handler answers as invalid input.
    let (status, body) = a.call("GET", "/api/v2/dags/a%00b", Some(&ada), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let msg = body["detail"][0]["msg"].as_str().unwrap();
    assert_eq!(msg, "the request is not valid for the database", "{body}");
    let (status, body) = a
        .call("GET", "/api/v2/dags/a%00b/dagRuns", Some(&ada), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body.to_string().contains("SELECT"), "{body}");
}

#[tokio::test]
async fn constraint_violations_from_postgres_become_409_and_422_naming_the_constraint() {
    use axum::response::IntoResponse;
    use upiflow_web::error::ApiError;
    use upiflow_web::ui::UiError;
    let a = api().await;
    // A second user `ada`: the primary key refuses it.
    let unique = sqlx::query(
        "INSERT INTO users (username, password_hash, role) VALUES ('ada', 'x', 'viewer')",
    )
    .execute(&a.db.pool)
    .await
    .unwrap_err();
    let (status, body) = status_and_json(ApiError::from(unique).into_response()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body,
        json!({"detail": "the request conflicts with an existing record (constraint users_pkey)"})
    );
    // A run of a DAG that does not exist: the foreign key refuses it. Through the engine's
    // error, as a store function would return it.
    let foreign = sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start,
            data_interval_end, run_type, dag_hash)
         VALUES ('nope', 'r', now(), now(), now(), 'manual', 'h')",
    )
    .execute(&a.db.pool)
    .await
    .unwrap_err();
    let engine = upiflow_engine::EngineError::from(foreign);
    assert_eq!(engine.kind(), upiflow_engine::ErrorKind::Invalid);
    let (status, body) = status_and_json(ApiError::from(engine).into_response()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let msg = body["detail"][0]["msg"].as_str().unwrap();
    assert_eq!(
        msg,
        "the request is not valid for the database (constraint dag_runs_dag_id_fkey)"
    );
    assert!(!body.to_string().contains("INSERT"), "{body}");
    // A data interval that ends before it starts: the check refuses it; the UI shows the same
    // problem as its error page.
    let check = sqlx::query(
        "INSERT INTO dag_runs (dag_id, run_id, logical_date, data_interval_start,
            data_interval_end, run_type, dag_hash)
         VALUES ('d', 'r', now(), now(), now() - interval '1 day', 'manual', 'h')",
    )
    .execute(&a.db.pool)
    .await
    .unwrap_err();
    let resp = UiError::from(check).into_response();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(
        page.contains("the request is not valid for the database (constraint dag_runs_check)"),
        "{page}"
    );
    // Anything else from the database is a 500 that tells the client nothing of the cause.
    let other = sqlx::query("SELECT * FROM no_such_table")
        .execute(&a.db.pool)
        .await
        .unwrap_err();
    let (status, body) = status_and_json(ApiError::from(other).into_response()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"detail": "internal error"}));
}
