//! Turns a validated [`Check`] into the query that counts its failing rows.
//!
//! Identifiers are quoted (they were checked to be plain names); everything else the DAG
//! or the run provides is a bind parameter. The `where` expression's parameters come first
//! (`$1..$k`, as the lexer numbered them), the check's own values after.

use super::check::{Check, Spec};
use super::{Arg, Fixed, PreparedCheck, Test};
use crate::sql::Param;

pub(super) fn build(check: &Check) -> PreparedCheck {
    let mut b = Builder {
        params: Vec::new(),
        filter: None,
    };
    if let Some(filter) = &check.filter {
        b.params = filter.params.iter().cloned().map(Arg::Run).collect();
        // A trailing `-- comment` would swallow the closing parenthesis.
        let end = if filter.sql.contains("--") { "\n" } else { "" };
        b.filter = Some(format!("({}{end})", filter.sql));
    }
    let (test, sql) = b.sql(&check.spec);
    PreparedCheck {
        name: check.name.clone(),
        test,
        severity: check.severity,
        sql,
        params: b.params,
    }
}

struct Builder {
    params: Vec<Arg>,
    /// The `where` expression, parenthesised.
    filter: Option<String>,
}

impl Builder {
    /// `$n` of a value of the run, shared with the `where` expression if it uses it too.
    fn run(&mut self, param: Param) -> String {
        let arg = Arg::Run(param);
        let n = match self.params.iter().position(|p| *p == arg) {
            Some(i) => i + 1,
            None => {
                self.params.push(arg);
                self.params.len()
            }
        };
        format!("${n}")
    }

    fn fixed(&mut self, value: Fixed) -> String {
        self.params.push(Arg::Fixed(value));
        format!("${}", self.params.len())
    }

    fn number(&mut self, text: String, cast: &str) -> String {
        format!("{}::{cast}", self.fixed(Fixed::Number(text)))
    }

    /// ` AND (<where>)`, or nothing.
    fn and_filter(&self) -> String {
        self.filter
            .as_ref()
            .map(|f| format!(" AND {f}"))
            .unwrap_or_default()
    }

    /// ` WHERE (<where>)`, or nothing.
    fn where_filter(&self) -> String {
        self.filter
            .as_ref()
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default()
    }

    fn sql(&mut self, spec: &Spec) -> (Test, String) {
        match spec {
            Spec::NotNull { table, column } => {
                let (t, c) = (table.quoted(), column.quoted());
                let sql = format!(
                    "SELECT count(*) FROM {t} WHERE {c} IS NULL{}",
                    self.and_filter()
                );
                (Test::NotNull, sql)
            }
            // Counts every row whose value occurs more than once (two rows sharing an id are
            // two failing rows), so the number matches what a `SELECT` would show.
            Spec::Unique { table, column } => {
                let (t, c) = (table.quoted(), column.quoted());
                let sql = format!(
                    "SELECT count(*) FROM (SELECT count(*) OVER (PARTITION BY {c}) AS upiflow_n \
                     FROM {t} WHERE {c} IS NOT NULL{}) AS upiflow_rows WHERE upiflow_n > 1",
                    self.and_filter()
                );
                (Test::Unique, sql)
            }
            // Compared as text so enums and numbers work; NULLs pass, as in dbt.
            Spec::AcceptedValues {
                table,
                column,
                values,
            } => {
                let (t, c) = (table.quoted(), column.quoted());
                let v = self.fixed(Fixed::TextArray(values.clone()));
                let sql = format!(
                    "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL \
                     AND NOT ({c}::text = ANY({v}::text[])){}",
                    self.and_filter()
                );
                (Test::AcceptedValues, sql)
            }
            Spec::AcceptedRange {
                table,
                column,
                min,
                max,
                inclusive,
            } => {
                let (t, c) = (table.quoted(), column.quoted());
                let (ge, le) = if *inclusive { (">=", "<=") } else { (">", "<") };
                let mut within = Vec::new();
                if let Some(min) = min {
                    within.push(format!("{c} {ge} {}", self.number(min.text(), "numeric")));
                }
                if let Some(max) = max {
                    within.push(format!("{c} {le} {}", self.number(max.text(), "numeric")));
                }
                let sql = format!(
                    "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND NOT ({}){}",
                    within.join(" AND "),
                    self.and_filter()
                );
                (Test::AcceptedRange, sql)
            }
            Spec::Relationships {
                table,
                column,
                to,
                field,
            } => {
                let (t, c) = (table.quoted(), column.quoted());
                // The parent is aliased so a table may refer to itself; the child is not, so
                // `where` may name it.
                let sql = format!(
                    "SELECT count(*) FROM {t} WHERE {t}.{c} IS NOT NULL AND NOT EXISTS \
                     (SELECT 1 FROM {} AS upiflow_parent WHERE upiflow_parent.{} = {t}.{c}){}",
                    to.quoted(),
                    field.quoted(),
                    self.and_filter()
                );
                (Test::Relationships, sql)
            }
            // Failing rows are how far the count is outside [min, max]: 0 rows against
            // `min = 1` is one missing row.
            Spec::RowCount { table, min, max } => {
                let mut terms = vec!["0".to_string()];
                if let Some(min) = min {
                    terms.push(format!("{} - n", self.number(min.to_string(), "bigint")));
                }
                if let Some(max) = max {
                    terms.push(format!("n - {}", self.number(max.to_string(), "bigint")));
                }
                let sql = format!(
                    "SELECT greatest({}) FROM (SELECT count(*) AS n FROM {}{}) AS upiflow_rows",
                    terms.join(", "),
                    table.quoted(),
                    self.where_filter()
                );
                (Test::RowCount, sql)
            }
            // Relative to the interval's end, not the clock, so a backfill of a past day
            // checks that day. An empty table is stale: one failing row.
            Spec::Freshness {
                table,
                column,
                max_age,
            } => {
                let c = column.quoted();
                let end = self.run(Param::DataIntervalEnd);
                let age = self.number(max_age.as_secs_f64().to_string(), "float8");
                let sql = format!(
                    "SELECT (CASE WHEN max({c}) IS NULL OR max({c}) < {end} - \
                     make_interval(secs => {age}) THEN 1 ELSE 0 END)::bigint FROM {}{}",
                    table.quoted(),
                    self.where_filter()
                );
                (Test::Freshness, sql)
            }
        }
    }
}
