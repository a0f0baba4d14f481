//! The UPI payment event (JSON on topic `upi_transactions`) and its validation: what makes an
//! event clean, and the reason recorded in the dead-letter table when it is not.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Statuses a transaction can have.
pub const STATUSES: [&str; 3] = ["SUCCESS", "FAILED", "PENDING"];
/// Largest valid amount (exclusive lower bound is 0).
pub const MAX_AMOUNT: f64 = 100_000.0;

/// The event as producers send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub txn_id: String,
    pub payer: String,
    pub payee: String,
    pub amount: f64,
    pub status: String,
    /// ISO 8601.
    pub timestamp: String,
}

/// A valid event, ready for `clean_upi_transactions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clean {
    pub txn_id: String,
    pub payer: String,
    pub payee: String,
    /// In paise would be exact; the table stores numeric(12,2), so round to cents here.
    pub amount: f64,
    pub status: &'static str,
    pub event_time: DateTime<Utc>,
}

/// What validation says about a message: clean, or why not (with whatever could be read).
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Valid(Clean),
    Invalid {
        reason: String,
        txn_id: Option<String>,
        event_time: Option<DateTime<Utc>>,
    },
}

/// Validates one message payload (DESIGN.md: non-empty txn_id/payer/payee,
/// `0 < amount <= 100000`, a known status, a parseable timestamp).
pub fn validate(payload: Option<&[u8]>) -> Verdict {
    let invalid = |reason: String, txn_id: Option<String>, event_time| Verdict::Invalid {
        reason,
        txn_id,
        event_time,
    };
    let Some(bytes) = payload.filter(|b| !b.is_empty()) else {
        return invalid("empty message".into(), None, None);
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return invalid(format!("payload is not UTF-8: {e}"), None, None),
    };
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return invalid(format!("invalid JSON: {e}"), None, None),
    };
    let Some(obj) = value.as_object() else {
        return invalid("not a JSON object".into(), None, None);
    };
    let txn_id = obj
        .get("txn_id")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let event_time = obj
        .get("timestamp")
        .and_then(|v| v.as_str())
        .and_then(parse_timestamp);
    let bad = |reason: String| Verdict::Invalid {
        reason,
        txn_id: txn_id.clone(),
        event_time,
    };
    let text_field = |name: &str| -> Result<String, String> {
        match obj.get(name) {
            None | Some(serde_json::Value::Null) => Err(format!("missing field `{name}`")),
            Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                Err(format!("empty field `{name}`"))
            }
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("field `{name}` must be a string, not {other}")),
        }
    };
    let (id, payer, payee) = match (
        text_field("txn_id"),
        text_field("payer"),
        text_field("payee"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad(e),
    };
    let amount = match obj.get("amount") {
        None | Some(serde_json::Value::Null) => return bad("missing field `amount`".into()),
        Some(v) => match v.as_f64() {
            Some(a) => a,
            None => return bad(format!("field `amount` must be a number, not {v}")),
        },
    };
    if !(amount > 0.0 && amount <= MAX_AMOUNT) {
        return bad(format!("amount {amount} is outside (0, 100000]"));
    }
    let status = match obj.get("status").and_then(|v| v.as_str()) {
        None => return bad("missing field `status`".into()),
        Some(s) => match STATUSES.iter().find(|k| **k == s) {
            Some(k) => *k,
            None => {
                return bad(format!(
                    "unknown status `{s}` (expected SUCCESS, FAILED or PENDING)"
                ));
            }
        },
    };
    let Some(ts) = obj.get("timestamp") else {
        return bad("missing field `timestamp`".into());
    };
    let Some(event_time) = event_time else {
        return bad(format!("unparseable timestamp {ts}"));
    };
    Verdict::Valid(Clean {
        txn_id: id,
        payer,
        payee,
        amount: (amount * 100.0).round() / 100.0,
        status,
        event_time,
    })
}

/// ISO 8601 with an offset, or without one (then UTC, as the seed's generator wrote them).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(payload: &str) -> String {
        match validate(Some(payload.as_bytes())) {
            Verdict::Invalid { reason, .. } => reason,
            Verdict::Valid(c) => panic!("expected invalid, got {c:?}"),
        }
    }

    const OK: &str = r#"{"txn_id":"t1","payer":"user1@oksbi","payee":"merchant7@upi","amount":250.5,"status":"SUCCESS","timestamp":"2024-01-05T10:00:00+05:30"}"#;

    #[test]
    fn a_good_event_is_clean() {
        let Verdict::Valid(c) = validate(Some(OK.as_bytes())) else {
            panic!()
        };
        assert_eq!(c.txn_id, "t1");
        assert_eq!(c.amount, 250.5);
        assert_eq!(c.event_time.to_rfc3339(), "2024-01-05T04:30:00+00:00");
        assert!(matches!(validate(Some(br#"{"txn_id":"t","payer":"a@b","payee":"c@d","amount":1,"status":"PENDING","timestamp":"2024-01-05T10:00:00.123"}"#)), Verdict::Valid(_)));
    }

    #[test]
    fn each_kind_of_bad_event_has_its_reason() {
        assert!(reason("{not json").starts_with("invalid JSON"));
        assert_eq!(
            reason(&OK.replace(r#""payer":"user1@oksbi","#, "")),
            "missing field `payer`"
        );
        assert_eq!(
            reason(&OK.replace("user1@oksbi", " ")),
            "empty field `payer`"
        );
        assert_eq!(
            reason(&OK.replace("250.5", "0")),
            "amount 0 is outside (0, 100000]"
        );
        assert_eq!(
            reason(&OK.replace("250.5", "-3")),
            "amount -3 is outside (0, 100000]"
        );
        assert_eq!(
            reason(&OK.replace("250.5", "100000.01")),
            "amount 100000.01 is outside (0, 100000]"
        );
        assert_eq!(
            reason(&OK.replace("250.5", "\"12\"")),
            "field `amount` must be a number, not \"12\""
        );
        assert!(reason(&OK.replace("SUCCESS", "DONE")).starts_with("unknown status `DONE`"));
        assert!(
            reason(&OK.replace("2024-01-05T10:00:00+05:30", "yesterday"))
                .starts_with("unparseable timestamp")
        );
        assert_eq!(reason("[1,2]"), "not a JSON object");
        assert!(matches!(validate(None), Verdict::Invalid { .. }));
        assert!(matches!(
            validate(Some(&[0xff, 0xfe])),
            Verdict::Invalid { .. }
        ));
    }

    #[test]
    fn the_boundary_amount_is_valid_and_what_can_be_read_is_kept() {
        assert!(matches!(
            validate(Some(OK.replace("250.5", "100000").as_bytes())),
            Verdict::Valid(_)
        ));
        match validate(Some(OK.replace("SUCCESS", "DONE").as_bytes())) {
            Verdict::Invalid {
                txn_id, event_time, ..
            } => {
                assert_eq!(txn_id.as_deref(), Some("t1"));
                assert!(event_time.is_some());
            }
            v => panic!("{v:?}"),
        }
    }
}
