//! Black-box tests of the Stripe client against a scripted HTTP server on 127.0.0.1:0.
//!
//! The server answers each path from a script (a queue of replies), then with an empty list
//! page, and records every request it sees (path, query, headers, arrival time) so the tests can
//! check what was sent and how fast. Real sockets mean real time: retry waits are configured in
//! milliseconds so the tests stay fast, and nothing sleeps to wait for the server (it is
//! listening as soon as `bind` returns).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use cls_stripe::{
    Adaptation, ApiKey, ClientConfig, CounterSnapshot, RequestCounters, StripeClient, StripeError,
    DEFAULT_STRIPE_VERSION,
};

const KEY: &str = "rk_test_cls_emulator";

#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

fn stripe_error(status: u16, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({"error": {"type": "invalid_request_error", "code": code, "message": message}});
    reply(status, &body.to_string())
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    at: Instant,
}

#[derive(Default)]
struct Server {
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    seen: Mutex<Vec<Seen>>,
}

impl Server {
    fn script(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .expect("script lock")
            .insert(path.to_string(), replies.into());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

async fn handle(State(server): State<Arc<Server>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    server.seen.lock().expect("seen lock").push(Seen {
        path: path.clone(),
        query: request.uri().query().map(str::to_string),
        headers: request.headers().clone(),
        at: Instant::now(),
    });
    let scripted = server
        .script
        .lock()
        .expect("script lock")
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let reply = scripted.unwrap_or_else(|| {
        let body = serde_json::json!({"object": "list", "url": path, "has_more": false, "data": [{"id": "obj_1"}]});
        reply(200, &body.to_string())
    });
    let mut response =
        Response::builder().status(StatusCode::from_u16(reply.status).expect("status"));
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    response.body(Body::from(reply.body)).expect("response")
}

/// Starts the scripted server; returns its state and base URL.
async fn start() -> (Arc<Server>, url::Url) {
    let server = Arc::new(Server::default());
    let app = Router::new().fallback(handle).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = url::Url::parse(&format!("http://{addr}")).expect("url");
    (server, base)
}

/// A config with millisecond retry waits.
fn fast(base: url::Url) -> ClientConfig {
    ClientConfig {
        api_base: base,
        max_retries: 5,
        max_retry_elapsed: Duration::from_secs(10),
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

fn quick_adaptation() -> Adaptation {
    Adaptation {
        pause: Duration::from_millis(10),
        slow_for: Duration::from_millis(100),
        spread_window: Duration::from_millis(100),
    }
}

fn client(config: ClientConfig) -> StripeClient {
    let key = ApiKey::parse(KEY).expect("valid key");
    StripeClient::with_adaptation(key, config, quick_adaptation()).expect("client")
}

fn counts(requests: u64, retries: u64, rate_limited: u64) -> CounterSnapshot {
    CounterSnapshot {
        requests,
        retries,
        rate_limited,
    }
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn sends_bearer_auth_version_account_and_query_with_get() {
    let (server, base) = start().await;
    let client = client(fast(base));
    let counters = RequestCounters::default();

    let page = client
        .list(
            "/v1/customers",
            &q(&[("limit", "100"), ("created[gte]", "1700000000")]),
            &counters,
        )
        .await
        .expect("list");
    assert_eq!(page.url, "/v1/customers");
    assert_eq!(page.data.len(), 1);
    assert!(!page.has_more);

    let connected = client.with_account(Some("acct_1Connected".into()));
    connected
        .get("/v1/account", &[], &counters)
        .await
        .expect("get");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(header("stripe-version"), Some(DEFAULT_STRIPE_VERSION));
    }
    assert_eq!(seen[0].path, "/v1/customers");
    let query = seen[0].query.as_deref().expect("query");
    let decoded: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("form");
    assert_eq!(
        decoded,
        q(&[("limit", "100"), ("created[gte]", "1700000000")])
    );
    assert!(seen[0].headers.get("stripe-account").is_none());
    assert_eq!(
        seen[1]
            .headers
            .get("stripe-account")
            .and_then(|v| v.to_str().ok()),
        Some("acct_1Connected")
    );
    assert_eq!(counters.snapshot(), counts(2, 0, 0));
}

#[tokio::test]
async fn retries_500_503_and_429_then_succeeds_and_counts() {
    let (server, base) = start().await;
    server.script(
        "/v1/invoices",
        vec![
            stripe_error(500, "", "An unknown error occurred"),
            reply(503, "<html>unavailable</html>"),
            stripe_error(429, "rate_limit", "Too many requests").header("retry-after", "0"),
        ],
    );
    let client = client(fast(base));
    let counters = RequestCounters::default();
    let page = client
        .list("/v1/invoices", &q(&[("limit", "10")]), &counters)
        .await
        .expect("success after retries");
    assert_eq!(page.data.len(), 1);
    assert_eq!(counters.snapshot(), counts(4, 3, 1));
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn retries_409_and_garbled_or_cut_off_bodies() {
    let (server, base) = start().await;
    server.script(
        "/v1/charges",
        vec![
            stripe_error(409, "lock_timeout", "Could not acquire lock"),
            reply(200, "{\"object\": \"list\", \"data\": ["),
            // Declares more bytes than it sends: the connection ends mid-body.
            reply(200, "{\"object\":").header("content-length", "500"),
        ],
    );
    let client = client(fast(base));
    let counters = RequestCounters::default();
    client
        .list("/v1/charges", &[], &counters)
        .await
        .expect("success after retries");
    assert_eq!(counters.snapshot(), counts(4, 3, 0));
}

#[tokio::test]
async fn stripe_should_retry_decides_first() {
    let (server, base) = start().await;
    server.script(
        "/v1/refunds",
        vec![reply(503, "busy").header("stripe-should-retry", "false")],
    );
    server.script(
        "/v1/payouts",
        vec![stripe_error(400, "", "try again").header("stripe-should-retry", "true")],
    );
    let client = client(fast(base));

    let counters = RequestCounters::default();
    let err = client
        .get("/v1/refunds", &[], &counters)
        .await
        .expect_err("not retried");
    assert!(
        matches!(err, StripeError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(counters.snapshot(), counts(1, 0, 0));

    let counters = RequestCounters::default();
    client
        .get("/v1/payouts", &[], &counters)
        .await
        .expect("retried despite 400");
    assert_eq!(counters.snapshot(), counts(2, 1, 0));
}

#[tokio::test]
async fn client_errors_are_typed_and_not_retried() {
    let (server, base) = start().await;
    server.script(
        "/v1/account",
        vec![stripe_error(
            401,
            "",
            "Invalid API Key provided: rk_test_****ator",
        )],
    );
    server.script(
        "/v1/invoices",
        vec![stripe_error(
            403,
            "",
            "The provided key 'rk_test_****ator' does not have the required permissions for this endpoint on account 'acct_1Abc'. Having the 'rak_invoice_read' permission would allow this request to continue.",
        )],
    );
    server.script(
        "/v1/customers/cus_404",
        vec![stripe_error(
            404,
            "resource_missing",
            "No such customer: 'cus_404'",
        )],
    );
    server.script(
        "/v1/prices",
        vec![stripe_error(
            400,
            "parameter_unknown",
            "Received unknown parameter: limitt",
        )],
    );
    let client = client(fast(base));
    let counters = RequestCounters::default();

    let err = client
        .get("/v1/account", &[], &counters)
        .await
        .expect_err("401");
    assert!(matches!(err, StripeError::InvalidKey { .. }), "{err:?}");
    assert!(err.to_string().contains("Developers → API keys"), "{err}");

    let err = client
        .list("/v1/invoices", &[], &counters)
        .await
        .expect_err("403");
    match &err {
        StripeError::PermissionDenied { permission, .. } => {
            assert_eq!(permission.as_deref(), Some("rak_invoice_read"))
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("Invoices → Read"), "{err}");

    let err = client
        .get("/v1/customers/cus_404", &[], &counters)
        .await
        .expect_err("404");
    assert!(matches!(err, StripeError::NotFound { .. }), "{err:?}");

    let err = client
        .list("/v1/prices", &[], &counters)
        .await
        .expect_err("400");
    assert_eq!(err.code(), Some("parameter_unknown"));

    assert_eq!(counters.snapshot(), counts(4, 0, 0));
    assert!(!err.is_retriable());
}

#[tokio::test]
async fn retry_count_is_bounded() {
    let (server, base) = start().await;
    server.script("/v1/disputes", (0..20).map(|_| reply(500, "")).collect());
    let client = client(ClientConfig {
        max_retries: 3,
        ..fast(base)
    });
    let counters = RequestCounters::default();
    let err = client
        .list("/v1/disputes", &[], &counters)
        .await
        .expect_err("gives up");
    assert!(
        matches!(err, StripeError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("gave up after 4 attempts"),
        "{err}"
    );
    assert_eq!(counters.snapshot(), counts(4, 3, 0));
}

#[tokio::test]
async fn retry_time_is_bounded() {
    let (server, base) = start().await;
    server.script(
        "/v1/transfers",
        (0..1000)
            .map(|_| stripe_error(429, "rate_limit", "Too many requests"))
            .collect(),
    );
    let client = client(ClientConfig {
        max_retries: 1000,
        max_retry_elapsed: Duration::from_millis(300),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(50),
        ..fast(base)
    });
    let counters = RequestCounters::default();
    let started = Instant::now();
    let err = client
        .list("/v1/transfers", &[], &counters)
        .await
        .expect_err("gives up");
    let elapsed = started.elapsed();
    assert!(matches!(err, StripeError::RateLimited { .. }), "{err:?}");
    assert!(err.is_retriable());
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    let snapshot = counters.snapshot();
    assert!(
        snapshot.requests >= 2 && snapshot.requests <= 10,
        "{snapshot:?}"
    );
    assert_eq!(snapshot.rate_limited, snapshot.requests);
    assert_eq!(snapshot.retries, snapshot.requests - 1);
}

#[tokio::test]
async fn network_failures_are_retried_then_typed() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let base = url::Url::parse(&format!("http://{addr}")).expect("url");
    let client = client(ClientConfig {
        max_retries: 2,
        ..fast(base)
    });
    let counters = RequestCounters::default();
    let err = client
        .get("/v1/balance", &[], &counters)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, StripeError::Network { .. }), "{err:?}");
    assert!(!err.to_string().contains(KEY), "{err}");
    assert_eq!(counters.snapshot(), counts(3, 2, 0));
}

#[tokio::test]
async fn a_non_list_answer_is_a_decode_error_without_retries() {
    let (server, base) = start().await;
    server.script(
        "/v1/plans",
        vec![reply(200, "{\"object\": \"plan\", \"id\": \"x\"}")],
    );
    let client = client(fast(base));
    let counters = RequestCounters::default();
    let err = client
        .list("/v1/plans", &[], &counters)
        .await
        .expect_err("not a list");
    assert!(matches!(err, StripeError::Decode { .. }), "{err:?}");
    assert_eq!(counters.snapshot(), counts(1, 0, 0));
}

/// Largest number of timestamps in any window `[t, t + 1 s)` that starts at one of them.
fn max_per_second(mut times: Vec<Instant>) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_concurrent_burst_stays_under_the_per_endpoint_rate() {
    let (server, base) = start().await;
    let rps = 20;
    let burst = cls_stripe::limiter::burst_for(rps) as usize;
    let client = client(ClientConfig {
        global_rps: Some(1000),
        per_endpoint_rps: rps,
        ..fast(base)
    });
    let counters = Arc::new(RequestCounters::default());
    let total = 44;
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let client = client.clone();
            let counters = counters.clone();
            // Different ids, one endpoint: /v1/invoices/{id}/lines.
            let path = format!("/v1/invoices/in_{i}/lines");
            tokio::spawn(async move { client.list(&path, &[], &counters).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("list");
    }
    let times: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(times.len(), total);
    let peak = max_per_second(times);
    assert!(
        peak <= rps as usize + burst,
        "{peak} requests in one second"
    );
    assert_eq!(counters.snapshot(), counts(total as u64, 0, 0));
}

#[tokio::test]
async fn the_global_rate_holds_across_endpoints_and_clones() {
    let (server, base) = start().await;
    let rps = 20;
    let burst = cls_stripe::limiter::burst_for(rps) as usize;
    let client = client(ClientConfig {
        global_rps: Some(rps),
        per_endpoint_rps: 1000,
        ..fast(base)
    });
    let endpoints = ["/v1/customers", "/v1/products", "/v1/prices", "/v1/coupons"];
    let counters = Arc::new(RequestCounters::default());
    let total = 44;
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            // Clones (and other Stripe-Account values) share the one budget.
            let client = client.with_account((i % 2 == 0).then(|| "acct_1Other".to_string()));
            let counters = counters.clone();
            let path = endpoints[i % endpoints.len()];
            tokio::spawn(async move { client.list(path, &[], &counters).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("list");
    }
    let times: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(times.len(), total);
    let peak = max_per_second(times);
    // An endpoint whose own cell was not yet due may trail its global cell (see limiter docs);
    // with per-endpoint limits far above, that slack is at most one request per endpoint.
    assert!(
        peak <= rps as usize + burst + endpoints.len(),
        "{peak} requests in one second"
    );
    assert_eq!(counters.snapshot().requests, total as u64);
}

#[tokio::test]
async fn after_a_429_the_endpoint_pauses_before_the_retry() {
    let (server, base) = start().await;
    server.script(
        "/v1/subscriptions",
        vec![stripe_error(429, "rate_limit", "Too many requests")],
    );
    let key = ApiKey::parse(KEY).expect("valid key");
    let client = StripeClient::with_adaptation(
        key,
        fast(base),
        Adaptation {
            pause: Duration::from_millis(300),
            ..quick_adaptation()
        },
    )
    .expect("client");
    let counters = RequestCounters::default();
    let started = Instant::now();
    client
        .list("/v1/subscriptions", &q(&[("status", "all")]), &counters)
        .await
        .expect("success after the pause");
    // The backoff alone is a few milliseconds; the endpoint's pause holds the retry back.
    assert!(
        started.elapsed() >= Duration::from_millis(290),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(counters.snapshot(), counts(2, 1, 1));
    let seen = server.seen();
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(290));
}

#[tokio::test]
async fn mean_latency_covers_http_attempts_only() {
    let (_server, base) = start().await;
    let client = client(fast(base));
    let counters = RequestCounters::default();
    assert_eq!(counters.mean_latency(), None, "no request yet");
    let began = Instant::now();
    for _ in 0..3 {
        client
            .list("/v1/customers", &q(&[("limit", "1")]), &counters)
            .await
            .expect("list");
    }
    let wall = began.elapsed();
    let mean = counters.mean_latency().expect("measured");
    assert!(mean > std::time::Duration::ZERO);
    assert!(
        mean * 3 <= wall,
        "mean {mean:?} × 3 exceeds the wall time {wall:?}"
    );
}
