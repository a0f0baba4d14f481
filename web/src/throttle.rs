//! Sign-in throttling, shared by every web process through Postgres (`sign_in_failures`,
//! `upiflow_engine::store::sign_in`), as Airflow's `[fab] auth_rate_limit` (default
//! `5 per 40 second`): once a username, or a client address, has had that many failed
//! sign-ins within the window, every sign-in for that user or from that address is refused
//! (429, `Retry-After`) until enough of them have left the window, the right password
//! included, and without hashing anything.
//!
//! An attempt is counted before its password is checked ([`check`] inserts its rows in the
//! same locked step that counts), so concurrent attempts cannot all slip under the limit; a
//! right password takes its rows back ([`Attempt::not_failed`]), so signing in does not
//! count and does not reset the count either (a password sprayer cannot clear an address's
//! failures by signing into an account of their own). An attempt abandoned half-way (the
//! client hung up) counts as a failure.
//!
//! Configured like Airflow: `UPIFLOW_AUTH_RATE_LIMIT` (`N per [M] second|minute|hour|day`,
//! plural allowed, or `N/[M]unit`) and `UPIFLOW_AUTH_RATE_LIMITED=false` to turn it off; a bad
//! value stops the web at start ([`Limit::from_env`]). Every web process on one database
//! should use the same setting: each deletes rows older than its own window.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use sqlx::PgPool;
use upiflow_engine::EngineError;
use upiflow_engine::store::sign_in as sql;

use crate::error::ApiError;

/// How many failed sign-ins are allowed per key within a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// No throttling (`UPIFLOW_AUTH_RATE_LIMITED=false`).
    Off,
    /// At most `max` failures within `window` per username and per client address.
    Rate { max: NonZeroU32, window: Duration },
}

/// Airflow's default, `5 per 40 second`.
impl Default for Limit {
    fn default() -> Self {
        Limit::Rate {
            max: NonZeroU32::new(5).expect("5 is not zero"),
            window: Duration::from_secs(40),
        }
    }
}

/// The longest window accepted (a longer one is almost certainly a typo, and the database's
/// timestamps have to hold `now - window`).
const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

const EXPECTED: &str = "expected `N per [M] second|minute|hour|day` (plural allowed) or \
                        `N/[M]unit`, as Airflow's `[fab] auth_rate_limit`, e.g. `5 per 40 second`";

impl Limit {
    /// `max` failures per `window` (`None` if `max` is 0 or `window` is zero or too long).
    pub fn per(max: u32, window: Duration) -> Option<Self> {
        let max = NonZeroU32::new(max)?;
        (!window.is_zero() && window <= MAX_WINDOW).then_some(Limit::Rate { max, window })
    }

    /// Parses Airflow's syntax: `5 per 40 second`, `5 per 40 seconds`, `10 per minute`,
    /// `5/40s`... (one limit; a list of several, as flask-limiter allows, is refused).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        if t.is_empty() {
            return Err(format!("it is empty; {EXPECTED}"));
        }
        if t.contains([';', ',']) {
            return Err(format!(
                "`{text}` lists several limits; upiflow takes one: {EXPECTED}"
            ));
        }
        let (count, period) = match t.split_once('/') {
            Some((c, p)) => (c.trim(), p.trim()),
            None => {
                let mut words = t.splitn(2, char::is_whitespace);
                let c = words.next().unwrap_or("");
                let rest = words.next().unwrap_or("").trim_start();
                match rest.strip_prefix("per") {
                    Some(p) if p.starts_with(char::is_whitespace) => (c, p.trim()),
                    _ => return Err(format!("`{text}` is not a rate limit: {EXPECTED}")),
                }
            }
        };
        let max: u32 = count
            .parse()
            .map_err(|_| format!("`{text}`: `{count}` is not a whole number: {EXPECTED}"))?;
        if max == 0 {
            return Err(format!(
                "`{text}`: the number of attempts must be at least 1 (to turn throttling off, \
                 set UPIFLOW_AUTH_RATE_LIMITED=false)"
            ));
        }
        // `40 second`, `40seconds`, `40s`, `minute`.
        let digits = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (n, unit) = period.split_at(digits);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse()
                .map_err(|_| format!("`{text}`: `{n}` is not a whole number: {EXPECTED}"))?
        };
        let unit_secs: u64 = match unit.trim() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86400,
            "" => return Err(format!("`{text}`: the period has no unit: {EXPECTED}")),
            other => return Err(format!("`{text}`: unknown unit `{other}`: {EXPECTED}")),
        };
        let window = n
            .checked_mul(unit_secs)
            .map(Duration::from_secs)
            .filter(|w| *w <= MAX_WINDOW)
            .ok_or_else(|| format!("`{text}`: the period is longer than a year"))?;
        Limit::per(max, window)
            .ok_or_else(|| format!("`{text}`: the period must be at least 1 second"))
    }

    /// From `UPIFLOW_AUTH_RATE_LIMIT` and `UPIFLOW_AUTH_RATE_LIMITED` (Airflow's default when
    /// neither is set); a bad value is an error naming the variable.
    pub fn from_env() -> Result<Self, EngineError> {
        let var = |name: &str| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(EngineError::AuthRateLimitInvalid(
                format!("{name} is not valid UTF-8"),
            )),
        };
        Self::from_vars(
            var("UPIFLOW_AUTH_RATE_LIMIT")?.as_deref(),
            var("UPIFLOW_AUTH_RATE_LIMITED")?.as_deref(),
        )
        .map_err(EngineError::AuthRateLimitInvalid)
    }

    /// [`Limit::from_env`] on given values.
    pub fn from_vars(limit: Option<&str>, limited: Option<&str>) -> Result<Self, String> {
        let rate = match limit {
            Some(t) => Self::parse(t).map_err(|e| format!("UPIFLOW_AUTH_RATE_LIMIT: {e}"))?,
            None => Self::default(),
        };
        // Airflow's booleans (`conf.getboolean`).
        let on = match limited.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("t" | "true" | "1") => true,
            Some("f" | "false" | "0") => false,
            Some(_) => {
                return Err(format!(
                    "UPIFLOW_AUTH_RATE_LIMITED: `{}` is not a boolean (true or false)",
                    limited.unwrap_or_default()
                ));
            }
        };
        Ok(if on { rate } else { Limit::Off })
    }
}

/// As Airflow writes it (`5 per 40 second`), or `off`.
impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Off => f.write_str("off"),
            Limit::Rate { max, window } => write!(f, "{max} per {} second", window.as_secs()),
        }
    }
}

/// One sign-in attempt, counted as a failure unless [`Attempt::not_failed`] takes it back.
#[derive(Debug)]
#[must_use = "a right password must take the attempt back with `not_failed`"]
pub struct Attempt {
    ids: Vec<i64>,
}

impl Attempt {
    /// The attempt did not fail (the password was right, or could not be checked): it no
    /// longer counts.
    pub async fn not_failed(self, pool: &PgPool) -> Result<(), ApiError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let mut conn = pool.acquire().await?;
        sql::forget(&mut conn, &self.ids).await?;
        Ok(())
    }
}

/// The longest username kept in a key: a longer one shares the count of its first 256
/// bytes (no real user has such a name, and an index entry cannot hold an unbounded one).
const MAX_NAME: usize = 256;

/// The keys an attempt counts against, sorted (the order their locks are taken in).
fn keys(username: &str, addr: Option<IpAddr>) -> Vec<String> {
    let mut end = username.len().min(MAX_NAME);
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    // Postgres text cannot hold NUL.
    let name = username[..end].replace('\0', "\\0");
    let mut keys = vec![format!("user:{name}")];
    if let Some(a) = addr {
        // An IPv4 client on an IPv6 socket counts as the IPv4 address it is.
        keys.push(format!("addr:{}", a.to_canonical()));
    }
    keys.sort();
    keys
}

fn refusal(remaining_secs: i64) -> ApiError {
    let secs = u64::try_from(remaining_secs).unwrap_or(0).max(1);
    ApiError::TooManyRequests(
        format!("too many failed sign-ins; try again in {secs} s"),
        secs,
    )
}

/// Refuses (429) a sign-in as `username` from `addr` that comes too soon after too many
/// failures, before any password is hashed; otherwise counts it (see [`Attempt`]).
pub async fn check(
    pool: &PgPool,
    limit: Limit,
    username: &str,
    addr: Option<IpAddr>,
) -> Result<Attempt, ApiError> {
    let Limit::Rate { max, window } = limit else {
        return Ok(Attempt { ids: Vec::new() });
    };
    let keys = keys(username, addr);
    let max = i64::from(max.get());
    let secs = window.as_secs_f64();
    let mut conn = pool.acquire().await?;
    // A throttled attempt is answered after this one read, without a transaction.
    if let Some(left) = sql::throttled_for(&mut conn, &keys, max, secs).await? {
        return Err(refusal(left));
    }
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    for k in &keys {
        sql::lock_key(&mut tx, k).await?;
    }
    // Again under the locks: another attempt may have been counted since.
    if let Some(left) = sql::throttled_for(&mut tx, &keys, max, secs).await? {
        return Err(refusal(left));
    }
    let ids = sql::record(&mut tx, &keys, secs).await?;
    tx.commit().await?;
    Ok(Attempt { ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(max: u32, secs: u64) -> Limit {
        Limit::per(max, Duration::from_secs(secs)).unwrap()
    }

    #[test]
    fn airflows_syntax_parses() {
        for (text, want) in [
            ("5 per 40 second", rate(5, 40)),
            ("5 per 40 seconds", rate(5, 40)),
            ("  5  PER  40 Second ", rate(5, 40)),
            ("10 per minute", rate(10, 60)),
            ("3 per 2 minutes", rate(3, 120)),
            ("100 per hour", rate(100, 3600)),
            ("1 per day", rate(1, 86400)),
            ("5/40s", rate(5, 40)),
            ("5/minute", rate(5, 60)),
            ("5 / 3 seconds", rate(5, 3)),
        ] {
            assert_eq!(Limit::parse(text), Ok(want), "{text}");
        }
        assert_eq!(Limit::default(), rate(5, 40));
        assert_eq!(Limit::default().to_string(), "5 per 40 second");
    }

    #[test]
    fn bad_limits_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("five per minute", "not a whole number"),
            ("5 per fortnight", "unknown unit `fortnight`"),
            ("5 per 40", "no unit"),
            ("5 every 40 seconds", "not a rate limit"),
            ("0 per minute", "at least 1"),
            ("5 per 0 seconds", "at least 1 second"),
            ("5 per 400 days", "longer than a year"),
            ("5 per 99999999999999999999 seconds", "not a whole number"),
            ("5 per 18446744073709551615 days", "longer than a year"),
            ("5/minute;100/day", "several limits"),
            ("-5 per minute", "not a whole number"),
        ] {
            let e = Limit::parse(text).unwrap_err();
            assert!(e.contains(reason), "{text}: {e}");
        }
    }

    #[test]
    fn the_switch_is_airflows_boolean() {
        assert_eq!(Limit::from_vars(None, None), Ok(Limit::default()));
        assert_eq!(Limit::from_vars(None, Some("False")), Ok(Limit::Off));
        assert_eq!(Limit::from_vars(None, Some("0")), Ok(Limit::Off));
        assert_eq!(
            Limit::from_vars(Some("2 per second"), Some("true")),
            Ok(rate(2, 1))
        );
        let e = Limit::from_vars(None, Some("nope")).unwrap_err();
        assert!(e.starts_with("UPIFLOW_AUTH_RATE_LIMITED: `nope`"), "{e}");
        let e = Limit::from_vars(Some("lots"), Some("false")).unwrap_err();
        assert!(e.starts_with("UPIFLOW_AUTH_RATE_LIMIT: `lots`"), "{e}");
    }

    #[test]
    fn keys_are_bounded_and_hold_no_nul() {
        let long = "é".repeat(300);
        let k = keys(&long, None);
        assert!(k[0].len() <= "user:".len() + MAX_NAME, "{}", k[0].len());
        assert_eq!(keys("a\0b", None), vec!["user:a\\0b".to_string()]);
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(
            keys("ada", Some(mapped)),
            vec!["addr:10.0.0.7".to_string(), "user:ada".to_string()]
        );
    }
}
