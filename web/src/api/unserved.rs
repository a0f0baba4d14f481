//! Airflow operations upiflow does not serve, each answering a 501 whose `detail` says which
//! concept upiflow lacks, instead of a bare 404 for a path Airflow documents. They are not in
//! upiflow's OpenAPI document (which lists exactly what is served); `tests/api_coverage.rs`
//! checks that every operation of Airflow's document is either served or listed here, and
//! builds README.md's coverage table from the two.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, any, on};

use crate::AppState;
use crate::auth::Viewer;

const ASSETS: &str = "upiflow has no assets (data-aware scheduling): DAGs run on schedules, \
    triggers and backfills";
const STATE_STORE: &str = "upiflow has no task or asset state store";
const HITL: &str = "upiflow has no human-in-the-loop tasks";
const XCOM: &str = "upiflow tasks exchange no XComs: a task's output is its log and the tables \
    it writes";
const TASK_GROUPS: &str = "upiflow has no task groups: a DAG's tasks are one flat graph";

/// (method, Airflow's path, what upiflow lacks).
pub const UNSERVED: &[(&str, &str, &str)] = &[
    ("GET", "/api/v2/assets/aliases/{asset_alias_id}", ASSETS),
    ("POST", "/api/v2/assets/events", ASSETS),
    ("GET", "/api/v2/assets/{asset_id}", ASSETS),
    ("POST", "/api/v2/assets/{asset_id}/materialize", ASSETS),
    ("GET", "/api/v2/assets/{asset_id}/queuedEvents", ASSETS),
    ("DELETE", "/api/v2/assets/{asset_id}/queuedEvents", ASSETS),
    ("GET", "/api/v2/dags/{dag_id}/assets/queuedEvents", ASSETS),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/assets/queuedEvents",
        ASSETS,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents",
        ASSETS,
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents",
        ASSETS,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents",
        ASSETS,
    ),
    ("GET", "/api/v2/assets/{asset_id}/state-store", STATE_STORE),
    (
        "DELETE",
        "/api/v2/assets/{asset_id}/state-store",
        STATE_STORE,
    ),
    (
        "GET",
        "/api/v2/assets/{asset_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "PUT",
        "/api/v2/assets/{asset_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "DELETE",
        "/api/v2/assets/{asset_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store",
        STATE_STORE,
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store",
        STATE_STORE,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "PUT",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/state-store/{key}",
        STATE_STORE,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/hitlDetails",
        HITL,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
        HITL,
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails",
        HITL,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/hitlDetails/tries/{try_number}",
        HITL,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
        XCOM,
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries",
        XCOM,
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        XCOM,
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        XCOM,
    ),
    (
        "DELETE",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
        XCOM,
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskGroupInstances/{group_id}",
        TASK_GROUPS,
    ),
    (
        "PATCH",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskGroupInstances/{group_id}/dry_run",
        TASK_GROUPS,
    ),
    (
        "POST",
        "/api/v2/dags/{dag_id}/clearPartitions",
        "upiflow runs have no partitions: clear runs with clearDagRuns or clearTaskInstances",
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/externalLogUrl/{try_number}",
        "upiflow keeps task logs itself, in no external log store: read them at \
         .../taskInstances/{task_id}/logs/{try_number}",
    ),
    (
        "GET",
        "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/links",
        "upiflow's task kinds define no operator extra links",
    ),
    (
        "GET",
        "/api/v2/connections/enqueue-test",
        "upiflow tests a connection in the request (POST /api/v2/connections/test); it has no \
         queue of connection tests for workers",
    ),
    (
        "POST",
        "/api/v2/connections/enqueue-test",
        "upiflow tests a connection in the request (POST /api/v2/connections/test); it has no \
         queue of connection tests for workers",
    ),
    (
        "POST",
        "/api/v2/connections/defaults",
        "upiflow ships no default connections (Airflow's come from its provider packages)",
    ),
    (
        "GET",
        "/api/v2/jobs",
        "upiflow keeps no job table (Airflow's SchedulerJob/TriggererJob rows with ids, states \
         and end dates): /api/v2/monitor/health has the scheduler's latest heartbeat",
    ),
    (
        "PUT",
        "/api/v2/parseDagFile/{file_token}",
        "upiflow has no DAG parsing queue: the scheduler reads every DAG file on each of its \
         passes",
    ),
    (
        "GET",
        "/api/v2/auth/login",
        "upiflow has no auth manager redirect: sign in at /login in a browser, or with \
         POST /auth/token",
    ),
    (
        "GET",
        "/api/v2/auth/logout",
        "upiflow has no auth manager redirect: sign out at /logout in a browser, or with \
         POST /auth/logout",
    ),
];

fn method_filter(method: &str) -> MethodFilter {
    match method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "PATCH" => MethodFilter::PATCH,
        "DELETE" => MethodFilter::DELETE,
        other => unreachable!("UNSERVED lists no {other} operation"),
    }
}

fn not_implemented(why: &str) -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(serde_json::json!({ "detail": why })),
    )
        .into_response()
}

/// A 501 for each unserved operation (axum merges the methods of one path). Signing in is
/// still needed, as for every API route. Any other path under `/api/v2` is FastAPI's
/// `404 {"detail": "Not Found"}`, as Airflow answers it.
pub fn router() -> Router<AppState> {
    let not_found = any(|| async {
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "detail": "Not Found" })),
        )
    });
    UNSERVED.iter().fold(
        Router::new().route("/api/v2/{*rest}", not_found),
        |router, &(method, path, why)| {
            router.route(
                path,
                on(method_filter(method), move |_: Viewer| async move {
                    not_implemented(why)
                }),
            )
        },
    )
}
