//! What stands between a client and the `/v1/` handlers: Stripe's rate limits, added latency and
//! injected faults (issue 2, must-have 6). `/_emulator/*` routes never pass through here.
//!
//! - **Rate limits** (`rate_limits`): token buckets, one for the whole account (25 req/s in test
//!   mode, 100 in live mode) and one per endpoint (25 req/s; an endpoint is method + path template,
//!   `GET /v1/invoices/{id}/lines`). A bucket holds half a second of tokens, so short bursts pass
//!   and a sustained excess is refused. A request takes a token from both or from neither; refused
//!   → 429 with Stripe's body, counted in `rate_limited_total`.
//! - **Latency** (`latency_ms` M): every admitted request waits about M ms (lognormal jitter,
//!   clamped to ±30%) on the tokio timer, never blocking a thread.
//! - **Faults** (`fault_rate` F): a fraction F of admitted requests is faulted, counted in
//!   `faults_total`: 500/502/503 with `Stripe-Should-Retry: true`, `false` or absent; a connection
//!   reset (the response body fails before any byte, so the connection is dropped); a truncated
//!   body (`Content-Length` announces more bytes than are sent); or a slow response
//!   (`slow_response_ms`, then the normal answer). A slow response is not a failure, so at
//!   F = 1.0 only real failures are drawn. `fault_kinds` narrows the draw to the listed kinds
//!   (fault-injection suites test one kind at a time), which may include a 429
//!   ([`Fault::RateLimited`]: a storm of rate-limit answers whatever the buckets hold). 5xx and resets are decided before the handler runs (no
//!   side effects); truncation happens after it (a write may have been applied, as on Stripe when
//!   a response is lost).
//!
//! Each decision is a pure function of the seed and a request counter ([`draw`]), so one client's
//! sequential requests see the same faults run after run; concurrent clients share the counter.

use crate::api::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stripe's 429 message.
pub const RATE_LIMIT_MESSAGE: &str =
    "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.";

/// Per-endpoint limit (Stripe's default for an operation).
pub const ENDPOINT_RATE: f64 = 25.0;

/// Seconds of tokens a bucket holds: the burst a client may send at once.
pub const BURST_SECS: f64 = 0.5;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity(rate),
            last: now,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(capacity(rate));
        self.last = now;
    }
}

fn capacity(rate: f64) -> f64 {
    (rate * BURST_SECS).max(1.0)
}

/// The name the platform's own buckets are kept under (connected accounts use their id).
pub const PLATFORM: &str = "";

/// Every account's buckets: per account, one global bucket and one per endpoint.
#[derive(Debug)]
pub struct RateLimiter {
    global_rate: f64,
    /// Keyed by (account, endpoint); the endpoint `""` is the account's global bucket.
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimiter {
    /// Buckets for a mode's global limit (25 req/s test, 100 live) and 25 req/s per endpoint.
    pub fn new(mode: crate::Mode) -> Self {
        RateLimiter {
            global_rate: if mode == crate::Mode::Live {
                100.0
            } else {
                25.0
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `endpoint` (and the global bucket) of the platform; false when either
    /// is empty.
    pub fn admit(&self, endpoint: &str) -> bool {
        self.admit_for(&[PLATFORM], endpoint)
    }

    /// Takes a token from the global and the `endpoint` bucket of every account in `accounts`,
    /// or from none of them when any is empty (false). A request made for a connected account
    /// passes `[PLATFORM, its id]`: see [`crate::connect`] for why both are charged.
    pub fn admit_for(&self, accounts: &[&str], endpoint: &str) -> bool {
        self.refusal_for(accounts, endpoint).is_none()
    }

    /// [`RateLimiter::admit_for`], saying which limit refused: `Some("global-rate")` when an
    /// account's global bucket is empty, else `Some("endpoint-rate")` when an endpoint's
    /// bucket is; `None` when the request is admitted (and its tokens taken). The names are
    /// the values of Stripe's `Stripe-Rate-Limited-Reason` header.
    pub fn refusal_for(&self, accounts: &[&str], endpoint: &str) -> Option<&'static str> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return None;
        };
        let mut keys: Vec<((String, String), f64)> = Vec::with_capacity(accounts.len() * 2);
        for a in accounts {
            keys.push((((*a).to_string(), String::new()), self.global_rate));
            keys.push((((*a).to_string(), endpoint.to_string()), ENDPOINT_RATE));
        }
        let mut refused = None;
        for (key, rate) in &keys {
            let b = buckets
                .entry(key.clone())
                .or_insert_with(|| Bucket::full(*rate, now));
            b.refill(*rate, now);
            if b.tokens < 1.0 {
                let this = if key.1.is_empty() {
                    "global-rate"
                } else {
                    "endpoint-rate"
                };
                if refused != Some("global-rate") {
                    refused = Some(this);
                }
            }
        }
        if refused.is_none() {
            for (key, _) in &keys {
                if let Some(b) = buckets.get_mut(key) {
                    b.tokens -= 1.0;
                }
            }
        }
        refused
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// An HTTP error status with `Stripe-Should-Retry` set to this value, or absent.
    Status(u16, Option<bool>),
    /// The connection is dropped without a complete response.
    Reset,
    /// The body stops short of its announced `Content-Length`.
    Truncated,
    /// The normal answer, after a long wait.
    Slow,
    /// Stripe's 429 `rate_limit` answer, as if the account's limit were exhausted.
    RateLimited,
}

/// What the layer decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Added latency.
    pub latency: Duration,
    /// The fault, if any.
    pub fault: Option<Fault>,
}

/// SplitMix64: a well-mixed 64-bit hash, enough to turn (seed, counter, salt) into uniform draws.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(seed: u64, n: u64, salt: u64) -> f64 {
    let h = mix(seed ^ mix(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The decision for request number `n`: a pure function of the inputs.
pub fn draw(seed: u64, n: u64, latency_ms: u64, fault_rate: f64) -> Decision {
    draw_from(seed, n, latency_ms, fault_rate, &[])
}

/// [`draw`], with the fault picked uniformly among `kinds` (the default mix when empty).
pub fn draw_from(seed: u64, n: u64, latency_ms: u64, fault_rate: f64, kinds: &[Fault]) -> Decision {
    let latency = if latency_ms == 0 {
        Duration::ZERO
    } else {
        // Lognormal around M (σ 0.15), clamped to ±30%: most requests near M, a few slower.
        let u1 = unit(seed, n, 1).max(f64::MIN_POSITIVE);
        let u2 = unit(seed, n, 2);
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let factor = (0.15 * normal).exp().clamp(0.7, 1.3);
        Duration::from_secs_f64(latency_ms as f64 * factor / 1000.0)
    };
    let fault = (unit(seed, n, 3) < fault_rate).then(|| {
        if !kinds.is_empty() {
            let k = (unit(seed, n, 4) * kinds.len() as f64) as usize;
            return kinds[k.min(kinds.len() - 1)];
        }
        // At F = 1.0 every request must fail, so slow responses (not failures) are left out.
        let kinds = if fault_rate >= 1.0 { 9 } else { 10 };
        let k = (unit(seed, n, 4) * kinds as f64) as u64;
        match k {
            0 => Fault::Status(500, None),
            1 => Fault::Status(500, Some(true)),
            2 => Fault::Status(502, None),
            3 => Fault::Status(503, Some(true)),
            4 => Fault::Status(503, Some(false)),
            5 | 6 => Fault::Reset,
            7 | 8 => Fault::Truncated,
            _ => Fault::Slow,
        }
    });
    Decision { latency, fault }
}

/// Counter of `/v1/` requests, for [`draw`].
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// The next request number.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The 429 Stripe answers when a limit is exceeded (the emulator's own buckets add the
/// `Stripe-Rate-Limited-Reason` header naming theirs; an injected 429 storm has none).
pub fn rate_limited() -> Response {
    let body = json!({"error": {
        "code": "rate_limit",
        "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
        "message": RATE_LIMIT_MESSAGE,
        "type": "invalid_request_error",
    }});
    json_error(StatusCode::TOO_MANY_REQUESTS, &body)
}

fn json_error(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn server_error(status: u16, should_retry: Option<bool>) -> Response {
    let body = json!({"error": {
        "message": "An unknown error occurred",
        "type": "api_error",
    }});
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_error(code, &body);
    if let Some(r) = should_retry {
        resp.headers_mut().insert(
            "stripe-should-retry",
            HeaderValue::from_static(if r { "true" } else { "false" }),
        );
    }
    resp
}

/// A response whose body fails at once: hyper drops the connection.
fn reset() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "emulated connection reset",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The same response with only half its body sent under the full `Content-Length`.
async fn truncate(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let full = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let half = full.slice(..full.len() / 2);
    let announced = full.len().max(2);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(announced as u64));
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(half) });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// The `/v1/` middleware: rate limits, then latency, then faults.
pub async fn layer(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let cfg = &state.config;
    let fault_rate = if state.faults_on.load(std::sync::atomic::Ordering::Relaxed) {
        cfg.fault_rate
    } else {
        0.0
    };
    // A request for a connected account is charged to it and to the platform (an unknown
    // account is refused by the handler, after the platform's tokens are taken, as Stripe
    // counts refused requests too).
    let connected = crate::connect::requested_account(req.headers())
        .filter(|id| state.connected.iter().any(|a| a.id == *id))
        .map(str::to_string);
    if connected.is_some() {
        state.stats.add_for_connected_account();
    }
    if !cfg.rate_limits && cfg.latency_ms == 0 && fault_rate <= 0.0 {
        return next.run(req).await;
    }
    let endpoint = crate::api::endpoint_name(req.method().as_str(), req.uri().path());
    let charged: Vec<&str> = match connected.as_deref() {
        Some(id) => vec![PLATFORM, id],
        None => vec![PLATFORM],
    };
    if let Some(reason) = cfg
        .rate_limits
        .then(|| state.limiter.refusal_for(&charged, &endpoint))
        .flatten()
    {
        state.stats.add_rate_limited();
        state.stats.record(&endpoint, 429);
        let mut refused = rate_limited();
        refused.headers_mut().insert(
            "stripe-rate-limited-reason",
            HeaderValue::from_static(reason),
        );
        return refused;
    }
    let n = state.counter.next();
    let d = draw_from(cfg.seed, n, cfg.latency_ms, fault_rate, &cfg.fault_kinds);
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    let Some(fault) = d.fault else {
        return next.run(req).await;
    };
    state.stats.add_fault();
    match fault {
        Fault::Status(code, retry) => {
            state.stats.record(&endpoint, code);
            server_error(code, retry)
        }
        Fault::Reset => {
            // Status 0 in stats: no response reached the client.
            state.stats.record(&endpoint, 0);
            reset()
        }
        Fault::Truncated => truncate(next.run(req).await).await,
        Fault::RateLimited => {
            state.stats.add_rate_limited();
            state.stats.record(&endpoint, 429);
            rate_limited()
        }
        Fault::Slow => {
            tokio::time::sleep(Duration::from_millis(cfg.slow_response_ms)).await;
            next.run(req).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_repeat_and_respect_the_rate() {
        assert_eq!(draw(1, 5, 100, 0.5), draw(1, 5, 100, 0.5));
        let faulted = (0..10_000)
            .filter(|n| draw(9, *n, 0, 0.2).fault.is_some())
            .count();
        assert!((1_700..2_300).contains(&faulted), "{faulted}");
        for n in 0..2_000 {
            let d = draw(3, n, 200, 1.0);
            assert!(!matches!(d.fault, None | Some(Fault::Slow)));
            let ms = d.latency.as_secs_f64() * 1000.0;
            assert!((139.0..=261.0).contains(&ms), "{ms}");
        }
    }

    #[test]
    fn fault_kinds_narrow_the_draw() {
        let kinds = [Fault::Reset, Fault::RateLimited];
        let drawn: Vec<_> = (0..2_000)
            .filter_map(|n| draw_from(4, n, 0, 0.5, &kinds).fault)
            .collect();
        assert!((800..1_200).contains(&drawn.len()), "{}", drawn.len());
        assert!(drawn.iter().all(|f| kinds.contains(f)));
        assert!(drawn.contains(&Fault::Reset) && drawn.contains(&Fault::RateLimited));
        assert_eq!(draw_from(4, 7, 0, 0.5, &[]), draw(4, 7, 0, 0.5));
    }

    #[test]
    fn connected_account_requests_are_charged_to_it_and_to_the_platform() {
        // Live mode: the global bucket (50) outlasts one endpoint's (12.5).
        let l = RateLimiter::new(crate::Mode::Live);
        let e = "GET /v1/customers";
        // Drain the endpoint through requests made for connected account A.
        let first = (0..100)
            .filter(|_| l.admit_for(&[PLATFORM, "acct_a"], e))
            .count();
        assert!((12..=14).contains(&first), "{first}");
        // The platform's own bucket for the endpoint was drained by the same requests.
        assert!(
            !l.admit(e),
            "the platform paid for its connected account's requests"
        );
        // Another connected account is refused too: the platform's bucket is shared.
        assert!(!l.admit_for(&[PLATFORM, "acct_b"], e));
        // A refused request takes nothing: B's own bucket is still full.
        let b_alone = (0..100).filter(|_| l.admit_for(&["acct_b"], e)).count();
        assert!((12..=14).contains(&b_alone), "{b_alone}");
        // Another endpoint of the platform still has tokens (per-endpoint buckets).
        assert!(l.admit("GET /v1/invoices"));
    }

    #[test]
    fn a_refusal_names_the_limit_that_refused() {
        // Live mode: one endpoint (bucket 12.5) runs dry before the account (50).
        let l = RateLimiter::new(crate::Mode::Live);
        let mut refusals = (0..20).filter_map(|_| l.refusal_for(&[PLATFORM], "GET /v1/a"));
        assert_eq!(refusals.next(), Some("endpoint-rate"));
        // Spread over many endpoints, the account's own bucket runs dry first.
        let l = RateLimiter::new(crate::Mode::Live);
        let refused =
            (0..200).find_map(|n| l.refusal_for(&[PLATFORM], &format!("GET /v1/e{}", n % 10)));
        assert_eq!(refused, Some("global-rate"));
    }

    #[test]
    fn buckets_refuse_a_burst_beyond_capacity() {
        let l = RateLimiter::new(crate::Mode::Test);
        let admitted = (0..100).filter(|_| l.admit("GET /v1/customers")).count();
        assert!((12..=14).contains(&admitted), "{admitted}");
    }
}
