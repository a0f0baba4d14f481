//! Reads one entry of `checks` (a TOML table) into a typed [`Check`], with errors that name
//! the check's position and test. Everything later spliced into SQL is validated here.

use std::time::Duration;

use super::error::{CheckError, QualityError};
use super::values::{self, Filter, Ident, Num};
use super::{Severity, Test};

mod fields;

/// A check as declared, validated.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Check {
    pub name: String,
    pub severity: Severity,
    pub filter: Option<Filter>,
    pub spec: Spec,
}

/// The test and its own keys.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Spec {
    NotNull {
        table: Ident,
        column: Ident,
    },
    Unique {
        table: Ident,
        column: Ident,
    },
    AcceptedValues {
        table: Ident,
        column: Ident,
        values: Vec<String>,
    },
    AcceptedRange {
        table: Ident,
        column: Ident,
        min: Option<Num>,
        max: Option<Num>,
        inclusive: bool,
    },
    Relationships {
        table: Ident,
        column: Ident,
        to: Ident,
        field: Ident,
    },
    RowCount {
        table: Ident,
        min: Option<i64>,
        max: Option<i64>,
    },
    Freshness {
        table: Ident,
        column: Ident,
        max_age: Duration,
    },
}

const COMMON: &[&str] = &["test", "name", "severity", "where"];

fn keys_of(test: Test) -> &'static [&'static str] {
    match test {
        Test::NotNull | Test::Unique => &["table", "column"],
        Test::AcceptedValues => &["table", "column", "values"],
        Test::AcceptedRange => &["table", "column", "min", "max", "inclusive"],
        Test::Relationships => &["table", "column", "to", "field"],
        Test::RowCount => &["table", "min", "max"],
        Test::Freshness => &["table", "column", "max_age"],
    }
}

/// Reads the `n`th (1-based) check.
pub(super) fn parse(n: usize, value: toml::Value) -> Result<Check, QualityError> {
    let toml::Value::Table(mut table) = value else {
        return Err(QualityError::NotATable {
            n,
            found: value.type_str(),
        });
    };
    let test = match table.remove("test") {
        None => return Err(QualityError::MissingTest { n }),
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(QualityError::TestNotAString {
                n,
                found: other.type_str(),
            });
        }
    };
    let Some(test) = Test::ALL.into_iter().find(|t| t.as_str() == test) else {
        return Err(QualityError::UnknownTest { n, test });
    };
    Reader { table }
        .check(test)
        .map_err(|problem| QualityError::Check { n, test, problem })
}

/// Takes keys out of a check's table, so what is left at the end is unknown.
struct Reader {
    table: toml::Table,
}

impl Reader {
    fn check(mut self, test: Test) -> Result<Check, CheckError> {
        let own = keys_of(test);
        // Unknown keys first: a misspelt `colum` is better reported as such than as a
        // missing `column`.
        if let Some(key) = self
            .table
            .keys()
            .find(|k| !own.contains(&k.as_str()) && !COMMON.contains(&k.as_str()))
        {
            let known: Vec<_> = own.iter().chain(&COMMON[1..]).copied().collect();
            return Err(CheckError::UnknownKey {
                key: key.clone(),
                known,
            });
        }
        let spec = self.spec(test)?;
        let severity = match self.string("severity")?.as_deref() {
            None | Some("error") => Severity::Error,
            Some("warn") => Severity::Warn,
            Some(other) => {
                return Err(CheckError::BadSeverity {
                    value: other.to_string(),
                });
            }
        };
        let filter = self
            .string("where")?
            .map(|w| values::filter(&w))
            .transpose()?;
        let name = match self.string("name")? {
            Some(name) if name.trim().is_empty() || name.contains(char::is_control) => {
                return Err(CheckError::BadName);
            }
            Some(name) => name,
            None => default_name(test, &spec),
        };
        Ok(Check {
            name,
            severity,
            filter,
            spec,
        })
    }

    fn spec(&mut self, test: Test) -> Result<Spec, CheckError> {
        let table = self.ident("table")?;
        Ok(match test {
            Test::NotNull => Spec::NotNull {
                table,
                column: self.ident("column")?,
            },
            Test::Unique => Spec::Unique {
                table,
                column: self.ident("column")?,
            },
            Test::AcceptedValues => Spec::AcceptedValues {
                table,
                column: self.ident("column")?,
                values: self.values()?,
            },
            Test::AcceptedRange => {
                let column = self.ident("column")?;
                let (min, max) = (self.number("min")?, self.number("max")?);
                bounds(min.map(Num::as_f64), max.map(Num::as_f64))?;
                let inclusive = self.boolean("inclusive")?.unwrap_or(true);
                Spec::AcceptedRange {
                    table,
                    column,
                    min,
                    max,
                    inclusive,
                }
            }
            Test::Relationships => Spec::Relationships {
                table,
                column: self.ident("column")?,
                to: self.ident("to")?,
                field: self.ident("field")?,
            },
            Test::RowCount => {
                let (min, max) = (self.count("min")?, self.count("max")?);
                bounds(min.map(|m| m as f64), max.map(|m| m as f64))?;
                Spec::RowCount { table, min, max }
            }
            Test::Freshness => Spec::Freshness {
                table,
                column: self.ident("column")?,
                max_age: self.max_age()?,
            },
        })
    }
}

/// At least one of min and max, in order.
fn bounds(min: Option<f64>, max: Option<f64>) -> Result<(), CheckError> {
    match (min, max) {
        (None, None) => Err(CheckError::NoBounds),
        (Some(lo), Some(hi)) if lo > hi => Err(CheckError::BoundsReversed { min: lo, max: hi }),
        _ => Ok(()),
    }
}

/// dbt's naming: `<test>_<table>_<column>`, and for relationships `..._<field>__<to>`.
fn default_name(test: Test, spec: &Spec) -> String {
    let t = test.as_str();
    match spec {
        Spec::NotNull { table, column }
        | Spec::Unique { table, column }
        | Spec::AcceptedValues { table, column, .. }
        | Spec::AcceptedRange { table, column, .. }
        | Spec::Freshness { table, column, .. } => {
            format!("{t}_{}_{}", table.label(), column.label())
        }
        Spec::Relationships {
            table,
            column,
            to,
            field,
        } => format!(
            "{t}_{}_{}__{}__{}",
            table.label(),
            column.label(),
            field.label(),
            to.label()
        ),
        Spec::RowCount { table, .. } => format!("{t}_{}", table.label()),
    }
}
