//! Text as the pages show it: timestamps (UTC, as Airflow shows by default), durations, and
//! labels clipped to fit.

use chrono::{DateTime, Utc};

/// A duration as a person reads it: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub(super) fn human_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {:02} s", (secs / 60.0) as i64, (secs % 60.0) as i64)
    } else {
        format!(
            "{} h {:02} min",
            (secs / 3600.0) as i64,
            ((secs % 3600.0) / 60.0) as i64
        )
    }
}

/// A timestamp in UTC to the second (the UI shows UTC, as Airflow does by default).
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// [`ts`] of a timestamp that may be missing (empty then).
pub(super) fn ts_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(ts).unwrap_or_default()
}

/// Seconds between two instants (the end defaulting to now), never negative.
pub(super) fn secs(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    let start = start?;
    let end = end.unwrap_or_else(Utc::now);
    Some(((end - start).num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// [`human_duration`] from `start` to `end` (or now); empty without a start.
pub(super) fn duration_text(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    secs(start, end).map(human_duration).unwrap_or_default()
}

/// `text` cut to `max` characters, with an ellipsis when cut (for labels in SVGs).
pub(super) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(human_duration(0.85), "850 ms");
        assert_eq!(human_duration(12.34), "12.3 s");
        assert_eq!(human_duration(245.0), "4 min 05 s");
        assert_eq!(human_duration(7380.0), "2 h 03 min");
    }

    #[test]
    fn long_labels_are_clipped_with_an_ellipsis() {
        assert_eq!(clip("short", 22), "short");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("éééé", 4), "éééé");
    }
}
