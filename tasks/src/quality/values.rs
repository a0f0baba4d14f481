//! What a check puts into SQL besides its shape: identifiers (validated, then quoted),
//! numbers (bound) and the `where` expression (its parameters made positional).

use super::error::FilterError;
use crate::sql::Param;
use crate::sql_params;

pub(super) const KNOWN_PARAMS: &str =
    ":data_interval_start, :data_interval_end, :logical_date, :ds, :run_id, :params.NAME";

/// The `where` expression with its named parameters made positional (`$1..$k`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filter {
    pub sql: String,
    pub params: Vec<Param>,
}

/// A name matching `^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`: the only
/// characters that are safe to splice into SQL (and then quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ident(String);

impl Ident {
    pub(super) fn parse(text: &str) -> Option<Self> {
        let part = |p: &str| {
            let mut chars = p.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let mut parts = text.splitn(2, '.');
        let valid = parts.all(part);
        valid.then(|| Self(text.to_string()))
    }

    /// `"schema"."table"`; quoted so reserved words (`date`) work and case is kept.
    pub fn quoted(&self) -> String {
        let parts: Vec<_> = self.0.split('.').map(|p| format!("\"{p}\"")).collect();
        parts.join(".")
    }

    /// The name as used in default check names (`schema_table`).
    pub fn label(&self) -> String {
        self.0.replace('.', "_")
    }
}

/// A bound of `accepted_range`, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(super) fn as_f64(self) -> f64 {
        match self {
            // Only used to compare min with max; precision loss past 2^53 does not matter.
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }

    /// Decimal text Postgres reads as `numeric` (Rust prints floats without exponents).
    pub fn text(self) -> String {
        match self {
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
        }
    }
}

/// The `where` text as one expression whose parameters the run can bind.
pub(super) fn filter(text: &str) -> Result<Filter, FilterError> {
    let mut statements = sql_params::split(text)?;
    let statement = match statements.len() {
        0 => return Err(FilterError::Empty),
        1 => statements.remove(0),
        _ => return Err(FilterError::Several),
    };
    let params = statement
        .params
        .iter()
        .map(|p| {
            Param::parse(&p.name).ok_or_else(|| FilterError::UnknownParam {
                name: p.name.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Filter {
        sql: statement.sql,
        params,
    })
}
