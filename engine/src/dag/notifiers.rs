//! Notifiers (`[[notifiers]]` tables of a DAG file or of the DAGs folder's shared
//! `notifiers.toml`) and a DAG's `deadline`: their model and how they are read, key by key,
//! every problem at its line (as `load` reads the rest of a file).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fields::{self, Ctx, join, unknown_keys};
use super::locate::{Locator, Seg};
use super::problem::{KeyPlace, Problem};
use super::{DagError, TaskReference};
use crate::kind::Reference;

/// The file of the DAGs folder holding notifiers every DAG below it may name (not a DAG).
pub const NOTIFIERS_FILE: &str = "notifiers.toml";

/// How long a delivery attempt may take when the notifier sets no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A named way of telling someone that something happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifier {
    pub name: String,
    /// How long one delivery attempt may take.
    pub timeout: Duration,
    #[serde(flatten)]
    pub spec: NotifierSpec,
}

/// What a notifier is, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifierSpec {
    /// A JSON POST with a Slack-compatible `text` field.
    Webhook {
        url: String,
        /// Extra headers; a value may name a connection's field (`{{ conn.ID.password }}`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// A connection whose login and password authenticate the POST (basic auth with a
        /// login, else `Authorization: Bearer <password>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conn: Option<String>,
    },
    /// An email through an SMTP server.
    Email {
        host: String,
        port: u16,
        tls: EmailTls,
        from: String,
        to: Vec<String>,
        /// A connection whose login and password sign in to the server.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conn: Option<String>,
    },
    /// A program run with the notification as JSON on its stdin; exit 0 means delivered.
    Command { command: Vec<String> },
}

impl NotifierSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Email { .. } => "email",
            Self::Command { .. } => "command",
        }
    }
}

/// How an email notifier talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTls {
    /// Plain connection upgraded with STARTTLS (required), port 587 by default.
    Starttls,
    /// TLS from the first byte (SMTPS), port 465 by default.
    Tls,
    /// No encryption, port 25 by default (loopback relays, tests).
    None,
}

impl EmailTls {
    pub const ALL: [(&'static str, EmailTls); 3] = [
        ("starttls", EmailTls::Starttls),
        ("tls", EmailTls::Tls),
        ("none", EmailTls::None),
    ];

    fn default_port(self) -> u16 {
        match self {
            Self::Starttls => 587,
            Self::Tls => 465,
            Self::None => 25,
        }
    }
}

/// When a run must be finished by: `reference` plus `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub reference: DeadlineReference,
    pub interval: Duration,
}

/// The time a [`Deadline`] counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineReference {
    DataIntervalEnd,
    LogicalDate,
    QueuedAt,
}

impl DeadlineReference {
    pub const ALL: [(&'static str, DeadlineReference); 3] = [
        ("data_interval_end", DeadlineReference::DataIntervalEnd),
        ("logical_date", DeadlineReference::LogicalDate),
        ("queued_at", DeadlineReference::QueuedAt),
    ];
}

const COMMON_KEYS: &[&str] = &["name", "kind", "timeout"];
const WEBHOOK_KEYS: &[&str] = &["url", "headers", "conn"];
const EMAIL_KEYS: &[&str] = &["host", "port", "tls", "from", "to", "conn"];
const COMMAND_KEYS: &[&str] = &["command"];
const DEADLINE_KEYS: &[&str] = &["reference", "interval"];

/// The notifiers of one file, as far as they could be read.
#[derive(Debug, Clone, Default)]
pub(super) struct Parsed {
    pub notifiers: Vec<Notifier>,
    /// Names of entries that have problems (reported already): naming one is not "unknown".
    pub broken: Vec<String>,
    /// The connections each notifier names, with the line of the key.
    pub conns: HashMap<String, Vec<(usize, String)>>,
}

/// The shared notifiers of a `notifiers.toml`, and its problems.
#[derive(Debug, Clone, Default)]
pub struct SharedNotifiers {
    pub(super) file: PathBuf,
    pub(super) parsed: Parsed,
}

/// Reads a `notifiers.toml` (only `[[notifiers]]` tables). The notifiers that are valid are
/// returned with the problems of the others, each at its line of that file.
pub fn load_notifiers_file(path: &Path) -> (SharedNotifiers, Vec<DagError>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let err = DagError::new(
                path.to_path_buf(),
                1,
                Problem::Unreadable {
                    error: e.to_string(),
                },
            );
            return (SharedNotifiers::default(), vec![err]);
        }
    };
    let mut cx = Ctx {
        file: path,
        loc: Locator::new(&text),
        errors: Vec::new(),
    };
    let doc: toml::Table = match toml::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map_or(1, |s| cx.loc.line_of(s.start));
            let err = DagError::new(
                path.to_path_buf(),
                line,
                Problem::Syntax {
                    message: e.message().trim().to_string(),
                },
            );
            return (SharedNotifiers::default(), vec![err]);
        }
    };
    unknown_keys(&mut cx, &[], &doc, &["notifiers"], KeyPlace::NotifiersFile);
    let parsed = parse(&mut cx, &doc);
    cx.errors.sort_by_key(|e| e.line);
    (
        SharedNotifiers {
            file: path.to_path_buf(),
            parsed,
        },
        cx.errors,
    )
}

/// Reads the `[[notifiers]]` array of `doc`.
pub(super) fn parse(cx: &mut Ctx<'_>, doc: &toml::Table) -> Parsed {
    use Seg::{Index, Key};
    let mut out = Parsed::default();
    let entries: &[toml::Value] = match doc.get("notifiers") {
        None => return out,
        Some(toml::Value::Array(a)) => a,
        Some(v) => {
            cx.err(
                &[Key("notifiers")],
                Problem::NotifiersNotArray {
                    found: fields::describe(v),
                },
            );
            return out;
        }
    };
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = [Key("notifiers"), Index(i)];
        let Some(t) = entry.as_table() else {
            cx.err(
                &at,
                Problem::NotifierNotTable {
                    number: i + 1,
                    found: fields::describe(entry),
                },
            );
            continue;
        };
        let before = cx.errors.len();
        let name = match t.get("name") {
            None => {
                cx.err(&at, Problem::NotifierWithoutName { number: i + 1 });
                None
            }
            Some(_) => fields::string(cx, &at, t, "name"),
        };
        let label = name.map_or_else(|| format!("#{}", i + 1), str::to_string);
        if let Some(n) = name {
            if !valid_name(n) {
                cx.err(
                    &join(&at, "name"),
                    Problem::InvalidNotifierName {
                        name: n.to_string(),
                    },
                );
            }
            let line = cx.loc.line(&join(&at, "name"));
            if let Some(&first) = first_line.get(n) {
                cx.err(
                    &join(&at, "name"),
                    Problem::DuplicateNotifier {
                        name: n.to_string(),
                        first_line: first,
                    },
                );
            } else {
                first_line.insert(n, line);
            }
        }
        let kind = match t.get("kind") {
            None => {
                cx.err(
                    &at,
                    Problem::NotifierWithoutKind {
                        notifier: label.clone(),
                    },
                );
                None
            }
            Some(_) => fields::string(cx, &at, t, "kind"),
        };
        let timeout = match t.get("timeout") {
            None => Some(DEFAULT_TIMEOUT),
            Some(v) => match super::load::parse_duration(v) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    cx.err(
                        &join(&at, "timeout"),
                        Problem::NotifierKey {
                            notifier: label.clone(),
                            message: "`timeout` must be more than zero".into(),
                        },
                    );
                    None
                }
                Err(e) => {
                    cx.err(
                        &join(&at, "timeout"),
                        Problem::BadDuration {
                            key: "timeout".into(),
                            problem: e,
                        },
                    );
                    None
                }
            },
        };
        let mut conns = Vec::new();
        let spec = match kind {
            None => None,
            Some("webhook") => {
                check_keys(cx, &at, t, WEBHOOK_KEYS, &label, "webhook");
                webhook(cx, &at, t, &label, &mut conns)
            }
            Some("email") => {
                check_keys(cx, &at, t, EMAIL_KEYS, &label, "email");
                email(cx, &at, t, &label, &mut conns)
            }
            Some("command") => {
                check_keys(cx, &at, t, COMMAND_KEYS, &label, "command");
                command(cx, &at, t, &label)
            }
            Some(other) => {
                cx.err(
                    &join(&at, "kind"),
                    Problem::UnknownNotifierKind {
                        kind: other.to_string(),
                    },
                );
                None
            }
        };
        let Some(name) = name else { continue };
        match (spec, timeout) {
            (Some(spec), Some(timeout)) if cx.errors.len() == before => {
                out.conns.insert(name.to_string(), conns);
                out.notifiers.push(Notifier {
                    name: name.to_string(),
                    timeout,
                    spec,
                });
            }
            _ => out.broken.push(name.to_string()),
        }
    }
    out
}

/// What a notifier may be called (as task ids).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 250
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn check_keys(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    t: &toml::Table,
    own: &[&str],
    label: &str,
    kind: &str,
) {
    let allowed: Vec<&str> = COMMON_KEYS.iter().chain(own).copied().collect();
    unknown_keys(
        cx,
        at,
        t,
        &allowed,
        KeyPlace::Notifier {
            notifier: label.to_string(),
            kind: kind.to_string(),
        },
    );
}

/// A key the kind requires.
fn required<'t>(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    t: &'t toml::Table,
    key: &'static str,
    label: &str,
    kind: &'static str,
) -> Option<&'t str> {
    if !t.contains_key(key) {
        cx.err(
            at,
            Problem::NotifierMissingKey {
                notifier: label.to_string(),
                kind: kind.to_string(),
                key: key.to_string(),
            },
        );
        return None;
    }
    fields::string(cx, at, t, key)
}

/// A `conn = "ID"` key, recorded for the existence check of `dags validate`.
fn conn_key(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    t: &toml::Table,
    label: &str,
    conns: &mut Vec<(usize, String)>,
) -> Option<String> {
    let id = fields::string(cx, at, t, "conn")?;
    if !crate::secrets::valid_conn_id(id) {
        cx.err(
            &join(at, "conn"),
            Problem::NotifierKey {
                notifier: label.to_string(),
                message: format!("`conn` = `{id}` is not a valid connection id"),
            },
        );
        return None;
    }
    conns.push((cx.loc.line(&join(at, "conn")), id.to_string()));
    Some(id.to_string())
}

fn webhook(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    t: &toml::Table,
    label: &str,
    conns: &mut Vec<(usize, String)>,
) -> Option<NotifierSpec> {
    let url = required(cx, at, t, "url", label, "webhook");
    let url = url.and_then(|u| match reqwest::Url::parse(u) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Some(u.to_string())
        }
        Ok(parsed) => {
            cx.err(
                &join(at, "url"),
                Problem::WebhookUrl {
                    notifier: label.to_string(),
                    url: u.to_string(),
                    why: format!("the scheme is `{}`, not http or https", parsed.scheme()),
                },
            );
            None
        }
        Err(e) => {
            cx.err(
                &join(at, "url"),
                Problem::WebhookUrl {
                    notifier: label.to_string(),
                    url: u.to_string(),
                    why: e.to_string(),
                },
            );
            None
        }
    });
    let mut headers = BTreeMap::new();
    if let Some(table) = fields::table(cx, at, t, "headers", "headers = { Name = \"value\" }") {
        let hat = join(at, "headers");
        for (name, value) in table {
            let here = join(&hat, name);
            let Some(value) = value.as_str() else {
                cx.err(
                    &here,
                    Problem::NotifierKey {
                        notifier: label.to_string(),
                        message: format!(
                            "header `{name}` must be a string, not {}",
                            fields::describe(value)
                        ),
                    },
                );
                continue;
            };
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                cx.err(
                    &here,
                    Problem::NotifierKey {
                        notifier: label.to_string(),
                        message: format!("`{name}` is not a valid HTTP header name"),
                    },
                );
                continue;
            }
            match header_conns(value) {
                Ok(ids) => {
                    let line = cx.loc.line(&here);
                    conns.extend(ids.into_iter().map(|id| (line, id)));
                    headers.insert(name.clone(), value.to_string());
                }
                Err(message) => cx.err(
                    &here,
                    Problem::NotifierKey {
                        notifier: label.to_string(),
                        message: format!("header `{name}`: {message}"),
                    },
                ),
            }
        }
    }
    let conn = conn_key(cx, at, t, label, conns);
    Some(NotifierSpec::Webhook {
        url: url?,
        headers,
        conn,
    })
}

/// The connection fields a header template may name.
pub const HEADER_CONN_FIELDS: [&str; 5] = ["login", "password", "host", "port", "schema"];

/// The parts of a header value: literal text and `{{ conn.ID.FIELD }}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderPart<'a> {
    Text(&'a str),
    Conn { conn_id: &'a str, field: &'a str },
}

/// Splits a header value into its parts; an error for a placeholder that is not
/// `{{ conn.ID.FIELD }}` with a known field.
pub fn header_parts(value: &str) -> Result<Vec<HeaderPart<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(HeaderPart::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "`{{` without a closing `}}`".to_string())?;
        let expr = after[..close].trim();
        let mut parts = expr.splitn(3, '.');
        let (Some("conn"), Some(conn_id), Some(field)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "`{{{{ {expr} }}}}` is not a connection field (write {{{{ conn.ID.password }}}})"
            ));
        };
        if !HEADER_CONN_FIELDS.contains(&field) {
            return Err(format!(
                "`{field}` is not a connection field a header may use (one of {})",
                HEADER_CONN_FIELDS.join(", ")
            ));
        }
        out.push(HeaderPart::Conn { conn_id, field });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(HeaderPart::Text(rest));
    }
    Ok(out)
}

fn header_conns(value: &str) -> Result<Vec<String>, String> {
    Ok(header_parts(value)?
        .into_iter()
        .filter_map(|p| match p {
            HeaderPart::Conn { conn_id, .. } => Some(conn_id.to_string()),
            HeaderPart::Text(_) => None,
        })
        .collect())
}

fn email(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    t: &toml::Table,
    label: &str,
    conns: &mut Vec<(usize, String)>,
) -> Option<NotifierSpec> {
    let host = required(cx, at, t, "host", label, "email");
    let tls = match fields::string(cx, at, t, "tls") {
        None if t.contains_key("tls") => None,
        None => Some(EmailTls::Starttls),
        Some(s) => match EmailTls::ALL.iter().find(|(n, _)| *n == s) {
            Some((_, m)) => Some(*m),
            None => {
                cx.err(
                    &join(at, "tls"),
                    Problem::NotifierKey {
                        notifier: label.to_string(),
                        message: format!(
                            "unknown tls mode `{s}` (expected one of {})",
                            EmailTls::ALL.map(|(n, _)| n).join(", ")
                        ),
                    },
                );
                None
            }
        },
    };
    let port = match t.get("port") {
        None => tls.map(EmailTls::default_port),
        Some(toml::Value::Integer(n)) if (1..=65535).contains(n) => Some(*n as u16),
        Some(v) => {
            cx.err(
                &join(at, "port"),
                Problem::NotifierKey {
                    notifier: label.to_string(),
                    message: format!("`port` must be a port number (1-65535), not {v}"),
                },
            );
            None
        }
    };
    let from = required(cx, at, t, "from", label, "email").and_then(|f| {
        mailbox(cx, &join(at, "from"), label, f)?;
        Some(f.to_string())
    });
    let to = if t.contains_key("to") {
        fields::strings(cx, at, t, "to")
    } else {
        cx.err(
            at,
            Problem::NotifierMissingKey {
                notifier: label.to_string(),
                kind: "email".into(),
                key: "to".into(),
            },
        );
        None
    };
    let to = to.and_then(|list| {
        if list.is_empty() {
            cx.err(
                &join(at, "to"),
                Problem::NotifierKey {
                    notifier: label.to_string(),
                    message: "`to` must name at least one recipient".into(),
                },
            );
            return None;
        }
        let mut ok = true;
        for (i, addr) in list.iter().enumerate() {
            let mut path = join(at, "to");
            path.push(Seg::Index(i));
            ok &= mailbox(cx, &path, label, addr).is_some();
        }
        ok.then(|| list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    });
    let conn = conn_key(cx, at, t, label, conns);
    Some(NotifierSpec::Email {
        host: host?.to_string(),
        port: port?,
        tls: tls?,
        from: from?,
        to: to?,
        conn,
    })
}

fn mailbox(cx: &mut Ctx<'_>, path: &[Seg<'_>], label: &str, addr: &str) -> Option<()> {
    match addr.parse::<lettre::message::Mailbox>() {
        Ok(_) => Some(()),
        Err(e) => {
            cx.err(
                path,
                Problem::NotifierKey {
                    notifier: label.to_string(),
                    message: format!("`{addr}` is not an email address ({e})"),
                },
            );
            None
        }
    }
}

fn command(cx: &mut Ctx<'_>, at: &[Seg<'_>], t: &toml::Table, label: &str) -> Option<NotifierSpec> {
    if !t.contains_key("command") {
        cx.err(
            at,
            Problem::NotifierMissingKey {
                notifier: label.to_string(),
                kind: "command".into(),
                key: "command".into(),
            },
        );
        return None;
    }
    let argv = fields::strings(cx, at, t, "command")?;
    if argv.is_empty() || argv[0].is_empty() {
        cx.err(
            &join(at, "command"),
            Problem::NotifierKey {
                notifier: label.to_string(),
                message:
                    "`command` must be a non-empty argv (e.g. [\"sh\", \"-c\", \"cat >> /tmp/n\"])"
                        .into(),
            },
        );
        return None;
    }
    Some(NotifierSpec::Command {
        command: argv.iter().map(|s| s.to_string()).collect(),
    })
}

/// Reads `deadline = { reference = "...", interval = "2h" }`.
pub(super) fn deadline(cx: &mut Ctx<'_>, doc: &toml::Table) -> Option<Deadline> {
    use Seg::Key;
    let t = fields::table(
        cx,
        &[],
        doc,
        "deadline",
        "deadline = { reference = \"data_interval_end\", interval = \"2h\" }",
    )?;
    let at = [Key("deadline")];
    unknown_keys(cx, &at, t, DEADLINE_KEYS, KeyPlace::Deadline);
    let reference = match t.get("reference") {
        None => {
            cx.err(&at, Problem::DeadlineMissing { key: "reference" });
            None
        }
        Some(_) => fields::string(cx, &at, t, "reference").and_then(|s| {
            let r = DeadlineReference::ALL
                .iter()
                .find(|(n, _)| *n == s)
                .map(|(_, r)| *r);
            if r.is_none() {
                cx.err(
                    &join(&at, "reference"),
                    Problem::UnknownDeadlineReference {
                        value: s.to_string(),
                    },
                );
            }
            r
        }),
    };
    let interval = match t.get("interval") {
        None => {
            cx.err(&at, Problem::DeadlineMissing { key: "interval" });
            None
        }
        Some(v) => match super::load::parse_duration(v) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                cx.err(&join(&at, "interval"), Problem::DeadlineNotPositive);
                None
            }
            Err(e) => {
                cx.err(
                    &join(&at, "interval"),
                    Problem::BadDuration {
                        key: "deadline.interval".into(),
                        problem: e,
                    },
                );
                None
            }
        },
    };
    Some(Deadline {
        reference: reference?,
        interval: interval?,
    })
}

/// The notifiers a DAG file can name: its own, over the shared ones.
pub(super) struct Available<'a> {
    pub own: &'a Parsed,
    pub shared: Option<&'a SharedNotifiers>,
}

/// What naming a notifier found.
pub(super) enum Found<'a> {
    Own(&'a Notifier),
    Shared(&'a Notifier, &'a SharedNotifiers),
    /// Defined with problems (reported where it is defined).
    Broken {
        shared_file: Option<&'a Path>,
    },
    Unknown,
}

impl<'a> Available<'a> {
    pub fn find(&self, name: &str) -> Found<'a> {
        if let Some(n) = self.own.notifiers.iter().find(|n| n.name == name) {
            return Found::Own(n);
        }
        if self.own.broken.iter().any(|b| b == name) {
            return Found::Broken { shared_file: None };
        }
        if let Some(s) = self.shared {
            if let Some(n) = s.parsed.notifiers.iter().find(|n| n.name == name) {
                return Found::Shared(n, s);
            }
            if s.parsed.broken.iter().any(|b| b == name) {
                return Found::Broken {
                    shared_file: Some(&s.file),
                };
            }
        }
        Found::Unknown
    }

    /// Every name that can be used, for messages.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .own
            .notifiers
            .iter()
            .chain(self.shared.iter().flat_map(|s| s.parsed.notifiers.iter()))
            .map(|n| n.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The references (connections) of a used notifier, for `dags validate`.
    pub fn references(&self, found: &Found<'_>) -> Vec<TaskReference> {
        let (name, conns, file) = match found {
            Found::Own(n) => (&n.name, self.own.conns.get(&n.name), None),
            Found::Shared(n, s) => (&n.name, s.parsed.conns.get(&n.name), Some(s.file.clone())),
            _ => return Vec::new(),
        };
        conns
            .into_iter()
            .flatten()
            .map(|(line, id)| TaskReference {
                task: String::new(),
                notifier: Some(name.clone()),
                file: file.clone(),
                line: *line,
                reference: Reference::Connection(id.clone()),
            })
            .collect()
    }
}

/// The nearest `notifiers.toml` at or above `dir`, up to `root` (inclusive) when given.
pub(super) fn nearest_notifiers_file(dir: &Path, root: Option<&Path>) -> Option<PathBuf> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        let candidate = d.join(NOTIFIERS_FILE);
        if candidate.is_file() {
            return Some(candidate);
        }
        if root.is_some_and(|r| r == d) {
            return None;
        }
        cur = d.parent().filter(|p| !p.as_os_str().is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_templates_name_connection_fields() {
        assert_eq!(
            header_parts("Bearer {{ conn.slack.password }}!").unwrap(),
            vec![
                HeaderPart::Text("Bearer "),
                HeaderPart::Conn {
                    conn_id: "slack",
                    field: "password"
                },
                HeaderPart::Text("!"),
            ]
        );
        assert!(header_parts("{{ var.x }}").is_err());
        assert!(header_parts("{{ conn.slack.extra }}").is_err());
        assert!(header_parts("{{ conn.slack.password").is_err());
        assert_eq!(
            header_parts("plain").unwrap(),
            vec![HeaderPart::Text("plain")]
        );
    }
}
