//! The JSON API in-process (tower `oneshot`) against a real Postgres: authentication on every
//! route, roles, Airflow's field names and status codes, bad input answered with a 4xx.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};

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
    let dir = dags_dir(&[(
        "d.toml",
        "dag_id = \"d\"\ndescription = \"<script>alert(1)</script>\"\nschedule = \"@daily\"\ntags = [\"upi\"]\n\
         [params]\nn = 1\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n",
    )]);
    let dag = load(&dir, "d.toml");
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &dag)
        .await
        .unwrap();
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    Api {
        app: upiflow_web::app(state),
        db,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
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
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }
}

#[tokio::test]
async fn every_route_answers_401_without_credentials() {
    let a = api().await;
    for (m, uri) in [
        ("GET", "/api/v2/version"),
        ("GET", "/api/v2/monitor/health"),
        ("GET", "/api/v2/dags"),
        ("GET", "/api/v2/dags/d"),
        ("PATCH", "/api/v2/dags/d"),
        ("GET", "/api/v2/dags/d/dagRuns"),
        ("POST", "/api/v2/dags/d/dagRuns"),
        ("GET", "/api/v2/dags/d/dagRuns/x"),
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
    assert_eq!(body["total_entries"], 1);
    let d = &body["dags"][0];
    assert_eq!(
        (d["dag_id"].as_str(), d["is_paused"].as_bool()),
        (Some("d"), Some(false))
    );
    // Untrusted text is returned as data, unchanged (escaping is the page's job).
    assert_eq!(d["description"], "<script>alert(1)</script>");
    assert_eq!(d["tags"], json!([{"name": "upi", "dag_id": "d"}]));
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
