//! Reading a DAG file one key at a time out of its untyped TOML table. A wrong key is
//! recorded with its line and reading goes on, so one pass reports every problem of a file
//! (a typed serde struct would stop at the first).

use std::path::Path;

use super::locate::{Locator, Seg};
use super::problem::KeyPlace;
use super::{DagError, Problem};

/// The file being read and the problems found so far.
pub(super) struct Ctx<'a> {
    pub file: &'a Path,
    pub loc: Locator<'a>,
    pub errors: Vec<DagError>,
}

impl Ctx<'_> {
    pub fn err(&mut self, path: &[Seg<'_>], problem: impl Into<Problem>) {
        let line = self.loc.line(path);
        self.errors
            .push(DagError::new(self.file.to_path_buf(), line, problem.into()));
    }
}

/// `at` extended by one key.
pub(super) fn join<'a>(at: &[Seg<'a>], key: &'a str) -> Vec<Seg<'a>> {
    let mut path = at.to_vec();
    path.push(Seg::Key(key));
    path
}

/// Reports every key of `table` that is not in `allowed`, with the closest allowed name
/// when one is near (a typo).
pub(super) fn unknown_keys(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &toml::Table,
    allowed: &[&str],
    place: KeyPlace,
) {
    for key in table.keys() {
        if allowed.contains(&key.as_str()) {
            continue;
        }
        cx.err(
            &join(at, key),
            Problem::UnknownKey {
                key: key.clone(),
                place: place.clone(),
                suggestion: closest(key, allowed).map(str::to_string),
                known: allowed.iter().map(|k| k.to_string()).collect(),
            },
        );
    }
}

/// The allowed name within a small edit distance of `key`, if any.
pub(super) fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Levenshtein distance, case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let swap = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + swap).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What a value is, for "must be X, not Y" messages.
pub(super) fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(_) => format!("the string {v}"),
        toml::Value::Integer(_) => format!("the integer {v}"),
        toml::Value::Float(_) => format!("the number {v}"),
        toml::Value::Boolean(_) => format!("the boolean {v}"),
        toml::Value::Datetime(_) => format!("the date-time {v}"),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

fn wrong_type(cx: &mut Ctx<'_>, at: &[Seg<'_>], key: &str, expected: &str, v: &toml::Value) {
    cx.err(
        &join(at, key),
        Problem::WrongType {
            key: key.to_string(),
            expected: expected.to_string(),
            found: describe(v),
        },
    );
}

/// A string value; `None` (with the problem recorded) when it has another type.
pub(super) fn string<'t>(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &'t toml::Table,
    key: &str,
) -> Option<&'t str> {
    match table.get(key)? {
        toml::Value::String(s) => Some(s),
        v => {
            wrong_type(cx, at, key, "a string", v);
            None
        }
    }
}

pub(super) fn boolean(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &toml::Table,
    key: &str,
) -> Option<bool> {
    match table.get(key)? {
        toml::Value::Boolean(b) => Some(*b),
        v => {
            wrong_type(cx, at, key, "true or false", v);
            None
        }
    }
}

/// A whole number of at least `min` that fits a `u32`.
pub(super) fn count(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &toml::Table,
    key: &str,
    min: u32,
) -> Option<u32> {
    let v = table.get(key)?;
    match v {
        toml::Value::Integer(n) => match u32::try_from(*n) {
            Ok(n) if n >= min => Some(n),
            _ => {
                cx.err(
                    &join(at, key),
                    Problem::CountOutOfRange {
                        key: key.to_string(),
                        min,
                        value: *n,
                    },
                );
                None
            }
        },
        v => {
            wrong_type(cx, at, key, &format!("a whole number of at least {min}"), v);
            None
        }
    }
}

/// A whole number that fits an `i32` (negative allowed).
pub(super) fn integer(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &toml::Table,
    key: &str,
) -> Option<i32> {
    match table.get(key)? {
        toml::Value::Integer(n) => match i32::try_from(*n) {
            Ok(n) => Some(n),
            Err(_) => {
                cx.err(
                    &join(at, key),
                    Problem::IntegerOutOfRange {
                        key: key.to_string(),
                        value: n.to_string(),
                    },
                );
                None
            }
        },
        v => {
            wrong_type(cx, at, key, "a whole number", v);
            None
        }
    }
}

/// An array of strings; each element of another type is reported at its own line.
pub(super) fn strings<'t>(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    table: &'t toml::Table,
    key: &str,
) -> Option<Vec<&'t str>> {
    let items = match table.get(key)? {
        toml::Value::Array(items) => items,
        v => {
            wrong_type(cx, at, key, "an array of strings", v);
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            toml::Value::String(s) => out.push(s.as_str()),
            other => {
                let mut path = join(at, key);
                path.push(Seg::Index(i));
                cx.err(
                    &path,
                    Problem::NotAString {
                        key: key.to_string(),
                        number: i + 1,
                        found: describe(other),
                    },
                );
            }
        }
    }
    Some(out)
}

/// A sub-table (`[defaults]`, `[params]`).
pub(super) fn table<'t>(
    cx: &mut Ctx<'_>,
    at: &[Seg<'_>],
    parent: &'t toml::Table,
    key: &str,
    example: &str,
) -> Option<&'t toml::Table> {
    match parent.get(key)? {
        toml::Value::Table(t) => Some(t),
        v => {
            wrong_type(cx, at, key, &format!("a table ({example})"), v);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        let keys = ["schedule", "timezone", "start_date", "tags"];
        assert_eq!(closest("shedule", &keys), Some("schedule"));
        assert_eq!(closest("time_zone", &keys), Some("timezone"));
        assert_eq!(closest("Start_Date", &keys), Some("start_date"));
        assert_eq!(closest("owner", &keys), None);
        assert_eq!(closest("shedule_interval", &keys), None);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
