//! README.md's API coverage table cannot go stale: every one of Airflow's v2 operations
//! (tests/fixtures/airflow-v2-rest-api.yaml) has exactly one row, and a row says `yes` exactly
//! when upiflow's live `/api/v2/openapi.json` serves that method and path.
//! `scripts/api-coverage.py` prints the rows.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::Value;
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

type Route = (String, String);

/// Airflow's operations: (METHOD, path) -> operationId.
fn airflow_operations() -> BTreeMap<Route, String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/airflow-v2-rest-api.yaml"
    ))
    .expect("vendored Airflow document");
    let doc: Value = yaml_serde::from_str(&text).expect("Airflow's document parses");
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let id = op["operationId"].as_str().unwrap().to_string();
                ops.insert((m.to_uppercase(), path.clone()), id);
            }
        }
    }
    ops
}

/// The routes upiflow's own document lists, read from the running app.
async fn served_routes() -> BTreeSet<Route> {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let app = upiflow_web::app(web_state(&db.pool).await);
    let resp = app
        .oneshot(
            Request::get("/api/v2/openapi.json")
                .header("authorization", basic("vic", "viewer-password"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    // Kept for `scripts/api-coverage.py`, which prints the README rows from it:
    // `scripts/api-coverage.py target/tmp/openapi.json`.
    let saved = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&saved, &bytes).unwrap();
    eprintln!("upiflow's document: {}", saved.display());
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if METHODS.contains(&m.as_str()) {
                routes.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// One parsed row of the README table.
#[derive(Debug)]
struct Row {
    route: Route,
    operation: String,
    served: bool,
    why_not: String,
}

/// The rows between README.md's `api-coverage` markers.
fn readme_rows() -> Vec<Row> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- api-coverage:")
        .expect("README.md has the api-coverage table (scripts/api-coverage.py prints it)");
    let end = readme[start..]
        .find("<!-- /api-coverage -->")
        .expect("the api-coverage table is closed")
        + start;
    let mut rows = Vec::new();
    for line in readme[start..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| tag | METHOD | `path` | operation | yes/no | why |` splits into 8 cells.
        if cells.len() != 8 || !METHODS.contains(&cells[2].to_lowercase().as_str()) {
            continue;
        }
        let served = match cells[5] {
            "yes" => true,
            "no" => false,
            other => panic!("README row `{line}`: served must be yes or no, not `{other}`"),
        };
        rows.push(Row {
            route: (cells[2].to_string(), cells[3].trim_matches('`').to_string()),
            operation: cells[4].to_string(),
            served,
            why_not: cells[6].to_string(),
        });
    }
    rows
}

#[tokio::test]
async fn the_readme_coverage_table_matches_airflows_operations_and_our_live_document() {
    let airflow = airflow_operations();
    let served = served_routes().await;
    let rows = readme_rows();

    // Exactly one row per Airflow operation, with Airflow's operation id.
    let mut seen = BTreeSet::new();
    for row in &rows {
        assert!(
            seen.insert(row.route.clone()),
            "{:?} has two rows",
            row.route
        );
        let id = airflow
            .get(&row.route)
            .unwrap_or_else(|| panic!("README row {:?} is not an Airflow operation", row.route));
        assert_eq!(&row.operation, id, "{:?}", row.route);
    }
    let missing: Vec<_> = airflow.keys().filter(|r| !seen.contains(*r)).collect();
    assert!(missing.is_empty(), "README lacks rows for {missing:?}");
    assert_eq!(rows.len(), airflow.len());

    // `yes` exactly when served; a `no` says why.
    let mut wrong = Vec::new();
    for row in &rows {
        let live = served.contains(&row.route);
        if live != row.served {
            wrong.push(format!(
                "{} {}: README says served={}, our document says {}",
                row.route.0, row.route.1, row.served, live
            ));
        }
        if !row.served {
            assert!(
                !row.why_not.is_empty(),
                "{:?} is not served: say why",
                row.route
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "README's API coverage table is stale (regenerate it with `scripts/api-coverage.py target/tmp/openapi.json`):\n{}",
        wrong.join("\n")
    );

    // The summary line counts what the rows say.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let n = rows.iter().filter(|r| r.served).count();
    let summary = format!("{n} of Airflow's {} operations are served.", airflow.len());
    assert!(readme.contains(&summary), "README lacks `{summary}`");

    // Everything we serve under /api/v2 is one of Airflow's operations, but our own document.
    for route in &served {
        if route.1.starts_with("/api/v2/") && route.1 != "/api/v2/openapi.json" {
            assert!(
                airflow.contains_key(route),
                "{} {} is served but is not an Airflow operation",
                route.0,
                route.1
            );
        }
    }
}
