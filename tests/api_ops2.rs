//! The operations endpoints of the JSON API (#14 ops2) in-process against a real Postgres:
//! bulk pools/connections/variables, backfill pause/unpause/cancel and the interval cap,
//! config, and the CLI's sign-in route. Answers fit Airflow's document, changes need a role
//! that may, bad input is a 4xx with a `detail`.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};

struct Api {
    app: axum::Router,
    db: TestDb,
    admin: String,
    viewer: String,
}

/// A daily DAG `d` of two noop tasks; an admin and a viewer.
async fn api() -> Api {
    api_with(|_| {}).await
}

async fn api_with(tweak: impl FnOnce(&mut upiflow_web::AppState)) -> Api {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let dag = "dag_id = \"d\"\nschedule = \"@daily\"\nmax_active_runs = 16\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
               [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n";
    let minutely =
        "dag_id = \"m\"\nschedule = \"* * * * *\"\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n";
    let dir = dags_dir(&[("d.toml", dag), ("m.toml", minutely)]);
    let mut conn = db.pool.acquire().await.unwrap();
    for dag in [load(&dir, "d.toml"), load(&dir, "m.toml")] {
        upiflow_engine::store::dags::sync(&mut conn, &dag)
            .await
            .unwrap();
    }
    let mut state = web_state(&db.pool).await;
    tweak(&mut state);
    Api {
        app: upiflow_web::app(state),
        db,
        admin: basic("ada", "admin-password"),
        viewer: basic("vic", "viewer-password"),
    }
}

impl Api {
    /// `method uri` with these headers; answers the status, the content type and the text.
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
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
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, ctype, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, _, text) = self.raw(method, uri, &headers, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, uri, Some(&self.admin.clone()), body)
            .await
    }
}

/// A 4xx whose body says why.
fn assert_detail(status: StatusCode, body: &Value, want: StatusCode, says: &str) {
    assert_eq!(status, want, "{body}");
    let d = body["detail"].to_string();
    assert!(d.contains(says), "detail {d} does not say `{says}`");
}

/// The runs of DAG `dag` by state, oldest first.
async fn run_states(a: &Api, dag: &str) -> Vec<(String, String)> {
    let (status, runs) = a
        .admin(
            "GET",
            &format!("/api/v2/dags/{dag}/dagRuns?order_by=logical_date&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    runs["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dag_run_id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn count(states: &[(String, String)], state: &str) -> usize {
    states.iter().filter(|(_, s)| s == state).count()
}

/// Marks the run `run` of `d` successful (which starts the next queued runs that may start).
async fn succeed(a: &Api, run: &str) {
    let (status, body) = a
        .admin(
            "PATCH",
            &format!("/api/v2/dags/d/dagRuns/{run}"),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

const PAUSE: &str = "/api/v2/backfills/{backfill_id}/pause";
const UNPAUSE: &str = "/api/v2/backfills/{backfill_id}/unpause";
const CANCEL: &str = "/api/v2/backfills/{backfill_id}/cancel";

#[tokio::test]
async fn a_paused_backfill_starts_no_queued_run_until_unpaused() {
    let a = api().await;
    let (status, b) = a
        .admin(
            "POST",
            "/api/v2/backfills",
            Some(json!({"dag_id": "d", "from_date": "2024-03-01T00:00:00Z",
                        "to_date": "2024-03-04T00:00:00Z", "max_active_runs": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["is_paused"], false);
    let id = b["id"].as_i64().unwrap();
    let states = run_states(&a, "d").await;
    assert_eq!(
        (count(&states, "running"), count(&states, "queued")),
        (1, 3)
    );

    // Credentials and role first, on each of the three.
    for action in ["pause", "unpause", "cancel"] {
        let uri = format!("/api/v2/backfills/{id}/{action}");
        let (status, _) = a.call("PUT", &uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        let (status, body) = a.call("PUT", &uri, Some(&a.viewer), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert_airflow_shape("put", PAUSE, status, &body);
        let (status, body) = a
            .admin("PUT", &format!("/api/v2/backfills/999/{action}"), None)
            .await;
        assert_detail(status, &body, StatusCode::NOT_FOUND, "999");
        assert_airflow_shape("put", PAUSE, status, &body);
        for bad in ["x", "-1"] {
            let (status, body) = a
                .admin("PUT", &format!("/api/v2/backfills/{bad}/{action}"), None)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
            assert!(
                body["detail"].is_string() || body["detail"].is_array(),
                "{body}"
            );
        }
    }
    let states = run_states(&a, "d").await;
    assert_eq!(
        count(&states, "running"),
        1,
        "refused calls changed nothing"
    );

    let uri = format!("/api/v2/backfills/{id}/pause");
    let (status, body) = a.admin("PUT", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("put", PAUSE, status, &body);
    assert_eq!(body["is_paused"], true);
    assert!(body["completed_at"].is_null());
    // Pausing twice changes nothing.
    let (status, again) = a.admin("PUT", &uri, None).await;
    assert_eq!(
        (status, &again["is_paused"]),
        (StatusCode::OK, &json!(true))
    );
    let (_, got) = a
        .admin("GET", &format!("/api/v2/backfills/{id}"), None)
        .await;
    assert_eq!(got["is_paused"], true);

    // The running run finishes; while paused, no queued run takes its place.
    let states = run_states(&a, "d").await;
    let running = states
        .iter()
        .find(|(_, s)| s == "running")
        .unwrap()
        .0
        .clone();
    succeed(&a, &running).await;
    let states = run_states(&a, "d").await;
    assert_eq!(
        (
            count(&states, "success"),
            count(&states, "running"),
            count(&states, "queued")
        ),
        (1, 0, 3),
        "{states:?}"
    );
    // Nor does the scheduler's pass start one.
    let cache = upiflow_engine::store::dags::VersionCache::new();
    let mut conn = a.db.pool.acquire().await.unwrap();
    upiflow_engine::lifecycle::run::start_queued(&mut conn, &cache, "d")
        .await
        .unwrap();
    drop(conn);
    assert_eq!(count(&run_states(&a, "d").await, "running"), 0);

    // Unpausing starts the next one at once (its max_active_runs is 1).
    let (status, body) = a
        .admin("PUT", &format!("/api/v2/backfills/{id}/unpause"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("put", UNPAUSE, status, &body);
    assert_eq!(body["is_paused"], false);
    let states = run_states(&a, "d").await;
    assert_eq!(
        (
            count(&states, "success"),
            count(&states, "running"),
            count(&states, "queued")
        ),
        (1, 1, 2),
        "{states:?}"
    );
}

#[tokio::test]
async fn cancelling_a_backfill_fails_its_queued_runs_lets_running_ones_finish_and_completes_it() {
    let a = api().await;
    // A manual run in the range is not the backfill's: cancelling leaves it alone.
    let (status, body) = a
        .admin(
            "POST",
            "/api/v2/dags/d/dagRuns",
            Some(json!({"logical_date": "2024-05-04T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, b) = a
        .admin(
            "POST",
            "/api/v2/backfills",
            Some(json!({"dag_id": "d", "from_date": "2024-05-01T00:00:00Z",
                        "to_date": "2024-05-05T00:00:00Z", "max_active_runs": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let id = b["id"].as_i64().unwrap();
    let before = run_states(&a, "d").await;
    // 4 backfill runs (2 running, 2 queued) and the manual one (running).
    assert_eq!(
        (count(&before, "running"), count(&before, "queued")),
        (3, 2),
        "{before:?}"
    );

    let (status, body) = a
        .admin("PUT", &format!("/api/v2/backfills/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("put", CANCEL, status, &body);
    assert_eq!(body["is_paused"], true);
    assert!(body["completed_at"].is_string(), "{body}");
    let after = run_states(&a, "d").await;
    assert_eq!(
        (
            count(&after, "running"),
            count(&after, "queued"),
            count(&after, "failed")
        ),
        (3, 0, 2),
        "queued runs fail, running ones go on: {after:?}"
    );
    // The running backfill runs can still finish.
    for (run, _) in after
        .iter()
        .filter(|(r, s)| s == "running" && r.starts_with("backfill"))
    {
        succeed(&a, run).await;
    }
    let done = run_states(&a, "d").await;
    assert_eq!(count(&done, "success"), 2, "{done:?}");
    assert_eq!(count(&done, "failed"), 2, "{done:?}");
    // Completed now: every change is Airflow's 409, and the record stays completed.
    upiflow_engine::backfill::close_finished(&a.db.pool)
        .await
        .unwrap();
    for action in ["pause", "unpause", "cancel"] {
        let (status, body) = a
            .admin("PUT", &format!("/api/v2/backfills/{id}/{action}"), None)
            .await;
        assert_detail(status, &body, StatusCode::CONFLICT, "already completed");
        assert_airflow_shape("put", PAUSE, status, &body);
    }
    let (_, got) = a
        .admin("GET", &format!("/api/v2/backfills/{id}"), None)
        .await;
    assert_eq!(got["completed_at"], body["completed_at"]);
    assert_eq!(got["is_paused"], true);
}

#[tokio::test]
async fn a_backfill_over_too_many_intervals_is_a_422_naming_the_cap_and_the_count() {
    let a = api().await;
    let cap = upiflow_engine::backfill::MAX_INTERVALS;
    // `m` runs every minute: 2024-01-01 to 2024-01-08 00:00 is 7 * 1440 + 1 intervals.
    let count = 7 * 1440 + 1;
    assert!(count > cap);
    for path in ["/api/v2/backfills", "/api/v2/backfills/dry_run"] {
        let started = std::time::Instant::now();
        let (status, body) = a
            .admin(
                "POST",
                path,
                Some(json!({"dag_id": "m", "from_date": "2024-01-01T00:00:00Z",
                            "to_date": "2024-01-08T00:00:00Z"})),
            )
            .await;
        assert_detail(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            &count.to_string(),
        );
        assert_detail(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            &cap.to_string(),
        );
        // A range of decades is refused quickly, counted up to ten times the cap.
        let (status, body) = a
            .admin(
                "POST",
                path,
                Some(json!({"dag_id": "m", "from_date": "2000-01-01T00:00:00Z",
                            "to_date": "2090-01-01T00:00:00Z"})),
            )
            .await;
        assert_detail(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("more than {}", 10 * cap),
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
    // Nothing was created.
    assert!(run_states(&a, "m").await.is_empty());
    // Exactly the cap is allowed (dry run: nothing created).
    let (status, body) = a
        .admin(
            "POST",
            "/api/v2/backfills/dry_run",
            Some(json!({"dag_id": "m", "from_date": "2024-01-01T00:00:00Z",
                        "to_date": "2024-01-07T22:39:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", body["detail"]);
    assert_eq!(body["total_entries"], json!(cap));
}

/// The names of the pools, sorted, with their slots.
async fn pools(a: &Api) -> Vec<(String, i64)> {
    let (status, body) = a.admin("GET", "/api/v2/pools?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["slots"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// `PATCH path` as the admin, asserting a 200 in Airflow's `BulkResponse` shape.
async fn bulk(a: &Api, path: &str, body: Value) -> Value {
    let (status, out) = a.admin("PATCH", path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("patch", path, status, &out);
    out
}

#[tokio::test]
async fn bulk_pools_create_update_and_delete_action_by_action_with_airflows_existence_rules() {
    let a = api().await;
    const P: &str = "/api/v2/pools";
    let create = json!({"actions": [{"action": "create", "entities": [
        {"name": "p1", "slots": 1}, {"name": "p2", "slots": 2, "description": "two"}]}]});
    let (status, _) = a.call("PATCH", P, None, Some(create.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = a
        .call("PATCH", P, Some(&a.viewer), Some(create.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_airflow_shape("patch", P, status, &body);
    assert_eq!(pools(&a).await.len(), 1, "only default_pool");

    let out = bulk(&a, P, create.clone()).await;
    assert_eq!(keys(&out["create"]["success"]), ["p1", "p2"]);
    assert_eq!(out["create"]["errors"], json!([]));
    assert!(out["update"].is_null() && out["delete"].is_null(), "{out}");
    assert_eq!(
        pools(&a).await,
        [
            ("default_pool".into(), 128),
            ("p1".into(), 1),
            ("p2".into(), 2)
        ]
    );

    // Creating again: `fail` (the default) refuses the whole action with Airflow's 409.
    let again = json!({"actions": [{"action": "create", "entities": [
        {"name": "p3", "slots": 3}, {"name": "p1", "slots": 10}]}]});
    let out = bulk(&a, P, again.clone()).await;
    assert_eq!(out["create"]["success"], json!([]));
    let err = &out["create"]["errors"][0];
    assert_eq!(err["status_code"], 409, "{out}");
    assert!(err["error"].as_str().unwrap().contains("'p1'"), "{err}");
    assert_eq!(pools(&a).await.len(), 3, "nothing created");
    // `skip` creates the new one only; `overwrite` replaces the existing one.
    let mut skip = again.clone();
    skip["actions"][0]["action_on_existence"] = json!("skip");
    let out = bulk(&a, P, skip).await;
    assert_eq!(keys(&out["create"]["success"]), ["p3"]);
    assert_eq!(pools(&a).await[1], ("p1".into(), 1), "skipped");
    let out = bulk(
        &a,
        P,
        json!({"actions": [{"action": "create", "action_on_existence": "overwrite",
            "entities": [{"name": "p2", "slots": 20}, {"name": "p4", "slots": 4}]}]}),
    )
    .await;
    assert_eq!(keys(&out["create"]["success"]), ["p2", "p4"]);
    let (_, p2) = a.admin("GET", "/api/v2/pools/p2", None).await;
    assert_eq!(
        (p2["slots"].as_i64(), &p2["description"]),
        (Some(20), &Value::Null)
    );

    // Several actions in one request apply in order; a failing one does not undo the rest
    // (Airflow applies action by action, not as one transaction).
    let out = bulk(
        &a,
        P,
        json!({"actions": [
            {"action": "update", "entities": [{"name": "p1", "slots": 11, "description": "x"}],
             "update_mask": ["slots"]},
            {"action": "update", "entities": [{"name": "p3", "slots": 33}, {"name": "nope", "slots": 1}]},
            {"action": "update", "action_on_non_existence": "skip",
             "entities": [{"name": "p4", "slots": 44}, {"name": "nope", "slots": 1}]},
            {"action": "delete", "entities": ["p2", {"name": "p3", "slots": 0}]},
            {"action": "delete", "entities": ["gone"]},
            {"action": "delete", "entities": ["default_pool"]}
        ]}),
    )
    .await;
    assert_eq!(keys(&out["update"]["success"]), ["p1", "p4"]);
    let errs = out["update"]["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 1, "{out}");
    assert_eq!(errs[0]["status_code"], 404);
    assert!(errs[0]["error"].as_str().unwrap().contains("'nope'"));
    assert_eq!(keys(&out["delete"]["success"]), ["p2", "p3"]);
    let errs = out["delete"]["errors"].as_array().unwrap();
    assert_eq!(errs.len(), 2, "{out}");
    assert_eq!(
        (
            errs[0]["status_code"].as_i64(),
            errs[1]["status_code"].as_i64()
        ),
        (Some(404), Some(400))
    );
    assert!(
        errs[1]["error"].as_str().unwrap().contains("Default Pool"),
        "{errs:?}"
    );
    assert_eq!(
        pools(&a).await,
        [
            ("default_pool".into(), 128),
            ("p1".into(), 11),
            ("p4".into(), 44)
        ]
    );
    // The mask named only slots: p1's description did not change.
    let (_, p1) = a.admin("GET", "/api/v2/pools/p1", None).await;
    assert_eq!(p1["description"], Value::Null);
    // default_pool: only slots and include_deferred, through the mask, as the single route.
    let out = bulk(
        &a,
        P,
        json!({"actions": [
            {"action": "update", "entities": [{"name": "default_pool", "slots": 5}]},
            {"action": "update", "entities": [{"name": "default_pool", "slots": 7}], "update_mask": ["slots"]}]}),
    )
    .await;
    assert_eq!(keys(&out["update"]["success"]), ["default_pool"]);
    assert_eq!(out["update"]["errors"][0]["status_code"], 400, "{out}");
    assert_eq!(pools(&a).await[0], ("default_pool".into(), 7));
    // An update without a mask changes the fields given (Airflow's `model_fields_set`); an
    // overwrite sets the whole body, a left-out field its default.
    bulk(
        &a,
        P,
        json!({"actions": [{"action": "create", "entities": [
            {"name": "p5", "slots": 5, "description": "keep", "include_deferred": true}]}]}),
    )
    .await;
    bulk(
        &a,
        P,
        json!({"actions": [{"action": "update", "entities": [{"pool": "p5", "slots": 6}]}]}),
    )
    .await;
    let (_, p5) = a.admin("GET", "/api/v2/pools/p5", None).await;
    assert_eq!(
        (&p5["slots"], &p5["description"], &p5["include_deferred"]),
        (&json!(6), &json!("keep"), &json!(true))
    );
    bulk(
        &a,
        P,
        json!({"actions": [{"action": "create", "action_on_existence": "overwrite",
            "entities": [{"name": "p5", "slots": 7}]}]}),
    )
    .await;
    let (_, p5) = a.admin("GET", "/api/v2/pools/p5", None).await;
    assert_eq!(
        (&p5["slots"], &p5["description"], &p5["include_deferred"]),
        (&json!(7), &Value::Null, &json!(false))
    );
}

#[tokio::test]
async fn bad_bulk_bodies_are_a_422_naming_the_problem_and_write_nothing() {
    let a = api().await;
    for (path, body, says) in [
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "upsert", "entities": []}]}),
            "upsert",
        ),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "create", "entities": [
            {"name": "ok", "slots": 1}, {"name": "bad", "slots": -5}]}]}),
            "slots",
        ),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "create", "entities": [
            {"name": "ok", "slots": 1}, {"name": "bad name!", "slots": 1}]}]}),
            "bad name!",
        ),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "create", "entities": [
            {"name": "ok", "slots": 1}, {"name": "ok", "slots": 2}]}]}),
            "twice",
        ),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "create", "entities": [{"name": "ok", "slots": 1}],
            "color": "red"}]}),
            "color",
        ),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "update", "entities": [{"name": "default_pool", "slots": 1}],
            "update_mask": ["colour"]}]}),
            "colour",
        ),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "create", "entities": [{"name": "ok", "slots": 1}],
            "action_on_existence": "replace"}]}),
            "replace",
        ),
        ("/api/v2/pools", json!({"action": "create"}), "action"),
        (
            "/api/v2/pools",
            json!({"actions": [{"action": "delete", "entities": [7]}]}),
            "entities",
        ),
        (
            "/api/v2/connections",
            json!({"actions": [{"action": "create", "entities": [
            {"connection_id": "ok", "conn_type": "postgres"},
            {"connection_id": "c", "conn_type": "postgres", "port": 70000}]}]}),
            "port",
        ),
        (
            "/api/v2/connections",
            json!({"actions": [{"action": "create", "entities": [
            {"connection_id": "ok", "conn_type": "postgres", "extra": "[1]"}]}]}),
            "extra",
        ),
        (
            "/api/v2/connections",
            json!({"actions": [{"action": "delete", "entities": ["no spaces"]}]}),
            "no spaces",
        ),
        (
            "/api/v2/variables",
            json!({"actions": [{"action": "create", "entities": [
            {"key": "ok", "value": "1"}, {"key": "", "value": "1"}]}]}),
            "key",
        ),
        (
            "/api/v2/variables",
            json!({"actions": [{"action": "create", "entities": [
            {"key": "ok", "value": "1", "team_name": "t"}]}]}),
            "team_name",
        ),
    ] {
        let (status, out) = a.admin("PATCH", path, Some(body.clone())).await;
        assert_detail(status, &out, StatusCode::UNPROCESSABLE_ENTITY, says);
        assert_airflow_shape("patch", path, status, &out);
    }
    // A body that is no JSON, or no body.
    let (status, _, text) = a
        .raw(
            "PATCH",
            "/api/v2/variables",
            &[
                ("authorization", &a.admin),
                ("content-type", "application/json"),
            ],
            None,
        )
        .await;
    assert!(status.is_client_error(), "{status} {text}");
    assert_eq!(pools(&a).await.len(), 1, "nothing was created");
    let (_, conns) = a.admin("GET", "/api/v2/connections", None).await;
    assert_eq!(conns["total_entries"], 0);
    let (_, vars) = a.admin("GET", "/api/v2/variables", None).await;
    assert_eq!(vars["total_entries"], 0);
}

#[tokio::test]
async fn bulk_connections_and_variables_change_for_real_and_never_echo_a_secret() {
    let a = api().await;
    const C: &str = "/api/v2/connections";
    const V: &str = "/api/v2/variables";
    let body = json!({"actions": [{"action": "create", "entities": [
        {"connection_id": "wh", "conn_type": "postgres", "host": "db1", "login": "u",
         "password": "hunter2-secret", "port": 5432},
        {"connection_id": "api", "conn_type": "http", "host": "h", "extra": "{\"token\": \"tok-secret\"}"}]}]});
    for path in [C, V] {
        let (status, _) = a
            .call("PATCH", path, None, Some(json!({"actions": []})))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, out) = a
            .call("PATCH", path, Some(&a.viewer), Some(json!({"actions": []})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {out}");
    }
    let out = bulk(&a, C, body).await;
    assert_eq!(keys(&out["create"]["success"]), ["wh", "api"]);
    assert!(!out.to_string().contains("secret"), "{out}");
    // The engine holds them for real: the password is usable (decrypted), not the mask.
    let c = a.db.pool.clone();
    let secrets = upiflow_engine::secrets::Secrets::from_env(c).unwrap();
    let wh = secrets.connection("wh").await.unwrap().unwrap();
    assert_eq!(wh.password.as_deref(), Some("hunter2-secret"));

    // An update with `***` (what a read shows) keeps the password; the mask limits fields.
    let out = bulk(
        &a,
        C,
        json!({"actions": [
            {"action": "update", "entities": [{"connection_id": "wh", "conn_type": "postgres",
              "host": "db2", "login": "other", "password": "***"}], "update_mask": ["host", "password"]},
            {"action": "create", "action_on_existence": "overwrite", "entities": [
              {"connection_id": "api", "conn_type": "http", "host": "h2"}]},
            {"action": "create", "entities": [{"connection_id": "wh", "conn_type": "postgres"}]}
        ]}),
    )
    .await;
    assert_eq!(keys(&out["update"]["success"]), ["wh"]);
    assert_eq!(keys(&out["create"]["success"]), ["api"]);
    assert_eq!(out["create"]["errors"][0]["status_code"], 409, "{out}");
    let wh = secrets.connection("wh").await.unwrap().unwrap();
    assert_eq!(
        (
            wh.host.as_deref(),
            wh.login.as_deref(),
            wh.password.as_deref()
        ),
        (Some("db2"), Some("u"), Some("hunter2-secret"))
    );
    // Overwrite replaced every field: the extra with its token is gone.
    let api_conn = secrets.connection("api").await.unwrap().unwrap();
    assert_eq!(api_conn.host.as_deref(), Some("h2"));
    assert!(api_conn.extra.is_empty(), "{:?}", api_conn.extra);
    let out = bulk(
        &a,
        C,
        json!({"actions": [{"action": "delete", "entities": ["wh", "api", "x"],
        "action_on_non_existence": "skip"}]}),
    )
    .await;
    assert_eq!(keys(&out["delete"]["success"]), ["wh", "api"]);
    assert_eq!(out["delete"]["errors"], json!([]));
    assert!(secrets.connection("wh").await.unwrap().is_none());

    // Variables: a sensitive value is stored, never echoed; `***` keeps it.
    let out = bulk(
        &a,
        V,
        json!({"actions": [{"action": "create", "entities": [
            {"key": "api_token", "value": "tok-secret-1"},
            {"key": "region", "value": {"name": "ap-south-1"}, "description": "where"}]}]}),
    )
    .await;
    assert_eq!(keys(&out["create"]["success"]), ["api_token", "region"]);
    let out = bulk(
        &a,
        V,
        json!({"actions": [
            {"action": "update", "entities": [{"key": "api_token", "value": "***"},
                                              {"key": "region", "value": "eu-west-1"}]},
            {"action": "update", "entities": [{"key": "missing", "value": "1"}]},
            {"action": "create", "action_on_existence": "skip", "entities": [{"key": "region", "value": "zz"}]}
        ]}),
    )
    .await;
    assert!(!out.to_string().contains("secret"), "{out}");
    assert_eq!(keys(&out["update"]["success"]), ["api_token", "region"]);
    assert_eq!(out["update"]["errors"][0]["status_code"], 404);
    assert_eq!(out["create"]["success"], json!([]));
    let tok = secrets.get_variable("api_token").await.unwrap();
    assert_eq!(tok.val, "tok-secret-1");
    let region = secrets.get_variable("region").await.unwrap();
    assert_eq!(
        (region.val.as_str(), region.description.as_deref()),
        ("eu-west-1", Some("where"))
    );
    let out = bulk(&a, V, json!({"actions": [{"action": "delete", "entities": ["region", {"key": "api_token", "value": "x"}]}]})).await;
    assert_eq!(keys(&out["delete"]["success"]), ["region", "api_token"]);
    let (_, vars) = a.admin("GET", V, None).await;
    assert_eq!(vars["total_entries"], 0);
    // The audit log names each bulk change and its keys, never a password or a value.
    for event in ["bulk_connections", "bulk_variables"] {
        let (status, log) = a
            .admin("GET", &format!("/api/v2/eventLogs?event={event}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{log}");
        assert!(
            log["total_entries"].as_i64().unwrap() >= 3,
            "{event}: {log}"
        );
        let text = log.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(
            text.contains(if event == "bulk_connections" {
                "wh"
            } else {
                "api_token"
            }),
            "{text}"
        );
    }
}

#[tokio::test]
async fn airflowctl_signs_in_at_auth_token_cli_throttled_and_audited_as_auth_token() {
    let a = api_with(|s| {
        s.throttle = upiflow_web::throttle::Limit::parse("3 per minute").unwrap();
    })
    .await;
    const CLI: &str = "/auth/token/cli";
    let (status, body) = a
        .call(
            "POST",
            CLI,
            None,
            Some(json!({"username": "ada", "password": "admin-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "Airflow's LoginResponse: {body}"
    );
    // The token opens the API with the user's role.
    let bearer = format!("Bearer {token}");
    let (status, me) = a.call("GET", "/api/v2/pools", Some(&bearer), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let (status, _) = a
        .call(
            "PATCH",
            "/api/v2/pools",
            Some(&bearer),
            Some(json!({"actions": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an admin's CLI token may change");
    // Bad bodies: a 422 with a detail.
    for bad in [
        json!({"username": "ada"}),
        json!({"username": "ada", "password": "x", "extra": 1}),
        json!([]),
    ] {
        let (status, body) = a.call("POST", CLI, None, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(!body["detail"].is_null(), "{body}");
    }
    // Wrong passwords are a 401, then the throttle (shared with /auth/token) answers 429.
    let wrong = json!({"username": "ada", "password": "wrong-s3cret"});
    for _ in 0..3 {
        let (status, body) = a.call("POST", CLI, None, Some(wrong.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (status, body) = a.call("POST", CLI, None, Some(wrong.clone())).await;
    assert_detail(status, &body, StatusCode::TOO_MANY_REQUESTS, "");
    let (status, _) = a
        .call(
            "POST",
            "/auth/token",
            None,
            Some(json!({"username": "ada", "password": "admin-password"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "one throttle for both routes"
    );
    // Each sign-in is a `login` event, as /auth/token's, without the password.
    // (With the token: Basic sign-ins are throttled too, and ada's are now.)
    let (status, log) = a
        .call(
            "GET",
            "/api/v2/eventLogs?event=login&limit=100",
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let events = log["event_logs"].as_array().unwrap();
    assert!(events.len() >= 5, "{log}");
    // 1 sign-in, 2 refused bodies naming ada, 3 wrong passwords, 2 throttled (the `[]` body
    // names nobody).
    let ada = events.iter().filter(|e| e["owner"] == "ada").count();
    assert_eq!(ada, 8, "{log}");
    let success = events
        .iter()
        .filter(|e| {
            e["extra"]
                .as_str()
                .unwrap()
                .contains("\"outcome\":\"success\"")
        })
        .count();
    assert_eq!(success, 1, "{log}");
    assert!(!log.to_string().contains("s3cret") && !log.to_string().contains("admin-password"));
}

/// `upiflow web` with `UPIFLOW_EXPOSE_CONFIG` set to `expose` (unset with `None`).
async fn config_web(expose: Option<&str>) -> (TestDb, WebProcess) {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    auth::create_user(&db.pool, "opal", "op-password-1", Role::Op)
        .await
        .unwrap();
    let mut envs: Vec<(&str, &std::ffi::OsStr)> = vec![
        (
            "UPIFLOW_FERNET_KEY",
            "k6yNeZHJq1CbZJLhO6Y6yc4eTJ7UWDuIlcLQjNBfXgo=".as_ref(),
        ),
        ("UPIFLOW_DAGS_FOLDER", "/srv/upiflow/dags".as_ref()),
        ("UPIFLOW_NOTIFY_MAX_ATTEMPTS", "7".as_ref()),
    ];
    if let Some(e) = expose {
        envs.push(("UPIFLOW_EXPOSE_CONFIG", e.as_ref()));
    }
    let web = WebProcess::start(&db.url, &envs);
    (db, web)
}

async fn get(
    web: &WebProcess,
    path: &str,
    user: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let (name, password) = match user {
        "ada" => ("ada", "admin-password"),
        "opal" => ("opal", "op-password-1"),
        _ => ("vic", "viewer-password"),
    };
    let mut req = reqwest::Client::new()
        .get(format!("{}{path}", web.base))
        .basic_auth(name, Some(password));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

fn option<'a>(config: &'a Value, section: &str, key: &str) -> &'a Value {
    config["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == section)
        .and_then(|s| {
            s["options"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["key"] == key)
        })
        .map(|o| &o["value"])
        .unwrap_or_else(|| panic!("no [{section}] {key} in {config}"))
}

#[tokio::test]
async fn config_is_refused_unless_exposed_and_hides_sensitive_values_when_asked() {
    const CONFIG: &str = "/api/v2/config";
    const VALUE: &str = "/api/v2/config/section/{section}/option/{option}";
    const FERNET: &str = "k6yNeZHJq1CbZJLhO6Y6yc4eTJ7UWDuIlcLQjNBfXgo=";
    // Not exposed (Airflow's default): Airflow's 403, even for an admin.
    for expose in [None, Some("false"), Some("sometimes")] {
        let (_db, web) = config_web(expose).await;
        for path in [CONFIG, "/api/v2/config/section/core/option/dags_folder"] {
            let (status, _, text) = get(&web, path, "ada", None).await;
            assert_eq!(status, 403, "{expose:?} {path}: {text}");
            let body: Value = serde_json::from_str(&text).unwrap();
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("chose not to expose"),
                "{body}"
            );
            assert_airflow_shape("get", CONFIG, StatusCode::FORBIDDEN, &body);
            if expose == Some("sometimes") {
                assert!(text.contains("sometimes"), "the bad value is named: {text}");
            }
        }
    }

    let (_db, web) = config_web(Some("non-sensitive-only")).await;
    // 401 without credentials; a viewer is refused (the op role reads it, as Airflow's
    // simple auth manager lets OP read the configuration).
    let resp = reqwest::get(format!("{}{CONFIG}", web.base)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let (status, _, text) = get(&web, CONFIG, "vic", None).await;
    assert_eq!(status, 403, "{text}");
    for user in ["opal", "ada"] {
        let (status, ctype, text) = get(&web, CONFIG, user, None).await;
        assert_eq!(status, 200, "{text}");
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let config: Value = serde_json::from_str(&text).unwrap();
        assert_airflow_shape("get", CONFIG, StatusCode::OK, &config);
        assert_eq!(option(&config, "core", "dags_folder"), "/srv/upiflow/dags");
        assert_eq!(option(&config, "notifications", "max_attempts"), "7");
        assert_eq!(option(&config, "core", "fernet_key"), "< hidden >");
        assert_eq!(
            option(&config, "database", "sql_alchemy_conn"),
            "< hidden >"
        );
        assert_eq!(
            option(&config, "api", "expose_config"),
            "non-sensitive-only"
        );
        assert!(!text.contains(FERNET), "{text}");
    }
    // ?section= keeps one; an unknown one is a 404.
    let (status, _, text) = get(&web, "/api/v2/config?section=api", "ada", None).await;
    assert_eq!(status, 200, "{text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(config["sections"].as_array().unwrap().len(), 1);
    assert_eq!(config["sections"][0]["name"], "api");
    let (status, _, text) = get(&web, "/api/v2/config?section=nope", "ada", None).await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("nope"), "{text}");
    let (status, _, text) = get(&web, "/api/v2/config?sektion=api", "ada", None).await;
    assert_eq!(status, 422, "{text}");
    // Text by Accept, Airflow's INI form.
    let (status, ctype, text) = get(&web, CONFIG, "ada", Some("text/plain")).await;
    assert_eq!(status, 200, "{text}");
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(
        text.starts_with("[core]\ndags_folder = /srv/upiflow/dags\n"),
        "{text}"
    );
    assert!(text.contains("fernet_key = < hidden >\n"), "{text}");
    assert!(text.contains("\n\n[database]\n"), "{text}");
    let (status, _, text) = get(&web, CONFIG, "ada", Some("text/html")).await;
    assert_eq!(status, 406, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_airflow_shape("get", CONFIG, StatusCode::NOT_ACCEPTABLE, &body);
    // One option.
    let (status, _, text) = get(
        &web,
        "/api/v2/config/section/core/option/dags_folder",
        "opal",
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let one: Value = serde_json::from_str(&text).unwrap();
    assert_airflow_shape("get", VALUE, StatusCode::OK, &one);
    assert_eq!(
        one,
        json!({"sections": [{"name": "core", "options": [{"key": "dags_folder", "value": "/srv/upiflow/dags"}]}]})
    );
    let (status, _, text) = get(
        &web,
        "/api/v2/config/section/core/option/fernet_key",
        "ada",
        Some("text/plain"),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (200, "[core]\nfernet_key = < hidden >\n\n")
    );
    for missing in [
        "/api/v2/config/section/core/option/nope",
        "/api/v2/config/section/nope/option/dags_folder",
    ] {
        let (status, _, text) = get(&web, missing, "ada", None).await;
        assert_eq!(status, 404, "{text}");
        assert!(text.contains("not found"), "{text}");
    }

    // `true`: every value, as Airflow shows them (the database password still never).
    let (db, web) = config_web(Some("true")).await;
    let (status, _, text) = get(&web, CONFIG, "ada", None).await;
    assert_eq!(status, 200, "{text}");
    let config: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(option(&config, "core", "fernet_key"), FERNET);
    let conn = option(&config, "database", "sql_alchemy_conn")
        .as_str()
        .unwrap();
    let db_name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    assert!(
        conn.starts_with("postgresql://") && conn.ends_with(&format!("/{db_name}")),
        "{conn}"
    );
    let url = url::Url::parse(&db.url).unwrap();
    if let Some(pw) = url.password() {
        assert!(!text.contains(pw), "the database password is never shown");
    }
}

#[tokio::test]
async fn a_backfill_of_the_most_intervals_allowed_is_created_within_seconds() {
    let a = api().await;
    let cap = upiflow_engine::backfill::MAX_INTERVALS;
    let started = std::time::Instant::now();
    // `m` runs every minute: 00:00 to 22:39 is exactly 10,000 intervals.
    let (status, body) = a
        .admin(
            "POST",
            "/api/v2/backfills",
            Some(json!({"dag_id": "m", "from_date": "2024-01-01T00:00:00Z",
                        "to_date": "2024-01-07T22:39:00Z", "max_active_runs": 1})),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, runs) = a.admin("GET", "/api/v2/dags/m/dagRuns?limit=1", None).await;
    assert_eq!(runs["total_entries"], json!(cap));
    eprintln!("a backfill of {cap} runs took {took:?}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}
