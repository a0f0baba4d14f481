//! `POST /api/v2/dags/{dag_id}/favorite` and `/unfavorite` (Airflow 3.1): each signed-in
//! user's own favourite DAGs, which `GET /api/v2/dags?is_favorite=` filters on. Any role may
//! call them (they change only the caller's own list, as in Airflow, where they need only DAG
//! read access); the caller is the authenticated user, or the API key by its name (kept
//! apart from users' names).

use axum::extract::State;
use axum::http::StatusCode;
use upiflow_engine::EngineError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::dags::{not_found, owner};
use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::NoQuery;
use crate::AppState;
use crate::auth::Viewer;
use crate::error::ApiError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(favorite))
        .routes(routes!(unfavorite))
}

async fn set(
    s: &AppState,
    user: &Viewer,
    dag_id: &str,
    favorite: bool,
) -> Result<StatusCode, ApiError> {
    upiflow_engine::ops::set_favorite(&s.pool, &owner(user), dag_id, favorite)
        .await
        .map_err(|e| match e {
            EngineError::DagNotFound(_) => not_found(dag_id),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Marks the DAG a favourite of the signed-in user. A 409 if it is one already (Airflow's
/// unique key on `dag_favorite` answers so).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/favorite", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 204, description = "The DAG is a favourite of the caller"),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn favorite(
    State(s): State<AppState>,
    user: Viewer,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    set(&s, &user, &dag_id, true).await
}

/// Unmarks the DAG as a favourite of the signed-in user. A 409 if it was not one, as
/// Airflow answers.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/unfavorite", tag = "DAG",
    params(("dag_id" = String, Path)),
    responses((status = 204, description = "The DAG is no favourite of the caller"),
        (status = 401, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 409, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn unfavorite(
    State(s): State<AppState>,
    user: Viewer,
    Ids(dag_id): Ids<String>,
    _: NoQuery,
) -> Result<StatusCode, ApiError> {
    set(&s, &user, &dag_id, false).await
}
