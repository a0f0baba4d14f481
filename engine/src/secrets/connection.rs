//! A connection (Airflow's model) and its URI form, read and written by Airflow's rules
//! (`Connection._parse_from_uri` / `get_uri`), and its JSON form (`Connection.from_json`).

use serde_json::{Map, Value};

use crate::error::{EngineError, Result};

/// Airflow's longest connection id (`CONN_ID_MAX_LEN`).
pub const CONN_ID_MAX_LEN: usize = 250;

/// Airflow's connection id rule (`sanitize_conn_id`): 1-250 characters of word characters and
/// `# ! ( ) - . : / \`. upiflow takes the ASCII word characters only, so the same rule can be
/// a CHECK in the database (migrations/20260109000000_secrets.sql).
pub fn valid_conn_id(id: &str) -> bool {
    (1..=CONN_ID_MAX_LEN).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_#!()-.:/\\".contains(c))
}

/// `Ok` for a valid connection id, else the typed error.
pub fn check_conn_id(id: &str) -> Result<()> {
    if valid_conn_id(id) {
        Ok(())
    } else {
        Err(EngineError::ConnIdInvalid(id.to_string()))
    }
}

/// A connection to an external system, as Airflow models it.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Connection {
    pub conn_id: String,
    /// Airflow's conn_type: "postgres", "http", ... (URI scheme `postgresql` -> "postgres",
    /// `-` -> `_`).
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    /// Airflow's name for the database (the URI path).
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<u16>,
    /// The URI query, or the `__extra__` JSON object.
    pub extra: Map<String, Value>,
}

/// The query parameter that carries the whole extra as JSON (Airflow's `EXTRA_KEY`).
const EXTRA_KEY: &str = "__extra__";

/// Airflow's `_normalize_conn_type`.
fn normalize_conn_type(t: &str) -> String {
    if t == "postgresql" {
        "postgres".into()
    } else {
        t.replace('-', "_")
    }
}

fn invalid_uri(conn_id: &str, reason: impl Into<String>) -> EngineError {
    EngineError::ConnUriInvalid {
        conn_id: conn_id.into(),
        reason: reason.into(),
    }
}

fn invalid(conn_id: &str, reason: impl Into<String>) -> EngineError {
    EngineError::ConnInvalid {
        conn_id: conn_id.into(),
        reason: reason.into(),
    }
}

/// Percent-decoding (Python's `unquote`): `%XX` becomes the byte; the result must be UTF-8.
fn unquote(conn_id: &str, what: &str, s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        invalid_uri(
            conn_id,
            format!("the {what} is not UTF-8 once percent-decoded"),
        )
    })
}

/// Python's `quote(s, safe="")`: everything but `A-Za-z0-9_.-~` percent-encoded.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Empty text means absent (Airflow stores `""` for some of these; upiflow keeps `None`).
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn parse_port(conn_id: &str, p: &str) -> Result<Option<u16>> {
    if p.is_empty() {
        return Ok(None);
    }
    match p.parse::<u32>() {
        Ok(n @ 1..=65535) if p.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n as u16)),
        _ => Err(invalid_uri(
            conn_id,
            format!("port `{p}` is not a number from 1 to 65535"),
        )),
    }
}

/// Checks an extra's size rules and that the port is in range; used for every way in.
pub(crate) fn check_port(conn_id: &str, port: i64) -> Result<u16> {
    u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        invalid(
            conn_id,
            format!("port {port} is not a number from 1 to 65535"),
        )
    })
}

impl Connection {
    /// Parses Airflow's URI form: `TYPE://LOGIN:PASSWORD@HOST:PORT/SCHEMA?EXTRA=...`, with
    /// login, password, host and schema percent-decoded, the query as extra (or the JSON object
    /// of its `__extra__` parameter) and `TYPE://PROTOCOL://HOST...` for a host that carries a
    /// protocol (Airflow's `host_with_protocol`). As Airflow, the host is lower-cased (unless it
    /// holds a `/`), the scheme too, `postgresql` becomes `postgres` and `-` in it `_`. Beyond
    /// Airflow, what it would silently drop is refused: a `#fragment` (usually an unencoded
    /// `#` in a password), `__extra__` beside other parameters.
    pub fn from_uri(conn_id: &str, uri: &str) -> Result<Connection> {
        check_conn_id(conn_id)?;
        let schemes = uri.matches("://").count();
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(invalid_uri(
                conn_id,
                "expected TYPE://[LOGIN[:PASSWORD]@]HOST[:PORT][/SCHEMA][?EXTRA]",
            ));
        };
        if schemes > 2 {
            return Err(invalid_uri(
                conn_id,
                "more than two `://` (at most TYPE://PROTOCOL://HOST...)",
            ));
        }
        let mut sc = scheme.chars();
        if !sc.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !sc.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(invalid_uri(
                conn_id,
                format!(
                    "connection type `{scheme}` must start with a letter and hold only letters, digits, `+`, `-` and `.`"
                ),
            ));
        }
        let conn_type = normalize_conn_type(&scheme.to_ascii_lowercase());
        let (protocol, rest) = if schemes == 2 {
            let (p, r) = rest.split_once("://").expect("counted two");
            if p.contains('@') || p.contains(':') || p.contains('/') || p.is_empty() {
                return Err(invalid_uri(
                    conn_id,
                    format!("`{p}` before the second `://` is not a protocol"),
                ));
            }
            (Some(p.to_ascii_lowercase()), r)
        } else {
            (None, rest)
        };
        if let Some(i) = rest.find('#') {
            return Err(invalid_uri(
                conn_id,
                format!(
                    "`#` at byte {} starts a URI fragment, which a connection cannot hold (percent-encode a `#` in a password as %23)",
                    scheme.len() + 3 + i
                ),
            ));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (netloc, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i + 1..]),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match netloc.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, netloc),
        };
        let (login, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((l, p)) => (
                    non_empty(unquote(conn_id, "login", l)?),
                    non_empty(unquote(conn_id, "password", p)?),
                ),
                None => (non_empty(unquote(conn_id, "login", u)?), None),
            },
        };
        let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
            let Some((h, tail)) = after.split_once(']') else {
                return Err(invalid_uri(conn_id, "`[` of an IPv6 host without its `]`"));
            };
            let port = match tail {
                "" => None,
                t => match t.strip_prefix(':') {
                    Some(p) => parse_port(conn_id, p)?,
                    None => {
                        return Err(invalid_uri(
                            conn_id,
                            format!("`{t}` after the IPv6 host `[{h}]`"),
                        ));
                    }
                },
            };
            (h.to_ascii_lowercase(), port)
        } else {
            let (h, p) = match hostport.split_once(':') {
                Some((h, p)) => (h, parse_port(conn_id, p)?),
                None => (hostport, None),
            };
            let h = unquote(conn_id, "host", h)?;
            let h = if h.contains('/') { h } else { h.to_lowercase() };
            (h, p)
        };
        let host = non_empty(host).map(|h| match &protocol {
            Some(p) => format!("{p}://{h}"),
            None => h,
        });
        let schema = non_empty(unquote(conn_id, "schema", path)?);
        let mut extra = Map::new();
        if let Some(q) = query {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if let Some((_, json)) = pairs.iter().find(|(k, _)| k == EXTRA_KEY) {
                if pairs.iter().any(|(k, _)| k != EXTRA_KEY) {
                    return Err(invalid_uri(
                        conn_id,
                        "`__extra__` holds the whole extra; it cannot come with other query parameters",
                    ));
                }
                extra = parse_extra(conn_id, json)?;
            } else {
                for (k, v) in pairs {
                    // Python's dict(parse_qsl(...)): the last of a repeated name wins.
                    extra.insert(k, Value::String(v));
                }
            }
        }
        Ok(Connection {
            conn_id: conn_id.to_string(),
            conn_type,
            description: None,
            host,
            schema,
            login,
            password,
            port,
            extra,
        })
    }

    /// Airflow's JSON form of a connection (as an `AIRFLOW_CONN_*` value or in an import
    /// file): `{"conn_type": ..., "host": ..., "login": ..., "password": ..., "schema": ...,
    /// "port": ..., "extra": {...} or "{...}", "description": ...}`. Unknown keys are errors.
    pub fn from_json(conn_id: &str, value: &Value) -> Result<Connection> {
        check_conn_id(conn_id)?;
        let Value::Object(o) = value else {
            return Err(invalid(conn_id, "the JSON form must be an object"));
        };
        let text = |k: &str| -> Result<Option<String>> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(non_empty(s.clone())),
                Some(v) => Err(invalid(conn_id, format!("`{k}` must be text, not {v}"))),
            }
        };
        for k in o.keys() {
            if ![
                "conn_type",
                "conn_id",
                "description",
                "host",
                "schema",
                "login",
                "password",
                "port",
                "extra",
            ]
            .contains(&k.as_str())
            {
                return Err(invalid(conn_id, format!("unknown field `{k}`")));
            }
        }
        if let Some(id) = o.get("conn_id").filter(|v| !v.is_null())
            && id.as_str() != Some(conn_id)
        {
            return Err(invalid(
                conn_id,
                format!("the entry's `conn_id` {id} is not `{conn_id}`"),
            ));
        }
        let conn_type = text("conn_type")?
            .map(|t| normalize_conn_type(&t))
            .ok_or_else(|| invalid(conn_id, "`conn_type` is required"))?;
        let port = match o.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(check_port(
                conn_id,
                n.as_i64().ok_or_else(|| {
                    invalid(conn_id, format!("port {n} is not a number from 1 to 65535"))
                })?,
            )?),
            // Airflow takes int(port) of a text too.
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(check_port(
                conn_id,
                s.trim().parse().map_err(|_| {
                    invalid(
                        conn_id,
                        format!("port `{s}` is not a number from 1 to 65535"),
                    )
                })?,
            )?),
            Some(v) => return Err(invalid(conn_id, format!("port {v} is not a number"))),
        };
        let extra = match o.get("extra") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(Value::String(s)) if s.is_empty() => Map::new(),
            Some(Value::String(s)) => parse_extra(conn_id, s)?,
            Some(v) => {
                return Err(invalid(
                    conn_id,
                    format!("`extra` must be a JSON object, not {v}"),
                ));
            }
        };
        Ok(Connection {
            conn_id: conn_id.to_string(),
            conn_type,
            description: text("description")?,
            host: text("host")?,
            schema: text("schema")?,
            login: text("login")?,
            password: text("password")?,
            port,
            extra,
        })
    }

    /// An environment value: Airflow's JSON form if it starts with `{`, else a URI.
    pub fn from_env_value(conn_id: &str, value: &str) -> Result<Connection> {
        let v = value.trim();
        if v.starts_with('{') {
            let json: Value = serde_json::from_str(v)
                .map_err(|e| invalid(conn_id, format!("the JSON form does not parse: {e}")))?;
            Connection::from_json(conn_id, &json)
        } else {
            Connection::from_uri(conn_id, v)
        }
    }

    /// Airflow's JSON form (for export files): only the fields that are set.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("conn_type".into(), Value::String(self.conn_type.clone()));
        for (k, v) in [
            ("description", &self.description),
            ("host", &self.host),
            ("login", &self.login),
            ("password", &self.password),
            ("schema", &self.schema),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), Value::String(v.clone()));
            }
        }
        if let Some(p) = self.port {
            o.insert("port".into(), Value::from(p));
        }
        if !self.extra.is_empty() {
            o.insert("extra".into(), Value::Object(self.extra.clone()));
        }
        Value::Object(o)
    }

    /// Checks what may be stored: the id, a conn_type, the port (u16 and not 0).
    pub fn validate(&self) -> Result<()> {
        check_conn_id(&self.conn_id)?;
        if self.conn_type.trim().is_empty() {
            return Err(invalid(&self.conn_id, "a connection type is required"));
        }
        if self.port == Some(0) {
            return Err(invalid(
                &self.conn_id,
                "port 0 is not a number from 1 to 65535",
            ));
        }
        Ok(())
    }

    /// Airflow's URI form (`get_uri`); [`Connection::from_uri`] reads it back to the same
    /// connection (but the description, which a URI does not carry). An extra whose values
    /// are all text becomes query parameters, any other the `__extra__` JSON parameter.
    pub fn to_uri(&self) -> String {
        let mut uri = format!("{}://", self.conn_type.replace('_', "-"));
        let (protocol, host) = match self.host.as_deref() {
            Some(h) => match h.split_once("://") {
                Some((p, h)) => (Some(p), Some(h)),
                None => (None, Some(h)),
            },
            None => (None, None),
        };
        if let Some(p) = protocol {
            uri.push_str(p);
            uri.push_str("://");
        }
        let mut authority = String::new();
        if let Some(l) = &self.login {
            authority.push_str(&quote(l));
        }
        if let Some(p) = &self.password {
            authority.push(':');
            authority.push_str(&quote(p));
        }
        if !authority.is_empty() {
            authority.push('@');
            uri.push_str(&authority);
        }
        let mut host_block = host.map(quote).unwrap_or_default();
        if let Some(port) = self.port {
            if host_block.is_empty() && authority.is_empty() {
                host_block.push('@');
            }
            host_block.push_str(&format!(":{port}"));
        }
        if let Some(s) = &self.schema {
            host_block.push('/');
            host_block.push_str(&quote(s));
        }
        uri.push_str(&host_block);
        if !self.extra.is_empty() {
            uri.push_str(if self.schema.is_some() { "?" } else { "/?" });
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            if self.extra.values().all(Value::is_string) {
                for (k, v) in &self.extra {
                    ser.append_pair(k, v.as_str().unwrap_or_default());
                }
            } else {
                ser.append_pair(EXTRA_KEY, &Value::Object(self.extra.clone()).to_string());
            }
            uri.push_str(&ser.finish());
        }
        uri
    }

    /// A libpq/sqlx URL for a Postgres-protocol connection: host (required), port, schema as
    /// the database, login, password, and the extras sqlx understands (`sslmode`,
    /// `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `options`). Any other type, a
    /// missing host or another extra is an error naming it.
    pub fn postgres_url(&self) -> Result<String> {
        const PASSED: [&str; 6] = [
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "application_name",
            "options",
        ];
        let unsupported = |reason: String| EngineError::ConnUnsupported {
            conn_id: self.conn_id.clone(),
            conn_type: self.conn_type.clone(),
            reason,
        };
        if self.conn_type != "postgres" {
            return Err(unsupported(
                "not a Postgres-protocol connection (the type must be `postgres`)".into(),
            ));
        }
        let Some(host) = self.host.as_deref() else {
            return Err(unsupported("has no host".into()));
        };
        let mut url = "postgres://".to_string();
        if let Some(l) = &self.login {
            url.push_str(&quote(l));
            if let Some(p) = &self.password {
                url.push(':');
                url.push_str(&quote(p));
            }
            url.push('@');
        } else if self.password.is_some() {
            return Err(unsupported("has a password but no login".into()));
        }
        if host.contains(':') {
            url.push_str(&format!("[{host}]"));
        } else {
            url.push_str(&quote(host));
        }
        if let Some(p) = self.port {
            url.push_str(&format!(":{p}"));
        }
        if let Some(s) = &self.schema {
            url.push('/');
            url.push_str(&quote(s));
        }
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (k, v) in &self.extra {
            if !PASSED.contains(&k.as_str()) {
                return Err(unsupported(format!(
                    "extra `{k}` is not supported for Postgres (supported: {})",
                    PASSED.join(", ")
                )));
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ser.append_pair(k, &v);
            any = true;
        }
        if any {
            url.push('?');
            url.push_str(&ser.finish());
        }
        Ok(url)
    }
}

/// An extra as stored or given in text: a JSON object.
pub(crate) fn parse_extra(conn_id: &str, text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(invalid(
            conn_id,
            format!("the extra must be a JSON object, not {other}"),
        )),
        Err(e) => Err(invalid(conn_id, format!("the extra is not JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(uri: &str) -> Connection {
        Connection::from_uri("c", uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    #[test]
    fn a_full_postgres_uri_fills_every_field() {
        let c = parse("postgresql://user:p%40ss%2Fw@db.example:6543/ware%20house?sslmode=require");
        assert_eq!(c.conn_type, "postgres");
        assert_eq!(c.login.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some("p@ss/w"));
        assert_eq!(c.host.as_deref(), Some("db.example"));
        assert_eq!(c.port, Some(6543));
        assert_eq!(c.schema.as_deref(), Some("ware house"));
        assert_eq!(
            c.extra,
            json!({"sslmode": "require"}).as_object().unwrap().clone()
        );
    }

    #[test]
    fn the_scheme_is_normalised_as_airflow_does() {
        assert_eq!(
            parse("google-cloud-platform://").conn_type,
            "google_cloud_platform"
        );
        assert_eq!(parse("HTTP://h").conn_type, "http");
        assert_eq!(parse("postgres://h").conn_type, "postgres");
    }

    #[test]
    fn a_host_with_a_protocol_keeps_it() {
        let c = parse("http://https://user:pw@api.example:8443/v1");
        assert_eq!(c.conn_type, "http");
        assert_eq!(c.host.as_deref(), Some("https://api.example"));
        assert_eq!(c.port, Some(8443));
        assert_eq!(c.schema.as_deref(), Some("v1"));
        assert_eq!(c.to_uri(), "http://https://user:pw@api.example:8443/v1");
        assert!(Connection::from_uri("c", "http://us:er@x://host").is_err());
    }

    #[test]
    fn extra_comes_from_the_query_or_from_the_extra_key() {
        let c = parse("http://h/?a=1&b=x+y&a=2");
        assert_eq!(
            c.extra,
            json!({"a": "2", "b": "x y"}).as_object().unwrap().clone()
        );
        let e = json!({"n": 3, "nested": {"k": [1, 2]}});
        let uri = format!("http://h/?__extra__={}", quote(&e.to_string()));
        assert_eq!(parse(&uri).extra, e.as_object().unwrap().clone());
        let err = Connection::from_uri("c", "http://h/?__extra__=%7B%7D&x=1").unwrap_err();
        assert!(err.to_string().contains("cannot come with other"), "{err}");
        let err = Connection::from_uri("c", "http://h/?__extra__=%5B1%5D").unwrap_err();
        assert!(err.to_string().contains("JSON object"), "{err}");
    }

    #[test]
    fn uris_round_trip() {
        let mut extra = Map::new();
        extra.insert("timeout".into(), json!(30));
        extra.insert("verify".into(), json!(false));
        let cases = vec![
            Connection {
                conn_id: "c".into(),
                conn_type: "postgres".into(),
                host: Some("db".into()),
                login: Some("us er".into()),
                password: Some("p:@/#?%&=+ ü".into()),
                port: Some(5432),
                schema: Some("my/db".into()),
                extra: json!({"sslmode": "require", "application_name": "a b&c"})
                    .as_object()
                    .unwrap()
                    .clone(),
                ..Default::default()
            },
            Connection {
                conn_id: "c".into(),
                conn_type: "google_cloud_platform".into(),
                extra: extra.clone(),
                ..Default::default()
            },
            Connection {
                conn_id: "c".into(),
                conn_type: "http".into(),
                port: Some(80),
                ..Default::default()
            },
            Connection {
                conn_id: "c".into(),
                conn_type: "http".into(),
                host: Some("https://x.example".into()),
                password: Some("only-password".into()),
                ..Default::default()
            },
            Connection {
                conn_id: "c".into(),
                conn_type: "postgres".into(),
                host: Some("::1".into()),
                port: Some(5433),
                ..Default::default()
            },
        ];
        for c in cases {
            let uri = c.to_uri();
            assert_eq!(Connection::from_uri("c", &uri).unwrap(), c, "{uri}");
        }
    }

    #[test]
    fn bracketed_ipv6_hosts_parse() {
        let c = parse("postgres://u@[::1]:5433/db");
        assert_eq!(c.host.as_deref(), Some("::1"));
        assert_eq!(c.port, Some(5433));
        assert_eq!(c.postgres_url().unwrap(), "postgres://u@[::1]:5433/db");
    }

    #[test]
    fn malformed_uris_are_clear_errors() {
        for (uri, says) in [
            ("no-scheme-here", "expected TYPE://"),
            ("postgres://u:p@h:99999/db", "port `99999`"),
            ("postgres://u:p@h:0/db", "port `0`"),
            ("postgres://u:p@h:54x/db", "port `54x`"),
            ("postgres://u:pa#ss@h/db", "fragment"),
            ("a://b://c://d", "more than two"),
            ("1x://h", "must start with a letter"),
            ("://h", "must start with a letter"),
            ("postgres://u:%ff@h", "not UTF-8"),
        ] {
            let e = Connection::from_uri("c", uri).unwrap_err();
            assert!(e.to_string().contains(says), "{uri}: {e}");
            assert_eq!(e.kind(), crate::ErrorKind::Invalid);
        }
        let e = Connection::from_uri("bad id", "http://h").unwrap_err();
        assert!(matches!(e, EngineError::ConnIdInvalid(_)), "{e}");
    }

    #[test]
    fn conn_ids_follow_airflows_rule() {
        for ok in [
            "warehouse",
            "my-db.prod",
            "a:b/c\\d#e!(f)",
            &"x".repeat(250),
        ] {
            assert!(valid_conn_id(ok), "{ok}");
        }
        for bad in ["", "has space", "semi;colon", "quote'", &"x".repeat(251)] {
            assert!(!valid_conn_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_json_form_reads_as_airflow_writes_it() {
        let c = Connection::from_env_value(
            "w",
            r#" {"conn_type": "postgresql", "host": "h", "port": "5432", "login": "u",
                 "password": "p", "schema": "db", "extra": "{\"sslmode\": \"disable\"}"} "#,
        )
        .unwrap();
        assert_eq!(c.conn_type, "postgres");
        assert_eq!(c.port, Some(5432));
        assert_eq!(c.extra.get("sslmode"), Some(&json!("disable")));
        assert_eq!(Connection::from_json("w", &c.to_json()).unwrap(), c);
        let same_id = serde_json::json!({"conn_type": "http", "conn_id": "w"});
        assert_eq!(
            Connection::from_json("w", &same_id).unwrap().conn_type,
            "http"
        );
        for (v, says) in [
            (r#"{"host": "h"}"#, "`conn_type` is required"),
            (r#"{"conn_type": "x", "port": 70000}"#, "port 70000"),
            (r#"{"conn_type": "x", "extra": "[1]"}"#, "JSON object"),
            (r#"{"conn_type": "x", "hots": "h"}"#, "unknown field `hots`"),
            (r#"{"conn_type": "x""#, "does not parse"),
            (r#"{"conn_type": "x", "conn_id": "other"}"#, "is not `w`"),
        ] {
            let e = Connection::from_env_value("w", v).unwrap_err();
            assert!(e.to_string().contains(says), "{v}: {e}");
        }
    }

    #[test]
    fn postgres_url_passes_what_sqlx_understands_and_refuses_the_rest() {
        let c = parse("postgres://u:p%20w@h:5433/db?sslmode=require");
        assert_eq!(
            c.postgres_url().unwrap(),
            "postgres://u:p%20w@h:5433/db?sslmode=require"
        );
        let e = parse("postgres://u@h/db?iam=true")
            .postgres_url()
            .unwrap_err();
        assert!(e.to_string().contains("extra `iam`"), "{e}");
        let e = parse("http://h").postgres_url().unwrap_err();
        assert!(e.to_string().contains("not a Postgres-protocol"), "{e}");
        let e = parse("postgres://u@:5432/db").postgres_url().unwrap_err();
        assert!(e.to_string().contains("no host"), "{e}");
    }
}
