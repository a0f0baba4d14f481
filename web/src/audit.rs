//! The audit log of the web: every changing request (any method but GET, HEAD and OPTIONS)
//! of the API and the UI, every sign-in, and every request refused for bad Basic credentials
//! writes one `event_log` row (`upiflow_engine::audit`), whatever the handler does.
//!
//! Two layers, so no handler can forget: [`record`], the outermost, puts a [`Slot`] into the
//! request, keeps a copy of a small body, and writes the row once the answer is known (after
//! `crate::retry`'s replays, so a replayed request is one row); [`capture`], a route layer,
//! notes the matched route and its path parameters. The authentication extractors
//! (`crate::auth`, `crate::ui::session`) note who asked ([`note_user`], [`note_bad_basic`]).
//! The outcome is the status (2xx and 3xx success, 401 and 403 refused, else failed) unless
//! the answer carries an [`Outcome`] of its own (a failed UI login is a redirect).
//!
//! The event names are Airflow's (its API's `action_logging` names, which Airflow 3's UI
//! uses too): `trigger_dag_run`, `post_clear_task_instances`, `patch_dag`, ..., `login`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{Extensions, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value};
pub use upiflow_engine::audit::Outcome;
use upiflow_engine::audit::{Event, Source};

use crate::AppState;

/// What the layers and extractors learn about one request.
#[derive(Debug, Default)]
struct Facts {
    route: Option<String>,
    params: Vec<(String, String)>,
    user: Option<String>,
    /// Basic credentials were given and refused.
    bad_basic: bool,
    /// The user is an API key's name (`upiflow tokens`), not a user's.
    api_key: bool,
}

/// Shared between the layers and the extractors of one request (and its replays).
#[derive(Debug, Clone, Default)]
pub struct Slot(Arc<Mutex<Facts>>);

impl Slot {
    fn with<T>(&self, f: impl FnOnce(&mut Facts) -> T) -> T {
        // A panic elsewhere while holding it leaves plain data behind: use it anyway.
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

/// Notes who is asking (an authenticated user, or the name an attempt gave).
pub fn note_user(ext: &Extensions, username: &str) {
    if let Some(slot) = ext.get::<Slot>() {
        slot.with(|f| f.user = Some(username.to_string()));
    }
}

/// Notes that the request is authenticated by the API key `name` (its rows say
/// `"auth": "api_key"`, so a key's name is never mistaken for a user's).
pub fn note_api_key(ext: &Extensions, name: &str) {
    if let Some(slot) = ext.get::<Slot>() {
        slot.with(|f| {
            f.user = Some(name.to_string());
            f.api_key = true;
        });
    }
}

/// Notes that the Basic credentials of `username` were refused.
pub fn note_bad_basic(ext: &Extensions, username: &str) {
    if let Some(slot) = ext.get::<Slot>() {
        slot.with(|f| {
            f.user = Some(username.to_string());
            f.bad_basic = true;
        });
    }
}

/// The route layer: the matched route and its path parameters.
pub async fn capture(mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let params: Vec<(String, String)> = {
        use axum::RequestPartsExt;
        let (mut parts, body) = req.into_parts();
        let params = parts
            .extract::<RawPathParams>()
            .await
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        req = Request::from_parts(parts, body);
        params
    };
    if let Some(slot) = req.extensions().get::<Slot>() {
        slot.with(|f| {
            f.route = route;
            f.params = params;
        });
    }
    next.run(req).await
}

fn is_changing(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The outermost layer: writes the request's row once it is answered.
pub async fn record(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let changing = is_changing(&method);
    let remote = s
        .transport
        .client_addr(req.extensions(), req.headers())
        .map(|ip| ip.to_string());
    let kind = BodyKind::of(req.headers());
    let (req, body) = if changing {
        keep_body(req).await
    } else {
        (req, None)
    };
    let resp = next.run(req).await;
    let facts = slot.with(std::mem::take);
    if !changing && !facts.bad_basic {
        return resp;
    }
    let fields = body.as_deref().map(|b| kind.fields(b)).unwrap_or_default();
    if let Some(e) = describe(&method, &path, facts, &fields, &resp, remote) {
        upiflow_engine::audit::record_or_warn(&s.pool, &e).await;
    }
    resp
}

/// A copy of a small body (the rest of upiflow refuses larger ones anyway).
async fn keep_body(req: Request) -> (Request, Option<axum::body::Bytes>) {
    use axum::body::HttpBody;
    let limit = crate::BODY_LIMIT;
    // The length it declares, or (a body built in-process) the one it knows it has.
    let small = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or_else(
            || {
                req.body()
                    .size_hint()
                    .upper()
                    .is_some_and(|n| n <= limit as u64)
            },
            |n| n <= limit,
        );
    if !small {
        return (req, None);
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, crate::BODY_LIMIT).await {
        Ok(b) => (Request::from_parts(parts, Body::from(b.clone())), Some(b)),
        // The body ended early: the handler's extractors answer as they would have.
        Err(_) => (Request::from_parts(parts, Body::empty()), None),
    }
}

#[derive(Clone, Copy)]
enum BodyKind {
    Json,
    Form,
    Other,
}

impl BodyKind {
    fn of(h: &axum::http::HeaderMap) -> Self {
        let ct = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ct.starts_with("application/json") {
            Self::Json
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            Self::Form
        } else {
            Self::Other
        }
    }

    /// The body's top-level fields (none when it is not a JSON object or a form).
    fn fields(self, b: &[u8]) -> Map<String, Value> {
        match self {
            Self::Json => match serde_json::from_slice(b) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            Self::Form => serde_urlencoded::from_bytes::<Vec<(String, String)>>(b)
                .map(|pairs| {
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect()
                })
                .unwrap_or_default(),
            Self::Other => Map::new(),
        }
    }
}

/// Airflow's event name of a changing route (API and UI alike); `None` for one not named
/// here, which is still logged, named by its method and route, so a new route is never
/// silently left out.
fn event_name(method: &Method, route: &str) -> Option<&'static str> {
    let m = method.as_str();
    Some(match (m, route) {
        ("POST", "/auth/token" | "/auth/token/cli" | "/login") => "login",
        ("POST", "/logout" | "/auth/logout") => "logout",
        ("POST", "/api/v2/dags/{dag_id}/dagRuns" | "/dags/{dag_id}/trigger") => "trigger_dag_run",
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}")
        | ("POST", "/dags/{dag_id}/runs/{run_id}/mark") => "patch_dag_run",
        ("DELETE", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}") => "delete_dag_run",
        ("PATCH", "/api/v2/dags/{dag_id}") | ("POST", "/dags/{dag_id}/pause") => "patch_dag",
        ("PATCH", "/api/v2/dags") => "patch_dags",
        ("DELETE", "/api/v2/dags/{dag_id}") => "delete_dag",
        ("POST", "/api/v2/dags/{dag_id}/clearTaskInstances")
        | ("POST", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear") => {
            "post_clear_task_instances"
        }
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}")
        | ("POST", "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/mark") => "patch_task_instance",
        ("POST", "/api/v2/backfills" | "/dags/{dag_id}/backfill")
        | ("POST", "/dags/{dag_id}/missed/backfill") => "create_backfill",
        ("POST", "/api/v2/pools" | "/pools") => "post_pool",
        ("PATCH", "/api/v2/pools/{pool_name}") => "patch_pool",
        ("DELETE", "/api/v2/pools/{pool_name}") | ("POST", "/pools/{name}/delete") => "delete_pool",
        ("POST", "/api/v2/connections" | "/connections") => "post_connection",
        ("PATCH", "/api/v2/connections/{connection_id}") => "patch_connection",
        ("DELETE", "/api/v2/connections/{connection_id}")
        | ("POST", "/connections/{id}/delete") => "delete_connection",
        ("POST", "/api/v2/connections/test" | "/connections/{id}/test") => "test_connection",
        ("POST", "/api/v2/variables" | "/variables") => "post_variable",
        ("PATCH", "/api/v2/variables/{variable_key}") => "patch_variable",
        ("DELETE", "/api/v2/variables/{variable_key}") | ("POST", "/variables/{key}/delete") => {
            "delete_variable"
        }
        // #14 ops2
        ("PATCH", "/api/v2/pools") => "bulk_pools",
        ("PATCH", "/api/v2/connections") => "bulk_connections",
        ("PATCH", "/api/v2/variables") => "bulk_variables",
        ("PUT", "/api/v2/backfills/{backfill_id}/pause") => "pause_backfill",
        ("PUT", "/api/v2/backfills/{backfill_id}/unpause") => "unpause_backfill",
        ("PUT", "/api/v2/backfills/{backfill_id}/cancel") => "cancel_backfill",
        ("POST", "/api/v2/dags/{dag_id}/favorite") => "favorite_dag",
        ("POST", "/api/v2/dags/{dag_id}/unfavorite") => "unfavorite_dag",
        ("POST", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear") => "clear_dag_run",
        ("POST", "/api/v2/dags/{dag_id}/clearDagRuns") => "clear_dag_runs",
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns") => "bulk_dag_runs",
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances") => {
            "bulk_task_instances"
        }
        ("DELETE", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}") => {
            "delete_task_instance"
        }
        (
            "PATCH",
            "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/{map_index}",
        ) => "patch_task_instance_by_map_index",
        _ => return None,
    })
}

/// A bulk body as kept in `extra`: each action's kind and the keys it names, never an
/// entity's fields (they hold passwords and variable values).
fn bulk_summary(actions: &Value) -> Value {
    let Some(actions) = actions.as_array() else {
        return Value::String(MASK.into());
    };
    let key_of = |e: &Value| match e {
        Value::String(k) => Value::String(k.clone()),
        e => ["connection_id", "key", "name", "pool"]
            .iter()
            .find_map(|k| e.get(*k).filter(|v| v.is_string()).cloned())
            .unwrap_or(Value::Null),
    };
    actions
        .iter()
        .map(|a| {
            let entities: Vec<Value> = a
                .get("entities")
                .and_then(Value::as_array)
                .map(|es| es.iter().map(key_of).collect())
                .unwrap_or_default();
            serde_json::json!({"action": a.get("action").cloned().unwrap_or(Value::Null), "entities": entities})
        })
        .collect()
}

/// Dry runs change nothing: Airflow leaves them out of the log.
fn is_dry_run(route: &str) -> bool {
    route.ends_with("/dry_run")
}

/// The UI's path parameters and form fields under the API's names.
fn param_name(k: &str) -> &str {
    match k {
        "name" => "pool_name",
        "id" | "conn_id" => "connection_id",
        "key" => "variable_key",
        "dag_run_id" => "run_id",
        other => other,
    }
}

/// Key names whose values are never kept (Airflow's sensitive names).
const SENSITIVE: [&str; 12] = [
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
];

fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| k.contains(s))
}

const MASK: &str = "***";

/// A connection URI with its password masked.
fn mask_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(p) => p,
        None => return uri.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{MASK}@{host}"),
        None => uri.to_string(),
    }
}

/// One body field as kept in `extra`: secrets masked (a variable's value and a connection's
/// password and extras always, as Airflow does), identifiers left to their columns.
fn keep(event: &str, key: &str, v: &Value) -> Option<Value> {
    const SKIP: [&str; 6] = ["csrf", "dag_id", "run_id", "dag_run_id", "task_id", "next"];
    if SKIP.contains(&key) {
        return None;
    }
    // A sign-in's name is its owner; its password is never kept, not even masked.
    if event == "login" && matches!(key, "username" | "password") {
        return None;
    }
    if event.starts_with("bulk_") && key == "actions" {
        return Some(bulk_summary(v));
    }
    let masked = Value::String(MASK.into());
    if is_sensitive(key) {
        return Some(masked);
    }
    if event.contains("variable") && matches!(key, "value" | "val") {
        return Some(masked);
    }
    if event.contains("connection") {
        match (key, v) {
            ("extra", Value::String(s)) => {
                return Some(match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(m)) => m.keys().map(|k| (k.clone(), masked.clone())).collect(),
                    _ => masked,
                });
            }
            ("extra", _) => return Some(masked),
            ("uri", Value::String(s)) => return Some(Value::String(mask_uri(s))),
            _ => {}
        }
    }
    Some(v.clone())
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The row of one answered request, if it is one to log.
fn describe(
    method: &Method,
    path: &str,
    facts: Facts,
    body: &Map<String, Value>,
    resp: &Response,
    remote: Option<String>,
) -> Option<Event> {
    let source = if path.starts_with("/api/") || path.starts_with("/auth/") {
        Source::Api
    } else {
        Source::Ui
    };
    let status = resp.status();
    let outcome = resp.extensions().get::<Outcome>().copied().unwrap_or(
        if status.is_success() || status.is_redirection() {
            Outcome::Success
        } else if matches!(
            status,
            // A throttled sign-in (429) is refused like a wrong password.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
        ) {
            Outcome::Refused
        } else {
            Outcome::Failed
        },
    );
    let changing = is_changing(method);
    let name = match (&facts.route, changing) {
        (Some(r), true) if is_dry_run(r) => return None,
        (Some(r), true) => event_name(method, r).map_or_else(
            || format!("{} {r}", method.as_str().to_ascii_lowercase()),
            str::to_string,
        ),
        // No route matched (a 404 or 405): nothing could change.
        (None, true) if !facts.bad_basic => return None,
        // A read (or an unknown path) refused for bad Basic credentials: a failed sign-in.
        _ => "login".to_string(),
    };
    // Airflow keeps dry-run clears out of the log (its body's dry_run defaults to true).
    if name == "post_clear_task_instances"
        && source == Source::Api
        && body.get("dry_run") != Some(&Value::Bool(false))
        && outcome == Outcome::Success
    {
        return None;
    }
    let mut extra = Map::new();
    let mut dag_id = None;
    let mut run_id = None;
    let mut task_id = None;
    for (k, v) in &facts.params {
        match param_name(k) {
            "dag_id" => dag_id = Some(v.clone()),
            "run_id" => run_id = Some(v.clone()),
            "task_id" => task_id = Some(v.clone()),
            other => {
                extra.insert(other.to_string(), Value::String(v.clone()));
            }
        }
    }
    dag_id = dag_id.or_else(|| text(body.get("dag_id")));
    run_id = run_id
        .or_else(|| text(body.get("dag_run_id")))
        .or_else(|| text(body.get("run_id")));
    if task_id.is_none() {
        task_id = text(body.get("task_id")).or_else(|| match body.get("task_ids") {
            Some(Value::Array(ids)) if ids.len() == 1 => text(ids.first()),
            _ => None,
        });
    }
    let logical_date = text(body.get("logical_date")).and_then(|s| {
        chrono::DateTime::parse_from_rfc3339(&s)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc))
    });
    for (k, v) in body {
        if let Some(v) = keep(&name, k, v) {
            extra.insert(param_name(k).to_string(), v);
        }
    }
    extra.insert("method".into(), Value::String(method.as_str().into()));
    if !changing || facts.route.is_none() {
        extra.insert("path".into(), Value::String(path.to_string()));
    }
    if facts.bad_basic {
        extra.insert("auth".into(), Value::String("basic".into()));
    }
    if facts.api_key {
        extra.insert("auth".into(), Value::String("api_key".into()));
    }
    if outcome != Outcome::Success {
        extra.insert("status".into(), Value::from(status.as_u16()));
    }
    // A sign-in's owner is the name it gave (never the password, masked above).
    let owner = facts
        .user
        .or_else(|| {
            (name == "login")
                .then(|| text(body.get("username")))
                .flatten()
        })
        .unwrap_or_else(|| "anonymous".into());
    Some(Event {
        event: name,
        owner: Some(owner),
        dag_id,
        run_id,
        task_id,
        try_number: None,
        logical_date,
        source,
        remote_addr: remote,
        outcome,
        extra: Some(Value::Object(extra)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_extra() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(keep("login", "password", &v("x")), None);
        assert_eq!(keep("post_pool", "password", &v("x")), Some(v(MASK)));
        assert_eq!(keep("post_variable", "value", &v("x")), Some(v(MASK)));
        assert_eq!(
            keep("post_connection", "uri", &v("postgres://u:pw@h:5/db")),
            Some(v("postgres://u:***@h:5/db"))
        );
        assert_eq!(
            keep("patch_connection", "extra", &v(r#"{"k": "s"}"#)),
            Some(serde_json::json!({"k": MASK}))
        );
        assert_eq!(keep("post_pool", "csrf", &v("x")), None);
        assert_eq!(keep("post_pool", "slots", &v("3")), Some(v("3")));
        // A bulk body keeps each action's kind and keys only (#14 ops2).
        let actions = serde_json::json!([
            {"action": "create", "entities": [{"connection_id": "c", "password": "pw"}]},
            {"action": "delete", "entities": ["k", {"key": "v", "value": "val"}]}
        ]);
        assert_eq!(
            keep("bulk_connections", "actions", &actions),
            Some(serde_json::json!([
                {"action": "create", "entities": ["c"]},
                {"action": "delete", "entities": ["k", "v"]}
            ]))
        );
        assert_eq!(keep("bulk_variables", "actions", &v("x")), Some(v(MASK)));
    }

    #[test]
    fn every_changing_route_has_a_name_and_dry_runs_none() {
        let n = |m: Method, r| event_name(&m, r);
        assert_eq!(
            n(Method::POST, "/api/v2/dags/{dag_id}/dagRuns"),
            Some("trigger_dag_run")
        );
        assert_eq!(
            n(
                Method::POST,
                "/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/clear"
            ),
            Some("post_clear_task_instances")
        );
        assert!(is_dry_run("/api/v2/backfills/dry_run"));
        assert_eq!(n(Method::PUT, "/somewhere/new"), None);
        // Every changing route of the API has Airflow's event name; reads sent as a POST
        // (the batch lists) and dry runs are not changes.
        let mut unnamed = Vec::new();
        for (path, item) in crate::api::openapi().paths.paths.iter() {
            for (method, m) in [
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
            ] {
                if m && !is_dry_run(path)
                    && !path.ends_with("/list")
                    && n(method.clone(), path).is_none()
                {
                    unnamed.push(format!("{method} {path}"));
                }
            }
        }
        assert!(
            unnamed.is_empty(),
            "changing routes without an event name: {unnamed:?}"
        );
    }
}
