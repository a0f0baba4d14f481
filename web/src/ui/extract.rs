//! What a page reads from its request beyond the path: the query string (a bad one is a
//! 400 page that says what is wrong) and whether only the refreshing region is wanted.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::UiError;

/// A query string read into `T`; a bad one is a 400 page that says what is wrong.
pub(super) struct UiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for UiQuery<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(UiQuery)
            .map_err(|e| UiError::BadRequest(format!("bad query string: {e}")))
    }
}

/// Whether the request asks only for the refreshing region (see `app.js`).
pub(super) fn wants_fragment(headers: &HeaderMap) -> bool {
    headers.contains_key("x-fragment")
}
