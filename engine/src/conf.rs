//! A run's conf against its DAG's params (Airflow's `params` validation on trigger): only
//! declared params, each with the type of its default (integers are accepted where a float
//! is declared).

use serde_json::Value;

use crate::dag::Dag;

/// Why a conf is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfError {
    #[error("conf must be a JSON object")]
    NotAnObject,
    #[error("conf has unknown param `{key}` for DAG `{dag_id}` ({})", declared_list(.declared))]
    UnknownParam {
        key: String,
        dag_id: String,
        declared: Vec<String>,
    },
    #[error("conf param `{key}` must be {expected} like its default {default}, not {value}")]
    WrongType {
        key: String,
        expected: &'static str,
        default: Value,
        value: Value,
    },
}

fn declared_list(declared: &[String]) -> String {
    if declared.is_empty() {
        "it declares no params".to_string()
    } else {
        format!("it declares: {}", declared.join(", "))
    }
}

/// Checks a trigger's conf against the DAG's params.
pub fn check(dag: &Dag, conf: &Value) -> Result<(), ConfError> {
    let Value::Object(conf) = conf else {
        return Err(ConfError::NotAnObject);
    };
    for (key, value) in conf {
        let Some(default) = dag.params.get(key) else {
            return Err(ConfError::UnknownParam {
                key: key.clone(),
                dag_id: dag.dag_id.clone(),
                declared: dag.params.keys().cloned().collect(),
            });
        };
        let ok = match default {
            Value::Null => true,
            Value::Bool(_) => value.is_boolean(),
            Value::Number(n) if n.is_f64() => value.is_number(),
            Value::Number(_) => value.is_i64() || value.is_u64(),
            Value::String(_) => value.is_string(),
            Value::Array(_) => value.is_array(),
            Value::Object(_) => value.is_object(),
        };
        if !ok {
            return Err(ConfError::WrongType {
                key: key.clone(),
                expected: json_type(default),
                default: default.clone(),
                value: value.clone(),
            });
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
