//! #14 runs2: bulk and batch DAG-run and task-instance routes, task-instance deletion, the
//! task-instance list's filters and custom run ids, in-process against a real Postgres:
//! answers fit Airflow's document, each filter filters, changes need a role that may, bad
//! input is a 4xx with a `detail`.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};
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

#[tokio::test]
async fn a_prefix_pattern_on_a_qualified_column_filters() {
    use upiflow_engine::store::filters::TextMatch;
    let db = fresh_db().await;
    let mut conn = db.pool.acquire().await.unwrap();
    // `t.name` is the outer row's column; the pattern's own terms must not shadow `t`
    // (where `t.name` would read as the cast `name(t)`, a term that starts with itself).
    let count = |m: TextMatch| {
        let mut q = sqlx::QueryBuilder::new(
            "SELECT count(*) FROM (VALUES ('alpha'), ('beta')) AS t(name) WHERE true",
        );
        m.push(&mut q, "t.name");
        q
    };
    for (m, want) in [
        (TextMatch::Prefix(vec!["zz".into()]), 0),
        (TextMatch::Prefix(vec!["al".into()]), 1),
        (TextMatch::Prefix(vec!["al".into(), "be".into()]), 2),
        (TextMatch::Substring(vec!["zz".into()]), 0),
        (TextMatch::Substring(vec!["ET".into()]), 1),
    ] {
        let mut q = count(m.clone());
        let n: i64 = q.build_query_scalar().fetch_one(&mut *conn).await.unwrap();
        assert_eq!(n, want, "{m:?}");
    }
}

const TIS: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances";
const TIS_BATCH: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list";

impl Api {
    /// Waits (at most 30 s) until the run is in `state`.
    async fn wait_run(&self, dag: &str, run: &str, state: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, r) = self
                .admin("GET", &format!("/api/v2/dags/{dag}/dagRuns/{run}"), None)
                .await;
            if r["state"] == state {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run {dag}/{run} never got to {state}: {r}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// `total_entries` of a GET of the every-run task-instance list with `query`.
    async fn ti_count(&self, query: &str) -> i64 {
        let (status, body) = self
            .call(
                "GET",
                &format!("/api/v2/dags/~/dagRuns/~/taskInstances?{query}"),
                Some(&self.viewer.clone()),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_airflow_shape("get", TIS, status, &body);
        let total = body["total_entries"].as_i64().unwrap();
        assert_eq!(
            body["task_instances"].as_array().unwrap().len() as i64,
            total.min(50)
        );
        total
    }

    /// `total_entries` of the batch list at `path` with `body`.
    async fn batch_count(&self, path: &str, body: Value) -> i64 {
        let (status, out) = self
            .call(
                "POST",
                &format!("/api/v2/dags/{path}/taskInstances/list"),
                Some(&self.viewer.clone()),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}: {out}");
        assert_airflow_shape("post", TIS_BATCH, status, &out);
        out["total_entries"].as_i64().unwrap()
    }
}

/// d and e run at 2024-01-01 to success (four task instances with a try, a duration and
/// `default_pool`); d's run of 2024-01-02 waits (two instances never tried).
async fn finished_and_waiting() -> (Api, String, String) {
    let a = api().await;
    let d1 = a.trigger("d", 1).await;
    let e1 = a.trigger("e", 1).await;
    let (stop, worker) = spawn_worker(&a.db.pool, fast_worker("runs2"));
    a.wait_run("d", &d1, "success").await;
    a.wait_run("e", &e1, "success").await;
    stop.cancel();
    worker.await.unwrap();
    let d2 = a.trigger("d", 2).await;
    (a, d1, d2)
}

#[tokio::test]
async fn every_documented_task_instance_filter_filters_or_is_refused_by_name() {
    let (a, _d1, d2) = finished_and_waiting().await;
    assert_eq!(a.ti_count("").await, 6);
    for (query, want) in [
        ("dag_id_pattern=E", 2),
        ("dag_id_prefix_pattern=d", 4),
        ("dag_id_prefix_pattern=D", 0),
        ("run_id_pattern=2024-01-02", 2),
        ("run_id_prefix_pattern=manual__2024-01-01", 4),
        ("task_display_name_pattern=b", 3),
        ("task_display_name_prefix_pattern=a|b", 6),
        ("task_display_name_prefix_pattern=c", 0),
        ("pool=default_pool", 6),
        ("pool=other", 0),
        ("pool=other&pool=default_pool", 6),
        ("pool_name_pattern=FAULT", 6),
        ("pool_name_prefix_pattern=x", 0),
        ("queue=default", 6),
        ("queue=gpu", 0),
        ("try_number=1", 4),
        ("try_number=0", 2),
        ("try_number=2", 0),
        ("duration_gte=0", 4),
        ("duration_lt=0", 0),
        ("duration_gt=3600", 0),
        ("map_index=-1", 6),
        ("map_index=2", 0),
        ("task_id=a&try_number=1", 2),
    ] {
        assert_eq!(a.ti_count(query).await, want, "{query}");
    }
    // Sorted by duration: the two never run (no duration) come last when descending.
    let (status, body) = a
        .admin(
            "GET",
            "/api/v2/dags/~/dagRuns/~/taskInstances?order_by=-duration",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tis = body["task_instances"].as_array().unwrap();
    assert!(tis[..4].iter().all(|t| t["duration"].is_number()), "{body}");
    assert!(tis[4..].iter().all(|t| t["dag_run_id"] == d2.as_str()));
    // What upiflow cannot answer is refused by name.
    for (query, says) in [
        ("executor=LocalExecutor", "executor"),
        ("operator=noop", "operator"),
        ("queue_name_pattern=def", "queue_name_pattern"),
        ("task_group_id=g", "task_group_id"),
        ("version_number=1", "version_number"),
        ("updated_at_gte=2024-01-01T00:00:00Z", "updated_at_gte"),
        ("try_number=one", "try_number"),
        ("duration_gte=long", "duration_gte"),
        ("no_such_filter=1", "no_such_filter"),
    ] {
        let (status, body) = a
            .admin(
                "GET",
                &format!("/api/v2/dags/~/dagRuns/~/taskInstances?{query}"),
                None,
            )
            .await;
        assert!(status.is_client_error(), "{query}: {status} {body}");
        assert_detail(status, &body, status, says);
    }
}

#[tokio::test]
async fn the_batch_task_instance_list_filters_by_every_body_field() {
    let (a, d1, d2) = finished_and_waiting().await;
    let all = "~/dagRuns/~";
    for (body, want) in [
        (json!({}), 6),
        (json!({"dag_ids": ["e"]}), 2),
        (json!({"dag_ids": []}), 0),
        (json!({"dag_run_ids": [d2]}), 2),
        (json!({"task_ids": ["b"]}), 3),
        (json!({"state": ["success"]}), 4),
        // Of d's waiting run, `a` is scheduled and `b` has no state yet.
        (json!({"state": ["success", null]}), 5),
        (json!({"state": [null]}), 1),
        (json!({"pool": ["default_pool"]}), 6),
        (json!({"pool": ["x"]}), 0),
        (json!({"queue": ["default"]}), 6),
        (json!({"queue": []}), 0),
        (json!({"duration_gte": 0.0}), 4),
        (json!({"duration_gt": 3600.0}), 0),
        (json!({"logical_date_gte": "2024-01-02T00:00:00Z"}), 2),
        (json!({"logical_date_lt": "2024-01-02T00:00:00Z"}), 4),
        (json!({"run_after_gt": "2024-01-02T00:00:00Z"}), 2),
        (json!({"start_date_gte": "2000-01-01T00:00:00Z"}), 4),
        (json!({"end_date_lt": "2000-01-01T00:00:00Z"}), 0),
        (json!({"page_limit": 1}), 6),
    ] {
        assert_eq!(a.batch_count(all, body.clone()).await, want, "{body}");
    }
    // The path filters too, when not `~`.
    assert_eq!(a.batch_count("d/dagRuns/~", json!({})).await, 4);
    assert_eq!(
        a.batch_count(&format!("d/dagRuns/{d1}"), json!({})).await,
        2
    );
    // Order and page.
    let (status, body) = a
        .admin(
            "POST",
            "/api/v2/dags/~/dagRuns/~/taskInstances/list",
            Some(json!({"order_by": "-task_id", "page_limit": 2, "page_offset": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b", "b"]);
    assert_eq!(body["total_entries"], 6);
    // Credentials, and bad input a 4xx with a detail.
    let (status, _) = a
        .call(
            "POST",
            "/api/v2/dags/~/dagRuns/~/taskInstances/list",
            None,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (path, body, want, says) in [
        (all, json!({"executor": ["x"]}), 422, "executor"),
        (all, json!({"state": ["sleeping"]}), 422, "sleeping"),
        (all, json!({"order_by": "colour"}), 400, "colour"),
        (all, json!({"page_limit": -1}), 422, "limit"),
        (all, json!({"colour": "red"}), 422, "colour"),
        (all, json!({"duration_gte": "long"}), 422, "duration_gte"),
        ("~/dagRuns/x", json!({}), 400, "dag_id"),
        ("nope/dagRuns/~", json!({}), 404, "nope"),
        ("d/dagRuns/nope", json!({}), 404, "nope"),
    ] {
        let (status, out) = a
            .admin(
                "POST",
                &format!("/api/v2/dags/{path}/taskInstances/list"),
                Some(body.clone()),
            )
            .await;
        let want = StatusCode::from_u16(want).unwrap();
        assert_detail(status, &out, want, says);
        assert_airflow_shape("post", TIS_BATCH, status, &out);
    }
}

const RUNS: &str = "/api/v2/dags/{dag_id}/dagRuns";
const CLEAR_RUNS: &str = "/api/v2/dags/{dag_id}/clearDagRuns";
const TI: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}";

impl Api {
    async fn run_state(&self, dag: &str, run: &str) -> Value {
        let (status, r) = self
            .admin("GET", &format!("/api/v2/dags/{dag}/dagRuns/{run}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        r
    }

    async fn ti(&self, dag: &str, run: &str, task: &str) -> (StatusCode, Value) {
        self.admin(
            "GET",
            &format!("/api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}"),
            None,
        )
        .await
    }
}

#[tokio::test]
async fn bulk_dag_runs_marks_notes_and_deletes_each_run_and_reports_per_entity() {
    let (a, d1, d2) = finished_and_waiting().await;
    let d3 = a.trigger("d", 3).await;
    // Credentials and role first.
    let body =
        json!({"actions": [{"action": "update", "entities": [{"dag_run_id": d1, "note": "x"}]}]});
    let (status, _) = a
        .call("PATCH", "/api/v2/dags/d/dagRuns", None, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, out) = a
        .call(
            "PATCH",
            "/api/v2/dags/d/dagRuns",
            Some(&a.viewer),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert_airflow_shape("patch", RUNS, status, &out);
    assert_eq!(a.run_state("d", &d1).await["note"], Value::Null);
    // Update: a state and a note, through the single PATCH's engine calls.
    let (status, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/d/dagRuns",
            Some(json!({"actions": [
                {"action": "update", "entities": [
                    {"dag_run_id": d1, "note": "looked at"},
                    {"dag_run_id": d2, "state": "failed"},
                ]},
                {"action": "create", "entities": [{"dag_run_id": "new"}]},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("patch", RUNS, status, &out);
    assert_eq!(
        out["update"]["success"],
        json!([format!("d.{d1}"), format!("d.{d2}")])
    );
    assert_eq!(out["update"]["errors"], json!([]));
    assert_eq!(out["create"]["errors"][0]["status_code"], 405, "{out}");
    assert_eq!(out["delete"], Value::Null);
    assert_eq!(a.run_state("d", &d1).await["note"], "looked at");
    assert_eq!(a.run_state("d", &d2).await["state"], "failed");
    // update_mask leaves the other fields alone.
    let (_, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/d/dagRuns",
            Some(
                json!({"actions": [{"action": "update", "update_mask": ["note"],
                "entities": [{"dag_run_id": d1, "note": "masked", "state": "failed"}]}]}),
            ),
        )
        .await;
    assert_eq!(out["update"]["success"], json!([format!("d.{d1}")]));
    let r = a.run_state("d", &d1).await;
    assert_eq!(
        (r["note"].as_str(), r["state"].as_str()),
        (Some("masked"), Some("success"))
    );
    // A missing run fails the whole action (fail, the default) or is left out (skip).
    let (_, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/d/dagRuns",
            Some(json!({"actions": [{"action": "update", "entities": [
                {"dag_run_id": d1, "note": "not applied"}, {"dag_run_id": "ghost", "note": "n"}]}]})),
        )
        .await;
    assert_eq!(out["update"]["success"], json!([]));
    assert_eq!(out["update"]["errors"][0]["status_code"], 404, "{out}");
    assert!(
        out["update"]["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ghost")
    );
    assert_eq!(a.run_state("d", &d1).await["note"], "masked");
    let (_, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/d/dagRuns",
            Some(json!({"actions": [{"action": "update", "action_on_non_existence": "skip",
                "entities": [{"dag_run_id": d1, "note": "skipped ghost"}, {"dag_run_id": "ghost"}]}]})),
        )
        .await;
    assert_eq!(out["update"]["success"], json!([format!("d.{d1}")]));
    assert_eq!(out["update"]["errors"], json!([]));
    // `~` in the path: each entity names its DAG, else its error says so.
    let (status, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/~/dagRuns",
            Some(json!({"actions": [{"action": "update", "entities": [
                {"dag_run_id": d2, "dag_id": "e", "note": "e has no such run"},
                {"dag_run_id": d1, "note": "no dag"}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let errors = out["update"]["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["status_code"] == 400), "{out}");
    assert!(errors.iter().any(|e| e["status_code"] == 404), "{out}");
    // Delete: by id or by entity; a running run is a 409 in the errors, the others go.
    let (status, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/d/dagRuns",
            Some(json!({"actions": [{"action": "delete", "entities": [d2, {"dag_run_id": d3}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out["delete"]["success"],
        json!([format!("d.{d2}")]),
        "{out}"
    );
    assert_eq!(out["delete"]["errors"][0]["status_code"], 409, "{out}");
    let (status, _) = a
        .admin("GET", &format!("/api/v2/dags/d/dagRuns/{d2}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(a.run_state("d", &d3).await["state"], "running");
    // Bad input is a 4xx with a detail, and changes nothing.
    for (path, body, want, says) in [
        (
            "d",
            json!({"actions": [{"action": "update", "entities": [{"dag_run_id": d1, "state": "running"}]}]}),
            422,
            "state",
        ),
        (
            "d",
            json!({"actions": [{"action": "update", "update_mask": ["conf"], "entities": []}]}),
            422,
            "conf",
        ),
        (
            "d",
            json!({"actions": [{"action": "rename", "entities": []}]}),
            422,
            "rename",
        ),
        (
            "d",
            json!({"actions": [{"action": "update", "entities": [{"dag_run_id": d1, "colour": "red"}]}]}),
            422,
            "colour",
        ),
        (
            "d",
            json!({"actions": [{"action": "update", "entities": [{"dag_run_id": d1, "note": "x".repeat(1001)}]}]}),
            422,
            "note",
        ),
        ("d", json!({}), 422, "actions"),
        ("nope", json!({"actions": []}), 404, "nope"),
    ] {
        let (status, out) = a
            .admin(
                "PATCH",
                &format!("/api/v2/dags/{path}/dagRuns"),
                Some(body.clone()),
            )
            .await;
        assert_detail(status, &out, StatusCode::from_u16(want).unwrap(), says);
        assert_airflow_shape("patch", RUNS, status, &out);
    }
    assert_eq!(a.run_state("d", &d1).await["note"], "skipped ghost");
}

#[tokio::test]
async fn clear_dag_runs_lists_dry_then_clears_every_named_run_at_once() {
    let (a, d1, _d2) = finished_and_waiting().await;
    let (_, e1) = {
        let (_, runs) = a.admin("GET", "/api/v2/dags/e/dagRuns", None).await;
        (
            (),
            runs["dag_runs"][0]["dag_run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let uri = "/api/v2/dags/~/clearDagRuns";
    let both = json!([{"dag_run_id": d1, "dag_id": "d"}, {"dag_run_id": e1, "dag_id": "e"}]);
    let (status, _) = a
        .call("POST", uri, None, Some(json!({"dag_runs": both})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, out) = a
        .call(
            "POST",
            uri,
            Some(&a.viewer),
            Some(json!({"dag_runs": both})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert_airflow_shape("post", CLEAR_RUNS, status, &out);
    // Dry run (the default): the four task instances, nothing changed.
    let (status, out) = a.admin("POST", uri, Some(json!({"dag_runs": both}))).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("post", CLEAR_RUNS, status, &out);
    assert_eq!(out["total_entries"], 4, "{out}");
    assert_eq!(a.run_state("d", &d1).await["state"], "success");
    // only_failed: none failed.
    let (_, out) = a
        .admin(
            "POST",
            uri,
            Some(json!({"dag_runs": both, "only_failed": true})),
        )
        .await;
    assert_eq!(out["total_entries"], 0, "{out}");
    // For real: both runs back to running, their instances without a state, the note set.
    let (status, out) = a
        .admin(
            "POST",
            uri,
            Some(json!({"dag_runs": both, "dry_run": false, "note": "again"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("post", CLEAR_RUNS, status, &out);
    assert_eq!(out["total_entries"], 2, "{out}");
    for r in out["dag_runs"].as_array().unwrap() {
        assert_eq!(r["state"], "running", "{r}");
        assert_eq!(r["note"], "again", "{r}");
    }
    let (_, ti) = a.ti("e", &e1, "b").await;
    assert_eq!(ti["state"], Value::Null, "{ti}");
    // With a DAG in the path, entities may leave theirs out.
    let (status, out) = a
        .admin(
            "POST",
            "/api/v2/dags/d/clearDagRuns",
            Some(json!({"dag_runs": [{"dag_run_id": d1}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // Bad input is a 4xx with a detail.
    for (path, body, want, says) in [
        (
            "~",
            json!({"dag_runs": [{"dag_run_id": d1}]}),
            400,
            "dag_id",
        ),
        (
            "d",
            json!({"dag_runs": [{"dag_run_id": "ghost"}]}),
            404,
            "ghost",
        ),
        (
            "nope",
            json!({"dag_runs": [{"dag_run_id": d1}]}),
            404,
            "nope",
        ),
        ("d", json!({"dag_runs": []}), 422, "dag_runs"),
        (
            "d",
            json!({"dag_runs": [{"dag_run_id": d1}], "only_new": true}),
            422,
            "only_new",
        ),
        (
            "d",
            json!({"dag_runs": [{"dag_run_id": d1}], "run_on_latest_version": true}),
            422,
            "run_on_latest_version",
        ),
        (
            "d",
            json!({"dag_runs": [{"dag_run_id": d1}], "partition_key": "p"}),
            422,
            "partition",
        ),
        (
            "d",
            json!({"dag_runs": [{"dag_run_id": d1, "state": "failed"}]}),
            422,
            "state",
        ),
        (
            "d",
            json!({"dag_runs": [{"dag_run_id": d1}], "colour": 1}),
            422,
            "colour",
        ),
    ] {
        let (status, out) = a
            .admin(
                "POST",
                &format!("/api/v2/dags/{path}/clearDagRuns"),
                Some(body.clone()),
            )
            .await;
        assert_detail(status, &out, StatusCode::from_u16(want).unwrap(), says);
        assert_airflow_shape("post", CLEAR_RUNS, status, &out);
    }
    // A running instance among them is a 409.
    let cache = upiflow_engine::store::dags::VersionCache::new();
    let claim = upiflow_engine::lifecycle::claim::claim(&a.db.pool, &cache, "w1", 16)
        .await
        .unwrap();
    assert!(!claim.tries.is_empty());
    let (status, out) = a
        .admin(
            "POST",
            uri,
            Some(json!({"dag_runs": both, "dry_run": false})),
        )
        .await;
    assert_detail(status, &out, StatusCode::CONFLICT, "running");
}

const TI_BULK: &str = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances";
const TI_MAPPED: &str =
    "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}";
const TI_MAPPED_DRY: &str =
    "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run";

#[tokio::test]
async fn deleting_a_task_instance_removes_it_from_a_finished_run_and_recreates_it_in_an_active_one()
{
    let (a, d1, d2) = finished_and_waiting().await;
    let uri = |run: &str, task: &str| format!("/api/v2/dags/d/dagRuns/{run}/taskInstances/{task}");
    let (status, _) = a.call("DELETE", &uri(&d1, "b"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, out) = a
        .call("DELETE", &uri(&d1, "b"), Some(&a.viewer), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert_airflow_shape("delete", TI, status, &out);
    // A finished run: the instance and its tries go, the run keeps its state.
    let (status, out) = a.admin("DELETE", &uri(&d1, "b"), None).await;
    assert_eq!((status, &out), (StatusCode::OK, &Value::Null));
    let (status, out) = a.ti("d", &d1, "b").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{out}");
    let (_, tries) = a
        .admin("GET", &format!("{}/tries", uri(&d1, "a")), None)
        .await;
    assert_eq!(tries["total_entries"], 1, "a's tries stay: {tries}");
    assert_eq!(a.run_state("d", &d1).await["state"], "success");
    let (status, out) = a.admin("DELETE", &uri(&d1, "b"), None).await;
    assert_detail(status, &out, StatusCode::NOT_FOUND, "b");
    assert_airflow_shape("delete", TI, status, &out);
    // Clearing the run (here only `a`) brings the deleted instance back, so the run can
    // finish again rather than wait for it.
    let (status, out) = a
        .admin(
            "POST",
            "/api/v2/dags/d/clearTaskInstances",
            Some(json!({"dry_run": false, "only_failed": false, "dag_run_id": d1, "task_ids": ["a"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, b) = a.ti("d", &d1, "b").await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(a.run_state("d", &d1).await["state"], "running");
    let (status, out) = a.admin("DELETE", &uri(&d1, "b"), None).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, b) = a.ti("d", &d1, "b").await;
    assert_eq!(status, StatusCode::OK, "recreated in the running run: {b}");
    // An active run: the scheduler's part recreates it with no state and no tries.
    let cache = upiflow_engine::store::dags::VersionCache::new();
    let claim = upiflow_engine::lifecycle::claim::claim(&a.db.pool, &cache, "w1", 16)
        .await
        .unwrap();
    assert_eq!(
        claim.tries.len(),
        2,
        "d1's (cleared) and d2's a are running"
    );
    let (status, out) = a.admin("DELETE", &uri(&d2, "a"), None).await;
    assert_detail(status, &out, StatusCode::CONFLICT, "running");
    assert_airflow_shape("delete", TI, status, &out);
    let (status, out) = a.admin("DELETE", &uri(&d2, "b"), None).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, b) = a.ti("d", &d2, "b").await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(
        (b["state"].clone(), b["try_number"].clone()),
        (Value::Null, json!(0))
    );
    // Bad input is a 4xx with a detail.
    for (u, want, says) in [
        (format!("{}?map_index=2", uri(&d2, "b")), 404, "map_index"),
        (format!("{}?map_index=x", uri(&d2, "b")), 422, "map_index"),
        (format!("{}?colour=1", uri(&d2, "b")), 422, "colour"),
        (uri("ghost", "b"), 404, "ghost"),
        (uri(&d2, "zz"), 404, "zz"),
    ] {
        let (status, out) = a.admin("DELETE", &u, None).await;
        assert_detail(status, &out, StatusCode::from_u16(want).unwrap(), says);
        assert_airflow_shape("delete", TI, status, &out);
    }
}

#[tokio::test]
async fn bulk_task_instances_marks_notes_and_deletes_each_and_reports_per_entity() {
    let (a, d1, d2) = finished_and_waiting().await;
    let uri = format!("/api/v2/dags/d/dagRuns/{d1}/taskInstances");
    let body =
        json!({"actions": [{"action": "update", "entities": [{"task_id": "a", "note": "x"}]}]});
    let (status, _) = a.call("PATCH", &uri, None, Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, out) = a.call("PATCH", &uri, Some(&a.viewer), Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert_airflow_shape("patch", TI_BULK, status, &out);
    // Update: a state (b failed makes the run failed, as the single PATCH) and a note.
    let (status, out) = a
        .admin(
            "PATCH",
            &uri,
            Some(json!({"actions": [
                {"action": "update", "entities": [
                    {"task_id": "a", "note": "fine"},
                    {"task_id": "b", "new_state": "failed", "map_index": -1},
                    {"task_id": "b", "map_index": 4, "note": "mapped"},
                ]},
                {"action": "create", "entities": [{"task_id": "c"}]},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("patch", TI_BULK, status, &out);
    assert_eq!(out["update"]["success"], json!(["a[-1]", "b[-1]"]), "{out}");
    assert_eq!(out["update"]["errors"][0]["status_code"], 404, "{out}");
    assert_eq!(out["create"]["errors"][0]["status_code"], 405, "{out}");
    assert_eq!(a.ti("d", &d1, "a").await.1["note"], "fine");
    assert_eq!(a.ti("d", &d1, "b").await.1["state"], "failed");
    assert_eq!(a.run_state("d", &d1).await["state"], "failed");
    // Marking to the state it has is the single PATCH's 409, here in the errors.
    let (_, out) = a
        .admin(
            "PATCH",
            &uri,
            Some(json!({"actions": [{"action": "update", "entities": [{"task_id": "b", "new_state": "failed"}]}]})),
        )
        .await;
    assert_eq!(out["update"]["errors"][0]["status_code"], 409, "{out}");
    // A missing instance fails the action, or is skipped.
    let (_, out) = a
        .admin(
            "PATCH",
            &uri,
            Some(json!({"actions": [{"action": "update", "entities": [
                {"task_id": "a", "note": "not applied"}, {"task_id": "zz", "note": "n"}]}]})),
        )
        .await;
    assert_eq!(out["update"]["success"], json!([]));
    assert!(
        out["update"]["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("zz"),
        "{out}"
    );
    assert_eq!(a.ti("d", &d1, "a").await.1["note"], "fine");
    let (_, out) = a
        .admin(
            "PATCH",
            &uri,
            Some(json!({"actions": [{"action": "update", "action_on_non_existence": "skip",
                "update_mask": ["note"],
                "entities": [{"task_id": "a", "note": "masked", "new_state": "skipped"}, {"task_id": "zz"}]}]})),
        )
        .await;
    assert_eq!(out["update"]["success"], json!(["a[-1]"]), "{out}");
    let a_ti = a.ti("d", &d1, "a").await.1;
    assert_eq!(
        (a_ti["note"].as_str(), a_ti["state"].as_str()),
        (Some("masked"), Some("success"))
    );
    // `~` in the path: each entity names its DAG and run.
    let (status, out) = a
        .admin(
            "PATCH",
            "/api/v2/dags/~/dagRuns/~/taskInstances",
            Some(json!({"actions": [{"action": "update", "entities": [
                {"task_id": "a", "dag_id": "e", "dag_run_id": d1, "note": "across"},
                {"task_id": "a", "note": "nowhere"}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["update"]["success"], json!(["a[-1]"]), "{out}");
    assert_eq!(out["update"]["errors"][0]["status_code"], 400, "{out}");
    assert_eq!(a.ti("e", &d1, "a").await.1["note"], "across");
    // Delete: by task id or entity; a running one is a 409 in the errors.
    let cache = upiflow_engine::store::dags::VersionCache::new();
    upiflow_engine::lifecycle::claim::claim(&a.db.pool, &cache, "w1", 16)
        .await
        .unwrap();
    let (status, out) = a
        .admin(
            "PATCH",
            &format!("/api/v2/dags/d/dagRuns/{d2}/taskInstances"),
            Some(json!({"actions": [{"action": "delete", "entities": ["a", {"task_id": "b", "map_index": -1}]}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["delete"]["success"], json!(["b[-1]"]), "{out}");
    assert_eq!(out["delete"]["errors"][0]["status_code"], 409, "{out}");
    let (status, out) = a
        .admin(
            "PATCH",
            &uri,
            Some(json!({"actions": [{"action": "delete", "entities": ["b"]}]})),
        )
        .await;
    assert_eq!(out["delete"]["success"], json!(["b"]), "{status} {out}");
    assert_eq!(a.ti("d", &d1, "b").await.0, StatusCode::NOT_FOUND);
    // Bad input is a 4xx with a detail.
    for body in [
        json!({"actions": [{"action": "update", "entities": [{"task_id": "a", "new_state": "running"}]}]}),
        json!({"actions": [{"action": "update", "entities": [{"note": "no task"}]}]}),
        json!({"actions": [{"action": "move", "entities": []}]}),
        json!({"actions": [{"action": "update", "entities": [], "colour": 1}]}),
        json!({"colour": 1}),
    ] {
        let (status, out) = a.admin("PATCH", &uri, Some(body.clone())).await;
        if status == StatusCode::OK {
            // Per-entity validation lands in the errors, as Airflow's.
            assert_eq!(
                out["update"]["errors"][0]["status_code"], 422,
                "{body}: {out}"
            );
            continue;
        }
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {out}");
        assert!(
            out["detail"].is_string() || out["detail"].is_array(),
            "{out}"
        );
        assert_airflow_shape("patch", TI_BULK, status, &out);
    }
}

#[tokio::test]
async fn patching_by_map_index_minus_one_is_the_unmapped_patch_and_any_other_a_404() {
    let (a, d1, _) = finished_and_waiting().await;
    let base = format!("/api/v2/dags/d/dagRuns/{d1}/taskInstances/a");
    let (status, out) = a
        .admin(
            "PATCH",
            &format!("{base}/-1/dry_run"),
            Some(json!({"new_state": "failed", "include_downstream": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("patch", TI_MAPPED_DRY, status, &out);
    assert_eq!(out["total_entries"], 2, "a and b would change: {out}");
    assert_eq!(a.ti("d", &d1, "a").await.1["state"], "success");
    let (status, out) = a
        .admin(
            "PATCH",
            &format!("{base}/-1"),
            Some(json!({"new_state": "failed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_airflow_shape("patch", TI_MAPPED, status, &out);
    assert_eq!(out["task_instances"][0]["state"], "failed");
    assert_eq!(a.ti("d", &d1, "a").await.1["state"], "failed");
    for (uri, want, says) in [
        (format!("{base}/3"), 404, "map_index"),
        (format!("{base}/3/dry_run"), 404, "map_index"),
        (format!("{base}/x"), 422, ""),
        (format!("{base}/-1?update_mask=colour"), 400, "colour"),
    ] {
        let (status, out) = a.admin("PATCH", &uri, Some(json!({"note": "n"}))).await;
        assert_detail(status, &out, StatusCode::from_u16(want).unwrap(), says);
    }
    let (status, out) = a
        .call(
            "PATCH",
            &format!("{base}/-1"),
            Some(&a.viewer),
            Some(json!({"note": "n"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert_airflow_shape("patch", TI_MAPPED, status, &out);
    let (status, out) = a
        .call(
            "PATCH",
            &format!("{base}/-1/dry_run"),
            Some(&a.viewer),
            Some(json!({"note": "n"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert_airflow_shape("patch", TI_MAPPED_DRY, status, &out);
    let (status, _) = a
        .call(
            "PATCH",
            &format!("{base}/-1/dry_run"),
            None,
            Some(json!({"note": "n"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_trigger_takes_a_run_id_of_its_own_and_records_who_triggered() {
    let a = api().await;
    auth::create_user(&a.db.pool, "uma", "user-password", Role::User)
        .await
        .unwrap();
    let post = "/api/v2/dags/d/dagRuns";
    let (status, run) = a
        .admin(
            "POST",
            post,
            Some(json!({"logical_date": "2024-01-01T00:00:00Z", "dag_run_id": "nightly.v2:retry+1~x"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_airflow_shape("post", RUNS, status, &run);
    assert_eq!(run["dag_run_id"], "nightly.v2:retry+1~x");
    assert_eq!(run["triggering_user_name"], "ada");
    // The run is addressable by its id, and its task instances carry it.
    let (status, tis) = a
        .admin(
            "GET",
            "/api/v2/dags/d/dagRuns/nightly.v2:retry+1~x/taskInstances",
            None,
        )
        .await;
    assert_eq!(
        (status, tis["total_entries"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{tis}"
    );
    // Another user's trigger is theirs; a run id the DAG has is a 409 and creates nothing.
    let uma = basic("uma", "user-password");
    let (status, run) = a
        .call(
            "POST",
            post,
            Some(&uma),
            Some(json!({"logical_date": "2024-01-02T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["triggering_user_name"], "uma");
    let (status, out) = a
        .admin(
            "POST",
            post,
            Some(json!({"logical_date": "2024-01-03T00:00:00Z", "dag_run_id": "nightly.v2:retry+1~x"})),
        )
        .await;
    assert_detail(status, &out, StatusCode::CONFLICT, "already exists");
    assert_airflow_shape("post", RUNS, status, &out);
    // A scheduled run has no triggering user.
    let dag = {
        let mut conn = a.db.pool.acquire().await.unwrap();
        let row = upiflow_engine::store::dags::get(&mut conn, "d")
            .await
            .unwrap()
            .unwrap();
        let cache = upiflow_engine::store::dags::VersionCache::new();
        cache
            .get(&mut conn, "d", row.latest_hash.as_deref().unwrap())
            .await
            .unwrap()
    };
    let sched = upiflow_engine::ops::trigger(
        &a.db.pool,
        &upiflow_engine::store::dags::VersionCache::new(),
        &dag,
        &upiflow_engine::ops::Trigger {
            logical_date: Some("2024-01-05T00:00:00Z".parse().unwrap()),
            run_type: upiflow_engine::RunType::Scheduled,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let r = a.run_state("d", &sched.run_id).await;
    assert_eq!(r["triggering_user_name"], Value::Null, "{r}");
    // The run list filters on who triggered.
    for (query, want) in [
        ("triggering_user_name_pattern=AD", 1),
        ("triggering_user_name_pattern=a", 2),
        ("triggering_user_name_prefix_pattern=um", 1),
        ("triggering_user_name_prefix_pattern=x", 0),
        ("triggering_user_name_pattern=~", 3),
    ] {
        let (status, out) = a
            .admin("GET", &format!("/api/v2/dags/d/dagRuns?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {out}");
        assert_airflow_shape("get", RUNS, status, &out);
        assert_eq!(out["total_entries"], want, "{query}: {out}");
    }
    // Bad ids are a 422 naming the field, and create nothing.
    for id in ["", "has space", "~", "semi;colon", &"x".repeat(251)] {
        let (status, out) = a
            .admin(
                "POST",
                post,
                Some(json!({"logical_date": "2024-01-09T00:00:00Z", "dag_run_id": id})),
            )
            .await;
        assert_detail(status, &out, StatusCode::UNPROCESSABLE_ENTITY, "dag_run_id");
        assert_airflow_shape("post", RUNS, status, &out);
    }
    let (_, all) = a.admin("GET", "/api/v2/dags/d/dagRuns", None).await;
    assert_eq!(all["total_entries"], 3, "{all}");
}
