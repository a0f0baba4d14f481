//! The DAG run, task instance and backfill actions of the JSON API (#14 runsapi) in-process
//! against a real Postgres: answers fit Airflow's document, each filter filters, changes
//! need a role that may, bad input is a 4xx with a `detail`.

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

/// Two daily DAGs of one noop task each, `d` and `e`; an admin and a viewer.
async fn api() -> Api {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "ada", "admin-password", Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let noop = |id: &str| {
        format!(
            "dag_id = \"{id}\"\nschedule = \"@daily\"\nmax_active_runs = 16\n[[tasks]]\nid = \"a\"\nkind = \"noop\"\n\
             [[tasks]]\nid = \"b\"\nkind = \"noop\"\nupstream = [\"a\"]\n"
        )
    };
    let dir = dags_dir(&[("d.toml", &noop("d")), ("e.toml", &noop("e"))]);
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
        admin: basic("ada", "admin-password"),
        viewer: basic("vic", "viewer-password"),
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

    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, uri, Some(&self.admin.clone()), body)
            .await
    }

    /// Triggers `dag` at 2024-01-`day`; answers the run id.
    async fn trigger(&self, dag: &str, day: u32) -> String {
        let (status, run) = self
            .admin(
                "POST",
                &format!("/api/v2/dags/{dag}/dagRuns"),
                Some(json!({"logical_date": format!("2024-01-{day:02}T00:00:00Z")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{run}");
        run["dag_run_id"].as_str().unwrap().to_string()
    }
}

/// A 4xx whose body says why.
fn assert_detail(status: StatusCode, body: &Value, want: StatusCode, says: &str) {
    assert_eq!(status, want, "{body}");
    let d = body["detail"].to_string();
    assert!(d.contains(says), "detail {d} does not say `{says}`");
}

const RUN: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}";

#[tokio::test]
async fn deleting_a_run_is_a_204_its_task_instances_go_and_a_running_try_is_a_409() {
    let a = api().await;
    let run = a.trigger("d", 1).await;
    let uri = format!("/api/v2/dags/d/dagRuns/{run}");
    // Credentials and role first.
    let (status, _) = a.call("DELETE", &uri, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = a.call("DELETE", &uri, Some(&a.viewer), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_airflow_shape("delete", RUN, status, &body);
    // A run with a running try is kept.
    let cache = upiflow_engine::store::dags::VersionCache::new();
    let claim = upiflow_engine::lifecycle::claim::claim(&a.db.pool, &cache, "w1", 1)
        .await
        .unwrap();
    assert_eq!(claim.tries.len(), 1, "task a of the run is claimed");
    let (status, body) = a.admin("DELETE", &uri, None).await;
    assert_detail(status, &body, StatusCode::CONFLICT, "running");
    assert_airflow_shape("delete", RUN, status, &body);
    let (status, _) = a.admin("GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "the run is still there");
    // A run without running tries goes, with its task instances.
    let other = a.trigger("d", 2).await;
    let other_uri = format!("/api/v2/dags/d/dagRuns/{other}");
    let (status, tis) = a
        .admin("GET", &format!("{other_uri}/taskInstances"), None)
        .await;
    assert_eq!(
        (status, tis["total_entries"].as_i64()),
        (StatusCode::OK, Some(2))
    );
    let (status, body) = a.admin("DELETE", &other_uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = a.admin("GET", &other_uri, None).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, &other);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_instances ti JOIN dag_runs r ON r.id = ti.run_pk
         WHERE r.run_id = $1",
    )
    .bind(&other)
    .fetch_one(&a.db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM task_instances")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(all, 2, "the other run's instances stay");
    // Again: a 404 naming it; an unknown DAG too.
    let (status, body) = a.admin("DELETE", &other_uri, None).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, &other);
    assert_airflow_shape("delete", RUN, status, &body);
    let (status, body) = a.admin("DELETE", "/api/v2/dags/nope/dagRuns/x", None).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "nope");
}

#[tokio::test]
async fn clearing_a_run_lists_dry_honours_only_failed_and_reruns_it() {
    let a = api().await;
    let run = a.trigger("d", 3).await;
    let uri = format!("/api/v2/dags/d/dagRuns/{run}");
    let clear = format!("{uri}/clear");
    const CLEAR: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear";
    let (status, _) = a.call("POST", &clear, None, Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = a
        .call("POST", &clear, Some(&a.viewer), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Mark it failed: `a` fails... no try runs, so both are skipped/failed by the mark.
    let (status, body) = a
        .admin("PATCH", &uri, Some(json!({"state": "success"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "success");
    // Dry (the default): both instances, unchanged.
    let (status, body) = a.admin("POST", &clear, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("post", CLEAR, status, &body);
    assert_eq!(body["total_entries"], 2, "{body}");
    assert!(
        body["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "success")
    );
    // only_failed: none is failed.
    let (status, body) = a
        .admin("POST", &clear, Some(json!({"only_failed": true})))
        .await;
    assert_eq!(
        (status, body["total_entries"].as_i64()),
        (StatusCode::OK, Some(0)),
        "{body}"
    );
    // Fail `b` in the database's way (a mark), then only_failed finds just it.
    let (status, body) = a
        .admin(
            "PATCH",
            &format!("{uri}/taskInstances/b"),
            Some(json!({"new_state": "failed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = a
        .admin("POST", &clear, Some(json!({"only_failed": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b"]);
    // For real: the run answers, running again, with its note; `b` has no state, `a` kept.
    let (status, body) = a
        .admin(
            "POST",
            &clear,
            Some(json!({"dry_run": false, "only_failed": true, "note": "rerun b"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("post", CLEAR, status, &body);
    assert_eq!(body["dag_run_id"], run.as_str());
    assert_eq!(body["state"], "running", "{body}");
    assert_eq!(body["note"], "rerun b");
    let (_, tis) = a.admin("GET", &format!("{uri}/taskInstances"), None).await;
    for t in tis["task_instances"].as_array().unwrap() {
        match t["task_id"].as_str().unwrap() {
            "a" => assert_eq!(t["state"], "success"),
            _ => assert_ne!(t["state"], "failed", "{t}"),
        }
    }
    // Refused: what upiflow would not do, unknown fields, a missing run.
    for (body, says) in [
        (json!({"only_new": true}), "only_new"),
        (
            json!({"run_on_latest_version": true}),
            "run_on_latest_version",
        ),
        (json!({"bogus": 1}), "bogus"),
        (json!({"note": "x".repeat(1001)}), "note"),
    ] {
        let (status, answer) = a.admin("POST", &clear, Some(body)).await;
        assert_detail(status, &answer, StatusCode::UNPROCESSABLE_ENTITY, says);
    }
    let (status, body) = a
        .admin("POST", "/api/v2/dags/d/dagRuns/nope/clear", Some(json!({})))
        .await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "nope");
    assert_airflow_shape("post", CLEAR, status, &body);
    // A running try is a 409 for a real clear (not for a dry one).
    let cache = upiflow_engine::store::dags::VersionCache::new();
    let claim = upiflow_engine::lifecycle::claim::claim(&a.db.pool, &cache, "w1", 4)
        .await
        .unwrap();
    assert_eq!(claim.tries.len(), 1, "b is claimed");
    let (status, body) = a.admin("POST", &clear, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = a
        .admin("POST", &clear, Some(json!({"dry_run": false})))
        .await;
    assert_detail(status, &body, StatusCode::CONFLICT, "b");
}

async fn run_ids(a: &Api, body: Value) -> (Vec<String>, i64) {
    let (status, answer) = a
        .call(
            "POST",
            "/api/v2/dags/~/dagRuns/list",
            Some(&a.viewer),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_airflow_shape(
        "post",
        "/api/v2/dags/{dag_id}/dagRuns/list",
        status,
        &answer,
    );
    let ids = answer["dag_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["dag_id"].as_str().unwrap(),
                &r["logical_date"].as_str().unwrap()[8..10]
            )
        })
        .collect();
    (ids, answer["total_entries"].as_i64().unwrap())
}

#[tokio::test]
async fn the_batch_run_list_filters_by_every_body_field_across_dags() {
    let a = api().await;
    let d1 = a.trigger("d", 1).await;
    a.trigger("d", 2).await;
    a.trigger("e", 3).await;
    // d/01 succeeds.
    let (status, _) = a
        .admin(
            "PATCH",
            &format!("/api/v2/dags/d/dagRuns/{d1}"),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = a
        .call("POST", "/api/v2/dags/~/dagRuns/list", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        run_ids(&a, json!({})).await,
        (s(&["d/01", "d/02", "e/03"]), 3)
    );
    assert_eq!(
        run_ids(&a, json!({"dag_ids": ["e"]})).await,
        (s(&["e/03"]), 1)
    );
    assert_eq!(run_ids(&a, json!({"dag_ids": []})).await, (s(&[]), 0));
    assert_eq!(
        run_ids(&a, json!({"states": ["success"]})).await,
        (s(&["d/01"]), 1)
    );
    assert_eq!(run_ids(&a, json!({"states": [null]})).await, (s(&[]), 0));
    assert_eq!(
        run_ids(&a, json!({"logical_date_gte": "2024-01-02T00:00:00Z"})).await,
        (s(&["d/02", "e/03"]), 2)
    );
    assert_eq!(
        run_ids(&a, json!({"logical_date_gt": "2024-01-02T00:00:00Z"})).await,
        (s(&["e/03"]), 1)
    );
    assert_eq!(
        run_ids(&a, json!({"logical_date_lt": "2024-01-02T00:00:00Z"})).await,
        (s(&["d/01"]), 1)
    );
    assert_eq!(
        run_ids(&a, json!({"logical_date_lte": "2024-01-02T00:00:00Z"})).await,
        (s(&["d/01", "d/02"]), 2)
    );
    // run_after is the end of the data interval: a day after the logical date.
    assert_eq!(
        run_ids(
            &a,
            json!({"run_after_gte": "2024-01-03T00:00:00Z", "run_after_lt": "2024-01-04T00:00:00Z"})
        )
        .await,
        (s(&["d/02"]), 1)
    );
    assert_eq!(
        run_ids(
            &a,
            json!({"run_after_gt": "2024-01-03T00:00:00Z", "run_after_lte": "2024-01-04T00:00:00Z"})
        )
        .await,
        (s(&["e/03"]), 1)
    );
    // Only the marked run has ended.
    assert_eq!(
        run_ids(&a, json!({"end_date_gte": "2000-01-01T00:00:00Z"})).await,
        (s(&["d/01"]), 1)
    );
    assert_eq!(
        run_ids(&a, json!({"end_date_lt": "2000-01-01T00:00:00Z"})).await,
        (s(&[]), 0)
    );
    assert_eq!(
        run_ids(
            &a,
            json!({"end_date_gt": "2000-01-01T00:00:00Z", "end_date_lte": "2999-01-01T00:00:00Z"})
        )
        .await
        .1,
        1
    );
    assert_eq!(
        run_ids(&a, json!({"start_date_gte": "2999-01-01T00:00:00Z"}))
            .await
            .1,
        0
    );
    assert_eq!(run_ids(&a, json!({"start_date_gt": "2000-01-01T00:00:00Z", "start_date_lt": "2999-01-01T00:00:00Z", "start_date_lte": "2999-01-01T00:00:00Z"})).await.1, 3);
    assert_eq!(
        run_ids(&a, json!({"duration_gte": 0.0, "duration_lte": 1e9})).await,
        (s(&["d/01"]), 1)
    );
    assert_eq!(run_ids(&a, json!({"duration_gt": 1e9})).await.1, 0);
    assert_eq!(run_ids(&a, json!({"duration_lt": 1e9})).await.1, 1);
    // Order and page.
    assert_eq!(
        run_ids(&a, json!({"order_by": "-logical_date", "page_limit": 2})).await,
        (s(&["e/03", "d/02"]), 3)
    );
    assert_eq!(
        run_ids(&a, json!({"order_by": "logical_date", "page_offset": 2})).await,
        (s(&["e/03"]), 3)
    );
    // Refused, with a detail.
    for (uri, body, want, says) in [
        (
            "/api/v2/dags/d/dagRuns/list",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "~",
        ),
        (
            "/api/v2/dags/~/dagRuns/list",
            json!({"order_by": "colour"}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            "/api/v2/dags/~/dagRuns/list",
            json!({"states": ["sleeping"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "sleeping",
        ),
        (
            "/api/v2/dags/~/dagRuns/list",
            json!({"conf_contains": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "conf_contains",
        ),
        (
            "/api/v2/dags/~/dagRuns/list",
            json!({"page_limit": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        (
            "/api/v2/dags/~/dagRuns/list",
            json!({"logical_date_gte": "soon"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "logical_date_gte",
        ),
        (
            "/api/v2/dags/~/dagRuns/list",
            json!({"color": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "color",
        ),
    ] {
        let (status, answer) = a.call("POST", uri, Some(&a.viewer), Some(body)).await;
        assert_detail(status, &answer, want, says);
    }
}

#[tokio::test]
async fn backfills_are_listed_by_dag_and_a_dry_run_names_the_runs_it_would_make() {
    let a = api().await;
    let make = |from: &str, to: &str| json!({"dag_id": "d", "from_date": from, "to_date": to});
    let (status, first) = a
        .admin(
            "POST",
            "/api/v2/backfills",
            Some(make("2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, second) = a
        .admin(
            "POST",
            "/api/v2/backfills",
            Some(make("2024-02-01T00:00:00Z", "2024-02-01T00:00:00Z")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let list = |q: &str| format!("/api/v2/backfills?{q}");
    let (status, _) = a.call("GET", &list("dag_id=d"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = a
        .call("GET", &list("dag_id=d"), Some(&a.viewer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("get", "/api/v2/backfills", status, &body);
    let ids = |b: &Value| {
        b["backfills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let (f, s) = (
        first["id"].as_i64().unwrap(),
        second["id"].as_i64().unwrap(),
    );
    assert_eq!(
        (ids(&body), body["total_entries"].as_i64()),
        (vec![f, s], Some(2))
    );
    let (_, body) = a
        .call("GET", &list("dag_id=d&order_by=-id"), Some(&a.viewer), None)
        .await;
    assert_eq!(ids(&body), vec![s, f]);
    let (_, body) = a
        .call(
            "GET",
            &list("dag_id=d&limit=1&offset=1"),
            Some(&a.viewer),
            None,
        )
        .await;
    assert_eq!(
        (ids(&body), body["total_entries"].as_i64()),
        (vec![s], Some(2))
    );
    let (_, body) = a
        .call("GET", &list("dag_id=e"), Some(&a.viewer), None)
        .await;
    assert_eq!(
        (ids(&body), body["total_entries"].as_i64()),
        (vec![], Some(0))
    );
    for (q, want, says) in [
        ("", StatusCode::UNPROCESSABLE_ENTITY, "dag_id"),
        ("dag_id=nope", StatusCode::NOT_FOUND, "nope"),
        (
            "dag_id=d&order_by=dag_id",
            StatusCode::BAD_REQUEST,
            "dag_id",
        ),
        (
            "dag_id=d&limit=-1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        (
            "dag_id=d&colour=red",
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
    ] {
        let (status, body) = a.call("GET", &list(q), Some(&a.viewer), None).await;
        assert_detail(status, &body, want, says);
    }
    // Dry run: Jan 1-3 have runs (queued or running), so only 4 and 5 would be made.
    const DRY: &str = "/api/v2/backfills/dry_run";
    let range = make("2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z");
    let (status, body) = a.call("POST", DRY, None, Some(range.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = a
        .call("POST", DRY, Some(&a.viewer), Some(range.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let runs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    let dates = |b: &Value| {
        b["backfills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["logical_date"].as_str().unwrap()[..10].to_string())
            .collect::<Vec<_>>()
    };
    let (status, body) = a.admin("POST", DRY, Some(range.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("post", DRY, status, &body);
    assert_eq!(dates(&body), ["2024-01-04", "2024-01-05"]);
    assert_eq!(body["total_entries"], 2);
    // Mark Jan 1 failed and Jan 2 success: `failed` re-runs the one, `completed` both.
    let (_, runs) = a
        .admin("GET", "/api/v2/dags/d/dagRuns?order_by=logical_date", None)
        .await;
    let run_at = |i: usize| {
        runs["dag_runs"][i]["dag_run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (i, st) in [(0, "failed"), (1, "success")] {
        let (status, body) = a
            .admin(
                "PATCH",
                &format!("/api/v2/dags/d/dagRuns/{}", run_at(i)),
                Some(json!({"state": st})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut failed = range.clone();
    failed["reprocess_behavior"] = json!("failed");
    let (_, body) = a.admin("POST", DRY, Some(failed)).await;
    assert_eq!(dates(&body), ["2024-01-01", "2024-01-04", "2024-01-05"]);
    let mut completed = range.clone();
    completed["reprocess_behavior"] = json!("completed");
    let (_, body) = a.admin("POST", DRY, Some(completed)).await;
    assert_eq!(
        dates(&body),
        ["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05"]
    );
    let runs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM dag_runs")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(runs_before, runs_after, "a dry run makes nothing");
    for (body, want, says) in [
        (
            make("2024-01-05T00:00:00Z", "2024-01-01T00:00:00Z"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "from",
        ),
        (
            json!({"dag_id": "nope", "from_date": "2024-01-01T00:00:00Z", "to_date": "2024-01-02T00:00:00Z"}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            json!({"dag_id": "d", "from_date": "2024-01-01T00:00:00Z", "to_date": "2024-01-02T00:00:00Z", "run_backwards": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "run_backwards",
        ),
        (
            json!({"dag_id": "d"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "from_date",
        ),
    ] {
        let (status, answer) = a.admin("POST", DRY, Some(body)).await;
        assert_detail(status, &answer, want, says);
    }
}

#[tokio::test]
async fn a_try_by_number_and_the_map_index_routes_answer_the_unmapped_instance() {
    let a = api().await;
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("runsapi"));
    let run = a.trigger("d", 7).await;
    let uri = format!("/api/v2/dags/d/dagRuns/{run}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, r) = a.admin("GET", &uri, None).await;
        if r["state"] == "success" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker.await.unwrap();
    let ti = format!("{uri}/taskInstances/a");
    const TI: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}";
    let viewer = a.viewer.clone();
    let get = |u: String| {
        let viewer = viewer.clone();
        let a = &a;
        async move { a.call("GET", &u, Some(&viewer), None).await }
    };
    // One try by number, as the list of tries has it.
    let (status, one) = get(format!("{ti}/tries/1")).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_airflow_shape(
        "get",
        &format!("{TI}/tries/{{task_try_number}}"),
        status,
        &one,
    );
    let (_, all) = get(format!("{ti}/tries")).await;
    assert_eq!(all["task_instances"][0], one);
    assert_eq!(
        (one["try_number"].as_i64(), one["state"].as_str()),
        (Some(1), Some("success"))
    );
    let (status, body) = get(format!("{ti}/tries/2")).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "try_number: `2`");
    assert_airflow_shape(
        "get",
        &format!("{TI}/tries/{{task_try_number}}"),
        status,
        &body,
    );
    let (status, body) = get(format!("{ti}/tries/two")).await;
    assert_detail(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "two");
    let (status, body) = get(format!("{ti}/tries/1?map_index=3")).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "map_index");
    // map_index -1 is the instance itself; any other is a 404 saying why.
    let (_, plain) = get(ti.clone()).await;
    let (status, mapped) = get(format!("{ti}/-1")).await;
    assert_eq!(status, StatusCode::OK, "{mapped}");
    assert_airflow_shape("get", &format!("{TI}/{{map_index}}"), status, &mapped);
    assert_eq!(mapped, plain);
    let (status, tries) = get(format!("{ti}/-1/tries")).await;
    assert_eq!(status, StatusCode::OK, "{tries}");
    assert_airflow_shape("get", &format!("{TI}/{{map_index}}/tries"), status, &tries);
    assert_eq!(tries, all);
    let (status, body) = get(format!("{ti}/-1/tries/1")).await;
    assert_eq!((status, &body), (StatusCode::OK, &one));
    for u in [
        format!("{ti}/0"),
        format!("{ti}/2/tries"),
        format!("{ti}/5/tries/1"),
    ] {
        let (status, body) = get(u.clone()).await;
        assert_detail(status, &body, StatusCode::NOT_FOUND, "map_index");
    }
    let (status, body) = get(format!("{ti}/x")).await;
    assert_detail(status, &body, StatusCode::UNPROCESSABLE_ENTITY, "x");
    // listMapped: Airflow's 404 for a task that is not mapped; a missing one is named.
    let (status, body) = get(format!("{ti}/listMapped")).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "not mapped");
    assert_airflow_shape("get", &format!("{TI}/listMapped"), status, &body);
    let (status, body) = get(format!("{uri}/taskInstances/zz/listMapped")).await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "zz");
    // Credentials.
    for u in [
        format!("{ti}/tries/1"),
        format!("{ti}/-1"),
        format!("{ti}/listMapped"),
    ] {
        let (status, _) = a.call("GET", &u, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{u}");
    }
}

/// The raw body of a GET, as text.
async fn text(a: &Api, uri: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .uri(uri)
        .header("authorization", &a.viewer)
        .body(Body::empty())
        .unwrap();
    let resp = a.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn wait_streams_the_run_state_as_ndjson_until_it_finishes() {
    let a = api().await;
    let run = a.trigger("d", 9).await;
    let wait = format!("/api/v2/dags/d/dagRuns/{run}/wait");
    // The run finishes while it is waited for: a worker starts a little later.
    let pool = a.db.pool.clone();
    let started = std::time::Instant::now();
    let runner = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let (stop, worker) = spawn_worker(&pool, fast_worker("wait"));
        (stop, worker)
    });
    let (status, kind, body) = text(&a, &format!("{wait}?interval=0.1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(kind, "application/x-ndjson");
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.len() >= 3,
        "a line at once and one per interval: {body}"
    );
    assert_eq!(lines.first().unwrap()["state"], "running", "{body}");
    assert_eq!(lines.last().unwrap()["state"], "success", "{body}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["state"] == "running")
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    let (stop, worker) = runner.await.unwrap();
    stop.cancel();
    worker.await.unwrap();
    // A finished run: one line.
    let (status, _, body) = text(&a, &format!("{wait}?interval=5")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "{\"state\":\"success\"}\n")
    );
    // Bad input and a missing run, before anything streams.
    for (q, want, says) in [
        ("", StatusCode::UNPROCESSABLE_ENTITY, "interval"),
        ("?interval=0", StatusCode::UNPROCESSABLE_ENTITY, "interval"),
        ("?interval=-1", StatusCode::UNPROCESSABLE_ENTITY, "interval"),
        (
            "?interval=soon",
            StatusCode::UNPROCESSABLE_ENTITY,
            "interval",
        ),
        (
            "?interval=1&result=a",
            StatusCode::UNPROCESSABLE_ENTITY,
            "XCom",
        ),
        (
            "?interval=1&colour=red",
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
    ] {
        let (status, body) = a
            .call("GET", &format!("{wait}{q}"), Some(&a.viewer), None)
            .await;
        assert_detail(status, &body, want, says);
    }
    let (status, body) = a
        .call(
            "GET",
            "/api/v2/dags/d/dagRuns/nope/wait?interval=1",
            Some(&a.viewer),
            None,
        )
        .await;
    assert_detail(status, &body, StatusCode::NOT_FOUND, "nope");
    let (status, _) = a
        .call("GET", &format!("{wait}?interval=1"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pausing_or_cancelling_a_backfill_is_a_409_once_completed() {
    let a = api().await;
    let (status, b) = a
        .admin(
            "POST",
            "/api/v2/backfills",
            Some(json!({"dag_id": "d", "from_date": "2024-03-01T00:00:00Z",
                        "to_date": "2024-03-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let id = b["id"].as_i64().unwrap();
    for action in ["pause", "unpause", "cancel"] {
        let uri = format!("/api/v2/backfills/{id}/{action}");
        let (status, _) = a.call("PUT", &uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        let (status, body) = a.call("PUT", &uri, Some(&a.viewer), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        // What an admin's pause, unpause and cancel do: tests/api_ops2.rs.
        let (status, body) = a
            .admin("PUT", &format!("/api/v2/backfills/999/{action}"), None)
            .await;
        assert_detail(status, &body, StatusCode::NOT_FOUND, "999");
        let (status, body) = a
            .admin("PUT", &format!("/api/v2/backfills/x/{action}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    // Its one run succeeds and the backfill completes: now Airflow's 409.
    let (_, runs) = a.admin("GET", "/api/v2/dags/d/dagRuns", None).await;
    let run = runs["dag_runs"][0]["dag_run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = a
        .admin(
            "PATCH",
            &format!("/api/v2/dags/d/dagRuns/{run}"),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    upiflow_engine::backfill::close_finished(&a.db.pool)
        .await
        .unwrap();
    for action in ["pause", "unpause", "cancel"] {
        let uri = format!("/api/v2/backfills/{id}/{action}");
        let (status, body) = a.admin("PUT", &uri, None).await;
        assert_detail(status, &body, StatusCode::CONFLICT, "already completed");
        assert_airflow_shape(
            "put",
            &format!("/api/v2/backfills/{{backfill_id}}/{action}"),
            status,
            &body,
        );
    }
}

#[tokio::test]
async fn dependencies_say_what_keeps_a_task_instance_from_running() {
    let a = api().await;
    let run = a.trigger("d", 11).await;
    let tis = format!("/api/v2/dags/d/dagRuns/{run}/taskInstances");
    const DEPS: &str =
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dependencies";
    let deps = |task: &str| format!("{tis}/{task}/dependencies");
    let names = |b: &Value| -> Vec<String> {
        b["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    // `a` is scheduled with room in its pool: nothing holds it. `b` waits for `a`.
    let (status, body) = a.call("GET", &deps("a"), Some(&a.viewer), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_airflow_shape("get", DEPS, status, &body);
    assert!(names(&body).is_empty(), "{body}");
    let (_, body) = a.call("GET", &deps("b"), Some(&a.viewer), None).await;
    assert_airflow_shape("get", DEPS, StatusCode::OK, &body);
    assert_eq!(names(&body), ["Trigger Rule"], "{body}");
    let reason = body["dependencies"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("all_success") && reason.contains("a: scheduled"),
        "{reason}"
    );
    // A paused DAG and a full pool hold `a`.
    let (status, body) = a
        .admin("PATCH", "/api/v2/dags/d", Some(json!({"is_paused": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = a
        .admin(
            "PATCH",
            "/api/v2/pools/default_pool?update_mask=slots",
            Some(json!({"slots": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = a.call("GET", &deps("a"), Some(&a.viewer), None).await;
    assert_eq!(
        names(&body),
        ["Dag Not Paused", "Pool Slots Available"],
        "{body}"
    );
    assert!(
        body["dependencies"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("0 open slots")
    );
    let (_, by_index) = a
        .call(
            "GET",
            &format!("{tis}/a/-1/dependencies"),
            Some(&a.viewer),
            None,
        )
        .await;
    assert_eq!(by_index, body);
    // Once running, nothing is reported (as Airflow does).
    a.admin(
        "PATCH",
        "/api/v2/pools/default_pool?update_mask=slots",
        Some(json!({"slots": 128})),
    )
    .await;
    a.admin("PATCH", "/api/v2/dags/d", Some(json!({"is_paused": false})))
        .await;
    let cache = upiflow_engine::store::dags::VersionCache::new();
    let claim = upiflow_engine::lifecycle::claim::claim(&a.db.pool, &cache, "w1", 1)
        .await
        .unwrap();
    assert_eq!(claim.tries.len(), 1);
    let (_, body) = a.call("GET", &deps("a"), Some(&a.viewer), None).await;
    assert!(names(&body).is_empty(), "{body}");
    let (_, body) = a.call("GET", &deps("b"), Some(&a.viewer), None).await;
    assert!(
        body["dependencies"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("a: running"),
        "{body}"
    );
    // Missing things and mapped indexes are 404s naming them; no credentials a 401.
    for (u, says) in [
        (deps("zz"), "zz"),
        (
            "/api/v2/dags/d/dagRuns/nope/taskInstances/a/dependencies".to_string(),
            "nope",
        ),
        (format!("{tis}/a/2/dependencies"), "map_index"),
    ] {
        let (status, body) = a.call("GET", &u, Some(&a.viewer), None).await;
        assert_detail(status, &body, StatusCode::NOT_FOUND, says);
    }
    let (status, _) = a.call("GET", &deps("a"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
