//! What the generator sent, from its own deterministic sequence: `Source` replayed for the
//! same seed gives every message's kind and key (event times depend on the clock, kinds
//! and keys do not). Never from the tables under test.

use std::collections::{BTreeMap, HashSet};

use upiflow_tasks::upi::generator::{MessageKind, Source};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub messages: u64,
    /// New payments (PENDING ones included).
    pub valid: u64,
    pub pending: u64,
    /// Second events of PENDING payments.
    pub resolutions: u64,
    pub invalid: u64,
    pub invalid_by_kind: BTreeMap<&'static str, u64>,
    /// Distinct txn_ids among valid messages: the rows clean_upi_transactions must hold.
    pub clean_txns: u64,
}

pub fn replay(seed: u64, days: u32, invalid_fraction: f64, count: u64) -> Sent {
    let now = chrono::Utc::now();
    let mut src = Source::new(seed, days, invalid_fraction);
    let mut s = Sent {
        messages: count,
        ..Sent::default()
    };
    let mut txns = HashSet::new();
    for _ in 0..count {
        let m = src.next(now);
        match m.kind {
            MessageKind::Valid => s.valid += 1,
            MessageKind::Pending => {
                s.valid += 1;
                s.pending += 1;
            }
            MessageKind::Resolution => s.resolutions += 1,
            MessageKind::Invalid(k) => {
                s.invalid += 1;
                *s.invalid_by_kind.entry(k).or_default() += 1;
            }
        }
        if !matches!(m.kind, MessageKind::Invalid(_)) {
            txns.insert(m.key);
        }
    }
    s.clean_txns = txns.len() as u64;
    s
}

/// The figures of `upiflow generate`'s closing line
/// (`sent N messages ...: V valid (P PENDING), R resolutions, I invalid {...}`).
pub fn parse_generate_output(out: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let line = out.lines().find(|l| l.starts_with("sent "))?;
    let num_before = |word: &str| -> Option<u64> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| w.trim_end_matches(',') == word)?;
        words
            .get(i.checked_sub(1)?)?
            .trim_start_matches('(')
            .parse()
            .ok()
    };
    let sent = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        sent,
        num_before("valid")?,
        num_before("PENDING)")?,
        num_before("resolutions")?,
        num_before("invalid")?,
    ))
}

#[test]
fn the_generate_line_parses() {
    let l = "sent 10 messages to `t` in 1.0s (10/s): 7 valid (1 PENDING), 1 resolutions, 2 invalid {\"x\": 2}";
    assert_eq!(parse_generate_output(l), Some((10, 7, 1, 1, 2)));
}
