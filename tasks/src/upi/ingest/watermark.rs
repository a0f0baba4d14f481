//! Event-time watermarks, as Flink's `WatermarkStrategy.forBoundedOutOfOrderness(bound)
//! .withIdleness(timeout)` keeps them, but stored: each batch moves its partitions'
//! watermarks (the largest event time stored minus the out-of-orderness bound, never
//! backwards) in the same transaction as their offsets (`writer`), so a watermark never claims
//! an event that did not commit. Completeness of an interval is read from them here: every
//! partition's watermark has passed its end, or the partition is idle (nothing left to read
//! and nothing new for the idle timeout), which Flink's idleness rule lets through.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// What Postgres holds of one partition.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredMark {
    pub partition: i32,
    pub next_offset: i64,
    /// The largest event time of a valid event stored from it.
    pub max_event_time: Option<DateTime<Utc>>,
    /// `max_event_time` minus the out-of-orderness bound of the ingest that stored it.
    pub watermark: Option<DateTime<Utc>>,
    /// Seconds since a batch last stored a message of it (the database's clock).
    pub quiet_secs: f64,
}

/// The stored watermarks of a group's partitions of a topic, by partition.
pub async fn stored(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<Vec<StoredMark>, sqlx::Error> {
    sqlx::query_as(
        "SELECT kafka_partition AS partition, next_offset, max_event_time, watermark,
                EXTRACT(EPOCH FROM now() - updated_at)::float8 AS quiet_secs
         FROM ingest_offsets WHERE consumer_group = $1 AND kafka_topic = $2
         ORDER BY kafka_partition",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await
}

/// Where one partition stands against an interval's end.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// Its watermark has passed the end.
    Passed,
    /// Nothing left to read and nothing new for the idle timeout: it holds nothing back.
    Idle,
    /// It holds the interval open.
    Waiting {
        watermark: Option<DateTime<Utc>>,
        /// Messages the broker holds that are not stored yet.
        lag: i64,
        quiet_secs: f64,
    },
}

/// Each partition of `highs` (the broker's high watermarks) against `until`: the partitions
/// the broker has and Postgres does not count as never read (an empty one is idle at once).
pub fn standings(
    highs: &[(i32, i64)],
    stored: &[StoredMark],
    until: DateTime<Utc>,
    idle_timeout: Duration,
) -> BTreeMap<i32, Standing> {
    let by_partition: BTreeMap<i32, &StoredMark> =
        stored.iter().map(|m| (m.partition, m)).collect();
    highs
        .iter()
        .map(|&(p, high)| {
            let mark = by_partition.get(&p);
            let next = mark.map_or(0, |m| m.next_offset);
            let lag = (high - next).max(0);
            let watermark = mark.and_then(|m| m.watermark);
            // A partition never written to has been quiet for as long as anyone knows.
            let quiet_secs = mark.map_or(f64::INFINITY, |m| m.quiet_secs);
            let standing = if watermark.is_some_and(|w| w >= until) {
                Standing::Passed
            } else if lag == 0 && quiet_secs >= idle_timeout.as_secs_f64() {
                Standing::Idle
            } else {
                Standing::Waiting {
                    watermark,
                    lag,
                    quiet_secs,
                }
            };
            (p, standing)
        })
        .collect()
}

/// The partitions that hold the interval open, for a log line or an error ("" when none).
pub fn describe_waiting(standings: &BTreeMap<i32, Standing>, until: DateTime<Utc>) -> String {
    standings
        .iter()
        .filter_map(|(p, s)| match s {
            Standing::Waiting {
                watermark,
                lag,
                quiet_secs,
            } => {
                let mark = watermark.map_or("none yet".to_string(), |w| w.to_rfc3339());
                let quiet = if quiet_secs.is_finite() {
                    format!("last stored {quiet_secs:.0}s ago")
                } else {
                    "nothing stored yet".to_string()
                };
                Some(format!(
                    "partition {p} (watermark {mark}, needs {}; {lag} messages not stored; {quiet})",
                    until.to_rfc3339()
                ))
            }
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, h, m, 0).unwrap()
    }

    fn mark(partition: i32, next: i64, watermark: Option<DateTime<Utc>>, quiet: f64) -> StoredMark {
        StoredMark {
            partition,
            next_offset: next,
            max_event_time: watermark.map(|w| w + chrono::Duration::seconds(5)),
            watermark,
            quiet_secs: quiet,
        }
    }

    #[test]
    fn a_partition_behind_in_event_time_holds_the_interval_open_until_it_passes() {
        let idle = Duration::from_secs(30);
        let stored = [
            mark(0, 10, Some(at(1, 0)), 0.1),
            mark(1, 10, Some(at(0, 10)), 0.1),
        ];
        let s = standings(&[(0, 10), (1, 12)], &stored, at(0, 15), idle);
        assert_eq!(s[&0], Standing::Passed);
        assert!(matches!(s[&1], Standing::Waiting { lag: 2, .. }), "{s:?}");
        let text = describe_waiting(&s, at(0, 15));
        assert!(
            text.starts_with("partition 1 (watermark 2026-11-29T00:10:00+00:00"),
            "{text}"
        );
        assert!(text.contains("2 messages not stored"), "{text}");

        let stored = [
            mark(0, 10, Some(at(1, 0)), 0.1),
            mark(1, 12, Some(at(0, 15)), 0.1),
        ];
        let s = standings(&[(0, 10), (1, 12)], &stored, at(0, 15), idle);
        assert!(s.values().all(|s| *s == Standing::Passed), "{s:?}");
    }

    #[test]
    fn an_idle_partition_holds_nothing_back_but_a_quiet_one_with_lag_does() {
        let idle = Duration::from_secs(30);
        let stored = [
            mark(0, 10, Some(at(0, 1)), 31.0),
            mark(1, 10, Some(at(0, 1)), 31.0),
        ];
        let s = standings(&[(0, 10), (1, 11)], &stored, at(0, 15), idle);
        assert_eq!(s[&0], Standing::Idle);
        assert!(matches!(s[&1], Standing::Waiting { lag: 1, .. }));
        // Not quiet for long enough yet.
        let stored = [mark(0, 10, Some(at(0, 1)), 29.0)];
        let s = standings(&[(0, 10)], &stored, at(0, 15), idle);
        assert!(matches!(s[&0], Standing::Waiting { lag: 0, .. }));
    }

    #[test]
    fn partitions_postgres_has_never_seen_are_idle_when_empty_and_waiting_otherwise() {
        let s = standings(&[(0, 0), (1, 3)], &[], at(0, 15), Duration::from_secs(30));
        assert_eq!(s[&0], Standing::Idle);
        assert!(matches!(
            s[&1],
            Standing::Waiting {
                watermark: None,
                lag: 3,
                ..
            }
        ));
        assert!(describe_waiting(&s, at(0, 15)).contains("nothing stored yet"));
    }

    #[test]
    fn an_old_interval_has_passed_at_once() {
        let stored = [mark(0, 10, Some(at(0, 1)), 0.0)];
        let month_ago = at(0, 0) - chrono::Duration::days(30);
        let s = standings(&[(0, 10)], &stored, month_ago, Duration::from_secs(30));
        assert_eq!(s[&0], Standing::Passed);
    }
}
