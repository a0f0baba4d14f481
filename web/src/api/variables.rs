//! `GET|POST /api/v2/variables`, `GET|PATCH|DELETE /api/v2/variables/{variable_key}`, as in
//! Airflow 3, on upiflow's variables (`upiflow_engine::secrets`). The value of a variable
//! whose key is sensitive (Airflow's list: `password`, `secret`, `token`, `api_key`, ...) reads
//! `***`, and so do sensitive keys inside a JSON object value (Airflow's redaction).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use upiflow_engine::EngineError;
use upiflow_engine::secrets::{StoredVariable, VarOrder, redact};
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
        .routes(routes!(one, patch, delete))
}

/// Airflow's `VariableResponse`.
#[derive(Serialize, ToSchema)]
pub struct VariableResponse {
    key: String,
    /// The stored text, redacted where the key (or a key inside a JSON object) is sensitive.
    value: Option<String>,
    description: Option<String>,
    is_encrypted: bool,
    /// Always `null`: upiflow has no multi-team mode.
    team_name: Option<String>,
}

fn to_response(v: StoredVariable) -> VariableResponse {
    VariableResponse {
        value: Some(redact::variable(&v.key, &v.val)),
        key: v.key,
        description: v.description,
        is_encrypted: v.is_encrypted,
        team_name: None,
    }
}

/// Airflow's `VariableCollectionResponse`.
#[derive(Serialize, ToSchema)]
pub struct VariableCollectionResponse {
    variables: Vec<VariableResponse>,
    total_entries: i64,
}

fn not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("The Variable with key: `{key}` was not found"))
}

fn var_error(key: &str, e: EngineError) -> ApiError {
    match e {
        EngineError::VariableNotFound(_) => not_found(key),
        EngineError::VariableExists(_) => {
            ApiError::Conflict(format!("The Variable with key: `{key}` already exists"))
        }
        e if e.kind() == upiflow_engine::ErrorKind::Invalid => {
            ApiError::Unprocessable(e.to_string())
        }
        e => e.into(),
    }
}

/// Query parameters of the variable list (for the document; [`list`] reads them one by one).
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
struct VariableListQuery {
    /// At most this many entries (0 to 1000).
    #[param(default = 50, minimum = 0, maximum = 1000)]
    limit: Option<i64>,
    #[param(default = 0, minimum = 0)]
    offset: Option<i64>,
    /// Sort keys (repeat the parameter), `-` first for descending: `key` (the default),
    /// `description`, `is_encrypted`.
    order_by: Option<Vec<String>>,
    /// Case-insensitive substring (`%` and `_` are wildcards, `|` separates alternatives,
    /// `~` matches all).
    variable_key_pattern: Option<String>,
    /// Case-sensitive prefix (`|` separates alternatives, `~` matches all).
    variable_key_prefix_pattern: Option<String>,
}

fn var_order(key: &str) -> Option<VarOrder> {
    match key {
        "key" => Some(VarOrder::Key),
        "description" => Some(VarOrder::Description),
        "is_encrypted" => Some(VarOrder::IsEncrypted),
        _ => None,
    }
}

/// Stored variables, by key unless `order_by` says otherwise.
#[utoipa::path(get, path = "/api/v2/variables", tag = "Variable",
    params(VariableListQuery),
    responses((status = 200, body = VariableCollectionResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn list(
    State(s): State<AppState>,
    _: Viewer,
    mut q: Query,
) -> Result<Json<VariableCollectionResponse>, ApiError> {
    let (limit, offset) = q.page()?;
    let order = q.order_by(var_order, " (upiflow sorts variables by key, description or is_encrypted; they have no id, and values are not sorted so their order reveals nothing)")?;
    let matches = q.patterns("variable_key")?;
    q.finish::<&str>(&[])?;
    let (rows, total) = s
        .secrets
        .list_variables(&matches, &order, limit, offset)
        .await?;
    Ok(Json(VariableCollectionResponse {
        variables: rows.into_iter().map(to_response).collect(),
        total_entries: total,
    }))
}

/// One stored variable.
#[utoipa::path(get, path = "/api/v2/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path)),
    responses((status = 200, body = VariableResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn one(
    State(s): State<AppState>,
    _: Viewer,
    Ids(key): Ids<String>,
    _: NoQuery,
) -> Result<Json<VariableResponse>, ApiError> {
    let found = s
        .secrets
        .stored_variable(&key)
        .await
        .map_err(|e| var_error(&key, e))?;
    Ok(Json(to_response(found.ok_or_else(|| not_found(&key))?)))
}

/// Airflow's `VariableBody`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VariableBody {
    /// 1-250 characters.
    key: String,
    /// A string is stored as it is; any other JSON value as its JSON text.
    #[schema(value_type = Object)]
    value: Value,
    /// In a patch, left out: kept; `null`: removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// Only `null`: upiflow has no multi-team mode.
    #[serde(default)]
    team_name: Option<String>,
}

impl VariableBody {
    fn checked(&self) -> Result<(), ApiError> {
        if self.team_name.is_some() {
            return Err(ApiError::Unprocessable(
                "team_name cannot be set: upiflow has no multi-team mode".into(),
            ));
        }
        upiflow_engine::secrets::check_var_key(&self.key)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
    }

    /// The text stored for `value`.
    fn text(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Creates a variable (admin); a 409 if one of that key is stored.
#[utoipa::path(post, path = "/api/v2/variables", tag = "Variable",
    request_body = VariableBody,
    responses((status = 201, body = VariableResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn create(
    State(s): State<AppState>,
    _: Allowed<may::Variables>,
    _: NoQuery,
    Body(b): Body<VariableBody>,
) -> Result<(StatusCode, Json<VariableResponse>), ApiError> {
    b.checked()?;
    let stored = s
        .secrets
        .add_variable(
            &b.key,
            &b.text(),
            b.description.clone().flatten().as_deref(),
        )
        .await
        .map_err(|e| var_error(&b.key, e))?;
    Ok((StatusCode::CREATED, Json(to_response(stored))))
}

/// What `update_mask` may name (the key is never changed).
const FIELDS: [&str; 3] = ["key", "value", "description"];

/// Changes a variable (admin): its value and the description if the body gives one, or with
/// `update_mask` only those it names. A value of `***` (what a sensitive one reads) keeps the
/// stored value.
#[utoipa::path(patch, path = "/api/v2/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path),
        ("update_mask" = Option<Vec<String>>, Query,
            description = "Fields to change: value, description")),
    request_body = VariableBody,
    responses((status = 200, body = VariableResponse),
        (status = 400, body = HTTPExceptionResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn patch(
    State(s): State<AppState>,
    _: Allowed<may::Variables>,
    Ids(key): Ids<String>,
    mut q: Query,
    Body(b): Body<VariableBody>,
) -> Result<Json<VariableResponse>, ApiError> {
    let given: &[&str] = if b.description.is_some() {
        &["value", "description"]
    } else {
        &["value"]
    };
    let fields = update_mask(&mut q, given, &FIELDS)?;
    q.finish::<&str>(&[])?;
    if b.key != key {
        return Err(ApiError::BadRequest(
            "Invalid body, key from request body doesn't match uri parameter".into(),
        ));
    }
    b.checked()?;
    let text = b.text();
    let stored = s
        .secrets
        .patch_variable(&key, &|val, description| {
            if fields.contains(&"value") && text != redact::MASK {
                *val = text.clone();
            }
            if fields.contains(&"description") {
                *description = b.description.clone().flatten();
            }
            Ok(())
        })
        .await
        .map_err(|e| var_error(&key, e))?;
    Ok(Json(to_response(stored)))
}

/// Deletes a stored variable (admin).
#[utoipa::path(delete, path = "/api/v2/variables/{variable_key}", tag = "Variable",
    params(("variable_key" = String, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn delete(
    State(s): State<AppState>,
    _: Allowed<may::Variables>,
    Ids(key): Ids<String>,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    s.secrets
        .delete_variable(&key)
        .await
        .map_err(|e| var_error(&key, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A variable in a bulk request: the same calls and checks as the single routes.
struct VariableEntity;

/// Sets the value (unless it is `***`, what a sensitive one reads) and, if named, the
/// description of the variable `b` names.
async fn set_fields(s: &AppState, b: &VariableBody, fields: &[&str]) -> Result<(), ApiError> {
    let text = b.text();
    s.secrets
        .patch_variable(&b.key, &|val, description| {
            if fields.contains(&"value") && text != redact::MASK {
                *val = text.clone();
            }
            if fields.contains(&"description") {
                *description = b.description.clone().flatten();
            }
            Ok(())
        })
        .await
        .map_err(|e| var_error(&b.key, e))?;
    Ok(())
}

impl bulk::Entity for VariableEntity {
    type Body = VariableBody;
    const PLURAL: &'static str = "variables with these keys:";

    fn key(b: &VariableBody) -> String {
        b.key.clone()
    }

    fn check(b: &VariableBody, mask: Option<&[String]>) -> Result<(), ApiError> {
        b.checked()?;
        bulk::check_mask(mask, &FIELDS)
    }

    fn check_key(key: &str) -> Result<(), ApiError> {
        upiflow_engine::secrets::check_var_key(key)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))
    }

    async fn exists(s: &AppState, key: &str) -> Result<bool, ApiError> {
        let found = s
            .secrets
            .stored_variable(key)
            .await
            .map_err(|e| var_error(key, e))?;
        Ok(found.is_some())
    }

    async fn create(s: &AppState, b: &VariableBody) -> Result<(), ApiError> {
        s.secrets
            .add_variable(
                &b.key,
                &b.text(),
                b.description.clone().flatten().as_deref(),
            )
            .await
            .map_err(|e| var_error(&b.key, e))?;
        Ok(())
    }

    /// The value and the description (one left out is removed), as Airflow's overwrite.
    async fn replace(s: &AppState, b: &VariableBody) -> Result<(), ApiError> {
        set_fields(s, b, &["value", "description"]).await
    }

    /// The value, and the description if the body gives one; with a mask, those it names.
    async fn update(
        s: &AppState,
        b: &VariableBody,
        mask: Option<&[String]>,
    ) -> Result<(), ApiError> {
        let given: &[&str] = if b.description.is_some() {
            &["value", "description"]
        } else {
            &["value"]
        };
        let fields: Vec<&str> = match mask {
            None => given.to_vec(),
            Some(m) => m.iter().map(String::as_str).collect(),
        };
        set_fields(s, b, &fields).await
    }

    async fn delete(s: &AppState, key: &str) -> Result<(), ApiError> {
        s.secrets
            .delete_variable(key)
            .await
            .map_err(|e| var_error(key, e))
    }
}

/// Creates, updates and deletes variables in one request (admin), as Airflow's
/// `bulk_variables`: `BulkBody[VariableBody]` in, `BulkResponse` (keys only, never a value)
/// out. Applied action by action, not as one transaction; see `api::bulk`.
#[utoipa::path(patch, path = "/api/v2/variables", tag = "Variable",
    request_body(content = Object, description = "Airflow's BulkBody[VariableBody]"),
    responses((status = 200, body = BulkResponse),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn bulk(
    State(s): State<AppState>,
    _: Allowed<may::Variables>,
    _: NoQuery,
    Body(b): Body<BulkBody<VariableBody>>,
) -> Result<Json<BulkResponse>, ApiError> {
    Ok(Json(bulk::apply::<VariableEntity>(&s, b).await?))
}
