//! `/auth/token` and `/api/v2`, with Airflow 3's paths, field names and status codes.

mod dags;
mod runs;

use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::{self, Viewer};
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/token", post(token))
        .route("/api/v2/version", get(version))
        .route("/api/v2/monitor/health", get(health))
        .merge(dags::router())
        .merge(runs::router())
}

/// A JSON body whose problems are a 422 with a message (as FastAPI answers), not a bare 400.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::Unprocessable(e.body_text())),
        }
    }
}

/// Pagination as Airflow has it.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default = "default_limit")]
    pub limit: i64,
    #[serde(default)]
    pub offset: i64,
}

fn default_limit() -> i64 {
    50
}

impl Page {
    pub fn checked(&self) -> Result<(i64, i64), ApiError> {
        if !(0..=1000).contains(&self.limit) || self.offset < 0 {
            return Err(ApiError::Unprocessable(
                "limit must be between 0 and 1000 and offset at least 0".into(),
            ));
        }
        Ok((self.limit, self.offset))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

async fn token(
    State(s): State<AppState>,
    Body(login): Body<Login>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let role = auth::check_password(&s.pool, &login.username, &login.password)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let token = auth::issue_token(&s.token_key, &login.username, role)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "access_token": token })),
    ))
}

async fn version(_: Viewer) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "git_version": null }))
}

async fn health(State(s): State<AppState>, _: Viewer) -> Json<serde_json::Value> {
    let db = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&s.pool)
        .await
        .is_ok();
    let beat: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT max(heartbeat_at) FROM workers WHERE stopped_at IS NULL")
            .fetch_one(&s.pool)
            .await
            .ok()
            .flatten();
    let fresh = beat.is_some_and(|b| chrono::Utc::now() - b < chrono::Duration::seconds(60));
    Json(serde_json::json!({
        "metadatabase": { "status": if db { "healthy" } else { "unhealthy" } },
        "scheduler": {
            "status": if fresh { "healthy" } else { "unhealthy" },
            "latest_scheduler_heartbeat": beat,
        },
    }))
}
