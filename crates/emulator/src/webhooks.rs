//! Webhook delivery (issue 2, must-have 7): every event recorded by a write or a mutation is POSTed
//! to `webhook_url` as Stripe does, by a background task.
//!
//! - Signed as Stripe signs: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!   `t` is the real wall clock (receivers check it against theirs, within 300 s), not the
//!   emulator's anchored clock. The body is the event JSON exactly as `/v1/events` serves it.
//! - Retried on a non-2xx answer or a connection error, with exponential backoff starting at
//!   `webhook_backoff_ms` and doubling, up to `webhook_max_attempts` attempts in all; an event
//!   that exhausts them is counted in `gave_up` (Stripe would keep trying for days).
//! - Not always chronological, as Stripe warns: events waiting together are shuffled (seeded) and
//!   each delivery starts after a small random delay, concurrently with the others. Each event is
//!   delivered until one attempt succeeds, so it is normally received once; a receiver that
//!   answers 2xx too late for the emulator (timeout) can receive it again, as with Stripe.
//!
//! `GET /_emulator/webhooks` serves [`WebhookStats`].

use hmac::{Hmac, Mac};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Counters for `GET /_emulator/webhooks`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    queued: AtomicU64,
    delivered: AtomicU64,
    attempts: AtomicU64,
    failed_attempts: AtomicU64,
    gave_up: AtomicU64,
}

impl WebhookStats {
    /// `{enabled, queued, delivered, pending, attempts, failed_attempts, gave_up}`; `pending` is
    /// queued minus delivered minus given up (events not yet settled).
    pub fn to_json(&self, enabled: bool) -> Value {
        let queued = self.queued.load(Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        let gave_up = self.gave_up.load(Ordering::Relaxed);
        json!({
            "enabled": enabled,
            "queued": queued,
            "delivered": delivered,
            "pending": queued.saturating_sub(delivered + gave_up),
            "attempts": self.attempts.load(Ordering::Relaxed),
            "failed_attempts": self.failed_attempts.load(Ordering::Relaxed),
            "gave_up": gave_up,
        })
    }
}

/// Where and how events are delivered.
#[derive(Clone)]
pub struct WebhookTarget {
    /// The receiver's URL.
    pub url: String,
    /// The endpoint secret (`whsec_…`): the HMAC key.
    secret: String,
    /// Attempts per event, first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles after each failure.
    pub backoff: Duration,
    /// Seed of the shuffling and delays.
    pub seed: u64,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &"whsec_****")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl WebhookTarget {
    /// A target; `secret` is the `whsec_…` endpoint secret.
    pub fn new(
        url: String,
        secret: String,
        max_attempts: u32,
        backoff: Duration,
        seed: u64,
    ) -> Self {
        WebhookTarget {
            url,
            secret,
            max_attempts: max_attempts.max(1),
            backoff,
            seed,
        }
    }
}

/// The `Stripe-Signature` header value for `body` signed at `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// hex(HMAC-SHA256(secret, "<t>.<body>")).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The sending half, held by the app state.
#[derive(Debug)]
pub struct Webhooks {
    tx: mpsc::UnboundedSender<bytes::Bytes>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<bytes::Bytes>>>,
    target: WebhookTarget,
    /// Counters.
    pub stats: Arc<WebhookStats>,
}

impl Webhooks {
    /// A queue for `target`; nothing is sent until [`Webhooks::start`].
    pub fn new(target: WebhookTarget) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Webhooks {
            tx,
            rx: Mutex::new(Some(rx)),
            target,
            stats: Arc::new(WebhookStats::default()),
        }
    }

    /// Queues events (their JSON) for delivery.
    pub fn enqueue(&self, events: Vec<bytes::Bytes>) {
        for e in events {
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            if self.tx.send(e).is_err() {
                self.stats.gave_up.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Spawns the delivery task (once; later calls do nothing). It ends when the queue's sender
    /// is dropped with the app state.
    pub fn start(&self) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut g| g.take()) else {
            return;
        };
        let target = self.target.clone();
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            let mut rng = ChaCha8Rng::seed_from_u64(target.seed ^ 0x5745_4248_4f4f_4b53);
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                batch.shuffle(&mut rng);
                for body in batch {
                    let delay = Duration::from_millis(rng.gen_range(0..30));
                    let client = client.clone();
                    let target = target.clone();
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        deliver(&client, &target, &stats, body).await;
                    });
                }
            }
        });
    }
}

async fn deliver(
    client: &reqwest::Client,
    target: &WebhookTarget,
    stats: &WebhookStats,
    body: bytes::Bytes,
) {
    let mut wait = target.backoff;
    for attempt in 1..=target.max_attempts {
        stats.attempts.fetch_add(1, Ordering::Relaxed);
        let t = chrono::Utc::now().timestamp();
        let sent = client
            .post(&target.url)
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .header("stripe-signature", signature(&target.secret, t, &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => {
                tracing::debug!(
                    status = r.status().as_u16(),
                    attempt,
                    "webhook delivery refused"
                );
            }
            Err(e) => tracing::debug!(error = %e, attempt, "webhook delivery failed"),
        }
        stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if attempt < target.max_attempts {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    stats.gave_up.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_stripes_scheme() {
        // HMAC-SHA256("whsec_test", "1700000000.{}"), computed independently.
        let s = signature("whsec_test", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
