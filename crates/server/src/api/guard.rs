//! What every `/api` request passes first: authentication (`Authorization: Bearer <token>`,
//! checked by [`cls_control::Store::authenticate_api_token`]) and per-client rate limiting.
//!
//! Rate limits are kept per client: per API key when the request authenticated, else per
//! peer IP address (so a client guessing tokens is limited too). A token this guard has
//! seen authenticate (in the last [`KNOWN_FOR`]) is checked first and counted against its
//! key only, so it never spends (or waits out) its address's allowance: behind a reverse
//! proxy every client shares one address, and one client's bad tokens must not lock the
//! others out. Any other token spends one of its address's requests *before* it is checked,
//! so an address that spent its allowance is answered `429` without a check: a guesser
//! holding a real key's prefix (each wrong secret costs an argon2 verification, tens of
//! milliseconds and ~19 MiB) gets no more verifications than its allowance. A new client
//! behind an address being flooded is served once a request of its gets one of the
//! address's refills. Every answer carries
//! `RateLimit-Limit` (requests per window), `RateLimit-Remaining` and `RateLimit-Reset`
//! (seconds until the full allowance is back), and `RateLimit-Policy`; a `429` adds
//! `Retry-After` (seconds). The peer address comes from axum's `ConnectInfo`, which
//! [`crate::serve`] provides; a server started otherwise limits all unauthenticated clients
//! as one. `X-Forwarded-For` is not trusted: behind a proxy, all unauthenticated traffic
//! shares one allowance.
//!
//! It also counts every API request: `cls_api_requests_total{method, route, status}` and
//! `cls_api_request_duration_seconds{route}`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cls_control::{ApiToken, Store, StoreError};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::envelope::{ApiError, ErrorCode};

/// How many requests a client may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per minute per client, which is also the burst a client may send at once
    /// (the allowance refills evenly over the minute).
    pub per_minute: NonZeroU32,
}

impl Default for RateLimit {
    /// 600 requests a minute: far above what the dashboard or a script needs, low enough
    /// that one runaway client cannot starve the others.
    fn default() -> Self {
        RateLimit {
            per_minute: NonZeroU32::new(600).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// Who a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    /// An authenticated API key.
    Token(i64),
    /// An unauthenticated peer.
    Ip(IpAddr),
    /// An unauthenticated peer whose address is unknown (no `ConnectInfo`).
    Unknown,
}

type KeyedLimiter = RateLimiter<
    ClientKey,
    DefaultKeyedStateStore<ClientKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// Keyed clients beyond which idle ones are forgotten.
const FORGET_IDLE_ABOVE: usize = 10_000;

/// How long a token that authenticated stays known to the guard (it is still checked on
/// every request, revocation included; knowing it only spares its address's allowance).
const KNOWN_FOR: Duration = Duration::from_secs(600);

/// The state of the guard: the store (to authenticate) and the limiter.
pub(crate) struct Guard {
    /// Where tokens are checked.
    store: Arc<dyn Store>,
    /// Per-client allowances.
    limiter: KeyedLimiter,
    /// The configured limit, for `RateLimit-Policy`.
    limit: RateLimit,
    /// Requests counted so far (paces the forgetting of idle clients).
    counted: AtomicU64,
    /// Tokens that authenticated recently, by a keyed hash of their text, and when.
    known: Mutex<HashMap<u64, Instant>>,
    /// The key of that hash (random per process).
    hasher: RandomState,
}

impl Guard {
    /// A guard over `store` allowing `limit` per client.
    pub(crate) fn new(store: Arc<dyn Store>, limit: RateLimit) -> Guard {
        let quota = Quota::per_minute(limit.per_minute);
        Guard {
            store,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            limit,
            counted: AtomicU64::new(0),
            known: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// Whether `token` authenticated here within [`KNOWN_FOR`].
    fn is_known(&self, token: &str) -> bool {
        let mark = self.hasher.hash_one(token);
        let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(&mark).is_some_and(|at| at.elapsed() < KNOWN_FOR)
    }

    /// Remembers that `token` authenticated.
    fn remember(&self, token: &str) {
        let mark = self.hasher.hash_one(token);
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= FORGET_IDLE_ABOVE {
            known.retain(|_, at| at.elapsed() < KNOWN_FOR);
        }
        known.insert(mark, Instant::now());
    }
}

/// The outcome of counting one request.
struct Decision {
    /// The allowance (requests per window).
    limit: u32,
    /// Requests left right now.
    remaining: u32,
    /// Seconds until the allowance is full again (or, when refused, until one request is).
    reset: u64,
    /// Refused: seconds to wait.
    retry_after: Option<u64>,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Guard {
    fn count(&self, key: &ClientKey) -> Decision {
        // Forgetting idle clients walks them all: do it now and then, not on every request.
        let n = self.counted.fetch_add(1, Ordering::Relaxed);
        if n % 1024 == 0 && self.limiter.len() > FORGET_IDLE_ABOVE {
            self.limiter.retain_recent();
        }
        let limit = self.limit.per_minute.get();
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let refill = snapshot.quota().replenish_interval();
                Decision {
                    limit,
                    remaining,
                    reset: ceil_secs(refill.saturating_mul(limit.saturating_sub(remaining))),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait =
                    ceil_secs(not_until.wait_time_from(DefaultClock::default().now())).max(1);
                Decision {
                    limit,
                    remaining: 0,
                    reset: wait,
                    retry_after: Some(wait),
                }
            }
        }
    }
}

/// The bearer token of a request, or why there is none.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "this API needs an API key: send `Authorization: Bearer <token>` (create a key with `cls admin create-api-key` or POST /api/api-keys)",
            false,
        ));
    };
    let malformed = || {
        ApiError::unauthorized(
            "the Authorization header is not `Bearer <token>`: send the API key as `Authorization: Bearer <token>`",
            true,
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(token)
}

/// The API key a request carries ([`bearer`]), checked against the store.
async fn authenticate(
    store: &dyn Store,
    presented: Result<&str, ApiError>,
) -> Result<ApiToken, ApiError> {
    let token = presented?;
    match store.authenticate_api_token(token).await {
        Ok(t) => Ok(t),
        Err(StoreError::Unauthorized { reason }) => Err(ApiError::unauthorized(reason, true)),
        Err(e) => Err(e.into()),
    }
}

/// The middleware: authenticate, count, answer `429`/`401` or pass the request on (with the
/// [`ApiToken`] in its extensions), and put the rate-limit headers on the answer.
///
/// A token seen to authenticate is checked and counted against its key only. Any other
/// request spends one of its peer address's requests first, and once that allowance is
/// spent is answered `429` unchecked until it refills (module doc).
pub(crate) async fn guard(
    State(guard): State<Arc<Guard>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    // The route template (`/api/runs/{id}`): one series per route, not per id.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(ClientKey::Unknown, |c| ClientKey::Ip(c.0.ip()));
    let presented = bearer(req.headers());
    let token = presented.as_ref().ok().copied();
    let known = token.is_some_and(|t| guard.is_known(t));
    // An unknown token spends one of its address's requests before it is checked.
    let spent = (!known).then(|| guard.count(&peer));
    if let Some(refused) = spent.as_ref().filter(|d| d.retry_after.is_some()) {
        let response = rate_limited(refused);
        return finish(&guard, response, refused, method, route, started);
    }
    let auth = authenticate(guard.store.as_ref(), presented).await;
    let decision = match (&auth, spent) {
        (Ok(found), _) => {
            if let Some(t) = token {
                guard.remember(t);
            }
            guard.count(&ClientKey::Token(found.id.0))
        }
        (Err(_), Some(spent)) => spent,
        // A known token that no longer authenticates (revoked meanwhile).
        (Err(_), None) => guard.count(&peer),
    };
    let response = match (decision.retry_after, auth) {
        (Some(_), _) => rate_limited(&decision),
        (None, Err(e)) => e.into_response(),
        (None, Ok(token)) => {
            req.extensions_mut().insert(token);
            next.run(req).await
        }
    };
    finish(&guard, response, &decision, method, route, started)
}

/// The `429` answer.
fn rate_limited(decision: &Decision) -> Response {
    let wait = decision.retry_after.unwrap_or(1);
    ApiError::new(
        ErrorCode::RateLimited,
        format!(
            "too many requests: this client may make {} a minute; retry in {wait} s",
            decision.limit
        ),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(wait))
    .into_response()
}

/// Puts the rate-limit headers on an answer and counts it.
fn finish(
    guard: &Guard,
    mut response: Response,
    decision: &Decision,
    method: String,
    route: String,
    started: Instant,
) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: HeaderValue| {
        headers.insert(HeaderName::from_static(name), value);
    };
    set(
        headers,
        "ratelimit-limit",
        HeaderValue::from(decision.limit),
    );
    set(
        headers,
        "ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    set(
        headers,
        "ratelimit-reset",
        HeaderValue::from(decision.reset),
    );
    if let Ok(policy) = HeaderValue::from_str(&format!("{};w=60", guard.limit.per_minute)) {
        set(headers, "ratelimit-policy", policy);
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!("cls_api_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cls_api_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            if let Ok(v) = HeaderValue::from_str(a) {
                h.insert(header::AUTHORIZATION, v);
            }
        }
        h
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(
            bearer(&headers(Some("Bearer cls_abc"))).ok(),
            Some("cls_abc")
        );
        assert_eq!(
            bearer(&headers(Some("bearer  cls_abc "))).ok(),
            Some("cls_abc")
        );
        for bad in [
            None,
            Some("Basic dXNlcjpwYXNz"),
            Some("Bearer "),
            Some("cls_abc"),
        ] {
            let e = bearer(&headers(bad)).err();
            assert_eq!(e.map(|e| e.code), Some(ErrorCode::Unauthorized), "{bad:?}");
        }
    }
}
