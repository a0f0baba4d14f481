//! The delivery loop every scheduler runs: claim due outbox rows (`FOR UPDATE SKIP LOCKED`,
//! so several schedulers share the work), deliver them outside any transaction, record each
//! attempt, and retry failures with exponential backoff until they are delivered or given up.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::send::Sender;
use crate::dag::Notifier;
use crate::store::notifications::{self, Due, NOTIFY_CHANNEL, Outcome};

/// Environment variable: the first retry delay (humantime, default `1s`); each next one
/// doubles, up to [`DeliveryConfig::backoff_max`].
pub const BACKOFF_ENV: &str = "UPIFLOW_NOTIFY_BACKOFF";
/// Environment variable: attempts before giving up (default 100).
pub const MAX_ATTEMPTS_ENV: &str = "UPIFLOW_NOTIFY_MAX_ATTEMPTS";

/// How notifications are delivered and retried.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Delay before the second attempt; doubled for each further one.
    pub backoff_base: Duration,
    /// The longest delay between two attempts.
    pub backoff_max: Duration,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// Age after which a notification is given up whatever its attempts.
    pub give_up_after: Duration,
    /// Rows claimed at once.
    pub batch: i64,
    /// Longest wait between two looks at the outbox when nothing wakes the loop.
    pub poll: Duration,
    /// How long a claim holds a row beyond the notifier's own timeout (a claimer that died
    /// mid-delivery leaves it to others after this).
    pub lease: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_attempts: 100,
            give_up_after: Duration::from_secs(24 * 3600),
            batch: 50,
            poll: Duration::from_secs(5),
            lease: Duration::from_secs(30),
        }
    }
}

impl DeliveryConfig {
    /// The defaults, with [`BACKOFF_ENV`] and [`MAX_ATTEMPTS_ENV`] applied (a bad value is
    /// logged and the default kept).
    pub fn from_env() -> Self {
        let mut cfg = Self::default();
        if let Ok(text) = std::env::var(BACKOFF_ENV) {
            match humantime::parse_duration(text.trim()) {
                Ok(d) if !d.is_zero() => cfg.backoff_base = d,
                _ => {
                    tracing::error!(value = %text, "{BACKOFF_ENV} must be a positive duration such as 1s; using 1s")
                }
            }
        }
        if let Ok(text) = std::env::var(MAX_ATTEMPTS_ENV) {
            match text.trim().parse::<u32>() {
                Ok(n) if n > 0 => cfg.max_attempts = n,
                _ => {
                    tracing::error!(value = %text, "{MAX_ATTEMPTS_ENV} must be a positive whole number; using 100")
                }
            }
        }
        if cfg.backoff_max < cfg.backoff_base {
            cfg.backoff_max = cfg.backoff_base;
        }
        cfg
    }

    /// The delay after failed attempt `attempt` (1-based): base * 2^(attempt-1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// Delivers notifications until `stop`.
pub async fn run(pool: PgPool, cfg: DeliveryConfig, stop: CancellationToken) {
    let wake = Arc::new(Notify::new());
    let relay = tokio::spawn(crate::store::relay(
        pool.clone(),
        NOTIFY_CHANNEL,
        wake.clone(),
        stop.clone(),
    ));
    let sender = Sender::new(pool.clone());
    loop {
        let claimed =
            match notifications::claim_due(&pool, cfg.batch, cfg.lease.as_secs_f64()).await {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "cannot claim notifications; trying again");
                    Vec::new()
                }
            };
        let full = claimed.len() as i64 == cfg.batch;
        if !claimed.is_empty() {
            let all = futures::future::join_all(
                claimed
                    .into_iter()
                    .map(|due| deliver_one(&pool, &sender, &cfg, due)),
            );
            tokio::select! {
                // Undelivered claims become due again when their lease ends.
                _ = stop.cancelled() => break,
                _ = all => {}
            }
        }
        if full {
            continue;
        }
        let wait = match notifications::next_due_in(&pool).await {
            Ok(Some(secs)) => Duration::from_secs_f64(secs.max(0.0)).min(cfg.poll),
            Ok(None) => cfg.poll,
            Err(_) => cfg.poll,
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    let _ = relay.await;
}

/// One attempt at one notification, recorded.
async fn deliver_one(pool: &PgPool, sender: &Sender, cfg: &DeliveryConfig, due: Due) {
    let result = match serde_json::from_value::<Notifier>(due.spec.clone()) {
        Ok(notifier) => sender.send(&notifier, &due.payload).await,
        Err(e) => Err(format!("the stored notifier definition is unreadable: {e}")),
    };
    let attempt = due.attempts.max(1) as u32;
    let (ok, detail, outcome) = match result {
        Ok(detail) => (true, detail, Outcome::Delivered),
        Err(error) => {
            let age = (Utc::now() - due.created_at).to_std().unwrap_or_default();
            let outcome = if attempt >= cfg.max_attempts || age >= cfg.give_up_after {
                Outcome::GaveUp
            } else {
                Outcome::Retry {
                    retry_in_secs: cfg.delay(attempt).as_secs_f64(),
                }
            };
            (false, error, outcome)
        }
    };
    match &outcome {
        Outcome::Delivered => {
            tracing::debug!(id = %due.id, notifier = %due.notifier, attempt, %detail, "notification delivered")
        }
        Outcome::Retry { retry_in_secs } => tracing::warn!(
            id = %due.id, notifier = %due.notifier, attempt, error = %detail,
            retry_in_secs, "notification not delivered; will try again"
        ),
        Outcome::GaveUp => tracing::error!(
            id = %due.id, notifier = %due.notifier, attempt, error = %detail,
            "notification not delivered; giving up"
        ),
    }
    let recorded = crate::transient::retry("record a notification attempt", || {
        notifications::record_attempt(pool, due.id, due.attempts, ok, &detail, &outcome)
    })
    .await;
    if let Err(error) = recorded {
        tracing::warn!(id = %due.id, %error, "could not record a notification attempt; it will be tried again after its lease");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let cfg = DeliveryConfig::default();
        let secs: Vec<u64> = (1..=11).map(|n| cfg.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(cfg.delay(1000).as_secs(), 300);
    }
}
