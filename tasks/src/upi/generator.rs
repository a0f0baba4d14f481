//! `upiflow generate`: realistic synthetic UPI payments on the Kafka topic, deterministic for
//! a seed: unique txn_ids, payers across the big banks' handles, 100 merchants, PENDING
//! transactions resolved by a later second event, and (on request) every kind of bad event.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::event::Event;

/// The payer handles' banks (the part after `@`).
pub const BANKS: [&str; 5] = ["oksbi", "okhdfcbank", "ybl", "okaxis", "upi"];
/// Kinds of bad event `--invalid-fraction` mixes in, in turn.
pub const INVALID_KINDS: [&str; 6] = [
    "broken_json",
    "missing_field",
    "amount_not_positive",
    "amount_too_large",
    "unknown_status",
    "bad_timestamp",
];
const MERCHANTS: u32 = 100;
const PAYERS: u32 = 5_000;
const IN_FLIGHT: usize = 20_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub bootstrap_servers: String,
    pub topic: String,
    /// Messages to send, resolutions and bad events included.
    pub count: u64,
    /// Messages per second; `None` is as fast as the broker takes them.
    pub rate: Option<f64>,
    pub invalid_fraction: f64,
    /// Spread event times over the past N days; 0 stamps events with the time they are sent.
    pub days: u32,
    pub seed: u64,
    pub progress: bool,
}

/// What was sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sent: u64,
    pub valid: u64,
    pub pending: u64,
    pub resolutions: u64,
    pub invalid: BTreeMap<&'static str, u64>,
}

/// Builds a producer tuned for throughput (batches, lz4) that still waits for the broker's ack.
pub fn producer(bootstrap: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .context("cannot create the Kafka producer")
}

/// The message sequence for a seed, one message at a time.
pub struct Source {
    rng: StdRng,
    seed: u64,
    next_id: u64,
    days: u32,
    invalid_fraction: f64,
    invalid_turn: usize,
    /// PENDING transactions waiting for their second event: (due after n messages, event).
    resolutions: VecDeque<(u64, Event)>,
    produced: u64,
}

/// One message: its key, its payload, and what it is.
pub struct Message {
    pub key: String,
    pub payload: Vec<u8>,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Valid,
    Pending,
    Resolution,
    Invalid(&'static str),
}

impl Source {
    pub fn new(seed: u64, days: u32, invalid_fraction: f64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            seed,
            next_id: 0,
            days,
            invalid_fraction: invalid_fraction.clamp(0.0, 1.0),
            invalid_turn: 0,
            resolutions: VecDeque::new(),
            produced: 0,
        }
    }

    fn time(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.days == 0 {
            return now;
        }
        let span = self.days as i64 * 86_400_000;
        now - chrono::Duration::milliseconds(self.rng.random_range(0..span))
    }

    fn new_event(&mut self, now: DateTime<Utc>) -> Event {
        let n = self.next_id;
        self.next_id += 1;
        let bank = BANKS[self.rng.random_range(0..BANKS.len())];
        // Most payments are small; a few are large.
        let amount = if self.rng.random_bool(0.97) {
            self.rng.random_range(1.0..5_000.0)
        } else {
            self.rng.random_range(5_000.0..100_000.0)
        };
        let roll: f64 = self.rng.random();
        let status = if roll < 0.85 {
            "SUCCESS"
        } else if roll < 0.95 {
            "FAILED"
        } else {
            "PENDING"
        };
        Event {
            txn_id: format!("txn-{:x}-{n:010}", self.seed),
            payer: format!("user{}@{bank}", self.rng.random_range(1..=PAYERS)),
            payee: format!("merchant{}@upi", self.rng.random_range(1..=MERCHANTS)),
            amount: (amount * 100.0f64).round() / 100.0,
            status: status.to_string(),
            timestamp: self
                .time(now)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// The next message (times are relative to `now` for live feeds).
    pub fn next(&mut self, now: DateTime<Utc>) -> Message {
        self.produced += 1;
        if let Some((due, _)) = self.resolutions.front()
            && *due <= self.produced
        {
            let (_, e) = self.resolutions.pop_front().expect("front exists");
            return Message {
                key: e.txn_id.clone(),
                payload: serde_json::to_vec(&e).expect("events serialise"),
                kind: MessageKind::Resolution,
            };
        }
        if self.invalid_fraction > 0.0 && self.rng.random_bool(self.invalid_fraction) {
            let kind = INVALID_KINDS[self.invalid_turn % INVALID_KINDS.len()];
            self.invalid_turn += 1;
            let e = self.new_event(now);
            let mut v = serde_json::to_value(&e).expect("events serialise");
            let payload = match kind {
                "broken_json" => {
                    let s = v.to_string();
                    s[..s.len() / 2].to_string()
                }
                "missing_field" => {
                    let field = ["txn_id", "payer", "payee", "amount", "status", "timestamp"]
                        [self.invalid_turn % 6];
                    v.as_object_mut().expect("object").remove(field);
                    v.to_string()
                }
                "amount_not_positive" => {
                    v["amount"] = serde_json::json!(-(self.rng.random_range(0..1000) as f64));
                    v.to_string()
                }
                "amount_too_large" => {
                    v["amount"] = serde_json::json!(100_000.01 + self.rng.random_range(0.0..1e6));
                    v.to_string()
                }
                "unknown_status" => {
                    v["status"] = serde_json::json!("REVERSED");
                    v.to_string()
                }
                _ => {
                    v["timestamp"] = serde_json::json!("31/02/2024 25:61");
                    v.to_string()
                }
            };
            return Message {
                key: e.txn_id,
                payload: payload.into_bytes(),
                kind: MessageKind::Invalid(kind),
            };
        }
        let e = self.new_event(now);
        let kind = if e.status == "PENDING" {
            let mut second = e.clone();
            second.status = if self.rng.random_bool(0.8) {
                "SUCCESS"
            } else {
                "FAILED"
            }
            .to_string();
            let t = super::event::parse_timestamp(&e.timestamp).expect("we wrote it");
            let later = t + chrono::Duration::seconds(self.rng.random_range(5..600));
            second.timestamp = later
                .min(Utc::now().max(t))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let due = self.produced + self.rng.random_range(1..500);
            let pos = self.resolutions.partition_point(|(d, _)| *d <= due);
            self.resolutions.insert(pos, (due, second));
            MessageKind::Pending
        } else {
            MessageKind::Valid
        };
        Message {
            key: e.txn_id.clone(),
            payload: serde_json::to_vec(&e).expect("events serialise"),
            kind,
        }
    }
}

/// Sends `opts.count` messages and says what was sent.
pub async fn generate(opts: &Options) -> Result<Summary> {
    let producer = producer(&opts.bootstrap_servers)?;
    let mut source = Source::new(opts.seed, opts.days, opts.invalid_fraction);
    let mut summary = Summary::default();
    let bar = if opts.progress {
        indicatif::ProgressBar::new(opts.count)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for i in 0..opts.count {
        if let Some(rate) = opts.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let msg = source.next(Utc::now());
        match msg.kind {
            MessageKind::Valid => summary.valid += 1,
            MessageKind::Pending => {
                summary.valid += 1;
                summary.pending += 1
            }
            MessageKind::Resolution => summary.resolutions += 1,
            MessageKind::Invalid(k) => *summary.invalid.entry(k).or_default() += 1,
        }
        loop {
            let record = FutureRecord::to(&opts.topic)
                .key(&msg.key)
                .payload(&msg.payload);
            match producer.send_result(record) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // The local queue is full: wait for some deliveries, then try again.
                    if let Some(r) = in_flight.next().await {
                        check_delivery(r)?;
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Err((e, _)) => return Err(e).context("cannot queue a message for Kafka"),
            }
        }
        while in_flight.len() >= IN_FLIGHT {
            check_delivery(in_flight.next().await.expect("not empty"))?;
        }
        summary.sent += 1;
        if i % 1024 == 0 {
            bar.set_position(i);
        }
    }
    while let Some(r) = in_flight.next().await {
        check_delivery(r)?;
    }
    producer
        .flush(Duration::from_secs(30))
        .context("cannot flush the producer")?;
    bar.finish_and_clear();
    Ok(summary)
}

fn check_delivery(
    r: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<()> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e).context("Kafka did not accept a message"),
        Err(_) => anyhow::bail!("the producer went away before confirming a message"),
    }
}

/// Sends the given (key, payload) messages and waits for every acknowledgement (tests and
/// tools that need exact messages).
pub async fn send(bootstrap: &str, topic: &str, messages: &[(String, Vec<u8>)]) -> Result<()> {
    let producer = producer(bootstrap)?;
    let mut in_flight = FuturesUnordered::new();
    for (key, payload) in messages {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        in_flight.push(producer.send(record, Duration::from_secs(30)));
    }
    while let Some(r) = in_flight.next().await {
        r.map_err(|(e, _)| e)
            .context("Kafka did not accept a message")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upi::event::{Verdict, validate};

    #[test]
    fn a_seed_always_gives_the_same_messages() {
        let now = Utc::now();
        let mut a = Source::new(7, 3, 0.1);
        let mut b = Source::new(7, 3, 0.1);
        for _ in 0..2_000 {
            let (x, y) = (a.next(now), b.next(now));
            assert_eq!((x.key, x.kind), (y.key, y.kind));
        }
    }

    #[test]
    fn kinds_validate_as_labelled_and_pending_ones_get_resolved() {
        let now = Utc::now();
        let mut s = Source::new(1, 7, 0.2);
        let mut pending = std::collections::HashSet::new();
        let mut resolved = 0;
        let mut invalid_kinds = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let m = s.next(now);
            let verdict = validate(Some(&m.payload));
            match m.kind {
                MessageKind::Invalid(k) => {
                    assert!(matches!(verdict, Verdict::Invalid { .. }), "{k} validated");
                    invalid_kinds.insert(k);
                }
                MessageKind::Pending => {
                    assert!(matches!(verdict, Verdict::Valid(_)));
                    pending.insert(m.key);
                }
                MessageKind::Resolution => {
                    let Verdict::Valid(c) = verdict else {
                        panic!("resolution invalid")
                    };
                    assert!(pending.contains(&c.txn_id));
                    assert_ne!(c.status, "PENDING");
                    resolved += 1;
                }
                MessageKind::Valid => assert!(matches!(verdict, Verdict::Valid(_))),
            }
        }
        assert_eq!(invalid_kinds.len(), INVALID_KINDS.len());
        assert!(resolved > 0 && resolved <= pending.len());
    }
}
