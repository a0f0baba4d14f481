//! Pools administration against a real Postgres: the `upiflow pools` commands (the real
//! binary, exit codes and messages), Airflow 3's `/api/v2/pools` routes, the Pools page and
//! its admin form, and usage numbers taken from task instances a real worker claims.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_engine::ops::{self, Trigger};
use upiflow_engine::store::dags::VersionCache;
use upiflow_web::auth::{self, Role};
use upiflow_web::ui::session;

fn upiflow(db_url: &str, dags: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("UPIFLOW_DAGS_FOLDER", dags)
        .env("UPIFLOW_HOME", dags.join(".upiflow"))
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", db_url)
        .output()
        .expect("run upiflow")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A DAG whose task `t` takes 2 slots of pool `api`, and `u` runs in `default_pool`.
const USES_API: &str = "dag_id = \"d\"\n[[tasks]]\nid = \"t\"\nkind = \"noop\"\npool = \"api\"\npool_slots = 2\n\
                        [[tasks]]\nid = \"u\"\nkind = \"noop\"\n";

async fn sync(db: &TestDb, dir: &Path, file: &str) -> upiflow_engine::Dag {
    let dag = load(dir, file);
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &dag)
        .await
        .unwrap();
    dag
}

/// The row of `pool` in `upiflow pools list`, split on whitespace.
fn list_row(out: &Output, pool: &str) -> Option<Vec<String>> {
    text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(pool))
}

#[tokio::test]
async fn the_pools_commands_set_list_resize_and_delete_with_clear_refusals() {
    let db = fresh_db().await;
    let dir = dags_dir(&[("d.toml", USES_API)]);
    let url = db.url.clone();
    let d = dir.clone();
    let run = move |args: &[&str]| upiflow(&url, &d, args);

    let created = run(&["pools", "set", "api", "3", "--description", "Partner API"]);
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    assert!(text(&created.stdout).contains("pool api created: 3 slots"));
    let list = run(&["pools", "list"]);
    assert_eq!(list.status.code(), Some(0));
    let header = text(&list.stdout);
    assert!(
        header.contains("POOL") && header.contains("WAITING") && header.contains("OPEN"),
        "{header}"
    );
    assert_eq!(
        list_row(&list, "api").unwrap(),
        ["api", "3", "0", "0", "3", "Partner", "API"]
    );
    assert_eq!(
        list_row(&list, "default_pool").unwrap()[..5],
        ["default_pool", "128", "0", "0", "128"]
    );

    // Resizing keeps the description unless one is given.
    let resized = run(&["pools", "set", "api", "5"]);
    assert_eq!(resized.status.code(), Some(0), "{}", text(&resized.stderr));
    assert!(text(&resized.stdout).contains("pool api set: 5 slots"));
    assert_eq!(
        list_row(&run(&["pools", "list"]), "api").unwrap(),
        ["api", "5", "0", "0", "5", "Partner", "API"]
    );

    // Bad input: exit 1 with a message, nothing changed.
    for (args, message) in [
        (
            &["pools", "set", "api", "-1"][..],
            "pool slots must be a whole number of at least 0 (not -1)",
        ),
        (
            &["pools", "set", "bad name", "1"],
            "pool name `bad name` must be 1-256 characters",
        ),
        (&["pools", "delete", "nope"], "no pool `nope`"),
        (
            &["pools", "delete", "default_pool"],
            "`default_pool` cannot be deleted",
        ),
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Not a number: clap's usage error, exit 2.
    assert_eq!(run(&["pools", "set", "api", "many"]).status.code(), Some(2));
    assert_eq!(run(&["pools", "set", "api", "2.5"]).status.code(), Some(2));
    assert_eq!(list_row(&run(&["pools", "list"]), "api").unwrap()[1], "5");

    // A current DAG runs `t` in `api` with 2 slots: shrinking below that warns, deleting is
    // refused naming the task.
    sync(&db, &dir, "d.toml").await;
    let shrunk = run(&["pools", "set", "api", "1"]);
    assert_eq!(shrunk.status.code(), Some(0), "{}", text(&shrunk.stderr));
    assert!(
        text(&shrunk.stderr).contains(
            "warning: task `d.t` takes 2 slot(s) of pool `api`, which now has 1: its tries wait until the pool grows"
        ),
        "{}",
        text(&shrunk.stderr)
    );
    assert!(
        text(&shrunk.stderr).contains("`upiflow dags validate`"),
        "{}",
        text(&shrunk.stderr)
    );
    // As the warning says, the DAG's checks report the task meanwhile.
    let validate = run(&["dags", "validate"]);
    assert_eq!(validate.status.code(), Some(1));
    assert!(
        text(&validate.stderr).contains("takes 2 slots of pool `api`, which has only 1"),
        "{}",
        text(&validate.stderr)
    );
    let grown = run(&["pools", "set", "api", "2"]);
    assert!(text(&grown.stderr).is_empty(), "{}", text(&grown.stderr));
    let in_use = run(&["pools", "delete", "api"]);
    assert_eq!(in_use.status.code(), Some(1));
    assert!(
        text(&in_use.stderr)
            .contains("pool `api` is in use; tasks of current DAG versions run in it: d.t"),
        "{}",
        text(&in_use.stderr)
    );
    assert!(list_row(&run(&["pools", "list"]), "api").is_some());

    // An unused pool goes.
    assert_eq!(run(&["pools", "set", "spare", "0"]).status.code(), Some(0));
    let gone = run(&["pools", "delete", "spare"]);
    assert_eq!(gone.status.code(), Some(0), "{}", text(&gone.stderr));
    assert!(text(&gone.stdout).contains("pool spare deleted"));
    assert!(list_row(&run(&["pools", "list"]), "spare").is_none());
    // `--description ""` removes a description.
    run(&["pools", "set", "api", "2", "--description", ""]);
    assert_eq!(
        list_row(&run(&["pools", "list"]), "api").unwrap(),
        ["api", "2", "0", "0", "2"]
    );
}

struct App {
    app: axum::Router,
    db: TestDb,
    admin_cookie: String,
    viewer_cookie: String,
}

const ADMIN: (&str, &str) = ("ada", "admin-password");
const VIEWER: (&str, &str) = ("vic", "viewer-password");

async fn app() -> App {
    let db = fresh_db().await;
    auth::create_user(&db.pool, ADMIN.0, ADMIN.1, Role::Admin)
        .await
        .unwrap();
    auth::create_user(&db.pool, VIEWER.0, VIEWER.1, Role::Viewer)
        .await
        .unwrap();
    let state = upiflow_web::AppState::new(db.pool.clone()).await.unwrap();
    let cookie = |user: &str, role| {
        let c = session::start(
            &state.token_key,
            user,
            upiflow_web::auth::Grant { role, version: 0 },
            false,
        )
        .unwrap();
        format!("{}={}", c.name(), c.value())
    };
    let admin_cookie = cookie(ADMIN.0, Role::Admin);
    let viewer_cookie = cookie(VIEWER.0, Role::Viewer);
    App {
        app: upiflow_web::app(state),
        db,
        admin_cookie,
        viewer_cookie,
    }
}

fn admin() -> String {
    basic(ADMIN.0, ADMIN.1)
}
fn viewer() -> String {
    basic(VIEWER.0, VIEWER.1)
}

impl App {
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
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn page(&self, req: Request<Body>) -> (StatusCode, Option<String>, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, location, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn get_page(&self, uri: &str, cookie: &str) -> (StatusCode, String) {
        let (status, _, body) = self
            .page(
                Request::get(uri)
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        (status, body)
    }

    async fn post_form(
        &self,
        uri: &str,
        cookie: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, String) {
        self.page(
            Request::post(uri)
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                .unwrap(),
        )
        .await
    }

    async fn csrf(&self, cookie: &str) -> String {
        let (status, body) = self.get_page("/pools", cookie).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        let end = body[at..].find('"').unwrap();
        body[at..at + end].to_string()
    }
}

/// The `<tr data-pool=NAME>` row of the Pools page: its `data-col` cells.
fn page_row(body: &str, pool: &str) -> Option<Vec<(String, String)>> {
    let start = body.find(&format!("<tr data-pool=\"{pool}\">"))?;
    let row = &body[start..start + body[start..].find("</tr>")?];
    let mut cells = Vec::new();
    let mut rest = row;
    while let Some(at) = rest.find("data-col=\"") {
        rest = &rest[at + 10..];
        let name = rest[..rest.find('"').unwrap()].to_string();
        let value_at = rest.find('>').unwrap() + 1;
        let value = rest[value_at..value_at + rest[value_at..].find('<').unwrap()].to_string();
        cells.push((name, value));
    }
    Some(cells)
}

fn cells(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn the_pools_api_has_airflows_shapes_status_codes_and_rules() {
    let a = app().await;
    // Reading needs a user, changing needs an admin.
    for (m, uri) in [
        ("GET", "/api/v2/pools"),
        ("POST", "/api/v2/pools"),
        ("GET", "/api/v2/pools/default_pool"),
        ("PATCH", "/api/v2/pools/default_pool"),
        ("DELETE", "/api/v2/pools/default_pool"),
    ] {
        let (status, body) = a.call(m, uri, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {uri}");
        assert!(body["detail"].is_string(), "{m} {uri}: {body}");
    }
    let body = json!({"name": "api", "slots": 3});
    let (status, v) = a
        .call("POST", "/api/v2/pools", Some(&viewer()), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, _) = a
        .call(
            "PATCH",
            "/api/v2/pools/default_pool?update_mask=slots",
            Some(&viewer()),
            Some(json!({"slots": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = a
        .call(
            "DELETE",
            "/api/v2/pools/default_pool",
            Some(&viewer()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Create: 201 with every field of Airflow's PoolResponse.
    let (status, v) = a
        .call(
            "POST",
            "/api/v2/pools",
            Some(&admin()),
            Some(json!({"name": "api", "slots": 3, "description": "Partner API", "include_deferred": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        v,
        json!({"name": "api", "slots": 3, "description": "Partner API", "include_deferred": false,
            "occupied_slots": 0, "running_slots": 0, "queued_slots": 0, "scheduled_slots": 0,
            "open_slots": 3, "deferred_slots": 0, "team_name": null})
    );
    // The same name again: 409, as in Airflow.
    let (status, v) = a
        .call("POST", "/api/v2/pools", Some(&admin()), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["detail"], "The Pool with name: `api` already exists");
    // Bad bodies: 422 with FastAPI's list of problems.
    for bad in [
        json!({"name": "neg", "slots": -1}),
        json!({"name": "has space", "slots": 1}),
        json!({"name": "x", "slots": "three"}),
        json!({"name": "x", "slots": 1.5}),
        json!({"slots": 1}),
        json!({"name": "x", "slots": 1, "surprise": true}),
        json!({"name": "x", "slots": 1, "team_name": "blue"}),
    ] {
        let (status, v) = a
            .call("POST", "/api/v2/pools", Some(&admin()), Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(v["detail"][0]["msg"].is_string(), "{bad}: {v}");
    }
    let (_, v) = a
        .call(
            "POST",
            "/api/v2/pools",
            Some(&admin()),
            Some(json!({"name": "neg", "slots": -1})),
        )
        .await;
    assert!(
        v["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("at least 0"),
        "{v}"
    );

    // Get one; unknown is a 404 in Airflow's words.
    let (status, v) = a
        .call("GET", "/api/v2/pools/api", Some(&viewer()), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["slots"], 3);
    let (status, v) = a
        .call("GET", "/api/v2/pools/nope", Some(&viewer()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"], "The Pool with name: `nope` was not found");

    // List: by name, paged, filtered, sorted.
    for name in ["batch", "zeta"] {
        let (status, _) = a
            .call(
                "POST",
                "/api/v2/pools",
                Some(&admin()),
                Some(json!({"pool": name, "slots": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let names = |v: &Value| -> Vec<String> {
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, v) = a.call("GET", "/api/v2/pools", Some(&viewer()), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["total_entries"], 4);
    assert_eq!(names(&v), ["api", "batch", "default_pool", "zeta"]);
    assert_eq!(v["pools"][2]["slots"], 128);
    let (_, v) = a
        .call(
            "GET",
            "/api/v2/pools?order_by=-name&limit=2&offset=1",
            Some(&viewer()),
            None,
        )
        .await;
    assert_eq!(
        (names(&v), v["total_entries"].clone()),
        (vec!["default_pool".to_string(), "batch".into()], json!(4))
    );
    let (_, v) = a
        .call(
            "GET",
            "/api/v2/pools?pool_name_pattern=A%25I|zet",
            Some(&viewer()),
            None,
        )
        .await;
    assert_eq!(names(&v), ["api", "zeta"]);
    assert_eq!(v["total_entries"], 2);
    let (_, v) = a
        .call(
            "GET",
            "/api/v2/pools?pool_name_prefix_pattern=ba|def",
            Some(&viewer()),
            None,
        )
        .await;
    assert_eq!(names(&v), ["batch", "default_pool"]);
    for (uri, status) in [
        ("/api/v2/pools?order_by=slots", StatusCode::BAD_REQUEST),
        ("/api/v2/pools?limit=-1", StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/v2/pools?colour=red", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (got, v) = a.call("GET", uri, Some(&viewer()), None).await;
        assert_eq!(got, status, "{uri}: {v}");
    }

    // Patch: the fields given, or those update_mask names.
    let (status, v) = a
        .call(
            "PATCH",
            "/api/v2/pools/api",
            Some(&admin()),
            Some(json!({"slots": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["slots"].clone(), v["description"].clone()),
        (json!(7), json!("Partner API"))
    );
    assert_eq!(v["open_slots"], 7);
    let (_, v) = a
        .call(
            "PATCH",
            "/api/v2/pools/api?update_mask=description",
            Some(&admin()),
            Some(json!({"slots": 1, "description": "only this"})),
        )
        .await;
    assert_eq!(
        (v["slots"].clone(), v["description"].clone()),
        (json!(7), json!("only this"))
    );
    let (_, v) = a
        .call(
            "PATCH",
            "/api/v2/pools/api",
            Some(&admin()),
            Some(json!({"description": null, "include_deferred": true})),
        )
        .await;
    assert_eq!(
        (v["description"].clone(), v["include_deferred"].clone()),
        (json!(null), json!(true))
    );
    for (uri, body, status, detail) in [
        (
            "/api/v2/pools/api",
            json!({"name": "other"}),
            StatusCode::BAD_REQUEST,
            "Invalid body, pool name from request body doesn't match uri parameter",
        ),
        (
            "/api/v2/pools/nope",
            json!({"slots": 1}),
            StatusCode::NOT_FOUND,
            "The Pool with name: `nope` was not found",
        ),
        (
            "/api/v2/pools/default_pool",
            json!({"description": "mine"}),
            StatusCode::BAD_REQUEST,
            "Only slots and included_deferred can be modified on Default Pool",
        ),
        (
            "/api/v2/pools/api?update_mask=colour",
            json!({"slots": 1}),
            StatusCode::BAD_REQUEST,
            "update_mask: `colour` is not a field of a pool",
        ),
    ] {
        let (got, v) = a.call("PATCH", uri, Some(&admin()), Some(body)).await;
        assert_eq!(got, status, "{uri}: {v}");
        assert!(
            v["detail"].as_str().unwrap().starts_with(detail),
            "{uri}: {v}"
        );
    }
    for (uri, body) in [
        ("/api/v2/pools/api", json!({"slots": -2})),
        ("/api/v2/pools/api", json!({"slots": null})),
        ("/api/v2/pools/api", json!({"slots": 1, "colour": "red"})),
        ("/api/v2/pools/api?update_mask=slots", json!({})),
    ] {
        let (got, v) = a
            .call("PATCH", uri, Some(&admin()), Some(body.clone()))
            .await;
        assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{uri} {body}: {v}");
    }
    let (_, v) = a
        .call("GET", "/api/v2/pools/api", Some(&viewer()), None)
        .await;
    assert_eq!(v["slots"], 7, "refused patches changed nothing");
    // default_pool: its size through update_mask.
    let (status, v) = a
        .call(
            "PATCH",
            "/api/v2/pools/default_pool?update_mask=slots",
            Some(&admin()),
            Some(json!({"slots": 64, "description": "ignored by the mask"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["slots"].clone(), v["description"].clone()),
        (json!(64), json!("Default pool"))
    );

    // Delete: 204, then 404; default_pool is a 400; a pool a DAG uses a 409.
    let (status, _) = a
        .call("DELETE", "/api/v2/pools/zeta", Some(&admin()), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, v) = a
        .call("DELETE", "/api/v2/pools/zeta", Some(&admin()), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["detail"], "The Pool with name: `zeta` was not found");
    let (status, v) = a
        .call("DELETE", "/api/v2/pools/default_pool", Some(&admin()), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["detail"], "Default Pool can't be deleted");
    let dir = dags_dir(&[("d.toml", USES_API)]);
    sync(&a.db, &dir, "d.toml").await;
    let (status, v) = a
        .call("DELETE", "/api/v2/pools/api", Some(&admin()), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("d.t"), "{v}");

    // The OpenAPI document lists the routes and Airflow's schema names.
    let (_, doc) = a
        .call("GET", "/api/v2/openapi.json", Some(&viewer()), None)
        .await;
    for schema in [
        "PoolResponse",
        "PoolCollectionResponse",
        "PoolBody",
        "PoolPatchBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    for m in ["get", "patch", "delete"] {
        assert!(
            doc["paths"]["/api/v2/pools/{pool_name}"][m].is_object(),
            "{m}"
        );
    }
}

/// Two tasks that hold 2 slots each of `api` until `release` exists, one that fails and
/// waits an hour for its retry (1 slot of `api`), one in `default_pool` after `hold1` and
/// one in `api` after `hold2`.
fn usage_dag(release: &Path) -> String {
    let hold = format!(
        "kind = \"command\"\npool = \"api\"\npool_slots = 2\n\
         command = [\"sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.05; done\"]\n",
        release.display()
    );
    format!(
        "dag_id = \"use\"\n\
         [[tasks]]\nid = \"hold1\"\n{hold}\
         [[tasks]]\nid = \"hold2\"\n{hold}\
         [[tasks]]\nid = \"flaky\"\nkind = \"command\"\npool = \"api\"\nretries = 1\nretry_delay = \"1h\"\n\
         command = [\"sh\", \"-c\", \"exit 1\"]\n\
         [[tasks]]\nid = \"other\"\nkind = \"noop\"\nupstream = [\"hold1\"]\n\
         [[tasks]]\nid = \"after\"\nkind = \"noop\"\npool = \"api\"\nupstream = [\"hold2\"]\n"
    )
}

async fn ti_states(db: &TestDb) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT task_id, state::text FROM task_instances ORDER BY task_id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn usage_numbers_follow_the_task_instances_a_worker_claims() {
    let a = app().await;
    let dir = dags_dir(&[]);
    std::fs::create_dir_all(&dir).unwrap();
    let release = dir.join("release");
    std::fs::write(dir.join("use.toml"), usage_dag(&release)).unwrap();
    let (status, _) = a
        .call(
            "POST",
            "/api/v2/pools",
            Some(&admin()),
            Some(json!({"name": "api", "slots": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let dag = sync(&a.db, &dir, "use.toml").await;
    let run = ops::trigger(&a.db.pool, &VersionCache::new(), &dag, &Trigger::default())
        .await
        .unwrap();
    let usage = |v: &Value| -> [i64; 5] {
        [
            "running_slots",
            "scheduled_slots",
            "occupied_slots",
            "open_slots",
            "queued_slots",
        ]
        .map(|k| v[k].as_i64().unwrap())
    };

    // Before any worker: three tries wait in `api` (2 + 2 + 1 slots).
    let (_, v) = a
        .call("GET", "/api/v2/pools/api", Some(&viewer()), None)
        .await;
    assert_eq!(
        usage(&v),
        [0, 5, 0, 10, 0],
        "{v} {:?}",
        ti_states(&a.db).await
    );

    // A real worker claims them: both holders run, the flaky one failed and waits for its
    // retry (still counted as waiting).
    let (stop, handle) = spawn_worker(&a.db.pool, fast_worker("pools"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let v = loop {
        let (_, v) = a
            .call("GET", "/api/v2/pools/api", Some(&viewer()), None)
            .await;
        let states = ti_states(&a.db).await;
        let flaky_waits = states
            .iter()
            .any(|(t, s)| t == "flaky" && s.as_deref() == Some("up_for_retry"));
        if v["running_slots"] == 4 && flaky_waits {
            break v;
        }
        assert!(Instant::now() < deadline, "never got there: {v} {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(usage(&v), [4, 1, 4, 6, 0], "{v}");
    let (_, default) = a
        .call("GET", "/api/v2/pools/default_pool", Some(&viewer()), None)
        .await;
    assert_eq!(default["running_slots"], 0, "{default}");

    // The CLI and the page show the same numbers.
    let out = upiflow(&a.db.url, &dir, &["pools", "list"]);
    assert_eq!(list_row(&out, "api").unwrap(), ["api", "10", "4", "1", "6"]);
    let (status, body) = a.get_page("/pools", &a.viewer_cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page_row(&body, "api").unwrap(),
        cells(&[
            ("slots", "10"),
            ("running", "4"),
            ("waiting", "1"),
            ("open", "6")
        ])
    );

    // In use by running task instances (and the DAG): a refused delete names them.
    let (status, v) = a
        .call("DELETE", "/api/v2/pools/api", Some(&admin()), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("use/{}/hold1 (running)", run.run_id))
            && detail.contains("(up_for_retry)")
            && detail.contains(&format!("use/{}/after (no status)", run.run_id))
            && detail.contains("use.hold1"),
        "{detail}"
    );

    // Shrinking below what runs: open goes negative until the tries end, as in Airflow.
    let (_, v) = a
        .call(
            "PATCH",
            "/api/v2/pools/api",
            Some(&admin()),
            Some(json!({"slots": 3})),
        )
        .await;
    assert_eq!(usage(&v), [4, 1, 4, -1, 0], "{v}");

    // Released, the holders finish and give their slots back; `other` ran in default_pool.
    std::fs::write(&release, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = ti_states(&a.db).await;
        let done = |t: &str| {
            states
                .iter()
                .any(|(id, s)| id == t && s.as_deref() == Some("success"))
        };
        if done("hold1") && done("hold2") && done("other") && done("after") {
            break;
        }
        assert!(Instant::now() < deadline, "never finished: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, v) = a
        .call("GET", "/api/v2/pools/api", Some(&viewer()), None)
        .await;
    assert_eq!(usage(&v), [0, 1, 0, 3, 0], "{v}");
    stop.cancel();
    handle.await.unwrap();
}

#[tokio::test]
async fn the_pools_page_lists_pools_and_its_admin_form_sets_and_deletes_them() {
    let a = app().await;
    let (status, body) = a.get_page("/pools", &a.viewer_cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page_row(&body, "default_pool").unwrap(),
        cells(&[
            ("slots", "128"),
            ("running", "0"),
            ("waiting", "0"),
            ("open", "128")
        ])
    );
    assert!(
        body.contains("href=\"/pools\""),
        "the navigation links the page"
    );
    // Viewers see no form and cannot post one.
    assert!(!body.contains("id=\"pool-form\""));
    let csrf = a.csrf(&a.viewer_cookie).await;
    let (status, _, _) = a
        .post_form(
            "/pools",
            &a.viewer_cookie,
            &[("csrf", &csrf), ("name", "api"), ("slots", "3")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let csrf = a.csrf(&a.admin_cookie).await;
    let (_, body) = a.get_page("/pools", &a.admin_cookie).await;
    assert!(body.contains("id=\"pool-form\""));
    // Without the CSRF token: 403, nothing created.
    let (status, _, _) = a
        .post_form(
            "/pools",
            &a.admin_cookie,
            &[("name", "api"), ("slots", "3")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, location, body) = a
        .post_form(
            "/pools",
            &a.admin_cookie,
            &[
                ("csrf", &csrf),
                ("name", "api"),
                ("slots", "3"),
                ("description", "Partner <API>"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location.as_deref(), Some("/pools"));
    let (_, body) = a.get_page("/pools", &a.admin_cookie).await;
    assert_eq!(
        page_row(&body, "api").unwrap(),
        cells(&[
            ("slots", "3"),
            ("running", "0"),
            ("waiting", "0"),
            ("open", "3")
        ])
    );
    assert!(body.contains("Partner &lt;API&gt;"), "escaped");

    // Bad input: a 400 page with the message.
    for (slots, name, message) in [
        (
            "-2",
            "api",
            "pool slots must be a whole number of at least 0 (not -2)",
        ),
        ("three", "api", "Slots: `three` is not a whole number"),
        (
            "1",
            "bad/name",
            "pool name `bad/name` must be 1-256 characters",
        ),
    ] {
        let (status, _, body) = a
            .post_form(
                "/pools",
                &a.admin_cookie,
                &[("csrf", &csrf), ("name", name), ("slots", slots)],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{slots} {name}");
        assert!(body.contains(message), "{message}: {body}");
    }

    // Shrinking below a current DAG task's pool_slots answers with the warning.
    let dir = dags_dir(&[("d.toml", USES_API)]);
    sync(&a.db, &dir, "d.toml").await;
    let (status, _, body) = a
        .post_form(
            "/pools",
            &a.admin_cookie,
            &[("csrf", &csrf), ("name", "api"), ("slots", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("task `d.t` takes 2 slot(s) of pool `api`, which now has 1"),
        "{body}"
    );
    assert_eq!(
        page_row(&body, "api").unwrap()[0],
        ("slots".into(), "1".into())
    );

    // Delete: refused for a pool in use (naming the task) and for default_pool; an unused
    // pool goes.
    let (status, _, body) = a
        .post_form("/pools/api/delete", &a.admin_cookie, &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("d.t"), "{body}");
    let (status, _, body) = a
        .post_form(
            "/pools/default_pool/delete",
            &a.admin_cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("cannot be deleted"), "{body}");
    a.post_form(
        "/pools",
        &a.admin_cookie,
        &[("csrf", &csrf), ("name", "spare"), ("slots", "2")],
    )
    .await;
    let (status, location, _) = a
        .post_form("/pools/spare/delete", &a.admin_cookie, &[("csrf", &csrf)])
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/pools"))
    );
    let (_, body) = a.get_page("/pools", &a.admin_cookie).await;
    assert!(page_row(&body, "spare").is_none() && page_row(&body, "api").is_some());
    let (status, _, _) = a
        .post_form("/pools/nope/delete", &a.admin_cookie, &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The backends of this database waiting on a lock in a statement starting with `prefix`.
async fn waiting_on_lock(db: &TestDb, prefix: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'
           AND starts_with(ltrim(query), $1)",
    )
    .bind(prefix)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_pool_change_rides_out_its_connection_being_killed() {
    let db = fresh_db().await;
    // Another transaction holds the pool's row, so the change waits where it can be killed.
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM pools WHERE name = 'default_pool' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let p = db.pool.clone();
    let set =
        tokio::spawn(async move { upiflow_engine::pools::set(&p, "default_pool", 7, None).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    let killed = loop {
        if let Some(&pid) = waiting_on_lock(&db, "INSERT INTO pools").await.first() {
            let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            assert!(done);
            break pid;
        }
        assert!(Instant::now() < deadline, "the change never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // It runs again on another connection and waits again.
    loop {
        let waiting = waiting_on_lock(&db, "INSERT INTO pools").await;
        if waiting.iter().any(|&pid| pid != killed) {
            break;
        }
        assert!(!set.is_finished(), "the change gave up: {:?}", set.await);
        assert!(Instant::now() < deadline, "the change was not run again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.commit().await.unwrap();
    let changed = tokio::time::timeout(Duration::from_secs(20), set)
        .await
        .expect("the change finishes")
        .unwrap()
        .expect("the change succeeds");
    assert_eq!(changed.pool.pool.slots, 7);
    let mut conn = db.pool.acquire().await.unwrap();
    let sizes = upiflow_engine::store::pools::sizes(&mut conn)
        .await
        .unwrap();
    assert_eq!(sizes["default_pool"], 7);
}
