//! Templates in `command` tasks (argv, env values, cwd), rendered per try with minijinja and
//! the run's context as Airflow names it: `ds`, `ts`, `data_interval_start`, `params.NAME`,
//! `var.NAME` (also Airflow's `var.value.NAME` and `var.json.NAME`), `conn.ID.host`...
//!
//! Undefined names are errors (strict), never an empty string. Variables and connections are
//! looked up lazily, only those a template reaches, each once per try; what they reveal that
//! is secret (connection passwords, sensitive variables) is handed back for masking.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use minijinja::value::{Object, Value as JValue};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde_json::Value;
use upiflow_engine::error::{EngineError, ErrorKind as EngineErrorKind};
use upiflow_engine::secrets::mask::is_sensitive_key;
use upiflow_engine::secrets::{Connection, Secrets};
use upiflow_engine::{TaskContext, TaskError};

/// The names a template may use at its top level.
pub const NAMES: &[&str] = &[
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "dag_id",
    "task_id",
    "try_number",
    "max_tries",
    "params",
    "var",
    "conn",
];

/// Whether a string holds template syntax (anything else renders to itself).
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A command's argument is exactly what the template says, newline included.
    env.set_keep_trailing_newline(true);
    env
}

/// Variables and connections a template names literally (`var.x`, `var.value.x`,
/// `conn.y.host`); computed names (`var[name]`) cannot be seen before a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refs {
    pub variables: BTreeSet<String>,
    pub connections: BTreeSet<String>,
}

/// Parses the template `name` and checks the names it uses, adding what it looks up to
/// `refs`. The error says what is wrong (minijinja's words, with the line).
pub fn check(name: &str, source: &str, refs: &mut Refs) -> Result<(), String> {
    let env = environment();
    let tmpl = env
        .template_from_named_str(name, source)
        .map_err(|e| describe(&e))?;
    let mut unknown = BTreeSet::new();
    for used in tmpl.undeclared_variables(true) {
        let mut parts = used.split('.');
        match parts.next().unwrap_or_default() {
            "var" => match (parts.next(), parts.next()) {
                (Some("value" | "json"), Some(key)) | (Some(key), _)
                    if key != "value" && key != "json" && key != "get" =>
                {
                    refs.variables.insert(key.to_string());
                }
                _ => {}
            },
            "conn" => {
                if let Some(id) = parts.next().filter(|id| *id != "get") {
                    refs.connections.insert(id.to_string());
                }
            }
            top if NAMES.contains(&top) => {}
            top => {
                unknown.insert(top.to_string());
            }
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let unknown: Vec<_> = unknown.into_iter().map(|n| format!("`{n}`")).collect();
    Err(format!(
        "template `{name}` uses unknown name(s) {} (known: {})",
        unknown.join(", "),
        NAMES.join(", ")
    ))
}

/// minijinja's error with its detail and place (`... (in command[2]:1)`).
fn describe(e: &Error) -> String {
    e.to_string()
}

/// Templates rendered for one try.
pub struct Rendered {
    /// In the order given.
    pub texts: Vec<String>,
    /// Values the templates looked up that must not be shown (passwords, sensitive variables).
    pub secrets: Vec<String>,
}

/// Renders `(name, source)` templates with the try's context. Variables and connections come
/// from `ctx.secrets`, each looked up once however many templates use it.
pub async fn render(
    ctx: &TaskContext,
    templates: Vec<(String, String)>,
) -> Result<Rendered, TaskError> {
    if templates.is_empty() {
        return Ok(Rendered {
            texts: Vec::new(),
            secrets: Vec::new(),
        });
    }
    let lookups = Arc::new(Lookups {
        secrets: ctx.secrets.clone(),
        handle: tokio::runtime::Handle::current(),
        variables: Mutex::default(),
        connections: Mutex::default(),
        failure: Mutex::default(),
        used_secrets: Mutex::default(),
    });
    let context = context(ctx, &lookups);
    // Rendering is synchronous and lookups go to the database: a blocking thread may wait.
    let job = {
        let lookups = lookups.clone();
        tokio::task::spawn_blocking(move || render_blocking(&context, &lookups, &templates))
    };
    let texts = job
        .await
        .map_err(|e| TaskError::Retryable(format!("rendering the templates failed: {e}")))??;
    let secrets = std::mem::take(&mut *lookups.used_secrets.lock().expect("poisoned"));
    Ok(Rendered { texts, secrets })
}

fn render_blocking(
    context: &JValue,
    lookups: &Lookups,
    templates: &[(String, String)],
) -> Result<Vec<String>, TaskError> {
    let env = environment();
    let mut out = Vec::with_capacity(templates.len());
    for (name, source) in templates {
        lookups.failure.lock().expect("poisoned").take();
        let rendered = env
            .template_from_named_str(name, source)
            .and_then(|t| t.render(context));
        match rendered {
            Ok(text) => out.push(text),
            Err(e) => {
                return Err(match lookups.failure.lock().expect("poisoned").take() {
                    Some(Failure::Lookup(why)) => {
                        TaskError::Retryable(format!("template `{name}`: {why}"))
                    }
                    Some(Failure::Invalid(why)) => {
                        TaskError::Fatal(format!("template `{name}`: {why} ({})", describe(&e)))
                    }
                    None => TaskError::Fatal(format!("template `{name}`: {}", describe(&e))),
                });
            }
        }
    }
    Ok(out)
}

fn context(ctx: &TaskContext, lookups: &Arc<Lookups>) -> JValue {
    let ds = ctx.ds.format("%Y-%m-%d").to_string();
    let ts = ctx.logical_date.to_rfc3339();
    let entries: Vec<(&str, JValue)> = vec![
        ("ds_nodash", ctx.ds.format("%Y%m%d").to_string().into()),
        ("ds", ds.into()),
        (
            "ts_nodash",
            ctx.logical_date.format("%Y%m%dT%H%M%S").to_string().into(),
        ),
        ("ts", ts.clone().into()),
        ("logical_date", ts.into()),
        (
            "data_interval_start",
            ctx.data_interval_start.to_rfc3339().into(),
        ),
        (
            "data_interval_end",
            ctx.data_interval_end.to_rfc3339().into(),
        ),
        ("run_id", ctx.run_id.clone().into()),
        ("dag_id", ctx.dag_id.clone().into()),
        ("task_id", ctx.task_id.clone().into()),
        ("try_number", ctx.try_number.into()),
        ("max_tries", ctx.max_tries.into()),
        ("params", JValue::from_serialize(&ctx.params)),
        (
            "var",
            JValue::from_object(Variables {
                lookups: lookups.clone(),
                mode: VarMode::Shortcut,
            }),
        ),
        (
            "conn",
            JValue::from_object(Connections {
                lookups: lookups.clone(),
            }),
        ),
    ];
    entries.into_iter().collect()
}

/// Why a lookup gave nothing, to explain the render error it causes.
enum Failure {
    /// The database could not answer: another try may succeed.
    Lookup(String),
    /// The name does not exist or its value cannot be used.
    Invalid(String),
}

impl Failure {
    /// A lookup's error: bad input (an invalid id, an undecryptable value) is not fixed by
    /// another try; the database being away may be.
    fn from_error(message: String, e: &EngineError) -> Self {
        match e.kind() {
            EngineErrorKind::Unavailable | EngineErrorKind::Internal => Self::Lookup(message),
            _ => Self::Invalid(message),
        }
    }
}

/// One try's lookups, cached.
struct Lookups {
    secrets: Secrets,
    handle: tokio::runtime::Handle,
    variables: Mutex<HashMap<String, Option<String>>>,
    connections: Mutex<HashMap<String, Option<Arc<Connection>>>>,
    failure: Mutex<Option<Failure>>,
    used_secrets: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookups")
    }
}

impl Lookups {
    fn fail(&self, failure: Failure) {
        self.failure
            .lock()
            .expect("poisoned")
            .get_or_insert(failure);
    }

    fn secret(&self, value: &str) {
        self.used_secrets
            .lock()
            .expect("poisoned")
            .push(value.to_string());
    }

    /// The variable's text; `None` when it does not exist (recorded as the failure when
    /// `required`) or the lookup failed.
    fn variable(&self, key: &str, required: bool) -> Option<String> {
        if let Some(known) = self.variables.lock().expect("poisoned").get(key) {
            if known.is_none() && required {
                self.fail(Failure::Invalid(missing_variable(key)));
            }
            return known.clone();
        }
        match self.handle.block_on(self.secrets.variable(key)) {
            Ok(value) => {
                if let Some(v) = &value
                    && is_sensitive_key(key)
                {
                    self.secret(v);
                }
                if value.is_none() && required {
                    self.fail(Failure::Invalid(missing_variable(key)));
                }
                self.variables
                    .lock()
                    .expect("poisoned")
                    .insert(key.to_string(), value.clone());
                value
            }
            Err(e) => {
                self.fail(Failure::from_error(
                    format!("could not read variable `{key}`: {e}"),
                    &e,
                ));
                None
            }
        }
    }

    fn connection(&self, conn_id: &str, required: bool) -> Option<Arc<Connection>> {
        if let Some(known) = self.connections.lock().expect("poisoned").get(conn_id) {
            if known.is_none() && required {
                self.fail(Failure::Invalid(missing_connection(conn_id)));
            }
            return known.clone();
        }
        match self.handle.block_on(self.secrets.connection(conn_id)) {
            Ok(conn) => {
                for text in conn.iter().flat_map(Connection::secret_texts) {
                    self.secret(&text);
                }
                if conn.is_none() && required {
                    self.fail(Failure::Invalid(missing_connection(conn_id)));
                }
                let conn = conn.map(Arc::new);
                self.connections
                    .lock()
                    .expect("poisoned")
                    .insert(conn_id.to_string(), conn.clone());
                conn
            }
            Err(e) => {
                self.fail(Failure::from_error(
                    format!("could not read connection `{conn_id}`: {e}"),
                    &e,
                ));
                None
            }
        }
    }
}

fn missing_variable(key: &str) -> String {
    format!(
        "variable `{key}` does not exist (`upiflow variables set {key} VALUE`, or UPIFLOW_VAR_{})",
        key.to_uppercase()
    )
}

fn missing_connection(conn_id: &str) -> String {
    format!(
        "connection `{conn_id}` does not exist (`upiflow connections add {conn_id} --uri URI`, or UPIFLOW_CONN_{})",
        conn_id.to_uppercase()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarMode {
    /// `var.NAME`: the text; `var.value` and `var.json` lead to the other modes.
    Shortcut,
    /// `var.value.NAME`: the text.
    Text,
    /// `var.json.NAME`: the text parsed as JSON.
    Json,
}

#[derive(Debug)]
struct Variables {
    lookups: Arc<Lookups>,
    mode: VarMode,
}

impl Variables {
    fn value(&self, key: &str, required: bool) -> Option<JValue> {
        let text = self.lookups.variable(key, required)?;
        if self.mode != VarMode::Json {
            return Some(JValue::from(text));
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => Some(JValue::from_serialize(v)),
            Err(e) => {
                self.lookups.fail(Failure::Invalid(format!(
                    "variable `{key}` is not JSON ({e}), as `var.json.{key}` needs"
                )));
                None
            }
        }
    }
}

impl Object for Variables {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let key = key.as_str()?;
        match (self.mode, key) {
            (VarMode::Shortcut, "value") | (VarMode::Shortcut, "json") => {
                let mode = if key == "json" {
                    VarMode::Json
                } else {
                    VarMode::Text
                };
                Some(JValue::from_object(Variables {
                    lookups: self.lookups.clone(),
                    mode,
                }))
            }
            _ => self.value(key, true),
        }
    }

    /// Airflow's `var.value.get("NAME", default)`.
    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        args: &[JValue],
    ) -> Result<JValue, Error> {
        if method != "get" {
            return Err(Error::from(ErrorKind::UnknownMethod));
        }
        let (key, default) = match args {
            [key] => (key, None),
            [key, default] => (key, Some(default.clone())),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "var.get takes a name and an optional default",
                ));
            }
        };
        let key = key.as_str().ok_or_else(|| {
            Error::new(ErrorKind::InvalidOperation, "a variable's name is a string")
        })?;
        match (self.value(key, default.is_none()), default) {
            (Some(v), _) => Ok(v),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(Error::new(
                ErrorKind::UndefinedError,
                format!("variable `{key}` does not exist"),
            )),
        }
    }
}

#[derive(Debug)]
struct Connections {
    lookups: Arc<Lookups>,
}

impl Object for Connections {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let conn = self.lookups.connection(key.as_str()?, true)?;
        Some(JValue::from_object(ConnValue(conn)))
    }
}

/// A connection with Airflow's attribute names.
#[derive(Debug)]
struct ConnValue(Arc<Connection>);

fn opt(v: &Option<String>) -> JValue {
    v.as_ref()
        .map_or(JValue::from(()), |s| JValue::from(s.clone()))
}

impl Object for ConnValue {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let c = &self.0;
        Some(match key.as_str()? {
            "conn_id" => JValue::from(c.conn_id.clone()),
            "conn_type" => JValue::from(c.conn_type.clone()),
            "description" => opt(&c.description),
            "host" => opt(&c.host),
            "schema" => opt(&c.schema),
            "login" => opt(&c.login),
            "password" => opt(&c.password),
            "port" => c.port.map_or(JValue::from(()), JValue::from),
            // Airflow's `extra` is the JSON text, `extra_dejson` the parsed object.
            "extra" => JValue::from(Value::Object(c.extra.clone()).to_string()),
            "extra_dejson" => JValue::from_serialize(&c.extra),
            _ => return None,
        })
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &State<'_, '_>,
        method: &str,
        _args: &[JValue],
    ) -> Result<JValue, Error> {
        match method {
            "get_uri" => Ok(JValue::from(self.0.to_uri())),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

#[cfg(test)]
mod tests;
