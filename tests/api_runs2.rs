//! #14 runs2: bulk and batch DAG-run and task-instance routes, task-instance deletion, the
//! task-instance list's filters and custom run ids, in-process against a real Postgres:
//! answers fit Airflow's document, each filter filters, changes need a role that may, bad
//! input is a 4xx with a `detail`.

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

fn airflow() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/airflow-v2-rest-api.yaml"
        ))
        .expect("vendored Airflow document");
        yaml_serde::from_str(&text).expect("Airflow's document parses")
    })
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local $ref");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Whether `v` fits `schema`: every `required` property present, every property of a
/// compatible JSON type (recursively), `$ref` resolved, `anyOf` satisfied by one branch.
fn fits(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        let errors: Vec<String> = branches
            .iter()
            .filter_map(|b| fits(doc, b, v, at).err())
            .collect();
        return if errors.len() < branches.len() {
            Ok(())
        } else {
            Err(errors.join(" | "))
        };
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {allowed:?}"));
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("null") => v.is_null(),
        Some("boolean") => v.is_boolean(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("string") => match (v.as_str(), schema["format"].as_str()) {
            (None, _) => false,
            (Some(s), Some("date-time")) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            (Some(s), Some("uuid")) => {
                s.len() == 36
                    && s.chars()
                        .enumerate()
                        .all(|(i, c)| [8, 13, 18, 23].contains(&i) == (c == '-'))
            }
            (Some(_), _) => true,
        },
        Some("array") => {
            let Some(items) = v.as_array() else {
                return Err(format!("{at}: {v} is not an array"));
            };
            if schema.get("items").is_some() {
                for (i, item) in items.iter().enumerate() {
                    fits(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
                }
            }
            true
        }
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return Err(format!("{at}: {v} is not an object"));
            };
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                if !obj.contains_key(name) {
                    return Err(format!("{at}: required property `{name}` is missing"));
                }
            }
            if let Some(props) = schema["properties"].as_object() {
                for (name, sub) in props {
                    if let Some(value) = obj.get(name) {
                        fits(doc, sub, value, &format!("{at}.{name}"))?;
                    }
                }
            }
            true
        }
        Some(other) => panic!("schema type {other} not handled"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{at}: {v} is not of type {}", schema["type"]))
    }
}

/// Asserts that `body`, answered with `status` by `method path` (a path template of
/// Airflow's), fits the schema Airflow documents for that answer.
fn assert_airflow_shape(method: &str, path: &str, status: StatusCode, body: &Value) {
    let doc = airflow();
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "Airflow has no {method} {path}");
    let mut schema = &op["responses"][status.as_str()]["content"]["application/json"]["schema"];
    // Errors Airflow raises without documenting them (a bad log token's 400, say) have
    // FastAPI's HTTPException shape.
    if schema.is_null() && status.is_client_error() && status != StatusCode::UNPROCESSABLE_ENTITY {
        schema = &doc["components"]["schemas"]["HTTPExceptionResponse"];
    }
    assert!(
        schema.is_object(),
        "Airflow documents no {status} JSON answer for {method} {path}"
    );
    if let Err(e) = fits(doc, schema, body, "$") {
        panic!("{method} {path} {status}: not Airflow's shape: {e}\n{body:#}");
    }
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
