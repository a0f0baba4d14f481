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
    let ScheduleError::Field { problem, .. } = Schedule::parse("61 0 * * *").unwrap_err() else {
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
