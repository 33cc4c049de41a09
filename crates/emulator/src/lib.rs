//! The Stripe API emulator: a seeded, stateful stand-in for Stripe that every test, benchmark and
//! the offline demo talk to over HTTP.
//!
//! Layout (the data flows top to bottom):
//! - [`generate`]: builds a deterministic account (customers, subscriptions, invoices, charges…)
//!   from `(seed, customers, anchor)`.
//! - [`shapes`]: the committed digest of Stripe's example objects; every object is emitted with the
//!   digest's fields, in the digest's order.
//! - [`store`]: objects held pre-serialized, with a per-type ordered index so a list page is a
//!   string concatenation.
//! - [`query`], [`auth`], [`error`]: the request boundary — query parsing, API keys, Stripe's error
//!   bodies.
//! - [`api`]: the HTTP routes (`/v1/…` reads and writes, `/_emulator/{stats,export,mutate,webhooks}`).
//! - [`stats`]: request counters served by `/_emulator/stats`.
//! - [`form`], [`write`], [`mutate`]: change over time — form-encoded writes and
//!   `/_emulator/mutate`, each recording Stripe's events.
//! - [`traffic`]: rate limits, latency and faults in front of `/v1/`.
//! - [`webhooks`]: signed delivery of new events to `webhook_url`, retried with backoff.
//! - [`connect`]: Stripe Connect — connected accounts with their own data, reached with the
//!   `Stripe-Account` header, listed by `/v1/accounts`.
//!
//! Words used here: *object type* is Stripe's `object` value (`customer`, `line_item`); *record* is
//! one stored object with its index metadata; *anchor* is the unix time the generated history ends
//! at, and the emulator's clock starts there.

#![recursion_limit = "512"]

pub mod api;
pub mod auth;
pub mod connect;
pub mod error;
pub mod form;
pub mod generate;
pub mod ids;
pub mod kinds;
pub mod mutate;
pub mod query;
pub mod shapes;
pub mod stats;
pub mod store;
pub mod traffic;
pub mod webhooks;
pub mod write;

use std::net::SocketAddr;
use std::sync::Arc;

/// Stripe's two environments; a key's prefix selects one and objects carry `livemode` to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Test mode (`sk_test_…`, `livemode: false`).
    Test,
    /// Live mode (`sk_live_…`, `livemode: true`).
    Live,
}

impl Mode {
    /// `"test"` or `"live"`, as used in key prefixes.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Test => "test",
            Mode::Live => "live",
        }
    }

    /// The value of `livemode` on objects of this mode.
    pub fn livemode(self) -> bool {
        self == Mode::Live
    }
}

/// The API keys the emulator accepts, by mode. Printed by `cls emulator` at start.
///
/// - `sk_…_cls_emulator`: secret key, full access.
/// - `rk_…_cls_emulator`: restricted key with every read permission.
/// - `rk_…_cls_limited`: restricted key lacking `rak_charge_read` and `rak_invoice_read`.
pub const KEYS: &[(Mode, &[&str])] = &[
    (
        Mode::Test,
        &[
            "sk_test_cls_emulator",
            "rk_test_cls_emulator",
            "rk_test_cls_limited",
        ],
    ),
    (
        Mode::Live,
        &[
            "sk_live_cls_emulator",
            "rk_live_cls_emulator",
            "rk_live_cls_limited",
        ],
    ),
];

/// The accepted keys of one mode.
pub fn keys_for(mode: Mode) -> &'static [&'static str] {
    KEYS.iter()
        .find(|(m, _)| *m == mode)
        .map(|(_, keys)| *keys)
        .unwrap_or(&[])
}

/// How the emulator is set up. Every field is part of what makes a run reproducible.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Seed of the account generator: the same seed, customers and anchor give byte-identical data.
    /// Also seeds write ids, latency jitter, fault draws and webhook shuffling.
    pub seed: u64,
    /// Number of customers the account is built around (about 10–20 objects each in all).
    pub customers: usize,
    /// Test or live: which keys are accepted and the `livemode` of every object.
    pub mode: Mode,
    /// Unix time the generated history ends at (three years of history lead up to it); the
    /// emulator's clock starts here and advances with real time.
    pub anchor: i64,
    /// Stripe's rate limits as token buckets (25 req/s in all in test mode, 100 in live mode, 25
    /// per endpoint) → 429 with Stripe's body. See [`traffic`].
    pub rate_limits: bool,
    /// Latency added around this many milliseconds (±30%, seeded) to every `/v1/` request.
    pub latency_ms: u64,
    /// Fraction (0.0–1.0) of `/v1/` requests that fail: 5xx with or without
    /// `Stripe-Should-Retry`, connection resets, truncated bodies, or (below 1.0) slow responses.
    pub fault_rate: f64,
    /// How long a "slow response" fault waits before answering normally, in milliseconds.
    pub slow_response_ms: u64,
    /// The fault kinds `fault_rate` draws from, uniformly; empty: the default mix (see
    /// [`traffic`]). Lets a test inject one kind only, e.g. 503s with `Stripe-Should-Retry`.
    pub fault_kinds: Vec<traffic::Fault>,
    /// Where every new event (from writes and mutations) is POSTed, signed; `None`: no webhooks.
    pub webhook_url: Option<String>,
    /// The endpoint secret (`whsec_…`) webhooks are signed with; required with `webhook_url`.
    /// Never printed: `Debug` masks it.
    pub webhook_secret: Option<String>,
    /// Stripe Connect: how many connected accounts the platform has (0: none, `/v1/accounts`
    /// is empty). Each has its own, smaller data set generated from this seed; requests reach
    /// one with `Stripe-Account: acct_…`. See [`connect`].
    pub connected_accounts: usize,
    /// Delivery attempts per event, the first included (Stripe retries for days; the emulator
    /// gives up sooner so tests end).
    pub webhook_max_attempts: u32,
    /// Wait before the first webhook retry, in milliseconds; doubles after each failure.
    pub webhook_backoff_ms: u64,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("seed", &self.seed)
            .field("customers", &self.customers)
            .field("mode", &self.mode)
            .field("anchor", &self.anchor)
            .field("rate_limits", &self.rate_limits)
            .field("latency_ms", &self.latency_ms)
            .field("fault_rate", &self.fault_rate)
            .field("slow_response_ms", &self.slow_response_ms)
            .field("fault_kinds", &self.fault_kinds)
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "whsec_****"),
            )
            .field("connected_accounts", &self.connected_accounts)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_backoff_ms", &self.webhook_backoff_ms)
            .finish()
    }
}

impl EmulatorConfig {
    /// Test mode, history ending at the start of today (UTC), rate limits, latency, faults and
    /// webhooks off (the settings library users and tests want).
    pub fn new(seed: u64, customers: usize) -> Self {
        let now = chrono::Utc::now().timestamp();
        EmulatorConfig {
            seed,
            customers,
            mode: Mode::Test,
            anchor: now - now.rem_euclid(86_400),
            rate_limits: false,
            latency_ms: 0,
            fault_rate: 0.0,
            slow_response_ms: 3_000,
            fault_kinds: Vec::new(),
            webhook_url: None,
            webhook_secret: None,
            connected_accounts: 0,
            webhook_max_attempts: 8,
            webhook_backoff_ms: 100,
        }
    }
}

/// A running emulator, serving on `base_url` until [`RunningEmulator::shutdown`] or drop.
pub struct RunningEmulator {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    /// The socket address actually bound (the port is known even when 0 was asked for).
    pub addr: SocketAddr,
    /// Shared state: the store and the counters, for in-process inspection.
    pub state: Arc<api::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningEmulator {
    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Generates the account described by `config` (and its connected accounts) and serves it on
/// `addr` (port 0 picks a free port).
///
/// Generation runs on a blocking thread, so a large account does not stall the runtime.
pub async fn spawn(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<RunningEmulator> {
    let cfg = config.clone();
    let (store, connected) = tokio::task::spawn_blocking(move || {
        let connected = (0..cfg.connected_accounts)
            .map(|i| connect::generate_connected(&cfg, i))
            .collect::<Vec<_>>();
        (generate::generate(&cfg), connected)
    })
    .await
    .map_err(std::io::Error::other)?;
    let state = Arc::new(api::AppState::new(config, store).with_connected(connected));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    if let Some(w) = &state.webhooks {
        w.start();
    }
    let router = api::router(state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "emulator server stopped with an error");
        }
    });
    Ok(RunningEmulator {
        base_url: format!("http://{addr}"),
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}
