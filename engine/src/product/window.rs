//! Dashboard time windows: the ranges a dashboard offers and the window a range covers at
//! an instant, aligned to whole buckets in a fixed UTC offset (the product's zone).
//!
//! A range ends at the end of the current bucket, so its buckets are whole and the numbers
//! of a bucket are exact.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Deserialize;

/// The time ranges a dashboard's selector offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Range {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "6h")]
    SixHours,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Range {
    pub const ALL: [Range; 5] = [
        Range::Hour,
        Range::SixHours,
        Range::Day,
        Range::Week,
        Range::Month,
    ];

    /// Its value in the `range` query parameter.
    pub fn key(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::SixHours => "6h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
        }
    }

    /// Its name in the selector and in panel subtitles.
    pub fn label(self) -> &'static str {
        match self {
            Range::Hour => "Last hour",
            Range::SixHours => "Last 6 hours",
            Range::Day => "Last 24 hours",
            Range::Week => "Last 7 days",
            Range::Month => "Last 30 days",
        }
    }

    /// Its length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Range::Hour => 3600,
            Range::SixHours => 6 * 3600,
            Range::Day => 24 * 3600,
            Range::Week => 7 * 86400,
            Range::Month => 30 * 86400,
        }
    }

    /// The width of a time bucket: about 60 to 170 buckets per range.
    pub fn bucket(self) -> i64 {
        match self {
            Range::Hour => 60,
            Range::SixHours => 300,
            Range::Day => 900,
            Range::Week => 3600,
            Range::Month => 6 * 3600,
        }
    }

    /// Where a tick label goes (every this many seconds, aligned in the zone).
    pub fn tick(self) -> i64 {
        match self {
            Range::Hour => 600,
            Range::SixHours => 3600,
            Range::Day => 3 * 3600,
            Range::Week => 86400,
            Range::Month => 5 * 86400,
        }
    }
}

/// What a dashboard shows for a range at an instant: the aligned time window, its buckets,
/// and the days of daily panels.
#[derive(Clone, Debug)]
pub struct Window {
    pub range: Range,
    /// `[start, end)`, both on bucket boundaries (aligned in the zone).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// The zone's days of daily panels and heatmaps: the days the window touches, and at
    /// least the last 7.
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// The zone's offset east of UTC, in seconds.
    pub utc_offset_secs: i32,
}

impl Window {
    /// The window of `range` at `now`, buckets aligned at `utc_offset_secs` east of UTC.
    pub fn new(range: Range, now: DateTime<Utc>, utc_offset_secs: i32) -> Self {
        let offset = i64::from(utc_offset_secs);
        let zone = FixedOffset::east_opt(utc_offset_secs).expect("an offset within a day");
        let date_of = |t: DateTime<Utc>| t.with_timezone(&zone).date_naive();
        let b = range.bucket();
        let local = now.timestamp() + offset;
        let end_local = local.div_euclid(b) * b + b;
        let end = DateTime::from_timestamp(end_local - offset, 0).expect("a time in range");
        let start = end - Duration::seconds(range.seconds());
        let last_day = date_of(end - Duration::seconds(1));
        let first_day = date_of(start).min(last_day - Duration::days(6));
        Self {
            range,
            start,
            end,
            now,
            first_day,
            last_day,
            utc_offset_secs,
        }
    }

    /// The zone as a chrono offset.
    pub fn zone(&self) -> FixedOffset {
        FixedOffset::east_opt(self.utc_offset_secs).expect("an offset within a day")
    }

    /// The zone's date of an instant.
    pub fn date_of(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.zone()).date_naive()
    }

    /// The instant a date of the zone starts.
    pub fn midnight(&self, d: NaiveDate) -> DateTime<Utc> {
        self.zone()
            .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
            .single()
            .expect("a fixed offset has no gaps")
            .with_timezone(&Utc)
    }

    pub fn bucket_secs(&self) -> i64 {
        self.range.bucket()
    }

    /// The start of every bucket, oldest first.
    pub fn buckets(&self) -> Vec<DateTime<Utc>> {
        let b = self.range.bucket();
        let n = self.range.seconds() / b;
        (0..n)
            .map(|i| self.start + Duration::seconds(i * b))
            .collect()
    }

    /// The days from `first_day` to `last_day`.
    pub fn days(&self) -> Vec<NaiveDate> {
        self.first_day
            .iter_days()
            .take_while(|d| *d <= self.last_day)
            .collect()
    }

    /// The zone's current day.
    pub fn today(&self) -> NaiveDate {
        self.date_of(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IST: UTC+05:30.
    const IST: i32 = 5 * 3600 + 1800;

    #[test]
    fn windows_end_on_ist_bucket_boundaries() {
        let now: DateTime<Utc> = "2024-01-10T10:07:31Z".parse().unwrap();
        let w = Window::new(Range::Hour, now, IST);
        assert_eq!(
            w.end,
            "2024-01-10T10:08:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(w.buckets().len(), 60);
        // Hours start at :30 UTC in IST.
        let w = Window::new(Range::Week, now, IST);
        assert_eq!(
            w.end,
            "2024-01-10T10:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(w.buckets().len(), 168);
        let w = Window::new(Range::Month, now, IST);
        // 6-hour buckets start at 00, 06, 12, 18 IST = 18:30, 00:30, 06:30, 12:30 UTC.
        assert_eq!(
            w.end,
            "2024-01-10T12:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(w.buckets().len(), 120);
        assert_eq!(w.days().len(), 31);
        let w = Window::new(Range::Hour, now, IST);
        assert_eq!(w.days().len(), 7);
        assert_eq!(w.last_day, "2024-01-10".parse::<NaiveDate>().unwrap());
    }

    #[test]
    fn midnight_is_the_start_of_the_zones_day() {
        let now: DateTime<Utc> = "2024-01-10T20:00:00Z".parse().unwrap();
        let w = Window::new(Range::Hour, now, IST);
        // 20:00 UTC is 01:30 IST the next day.
        assert_eq!(w.today(), "2024-01-11".parse::<NaiveDate>().unwrap());
        assert_eq!(
            w.midnight(w.today()),
            "2024-01-10T18:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
