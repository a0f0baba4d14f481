//! The one HTTP error type of the API and the UI, its variants named by status.
//!
//! [`HttpError`] is the problem; its type parameter is how it is shown, a zero-sized marker:
//! [`Json`] for the API ([`ApiError`]), Airflow's bodies `{"detail": "..."}` and for a 422
//! `{"detail": [{"type", "loc", "msg"}]}` (FastAPI's `HTTPValidationError`); [`Page`] for the
//! UI ([`crate::ui::UiError`], rendered in `ui/mod.rs`), an HTML error page or, for a missing
//! session, a redirect to the login page. `?` turns one into the other where a UI handler
//! calls code shared with the API.
//!
//! Engine and database errors are classified by [`EngineError::kind`] and
//! [`upiflow_engine::error::db_kind`]: a violated unique key is a 409, a violated foreign-key,
//! check or not-null constraint or a value the database cannot hold a 422, each with a message
//! naming the constraint ([`db_message`], never the statement); a transient failure a 503 the
//! request is replayed on (`crate::retry`); anything else a 500 with the cause logged, never
//! sent to the client.

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use upiflow_engine::EngineError;
use upiflow_engine::error::{ErrorKind, db_kind, db_message};

/// Shown as JSON, as Airflow's API answers.
#[derive(Debug, Clone, Copy)]
pub struct Json;

/// Shown as an HTML page of the UI.
#[derive(Debug, Clone, Copy)]
pub struct Page;

/// The API's error.
pub type ApiError = HttpError<Json>;

/// What went wrong in a request, by the status it answers; `F` says how it is shown.
pub enum HttpError<F = Json> {
    BadRequest(String),
    /// No or bad credentials (401; the UI sends the browser to the login page).
    Unauthorized,
    /// No session on a UI page: the UI redirects to the login page, to come back to this
    /// path; the API answers 401.
    LoginRequired(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// Well-formed but not acceptable (422; the UI shows it as a 400, as it always has).
    Unprocessable(String),
    TooLarge(String),
    /// Too many failed sign-ins (429): the message, and the seconds until the next attempt
    /// is heard (`Retry-After`).
    TooManyRequests(String, u64),
    /// The database failed transiently (see `crate::retry`): a 503 the request is replayed on.
    /// The cause is logged, not shown.
    Unavailable(String),
    /// A bug or a broken environment (500); the cause is logged, not shown.
    Internal(String),
    #[doc(hidden)]
    _Format(Infallible, PhantomData<F>),
}

impl<F> HttpError<F> {
    /// The same problem, shown another way.
    pub fn reformat<G>(self) -> HttpError<G> {
        match self {
            Self::BadRequest(m) => HttpError::BadRequest(m),
            Self::Unauthorized => HttpError::Unauthorized,
            Self::LoginRequired(m) => HttpError::LoginRequired(m),
            Self::Forbidden(m) => HttpError::Forbidden(m),
            Self::NotFound(m) => HttpError::NotFound(m),
            Self::Conflict(m) => HttpError::Conflict(m),
            Self::Unprocessable(m) => HttpError::Unprocessable(m),
            Self::TooLarge(m) => HttpError::TooLarge(m),
            Self::TooManyRequests(m, s) => HttpError::TooManyRequests(m, s),
            Self::Unavailable(m) => HttpError::Unavailable(m),
            Self::Internal(m) => HttpError::Internal(m),
            Self::_Format(never, _) => match never {},
        }
    }

    /// The `Retry-After` of a throttled request (the API's and the UI's answer alike).
    pub fn retry_after(&self) -> Option<axum::http::HeaderValue> {
        match self {
            Self::TooManyRequests(_, secs) => Some((*secs).into()),
            _ => None,
        }
    }

    /// The status the API answers with (the UI's differs for 401 and 422, see its renderer).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::LoginRequired(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::_Format(never, _) => match *never {},
        }
    }
}

/// What the client is told: never the cause of a 500 or a 503.
impl<F> fmt::Display for HttpError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRequest(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::Unprocessable(m)
            | Self::TooLarge(m)
            | Self::TooManyRequests(m, _) => f.write_str(m),
            Self::Unauthorized => f.write_str("not authenticated"),
            Self::LoginRequired(here) => write!(f, "log in to see {here}"),
            Self::Unavailable(_) => {
                f.write_str("the database is unavailable for the moment; try again")
            }
            Self::Internal(_) => f.write_str("internal error"),
            Self::_Format(never, _) => match *never {},
        }
    }
}

impl<F> fmt::Debug for HttpError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, m) = match self {
            Self::BadRequest(m) => ("BadRequest", Some(m)),
            Self::Unauthorized => ("Unauthorized", None),
            Self::LoginRequired(m) => ("LoginRequired", Some(m)),
            Self::Forbidden(m) => ("Forbidden", Some(m)),
            Self::NotFound(m) => ("NotFound", Some(m)),
            Self::Conflict(m) => ("Conflict", Some(m)),
            Self::Unprocessable(m) => ("Unprocessable", Some(m)),
            Self::TooLarge(m) => ("TooLarge", Some(m)),
            Self::TooManyRequests(m, _) => ("TooManyRequests", Some(m)),
            Self::Unavailable(m) => ("Unavailable", Some(m)),
            Self::Internal(m) => ("Internal", Some(m)),
            Self::_Format(never, _) => match *never {},
        };
        match m {
            Some(m) => f.debug_tuple(name).field(m).finish(),
            None => f.write_str(name),
        }
    }
}

impl<F> std::error::Error for HttpError<F> {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "request failed on a transient database error");
            }
            Self::Internal(cause) => tracing::error!(%cause, "request failed"),
            _ => {}
        }
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
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.extensions_mut().insert(crate::retry::Transient);
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if let Some(v) = self.retry_after() {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
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

/// A UI handler calling code shared with the API: the same problem, as a page.
impl From<ApiError> for HttpError<Page> {
    fn from(e: ApiError) -> Self {
        e.reformat()
    }
}

impl<F> From<EngineError> for HttpError<F> {
    fn from(e: EngineError) -> Self {
        // A database error speaks for itself: its constraint, not the engine's wrapping
        // text ("database error").
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound(e.to_string()),
            ErrorKind::Conflict => Self::Conflict(e.client_message()),
            ErrorKind::Invalid if e.db_error().is_some() => Self::Unprocessable(e.client_message()),
            ErrorKind::Invalid => Self::BadRequest(e.to_string()),
            ErrorKind::Unavailable => Self::Unavailable(chain(&e)),
            ErrorKind::Internal => Self::Internal(chain(&e)),
        }
    }
}

impl<F> From<sqlx::Error> for HttpError<F> {
    fn from(e: sqlx::Error) -> Self {
        match db_kind(&e) {
            ErrorKind::Conflict => Self::Conflict(db_message(&e)),
            ErrorKind::Invalid => Self::Unprocessable(db_message(&e)),
            ErrorKind::Unavailable => Self::Unavailable(chain(&e)),
            ErrorKind::NotFound | ErrorKind::Internal => Self::Internal(chain(&e)),
        }
    }
}

/// The error and its causes, `: `-separated, for the log.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
