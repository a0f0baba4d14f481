//! Why a schedule or a time zone is refused: typed, with `Display` the message users see.

use super::PRESETS;

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
