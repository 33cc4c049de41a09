//! The read-only Stripe HTTP client.
//!
//! [`StripeClient`] can only send GET requests: there is no method parameter anywhere, so no
//! code path can create, change or delete anything in a user's Stripe account. Each attempt
//! waits for the client's one [rate budget](crate::limiter), is sent with `Authorization: Bearer`,
//! a pinned `Stripe-Version` and (for Connect) `Stripe-Account`, and failed attempts are retried
//! by the rules in [`crate::retry`]. Answers become `serde_json::Value`s or typed
//! [`StripeError`]s.
//!
//! The caller passes a [`RequestCounters`] to every call, so that it can count per data type (or
//! per window) while every clone of the client shares one budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, USER_AGENT};
use serde_json::Value;
use tracing::instrument;
use url::Url;

use crate::error::{error_from_response, parse_error_body, scrub, StripeError};
use crate::key::{ApiKey, Mode};
use crate::limiter::{gate_key, Adaptation, RateBudget};
use crate::retry::{next_delay, RetryPolicy, RetrySignal};

/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// The API version pinned in every request.
///
/// `2026-08-26.dahlia` is the version pinned by the official Node library in the generation
/// whose type declarations `shared/stripe/objects.json` was extracted from (stripe-node 22.6 →
/// 23.x), so the objects Stripe returns have the shapes the catalog's typed columns were written
/// for. Pinning matters: without it the account's default version applies, and two accounts
/// would sync different shapes. Configurable through [`ClientConfig::stripe_version`].
pub const DEFAULT_STRIPE_VERSION: &str = "2026-08-26.dahlia";

/// Global rate in test mode (Stripe's sandbox limit), requests per second.
pub const TEST_MODE_GLOBAL_RPS: u32 = 25;
/// Global rate in live mode, requests per second.
pub const LIVE_MODE_GLOBAL_RPS: u32 = 100;
/// Stripe's per-endpoint rate, requests per second.
pub const PER_ENDPOINT_RPS: u32 = 25;

/// How the client talks to Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Where Stripe is: `https://api.stripe.com`, or the emulator's address. A path prefix is
    /// kept (`http://host/stripe` + `/v1/customers`).
    pub api_base: Url,
    /// Sent as `Stripe-Version`.
    pub stripe_version: String,
    /// Requests per second for the whole account; `None` picks Stripe's limit for the key's mode
    /// (25 in test mode, 100 in live mode).
    pub global_rps: Option<u32>,
    /// Requests per second for each endpoint (Stripe: 25; search and files are capped at 20).
    pub per_endpoint_rps: u32,
    /// Retries of one request after its first attempt.
    pub max_retries: u32,
    /// No retry starts later than this after the request's first attempt.
    pub max_retry_elapsed: Duration,
    /// Wait before the first retry; doubled for each following one (with jitter).
    pub initial_backoff: Duration,
    /// Longest wait between two attempts, unless Stripe's `Retry-After` asks for more.
    pub max_backoff: Duration,
    /// Time limit of one attempt, from connecting to the end of the body.
    pub request_timeout: Duration,
    /// Connect: act on this connected account (`acct_…`), sent as `Stripe-Account`.
    pub stripe_account: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            #[allow(clippy::expect_used)]
            api_base: Url::parse(DEFAULT_API_BASE).expect("DEFAULT_API_BASE is a valid URL"),
            stripe_version: DEFAULT_STRIPE_VERSION.to_string(),
            global_rps: None,
            per_endpoint_rps: PER_ENDPOINT_RPS,
            max_retries: 8,
            max_retry_elapsed: Duration::from_secs(120),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            request_timeout: Duration::from_secs(60),
            stripe_account: None,
        }
    }
}

/// Counts of what a caller's requests cost; pass the same one to many calls to add them up.
#[derive(Debug, Default)]
pub struct RequestCounters {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    /// Time spent in HTTP attempts (sending to the last byte of the answer), in microseconds;
    /// waiting for the rate budget is not included.
    http_micros: AtomicU64,
}

impl RequestCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Mean duration of one HTTP attempt so far (without rate-budget waits), if any was made.
    /// Callers size their concurrency with it: requests in flight ≈ rate × latency.
    pub fn mean_latency(&self) -> Option<Duration> {
        let n = self.requests.load(Ordering::Relaxed);
        (n > 0).then(|| Duration::from_micros(self.http_micros.load(Ordering::Relaxed) / n))
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A copy of [`RequestCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    /// HTTP attempts sent (first attempts and retries).
    pub requests: u64,
    /// Attempts that were retries.
    pub retries: u64,
    /// Answers with status 429.
    pub rate_limited: u64,
}

/// One page of a Stripe list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    /// The objects, newest first, exactly as Stripe sent them.
    pub data: Vec<Value>,
    /// Whether more objects follow (ask again with `starting_after` = last id).
    pub has_more: bool,
    /// The list's path as Stripe reports it (`/v1/customers`).
    pub url: String,
}

impl ListPage {
    /// Reads a list object; `fallback_url` stands in when it has no `url`.
    pub fn from_value(value: Value, fallback_url: &str) -> Result<ListPage, StripeError> {
        let Value::Object(mut map) = value else {
            return Err(StripeError::Decode {
                message: "expected a list object, got something else".into(),
            });
        };
        if let Some(object) = map.get("object") {
            if object != "list" {
                return Err(StripeError::Decode {
                    message: format!("expected a list object, got object {}", brief(object)),
                });
            }
        }
        let data = match map.remove("data") {
            Some(Value::Array(data)) => data,
            _ => {
                return Err(StripeError::Decode {
                    message: "the list has no `data` array".into(),
                })
            }
        };
        let has_more = match map.get("has_more") {
            Some(Value::Bool(has_more)) => *has_more,
            _ => {
                return Err(StripeError::Decode {
                    message: "the list has no `has_more` flag".into(),
                })
            }
        };
        let url = match map.remove("url") {
            Some(Value::String(url)) => url,
            _ => fallback_url.to_string(),
        };
        Ok(ListPage {
            data,
            has_more,
            url,
        })
    }
}

/// Longest part of an answer quoted in an error: messages go to logs and into a run's stored
/// errors, so they must not grow with what a server sends.
const QUOTE_CHARS: usize = 40;

/// A JSON value named in an error: a short string quoted whole, anything else by its kind.
fn brief(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= QUOTE_CHARS => format!("{s:?}"),
        Value::String(s) => {
            let head: String = s.chars().take(QUOTE_CHARS).collect();
            format!("{head:?}… ({} characters)", s.chars().count())
        }
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) => "(an array)".into(),
        Value::Object(_) => "(an object)".into(),
    }
}

/// What every clone of a client shares: the connection pool, the key, the budget.
struct Shared {
    http: reqwest::Client,
    key: ApiKey,
    base: String,
    api_base: Url,
    version: HeaderValue,
    authorization: HeaderValue,
    policy: RetryPolicy,
    budget: RateBudget,
    /// The configured rates: requests per second for the account, and per endpoint.
    rates: (u32, u32),
}

/// A read-only Stripe client. Clones share one connection pool and one rate budget.
#[derive(Clone)]
pub struct StripeClient {
    shared: Arc<Shared>,
    account: Option<String>,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("key", &self.shared.key)
            .field("api_base", &self.shared.base)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// One failed attempt: the error to return if it is the last, and what it says about retrying.
struct Failure {
    error: StripeError,
    signal: RetrySignal,
    status: Option<u16>,
    /// Stripe's error code (`rate_limit`, `lock_timeout`, …), when the body has one.
    code: Option<String>,
}

impl StripeClient {
    /// Builds a client. Fails on a configuration no request could succeed with.
    pub fn new(key: ApiKey, config: ClientConfig) -> Result<Self, StripeError> {
        Self::with_adaptation(key, config, Adaptation::default())
    }

    /// [`StripeClient::new`] with the adaptive limiter's timings chosen (tests shorten them).
    pub fn with_adaptation(
        key: ApiKey,
        config: ClientConfig,
        adaptation: Adaptation,
    ) -> Result<Self, StripeError> {
        let misconfigured = |message: String| StripeError::Config { message };
        if !matches!(config.api_base.scheme(), "http" | "https") {
            return Err(misconfigured(format!(
                "the API base must be an http(s) URL, not `{}`",
                config.api_base
            )));
        }
        if config.api_base.scheme() == "http" && !is_loopback(&config.api_base) {
            tracing::warn!(api_base = %config.api_base, "the Stripe API base is plain http on another machine: the API key travels unencrypted");
        }
        let global_rps = config.global_rps.unwrap_or(match key.mode() {
            Mode::Test => TEST_MODE_GLOBAL_RPS,
            Mode::Live => LIVE_MODE_GLOBAL_RPS,
        });
        if global_rps == 0 || config.per_endpoint_rps == 0 {
            return Err(misconfigured(
                "request rates must be at least 1 per second".into(),
            ));
        }
        let version = HeaderValue::from_str(&config.stripe_version).map_err(|_| {
            misconfigured(format!(
                "`{}` is not a usable Stripe-Version value",
                config.stripe_version
            ))
        })?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
                .map_err(|_| misconfigured("the API key cannot be sent as a header".into()))?;
        // Keeps the value out of HTTP/2 header compression tables and reqwest's debug output.
        authorization.set_sensitive(true);

        let mut default_headers = HeaderMap::new();
        default_headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        default_headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("codeless-sync/", env!("CARGO_PKG_VERSION"))),
        );
        let http = reqwest::Client::builder()
            .default_headers(default_headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            // Stripe's API never redirects; following one could hand the key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| misconfigured(format!("could not set up HTTPS: {e}")))?;

        let base = config.api_base.as_str().trim_end_matches('/').to_string();
        let shared = Shared {
            http,
            key,
            base,
            api_base: config.api_base.clone(),
            version,
            authorization,
            policy: RetryPolicy {
                max_retries: config.max_retries,
                max_elapsed: config.max_retry_elapsed,
                initial_backoff: config.initial_backoff,
                max_backoff: config.max_backoff,
            },
            budget: RateBudget::new(global_rps, config.per_endpoint_rps, adaptation),
            rates: (global_rps, config.per_endpoint_rps),
        };
        Ok(StripeClient {
            shared: Arc::new(shared),
            account: config.stripe_account,
        })
    }

    /// The rate budget's configured rates: (requests per second for the whole account,
    /// requests per second for any one endpoint). Callers size their concurrency with them.
    pub fn rates(&self) -> (u32, u32) {
        self.shared.rates
    }

    /// Shares the account's budget among `share` runs (this client and its clones being one
    /// of them): from now on every rate of [`StripeClient::rates`] is divided by `share` (at
    /// least 1 req/s). The runner calls it as runs of the same Stripe account start and end
    /// on any node; `1` gives the whole budget back.
    pub fn set_rate_share(&self, share: std::num::NonZeroU32) {
        self.shared.budget.set_share(share);
    }

    /// How many runs share the account's budget (1 unless [`StripeClient::set_rate_share`]
    /// said otherwise).
    pub fn rate_share(&self) -> u32 {
        self.shared.budget.share()
    }

    /// The key requests are sent with.
    pub fn key(&self) -> &ApiKey {
        &self.shared.key
    }

    /// Where requests go.
    pub fn api_base(&self) -> &Url {
        &self.shared.api_base
    }

    /// The connected account requests act on (`Stripe-Account`), if any.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The same client (same pool, same rate budget) acting on another connected account, or on
    /// the key's own account with `None`.
    pub fn with_account(&self, account: Option<String>) -> Self {
        StripeClient {
            shared: Arc::clone(&self.shared),
            account,
        }
    }

    /// GET `path` (e.g. `/v1/account`) with `query`, retried as needed; the answer's JSON.
    #[instrument(skip_all, fields(path = %path))]
    pub async fn get(
        &self,
        path: &str,
        query: &[(String, String)],
        counters: &RequestCounters,
    ) -> Result<Value, StripeError> {
        self.get_with_retries(path, query, counters).await
    }

    /// GET a list endpoint (e.g. `/v1/customers` with `limit=100`); one page.
    #[instrument(skip_all, fields(path = %path))]
    pub async fn list(
        &self,
        path: &str,
        query: &[(String, String)],
        counters: &RequestCounters,
    ) -> Result<ListPage, StripeError> {
        let value = self.get_with_retries(path, query, counters).await?;
        ListPage::from_value(value, path)
    }

    async fn get_with_retries(
        &self,
        path: &str,
        query: &[(String, String)],
        counters: &RequestCounters,
    ) -> Result<Value, StripeError> {
        check_path(path)?;
        let url = format!("{}{}", self.shared.base, path);
        let account = match &self.account {
            Some(account) => {
                Some(
                    HeaderValue::from_str(account).map_err(|_| StripeError::Config {
                        message: "the connected account id cannot be sent as a header".into(),
                    })?,
                )
            }
            None => None,
        };
        // Connect: requests for connected accounts wait at the platform's gates (see gate_key).
        let endpoint = gate_key(self.account.as_deref(), path);
        let started = tokio::time::Instant::now();
        let mut retries_done = 0u32;
        loop {
            self.shared.budget.acquire(&endpoint).await;
            RequestCounters::bump(&counters.requests);
            let sent = tokio::time::Instant::now();
            let outcome = self.attempt(&url, query, account.as_ref()).await;
            counters
                .http_micros
                .fetch_add(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
            let failure = match outcome {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            if failure.status == Some(429) {
                RequestCounters::bump(&counters.rate_limited);
                self.shared.budget.on_rate_limited(
                    &endpoint,
                    failure.signal.retry_after,
                    failure.code.as_deref(),
                    failure.signal.limited_by,
                );
            }
            let delay = next_delay(
                &self.shared.policy,
                &failure.signal,
                retries_done,
                started.elapsed(),
                rand::random::<f64>(),
            );
            let Some(delay) = delay else {
                return Err(gave_up(failure.error, retries_done));
            };
            tracing::debug!(
                status = failure.status,
                retries_done,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "retrying Stripe request"
            );
            RequestCounters::bump(&counters.retries);
            retries_done += 1;
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP attempt.
    async fn attempt(
        &self,
        url: &str,
        query: &[(String, String)],
        account: Option<&HeaderValue>,
    ) -> Result<Value, Failure> {
        let shared = &*self.shared;
        let mut request = shared
            .http
            .get(url)
            .query(query)
            .header(AUTHORIZATION, shared.authorization.clone())
            .header("Stripe-Version", shared.version.clone());
        if let Some(account) = account {
            request = request.header("Stripe-Account", account.clone());
        }
        let secret = shared.key.expose_secret();
        let response = request.send().await.map_err(|e| Failure {
            error: network_error(&e, secret),
            signal: transient_unless_misbuilt(&e),
            status: None,
            code: None,
        })?;
        let status = response.status().as_u16();
        let signal = RetrySignal::from_response(status, response.headers());
        let body = response.bytes().await.map_err(|e| Failure {
            error: StripeError::Network {
                message: format!(
                    "the answer (HTTP {status}) was cut off: {}",
                    error_chain(&e, secret)
                ),
            },
            signal: RetrySignal::transient(),
            status: Some(status),
            code: None,
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| Failure {
                error: StripeError::Decode {
                    message: format!("HTTP {status} with a body that is not valid JSON: {e}"),
                },
                // A garbled or truncated body is usually a transient network fault.
                signal: RetrySignal::transient(),
                status: Some(status),
                code: None,
            });
        }
        Err(Failure {
            error: error_from_response(status, &body, secret),
            signal,
            status: Some(status),
            code: parse_error_body(&body).and_then(|b| b.code),
        })
    }
}

/// Rejects paths that would leave the API base or smuggle a query; they come from code (and
/// from Stripe's `url` fields), never from users.
fn check_path(path: &str) -> Result<(), StripeError> {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains(['?', '#', '\\'])
        && !path.split('/').any(|s| s == "..")
        && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(StripeError::Config {
            message: format!("`{path}` is not a Stripe API path (it must look like /v1/customers)"),
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Adds how many attempts were made to errors that retrying was meant to fix.
fn gave_up(error: StripeError, retries_done: u32) -> StripeError {
    if retries_done == 0 {
        return error;
    }
    let attempts = retries_done + 1;
    let suffix = |message: String| format!("{message}; gave up after {attempts} attempts");
    match error {
        StripeError::RateLimited { message } => StripeError::RateLimited {
            message: suffix(message),
        },
        StripeError::Conflict { message } => StripeError::Conflict {
            message: suffix(message),
        },
        StripeError::Server { status, message } => StripeError::Server {
            status,
            message: suffix(message),
        },
        StripeError::Network { message } => StripeError::Network {
            message: suffix(message),
        },
        StripeError::Decode { message } => StripeError::Decode {
            message: suffix(message),
        },
        other => other,
    }
}

fn network_error(error: &reqwest::Error, secret: &str) -> StripeError {
    if error.is_builder() {
        return StripeError::Config {
            message: format!(
                "could not build the request: {}",
                error_chain(error, secret)
            ),
        };
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    StripeError::Network {
        message: format!("{what}: {}", error_chain(error, secret)),
    }
}

fn transient_unless_misbuilt(error: &reqwest::Error) -> RetrySignal {
    if error.is_builder() {
        RetrySignal::default()
    } else {
        RetrySignal::transient()
    }
}

/// The error and its causes in one line ("error sending request: … : Connection refused").
fn error_chain(error: &(dyn std::error::Error + 'static), secret: &str) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    scrub(&text, secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_pages_are_read_strictly() {
        let page = ListPage::from_value(
            serde_json::json!({"object": "list", "url": "/v1/customers", "has_more": true, "data": [{"id": "cus_1"}]}),
            "/x",
        )
        .expect("a list");
        assert_eq!(page.url, "/v1/customers");
        assert!(page.has_more);
        assert_eq!(page.data.len(), 1);

        let no_url =
            ListPage::from_value(serde_json::json!({"has_more": false, "data": []}), "/v1/x")
                .expect("a list");
        assert_eq!(no_url.url, "/v1/x");

        for bad in [
            serde_json::json!([]),
            serde_json::json!({"object": "customer", "has_more": false, "data": []}),
            serde_json::json!({"object": "list", "data": []}),
            serde_json::json!({"object": "list", "has_more": false, "data": {}}),
        ] {
            assert!(matches!(
                ListPage::from_value(bad, "/x"),
                Err(StripeError::Decode { .. })
            ));
        }
    }

    /// The decoder's bad-input catalogue: each case with its exact message, which never
    /// grows with the answer (found by fuzzing: a huge `object` value was quoted whole).
    #[test]
    fn bad_list_pages_get_short_specific_messages() {
        let huge = "x".repeat(100_000);
        let cases = [
            (serde_json::json!([]), "expected a list object, got something else"),
            (serde_json::json!(null), "expected a list object, got something else"),
            (serde_json::json!("list"), "expected a list object, got something else"),
            (
                serde_json::json!({"object": "customer", "has_more": false, "data": []}),
                "expected a list object, got object \"customer\"",
            ),
            (
                serde_json::json!({"object": huge, "has_more": false, "data": []}),
                "expected a list object, got object \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"… (100000 characters)",
            ),
            (
                serde_json::json!({"object": [huge], "has_more": false, "data": []}),
                "expected a list object, got object (an array)",
            ),
            (
                serde_json::json!({"object": {"a": 1}, "has_more": false, "data": []}),
                "expected a list object, got object (an object)",
            ),
            (
                serde_json::json!({"object": 7, "has_more": false, "data": []}),
                "expected a list object, got object 7",
            ),
            (
                serde_json::json!({"object": "list", "has_more": false}),
                "the list has no `data` array",
            ),
            (
                serde_json::json!({"object": "list", "has_more": false, "data": null}),
                "the list has no `data` array",
            ),
            (
                serde_json::json!({"object": "list", "data": []}),
                "the list has no `has_more` flag",
            ),
            (
                serde_json::json!({"object": "list", "has_more": "true", "data": []}),
                "the list has no `has_more` flag",
            ),
            (
                serde_json::json!({"object": "list", "has_more": 1, "data": []}),
                "the list has no `has_more` flag",
            ),
        ];
        for (page, want) in cases {
            match ListPage::from_value(page, "/v1/customers") {
                Err(StripeError::Decode { message }) => assert_eq!(message, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        // Extra fields, a mistyped `url` and odd objects are kept as sent: the page's `data`
        // is stored as Stripe gave it.
        let page = ListPage::from_value(
            serde_json::json!({"object": "list", "has_more": false, "url": 5, "extra": [1],
                "data": [{"id": "cus_1", "object": "unicorn", "x": {"deep": [null]}}, 7]}),
            "/v1/customers",
        )
        .expect("a list");
        assert_eq!(page.url, "/v1/customers");
        assert_eq!(
            page.data,
            vec![
                serde_json::json!({"id": "cus_1", "object": "unicorn", "x": {"deep": [null]}}),
                serde_json::json!(7)
            ]
        );
    }

    #[test]
    fn paths_must_stay_on_the_api() {
        for ok in ["/v1/customers", "/v1/invoices/in_1/lines", "/v1/account"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "v1/customers",
            "//evil.example/v1",
            "/v1/customers?limit=1",
            "/v1/../admin",
            "/v1/customers#x",
            "/v1/cus tomers",
            "",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn giving_up_says_how_many_attempts() {
        let err = gave_up(
            StripeError::RateLimited {
                message: "Too many".into(),
            },
            3,
        );
        assert_eq!(
            err,
            StripeError::RateLimited {
                message: "Too many; gave up after 4 attempts".into()
            }
        );
        let first = gave_up(
            StripeError::NotFound {
                message: "x".into(),
            },
            0,
        );
        assert_eq!(
            first,
            StripeError::NotFound {
                message: "x".into()
            }
        );
    }

    #[test]
    fn default_config_matches_stripe() {
        let config = ClientConfig::default();
        assert_eq!(config.api_base.as_str(), "https://api.stripe.com/");
        assert_eq!(config.per_endpoint_rps, 25);
        assert_eq!(config.global_rps, None);
    }

    #[tokio::test]
    async fn the_budget_follows_the_key_mode_and_debug_hides_the_key() {
        let key = ApiKey::parse("sk_live_cls_emulator").expect("valid");
        let client = StripeClient::new(key, ClientConfig::default()).expect("client");
        let shown = format!("{client:?}");
        assert!(!shown.contains("cls_emulator"), "{shown}");
        assert!(shown.contains("sk_live_…ator"), "{shown}");
        let other = client.with_account(Some("acct_123".into()));
        assert!(Arc::ptr_eq(&client.shared, &other.shared));
        assert_eq!(other.account(), Some("acct_123"));
    }

    #[tokio::test]
    async fn rejects_configs_no_request_could_use() {
        let key = || ApiKey::parse("rk_test_cls_emulator").expect("valid");
        let zero = ClientConfig {
            per_endpoint_rps: 0,
            ..ClientConfig::default()
        };
        assert!(matches!(
            StripeClient::new(key(), zero),
            Err(StripeError::Config { .. })
        ));
        let ftp = ClientConfig {
            api_base: Url::parse("ftp://example.com").expect("url"),
            ..ClientConfig::default()
        };
        assert!(matches!(
            StripeClient::new(key(), ftp),
            Err(StripeError::Config { .. })
        ));
        let version = ClientConfig {
            stripe_version: "bad\nversion".into(),
            ..ClientConfig::default()
        };
        assert!(matches!(
            StripeClient::new(key(), version),
            Err(StripeError::Config { .. })
        ));
    }
}
