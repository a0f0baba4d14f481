//! Schedules: what Airflow users write (5-field cron, `@daily`-style presets, `none`),
//! normalised to the `cron` crate's format and evaluated in the DAG's IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

mod errors;
#[cfg(test)]
mod tests;

pub use errors::{DayOfWeekError, FieldError, Place, ScheduleError, UnknownTimezone};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Only manual and backfill runs.
    None,
    Cron {
        /// As the user wrote it.
        expr: String,
        cron: Box<cron::Schedule>,
    },
}

const PRESETS: [(&str, &str); 7] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses `none`, a preset or a 5-field cron expression (minute hour day-of-month month
    /// day-of-week, day-of-week 0-7 with 0 and 7 both Sunday, as in Unix cron).
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let trimmed = expr.trim();
        if trimmed.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        let five = match PRESETS
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(trimmed))
        {
            Some((_, five)) => five.to_string(),
            None if trimmed.starts_with('@') => {
                return Err(ScheduleError::UnknownPreset {
                    preset: trimmed.to_string(),
                });
            }
            None => trimmed.to_string(),
        };
        let fields: Vec<&str> = five.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(ScheduleError::FieldCount {
                expr: trimmed.to_string(),
                count: fields.len(),
            });
        }
        let checked = FIELDS
            .iter()
            .zip(&fields)
            .map(|(field, text)| field.check(text))
            .collect::<Result<Vec<String>, FieldError>>()
            .map_err(|problem| ScheduleError::Field {
                expr: trimmed.to_string(),
                problem: Box::new(problem),
            })?;
        let dow = unix_dow_to_names(fields[4]).map_err(|problem| ScheduleError::DayOfWeek {
            expr: trimmed.to_string(),
            problem,
        })?;
        // The cron crate wants seconds first and counts weekdays 1-7 from Sunday; names avoid
        // that difference entirely. Its messages would speak of that rewritten expression, so
        // everything the user can get wrong is checked above, field by field.
        let normalised = format!(
            "0 {} {} {} {} {}",
            checked[0], checked[1], checked[2], checked[3], dow
        );
        let cron = cron::Schedule::from_str(&normalised).map_err(|_| ScheduleError::Invalid {
            expr: trimmed.to_string(),
        })?;
        Ok(Self::Cron {
            expr: trimmed.to_string(),
            cron: Box::new(cron),
        })
    }

    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let Self::Cron { cron, .. } = self else {
            return None;
        };
        // Cron is evaluated on the wall clock of `tz` (as Airflow users expect across DST),
        // then each wall-clock tick is placed on the real time line.
        let mut cursor = t.with_timezone(&tz).naive_local();
        loop {
            let tick = cron
                .after(&Utc.from_utc_datetime(&cursor))
                .next()?
                .naive_utc();
            let at = wall_to_instant(tick, tz);
            if at > t {
                return Some(at);
            }
            cursor = tick;
        }
    }

    /// The last tick at or before `t`.
    pub fn prev_at_or_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let Self::Cron { cron, .. } = self else {
            return None;
        };
        // Iterating backwards from a hair after `t` includes `t` itself.
        let mut cursor = t.with_timezone(&tz).naive_local() + chrono::Duration::nanoseconds(1);
        loop {
            let tick = cron
                .after(&Utc.from_utc_datetime(&cursor))
                .next_back()?
                .naive_utc();
            let at = wall_to_instant(tick, tz);
            if at <= t {
                return Some(at);
            }
            cursor = tick;
        }
    }

    /// The schedule interval `[start, end)` that contains `t`.
    pub fn interval_containing(
        &self,
        t: DateTime<Utc>,
        tz: Tz,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let start = self.prev_at_or_before(t, tz)?;
        let end = self.next_after(start, tz)?;
        Some((start, end))
    }

    /// The latest interval that has completely passed at `now`.
    pub fn latest_complete_interval(
        &self,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let end = self.prev_at_or_before(now, tz)?;
        let start = self.prev_at_or_before(end - chrono::Duration::nanoseconds(1), tz)?;
        Some((start, end))
    }
}

/// Places a wall-clock time of `tz` on the time line: in a DST fold the first occurrence;
/// in a DST gap the time the clock would show had it not jumped (02:30 becomes 03:30), so a
/// schedule never silently loses the day of a change.
fn wall_to_instant(wall: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(d) => d.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            let before = tz.offset_from_utc_datetime(&(wall - chrono::Duration::hours(6)));
            Utc.from_utc_datetime(
                &(wall - chrono::Duration::seconds(before.fix().local_minus_utc() as i64)),
            )
        }
    }
}

/// One field of a 5-field cron expression: its name and what it accepts.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    /// Names accepted for values, the first standing for `lo` (`JAN` for 1).
    names: &'static [&'static str],
    /// `?` (any), accepted in day-of-month and day-of-week as by Quartz-style crons.
    any: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        lo: 0,
        hi: 59,
        names: &[],
        any: false,
    },
    Field {
        name: "hour",
        lo: 0,
        hi: 23,
        names: &[],
        any: false,
    },
    Field {
        name: "day-of-month",
        lo: 1,
        hi: 31,
        names: &[],
        any: true,
    },
    Field {
        name: "month",
        lo: 1,
        hi: 12,
        names: &MONTH_NAMES,
        any: false,
    },
    Field {
        name: "day-of-week",
        lo: 0,
        hi: 7,
        names: &DAY_NAMES,
        any: true,
    },
];

impl Field {
    /// Checks the field as written (`*`, values, names, ranges `a-b`, lists `a,b`, steps
    /// `/n`) and gives it back with names written as numbers.
    fn check(&self, text: &str) -> Result<String, FieldError> {
        let name = self.name;
        let whole = |part: &str| part == text;
        let mut out = Vec::new();
        for item in text.split(',') {
            if item.is_empty() {
                return Err(FieldError::EmptyListElement {
                    field: name,
                    text: text.to_string(),
                });
            }
            let (base, step) = match item.split_once('/') {
                Some((base, step)) => (base, Some(step)),
                None => (item, None),
            };
            if let Some(step) = step {
                match step.parse::<u32>() {
                    Ok(n) if (1..=self.hi).contains(&n) => {}
                    Ok(n) if n > self.hi => {
                        return Err(FieldError::StepTooLarge {
                            field: name,
                            text: text.to_string(),
                            step: step.to_string(),
                            max: self.hi,
                        });
                    }
                    _ => {
                        return Err(FieldError::BadStep {
                            field: name,
                            text: text.to_string(),
                            step: step.to_string(),
                        });
                    }
                }
            }
            let step_text = step.map(|s| format!("/{s}")).unwrap_or_default();
            if base == "*" || (base == "?" && self.any && step.is_none()) {
                out.push(format!("{base}{step_text}"));
                continue;
            }
            let (a, b) = match base.split_once('-') {
                Some((a, b)) => (self.value(a, text)?, Some(self.value(b, text)?)),
                None => (self.value(base, text)?, None),
            };
            // Names become numbers, so the cron crate never sees a mix such as `JAN-3`.
            out.push(match b {
                Some(b) => format!("{a}-{b}{step_text}"),
                None => format!("{a}{step_text}"),
            });
            if let Some(b) = b
                && a > b
            {
                return Err(FieldError::RangeBackwards {
                    field: name,
                    range: base.to_string(),
                    within: (!whole(base)).then(|| text.to_string()),
                });
            }
        }
        Ok(out.join(","))
    }

    /// A single value of the field, a number in range or a name.
    fn value(&self, v: &str, text: &str) -> Result<u32, FieldError> {
        let Field { name, lo, hi, .. } = *self;
        let place = Place {
            field: name,
            value: v.to_string(),
            within: (v != text).then(|| text.to_string()),
        };
        if let Ok(n) = v.parse::<u32>() {
            return if (lo..=hi).contains(&n) {
                Ok(n)
            } else {
                Err(FieldError::OutOfRange { place, lo, hi })
            };
        }
        if let Some((_, n)) = self
            .names
            .iter()
            .zip(lo..)
            .find(|(n, _)| n.eq_ignore_ascii_case(v))
        {
            return Ok(n);
        }
        Err(FieldError::NotAValue {
            place,
            lo,
            hi,
            names: self.names.first().copied().zip(self.names.last().copied()),
            unsupported_special: v.contains(['L', 'W', '#', 'l', 'w']),
        })
    }
}

/// Rewrites a Unix day-of-week field (0-7, names, ranges, steps) as a list of day names.
fn unix_dow_to_names(field: &str) -> Result<String, DayOfWeekError> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<usize>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    DayOfWeekError::BadStep {
                        step: s.to_string(),
                    }
                })?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day_number(a)?, day_number(b)?)
        } else {
            let d = day_number(range)?;
            (d, if item.contains('/') { 6 } else { d })
        };
        if lo > hi {
            return Err(DayOfWeekError::RangeBackwards {
                range: range.to_string(),
            });
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(DAY_NAMES
        .iter()
        .zip(days)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(","))
}

fn day_number(s: &str) -> Result<usize, DayOfWeekError> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(DayOfWeekError::OutOfRange {
                value: s.to_string(),
            })
        };
    }
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .ok_or_else(|| DayOfWeekError::NotADay {
            value: s.to_string(),
        })
}

/// Parses an IANA time zone name.
pub fn parse_timezone(name: &str) -> Result<Tz, UnknownTimezone> {
    name.parse::<Tz>().map_err(|_| UnknownTimezone {
        name: name.to_string(),
    })
}
