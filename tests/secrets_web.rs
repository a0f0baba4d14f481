//! Connections and variables over the web against a real Postgres: Airflow 3's
//! `/api/v2/connections` and `/api/v2/variables` (shapes, roles, redaction, the merge of
//! redacted values, refusals) and the Connections and Variables pages with their admin forms.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};
use upiflow_web::ui::session;

const ADMIN: (&str, &str) = ("ada", "admin-password");
const VIEWER: (&str, &str) = ("vic", "viewer-password");
const PASSWORD: &str = "Wh0-knows-this";

struct App {
    app: axum::Router,
    state: upiflow_web::AppState,
    admin_cookie: String,
    viewer_cookie: String,
    _db: TestDb,
}

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
    App {
        admin_cookie: cookie(ADMIN.0, Role::Admin),
        viewer_cookie: cookie(VIEWER.0, Role::Viewer),
        app: upiflow_web::app(state.clone()),
        state,
        _db: db,
    }
}

impl App {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        who: (&str, &str),
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", basic(who.0, who.1));
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

    async fn page(&self, req: Request<Body>) -> (StatusCode, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn get_page(&self, uri: &str, cookie: &str) -> (StatusCode, String) {
        self.page(
            Request::get(uri)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post_form(
        &self,
        uri: &str,
        cookie: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        self.page(
            Request::post(uri)
                .header(header::COOKIE, cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                .unwrap(),
        )
        .await
    }

    /// A variable as tasks read it (decrypted).
    async fn var(&self, key: &str) -> Option<String> {
        self.state.secrets.variable(key).await.unwrap()
    }

    /// A connection as tasks read it (decrypted).
    async fn conn(&self, id: &str) -> Option<upiflow_engine::secrets::Connection> {
        self.state.secrets.connection(id).await.unwrap()
    }

    async fn csrf(&self, cookie: &str) -> String {
        let (status, body) = self.get_page("/connections", cookie).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let at = body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        body[at..at + body[at..].find('"').unwrap()].to_string()
    }
}

fn warehouse() -> Value {
    json!({"connection_id": "warehouse", "conn_type": "postgres", "host": "dwh.internal",
           "port": 5433, "login": "etl", "password": PASSWORD, "schema": "analytics",
           "extra": "{\"sslmode\": \"require\", \"api_key\": \"k-42\"}"})
}

#[tokio::test]
async fn the_connections_api_redacts_merges_and_refuses_as_airflow() {
    let a = app().await;
    let (st, made) = a
        .call("POST", "/api/v2/connections", ADMIN, Some(warehouse()))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    assert_eq!(made["password"], "***");
    assert_eq!(
        serde_json::from_str::<Value>(made["extra"].as_str().unwrap()).unwrap(),
        json!({"sslmode": "require", "api_key": "***"})
    );
    assert!(!made.to_string().contains(PASSWORD) && !made.to_string().contains("k-42"));

    // A viewer reads, without the password; may not change anything.
    let (st, got) = a
        .call("GET", "/api/v2/connections/warehouse", VIEWER, None)
        .await;
    assert_eq!(
        (st, got["password"].clone(), got["schema"].clone()),
        (StatusCode::OK, json!("***"), json!("analytics"))
    );
    let (st, list) = a.call("GET", "/api/v2/connections", VIEWER, None).await;
    assert_eq!(
        (st, list["total_entries"].clone()),
        (StatusCode::OK, json!(1))
    );
    assert!(!list.to_string().contains(PASSWORD));
    let (st, _) = a
        .call(
            "POST",
            "/api/v2/connections",
            VIEWER,
            Some(json!({"connection_id": "v", "conn_type": "http"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = a
        .call("DELETE", "/api/v2/connections/warehouse", VIEWER, None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // What was read goes back: `***` keeps the stored password and api_key.
    let mut back = got.clone();
    back["description"] = json!("the warehouse");
    let (st, patched) = a
        .call("PATCH", "/api/v2/connections/warehouse", ADMIN, Some(back))
        .await;
    assert_eq!(st, StatusCode::OK, "{patched}");
    let stored = a.conn("warehouse").await.unwrap();
    assert_eq!(stored.password.as_deref(), Some(PASSWORD));
    assert_eq!(stored.extra["api_key"], json!("k-42"));
    assert_eq!(stored.description.as_deref(), Some("the warehouse"));
    // update_mask changes only what it names.
    let (st, masked) = a
        .call("PATCH", "/api/v2/connections/warehouse?update_mask=port", ADMIN,
              Some(json!({"connection_id": "warehouse", "conn_type": "http", "port": 6543, "host": "no"})))
        .await;
    assert_eq!(st, StatusCode::OK, "{masked}");
    assert_eq!(
        (
            masked["port"].clone(),
            masked["host"].clone(),
            masked["conn_type"].clone()
        ),
        (json!(6543), json!("dwh.internal"), json!("postgres"))
    );

    // Refusals: each a 4xx with a message, and nothing written.
    for (method, uri, body, want) in [
        (
            "POST",
            "/api/v2/connections",
            warehouse(),
            StatusCode::CONFLICT,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "bad id", "conn_type": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "x", "conn_type": "x", "extra": "[1]"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "x", "conn_type": "x", "port": 70000}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "x", "conn_type": "x", "team_name": "t"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "x"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PATCH",
            "/api/v2/connections/warehouse",
            json!({"connection_id": "other", "conn_type": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            "/api/v2/connections/warehouse?update_mask=secret_sauce",
            json!({"connection_id": "warehouse", "conn_type": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            "/api/v2/connections/warehouse",
            json!({"connection_id": "warehouse", "conn_type": "postgres", "port": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PATCH",
            "/api/v2/connections/nope",
            json!({"connection_id": "nope", "conn_type": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (st, err) = a.call(method, uri, ADMIN, Some(body.clone())).await;
        assert_eq!(st, want, "{method} {uri} {body}: {err}");
        assert!(
            err["detail"].is_string() || err["detail"].is_array(),
            "{err}"
        );
    }
    let (_, list) = a.call("GET", "/api/v2/connections", ADMIN, None).await;
    assert_eq!(list["total_entries"], 1, "{list}");
    let (st, _) = a
        .call("GET", "/api/v2/connections?order_by=password", ADMIN, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // A test of an unreachable host fails with a reason that does not show the password.
    // (The stored `warehouse` cannot be tested: Postgres takes no `api_key` extra, and says so.)
    let (st, t) = a
        .call("POST", "/api/v2/connections/test", ADMIN,
              Some(json!({"connection_id": "elsewhere", "conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                          "login": "etl", "password": PASSWORD})))
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["status"], false);
    assert!(
        t["message"].as_str().unwrap().contains("cannot reach"),
        "{t}"
    );
    assert!(!t.to_string().contains(PASSWORD));
    let (st, _) = a
        .call(
            "POST",
            "/api/v2/connections/test",
            VIEWER,
            Some(warehouse()),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, _) = a
        .call("DELETE", "/api/v2/connections/warehouse", ADMIN, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = a
        .call("DELETE", "/api/v2/connections/warehouse", ADMIN, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_variables_api_redacts_sensitive_keys_and_refuses_bad_bodies() {
    let a = app().await;
    let (st, v) = a
        .call(
            "POST",
            "/api/v2/variables",
            ADMIN,
            Some(json!({"key": "partner_token", "value": "tok-77"})),
        )
        .await;
    assert_eq!(
        (st, v["value"].clone()),
        (StatusCode::CREATED, json!("***")),
        "{v}"
    );
    let (st, v) = a
        .call(
            "POST",
            "/api/v2/variables",
            ADMIN,
            Some(json!({"key": "limits", "value": {"max": 5, "secret": "s-1"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(
        serde_json::from_str::<Value>(v["value"].as_str().unwrap()).unwrap(),
        json!({"max": 5, "secret": "***"})
    );
    assert_eq!(a.var("partner_token").await.as_deref(), Some("tok-77"));
    // `***` sent back keeps the value; the description changes.
    let (st, v) = a
        .call(
            "PATCH",
            "/api/v2/variables/partner_token",
            ADMIN,
            Some(
                json!({"key": "partner_token", "value": "***", "description": "from the partner"}),
            ),
        )
        .await;
    assert_eq!(
        (st, v["description"].clone()),
        (StatusCode::OK, json!("from the partner")),
        "{v}"
    );
    assert_eq!(a.var("partner_token").await.as_deref(), Some("tok-77"));
    // A patch that leaves the description out keeps it.
    let (st, v) = a
        .call(
            "PATCH",
            "/api/v2/variables/partner_token",
            ADMIN,
            Some(json!({"key": "partner_token", "value": "tok-78"})),
        )
        .await;
    assert_eq!(
        (st, v["description"].clone()),
        (StatusCode::OK, json!("from the partner")),
        "{v}"
    );
    assert_eq!(a.var("partner_token").await.as_deref(), Some("tok-78"));
    let (_, list) = a
        .call("GET", "/api/v2/variables?order_by=-key", VIEWER, None)
        .await;
    let keys: Vec<&str> = list["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["partner_token", "limits"]);
    assert!(!list.to_string().contains("tok-78") && !list.to_string().contains("s-1"));
    for (method, uri, body, want) in [
        (
            "POST",
            "/api/v2/variables",
            json!({"key": "limits", "value": 1}),
            StatusCode::CONFLICT,
        ),
        (
            "POST",
            "/api/v2/variables",
            json!({"key": "", "value": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/variables",
            json!({"key": "k"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/v2/variables",
            json!({"key": "k", "value": 1, "extra": 2}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PATCH",
            "/api/v2/variables/limits",
            json!({"key": "other", "value": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            "/api/v2/variables/nope",
            json!({"key": "nope", "value": 1}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (st, err) = a.call(method, uri, ADMIN, Some(body.clone())).await;
        assert_eq!(st, want, "{method} {uri} {body}: {err}");
    }
    let (st, _) = a
        .call(
            "POST",
            "/api/v2/variables",
            VIEWER,
            Some(json!({"key": "v", "value": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = a
        .call("DELETE", "/api/v2/variables/limits", ADMIN, None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = a
        .call("GET", "/api/v2/variables/limits", VIEWER, None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_connections_and_variables_pages_show_no_secret_and_their_forms_need_an_admin() {
    let a = app().await;
    let csrf = a.csrf(&a.admin_cookie).await;
    let uri = format!("postgres://etl:{PASSWORD}@127.0.0.1:1/analytics?sslmode=disable");
    let (st, body) = a
        .post_form(
            "/connections",
            &a.admin_cookie,
            &[
                ("csrf", &csrf),
                ("conn_id", "warehouse"),
                ("uri", &uri),
                ("description", "DWH"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER, "{body}");
    let (st, body) = a.get_page("/connections", &a.viewer_cookie).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("data-conn=\"warehouse\"") && body.contains("***"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "the password is on the page");
    assert!(!body.contains("connection-form"), "a viewer gets no form");
    let (st, _) = a.get_page("/variables", &a.viewer_cookie).await;
    assert_eq!(st, StatusCode::OK);

    // A bad URI is an error page with its message, and nothing is written.
    let (st, body) = a
        .post_form(
            "/connections",
            &a.admin_cookie,
            &[("csrf", &csrf), ("conn_id", "broken"), ("uri", "not a uri")],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert!(a.conn("broken").await.is_none());
    // Without the CSRF token, or as a viewer: refused, nothing written.
    let (st, _) = a
        .post_form(
            "/connections",
            &a.admin_cookie,
            &[("conn_id", "x"), ("uri", "http://h")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let vcsrf = a.csrf(&a.viewer_cookie).await;
    let (st, _) = a
        .post_form(
            "/connections",
            &a.viewer_cookie,
            &[("csrf", &vcsrf), ("conn_id", "x"), ("uri", "http://h")],
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(a.conn("x").await.is_none());

    // The test button reports the failure (a closed port) without the password.
    let (st, body) = a
        .post_form(
            "/connections/warehouse/test",
            &a.admin_cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains("Test of `warehouse`: failed"), "{body}");
    assert!(!body.contains(PASSWORD));

    let (st, _) = a
        .post_form(
            "/variables",
            &a.admin_cookie,
            &[
                ("csrf", &csrf),
                ("key", "s3_secret"),
                ("value", "very-private"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, body) = a.get_page("/variables", &a.admin_cookie).await;
    assert!(
        body.contains("data-var=\"s3_secret\"") && !body.contains("very-private"),
        "{body}"
    );
    assert_eq!(a.var("s3_secret").await.as_deref(), Some("very-private"));
    let (st, _) = a
        .post_form(
            "/variables/s3_secret/delete",
            &a.admin_cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, _) = a
        .post_form(
            "/connections/warehouse/delete",
            &a.admin_cookie,
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(a.conn("warehouse").await.is_none());
    assert!(a.var("s3_secret").await.is_none());
}
