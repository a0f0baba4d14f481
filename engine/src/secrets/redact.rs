//! What the API, the UI and the CLI show of secrets: Airflow's redaction (`***` for the value
//! of every sensitive key, at any depth) and its merge (a `***` sent back keeps the stored
//! value, so a client can round-trip what it read).

use serde_json::{Map, Value};

use super::mask::is_sensitive_key;

/// What a redacted value reads.
pub const MASK: &str = "***";

fn redact_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(extra(m)),
        Value::Array(items) => Value::Array(items.iter().map(redact_value).collect()),
        other => other.clone(),
    }
}

/// `m` with the value of every sensitive key (at any depth) as `***`.
pub fn extra(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| {
            let shown = if is_sensitive_key(k) && !v.is_null() {
                Value::String(MASK.into())
            } else {
                redact_value(v)
            };
            (k.clone(), shown)
        })
        .collect()
}

/// A variable's text as shown: `***` if its key is sensitive; a JSON object's sensitive keys
/// redacted; anything else as it is.
pub fn variable(key: &str, val: &str) -> String {
    if is_sensitive_key(key) {
        return MASK.into();
    }
    match serde_json::from_str::<Value>(val) {
        Ok(Value::Object(m)) => Value::Object(extra(&m)).to_string(),
        _ => val.to_string(),
    }
}

/// `new` with every `***` value replaced by what `old` holds at the same key (at any depth).
pub fn merge_extra(new: Map<String, Value>, old: &Map<String, Value>) -> Map<String, Value> {
    new.into_iter()
        .map(|(k, v)| {
            let merged = match (v, old.get(&k)) {
                (Value::String(s), Some(was)) if s == MASK => was.clone(),
                (Value::Object(n), Some(Value::Object(o))) => Value::Object(merge_extra(n, o)),
                (v, _) => v,
            };
            (k, merged)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn sensitive_keys_read_masked_at_any_depth_and_a_mask_sent_back_keeps_the_value() {
        let stored = obj(json!({"sslmode": "require", "api_key": "k-123",
            "nested": {"password": "p-456", "region": "ap-south-1"}, "token": null}));
        let shown = extra(&stored);
        assert_eq!(
            Value::Object(shown.clone()),
            json!({"sslmode": "require", "api_key": "***",
                "nested": {"password": "***", "region": "ap-south-1"}, "token": null})
        );
        let mut back = shown;
        back.insert("sslmode".into(), json!("verify-full"));
        let merged = merge_extra(back, &stored);
        assert_eq!(merged["api_key"], json!("k-123"));
        assert_eq!(merged["nested"]["password"], json!("p-456"));
        assert_eq!(merged["sslmode"], json!("verify-full"));
    }

    #[test]
    fn variables_read_masked_by_key_or_inside_their_json() {
        assert_eq!(variable("db_password", "hunter22"), "***");
        assert_eq!(variable("region", "ap-south-1"), "ap-south-1");
        assert_eq!(
            variable("cfg", r#"{"user":"u","secret":"s3"}"#),
            r#"{"secret":"***","user":"u"}"#
        );
        assert_eq!(variable("list", "[1,2]"), "[1,2]");
    }
}
