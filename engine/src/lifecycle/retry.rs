//! Delay before the next try: `min(retry_delay * 2^(n-1), max_retry_delay)` with jitter when
//! exponential backoff is on, else `retry_delay` (DESIGN.md).

use std::time::Duration;

use rand::Rng;

use crate::dag::RetryPolicy;

/// Ceiling when exponential backoff is on and no `max_retry_delay` is set (Airflow's: 24 h).
const DEFAULT_MAX: Duration = Duration::from_secs(24 * 3600);

/// Delay after failed try number `try_number` (1-based).
pub fn delay(policy: &RetryPolicy, try_number: u32) -> Duration {
    if !policy.exponential_backoff {
        return policy.retry_delay;
    }
    let cap = policy.max_retry_delay.unwrap_or(DEFAULT_MAX);
    let exp = try_number.saturating_sub(1).min(62);
    let full = policy
        .retry_delay
        .checked_mul(1u32.checked_shl(exp).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    // "Equal jitter": a random point in [full/2, full], so concurrent retries spread out,
    // delays keep growing until the cap, and the cap is never exceeded.
    let half = full / 2;
    let spread = (full - half).as_millis() as u64;
    let jitter = if spread == 0 {
        0
    } else {
        rand::rng().random_range(0..=spread)
    };
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(exp: bool) -> RetryPolicy {
        RetryPolicy {
            retries: 10,
            retry_delay: Duration::from_secs(30),
            exponential_backoff: exp,
            max_retry_delay: Some(Duration::from_secs(600)),
        }
    }

    #[test]
    fn fixed_delay_without_backoff() {
        for n in 1..6 {
            assert_eq!(delay(&policy(false), n), Duration::from_secs(30));
        }
    }

    #[test]
    fn exponential_delays_grow_and_are_capped() {
        let p = policy(true);
        for _ in 0..200 {
            let mut last = Duration::ZERO;
            for n in 1..=12 {
                let d = delay(&p, n);
                let full =
                    Duration::from_secs(30 * (1u64 << (n - 1))).min(Duration::from_secs(600));
                assert!(
                    d >= full / 2 && d <= full,
                    "try {n}: {d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
                assert!(d >= last || n > 5, "try {n}: {d:?} shrank from {last:?}");
                assert!(d <= Duration::from_secs(600));
                last = d;
            }
        }
        // Far past the cap, and with absurd try numbers, still capped and no overflow.
        assert!(delay(&p, 1_000) <= Duration::from_secs(600));
        assert!(delay(&p, u32::MAX) >= Duration::from_secs(300));
    }
}
