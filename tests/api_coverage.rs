//! Every one of Airflow's v2 operations (tests/fixtures/airflow-v2-rest-api.yaml) is either
//! served by upiflow (listed in its live `/api/v2/openapi.json`) or answers a 501 whose
//! `detail` names what upiflow lacks, never a bare 404; and README.md's coverage table, built
//! here from those answers, cannot go stale: when it differs, this test writes the right table
//! to `target/tmp/api-coverage.md` to paste between the README's `api-coverage` markers.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use common::*;
use serde_json::Value;
use upiflow_web::auth::{self, Role};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

type Route = (String, String);

/// One of Airflow's operations.
struct Operation {
    tag: String,
    id: String,
}

/// Airflow's operations by (METHOD, path).
fn airflow_operations() -> BTreeMap<Route, Operation> {
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
                ops.insert(
                    (m.to_uppercase(), path.clone()),
                    Operation {
                        tag: op["tags"][0].as_str().unwrap_or("-").to_string(),
                        id: op["operationId"].as_str().unwrap().to_string(),
                    },
                );
            }
        }
    }
    ops
}

/// `call_app` with an empty JSON object as the body of a method that takes one.
async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let body = (method != "GET" && method != "DELETE").then(|| serde_json::json!({}));
    call_app(app, method, uri, auth, body).await
}

/// A path of Airflow's with each `{parameter}` filled in.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').unwrap() + i;
        out.push_str(match &rest[i + 1..j] {
            "map_index" | "try_number" | "task_try_number" | "version_number" => "1",
            _ => "x",
        });
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

/// The README table's text between its markers, as `rows` make it.
fn table(rows: &[(String, String, String, String, Option<String>)]) -> String {
    let served = rows.iter().filter(|r| r.4.is_none()).count();
    let mut t = String::from("<!-- api-coverage: built and checked by tests/api_coverage.rs -->\n");
    t.push_str(&format!(
        "{served} of Airflow's {} operations are served; each of the others answers a 501 \
         whose `detail` is its \"why not\".\n\n",
        rows.len()
    ));
    t.push_str(
        "| Tag | Method | Path | Operation | Served | Why not |\n|---|---|---|---|---|---|\n",
    );
    for (tag, m, path, id, why) in rows {
        let (yes, why) = match why {
            None => ("yes", ""),
            Some(w) => ("no", w.as_str()),
        };
        t.push_str(&format!(
            "| {tag} | {m} | `{path}` | {id} | {yes} | {why} |\n"
        ));
    }
    t.push_str("<!-- /api-coverage -->");
    t
}

#[tokio::test]
async fn every_airflow_operation_is_served_or_a_501_naming_what_is_missing_and_the_readme_says_which()
 {
    let db = fresh_db().await;
    auth::create_user(&db.pool, "vic", "viewer-password", Role::Viewer)
        .await
        .unwrap();
    let app = upiflow_web::app(web_state(&db.pool).await);
    let viewer = basic("vic", "viewer-password");
    let (status, doc) = call(&app, "GET", "/api/v2/openapi.json", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    let mut served = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if METHODS.contains(&m.as_str()) {
                served.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    let airflow = airflow_operations();

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
    // Every served route wants a user, but version, health and signing in (Airflow's too).
    for (m, path) in &served {
        let public = ["/api/v2/version", "/api/v2/monitor/health"].contains(&path.as_str())
            || path.starts_with("/auth/");
        if !public {
            let uri = concrete(path);
            let (status, answer) = call(&app, m, &uri, None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{m} {uri} without credentials"
            );
            assert!(answer["detail"].is_string(), "{m} {uri}: {answer}");
        }
    }
    // What is not served answers 501 with a detail (and, as every route, wants a user).
    let mut rows = Vec::new();
    let mut bare = Vec::new();
    for ((m, path), op) in &airflow {
        let why = if served.contains(&(m.clone(), path.clone())) {
            None
        } else {
            let uri = concrete(path);
            let (status, answer) = call(&app, m, &uri, Some(&viewer)).await;
            let detail = answer["detail"].as_str().unwrap_or_default().to_string();
            if status != StatusCode::NOT_IMPLEMENTED || detail.is_empty() {
                bare.push(format!("{m} {uri}: {status} {answer}"));
            } else {
                let (status, _) = call(&app, m, &uri, None).await;
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{m} {uri} without credentials"
                );
            }
            Some(detail)
        };
        rows.push((op.tag.clone(), m.clone(), path.clone(), op.id.clone(), why));
    }
    assert!(
        bare.is_empty(),
        "Airflow operations neither served nor a 501 with a detail:\n{}",
        bare.join("\n")
    );
    // A path Airflow does not document is FastAPI's 404 with a detail.
    let (status, answer) = call(&app, "GET", "/api/v2/no/such/thing", Some(&viewer)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["detail"], "Not Found");
    assert_eq!(
        upiflow_web::api::unserved::UNSERVED.len(),
        rows.iter().filter(|r| r.4.is_some()).count(),
        "UNSERVED lists exactly the operations not served"
    );

    rows.sort_by(|a, b| {
        let method = |m: &str| METHODS.iter().position(|x| x.eq_ignore_ascii_case(m));
        (&a.0, &a.2, method(&a.1)).cmp(&(&b.0, &b.2, method(&b.1)))
    });
    let want = table(&rows);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- api-coverage:")
        .expect("README.md has the api-coverage table");
    let end = readme[start..]
        .find("<!-- /api-coverage -->")
        .expect("the api-coverage table is closed")
        + start
        + "<!-- /api-coverage -->".len();
    if readme[start..end] != want {
        let saved = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("api-coverage.md");
        std::fs::write(&saved, &want).unwrap();
        let have: BTreeSet<&str> = readme[start..end].lines().collect();
        let differ: Vec<&str> = want.lines().filter(|l| !have.contains(l)).collect();
        panic!(
            "README.md's API coverage table is stale; the right one is in {} (paste it between \
             the markers). Rows that differ:\n{}",
            saved.display(),
            differ.join("\n")
        );
    }
}
