//! Answers checked against Airflow's own OpenAPI document (vendored at
//! tests/fixtures/airflow-v2-rest-api.yaml): one schema checker for every API test.

use axum::http::StatusCode;
use serde_json::{Value, json};

pub fn airflow() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/airflow-v2-rest-api.yaml"
        ))
        .expect("vendored Airflow document");
        yaml_serde::from_str(&text).expect("Airflow's document parses")
    })
}

pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local $ref");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Whether `v` fits `schema`: every `required` property present, every property of a
/// compatible JSON type (recursively), `$ref` resolved, `anyOf` satisfied by one branch,
/// `additionalProperties: false` honoured, `uuid` strings well formed.
pub fn fits(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        let errors: Vec<String> = branches
            .iter()
            .filter_map(|b| fits(doc, b, v, at).err())
            .collect();
        return if errors.len() < branches.len() {
            Ok(())
        } else {
            Err(errors.join(" | "))
        };
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        return Err(format!("{at}: {v} is not one of {allowed:?}"));
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("null") => v.is_null(),
        Some("boolean") => v.is_boolean(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("string") => match (v.as_str(), schema["format"].as_str()) {
            (None, _) => false,
            (Some(s), Some("date-time")) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            (Some(s), Some("uuid")) => {
                s.len() == 36
                    && s.chars()
                        .enumerate()
                        .all(|(i, c)| [8, 13, 18, 23].contains(&i) == (c == '-'))
            }
            (Some(_), _) => true,
        },
        Some("array") => {
            let Some(items) = v.as_array() else {
                return Err(format!("{at}: {v} is not an array"));
            };
            if schema.get("items").is_some() {
                for (i, item) in items.iter().enumerate() {
                    fits(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
                }
            }
            true
        }
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return Err(format!("{at}: {v} is not an object"));
            };
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                if !obj.contains_key(name) {
                    return Err(format!("{at}: required property `{name}` is missing"));
                }
            }
            let props = schema["properties"].as_object();
            if schema["additionalProperties"] == json!(false) {
                for name in obj.keys() {
                    if !props.is_some_and(|p| p.contains_key(name)) {
                        return Err(format!("{at}: Airflow has no property `{name}`"));
                    }
                }
            }
            for (name, sub) in props.into_iter().flatten() {
                if let Some(value) = obj.get(name) {
                    fits(doc, sub, value, &format!("{at}.{name}"))?;
                }
            }
            true
        }
        Some(other) => panic!("schema type {other} not handled"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{at}: {v} is not of type {}", schema["type"]))
    }
}

/// Asserts that `body`, answered with `status` by `method path` (a path template of
/// Airflow's), fits the schema Airflow documents for that answer.
pub fn assert_airflow_shape(method: &str, path: &str, status: StatusCode, body: &Value) {
    let doc = airflow();
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "Airflow has no {method} {path}");
    let mut schema = &op["responses"][status.as_str()]["content"]["application/json"]["schema"];
    if schema.is_null() && status.is_client_error() && status != StatusCode::UNPROCESSABLE_ENTITY {
        schema = &doc["components"]["schemas"]["HTTPExceptionResponse"];
    }
    assert!(
        schema.is_object(),
        "Airflow documents no {status} JSON answer for {method} {path}"
    );
    if let Err(e) = fits(doc, schema, body, "$") {
        panic!("{method} {path} {status}: not Airflow's shape: {e}\n{body:#}");
    }
}
