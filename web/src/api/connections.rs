//! `GET|POST /api/v2/connections`, `GET|PATCH|DELETE /api/v2/connections/{connection_id}` and
//! `POST /api/v2/connections/test`, as in Airflow 3, on upiflow's connections
//! (`upiflow_engine::secrets`). Passwords and sensitive extras never leave as they are: they
//! read `***` (Airflow's redaction), and a `***` sent back in a patch keeps the stored value
//! (Airflow's merge), so a client can round-trip what it read.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use upiflow_engine::EngineError;
use upiflow_engine::secrets::{ConnOrder, Connection, StoredConnection, redact};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::bulk::{self, BulkBody, BulkResponse};
use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use super::runs::{present, update_mask};
use super::{Body, Ids};
use crate::AppState;
use crate::auth::{Allowed, Viewer};
use crate::error::ApiError;
use crate::roles::may;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create, bulk))
        .routes(routes!(test))
        .routes(routes!(one, patch, delete))
}

/// Airflow's `ConnectionResponse`: the password and sensitive extras redacted.
#[derive(Serialize, ToSchema)]
pub struct ConnectionResponse {
    connection_id: String,
    conn_type: String,
    description: Option<String>,
    host: Option<String>,
    login: Option<String>,
    schema: Option<String>,
    port: Option<i32>,
    /// `***` when one is set.
    password: Option<String>,
    /// The extras as a JSON object's text, sensitive values as `***`.
    extra: Option<String>,
    /// Always `null`: upiflow has no multi-team mode.
    team_name: Option<String>,
}

fn to_response(s: StoredConnection) -> ConnectionResponse {
    let c = s.connection;
    ConnectionResponse {
        password: c.password.as_ref().map(|_| redact::MASK.to_string()),
        extra: if c.extra.is_empty() {
            None
        } else {
            Some(Value::Object(redact::extra(&c.extra)).to_string())
        },
        connection_id: c.conn_id,
        conn_type: c.conn_type,
        description: c.description,
        host: c.host,
        login: c.login,
        schema: c.schema,
        port: c.port.map(i32::from),
        team_name: None,
    }
}

/// Airflow's `ConnectionCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct ConnectionCollectionResponse {
    connections: Vec<ConnectionResponse>,
    total_entries: i64,
}

/// Airflow's `ConnectionTestResponse`.
#[derive(Serialize, ToSchema)]
pub struct ConnectionTestResponse {
    status: bool,
    message: String,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "The Connection with connection_id: `{id}` was not found"
    ))
}

/// An engine error of a connection route: a missing one in Airflow's words, a refused
/// field as a 422 (pydantic refuses them in Airflow's bodies).
fn conn_error(id: &str, e: EngineError) -> ApiError {
    match e {
        EngineError::ConnectionNotFound(_) => not_found(id),
        EngineError::ConnectionExists(_) => ApiError::Conflict(format!(
            "The Connection with connection_id: `{id}` already exists"
        )),
        e if e.kind() == upiflow_engine::ErrorKind::Invalid => {
            ApiError::Unprocessable(e.to_string())
        }
        e => e.into(),
    }
}

/// Query parameters of the connection list (for the document; [`list`] reads them one by one).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct ConnectionListQuery {
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// Sort keys (repeat the parameter), `-` first for descending: `connection_id` (the
    /// default; alias `conn_id`), `conn_type`, `description`, `host`, `port`.
    order_by: Option<Vec<String>>,
    /// Case-insensitive substring (`%` and `_` are wildcards, `|` separates alternatives,
    /// `~` matches all).
    connection_id_pattern: Option<String>,
    /// Case-sensitive prefix (`|` separates alternatives, `~` matches all).
    connection_id_prefix_pattern: Option<String>,
}

fn conn_order(key: &str) -> Option<ConnOrder> {
    match key {
        "connection_id" | "conn_id" => Some(ConnOrder::ConnId),
        "conn_type" => Some(ConnOrder::ConnType),
        "description" => Some(ConnOrder::Description),
        "host" => Some(ConnOrder::Host),
        "port" => Some(ConnOrder::Port),
        _ => None,
    }
}

/// Stored connections (not those only in the environment, as in Airflow), by id unless
/// `order_by` says otherwise.
#[utoipa::path(get, path = "/api/v2/connections", tag = "Connection",
    params(ConnectionListQuery),
    responses((status = 200, body = ConnectionCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<ConnectionCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(conn_order, " (upiflow sorts connections by connection_id, conn_type, description, host or port; they have no id)")?;
    let matches = q.patterns("connection_id")?;
    q.finish::<&str>(&[])?;
    let (rows, total) = s
        .secrets
        .list_connections(&matches, &order, limit, offset)
        .await?;
    Ok(Json(ConnectionCollectionResponse {
        connections: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

/// One stored connection.
#[utoipa::path(get, path = "/api/v2/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path)),
    responses((status = 200, body = ConnectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(id): Ids<String>,
    _: NoQuery,
) -> Result<Json<ConnectionResponse>, ApiError> {
    let found = s
        .secrets
        .stored_connection(&id)
        .await
        .map_err(|e| conn_error(&id, e))?;
    Ok(Json(to_response(found.ok_or_else(|| not_found(&id))?)))
}

/// Airflow's `ConnectionBody`. Every field but `connection_id` and `conn_type` may be left out
/// (in a patch, only those given, or named by `update_mask`, change).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ConnectionBody {
    /// 1-200 letters, digits, `_`, `.` or `-` (Airflow's `^[\w.-]+$`).
    connection_id: String,
    conn_type: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    host: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    login: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    schema: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    port: Option<Option<i64>>,
    /// `***` in a patch keeps the stored password.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    password: Option<Option<String>>,
    /// A JSON object's text (`""` is `{}`); in a patch, a `***` value keeps the stored one.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    extra: Option<Option<String>>,
    /// Only `null`: upiflow has no multi-team mode.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    team_name: Option<Option<String>>,
}

/// What `update_mask` may name (the id is never changed).
const FIELDS: [&str; 9] = [
    "connection_id",
    "conn_type",
    "description",
    "host",
    "login",
    "schema",
    "port",
    "password",
    "extra",
];

/// Airflow's body rule for ids (stricter than what the environment may name).
fn check_body_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.chars().count() <= 200
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "connection_id: `{id}` must be 1-200 letters, digits, `_`, `.` or `-`"
        )))
    }
}

fn parse_extra(text: &str) -> Result<Map<String, Value>, ApiError> {
    if text.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::Unprocessable(
            "extra: The `extra` field must be a valid JSON object (e.g., {'key': 'value'})".into(),
        )),
    }
}

fn port_of(p: Option<i64>) -> Result<Option<u16>, ApiError> {
    match p {
        None => Ok(None),
        Some(n) => u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::Unprocessable(format!("port: {n} is not between 1 and 65535"))
            }),
    }
}

impl ConnectionBody {
    fn checked(&self) -> Result<(), ApiError> {
        check_body_id(&self.connection_id)?;
        if matches!(self.team_name, Some(Some(_))) {
            return Err(ApiError::Unprocessable(
                "team_name cannot be set: upiflow has no multi-team mode".into(),
            ));
        }
        Ok(())
    }

    /// The fields the body gives (`conn_type` always).
    fn given(&self) -> Vec<&'static str> {
        let mut out = vec!["conn_type"];
        for (field, given) in [
            ("description", self.description.is_some()),
            ("host", self.host.is_some()),
            ("login", self.login.is_some()),
            ("schema", self.schema.is_some()),
            ("port", self.port.is_some()),
            ("password", self.password.is_some()),
            ("extra", self.extra.is_some()),
        ] {
            if given {
                out.push(field);
            }
        }
        out
    }

    /// Applies `fields` of the body to `c`, merging `***` with what `c` holds.
    fn apply(&self, c: &mut Connection, fields: &[&str]) -> Result<(), ApiError> {
        let wanted = |f: &str| fields.contains(&f);
        if wanted("conn_type") {
            c.conn_type = self.conn_type.clone();
        }
        if wanted("description") {
            c.description = self.description.clone().flatten();
        }
        if wanted("host") {
            c.host = self.host.clone().flatten();
        }
        if wanted("login") {
            c.login = self.login.clone().flatten();
        }
        if wanted("schema") {
            c.schema = self.schema.clone().flatten();
        }
        if wanted("port") {
            c.port = port_of(self.port.flatten())?;
        }
        if wanted("password") {
            c.password = match self.password.clone().flatten() {
                Some(p) if p == redact::MASK => c.password.take(),
                p => p,
            };
        }
        if wanted("extra") {
            c.extra = match self.extra.clone().flatten() {
                None => Map::new(),
                Some(text) => redact::merge_extra(parse_extra(&text)?, &c.extra),
            };
        }
        Ok(())
    }

    /// The connection this body describes on its own.
    fn connection(&self) -> Result<Connection, ApiError> {
        let mut c = Connection {
            conn_id: self.connection_id.clone(),
            ..Connection::default()
        };
        self.apply(&mut c, &self.given())?;
        // Nothing stored to merge a `***` with: it is the password itself.
        if self.password.clone().flatten().as_deref() == Some(redact::MASK) {
            c.password = Some(redact::MASK.to_string());
        }
        Ok(c)
    }
}

/// Creates a connection (admin); a 409 if one of that id is stored.
#[utoipa::path(post, path = "/api/v2/connections", tag = "Connection",
    request_body = ConnectionBody,
    responses((status = 201, body = ConnectionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn create(
    State(s): State<AppState>,
    _: Allowed<may::Connections>,
    _: NoQuery,
    Body(b): Body<ConnectionBody>,
) -> Result<(StatusCode, Json<ConnectionResponse>), ApiError> {
    b.checked()?;
    let c = b.connection()?;
    let stored = s
        .secrets
        .add_connection(&c)
        .await
        .map_err(|e| conn_error(&b.connection_id, e))?;
    Ok((StatusCode::CREATED, Json(to_response(stored))))
}

/// Changes a connection (admin). Without `update_mask` the fields the body gives change;
/// with it, only those of them it names. `***` as the password, or as an extra's value, keeps
/// what is stored (Airflow's merge of redacted values).
#[utoipa::path(patch, path = "/api/v2/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Fields to change: conn_type, description, host, login, schema, port, password, extra")),
    request_body = ConnectionBody,
    responses((status = 200, body = ConnectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch(
    State(s): State<AppState>,
    _: Allowed<may::Connections>,
    Ids(id): Ids<String>,
    mut q: Query,
    Body(b): Body<ConnectionBody>,
) -> Result<Json<ConnectionResponse>, ApiError> {
    let fields = update_mask(&mut q, &b.given(), &FIELDS)?;
    q.finish::<&str>(&[])?;
    if b.connection_id != id {
        return Err(ApiError::BadRequest(
            "The connection_id in the request body does not match the URL parameter".into(),
        ));
    }
    b.checked()?;
    // The body is checked before the database is touched, so a bad field is a 422 and
    // nothing is written.
    b.apply(&mut Connection::default(), &fields)?;
    let stored = s
        .secrets
        .patch_connection(&id, &|c| {
            b.apply(c, &fields).map_err(|e| EngineError::ConnInvalid {
                conn_id: c.conn_id.clone(),
                reason: e.to_string(),
            })
        })
        .await
        .map_err(|e| conn_error(&id, e))?;
    Ok(Json(to_response(stored)))
}

/// Deletes a stored connection (admin).
#[utoipa::path(delete, path = "/api/v2/connections/{connection_id}", tag = "Connection",
    params(("connection_id" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn delete(
    State(s): State<AppState>,
    _: Allowed<may::Connections>,
    Ids(id): Ids<String>,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    s.secrets
        .delete_connection(&id)
        .await
        .map_err(|e| conn_error(&id, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long a test may take to connect and answer.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Tests a connection (admin): the body's fields over the connection of that id if one is
/// stored or in the environment (so `***` stands for its password), as Airflow does; a
/// Postgres-protocol connection is opened and asked `SELECT 1`. The answer says whether it
/// worked and why not; other types say that upiflow cannot test them.
#[utoipa::path(post, path = "/api/v2/connections/test", tag = "Connection",
    request_body = ConnectionBody,
    responses((status = 200, body = ConnectionTestResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn test(
    State(s): State<AppState>,
    _: Allowed<may::Connections>,
    _: NoQuery,
    Body(b): Body<ConnectionBody>,
) -> Result<Json<ConnectionTestResponse>, ApiError> {
    b.checked()?;
    let known = s
        .secrets
        .connection(&b.connection_id)
        .await
        .map_err(|e| conn_error(&b.connection_id, e))?;
    let c = match known {
        Some(mut c) => {
            b.apply(&mut c, &b.given())?;
            c
        }
        None => b.connection()?,
    };
    // The message comes masked (the connection's password and sensitive extras).
    let tested = c.test(TEST_TIMEOUT).await;
    Ok(Json(ConnectionTestResponse {
        status: tested.status,
        message: tested.message,
    }))
}

/// A connection in a bulk request: the same calls and checks as the single routes.
struct ConnectionEntity;

/// Every field but the id (an overwrite sets them all; one left out becomes empty).
const ALL_BUT_ID: [&str; 8] = [
    "conn_type",
    "description",
    "host",
    "login",
    "schema",
    "port",
    "password",
    "extra",
];

async fn set_fields(s: &AppState, b: &ConnectionBody, fields: &[&str]) -> Result<(), ApiError> {
    s.secrets
        .patch_connection(&b.connection_id, &|c| {
            b.apply(c, fields).map_err(|e| EngineError::ConnInvalid {
                conn_id: c.conn_id.clone(),
                reason: e.to_string(),
            })
        })
        .await
        .map_err(|e| conn_error(&b.connection_id, e))?;
    Ok(())
}

impl bulk::Entity for ConnectionEntity {
    type Body = ConnectionBody;
    const PLURAL: &'static str = "connections with these connection_ids:";

    fn key(b: &ConnectionBody) -> String {
        b.connection_id.clone()
    }

    fn check(b: &ConnectionBody, mask: Option<&[String]>) -> Result<(), ApiError> {
        b.checked()?;
        bulk::check_mask(mask, &FIELDS)?;
        // A bad port or extra is refused before anything is written.
        b.apply(&mut Connection::default(), &b.given())
    }

    fn check_key(key: &str) -> Result<(), ApiError> {
        check_body_id(key)
    }

    async fn exists(s: &AppState, key: &str) -> Result<bool, ApiError> {
        let found = s
            .secrets
            .stored_connection(key)
            .await
            .map_err(|e| conn_error(key, e))?;
        Ok(found.is_some())
    }

    async fn create(s: &AppState, b: &ConnectionBody) -> Result<(), ApiError> {
        let c = b.connection()?;
        s.secrets
            .add_connection(&c)
            .await
            .map_err(|e| conn_error(&b.connection_id, e))?;
        Ok(())
    }

    /// Every field from the body (Airflow's overwrite); `***` as the password or an extra's
    /// value keeps the stored one, as in a patch.
    async fn replace(s: &AppState, b: &ConnectionBody) -> Result<(), ApiError> {
        set_fields(s, b, &ALL_BUT_ID).await
    }

    /// The fields the body gives, or with a mask those it names (as the single patch).
    async fn update(
        s: &AppState,
        b: &ConnectionBody,
        mask: Option<&[String]>,
    ) -> Result<(), ApiError> {
        let fields: Vec<&str> = match mask {
            None => b.given(),
            Some(m) => m
                .iter()
                .map(String::as_str)
                .filter(|f| *f != "connection_id")
                .collect(),
        };
        set_fields(s, b, &fields).await
    }

    async fn delete(s: &AppState, key: &str) -> Result<(), ApiError> {
        s.secrets
            .delete_connection(key)
            .await
            .map_err(|e| conn_error(key, e))
    }
}

/// Creates, updates and deletes connections in one request (admin), as Airflow's
/// `bulk_connections`: `BulkBody[ConnectionBody]` in, `BulkResponse` (ids only, never a
/// password) out. Applied action by action, not as one transaction; see `api::bulk`.
#[utoipa::path(patch, path = "/api/v2/connections", tag = "Connection",
    request_body(content = Object, description = "Airflow's BulkBody[ConnectionBody]"),
    responses((status = 200, body = BulkResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn bulk(
    State(s): State<AppState>,
    _: Allowed<may::Connections>,
    _: NoQuery,
    Body(b): Body<BulkBody<ConnectionBody>>,
) -> Result<Json<BulkResponse>, ApiError> {
    Ok(Json(bulk::apply::<ConnectionEntity>(&s, b).await?))
}
