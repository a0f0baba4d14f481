//! The typed values of a check's keys, each taken out of the table so what remains at the
//! end is unknown; errors say what the key expects and what it got.

use std::time::Duration;

use super::Reader;
use crate::quality::error::CheckError;
use crate::quality::values::{Ident, Num};

impl Reader {
    pub(super) fn take(
        &mut self,
        key: &str,
        expects: &'static str,
    ) -> Result<toml::Value, CheckError> {
        self.table.remove(key).ok_or_else(|| CheckError::Missing {
            key: key.to_string(),
            expects,
        })
    }

    pub(super) fn string(&mut self, key: &str) -> Result<Option<String>, CheckError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(key, "a string", &other)),
        }
    }

    pub(super) fn ident(&mut self, key: &str) -> Result<Ident, CheckError> {
        let expects = "a string, a name like `txn_id` or `schema.table`";
        match self.take(key, expects)? {
            toml::Value::String(s) => Ident::parse(&s).ok_or_else(|| CheckError::NotAPlainName {
                key: key.to_string(),
                value: s.clone(),
            }),
            other => Err(wrong(key, expects, &other)),
        }
    }

    pub(super) fn number(&mut self, key: &str) -> Result<Option<Num>, CheckError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) => Ok(Some(Num::Int(i))),
            Some(toml::Value::Float(f)) if f.is_finite() => Ok(Some(Num::Float(f))),
            Some(other) => Err(wrong(key, "a finite number", &other)),
        }
    }

    pub(super) fn count(&mut self, key: &str) -> Result<Option<i64>, CheckError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if i >= 0 => Ok(Some(i)),
            Some(other) => Err(wrong(key, "a whole number >= 0", &other)),
        }
    }

    pub(super) fn boolean(&mut self, key: &str) -> Result<Option<bool>, CheckError> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(other) => Err(wrong(key, "true or false", &other)),
        }
    }

    /// Strings, or integers taken as their text, since the column is compared as text.
    pub(super) fn values(&mut self) -> Result<Vec<String>, CheckError> {
        let expects = "a non-empty array of strings";
        let items = match self.take("values", expects)? {
            toml::Value::Array(items) => items,
            other => return Err(wrong("values", expects, &other)),
        };
        if items.is_empty() {
            return Err(CheckError::EmptyValues);
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                toml::Value::String(s) => Ok(s),
                toml::Value::Integer(n) => Ok(n.to_string()),
                other => Err(CheckError::BadValue {
                    expects,
                    index: i,
                    found: other.type_str(),
                }),
            })
            .collect()
    }

    pub(super) fn max_age(&mut self) -> Result<Duration, CheckError> {
        let expects = "a duration such as \"30m\" or \"1h 30m\"";
        let age = match self.take("max_age", expects)? {
            toml::Value::String(s) => {
                humantime::parse_duration(&s).map_err(|e| CheckError::BadMaxAge {
                    value: s.clone(),
                    error: e.to_string(),
                })?
            }
            toml::Value::Integer(secs) if secs >= 0 => Duration::from_secs(secs as u64),
            other => return Err(wrong("max_age", expects, &other)),
        };
        if age.is_zero() {
            return Err(CheckError::ZeroMaxAge);
        }
        Ok(age)
    }
}

fn wrong(key: &str, expects: &'static str, got: &toml::Value) -> CheckError {
    CheckError::WrongType {
        key: key.to_string(),
        expects,
        found: got.type_str(),
    }
}
