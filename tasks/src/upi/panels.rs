//! The payments dashboard's panels, built from [`super::dashboard`]'s query results: what
//! each panel holds and says, as the web-agnostic data of [`upiflow_engine::product`]. The
//! web draws them.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use sqlx::PgPool;
use upiflow_engine::product::{
    Axis, Block, Chart, Heatmap, Panel, Row, Series, Slice, Stat, Tone, Unit, Window,
};

use super::dashboard::{self as q, Daily, STATUSES};

const STATUS_TONES: [Tone; 3] = [Tone::Success, Tone::Failed, Tone::Pending];

/// A titled panel.
fn panel(id: &str, title: &str, sub: Option<&str>, blocks: Vec<Block>) -> Panel {
    Panel::Titled {
        id: id.into(),
        title: title.into(),
        subtitle: sub.map(str::to_string),
        blocks,
    }
}

/// A chart, or "no data in this range" unless `has`.
fn chart_or_empty(has: bool, chart: impl FnOnce() -> Chart) -> Vec<Block> {
    vec![if has {
        Block::Chart(chart())
    } else {
        Block::Empty(None)
    }]
}

fn bucket_name(secs: i64) -> &'static str {
    match secs {
        60 => "minute",
        300 => "5 minutes",
        900 => "15 minutes",
        3600 => "hour",
        21600 => "6 hours",
        _ => "bucket",
    }
}

/// The live panels: totals, volume and failures per bucket, status split, banks, the
/// day x hour heatmap and today's top merchants.
pub async fn live(pool: &PgPool, w: &Window) -> Result<Vec<Panel>, sqlx::Error> {
    let vol = q::volume(pool, w).await?;
    let banks = q::banks(pool, w).await?;
    let heat = q::heatmap(pool, w).await?;
    let top = q::top_merchants(pool, w).await?;
    let zone = w.zone();

    let total = vol.total();
    let has = total > 0.0;
    let per = bucket_name(w.bucket_secs());
    let tpm = chart_or_empty(has, || Chart::Line {
        label: "Transactions per bucket".into(),
        x: Axis::Buckets,
        series: vec![Series::new("Transactions", Tone::Primary, vol.per_bucket())],
        unit: Unit::Count,
        area: true,
    });
    let failed = vol.by_status(1);
    let failures = chart_or_empty(has, || Chart::Line {
        label: "Failures per bucket".into(),
        x: Axis::Buckets,
        series: vec![Series::new("Failed", Tone::Failed, vol.txns[1].clone())],
        unit: Unit::Count,
        area: true,
    });
    let split = chart_or_empty(has, || Chart::Donut {
        label: "Status split".into(),
        slices: (0..3)
            .map(|i| Slice {
                name: STATUSES[i].into(),
                tone: STATUS_TONES[i],
                value: vol.by_status(i),
            })
            .collect(),
        unit: Unit::Count,
        caption: "transactions".into(),
    });
    let bank_chart = chart_or_empty(!banks.is_empty(), || Chart::HBars {
        label: "By payer bank".into(),
        rows: banks
            .iter()
            .map(|(b, v)| Row {
                label: if b.is_empty() {
                    "(none)".into()
                } else {
                    b.clone()
                },
                values: v.to_vec(),
                note: None,
            })
            .collect(),
        legend: STATUSES
            .iter()
            .map(|s| (*s).to_string())
            .zip(STATUS_TONES)
            .collect(),
        unit: Unit::Count,
    });

    // Heatmap: the window's days (oldest first) x 24 IST hours; hours still to come are
    // blank, not zero.
    let days = w.days();
    let heat_chart = chart_or_empty(heat.values().any(|v| *v > 0.0), || Chart::Heatmap {
        label: "Transactions by day and hour".into(),
        heatmap: Heatmap {
            rows: days
                .iter()
                .map(|d| d.format("%a %d %b").to_string())
                .collect(),
            row_keys: days.iter().map(|d| d.to_string()).collect(),
            columns: (0..24).map(|h| format!("{h:02}")).collect(),
            column_names: (0..24)
                .map(|j| format!("{j:02}:00–{:02}:00 IST", (j + 1) % 24))
                .collect(),
            values: days
                .iter()
                .map(|d| {
                    (0..24u32)
                        .map(|h| {
                            let start = w.midnight(*d) + Duration::hours(i64::from(h));
                            let future = start > w.now;
                            (!future).then(|| heat.get(&(*d, h)).copied().unwrap_or(0.0))
                        })
                        .collect()
                })
                .collect(),
            column_every: 3,
        },
        unit: Unit::Count,
    });

    let top_chart = chart_or_empty(!top.is_empty(), || Chart::HBars {
        label: "Top 10 merchants today".into(),
        rows: top
            .iter()
            .map(|(m, n, amount)| Row {
                label: m.clone(),
                values: vec![*amount],
                note: Some(format!("{} transactions", Unit::Count.full(*n as f64))),
            })
            .collect(),
        legend: vec![("Amount".into(), Tone::Amount)],
        unit: Unit::Rupees,
    });

    let amount: f64 = vol.amount.iter().fold(0.0, |a, b| a + b);
    let success_rate = if has {
        format!("{:.1}%", vol.by_status(0) / total * 100.0)
    } else {
        "–".into()
    };
    let range_sub = format!(
        "{} · {} – {} IST",
        w.range.label(),
        w.start.with_timezone(&zone).format("%d %b %H:%M"),
        w.end.with_timezone(&zone).format("%d %b %H:%M")
    );
    let label = w.range.label();
    Ok(vec![
        Panel::Stats {
            id: "totals".into(),
            stats: vec![
                Stat::new(Unit::Count.full(total), "transactions").raw(total.to_string()),
                Stat::new(success_rate, "succeeded"),
                Stat::new(Unit::Count.full(failed), "failed")
                    .raw(failed.to_string())
                    .failed(),
                Stat::new(Unit::Rupees.short(amount), "amount"),
            ],
            note: range_sub,
        },
        panel("tpm", &format!("Transactions per {per}"), Some("live"), tpm),
        panel("status", "Status split", Some(label), split),
        panel(
            "failures",
            &format!("Failures per {per}"),
            Some("live"),
            failures,
        ),
        panel(
            "banks",
            "Transactions by payer bank",
            Some(label),
            bank_chart,
        ),
        panel(
            "heatmap",
            "Transactions by day and hour",
            Some("IST days × hours"),
            heat_chart,
        ),
        panel(
            "top-merchants",
            "Top 10 merchants today",
            Some(&format!("by amount · {}", w.today().format("%d %b %Y"))),
            top_chart,
        ),
    ])
}

/// The daily panels, from the DAG's summaries: totals, by status, amount, merchant trend.
pub async fn daily(pool: &PgPool, w: &Window) -> Result<Vec<Panel>, sqlx::Error> {
    let rows = q::daily(pool, w).await?;
    let trend = q::merchant_trend(pool, w).await?;
    let days = w.days();
    let by_day: HashMap<NaiveDate, &Daily> = rows.iter().map(|r| (r.date, r)).collect();
    let col = |f: &dyn Fn(&Daily) -> f64| -> Vec<Option<f64>> {
        days.iter().map(|d| by_day.get(d).map(|r| f(r))).collect()
    };
    let sub = format!(
        "{} – {}",
        w.first_day.format("%d %b"),
        w.last_day.format("%d %b %Y")
    );
    let has = !rows.is_empty();
    let totals = chart_or_empty(has, || Chart::StackedBars {
        label: "Daily transactions".into(),
        x: Axis::Days,
        series: vec![Series {
            name: "Transactions".into(),
            tone: Tone::Primary,
            values: col(&|r| r.total_txns as f64),
        }],
        unit: Unit::Count,
    });
    let status = chart_or_empty(has, || Chart::StackedBars {
        label: "Daily transactions by status".into(),
        x: Axis::Days,
        series: vec![
            Series {
                name: "SUCCESS".into(),
                tone: Tone::Success,
                values: col(&|r| r.success_txns as f64),
            },
            Series {
                name: "FAILED".into(),
                tone: Tone::Failed,
                values: col(&|r| r.failed_txns as f64),
            },
            Series {
                name: "PENDING".into(),
                tone: Tone::Pending,
                values: col(&|r| r.pending_txns as f64),
            },
        ],
        unit: Unit::Count,
    });
    let amount = chart_or_empty(has, || Chart::Line {
        label: "Daily amount".into(),
        x: Axis::Days,
        series: vec![Series {
            name: "Amount".into(),
            tone: Tone::Amount,
            values: col(&|r| r.total_amount),
        }],
        unit: Unit::Rupees,
        area: true,
    });
    let trend_chart = chart_or_empty(!trend.is_empty(), || {
        let mut order: Vec<&str> = Vec::new();
        let mut values: HashMap<&str, HashMap<NaiveDate, f64>> = HashMap::new();
        for (m, d, a) in &trend {
            if !order.contains(&m.as_str()) {
                order.push(m);
            }
            values.entry(m).or_default().insert(*d, *a);
        }
        let series = order
            .iter()
            .enumerate()
            .map(|(i, m)| Series {
                name: (*m).to_string(),
                tone: Tone::Palette(i),
                values: days
                    .iter()
                    .map(|d| {
                        by_day
                            .contains_key(d)
                            .then(|| values[m].get(d).copied().unwrap_or(0.0))
                    })
                    .collect(),
            })
            .collect();
        Chart::Line {
            label: "Merchant trend".into(),
            x: Axis::Days,
            series,
            unit: Unit::Rupees,
            area: false,
        }
    });
    let missing = days.iter().filter(|d| !by_day.contains_key(d)).count();
    let note = (has && missing > 0).then(|| {
        format!(
            "{sub} · {missing} day{} not summarised yet",
            if missing == 1 { "" } else { "s" }
        )
    });
    let sub_or_note = note.as_deref().unwrap_or(&sub);
    Ok(vec![
        panel(
            "daily-totals",
            "Daily transactions",
            Some(sub_or_note),
            totals,
        ),
        panel(
            "daily-status",
            "Daily success / failed / pending",
            Some(&sub),
            status,
        ),
        panel("daily-amount", "Daily amount", Some(&sub), amount),
        panel(
            "merchant-trend",
            "Merchant trend",
            Some("top 5 merchants by amount, per day"),
            trend_chart,
        ),
    ])
}

/// The ingest-health panels: events per second, consumer lag, dead letters.
pub async fn ingest(pool: &PgPool, w: &Window) -> Result<Vec<Panel>, sqlx::Error> {
    let rate = q::ingest_rate(pool).await?;
    let lag = q::consumer_lag(pool).await?;
    let (dead, dead_total) = q::dead_letters(pool, w).await?;
    let total_rate: f64 = rate.iter().fold(0.0, |a, r| a + r.1);
    let rate_body = vec![
        Block::BigStat(
            Stat::new(Unit::Rate.full(total_rate), "events/s").raw(format!("{total_rate:.1}")),
        ),
        if rate.is_empty() {
            Block::Empty(Some(
                "no ingest process has reported in the last 30 s".into(),
            ))
        } else {
            Block::Chart(Chart::HBars {
                label: "Events per second by ingest process".into(),
                rows: rate
                    .iter()
                    .map(|(id, r, n)| Row {
                        label: id.clone(),
                        values: vec![*r],
                        note: Some(format!(
                            "{} events since start",
                            Unit::Count.full(*n as f64)
                        )),
                    })
                    .collect(),
                legend: vec![("events/s".into(), Tone::Primary)],
                unit: Unit::Rate,
            })
        },
    ];
    let total_lag: i64 = lag.iter().map(|l| l.lag).sum();
    let lag_body = vec![if lag.is_empty() {
        Block::Empty(Some("no consumer lag recorded yet".into()))
    } else {
        Block::Chart(Chart::HBars {
            label: "Consumer lag per partition".into(),
            rows: lag
                .iter()
                .map(|l| Row {
                    label: format!("{} · {}", l.topic, l.partition),
                    values: vec![l.lag as f64],
                    note: Some(format!(
                        "group {}, recorded {:.0} s ago · {}",
                        l.group,
                        l.age,
                        match (l.watermark, l.watermark_behind) {
                            (Some(w), Some(behind)) => format!(
                                "event-time watermark {} ({} behind now)",
                                w.format("%Y-%m-%d %H:%M:%S UTC"),
                                humantime::format_duration(std::time::Duration::from_secs(
                                    behind.max(0.0) as u64
                                ))
                            ),
                            _ => "no event-time watermark yet".to_string(),
                        }
                    )),
                })
                .collect(),
            legend: vec![("lag".into(), Tone::Pending)],
            unit: Unit::Count,
        })
    }];
    let in_range: i64 = dead.iter().map(|d| d.1).sum();
    let dead_body = vec![
        Block::BigStat(
            Stat::new(
                Unit::Count.full(in_range as f64),
                format!(
                    "in range · {} in total",
                    Unit::Count.full(dead_total as f64)
                ),
            )
            .raw(in_range.to_string()),
        ),
        if dead.is_empty() {
            Block::Empty(None)
        } else {
            Block::Chart(Chart::HBars {
                label: "Dead letters by reason".into(),
                rows: dead
                    .iter()
                    .map(|(k, n)| Row {
                        label: k.clone(),
                        values: vec![*n as f64],
                        note: None,
                    })
                    .collect(),
                legend: vec![("dead letters".into(), Tone::Failed)],
                unit: Unit::Count,
            })
        },
    ];
    Ok(vec![
        panel("ingest-rate", "Ingest rate", Some("now"), rate_body),
        panel(
            "consumer-lag",
            "Consumer lag per partition",
            Some(&format!(
                "messages behind · total {}",
                Unit::Count.full(total_lag as f64)
            )),
            lag_body,
        ),
        panel(
            "dead-letters",
            "Dead letters",
            Some(w.range.label()),
            dead_body,
        ),
    ])
}
