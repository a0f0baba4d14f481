//! Reads a task's kind-specific keys (a TOML table) into a typed serde struct, turning
//! serde's errors into [`PrepareError`]s that point at the offending key.

use serde::de::DeserializeOwned;
use upiflow_engine::PrepareError;

/// A key a kind accepts and what its value must look like, for error messages.
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub expects: &'static str,
}

/// Deserializes `keys` into `T` (which should be `deny_unknown_fields`), reporting every
/// key that is wrong: serde stops at the first bad key, so that key is set aside and the
/// rest read again, until what is left reads or the problem is not one key's.
pub(crate) fn parse<T: DeserializeOwned>(
    mut keys: toml::Table,
    spec: &[KeySpec],
) -> Result<T, Vec<PrepareError>> {
    let mut problems: Vec<PrepareError> = Vec::new();
    let mut set_aside: Vec<String> = Vec::new();
    loop {
        let error = match keys.clone().try_into::<T>() {
            Ok(value) if problems.is_empty() => return Ok(value),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let problem = explain(&error, spec);
        if let Some(key) = missing_key(&error)
            && set_aside.iter().any(|k| k == key)
        {
            // A required key set aside for being wrong: already reported.
            return Err(problems);
        }
        match problem.key.clone() {
            Some(key) if keys.remove(&key).is_some() => {
                problems.push(problem);
                set_aside.push(key);
            }
            _ => {
                problems.push(problem);
                return Err(problems);
            }
        }
    }
}

fn missing_key(error: &toml::de::Error) -> Option<&str> {
    backticked_after(error.message(), "missing field `")
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

    fn errs(text: &str) -> Vec<PrepareError> {
        let table: toml::Table = text.parse().expect("test TOML parses");
        parse::<Keys>(table, SPEC).expect_err("should be rejected")
    }

    fn err(text: &str) -> PrepareError {
        let mut all = errs(text);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn every_wrong_key_is_reported_not_only_the_first() {
        let all = errs("command = \"ls\"\nenv = { HOME = 1 }\nshell = true");
        let keys: Vec<_> = all.iter().map(|e| e.key.as_deref()).collect();
        assert_eq!(keys.len(), 3, "{all:?}");
        for key in ["command", "env", "shell"] {
            assert!(keys.contains(&Some(key)), "{all:?}");
        }
        // `command` was set aside for its type: not reported again as missing.
        assert!(
            all.iter().all(|e| !e.message.contains("missing")),
            "{all:?}"
        );
    }

    #[test]
    fn a_missing_key_is_reported_beside_a_wrong_one() {
        let all = errs("env = { HOME = 1 }");
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[0].key.as_deref(), Some("env"));
        assert_eq!(
            all[1].message,
            "missing key `command` (an array of strings)"
        );
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
