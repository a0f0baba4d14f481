//! The continuation token of a task log: where the next read starts (after the line with
//! this id), opaque to clients. A token that was not made here is refused as Airflow
//! refuses a token with a bad signature, with a 400.

use base64::Engine;

use crate::error::ApiError;

/// The token for reading on after the log line `after`.
pub fn encode(after: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{after}"))
}

/// The log line id a token reads on after; a 400 for anything `encode` did not make.
pub fn decode(token: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "Bad Signature. Please use only the tokens provided by the API.".into(),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("after:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tokens_round_trip_and_forged_ones_are_refused() {
        assert_eq!(decode(&encode(42)).unwrap(), 42);
        for bad in ["forged", "", "YWZ0ZXI6LTE", "!!"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
