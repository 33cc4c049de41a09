//! The rate budget: one per client, shared by its clones and every concurrent request.
//!
//! Stripe limits each account globally (25 req/s in test mode, 100 in live mode) and per
//! endpoint (25 req/s; 20 for search and files). The budget is *proactive*: every attempt takes
//! a cell from its endpoint's limiter and from the global one (GCRA, via `governor`) before it is
//! sent, so the normal case never sees a 429. It is *adaptive* when 429s still come (another
//! integration shares the account, or Stripe lowered a limit): the endpoint that got one pauses
//! (for `Retry-After`, or a second so Stripe's per-second buckets refill) and then runs at half
//! rate for a while; when 429s arrive from several endpoints at once the global rate halves too.
//!
//! Words used here:
//! - *endpoint*: a request path with its id segments replaced by `{id}`
//!   (`/v1/invoices/in_123/lines` → `/v1/invoices/{id}/lines`), as Stripe counts them.
//! - *gate*: one limiter plus its adaptive state and a FIFO queue.
//!
//! *Sharing* ([`RateBudget::set_share`]): when several runs — in this process or in other
//! processes — sync the same Stripe account, each run's client is told how many runs share the
//! account, and both its global and its per-endpoint rates become the configured rates divided
//! by that number (at least 1 req/s). The limiters are replaced, not adjusted: a new share
//! starts from an empty history, with at most one burst more on the wire.
//!
//! Waiting is fair and not busy: each gate has a `tokio::sync::Mutex` (first come, first
//! served), so among dozens of tasks only the head of each queue sleeps on the limiter; the rest
//! wait on the mutex without polling.
//!
//! Order of waiting: endpoint queue → endpoint pause → global queue, pause and cell → endpoint
//! cell → send. Taking the endpoint cell last, with the endpoint queue still held, means sends
//! on one endpoint happen exactly at its cell times, so the per-endpoint bound is exact. The
//! global bound can be exceeded by at most one request per endpoint whose endpoint cell was not
//! yet due (its send trails its global cell by less than one endpoint interval).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::retry::LimitedBy;
use tokio::sync::Mutex as FairMutex;
use tokio::time::Instant;

/// Stripe's documented limit for the Search and Files APIs (read requests per second).
const SEARCH_AND_FILES_RPS: u32 = 20;

/// The endpoint of a request path: id segments become `{id}`; the query is not part of it.
///
/// A segment is an id when it contains a digit or an uppercase letter (Stripe's path words are
/// lowercase letters and `_`; ids are `prefix_` + base62, which almost always has one of the
/// two), except the API version segment (`v1`, `v2`).
pub fn normalize_endpoint(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let is_version = i == 1 && is_version_segment(segment);
        let is_id = segment
            .chars()
            .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
        if is_id && !is_version {
            out.push_str("{id}");
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// The key of the gate an attempt waits at: a request on `path` made for `stripe_account`
/// (the `Stripe-Account` header; `None` for the key's own account).
///
/// Connect. Stripe documents its rate limits per account ("rate limits are measured in API
/// requests per second, per Stripe account", <https://docs.stripe.com/rate-limits>), and
/// gives requests made for connected accounts their own *monthly read allocation* (the same
/// page, "API read request allocations": a platform's reads on behalf of its connected
/// accounts draw on an allocation of 500 per transaction across those accounts over a
/// rolling 30 days, at least 10,000 a month, apart from each account's own). It does not say
/// which account's *per-second* limits a `Stripe-Account` request counts against (its only
/// Connect remark there: calls on a connected account to the Meter events endpoint count
/// toward the basic limit). We take the conservative reading: they count against the
/// platform's. So the connected account is deliberately *not* part of the key: the platform
/// and every connected account it reaches share one global gate and one gate per endpoint
/// (every clone of a client, `with_account` included, shares one budget), and syncing N
/// connected accounts never sends more than the platform's own limits allow. Whatever Stripe
/// does, that stays within every reading (the connected account's own limits are the same
/// figures and are never exceeded either). The emulator charges such a request to both
/// accounts, the strictest reading on its side. What a run drew from the monthly allocation
/// is reported (`cls_engine::ConnectReport::connected_account_requests`).
pub fn gate_key(stripe_account: Option<&str>, path: &str) -> String {
    let _shared_with_the_platform = stripe_account;
    normalize_endpoint(path)
}

fn is_version_segment(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The per-endpoint rate for an endpoint, given the configured default.
pub fn endpoint_rps(endpoint: &str, configured: u32) -> u32 {
    let limited = endpoint.ends_with("/search")
        || endpoint.starts_with("/v1/files")
        || endpoint.starts_with("/v1/file_links");
    if limited {
        configured.min(SEARCH_AND_FILES_RPS)
    } else {
        configured
    }
}

/// Burst allowed on top of a steady rate: a fifth of a second's worth (at least one).
///
/// Small on purpose: Stripe counts requests in short windows, and a full second's burst on top
/// of the steady rate could double the count in the first second of a sync.
pub fn burst_for(rps: u32) -> u32 {
    (rps / 5).max(1)
}

/// Tuning of the adaptive part (fixed in production, shortened in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptation {
    /// How long an endpoint pauses after a 429 without a usable `Retry-After`.
    pub pause: Duration,
    /// How long an endpoint (or the global budget) runs at half rate after a 429.
    pub slow_for: Duration,
    /// 429s on two different endpoints within this time slow the global budget too.
    pub spread_window: Duration,
}

impl Default for Adaptation {
    fn default() -> Self {
        Adaptation {
            pause: Duration::from_secs(1),
            slow_for: Duration::from_secs(10),
            spread_window: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Default)]
struct AdaptiveState {
    paused_until: Option<Instant>,
    slow_until: Option<Instant>,
}

/// A limiter with its FIFO queue and adaptive state.
struct Gate {
    /// The rate before sharing.
    rps: u32,
    /// Replaced when the share changes; a request holds the one it started waiting on.
    limiter: StdMutex<Arc<DefaultDirectRateLimiter>>,
    queue: FairMutex<()>,
    state: StdMutex<AdaptiveState>,
}

/// Whether a new limiter may spend its burst at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    Available,
    Spent,
}

/// A GCRA limiter at `rps / share` requests per second (at least 1).
fn limiter(rps: u32, share: u32, burst: Burst) -> Arc<DefaultDirectRateLimiter> {
    let rps = NonZeroU32::new(rps / share.max(1)).unwrap_or(NonZeroU32::MIN);
    let cells = NonZeroU32::new(burst_for(rps.get())).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(rps).allow_burst(cells));
    if burst == Burst::Spent {
        // Cannot fail: a new limiter holds exactly its burst.
        let _ = limiter.check_n(cells);
    }
    Arc::new(limiter)
}

impl Gate {
    fn new(rps: u32, share: u32) -> Gate {
        Gate {
            rps,
            limiter: StdMutex::new(limiter(rps, share, Burst::Available)),
            queue: FairMutex::new(()),
            state: StdMutex::new(AdaptiveState::default()),
        }
    }

    /// Runs at `rps / share` from now on. The new limiter starts with its burst spent: the
    /// old one may have just spent its own, and a share changes while requests are flowing,
    /// so a fresh burst would add up to a second's worth of requests above the account's rate.
    fn reshare(&self, share: u32) {
        *self.limiter.lock().unwrap_or_else(PoisonError::into_inner) =
            limiter(self.rps, share, Burst::Spent);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AdaptiveState> {
        // The state is two timestamps, valid whatever a panicking holder left behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps while the gate is paused (the pause may be extended while sleeping).
    async fn wait_pause(&self) {
        loop {
            let until = self.state().paused_until;
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Takes one cell, or two while slowed down (which halves the rate).
    async fn take(&self) {
        let slow = self
            .state()
            .slow_until
            .is_some_and(|until| until > Instant::now());
        let cells = if slow { 2 } else { 1 };
        let limiter = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for _ in 0..cells {
            limiter.until_ready().await;
        }
    }

    fn pause(&self, until: Instant) {
        let mut state = self.state();
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
    }

    fn slow(&self, until: Instant) {
        let mut state = self.state();
        state.slow_until = Some(state.slow_until.map_or(until, |s| s.max(until)));
    }
}

/// One rate budget: a global gate and one gate per endpoint.
pub(crate) struct RateBudget {
    global: Gate,
    per_endpoint_rps: u32,
    endpoints: StdMutex<HashMap<String, Arc<Gate>>>,
    adaptation: Adaptation,
    last_429: StdMutex<Option<(Instant, String)>>,
    /// How many runs share the account's budget (1: this client has all of it).
    share: AtomicU32,
}

impl RateBudget {
    pub(crate) fn new(global_rps: u32, per_endpoint_rps: u32, adaptation: Adaptation) -> Self {
        RateBudget {
            global: Gate::new(global_rps, 1),
            per_endpoint_rps,
            endpoints: StdMutex::new(HashMap::new()),
            adaptation,
            last_429: StdMutex::new(None),
            share: AtomicU32::new(1),
        }
    }

    /// How many runs share the account's budget.
    pub(crate) fn share(&self) -> u32 {
        self.share.load(Ordering::Relaxed)
    }

    /// From now on, this budget is one of `share` equal parts of the account's: every rate
    /// (global and per endpoint) is divided by `share`, and at least 1 req/s. Does nothing
    /// when the share is unchanged.
    pub(crate) fn set_share(&self, share: NonZeroU32) {
        let share = share.get();
        // The endpoints' lock is held while swapping, so a gate created meanwhile reads the
        // new share.
        let endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.share.swap(share, Ordering::Relaxed) == share {
            return;
        }
        self.global.reshare(share);
        for gate in endpoints.values() {
            gate.reshare(share);
        }
    }

    fn gate(&self, endpoint: &str) -> Arc<Gate> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        endpoints
            .entry(endpoint.to_string())
            .or_insert_with(|| {
                Arc::new(Gate::new(
                    endpoint_rps(endpoint, self.per_endpoint_rps),
                    self.share(),
                ))
            })
            .clone()
    }

    /// Waits until one request to `endpoint` may be sent now.
    pub(crate) async fn acquire(&self, endpoint: &str) {
        let gate = self.gate(endpoint);
        let _endpoint_turn = gate.queue.lock().await;
        gate.wait_pause().await;
        {
            let _global_turn = self.global.queue.lock().await;
            self.global.wait_pause().await;
            self.global.take().await;
        }
        gate.take().await;
    }

    /// Records a 429 on `endpoint`. `code` is Stripe's error code: `lock_timeout` means
    /// contention on one object, not a rate, and changes nothing here. `limited_by` is the
    /// limiter Stripe names: the account's pauses and slows every endpoint, an endpoint's only
    /// that endpoint; when Stripe does not say, 429s on several endpoints at once are taken
    /// for the account's limit.
    pub(crate) fn on_rate_limited(
        &self,
        endpoint: &str,
        retry_after: Option<Duration>,
        code: Option<&str>,
        limited_by: Option<LimitedBy>,
    ) {
        if code == Some("lock_timeout") {
            return;
        }
        let now = Instant::now();
        let pause = now + retry_after.unwrap_or(self.adaptation.pause);
        if limited_by == Some(LimitedBy::Account) {
            self.global.pause(pause);
            self.global.slow(now + self.adaptation.slow_for);
            return;
        }
        let gate = self.gate(endpoint);
        gate.pause(pause);
        gate.slow(now + self.adaptation.slow_for);
        if limited_by == Some(LimitedBy::Endpoint) {
            return;
        }

        let mut last = self.last_429.lock().unwrap_or_else(PoisonError::into_inner);
        let spread = last.as_ref().is_some_and(|(at, other)| {
            other != endpoint && now.duration_since(*at) <= self.adaptation.spread_window
        });
        if spread {
            // Several endpoints limited at once points at the account-wide limit.
            self.global.slow(now + self.adaptation.slow_for);
        }
        *last = Some((now, endpoint.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_id_segments() {
        let cases = [
            ("/v1/customers", "/v1/customers"),
            ("/v1/invoices/in_123/lines", "/v1/invoices/{id}/lines"),
            ("/v1/customers/cus_9s6XKzkNRiz8i3", "/v1/customers/{id}"),
            (
                "/v1/customers/cus_ABCDEFGHIJKLmn/payment_methods",
                "/v1/customers/{id}/payment_methods",
            ),
            (
                "/v1/checkout/sessions/cs_test_a1/line_items",
                "/v1/checkout/sessions/{id}/line_items",
            ),
            (
                "/v1/radar/early_fraud_warnings",
                "/v1/radar/early_fraud_warnings",
            ),
            ("/v1/customers?limit=100", "/v1/customers"),
            ("/v2/core/events", "/v2/core/events"),
            ("/v1/customers/search", "/v1/customers/search"),
            ("/v1/account", "/v1/account"),
        ];
        for (path, endpoint) in cases {
            assert_eq!(normalize_endpoint(path), endpoint, "{path}");
        }
    }

    #[test]
    fn connected_accounts_share_the_platforms_gates() {
        let platform = gate_key(None, "/v1/customers");
        assert_eq!(platform, "/v1/customers");
        assert_eq!(gate_key(Some("acct_1A"), "/v1/customers"), platform);
        assert_eq!(gate_key(Some("acct_2B"), "/v1/customers"), platform);
        assert_eq!(
            gate_key(Some("acct_1A"), "/v1/invoices/in_1/lines"),
            gate_key(None, "/v1/invoices/in_2/lines")
        );
        assert_ne!(gate_key(Some("acct_1A"), "/v1/invoices"), platform);
    }

    /// Requests for two connected accounts and the platform itself, on one endpoint, are paced
    /// as one stream: 20 req/s in all, not 20 req/s each.
    #[tokio::test]
    async fn requests_for_connected_accounts_wait_at_the_platforms_rate() {
        let budget = RateBudget::new(1000, 20, quick());
        let accounts = [None, Some("acct_1A"), Some("acct_2B")];
        let started = std::time::Instant::now();
        // A burst of 4 (a fifth of 20), then one cell every 50 ms: 12 requests ≥ 400 ms.
        for i in 0..12 {
            budget
                .acquire(&gate_key(accounts[i % 3], "/v1/customers"))
                .await;
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(380),
            "12 requests at 20 req/s take 0.4 s whoever they are for: {waited:?}"
        );
    }

    #[test]
    fn search_and_files_have_their_own_lower_limit() {
        assert_eq!(endpoint_rps("/v1/customers/search", 25), 20);
        assert_eq!(endpoint_rps("/v1/files", 25), 20);
        assert_eq!(endpoint_rps("/v1/customers", 25), 25);
        assert_eq!(endpoint_rps("/v1/customers/search", 5), 5);
    }

    #[test]
    fn burst_is_a_fifth_of_the_rate() {
        assert_eq!(burst_for(25), 5);
        assert_eq!(burst_for(100), 20);
        assert_eq!(burst_for(1), 1);
        assert_eq!(burst_for(0), 1);
    }

    fn quick() -> Adaptation {
        Adaptation {
            pause: Duration::from_millis(300),
            slow_for: Duration::from_secs(5),
            spread_window: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_429_pauses_only_its_endpoint() {
        let budget = RateBudget::new(1000, 1000, quick());
        budget.acquire("/v1/customers").await;
        budget.on_rate_limited("/v1/customers", None, Some("rate_limit"), None);

        let started = std::time::Instant::now();
        budget.acquire("/v1/products").await;
        assert!(started.elapsed() < Duration::from_millis(200));

        budget.acquire("/v1/customers").await;
        assert!(
            started.elapsed() >= Duration::from_millis(280),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn retry_after_sets_the_pause_and_lock_timeouts_change_nothing() {
        let budget = RateBudget::new(1000, 1000, quick());
        budget.on_rate_limited("/v1/charges", Some(Duration::from_millis(50)), None, None);
        budget.on_rate_limited("/v1/refunds", None, Some("lock_timeout"), None);
        let started = std::time::Instant::now();
        budget.acquire("/v1/refunds").await;
        assert!(started.elapsed() < Duration::from_millis(40));
        budget.acquire("/v1/charges").await;
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(started.elapsed() < Duration::from_millis(280));
    }

    #[tokio::test]
    async fn after_a_429_the_endpoint_runs_at_half_rate() {
        // 10 req/s, burst 2: after the burst, 6 requests take ~0.6 s normally and ~1.2 s slowed.
        let budget = RateBudget::new(
            1000,
            10,
            Adaptation {
                pause: Duration::ZERO,
                ..quick()
            },
        );
        for _ in 0..2 {
            budget.acquire("/v1/prices").await;
        }
        budget.on_rate_limited("/v1/prices", Some(Duration::ZERO), Some("rate_limit"), None);
        let started = std::time::Instant::now();
        for _ in 0..6 {
            budget.acquire("/v1/prices").await;
        }
        assert!(
            started.elapsed() >= Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }

    /// Requests sent in `window` by one task asking as fast as it can.
    async fn sent_in(budget: &RateBudget, endpoint: &str, window: Duration) -> u32 {
        let started = std::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < window {
            budget.acquire(endpoint).await;
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn a_share_divides_the_global_and_endpoint_rates_and_can_change_at_run_time() {
        let second = Duration::from_secs(1);
        // Global 40 req/s (burst 8): alone, ~48 in a second.
        let budget = RateBudget::new(40, 1000, quick());
        let alone = sent_in(&budget, "/v1/customers", second).await;
        assert!((40..=50).contains(&alone), "alone: {alone}");
        // Four runs share the account: 10 req/s (burst 2), ~12 in a second.
        budget.set_share(NonZeroU32::new(4).unwrap_or(NonZeroU32::MIN));
        assert_eq!(budget.share(), 4);
        let quarter = sent_in(&budget, "/v1/customers", second).await;
        assert!((9..=14).contains(&quarter), "a quarter: {quarter}");
        // Back to the whole budget.
        budget.set_share(NonZeroU32::MIN);
        let whole = sent_in(&budget, "/v1/customers", second).await;
        assert!((40..=50).contains(&whole), "whole again: {whole}");

        // The per-endpoint rate is shared too, for gates made before and after the change.
        let budget = RateBudget::new(1000, 20, quick());
        budget.acquire("/v1/prices").await;
        budget.set_share(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        let old_gate = sent_in(&budget, "/v1/prices", second).await;
        let new_gate = sent_in(&budget, "/v1/products", second).await;
        assert!(
            (9..=13).contains(&old_gate),
            "existing endpoint: {old_gate}"
        );
        assert!((9..=13).contains(&new_gate), "new endpoint: {new_gate}");
    }

    #[tokio::test]
    async fn a_share_change_does_not_open_a_fresh_burst() {
        // 100 req/s (burst 20), its burst spent: a run going at the account's rate.
        let budget = RateBudget::new(100, 1000, quick());
        let spent = sent_in(&budget, "/v1/customers", Duration::from_millis(250)).await;
        assert!(spent >= 20, "the burst and then some: {spent}");
        // Another run of the account starts: 50 req/s from now on, and no burst on top —
        // a fresh burst of 10 would put ~15 requests into the next 100 ms instead of ~5.
        budget.set_share(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        let next = sent_in(&budget, "/v1/customers", Duration::from_millis(100)).await;
        assert!((3..=8).contains(&next), "100 ms after the change: {next}");
    }

    #[tokio::test]
    async fn limits_hit_on_several_endpoints_slow_the_global_budget() {
        let budget = RateBudget::new(
            10,
            1000,
            Adaptation {
                pause: Duration::ZERO,
                ..quick()
            },
        );
        budget.on_rate_limited("/v1/a", Some(Duration::ZERO), None, None);
        budget.on_rate_limited("/v1/b", Some(Duration::ZERO), None, None);
        let slowed = budget
            .global
            .state()
            .slow_until
            .is_some_and(|until| until > Instant::now());
        assert!(slowed);

        let single = RateBudget::new(10, 1000, quick());
        single.on_rate_limited("/v1/a", None, None, None);
        single.on_rate_limited("/v1/a", None, None, None);
        assert!(single.global.state().slow_until.is_none());
    }

    #[tokio::test]
    async fn the_limiter_stripe_names_is_the_one_that_slows() {
        let slowed = |gate: &Gate| {
            gate.state()
                .slow_until
                .is_some_and(|until| until > Instant::now())
        };
        // `global-rate` on one endpoint: the whole account slows, the endpoint itself no
        // more than the rest.
        let budget = RateBudget::new(10, 1000, quick());
        budget.on_rate_limited("/v1/a", None, None, Some(LimitedBy::Account));
        assert!(slowed(&budget.global));
        assert!(!slowed(&budget.gate("/v1/a")));
        // `endpoint-rate` on two endpoints at once: each slows, the account does not (the
        // guess that 429s spread over endpoints mean the account's limit is not needed).
        let budget = RateBudget::new(10, 1000, quick());
        budget.on_rate_limited("/v1/a", None, None, Some(LimitedBy::Endpoint));
        budget.on_rate_limited("/v1/b", None, None, Some(LimitedBy::Endpoint));
        assert!(slowed(&budget.gate("/v1/a")) && slowed(&budget.gate("/v1/b")));
        assert!(!slowed(&budget.global));
    }
}
