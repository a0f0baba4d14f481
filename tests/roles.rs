//! Roles and revocation (#17): every changing API route and UI form, for each of Airflow's four
//! roles, is allowed or a 403 exactly as README.md's role table says; and a password change, a
//! role change, a deletion and a logout refuse the tokens and sessions issued before, in two
//! real `upiflow web` processes at once.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use serde_json::{Value, json};
use tower::ServiceExt;
use upiflow_web::auth::{self, Role};
use upiflow_web::roles::{self, Action};

const DAG: &str = r#"dag_id = "d"
schedule = "@daily"
start_date = "2024-01-01"
catchup = false

[[tasks]]
id = "a"
kind = "noop"

[[tasks]]
id = "b"
kind = "noop"
upstream = ["a"]
"#;

const PASSWORD: &str = "a-long-password";

/// The role table of README.md, between its `roles:begin` and `roles:end` markers: for each
/// action, the roles whose column says `yes`.
fn readme_table() -> BTreeMap<String, Vec<Role>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("<!-- roles:begin").expect("roles:begin marker");
    let end = readme.find("<!-- roles:end").expect("roles:end marker");
    let mut lines = readme[start..end].lines().skip(1);
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let head = cells(lines.next().expect("header row"));
    let columns: Vec<(usize, Role)> = head
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Role::parse(h).ok().map(|r| (i, r)))
        .collect();
    assert_eq!(columns.len(), 4, "a column per role: {head:?}");
    let mut table = BTreeMap::new();
    for line in lines.skip(1).filter(|l| l.trim().starts_with('|')) {
        let row = cells(line);
        let allowed = columns
            .iter()
            .filter(|(i, _)| match row[*i].as_str() {
                "yes" => true,
                "" => false,
                other => panic!("README role table: `{other}` in row {row:?}"),
            })
            .map(|(_, r)| *r)
            .collect();
        table.insert(row[0].clone(), allowed);
    }
    table
}

#[test]
fn the_readme_table_is_what_the_server_enforces() {
    let table = readme_table();
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(
        table.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut n = names.clone();
            n.sort();
            n
        },
        "one row per action"
    );
    for a in Action::ALL {
        let want: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| roles::may(*r, a))
            .collect();
        assert_eq!(table[a.name()], want, "README row `{}`", a.name());
    }
}

thread_local! {
    /// README's table, the oracle of the route checks below.
    static README: BTreeMap<String, Vec<Role>> = readme_table();
}

/// The users of the matrix, one per role.
const USERS: [(&str, Role); 4] = [
    ("vic", Role::Viewer),
    ("uma", Role::User),
    ("oli", Role::Op),
    ("ada", Role::Admin),
];

struct App {
    app: axum::Router,
    db: TestDb,
    run_id: String,
}

async fn app() -> App {
    let db = fresh_db().await;
    for (u, r) in USERS {
        auth::create_user(&db.pool, u, PASSWORD, r).await.unwrap();
    }
    let dir = dags_dir(&[("d.toml", DAG)]);
    let dag = load(&dir, "d.toml");
    let mut conn = db.pool.acquire().await.unwrap();
    upiflow_engine::store::dags::sync(&mut conn, &dag)
        .await
        .unwrap();
    drop(conn);
    let state = web_state(&db.pool).await;
    let app = upiflow_web::app(state);
    let mut a = App {
        app,
        db,
        run_id: String::new(),
    };
    // A run to mark and clear, made by the admin.
    let token = a.token("ada").await;
    let (s, run) = a
        .api(
            "POST",
            "/api/v2/dags/d/dagRuns",
            &token,
            Some(json!({"logical_date": "2024-03-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    a.run_id = run["dag_run_id"].as_str().unwrap().to_string();
    a
}

impl App {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<String>, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let cookies = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        (status, cookies, String::from_utf8_lossy(&body).into_owned())
    }

    async fn token(&self, user: &str) -> String {
        let req = Request::post("/auth/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"username": user, "password": PASSWORD}).to_string(),
            ))
            .unwrap();
        let (s, _, body) = self.send(req).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn api(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let (s, _, body) = self.send(req).await;
        (
            s,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    /// Signs in through the login form; the session cookie and the session's CSRF token.
    async fn session(&self, user: &str) -> (String, String) {
        let (_, cookies, page) = self
            .send(Request::get("/login").body(Body::empty()).unwrap())
            .await;
        let twin = cookies[0].split(';').next().unwrap().to_string();
        let csrf = hidden(&page, "csrf");
        let form = format!("username={user}&password={PASSWORD}&csrf={csrf}&next=%2F");
        let req = Request::post("/login")
            .header(header::COOKIE, twin)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let (s, cookies, _) = self.send(req).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let session = cookies
            .iter()
            .find(|c| c.starts_with("upiflow_session="))
            .expect("a session")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let (_, _, page) = self.page("/", &session).await;
        (session.clone(), hidden(&page, "csrf"))
    }

    async fn page(&self, uri: &str, cookie: &str) -> (StatusCode, Vec<String>, String) {
        self.send(
            Request::get(uri)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn form(&self, uri: &str, cookie: &str, form: &str) -> (StatusCode, String) {
        let req = Request::post(uri)
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .unwrap();
        let (s, _, body) = self.send(req).await;
        (s, body)
    }
}

fn readme_allows(role: Role, action: Action) -> bool {
    README.with(|t| t[action.name()].contains(&role))
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).expect("hidden input") + marker.len();
    page[at..].split('"').next().unwrap().to_string()
}

/// A 403 for a role README's table refuses, anything but a 401, a 403 or a 5xx for one it
/// allows.
fn check(role: Role, action: Action, what: &str, status: StatusCode, body: &str) {
    let allowed = readme_allows(role, action);
    if allowed {
        assert!(
            status != StatusCode::FORBIDDEN
                && status != StatusCode::UNAUTHORIZED
                && !status.is_server_error(),
            "{} may {}: {what} answered {status}: {body}",
            role.name(),
            action.name()
        );
    } else {
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{} may not {}: {what}: {body}",
            role.name(),
            action.name()
        );
        let needs = format!("needs the role {}", action.least_role().name());
        assert!(
            body.contains(&needs),
            "{what}: the refusal names the role: {body}"
        );
    }
}

#[tokio::test]
async fn every_changing_api_route_is_allowed_or_403_as_the_table_says() {
    let a = app().await;
    let run = format!("/api/v2/dags/d/dagRuns/{}", a.run_id);
    let ti = format!("{run}/taskInstances/a");
    // Each changing route, with a request its action allows: (method, uri, body, action).
    let routes: Vec<(&str, String, Value, Action, &str)> = vec![
        (
            "PATCH",
            "/api/v2/dags/d".into(),
            json!({"is_paused": true}),
            Action::Pause,
            "/api/v2/dags/{dag_id}",
        ),
        (
            "POST",
            "/api/v2/dags/d/dagRuns".into(),
            json!({"logical_date": null}),
            Action::Trigger,
            "/api/v2/dags/{dag_id}/dagRuns",
        ),
        (
            "PATCH",
            run.clone(),
            json!({"note": "looked at"}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        ),
        (
            "PATCH",
            ti.clone(),
            json!({"new_state": "success"}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        ),
        (
            "PATCH",
            format!("{ti}/dry_run"),
            json!({"new_state": "failed"}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/dry_run",
        ),
        (
            "POST",
            "/api/v2/dags/d/clearTaskInstances".into(),
            json!({"dry_run": true, "dag_run_id": a.run_id}),
            Action::Clear,
            "/api/v2/dags/{dag_id}/clearTaskInstances",
        ),
        (
            "POST",
            "/api/v2/backfills".into(),
            json!({"dag_id": "d", "from_date": "2024-01-01T00:00:00Z", "to_date": "2024-01-02T00:00:00Z"}),
            Action::Backfill,
            "/api/v2/backfills",
        ),
        (
            "POST",
            "/api/v2/pools".into(),
            json!({"name": "api", "slots": 2}),
            Action::Pools,
            "/api/v2/pools",
        ),
        (
            "PATCH",
            "/api/v2/pools/api".into(),
            json!({"slots": 3}),
            Action::Pools,
            "/api/v2/pools/{pool_name}",
        ),
        (
            "DELETE",
            "/api/v2/pools/api".into(),
            Value::Null,
            Action::Pools,
            "/api/v2/pools/{pool_name}",
        ),
        (
            "POST",
            "/api/v2/variables".into(),
            json!({"key": "limit", "value": "3"}),
            Action::Variables,
            "/api/v2/variables",
        ),
        (
            "PATCH",
            "/api/v2/variables/limit".into(),
            json!({"key": "limit", "value": "4"}),
            Action::Variables,
            "/api/v2/variables/{variable_key}",
        ),
        (
            "DELETE",
            "/api/v2/variables/limit".into(),
            Value::Null,
            Action::Variables,
            "/api/v2/variables/{variable_key}",
        ),
        (
            "POST",
            "/api/v2/connections".into(),
            json!({"connection_id": "wh", "conn_type": "postgres", "host": "db"}),
            Action::Connections,
            "/api/v2/connections",
        ),
        (
            "PATCH",
            "/api/v2/connections/wh".into(),
            json!({"connection_id": "wh", "conn_type": "postgres", "host": "db2"}),
            Action::Connections,
            "/api/v2/connections/{connection_id}",
        ),
        (
            "POST",
            "/api/v2/connections/test".into(),
            json!({"connection_id": "t", "conn_type": "http", "host": "127.0.0.1", "port": 9}),
            Action::Connections,
            "/api/v2/connections/test",
        ),
        (
            "DELETE",
            "/api/v2/connections/wh".into(),
            Value::Null,
            Action::Connections,
            "/api/v2/connections/{connection_id}",
        ),
        (
            "POST",
            format!("{run}/clear"),
            json!({"dry_run": true}),
            Action::Clear,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear",
        ),
        // Deleting targets a run that does not exist, so the first role allowed does not
        // take the run from the routes after it: the gate answers before the lookup.
        (
            "DELETE",
            "/api/v2/dags/d/dagRuns/no-such-run".into(),
            Value::Null,
            Action::Clear,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}",
        ),
        (
            "POST",
            "/api/v2/backfills/dry_run".into(),
            json!({"dag_id": "d", "from_date": "2024-01-01T00:00:00Z", "to_date": "2024-01-02T00:00:00Z"}),
            Action::Backfill,
            "/api/v2/backfills/dry_run",
        ),
        (
            "PUT",
            "/api/v2/backfills/999999/pause".into(),
            Value::Null,
            Action::Backfill,
            "/api/v2/backfills/{backfill_id}/pause",
        ),
        (
            "PUT",
            "/api/v2/backfills/999999/unpause".into(),
            Value::Null,
            Action::Backfill,
            "/api/v2/backfills/{backfill_id}/unpause",
        ),
        (
            "PUT",
            "/api/v2/backfills/999999/cancel".into(),
            Value::Null,
            Action::Backfill,
            "/api/v2/backfills/{backfill_id}/cancel",
        ),
        (
            "PATCH",
            "/api/v2/dags?dag_id_pattern=nothing-matches".into(),
            json!({"is_paused": true}),
            Action::Pause,
            "/api/v2/dags",
        ),
        // Deleting a DAG that does not exist: the gate answers before the lookup.
        (
            "DELETE",
            "/api/v2/dags/no-such-dag".into(),
            Value::Null,
            Action::Pause,
            "/api/v2/dags/{dag_id}",
        ),
        (
            "PATCH",
            "/api/v2/dags/d/dagRuns".into(),
            json!({"actions": [{"action": "update", "action_on_non_existence": "skip",
                "entities": [{"dag_run_id": "no-such-run", "note": "x"}]}]}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns",
        ),
        (
            "POST",
            "/api/v2/dags/d/clearDagRuns".into(),
            json!({"dag_runs": [a.run_id], "dry_run": true}),
            Action::Clear,
            "/api/v2/dags/{dag_id}/clearDagRuns",
        ),
        (
            "PATCH",
            format!("{run}/taskInstances"),
            json!({"actions": [{"action": "update", "action_on_non_existence": "skip",
                "entities": [{"task_id": "no_such_task", "note": "x"}]}]}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
        ),
        // A task that does not exist: the gate answers before the lookup.
        (
            "DELETE",
            format!("{run}/taskInstances/no_such_task"),
            Value::Null,
            Action::Clear,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}",
        ),
        (
            "PATCH",
            format!("{ti}/-1"),
            json!({"note": "by map index"}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
        ),
        (
            "PATCH",
            format!("{ti}/-1/dry_run"),
            json!({"new_state": "failed"}),
            Action::Mark,
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}/dry_run",
        ),
        // Bulk changes that delete what does not exist, skipping it: allowed, and a no-op.
        (
            "PATCH",
            "/api/v2/pools".into(),
            json!({"actions": [{"action": "delete", "entities": ["nope"],
                "action_on_non_existence": "skip"}]}),
            Action::Pools,
            "/api/v2/pools",
        ),
        (
            "PATCH",
            "/api/v2/variables".into(),
            json!({"actions": [{"action": "delete", "entities": ["nope"],
                "action_on_non_existence": "skip"}]}),
            Action::Variables,
            "/api/v2/variables",
        ),
        (
            "PATCH",
            "/api/v2/connections".into(),
            json!({"actions": [{"action": "delete", "entities": ["nope"],
                "action_on_non_existence": "skip"}]}),
            Action::Connections,
            "/api/v2/connections",
        ),
    ];
    // Changes any signed-in role may make (a read sent as a POST; a user's own favorites):
    // never a 401 or 403, for every role.
    let anyone: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            "/api/v2/dags/d/dagRuns/list".into(),
            json!({"page_limit": 10}),
            "/api/v2/dags/{dag_id}/dagRuns/list",
        ),
        (
            "POST",
            "/api/v2/dags/~/dagRuns/list".into(),
            json!({"dag_ids": ["d"]}),
            "/api/v2/dags/{dag_id}/dagRuns/list",
        ),
        (
            "POST",
            format!("{run}/taskInstances/list"),
            json!({"state": ["success"]}),
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list",
        ),
        (
            "POST",
            "/api/v2/dags/d/favorite".into(),
            Value::Null,
            "/api/v2/dags/{dag_id}/favorite",
        ),
        (
            "POST",
            "/api/v2/dags/d/unfavorite".into(),
            Value::Null,
            "/api/v2/dags/{dag_id}/unfavorite",
        ),
    ];

    // The list is every changing route the API documents (but signing in and out, which any
    // role may), so a new route cannot be left out of this test.
    let admin = a.token("ada").await;
    let (_, doc) = a.api("GET", "/api/v2/openapi.json", &admin, None).await;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if m != "get" && !path.starts_with("/auth/") {
                documented.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut tested: Vec<(String, String)> = routes
        .iter()
        .map(|(m, _, _, _, p)| (m.to_string(), p.to_string()))
        .chain(
            anyone
                .iter()
                .map(|(m, _, _, p)| (m.to_string(), p.to_string())),
        )
        .collect();
    tested.sort();
    tested.dedup();
    assert_eq!(tested, documented);

    // Least role first, so each refusal is checked before any change is made.
    for (user, role) in USERS {
        let token = a.token(user).await;
        for (m, uri, body, action, _) in &routes {
            let body = (!body.is_null()).then(|| body.clone());
            let (s, answer) = a.api(m, uri, &token, body).await;
            check(role, *action, &format!("{m} {uri}"), s, &answer.to_string());
        }
        for (m, uri, body, _) in &anyone {
            let body = (!body.is_null()).then(|| body.clone());
            let (s, answer) = a.api(m, uri, &token, body).await;
            assert!(
                s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED && !s.is_server_error(),
                "{} may {m} {uri}: answered {s}: {answer}",
                role.name()
            );
        }
        // Reading is every role's.
        let (s, _) = a.api("GET", "/api/v2/dags/d/dagRuns", &token, None).await;
        assert_eq!(s, StatusCode::OK, "{user} reads");
    }
    // A refusal changed nothing: the run the viewer could not trigger does not exist, and the
    // allowed changes happened (the op's and the admin's pool came and went).
    let (s, runs) = a.api("GET", "/api/v2/dags/d/dagRuns", &admin, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        runs["total_entries"].as_i64(),
        Some(1 + 3),
        "the first run and one trigger per role that may: {runs}"
    );
    drop(a.db);
}

#[tokio::test]
async fn every_ui_form_is_allowed_or_403_as_the_table_says_and_pages_offer_only_what_the_role_may()
{
    let a = app().await;
    let run = format!("/dags/d/runs/{}", a.run_id);
    // Each changing form of the UI (the same list the audit log names): (path, fields, action).
    let forms: Vec<(String, &str, Action)> = vec![
        (
            "/dags/d/trigger".into(),
            "logical_date=&conf=%7B%7D",
            Action::Trigger,
        ),
        (format!("{run}/mark"), "state=failed", Action::Mark),
        (format!("{run}/tasks/a/mark"), "state=success", Action::Mark),
        (
            format!("{run}/tasks/a/clear"),
            "downstream=on",
            Action::Clear,
        ),
        (
            "/dags/d/pause".into(),
            "paused=true&next=%2F",
            Action::Pause,
        ),
        (
            "/dags/d/backfill".into(),
            "from=2024-01-01&to=2024-01-02&max_active_runs=1",
            Action::Backfill,
        ),
        ("/dags/d/missed/backfill".into(), "", Action::Backfill),
        (
            "/pools".into(),
            "name=ui&slots=2&description=",
            Action::Pools,
        ),
        ("/pools/ui/delete".into(), "", Action::Pools),
        (
            "/variables".into(),
            "key=k&value=v&description=",
            Action::Variables,
        ),
        ("/variables/k/delete".into(), "", Action::Variables),
        (
            "/connections".into(),
            "conn_id=wh&uri=postgres%3A%2F%2Fu%3Ap%40db%2Fx&description=",
            Action::Connections,
        ),
        ("/connections/wh/test".into(), "", Action::Connections),
        ("/connections/wh/delete".into(), "", Action::Connections),
    ];
    for (user, role) in USERS {
        let (cookie, csrf) = a.session(user).await;
        for (path, fields, action) in &forms {
            let sep = if fields.is_empty() { "" } else { "&" };
            let (s, body) = a
                .form(path, &cookie, &format!("csrf={csrf}{sep}{fields}"))
                .await;
            check(role, *action, &format!("POST {path}"), s, &body);
        }
        // The pages offer a button or a form only where the role may use it.
        let (s, _, grid) = a.page("/dags/d", &cookie).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            grid.contains("id=\"trigger-link\""),
            readme_allows(role, Action::Trigger),
            "{user}: trigger link"
        );
        assert_eq!(
            grid.contains("id=\"backfill-link\""),
            readme_allows(role, Action::Backfill),
            "{user}: backfill link"
        );
        let (_, _, run_page) = a.page(&run, &cookie).await;
        assert_eq!(
            run_page.contains("id=\"run-mark\""),
            readme_allows(role, Action::Mark),
            "{user}: mark form"
        );
        let (_, _, pools) = a.page("/pools", &cookie).await;
        assert_eq!(
            pools.contains("action=\"/pools\""),
            readme_allows(role, Action::Pools),
            "{user}: pool form"
        );
        let (_, _, conns) = a.page("/connections", &cookie).await;
        assert_eq!(
            conns.contains("connection-form"),
            readme_allows(role, Action::Connections),
            "{user}: connection form"
        );
    }
}

#[tokio::test]
async fn bad_roles_and_weak_passwords_are_refused_with_clear_errors() {
    let db = fresh_db().await;
    assert_eq!(
        Role::parse("superuser").unwrap_err(),
        "unknown role `superuser`: the roles are admin, op, user and viewer"
    );
    let e = auth::create_user(&db.pool, "ana", "short", Role::Op)
        .await
        .unwrap_err();
    assert!(e.contains("too short (5 characters): at least 8"), "{e}");
    let e = auth::create_user(&db.pool, "ana", "", Role::Op)
        .await
        .unwrap_err();
    assert!(e.contains("too short (0 characters)"), "{e}");
    let e = auth::create_user(&db.pool, " ", PASSWORD, Role::Op)
        .await
        .unwrap_err();
    assert!(e.contains("a username is required"), "{e}");
    auth::create_user(&db.pool, "ana", PASSWORD, Role::Op)
        .await
        .unwrap();
    let e = auth::set_password(&db.pool, "ana", "1234567")
        .await
        .unwrap_err();
    assert!(e.contains("at least 8"), "{e}");
    // The CLI refuses an unknown role by name, listing the roles.
    let out = Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args([
            "users",
            "create",
            "--username",
            "x",
            "--password",
            PASSWORD,
            "--role",
            "root",
        ])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for r in ["admin", "op", "user", "viewer"] {
        assert!(err.contains(r), "{err}");
    }
}

// ---- Revocation, against two real web processes ------------------------------------------

type Web = WebProcess;

async fn start_web(db_url: &str) -> Web {
    WebProcess::start(db_url, &[])
}

/// One HTTP/1.1 request over a fresh connection: the status, the headers (names in lower
/// case) and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut head = format!("{method} {path} HTTP/1.1");
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    let a = send(addr, std::net::Ipv4Addr::LOCALHOST.into(), &head, body).await;
    let headers = a
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    (a.status, headers, a.body)
}

async fn token(web: &Web, user: &str, password: &str) -> String {
    let body = json!({"username": user, "password": password}).to_string();
    let (s, _, b) = http(
        web.addr,
        "POST",
        "/auth/token",
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    serde_json::from_str::<Value>(&b).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Signs in through the login form; the session cookie and its CSRF token.
async fn session(web: &Web, user: &str, password: &str) -> (String, String) {
    let (_, h, page) = http(web.addr, "GET", "/login", &[], "").await;
    let twin = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("upiflow_login_csrf="))
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let form = format!(
        "username={user}&password={password}&csrf={}&next=%2F",
        hidden(&page, "csrf")
    );
    let (s, h, _) = http(
        web.addr,
        "POST",
        "/login",
        &[
            ("Cookie", &twin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await;
    assert_eq!(s, 303);
    let cookie = h
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("upiflow_session="))
        .expect("session cookie")
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (_, _, home) = http(web.addr, "GET", "/", &[("Cookie", &cookie)], "").await;
    (cookie, hidden(&home, "csrf"))
}

/// What the token is worth on `web`: 200 (reads), 401 (refused).
async fn api_status(web: &Web, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    http(
        web.addr,
        "GET",
        "/api/v2/dags",
        &[("Authorization", &bearer)],
        "",
    )
    .await
    .0
}

/// What the session is worth on `web`: 200 (a page), 303 (to the login page).
async fn page_status(web: &Web, cookie: &str) -> u16 {
    http(web.addr, "GET", "/pools", &[("Cookie", cookie)], "")
        .await
        .0
}

fn cli(db_url: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_upiflow"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upiflow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_password_or_role_change_a_deletion_and_a_logout_revoke_tokens_and_sessions_everywhere() {
    let db = fresh_db().await;
    for (u, r) in [
        ("ada", Role::Admin),
        ("pat", Role::Op),
        ("rob", Role::Op),
        ("del", Role::User),
        ("lou", Role::User),
        ("ui", Role::Viewer),
    ] {
        auth::create_user(&db.pool, u, PASSWORD, r).await.unwrap();
    }
    let (w1, w2) = (start_web(&db.url).await, start_web(&db.url).await);
    let both = [&w1, &w2];

    // Each user's token from the first process and session from the second work on both.
    let mut creds = BTreeMap::new();
    for u in ["pat", "rob", "del", "lou", "ui"] {
        let t = token(&w1, u, PASSWORD).await;
        let (c, csrf) = session(&w2, u, PASSWORD).await;
        for w in both {
            assert_eq!(api_status(w, &t).await, 200, "{u}'s token");
            assert_eq!(page_status(w, &c).await, 200, "{u}'s session");
        }
        creds.insert(u, (t, c, csrf));
    }
    let refused_everywhere = async |u: &str, creds: &BTreeMap<&str, (String, String, String)>| {
        let (t, c, _) = &creds[u];
        for w in both {
            assert_eq!(api_status(w, t).await, 401, "{u}'s old token on {}", w.addr);
            assert_eq!(
                page_status(w, c).await,
                303,
                "{u}'s old session on {}",
                w.addr
            );
        }
    };

    // A password change (the CLI): at once, in both processes; the new password works.
    cli(
        &db.url,
        &[
            "users",
            "set-password",
            "--username",
            "pat",
            "--password",
            "a-new-password",
        ],
    );
    refused_everywhere("pat", &creds).await;
    let t = token(&w2, "pat", "a-new-password").await;
    assert_eq!(api_status(&w1, &t).await, 200);

    // A role change: the old op token is refused; a new one carries the new role.
    cli(
        &db.url,
        &["users", "set-role", "--username", "rob", "--role", "user"],
    );
    refused_everywhere("rob", &creds).await;
    let t = token(&w1, "rob", PASSWORD).await;
    let bearer = format!("Bearer {t}");
    let (s, _, b) = http(
        w2.addr,
        "POST",
        "/api/v2/pools",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        r#"{"name": "p", "slots": 1}"#,
    )
    .await;
    assert_eq!(s, 403, "a user may not change pools: {b}");

    // A deletion.
    cli(&db.url, &["users", "delete", "--username", "del"]);
    refused_everywhere("del", &creds).await;

    // A logout through the API ends the API token and the browser session alike.
    let bearer = format!("Bearer {}", creds["lou"].0);
    let (s, _, b) = http(
        w2.addr,
        "POST",
        "/auth/logout",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(s, 204, "{b}");
    refused_everywhere("lou", &creds).await;
    let (s, _, _) = http(
        w1.addr,
        "POST",
        "/auth/logout",
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(s, 401, "a revoked token cannot log out again");

    // A logout from the UI does the same.
    let (_, c, csrf) = &creds["ui"];
    let (s, _, _) = http(
        w1.addr,
        "POST",
        "/logout",
        &[
            ("Cookie", c),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(s, 303);
    refused_everywhere("ui", &creds).await;

    // Nobody else was signed out: the admin's fresh token still works after all of it.
    let t = token(&w1, "ada", PASSWORD).await;
    assert_eq!(api_status(&w2, &t).await, 200);
}
