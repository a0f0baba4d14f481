//! `GET /api/v2/config` and `GET /api/v2/config/section/{section}/option/{option}`, as in
//! Airflow 3 (`get_config`, `get_config_value`), on upiflow's effective configuration: the
//! settings this web process runs with (its environment as the binary reads it, with the
//! binary's defaults where a variable is unset, and what the web was started with: TLS,
//! `--behind-proxy`, the sign-in throttle, the database it is connected to).
//!
//! Exposed only when the operator says so, as Airflow's `[api] expose_config`:
//! `UPIFLOW_EXPOSE_CONFIG` = `false` (the default: Airflow's 403), `non-sensitive-only`
//! (sensitive values read `< hidden >`) or `true` (every value, as Airflow shows them then;
//! the database password is never shown, its URL is rebuilt from the connection). The answer
//! is JSON (`Config`) or, with `Accept: text/plain`, Airflow's INI text; any other `Accept` is
//! Airflow's 406. Reading needs the op role (Airflow's simple auth manager lets `OP` read the
//! configuration; here the rule of `may::Pools`, the op-level action).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Ids;
use super::models::{HTTPExceptionResponse, HTTPValidationError};
use super::query::{NoQuery, Query};
use crate::AppState;
use crate::auth::Allowed;
use crate::error::ApiError;
use crate::roles::may;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_config))
        .routes(routes!(get_config_value))
}

/// The environment variable that exposes the configuration (Airflow's `[api] expose_config`).
pub const EXPOSE_ENV: &str = "UPIFLOW_EXPOSE_CONFIG";

/// What a sensitive value reads when only non-sensitive ones are exposed (Airflow's).
pub const HIDDEN: &str = "< hidden >";

/// Airflow's `ConfigOption`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigOption {
    key: String,
    value: String,
}

/// Airflow's `ConfigSection`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigSection {
    name: String,
    options: Vec<ConfigOption>,
}

/// Airflow's `Config`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Config {
    sections: Vec<ConfigSection>,
}

/// How much of the configuration is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expose {
    All,
    NonSensitive,
}

/// Airflow's 403 when the configuration is not exposed.
const NOT_EXPOSED: &str = "Your Airflow administrator chose not to expose the configuration, \
     most likely for security reasons.";

fn expose() -> Result<Expose, ApiError> {
    let raw = std::env::var(EXPOSE_ENV).unwrap_or_default();
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Ok(Expose::All),
        "non-sensitive-only" => Ok(Expose::NonSensitive),
        "" | "false" | "f" | "0" => Err(ApiError::Forbidden(format!(
            "{NOT_EXPOSED} (upiflow: set {EXPOSE_ENV}=true or non-sensitive-only)"
        ))),
        _ => Err(ApiError::Forbidden(format!(
            "{NOT_EXPOSED} ({EXPOSE_ENV}=`{raw}` is not true, false or non-sensitive-only)"
        ))),
    }
}

/// One setting: section, key, value, whether it is sensitive.
struct Setting {
    section: &'static str,
    key: &'static str,
    value: String,
    sensitive: bool,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The database this process is connected to, as a URL without its password.
fn database_url(s: &AppState) -> String {
    let o = s.pool.connect_options();
    format!(
        "postgresql://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or_default()
    )
}

/// upiflow's settings, by Airflow's section and option names where Airflow has one.
fn settings(s: &AppState) -> Vec<Setting> {
    let notify = upiflow_engine::notify::deliver::DeliveryConfig::from_env();
    let fernet = std::env::var(upiflow_engine::secrets::FERNET_KEY_ENV).unwrap_or_default();
    let set = |section, key, value: String, sensitive| Setting {
        section,
        key,
        value,
        sensitive,
    };
    vec![
        set(
            "core",
            "dags_folder",
            s.process.dags_folder.display().to_string(),
            false,
        ),
        set("core", "home", s.process.home.display().to_string(), false),
        set("core", "fernet_key", fernet, true),
        set("database", "sql_alchemy_conn", database_url(s), true),
        set(
            "kafka",
            "bootstrap_servers",
            s.process
                .kafka_bootstrap_servers
                .clone()
                .unwrap_or_default(),
            false,
        ),
        set(
            "api",
            "base_url",
            env_or(
                upiflow_engine::notify::BASE_URL_ENV,
                "http://localhost:8080",
            ),
            false,
        ),
        set("api", "expose_config", env_or(EXPOSE_ENV, "false"), false),
        set("api", "ssl", s.transport.tls.to_string(), false),
        set(
            "api",
            "behind_proxy",
            s.transport.behind_proxy.to_string(),
            false,
        ),
        set("api", "auth_rate_limit", s.throttle.to_string(), false),
        set(
            "notifications",
            "backoff",
            format!("{:?}", notify.backoff_base),
            false,
        ),
        set(
            "notifications",
            "max_attempts",
            notify.max_attempts.to_string(),
            false,
        ),
    ]
}

fn to_config(settings: Vec<Setting>, expose: Expose) -> Config {
    let mut sections: Vec<ConfigSection> = Vec::new();
    for st in settings {
        let value = if st.sensitive && expose == Expose::NonSensitive {
            HIDDEN.to_string()
        } else {
            st.value
        };
        let option = ConfigOption {
            key: st.key.to_string(),
            value,
        };
        match sections.iter_mut().find(|c| c.name == st.section) {
            Some(c) => c.options.push(option),
            None => sections.push(ConfigSection {
                name: st.section.to_string(),
                options: vec![option],
            }),
        }
    }
    Config { sections }
}

/// Airflow's 406 for an `Accept` it cannot answer, in the error shape of every answer.
fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        axum::Json(serde_json::json!({
            "detail": "Only application/json or text/plain is supported"
        })),
    )
        .into_response()
}

/// Whether the answer is text (`Accept: text/plain`), JSON (`application/json`, `*/*` or no
/// header), or (`None`) neither: Airflow's 406.
fn wants_text(headers: &HeaderMap) -> Option<bool> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(false);
    };
    let accept = accept.to_str().unwrap_or_default();
    let types: Vec<&str> = accept
        .split(',')
        .map(|t| t.split(';').next().unwrap_or_default().trim())
        .collect();
    if types
        .iter()
        .any(|t| *t == "application/json" || *t == "*/*" || t.is_empty())
    {
        Some(false)
    } else if types.contains(&"text/plain") {
        Some(true)
    } else {
        None
    }
}

/// The config as Airflow's text: `[section]` then `key = value` lines, a blank line after
/// each section.
fn to_text(c: &Config) -> String {
    let mut out = String::new();
    for s in &c.sections {
        out.push_str(&format!("[{}]\n", s.name));
        for o in &s.options {
            out.push_str(&format!("{} = {}\n", o.key, o.value));
        }
        out.push('\n');
    }
    out
}

fn answer(c: Config, text: bool) -> Response {
    if text {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            to_text(&c),
        )
            .into_response()
    } else {
        axum::Json(c).into_response()
    }
}

/// The configuration (op), or one `section` of it; a 404 for a section upiflow has not.
#[utoipa::path(get, path = "/api/v2/config", tag = "Config",
    params(("section" = Option<String>, Query),
        ("accept" = Option<String>, Header, description = "application/json, text/plain or */*")),
    responses((status = 200, body = Config, content_type = "application/json"),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 406, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn get_config(
    State(s): State<AppState>,
    _: Allowed<may::Pools>,
    headers: HeaderMap,
    mut q: Query,
) -> Result<Response, ApiError> {
    let section = q.one("section")?;
    q.finish::<&str>(&[])?;
    let Some(text) = wants_text(&headers) else {
        return Ok(not_acceptable());
    };
    let expose = expose()?;
    let mut c = to_config(settings(&s), expose);
    if let Some(name) = section {
        c.sections.retain(|x| x.name == name);
        if c.sections.is_empty() {
            return Err(ApiError::NotFound(format!("Section {name} not found.")));
        }
    }
    Ok(answer(c, text))
}

/// One option of the configuration (op); a 404 for one upiflow has not.
#[utoipa::path(get, path = "/api/v2/config/section/{section}/option/{option}", tag = "Config",
    params(("section" = String, Path), ("option" = String, Path),
        ("accept" = Option<String>, Header, description = "application/json, text/plain or */*")),
    responses((status = 200, body = Config, content_type = "application/json"),
        (status = 401, body = HTTPExceptionResponse),
        (status = 403, body = HTTPExceptionResponse),
        (status = 404, body = HTTPExceptionResponse),
        (status = 406, body = HTTPExceptionResponse),
        (status = 422, body = HTTPValidationError)))]
async fn get_config_value(
    State(s): State<AppState>,
    _: Allowed<may::Pools>,
    headers: HeaderMap,
    Ids((section, option)): Ids<(String, String)>,
    _: NoQuery,
) -> Result<Response, ApiError> {
    let Some(text) = wants_text(&headers) else {
        return Ok(not_acceptable());
    };
    let expose = expose()?;
    let mut c = to_config(settings(&s), expose);
    c.sections.retain(|x| x.name == section);
    for sec in &mut c.sections {
        sec.options.retain(|o| o.key == option);
    }
    c.sections.retain(|x| !x.options.is_empty());
    if c.sections.is_empty() {
        return Err(ApiError::NotFound(format!(
            "Option [{section}/{option}] not found."
        )));
    }
    Ok(answer(c, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_json_text_or_refuses() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, v.parse().unwrap());
            m
        };
        assert_eq!(wants_text(&HeaderMap::new()), Some(false));
        assert_eq!(wants_text(&h("*/*")), Some(false));
        assert_eq!(wants_text(&h("application/json")), Some(false));
        assert_eq!(wants_text(&h("text/plain")), Some(true));
        assert_eq!(wants_text(&h("text/plain; charset=utf-8")), Some(true));
        assert_eq!(wants_text(&h("text/html")), None);
        assert_eq!(wants_text(&h("text/plain, application/json")), Some(false));
        assert_eq!(not_acceptable().status(), StatusCode::NOT_ACCEPTABLE);
    }
}
