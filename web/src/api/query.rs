//! Query strings, read key by key so that nothing is accepted and ignored: a handler takes the
//! parameters it honours, then [`Query::finish`] refuses whatever is left — a parameter Airflow
//! documents but upiflow does not implement with a message saying so, anything else as unknown.
//! FastAPI would answer a bad value with a 422; so do we, naming the parameter.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// The query string as `(key, value)` pairs, in order, with which ones a handler took.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
    taken: Vec<bool>,
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()).map_err(|e| {
                ApiError::Unprocessable(format!("the query string does not parse: {e}"))
            })?;
        Ok(Self::new(pairs))
    }
}

fn bad(key: &str, value: &str, what: &str) -> ApiError {
    ApiError::Unprocessable(format!("{key}: `{value}` is not {what}"))
}

impl Query {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let taken = vec![false; pairs.len()];
        Self { pairs, taken }
    }

    /// Every value of a repeatable parameter (`state=a&state=b`), in order.
    pub fn all(&mut self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if k == key {
                self.taken[i] = true;
                out.push(v.clone());
            }
        }
        out
    }

    /// Every value of a repeatable parameter, each also split on commas.
    pub fn all_split(&mut self, key: &str) -> Vec<String> {
        self.all(key)
            .iter()
            .flat_map(|v| v.split(',').filter(|s| !s.is_empty()).map(str::to_string))
            .collect()
    }

    /// The sort keys of `order_by` (repeatable or comma-separated), each one `key` knows,
    /// `-` first for descending. An unknown one is a 400 in Airflow's words, `hint` after them.
    pub fn order_by<T>(
        &mut self,
        key: impl Fn(&str) -> Option<T>,
        hint: &str,
    ) -> Result<Vec<(T, bool)>, ApiError> {
        self.all_split("order_by")
            .iter()
            .map(|v| {
                let (desc, name) = match v.strip_prefix('-') {
                    Some(k) => (true, k),
                    None => (false, v.as_str()),
                };
                key(name).map(|k| (k, desc)).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "order_by: ordering with '{name}' is disallowed or the attribute does not exist on the model{hint}"
                    ))
                })
            })
            .collect()
    }

    /// The value of a parameter given at most once.
    pub fn one(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        let mut values = self.all(key);
        if values.len() > 1 {
            return Err(ApiError::Unprocessable(format!(
                "{key}: given {} times; it takes one value",
                values.len()
            )));
        }
        Ok(values.pop())
    }

    pub fn int(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        self.one(key)?
            .map(|v| v.parse().map_err(|_| bad(key, &v, "an integer")))
            .transpose()
    }

    pub fn float(&mut self, key: &str) -> Result<Option<f64>, ApiError> {
        self.one(key)?
            .map(|v| match v.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(f),
                _ => Err(bad(key, &v, "a number")),
            })
            .transpose()
    }

    /// A boolean, spelled as FastAPI (pydantic) accepts it.
    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, ApiError> {
        self.one(key)?
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
                "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
                _ => Err(bad(key, &v, "a boolean")),
            })
            .transpose()
    }

    /// An RFC 3339 date-time, or one whose offset has no colon (`+0000`), as Airflow's Python
    /// client sends them (pydantic accepts both).
    pub fn date(&mut self, key: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.one(key)?
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .or_else(|_| DateTime::parse_from_str(&v, "%Y-%m-%dT%H:%M:%S%.f%z"))
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| bad(key, &v, "an RFC 3339 date-time"))
            })
            .transpose()
    }

    /// `limit` (default 50, at most 1000) and `offset` (default 0).
    pub fn page(&mut self) -> Result<(i64, i64), ApiError> {
        let limit = self.int("limit")?.unwrap_or(50);
        let offset = self.int("offset")?.unwrap_or(0);
        super::check_page(limit, offset)
    }

    /// Refuses every parameter no handler took: those in `unsupported` (Airflow documents
    /// them; the reason says why upiflow does not) and unknown ones. Call it before acting.
    pub fn finish<K: AsRef<str>>(self, unsupported: &[(K, &str)]) -> Result<(), ApiError> {
        let left: Vec<&str> = self
            .pairs
            .iter()
            .zip(&self.taken)
            .filter(|(_, taken)| !**taken)
            .map(|((k, _), _)| k.as_str())
            .collect();
        let Some(first) = left.first() else {
            return Ok(());
        };
        if let Some((_, why)) = unsupported.iter().find(|(k, _)| k.as_ref() == *first) {
            return Err(ApiError::Unprocessable(format!(
                "query parameter `{first}` is not supported by upiflow: {why}"
            )));
        }
        Err(ApiError::Unprocessable(format!(
            "unknown query parameter `{first}`"
        )))
    }
}

/// A query string with no parameters, for routes that take none.
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::from_request_parts(parts, state)
            .await?
            .finish::<&str>(&[])?;
        Ok(NoQuery)
    }
}

/// A `*_pattern` or `*_prefix_pattern` parameter, with Airflow's meaning: `|` separates
/// alternatives, `~` matches everything (`None`); a pattern is a case-insensitive
/// `ILIKE '%term%'` (`%` and `_` are wildcards), a prefix pattern a case-sensitive prefix
/// with `%` and `_` literal and trailing non-alphanumeric characters dropped.
pub use upiflow_engine::store::filters::TextMatch as Pattern;

fn terms(v: &str) -> Option<Vec<String>> {
    let terms: Vec<&str> = v.split('|').collect();
    if terms.contains(&"~") {
        return None;
    }
    Some(terms.into_iter().map(str::to_string).collect())
}

pub fn substring(v: &str) -> Option<Pattern> {
    terms(v).map(Pattern::Substring)
}

pub fn prefix(v: &str) -> Option<Pattern> {
    terms(v).map(|ts| {
        Pattern::Prefix(
            ts.into_iter()
                .map(|t| {
                    t.trim_end_matches(|c: char| !c.is_alphanumeric())
                        .to_string()
                })
                .collect(),
        )
    })
}

impl Query {
    /// `NAME_pattern` and `NAME_prefix_pattern`, for a column.
    pub fn patterns(&mut self, name: &str) -> Result<Vec<Pattern>, ApiError> {
        let mut out = Vec::new();
        if let Some(v) = self.one(&format!("{name}_pattern"))? {
            out.extend(substring(&v));
        }
        if let Some(v) = self.one(&format!("{name}_prefix_pattern"))? {
            out.extend(prefix(&v));
        }
        Ok(out)
    }
}

/// `NAME_gte`, `NAME_gt`, `NAME_lte` and `NAME_lt`: the four bounds of a range parameter.
pub const BOUNDS: [(&str, Cmp); 4] = [
    ("gte", Cmp::Gte),
    ("gt", Cmp::Gt),
    ("lte", Cmp::Lte),
    ("lt", Cmp::Lt),
];

pub use upiflow_engine::store::filters::Cmp;

impl Query {
    /// The date bounds given for `NAME_{gte,gt,lte,lt}`.
    pub fn date_range(&mut self, name: &str) -> Result<Vec<(Cmp, DateTime<Utc>)>, ApiError> {
        let mut out = Vec::new();
        for (suffix, cmp) in BOUNDS {
            if let Some(d) = self.date(&format!("{name}_{suffix}"))? {
                out.push((cmp, d));
            }
        }
        Ok(out)
    }

    /// The number bounds given for `NAME_{gte,gt,lte,lt}`.
    pub fn float_range(&mut self, name: &str) -> Result<Vec<(Cmp, f64)>, ApiError> {
        let mut out = Vec::new();
        for (suffix, cmp) in BOUNDS {
            if let Some(d) = self.float(&format!("{name}_{suffix}"))? {
                out.push((cmp, d));
            }
        }
        Ok(out)
    }
}

/// The four names of a range parameter, each refused with `why`.
pub fn refuse_range<'a>(name: &str, why: &'a str) -> Vec<(String, &'a str)> {
    BOUNDS
        .iter()
        .map(|(s, _)| (format!("{name}_{s}"), why))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::new(serde_urlencoded::from_str(s).unwrap())
    }

    #[test]
    fn left_over_parameters_are_refused_by_name() {
        let mut a = q("limit=5&state=a&state=b&surprise=1");
        assert_eq!(a.page().unwrap(), (5, 0));
        assert_eq!(a.all("state"), ["a", "b"]);
        let e = a.finish::<&str>(&[]).unwrap_err().to_string();
        assert!(e.contains("unknown query parameter `surprise`"), "{e}");
        let e = q("owners=x")
            .finish(&[("owners", "no owners")])
            .unwrap_err();
        assert!(e.to_string().contains("`owners` is not supported"), "{e}");
        assert!(q("").finish::<&str>(&[]).is_ok());
        assert!(q("limit=1&limit=2").page().is_err());
        assert!(q("paused=maybe").bool("paused").is_err());
        // Airflow's Python client writes offsets without a colon.
        let d = q("after=2026-12-01T20:19:08.785025%2B0000").date("after");
        assert_eq!(
            d.unwrap().unwrap().to_rfc3339(),
            "2026-12-01T20:19:08.785025+00:00"
        );
        assert!(q("after=2026-12-01").date("after").is_err());
    }

    #[test]
    fn patterns_have_airflows_alternatives_and_wildcard() {
        assert_eq!(substring("~"), None);
        assert_eq!(substring("a|~"), None);
        assert_eq!(
            substring("a|b_"),
            Some(Pattern::Substring(vec!["a".into(), "b_".into()]))
        );
        assert_eq!(
            prefix("test_|s3://"),
            Some(Pattern::Prefix(vec!["test".into(), "s3".into()]))
        );
    }
}
