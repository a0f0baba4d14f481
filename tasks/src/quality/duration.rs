//! Durations written as humantime does (`30s`, `5m`, `1h 30m`, `2days`), for `max_age`.
//!
//! Same grammar and units as `humantime::parse_duration`, which the engine uses for
//! `retry_delay`; kept here because this crate does not depend on humantime.

use std::time::Duration;

/// Parses `text`; the error says what is wrong, without repeating the text.
pub(super) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration (write e.g. \"30m\" or \"1h 30m\")".into());
    }
    let mut total = 0u128;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "expected a number at `{rest}` (write e.g. \"30m\" or \"1h 30m\")"
            ));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("number too large at `{rest}`"))?;
        rest = rest[digits..].trim_start();
        let letters = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..letters];
        let nanos = unit_nanos(unit).ok_or_else(|| {
            if unit.is_empty() {
                format!("`{}` needs a unit (s, m, h, d, ...)", &number)
            } else {
                format!("unknown unit `{unit}` (known: ns, us, ms, s, m, h, d, w, M, y)")
            }
        })?;
        total = number
            .checked_mul(nanos)
            .and_then(|n| total.checked_add(n))
            .ok_or("duration too large")?;
        rest = rest[letters..].trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "duration too large")?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Nanoseconds in one `unit`; months and years are humantime's (30.44 and 365.25 days).
fn unit_nanos(unit: &str) -> Option<u128> {
    const S: u128 = 1_000_000_000;
    Some(match unit {
        "nanos" | "nsec" | "ns" => 1,
        "usec" | "us" => 1_000,
        "millis" | "msec" | "ms" => 1_000_000,
        "seconds" | "second" | "secs" | "sec" | "s" => S,
        "minutes" | "minute" | "min" | "mins" | "m" => 60 * S,
        "hours" | "hour" | "hr" | "hrs" | "h" => 3_600 * S,
        "days" | "day" | "d" => 86_400 * S,
        "weeks" | "week" | "w" => 604_800 * S,
        "months" | "month" | "M" => 2_630_016 * S,
        "years" | "year" | "y" => 31_557_600 * S,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_humantime_durations() {
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(
            parse("2days 500ms"),
            Ok(Duration::new(172_800, 500_000_000))
        );
        assert_eq!(parse(" 45 s "), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn rejects_what_humantime_rejects() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("10").unwrap_err().contains("needs a unit"));
        assert!(
            parse("1 fortnight")
                .unwrap_err()
                .contains("unknown unit `fortnight`")
        );
        assert!(parse("h").unwrap_err().contains("expected a number"));
        assert!(parse("1.5h").is_err());
        assert!(parse("99999999999999999999999999999999999999999y").is_err());
    }
}
