//! The HTTP surface: Stripe's read API under `/v1/` and the inspection routes under
//! `/_emulator/` (no auth).
//!
//! Every `/v1/` GET goes through one dispatcher ([`v1_get`]): resolve the route, authenticate,
//! check the permission, run the read under the store's read lock, count it. Writes ([`v1_write`])
//! are `post`/`delete` handlers on the same `/v1/{*path}` route (axum matches paths before
//! methods, so a separate `/v1/customers` route would shadow the GETs); they run under the write
//! lock through [`crate::write::Writer`] and hand their events to the webhook queue. The
//! [`crate::traffic`] layer (rate limits, latency, faults) wraps `/v1/` only.

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::form::Form;
use crate::kinds::{self, ChildRoute, Order, CHILD_ROUTES, LIST_ROUTES};
use crate::query::{tighten_lo, Params};
use crate::shapes;
use crate::stats::Stats;
use crate::store::{self, Cursor, PageRequest, Record, Store};
use crate::write::{WriteRoute, Writer};
use crate::EmulatorConfig;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// API version stamped on events (`api_version`) and the `Stripe-Version` response header.
pub const API_VERSION: &str = "2025-09-30.clover";

/// Stripe keeps events for this long; older ones are not listed.
pub const EVENT_RETENTION_SECS: i64 = 30 * 86_400;

/// Embedded child lists (`subscription.items`, `invoice.lines`) carry this many children.
pub const EMBEDDED_PAGE: usize = 10;

/// State shared by every request.
#[derive(Debug)]
pub struct AppState {
    /// How the emulator was started.
    pub config: EmulatorConfig,
    /// The account. Reads take the read lock; the write layer takes the write lock.
    pub store: RwLock<Store>,
    /// Request counters.
    pub stats: Stats,
    /// Token buckets of the rate limits.
    pub limiter: crate::traffic::RateLimiter,
    /// Number of `/v1/` requests seen by the traffic layer (drives its seeded draws).
    pub counter: crate::traffic::Counter,
    /// The webhook queue, when `webhook_url` is set.
    pub webhooks: Option<crate::webhooks::Webhooks>,
    /// Stripe Connect: the platform's connected accounts, each with its own store (see
    /// [`crate::connect`]).
    pub connected: Vec<crate::connect::ConnectedAccount>,
    /// The platform's account id (`acct_…`), fixed at generation.
    pub platform_id: String,
    /// Whether `config.fault_rate` applies now (on from the start). An in-process harness
    /// turns faults off to set an account up cleanly, and on for the run it hurts.
    pub faults_on: std::sync::atomic::AtomicBool,
    started: Instant,
}

impl AppState {
    /// Wraps a generated store.
    pub fn new(config: EmulatorConfig, store: Store) -> Self {
        let webhooks = match (&config.webhook_url, &config.webhook_secret) {
            (Some(url), Some(secret)) => Some(crate::webhooks::Webhooks::new(
                crate::webhooks::WebhookTarget::new(
                    url.clone(),
                    secret.clone(),
                    config.webhook_max_attempts,
                    std::time::Duration::from_millis(config.webhook_backoff_ms),
                    config.seed,
                ),
            )),
            _ => None,
        };
        AppState {
            limiter: crate::traffic::RateLimiter::new(config.mode),
            counter: crate::traffic::Counter::default(),
            webhooks,
            connected: Vec::new(),
            platform_id: store.account_id.clone(),
            config,
            store: RwLock::new(store),
            stats: Stats::default(),
            faults_on: std::sync::atomic::AtomicBool::new(true),
            started: Instant::now(),
        }
    }

    /// Turns the configured faults on or off (see [`AppState::faults_on`]).
    pub fn set_faults(&self, on: bool) {
        self.faults_on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The same state with these connected accounts.
    pub fn with_connected(mut self, connected: Vec<crate::connect::ConnectedAccount>) -> Self {
        self.connected = connected;
        self
    }

    /// The store a request reads and writes: the platform's, or the connected account's its
    /// `Stripe-Account` header names (403 `account_invalid` for any other account). Also says
    /// whether the request acts on a connected account.
    pub fn store_for(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
    ) -> Result<(&RwLock<Store>, bool), ApiError> {
        match crate::connect::resolve(&self.connected, &self.platform_id, headers, caller)? {
            Some(account) => Ok((&account.store, true)),
            None => Ok((&self.store, false)),
        }
    }

    /// Hands new events to the webhook queue (nothing happens without a `webhook_url`).
    pub fn publish(&self, events: Vec<bytes::Bytes>) {
        if let Some(w) = &self.webhooks {
            if !events.is_empty() {
                w.enqueue(events);
            }
        }
    }

    /// The emulator's clock: the anchor plus the real time elapsed since start. History ends at
    /// the anchor, so tests with a fixed anchor see the same "now" whatever the date.
    pub fn now(&self) -> i64 {
        self.config.anchor + self.started.elapsed().as_secs() as i64
    }
}

/// The router: `/v1/…` reads and writes behind the traffic layer, and
/// `/_emulator/{stats,export,mutate,webhooks}` (never limited, delayed or faulted).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/{*path}", get(v1_get).post(v1_write).delete(v1_write))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::traffic::layer,
        ))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/export", get(export))
        .route("/_emulator/mutate", post(mutate))
        .route("/_emulator/webhooks", get(webhook_stats))
        .fallback(unrecognized)
        .with_state(state)
}

/// The endpoint name of a request, as stats and rate limits count it (method + path template).
pub fn endpoint_name(method: &str, full_path: &str) -> String {
    let path = full_path.strip_prefix("/v1/").unwrap_or("");
    if method == "GET" {
        return Route::resolve(path)
            .map_or_else(|| "GET (unrecognized)".to_string(), |r| r.endpoint());
    }
    WriteRoute::resolve(method, path).map_or_else(
        || format!("{method} (unrecognized)"),
        |r| r.endpoint().to_string(),
    )
}

/// `POST`/`DELETE /v1/{*path}`: a write.
pub async fn v1_write(
    State(state): State<Arc<AppState>>,
    method: axum::http::Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/v1/").unwrap_or("");
    let route = WriteRoute::resolve(method.as_str(), path);
    let endpoint = endpoint_name(method.as_str(), uri.path());
    let result = write(
        &state,
        route,
        &method,
        uri.path(),
        query.as_deref(),
        &headers,
        &body,
    );
    let resp = match result {
        Ok((body, events)) => {
            state.publish(events);
            json_response(StatusCode::OK, body.to_vec())
        }
        Err(e) => e.into_response(),
    };
    state.stats.record(&endpoint, resp.status().as_u16());
    resp
}

#[allow(clippy::too_many_arguments)]
fn write(
    state: &AppState,
    route: Option<WriteRoute>,
    method: &axum::http::Method,
    full_path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(bytes::Bytes, Vec<bytes::Bytes>), ApiError> {
    let caller: Caller = auth::authenticate(headers, state.config.mode)?;
    let route = route.ok_or_else(|| ApiError::unrecognized_url(method.as_str(), full_path))?;
    let body = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("body", "Invalid request body.".into()))?;
    // Stripe reads parameters from the query string too.
    let raw = match query {
        Some(q) if !q.is_empty() && !body.is_empty() => format!("{q}&{body}"),
        Some(q) if !q.is_empty() => q.to_string(),
        _ => body.to_string(),
    };
    let (lock, connected) = state.store_for(headers, &caller)?;
    let mut store = lock
        .write()
        .map_err(|_| ApiError::invalid("store", "The emulator's store is unavailable.".into()))?;
    auth::authorize_write(&caller, route.permission(), &store.account_id)?;
    let form = Form::parse(&raw, route.params())?;
    let idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let mut w = Writer::new(&mut store, state.config.seed, state.now());
    w.begin_request(idempotency_key);
    let out = w.run(&route, &form)?;
    // Connect webhooks are not emulated: a connected account's events stay in its feed.
    let events = if connected {
        Vec::new()
    } else {
        std::mem::take(&mut w.events)
    };
    Ok((out, events))
}

async fn mutate(State(state): State<Arc<AppState>>, body: bytes::Bytes) -> Response {
    let req: crate::mutate::MutateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::invalid(
                "body",
                format!("Expected {{\"count\": N, \"seed\": S}}: {e}"),
            )
            .into_response()
        }
    };
    let st = state.clone();
    let done = tokio::task::spawn_blocking(move || {
        let now = st.now();
        let mut store = st.store.write().ok()?;
        Some(crate::mutate::mutate(&mut store, now, req))
    })
    .await;
    match done {
        Ok(Some((summary, events))) => {
            state.publish(events);
            json_response(
                StatusCode::OK,
                serde_json::to_vec(&summary).unwrap_or_default(),
            )
        }
        _ => ApiError::invalid("store", "The emulator's store is unavailable.".into())
            .into_response(),
    }
}

async fn webhook_stats(State(state): State<Arc<AppState>>) -> Response {
    let body = match &state.webhooks {
        Some(w) => w.stats.to_json(true),
        None => crate::webhooks::WebhookStats::default().to_json(false),
    };
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&state.stats.to_json()).unwrap_or_default(),
    )
}

/// `/_emulator/export[?account=acct_…]`: the platform's data, or a connected account's.
async fn export(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let account = match Params::parse(query.as_deref()) {
        Ok(p) => {
            if let Err(e) = p.check_known(&["account"]) {
                return e.into_response();
            }
            p.get("account").map(str::to_string)
        }
        Err(e) => return e.into_response(),
    };
    let index = match account.as_deref() {
        None => None,
        Some(id) if id == state.platform_id => None,
        Some(id) => match state.connected.iter().position(|a| a.id == id) {
            Some(i) => Some(i),
            None => {
                return ApiError::no_such(404, "account", id, "account").into_response();
            }
        },
    };
    let st = state.clone();
    let body = tokio::task::spawn_blocking(move || {
        let lock = match index {
            Some(i) => &st.connected[i].store,
            None => &st.store,
        };
        match lock.read() {
            Ok(store) => store.export_json(),
            Err(_) => b"{}".to_vec(),
        }
    })
    .await
    .unwrap_or_default();
    json_response(StatusCode::OK, body)
}

async fn unrecognized(uri: Uri, method: axum::http::Method) -> Response {
    ApiError::unrecognized_url(method.as_str(), uri.path()).into_response()
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("stripe-version", HeaderValue::from_static(API_VERSION));
    resp
}

/// What a `/v1/` GET path asks for.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/v1/account`.
    Account,
    /// `/v1/balance`.
    Balance,
    /// `/v1/accounts`: the platform's connected accounts.
    Accounts,
    /// `/v1/accounts/{id}`: one connected account.
    ConnectedAccount(String),
    /// A top-level list.
    List(&'static kinds::ListRoute),
    /// `/v1/<resource>/{id}`.
    Retrieve(&'static kinds::ListRoute, String),
    /// `/v1/<parent>/{id}/<children>`.
    Children(&'static ChildRoute, String),
}

impl Route {
    /// Resolves a path (after `/v1/`).
    pub fn resolve(path: &str) -> Option<Route> {
        match path {
            "account" => return Some(Route::Account),
            "balance" => return Some(Route::Balance),
            "accounts" => return Some(Route::Accounts),
            _ => {}
        }
        if let Some(id) = path.strip_prefix("accounts/") {
            if !id.is_empty() && !id.contains('/') {
                return Some(Route::ConnectedAccount(id.to_string()));
            }
        }
        if let Some(r) = LIST_ROUTES.iter().find(|r| r.path == path) {
            return Some(Route::List(r));
        }
        // Longest list path first, so `checkout/sessions/{id}` is not read as a 3-segment path.
        for r in LIST_ROUTES {
            if let Some(rest) = path.strip_prefix(r.path).and_then(|p| p.strip_prefix('/')) {
                if !rest.is_empty() && !rest.contains('/') {
                    return Some(Route::Retrieve(r, rest.to_string()));
                }
                if let Some((id, child)) = rest.split_once('/') {
                    if let Some(c) = CHILD_ROUTES
                        .iter()
                        .find(|c| c.parent_path == r.path && c.child == child)
                    {
                        if !id.is_empty() {
                            return Some(Route::Children(c, id.to_string()));
                        }
                    }
                }
            }
        }
        None
    }

    /// The endpoint's name in stats (`GET /v1/invoices/{id}/lines`).
    pub fn endpoint(&self) -> String {
        match self {
            Route::Account => "GET /v1/account".into(),
            Route::Balance => "GET /v1/balance".into(),
            Route::Accounts => "GET /v1/accounts".into(),
            Route::ConnectedAccount(_) => "GET /v1/accounts/{id}".into(),
            Route::List(r) => format!("GET /v1/{}", r.path),
            Route::Retrieve(r, _) => format!("GET /v1/{}/{{id}}", r.path),
            Route::Children(c, _) => format!("GET /v1/{}/{{id}}/{}", c.parent_path, c.child),
        }
    }

    fn permission(&self) -> &'static str {
        match self {
            Route::Account => "rak_account_read",
            Route::Balance => "rak_balance_read",
            // The permission name follows the `rak_<resource>_read` pattern; the exact name
            // Stripe uses for Connect's accounts was not confirmed (every emulator key has it).
            Route::Accounts | Route::ConnectedAccount(_) => "rak_connected_account_read",
            Route::List(r) | Route::Retrieve(r, _) => r.permission,
            Route::Children(c, _) => c.permission,
        }
    }
}

/// `GET /v1/{*path}`.
pub async fn v1_get(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().strip_prefix("/v1/").unwrap_or("");
    let route = Route::resolve(path);
    let endpoint = route
        .as_ref()
        .map_or_else(|| "GET (unrecognized)".to_string(), Route::endpoint);
    let result = serve(&state, route, uri.path(), query.as_deref(), &headers);
    let resp = match result {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => e.into_response(),
    };
    state.stats.record(&endpoint, resp.status().as_u16());
    resp
}

fn serve(
    state: &AppState,
    route: Option<Route>,
    full_path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Vec<u8>, ApiError> {
    let caller: Caller = auth::authenticate(headers, state.config.mode)?;
    let route = route.ok_or_else(|| ApiError::unrecognized_url("GET", full_path))?;
    let (lock, connected) = state.store_for(headers, &caller)?;
    let store = lock
        .read()
        .map_err(|_| ApiError::invalid("store", "The emulator's store is unavailable.".into()))?;
    auth::authorize(&caller, route.permission(), &store.account_id)?;
    let params = Params::parse(query)?;
    match route {
        Route::Accounts => crate::connect::list_accounts(&state.connected, connected, &params),
        Route::ConnectedAccount(id) => {
            if connected {
                return Err(ApiError::no_such(404, "account", &id, "account"));
            }
            crate::connect::retrieve_account(&state.connected, &id, &params)
        }
        Route::Account => {
            params.check_known(&["expand"])?;
            Ok(store.account.to_vec())
        }
        Route::Balance => {
            params.check_known(&["expand"])?;
            Ok(store.balance.to_vec())
        }
        Route::Retrieve(r, id) => retrieve(&store, r, &id, &params),
        Route::List(r) => list_top(state, &store, r, &params),
        Route::Children(c, id) => list_children(&store, c, &id, &params),
    }
}

fn retrieve(
    store: &Store,
    r: &kinds::ListRoute,
    id: &str,
    params: &Params,
) -> Result<Vec<u8>, ApiError> {
    params.check_known(&["expand"])?;
    let rec = store
        .get(r.object, id)
        .ok_or_else(|| ApiError::no_such(404, r.object, id, "id"))?;
    let expand = params.list("expand");
    if expand.is_empty() || rec.deleted {
        return Ok(rec.json.to_vec());
    }
    let mut v: Value = serde_json::from_slice(&rec.json)
        .map_err(|_| ApiError::invalid("id", "Stored object is unreadable.".into()))?;
    for path in expand {
        let segs: Vec<&str> = path.split('.').collect();
        check_expand_depth(path, &segs)?;
        expand_value(store, &mut v, r.object, &segs, path)?;
    }
    serde_json::to_vec(&v).map_err(|_| ApiError::invalid("id", "Unserializable object.".into()))
}

/// Parameters every list takes.
const PAGING: &[&str] = &["limit", "starting_after", "ending_before", "expand"];

/// Subscription statuses `status=` accepts on `/v1/subscriptions`.
const SUBSCRIPTION_STATUSES: &[&str] = &[
    "active",
    "all",
    "canceled",
    "ended",
    "incomplete",
    "incomplete_expired",
    "past_due",
    "paused",
    "trialing",
    "unpaid",
];

fn list_top(
    state: &AppState,
    store: &Store,
    r: &'static kinds::ListRoute,
    params: &Params,
) -> Result<Vec<u8>, ApiError> {
    let kind = kinds::kind(r.object).ok_or_else(|| ApiError::unrecognized_url("GET", r.path))?;
    let mut allowed: Vec<&str> = PAGING.to_vec();
    if r.created {
        allowed.push("created");
    }
    let mut parent: Option<String> = None;
    let mut parent_object: Option<&str> = None;
    match r.object {
        "subscription_item" => {
            allowed.push("subscription");
            params.check_known(&allowed)?;
            // Stripe lists subscription items only per subscription.
            let sub = params
                .get("subscription")
                .ok_or_else(|| ApiError::missing_param("subscription"))?;
            if store.get("subscription", sub).is_none() {
                return Err(ApiError::no_such(400, "subscription", sub, "subscription"));
            }
            parent = Some(sub.to_string());
            parent_object = Some("subscription");
        }
        "payment_method" => {
            allowed.extend(["customer", "type"]);
            params.check_known(&allowed)?;
            if let Some(c) = params.get("customer") {
                if store.get("customer", c).is_none() {
                    return Err(ApiError::no_such(400, "customer", c, "customer"));
                }
                parent = Some(c.to_string());
                parent_object = Some("customer");
            }
        }
        "event" => {
            allowed.extend(["type", "types"]);
            params.check_known(&allowed)?;
        }
        _ => {
            allowed.extend(kind.filters.iter().map(|f| f.param));
            params.check_known(&allowed)?;
        }
    }
    let _ = parent_object;
    let url = match (&parent, r.object) {
        (Some(p), "subscription_item") => format!("/v1/subscription_items?subscription={p}"),
        _ => format!("/v1/{}", r.path),
    };
    let order = if r.object == "subscription_item" {
        Order::AsInserted
    } else {
        Order::NewestFirst
    };
    let (mut lo, hi) = params.created()?;
    // Equality filters (everything but the special ones handled below).
    let mut equals: Vec<(&'static str, String)> = Vec::new();
    for f in kind.filters {
        if matches!(
            (r.object, f.param),
            ("subscription", "status") | ("event", "type") | ("payment_method", "customer")
        ) {
            continue;
        }
        if let Some(v) = params.get(f.param) {
            equals.push((f.param, v.to_string()));
        }
    }
    let mut status_filter: Option<Vec<&str>> = None;
    if r.object == "subscription" {
        // Without `status`, Stripe leaves out canceled and incomplete_expired subscriptions.
        status_filter = match params.get("status") {
            None => Some(vec![
                "active",
                "past_due",
                "unpaid",
                "incomplete",
                "trialing",
                "paused",
            ]),
            Some("all") => None,
            Some("ended") => Some(vec!["canceled", "incomplete_expired"]),
            Some(s) if SUBSCRIPTION_STATUSES.contains(&s) => Some(vec![s]),
            Some(_) => {
                return Err(ApiError::invalid(
                    "status",
                    format!(
                        "Invalid status: must be one of {}",
                        SUBSCRIPTION_STATUSES.join(", ")
                    ),
                ))
            }
        };
    }
    let mut type_filter: Option<Vec<String>> = None;
    if r.object == "event" {
        if params.has("type") && params.has("types") {
            return Err(ApiError::only_one("type", "types"));
        }
        if let Some(t) = params.get("type") {
            type_filter = Some(vec![t.to_string()]);
        } else if params.has("types") {
            let types = params.list("types");
            if types.len() > 20 {
                return Err(ApiError::invalid(
                    "types",
                    "You may pass at most 20 event types.".into(),
                ));
            }
            type_filter = Some(types.into_iter().map(str::to_string).collect());
        }
        // Stripe keeps 30 days of events.
        lo = tighten_lo(lo, Bound::Included(state.now() - EVENT_RETENTION_SECS));
    }
    let keep = |rec: &Record| {
        equals.iter().all(|(p, v)| rec.field(p) == Some(v.as_str()))
            && status_filter
                .as_ref()
                .is_none_or(|ss| rec.field("status").is_some_and(|s| ss.contains(&s)))
            && type_filter.as_ref().is_none_or(|ts| {
                rec.field("type")
                    .is_some_and(|t| ts.iter().any(|pat| type_matches(pat, t)))
            })
    };
    run_list(
        store,
        r.object,
        parent.as_deref(),
        order,
        (lo, hi),
        params,
        &url,
        keep,
    )
}

/// Event type matching with Stripe's `*` wildcard (`customer.*`).
fn type_matches(pattern: &str, t: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == t,
        Some((pre, post)) => {
            t.len() >= pre.len() + post.len() && t.starts_with(pre) && t.ends_with(post)
        }
    }
}

fn list_children(
    store: &Store,
    c: &'static ChildRoute,
    parent_id: &str,
    params: &Params,
) -> Result<Vec<u8>, ApiError> {
    let mut allowed: Vec<&str> = PAGING.to_vec();
    if c.object == "payment_method" {
        allowed.push("type");
    }
    params.check_known(&allowed)?;
    if store.get(c.parent_object, parent_id).is_none() {
        return Err(ApiError::no_such(404, c.parent_object, parent_id, "id"));
    }
    let url = format!("/v1/{}/{parent_id}/{}", c.parent_path, c.child);
    let type_eq = params.get("type").map(str::to_string);
    let keep = |rec: &Record| {
        type_eq
            .as_deref()
            .is_none_or(|t| rec.field("type") == Some(t))
    };
    run_list(
        store,
        c.object,
        Some(parent_id),
        c.order,
        (Bound::Unbounded, Bound::Unbounded),
        params,
        &url,
        keep,
    )
}

#[allow(clippy::too_many_arguments)]
fn run_list(
    store: &Store,
    object: &'static str,
    parent: Option<&str>,
    order: Order,
    created: (Bound<i64>, Bound<i64>),
    params: &Params,
    url: &str,
    keep: impl Fn(&Record) -> bool,
) -> Result<Vec<u8>, ApiError> {
    let limit = params.limit()?;
    let table = store
        .table(object)
        .ok_or_else(|| ApiError::unrecognized_url("GET", url))?;
    let after = params.get("starting_after");
    let before = params.get("ending_before");
    let cursor = match (after, before) {
        (Some(_), Some(_)) => return Err(ApiError::only_one("starting_after", "ending_before")),
        (Some(id), None) => Cursor::After(cursor_key(table, object, id, "starting_after")?),
        (None, Some(id)) => Cursor::Before(cursor_key(table, object, id, "ending_before")?),
        (None, None) => Cursor::Start,
    };
    let expand: Vec<&str> = params.list("expand");
    let mut expand_paths = Vec::with_capacity(expand.len());
    for path in &expand {
        let segs: Vec<&str> = path.split('.').collect();
        check_expand_depth(path, &segs)?;
        if segs.first() != Some(&"data") || segs.len() < 2 {
            return Err(not_expandable(path));
        }
        expand_paths.push((path, segs[1..].to_vec()));
    }
    let req = PageRequest {
        limit,
        cursor,
        created_lo: created.0,
        created_hi: created.1,
        order,
    };
    let (records, has_more) = match table.index(parent) {
        Some(index) => {
            let p = store::page(table, index, &req, keep);
            (p.records, p.has_more)
        }
        None => (Vec::new(), false),
    };
    let total: usize = records.iter().map(|r| r.json.len() + 1).sum();
    let mut out = Vec::with_capacity(total + url.len() + 64);
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, rec) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if expand_paths.is_empty() || rec.deleted {
            out.extend_from_slice(&rec.json);
        } else {
            let mut v: Value = serde_json::from_slice(&rec.json)
                .map_err(|_| ApiError::invalid("expand", "Stored object is unreadable.".into()))?;
            for (path, segs) in &expand_paths {
                expand_value(store, &mut v, object, segs, path)?;
            }
            out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
        }
    }
    out.extend_from_slice(b"],\"has_more\":");
    out.extend_from_slice(if has_more { b"true" } else { b"false" });
    out.extend_from_slice(b",\"url\":");
    out.extend_from_slice(&serde_json::to_vec(url).unwrap_or_default());
    out.push(b'}');
    Ok(out)
}

fn cursor_key(
    table: &store::Table,
    object: &str,
    id: &str,
    param: &str,
) -> Result<store::Key, ApiError> {
    table
        .get(id)
        .map(Record::key)
        .ok_or_else(|| ApiError::no_such(400, object, id, param))
}

fn not_expandable(path: &str) -> ApiError {
    ApiError::invalid(
        "expand",
        format!("This property cannot be expanded ({path})."),
    )
}

fn check_expand_depth(path: &str, segs: &[&str]) -> Result<(), ApiError> {
    // Stripe expands at most four levels deep.
    let depth = segs.iter().filter(|s| **s != "data").count();
    if depth > 4 || segs.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid(
            "expand",
            format!("You cannot expand more than 4 levels of a property. Property: {path}"),
        ));
    }
    Ok(())
}

/// Replaces the id at `segs[0]` of `v` (an object of type `object`) with the object it names,
/// then continues with the rest of the path inside it. A field the type does not have is a 400;
/// a null field stays null.
fn expand_value(
    store: &Store,
    v: &mut Value,
    object: &str,
    segs: &[&str],
    path: &str,
) -> Result<(), ApiError> {
    let Some((field, rest)) = segs.split_first() else {
        return Ok(());
    };
    let digest_key = kinds::kind(object).map_or(object, |k| k.digest);
    let known = shapes::digest()
        .get(digest_key)
        .is_some_and(|fields| fields.iter().any(|(f, _)| f == field));
    if !known {
        return Err(not_expandable(path));
    }
    let Some(slot) = v.get_mut(*field) else {
        return Err(not_expandable(path));
    };
    let target_object = match slot {
        Value::String(id) => {
            let Some(obj) = kinds::object_for_id(id) else {
                return Err(not_expandable(path));
            };
            let Some(rec) = store.get(obj, id) else {
                return Ok(());
            };
            let Ok(expanded) = serde_json::from_slice::<Value>(&rec.json) else {
                return Ok(());
            };
            *slot = expanded;
            obj
        }
        Value::Object(o) => match o.get("object").and_then(Value::as_str) {
            Some(obj) => kinds::kind(obj).map_or("", |k| k.object),
            None => return Ok(()),
        },
        Value::Null => return Ok(()),
        _ => return Err(not_expandable(path)),
    };
    if rest.is_empty() || target_object.is_empty() {
        return Ok(());
    }
    expand_value(store, slot, target_object, rest, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve() {
        assert!(
            matches!(Route::resolve("customers"), Some(Route::List(r)) if r.object == "customer")
        );
        assert!(
            matches!(Route::resolve("checkout/sessions/cs_1"), Some(Route::Retrieve(r, id)) if r.object == "checkout.session" && id == "cs_1")
        );
        assert!(
            matches!(Route::resolve("checkout/sessions/cs_1/line_items"), Some(Route::Children(c, _)) if c.object == "item")
        );
        assert!(
            matches!(Route::resolve("invoices/in_1/lines"), Some(Route::Children(c, id)) if c.object == "line_item" && id == "in_1")
        );
        assert!(Route::resolve("nothing").is_none());
        assert!(Route::resolve("customers/cus_1/nothing").is_none());
    }

    #[test]
    fn wildcard_types() {
        assert!(type_matches("customer.*", "customer.created"));
        assert!(type_matches("customer.*", "customer.subscription.created"));
        assert!(!type_matches("customer.*", "invoice.paid"));
        assert!(type_matches("invoice.paid", "invoice.paid"));
    }
}
