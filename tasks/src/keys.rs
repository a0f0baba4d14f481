//! Reads a task's kind-specific keys (a TOML table) into a typed serde struct, turning
//! serde's errors into [`PrepareError`]s that point at the offending key.

use serde::de::DeserializeOwned;
use upiflow_engine::PrepareError;

/// A key a kind accepts and what its value must look like, for error messages.
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub expects: &'static str,
}

/// Deserializes `keys` into `T` (which should be `deny_unknown_fields`).
pub(crate) fn parse<T: DeserializeOwned>(
    keys: toml::Table,
    spec: &[KeySpec],
) -> Result<T, PrepareError> {
    keys.try_into::<T>().map_err(|e| explain(&e, spec))
}

fn explain(error: &toml::de::Error, spec: &[KeySpec]) -> PrepareError {
    let message = error.message();
    if let Some(key) = backticked_after(message, "missing field `") {
        return match find(spec, key) {
            Some(s) => PrepareError::task(format!("missing key `{key}` ({})", s.expects)),
            None => PrepareError::task(format!("missing key `{key}`")),
        };
    }
    if let Some(key) = backticked_after(message, "unknown field `") {
        let known: Vec<_> = spec.iter().map(|s| s.name).collect();
        return PrepareError::at(
            key,
            format!("unknown key `{key}` (known: {})", known.join(", ")),
        );
    }
    // toml records the path of a bad value only in its Display output ("...\nin `env.HOME`").
    let shown = error.to_string();
    let path = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'));
    match path {
        Some(path) => {
            let key = path.split('.').next().unwrap_or(path);
            let place = if path == key {
                String::new()
            } else {
                format!(" (at `{path}`)")
            };
            match find(spec, key) {
                Some(s) => PrepareError::at(
                    s.name,
                    format!("`{key}` must be {}: {message}{place}", s.expects),
                ),
                None => PrepareError::at(key, format!("`{key}`: {message}{place}")),
            }
        }
        None => PrepareError::task(message.to_string()),
    }
}

fn find<'a>(spec: &'a [KeySpec], key: &str) -> Option<&'a KeySpec> {
    spec.iter().find(|s| s.name == key)
}

/// The text between `prefix` (which ends with a backtick) and the next backtick.
fn backticked_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // fields are only read through Debug
    struct Keys {
        command: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
    }

    const SPEC: &[KeySpec] = &[
        KeySpec {
            name: "command",
            expects: "an array of strings",
        },
        KeySpec {
            name: "env",
            expects: "a table of strings",
        },
    ];

    fn err(text: &str) -> PrepareError {
        let table: toml::Table = text.parse().expect("test TOML parses");
        parse::<Keys>(table, SPEC).expect_err("should be rejected")
    }

    #[test]
    fn wrong_type_names_the_key_and_what_it_expects() {
        let e = err("command = \"ls\"");
        assert_eq!(e.key.as_deref(), Some("command"));
        assert!(e.message.contains("must be an array of strings"), "{e:?}");
        assert!(e.message.contains("invalid type"), "{e:?}");
    }

    #[test]
    fn wrong_type_inside_a_table_names_the_top_level_key() {
        let e = err("command = [\"ls\"]\nenv = { HOME = 1 }");
        assert_eq!(e.key.as_deref(), Some("env"), "{e:?}");
        assert!(e.message.contains("HOME"), "{e:?}");
    }

    #[test]
    fn missing_key_is_reported_for_the_task() {
        let e = err("env = {}");
        assert_eq!(e.key, None);
        assert_eq!(e.message, "missing key `command` (an array of strings)");
    }

    #[test]
    fn unknown_key_is_reported_at_that_key() {
        let e = err("command = [\"ls\"]\nshell = true");
        assert_eq!(e.key.as_deref(), Some("shell"));
        assert!(e.message.contains("known: command, env"), "{e:?}");
    }
}
