//! The API's one error type, its variants named by status. Database errors become a 500 with
//! the cause logged, never sent to the client. Bodies are Airflow's: `{"detail": "..."}`, and
//! for a 422 `{"detail": [{"type", "loc", "msg"}]}` (FastAPI's `HTTPValidationError`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use upiflow_engine::{EngineError, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not authenticated")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooLarge(String),
    /// The database failed transiently (see `crate::retry`): a 503 the request is replayed on.
    #[error("the database is unavailable for the moment; try again")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "request failed on a transient database error");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        // As FastAPI answers: a 422 lists its problems, every other error is one `detail`.
        let body = if status == StatusCode::UNPROCESSABLE_ENTITY {
            serde_json::json!({ "detail": [{
                "type": "value_error",
                "loc": [],
                "msg": self.to_string(),
            }] })
        } else {
            serde_json::json!({ "detail": self.to_string() })
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.extensions_mut().insert(crate::retry::Transient);
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer, Basic realm=\"upiflow\""),
            );
        }
        resp
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound(e.client_message()),
            ErrorKind::Conflict => Self::Conflict(e.client_message()),
            ErrorKind::Invalid => Self::BadRequest(e.client_message()),
            ErrorKind::Unavailable => Self::Unavailable(anyhow_chain(&e)),
            ErrorKind::Internal => Self::Internal(anyhow_chain(&e)),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if upiflow_engine::transient::is_transient_sqlx(&e) {
            Self::Unavailable(e.to_string())
        } else {
            Self::Internal(e.to_string())
        }
    }
}

fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
