//! Schedules: what Airflow users write (5-field cron, `@daily`-style presets, `none`),
//! normalised to the `cron` crate's format and evaluated in the DAG's IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Why a schedule expression was refused. `Display` is the message users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown schedule preset `{preset}` (expected one of {}, or none)", PRESETS.map(|(p, _)| p).join(", "))]
    UnknownPreset { preset: String },
    #[error(
        "cron expression `{expr}` has {count} field{}; expected 5 (minute hour day-of-month month day-of-week){}",
        if *count == 1 { "" } else { "s" },
        if *count == 6 { "; seconds are not supported" } else { "" }
    )]
    FieldCount { expr: String, count: usize },
    /// One of the five fields is wrong (boxed: it is large, and errors travel in `Result`s).
    #[error("cron expression `{expr}`: {problem}")]
    Field {
        expr: String,
        problem: Box<FieldError>,
    },
    /// The day-of-week field could not be read as Unix days.
    #[error("cron expression `{expr}`: day-of-week: {problem}")]
    DayOfWeek {
        expr: String,
        problem: DayOfWeekError,
    },
    /// Every field passed its own check but the cron crate refused the whole.
    #[error(
        "cron expression `{expr}` is not a valid 5-field cron expression (minute hour day-of-month month day-of-week)"
    )]
    Invalid { expr: String },
}

/// Where a bad value sits: the whole field, or one part of a field's list or range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub field: &'static str,
    pub value: String,
    /// The whole field's text when the value is only a part of it.
    pub within: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.within {
            None => write!(f, "the {} field `{}`", self.field, self.value),
            Some(text) => write!(f, "`{}` in the {} field `{text}`", self.value, self.field),
        }
    }
}

/// A problem in one field of a cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("the {field} field `{text}` has an empty element in its list")]
    EmptyListElement { field: &'static str, text: String },
    #[error(
        "the step `/{step}` in the {field} field `{text}` is larger than {max}, the field's largest value"
    )]
    StepTooLarge {
        field: &'static str,
        text: String,
        step: String,
        max: u32,
    },
    #[error(
        "the step `/{step}` in the {field} field `{text}` must be a whole number of at least 1"
    )]
    BadStep {
        field: &'static str,
        text: String,
        step: String,
    },
    #[error(
        "the range `{range}` in {} runs backwards (write the smaller value first)",
        match within {
            None => format!("the {field} field"),
            Some(text) => format!("the {field} field `{text}`"),
        }
    )]
    RangeBackwards {
        field: &'static str,
        range: String,
        /// The whole field's text when the range is only a part of it.
        within: Option<String>,
    },
    #[error("{place} is out of range {lo}-{hi}")]
    OutOfRange { place: Place, lo: u32, hi: u32 },
    #[error(
        "{place} is not a number {lo}-{hi}{}{}",
        names.as_ref().map(|(a, b)| format!(" or a name {a}-{b}")).unwrap_or_default(),
        if *unsupported_special { " (`L`, `W` and `#` are not supported)" } else { "" }
    )]
    NotAValue {
        place: Place,
        lo: u32,
        hi: u32,
        /// The first and last names the field accepts, if it accepts names.
        names: Option<(&'static str, &'static str)>,
        /// The value uses Quartz's `L`, `W` or `#`.
        unsupported_special: bool,
    },
}

/// A problem reading the day-of-week field as Unix days (0-7, names).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DayOfWeekError {
    #[error("bad step `{step}`")]
    BadStep { step: String },
    #[error("range `{range}` runs backwards")]
    RangeBackwards { range: String },
    #[error("`{value}` is not a day of the week (0-7)")]
    OutOfRange { value: String },
    #[error("`{value}` is not a day of the week")]
    NotADay { value: String },
}

/// A time zone name that is not in the IANA database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone `{name}` (expected an IANA name such as Asia/Kolkata)")]
pub struct UnknownTimezone {
    pub name: String,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
    }

    #[test]
    fn weekday_numbers_follow_unix_cron() {
        let s = Schedule::parse("0 9 * * 1-5").unwrap();
        // 2024-01-06 is a Saturday: the next run is Monday.
        let next = s.next_after(utc(2024, 1, 6, 12, 0), Tz::UTC).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        let sunday = Schedule::parse("0 0 * * 0").unwrap();
        let seven = Schedule::parse("0 0 * * 7").unwrap();
        let t = utc(2024, 1, 3, 0, 0);
        assert_eq!(sunday.next_after(t, Tz::UTC), seven.next_after(t, Tz::UTC));
        assert_eq!(
            sunday.next_after(t, Tz::UTC).unwrap().weekday(),
            Weekday::Sun
        );
    }

    #[test]
    fn kolkata_midnight_is_1830_utc() {
        let s = Schedule::parse("@daily").unwrap();
        let tz = parse_timezone("Asia/Kolkata").unwrap();
        let next = s.next_after(utc(2024, 1, 1, 12, 0), tz).unwrap();
        assert_eq!(next, utc(2024, 1, 1, 18, 30));
        let (start, end) = s.interval_containing(utc(2024, 1, 1, 12, 0), tz).unwrap();
        assert_eq!(
            (start, end),
            (utc(2023, 12, 31, 18, 30), utc(2024, 1, 1, 18, 30))
        );
    }

    #[test]
    fn prev_includes_the_tick_itself() {
        let s = Schedule::parse("@hourly").unwrap();
        let t = utc(2024, 3, 1, 5, 0);
        assert_eq!(s.prev_at_or_before(t, Tz::UTC), Some(t));
        assert_eq!(
            s.latest_complete_interval(utc(2024, 3, 1, 5, 30), Tz::UTC),
            Some((utc(2024, 3, 1, 4, 0), t))
        );
        assert_eq!(s.next_after(t, Tz::UTC).unwrap().hour(), 6);
    }

    #[test]
    fn a_0230_new_york_schedule_keeps_every_day_across_dst() {
        let s = Schedule::parse("30 2 * * *").unwrap();
        let tz = parse_timezone("America/New_York").unwrap();
        let mut ticks = vec![s.next_after(utc(2024, 3, 8, 12, 0), tz).unwrap()];
        for _ in 0..3 {
            ticks.push(s.next_after(*ticks.last().unwrap(), tz).unwrap());
        }
        // 02:30 does not exist on 10 March: the run is at 03:30 EDT, then back to 02:30.
        assert_eq!(
            ticks,
            [
                utc(2024, 3, 9, 7, 30),
                utc(2024, 3, 10, 7, 30),
                utc(2024, 3, 11, 6, 30),
                utc(2024, 3, 12, 6, 30)
            ]
        );
        // Autumn: 02:30 falls after the repeated hour, so the day of the change lasts 25 hours.
        let mut ticks = vec![s.next_after(utc(2024, 11, 1, 12, 0), tz).unwrap()];
        for _ in 0..2 {
            ticks.push(s.next_after(*ticks.last().unwrap(), tz).unwrap());
        }
        assert_eq!(
            ticks,
            [
                utc(2024, 11, 2, 6, 30),
                utc(2024, 11, 3, 7, 30),
                utc(2024, 11, 4, 7, 30)
            ]
        );
        // Walking backwards gives the same ticks.
        assert_eq!(
            s.prev_at_or_before(utc(2024, 3, 11, 6, 29), tz),
            Some(utc(2024, 3, 10, 7, 30))
        );
        assert_eq!(
            s.prev_at_or_before(utc(2024, 3, 10, 7, 30), tz),
            Some(utc(2024, 3, 10, 7, 30))
        );
        assert_eq!(
            s.prev_at_or_before(utc(2024, 11, 3, 7, 29), tz),
            Some(utc(2024, 11, 2, 6, 30))
        );
    }

    #[test]
    fn hourly_in_new_york_has_no_duplicate_or_lost_ticks_around_dst() {
        let s = Schedule::parse("@hourly").unwrap();
        let tz = parse_timezone("America/New_York").unwrap();
        let mut t = utc(2024, 3, 10, 5, 0);
        let mut ticks = Vec::new();
        for _ in 0..4 {
            t = s.next_after(t, tz).unwrap();
            ticks.push(t);
        }
        // 01:00 EST (06:00Z), then 03:00 EDT (07:00Z): the missing 02:00 is not run twice.
        assert_eq!(
            ticks,
            [
                utc(2024, 3, 10, 6, 0),
                utc(2024, 3, 10, 7, 0),
                utc(2024, 3, 10, 8, 0),
                utc(2024, 3, 10, 9, 0)
            ]
        );
        for w in ticks.windows(2) {
            assert!(w[0] < w[1]);
        }
    }

    fn cron_err(expr: &str) -> String {
        Schedule::parse(expr).expect_err(expr).to_string()
    }

    #[test]
    fn errors_are_typed_by_kind_and_carry_their_data() {
        assert_eq!(
            Schedule::parse("0 0 * *").unwrap_err(),
            ScheduleError::FieldCount {
                expr: "0 0 * *".into(),
                count: 4
            }
        );
        let ScheduleError::Field { problem, .. } = Schedule::parse("61 0 * * *").unwrap_err()
        else {
            panic!("a field error");
        };
        match *problem {
            FieldError::OutOfRange { place, lo, hi } => assert_eq!(
                (place.field, place.value.as_str(), lo, hi),
                ("minute", "61", 0, 59)
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Schedule::parse("0 0 * * 8").unwrap_err(),
            ScheduleError::Field { problem, .. } if matches!(*problem, FieldError::OutOfRange { .. })
        ));
        assert_eq!(
            parse_timezone("Mars/Olympus").unwrap_err(),
            UnknownTimezone {
                name: "Mars/Olympus".into()
            }
        );
    }

    #[test]
    fn out_of_range_values_name_the_field_the_value_and_the_range() {
        assert_eq!(
            cron_err("0 24 * * *"),
            "cron expression `0 24 * * *`: the hour field `24` is out of range 0-23"
        );
        assert_eq!(
            cron_err("60 0 * * *"),
            "cron expression `60 0 * * *`: the minute field `60` is out of range 0-59"
        );
        assert_eq!(
            cron_err("0 0 0 * *"),
            "cron expression `0 0 0 * *`: the day-of-month field `0` is out of range 1-31"
        );
        assert_eq!(
            cron_err("0 0 1 13 *"),
            "cron expression `0 0 1 13 *`: the month field `13` is out of range 1-12"
        );
        assert_eq!(
            cron_err("0 0 * * 8"),
            "cron expression `0 0 * * 8`: the day-of-week field `8` is out of range 0-7"
        );
        assert_eq!(
            cron_err("0 1,2,30 * * *"),
            "cron expression `0 1,2,30 * * *`: `30` in the hour field `1,2,30` is out of range 0-23"
        );
        assert_eq!(
            cron_err("0 9-25 * * *"),
            "cron expression `0 9-25 * * *`: `25` in the hour field `9-25` is out of range 0-23"
        );
    }

    #[test]
    fn other_field_mistakes_are_explained_in_the_users_terms() {
        assert_eq!(
            cron_err("*/0 * * * *"),
            "cron expression `*/0 * * * *`: the step `/0` in the minute field `*/0` must be a whole number of at least 1"
        );
        assert_eq!(
            cron_err("0 17-9 * * *"),
            "cron expression `0 17-9 * * *`: the range `17-9` in the hour field runs backwards (write the smaller value first)"
        );
        assert_eq!(
            cron_err("0 0 * FOO *"),
            "cron expression `0 0 * FOO *`: the month field `FOO` is not a number 1-12 or a name JAN-DEC"
        );
        assert_eq!(
            cron_err("0 0 L * *"),
            "cron expression `0 0 L * *`: the day-of-month field `L` is not a number 1-31 (`L`, `W` and `#` are not supported)"
        );
        assert_eq!(
            cron_err("0 0,,1 * * *"),
            "cron expression `0 0,,1 * * *`: the hour field `0,,1` has an empty element in its list"
        );
        assert_eq!(
            cron_err("? 0 * * *"),
            "cron expression `? 0 * * *`: the minute field `?` is not a number 0-59"
        );
    }

    #[test]
    fn a_step_beyond_the_field_is_refused_by_name() {
        assert_eq!(
            cron_err("*/90 * * * *"),
            "cron expression `*/90 * * * *`: the step `/90` in the minute field `*/90` is larger than 59, the field's largest value"
        );
    }

    #[test]
    fn only_five_fields_are_accepted() {
        assert_eq!(
            cron_err("0 0 * *"),
            "cron expression `0 0 * *` has 4 fields; expected 5 (minute hour day-of-month month day-of-week)"
        );
        assert_eq!(
            cron_err("0 0 0 * * *"),
            "cron expression `0 0 0 * * *` has 6 fields; expected 5 (minute hour day-of-month month day-of-week); seconds are not supported"
        );
        assert!(cron_err("daily").contains("has 1 field;"));
    }

    #[test]
    fn accepted_forms_still_parse_and_mean_what_cron_means() {
        for ok in [
            "*/15 * * * *",
            "0 9-17/2 * * 1-5",
            "0 0 1 JAN *",
            "0 0 1 jan-mar *",
            "0 0 ? * MON",
            "0 0 1,15 * *",
            "5 4 * * sun",
            "0 0 * * 7",
            "0 0 31 * *",
            "0 0 1 JAN-3 *",
            "0 0 1 */3 *",
            "0 0 * * */2",
            "0 23 * * *",
        ] {
            assert!(
                Schedule::parse(ok).is_ok(),
                "{ok}: {:?}",
                Schedule::parse(ok).err()
            );
        }
        let s = Schedule::parse("0 0 1 FEB *").unwrap();
        let next = s.next_after(utc(2024, 3, 1, 0, 0), Tz::UTC).unwrap();
        assert_eq!(next, utc(2025, 2, 1, 0, 0));
    }

    #[test]
    fn bad_expressions_are_explained() {
        assert!(
            Schedule::parse("0 0 * *")
                .unwrap_err()
                .to_string()
                .contains("4 fields")
        );
        assert!(
            Schedule::parse("@fortnightly")
                .unwrap_err()
                .to_string()
                .contains("unknown schedule preset")
        );
        assert!(Schedule::parse("61 0 * * *").is_err());
        assert!(
            Schedule::parse("0 0 * * 8")
                .unwrap_err()
                .to_string()
                .contains("day-of-week")
        );
        assert!(Schedule::parse("none").unwrap().is_none());
        assert!(parse_timezone("Asia/Kolkatta").is_err());
    }
}
