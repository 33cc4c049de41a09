//! `cls-server`: Codeless Sync's HTTP side — the REST API, health and metrics endpoints, and
//! the Stripe webhook receiver.
//!
//! What `cls serve` calls:
//! 1. [`install_metrics_recorder`] once, for the handle `/metrics` renders;
//! 2. [`AppState::new`] with the state store, the runner, its clock and that handle (then
//!    set `default_stripe_api_base` and `rate_limit` as configured);
//! 3. [`app`] for the router (`/api/…`, `/healthz`, `/readyz`, `/metrics`), merged with the
//!    per-configuration webhook routes ([`configured_webhooks`]; `cls listen`'s
//!    single-secret receiver is [`router`]);
//! 4. [`serve`] with a bound listener and a shutdown signal.
//!
//! Layout:
//! - [`api`]: the REST API — envelope and errors, extractors, the auth and rate-limit guard,
//!   one module per resource, and the OpenAPI document ([`api::ApiDoc`]);
//! - [`observe`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`state`]: [`AppState`]; `app`: the router and [`serve`];
//! - [`webhook`]: signature parsing and verification, pure;
//! - [`router`]: `POST /webhooks/stripe` and `POST /webhooks/stripe/{configuration}`, which
//!   verify a delivery and hand its event to the engine's [`cls_engine::apply_events`] — the
//!   same path as events polled from the feed, so the same ordering guard and dedupe apply;
//! - [`receiver`]: `cls serve`'s `POST /webhooks/stripe/{configuration}`, one endpoint per
//!   configuration of the state store, each with its own signing secret.
//!
//! Webhook answers, as Stripe expects them:
//! - `200` `{"received": true, …}`: the event is stored (or was already: a delivery of an event
//!   already applied changes nothing, and Stripe must not retry it), or it is for data types
//!   not chosen / an unknown object type (skipped, with the reason);
//! - `400` `{"error": …}`: missing, malformed, forged or stale signature, an exact replay of a
//!   delivery already received, or a body that is not an event — nothing is written;
//! - `500`: the database failed; Stripe retries later.

pub mod api;
mod app;
pub mod observe;
pub mod receiver;
pub mod state;
pub mod webhook;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cls_catalog::DataType;
use cls_destination::Destination;
use cls_engine::{apply_events, EventSource, SkipReason};
use cls_stripe::StripeClient;
use serde_json::{json, Value};

pub use app::{app, serve};
pub use observe::install_metrics_recorder;
pub use receiver::configured_webhooks;
pub use state::AppState;
pub use webhook::{ReplayGuard, SignatureError, WebhookSecret, DEFAULT_TOLERANCE_SECS};

/// Everything the receiver needs.
pub struct WebhookState {
    /// The endpoint's signing secret.
    pub secret: WebhookSecret,
    /// Where events are applied.
    pub dest: Arc<dyn Destination>,
    /// For child lists beyond a parent's embedded page; without it they wait for the next
    /// incremental run.
    pub client: Option<StripeClient>,
    /// The Stripe account the destination's rows belong to.
    pub account_id: String,
    /// The chosen data types.
    pub types: Vec<&'static DataType>,
    /// Stripe Connect: apply events of connected accounts (those naming an `account`) under
    /// that account, instead of skipping them.
    pub connected_accounts: bool,
    /// Tolerance of the signature's timestamp, in seconds.
    pub tolerance: i64,
    /// The receiver's clock (unix seconds); tests may fix it.
    pub clock: fn() -> i64,
    replay: Mutex<ReplayGuard>,
}

impl WebhookState {
    /// A receiver with Stripe's default tolerance and the system clock.
    pub fn new(
        secret: WebhookSecret,
        dest: Arc<dyn Destination>,
        client: Option<StripeClient>,
        account_id: String,
        types: Vec<&'static DataType>,
    ) -> Self {
        WebhookState {
            secret,
            dest,
            client,
            account_id,
            types,
            connected_accounts: false,
            tolerance: DEFAULT_TOLERANCE_SECS,
            clock: || chrono::Utc::now().timestamp(),
            replay: Mutex::new(ReplayGuard::default()),
        }
    }
}

/// The receiver's routes.
pub fn router(state: Arc<WebhookState>) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(receive))
        // The configuration segment is for `cls serve`, which routes one endpoint per
        // configuration; a single-configuration receiver accepts and ignores it.
        .route("/webhooks/stripe/{configuration}", post(receive))
        .with_state(state)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn receive(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    deliver(&state, &headers, &body).await
}

/// Verifies one delivery against `state`'s secret and applies its event; the answer Stripe
/// gets (module doc). Shared by `cls listen`'s receiver and `cls serve`'s per-configuration
/// endpoints ([`receiver`](crate::receiver)).
async fn deliver(state: &WebhookState, headers: &HeaderMap, body: &Bytes) -> Response {
    let now = (state.clock)();
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let verified =
        webhook::verify(body, header, &state.secret, now, state.tolerance).and_then(|v| {
            let guard = state.replay.lock().unwrap_or_else(|p| p.into_inner());
            guard.check(&v, now, state.tolerance).map(|()| v)
        });
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "webhook delivery refused");
            return refuse(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let accept = || {
        let mut guard = state.replay.lock().unwrap_or_else(|p| p.into_inner());
        guard.accept(&verified, now, state.tolerance);
    };
    let event: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    // A Connect event names the connected account it happened on. A receiver that syncs
    // connected accounts stores it under that account (fetching its child lists as that
    // account); one that does not skips it.
    let mut account_id = state.account_id.as_str();
    let mut client = state.client.clone();
    if let Some(account) = event.get("account").and_then(Value::as_str) {
        if account != state.account_id {
            if !state.connected_accounts || !account.starts_with("acct_") {
                accept();
                return (
                    StatusCode::OK,
                    Json(
                        json!({"received": true, "id": id, "skipped": "event of another account"}),
                    ),
                )
                    .into_response();
            }
            account_id = account;
            client = client.map(|c| c.with_account(Some(account.to_string())));
        }
    }
    let applied = apply_events(
        client.as_ref(),
        state.dest.as_ref(),
        account_id,
        &state.types,
        std::slice::from_ref(&event),
        EventSource::Webhook,
    )
    .await;
    match applied {
        Ok(stats) => {
            if stats.skipped(SkipReason::Malformed) > 0 {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "the body is not a Stripe event (id, type, created and data.object are required)"
                        .to_string(),
                );
            }
            accept();
            let skipped = stats.skipped.keys().next().map(|r| r.as_str());
            let written: u64 = stats.types.values().map(|t| t.inserted + t.updated).sum();
            tracing::info!(event = %id, written, "webhook event applied");
            (
                StatusCode::OK,
                Json(json!({
                    "received": true,
                    "id": id,
                    "rows_written": written,
                    "skipped": skipped,
                })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(event = %id, error = %e, "webhook event could not be applied");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}
