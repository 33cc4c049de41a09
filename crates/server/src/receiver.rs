//! `cls serve`'s webhook endpoints: `POST /webhooks/stripe/{configuration}`, one per
//! configuration of the state store, each verified with that configuration's own signing
//! secret and applied to its project's database through the same path as `cls listen`
//! (`deliver` in the crate root).
//!
//! What a configuration's receiver needs (its secret, a connection to its database, the
//! Stripe account its rows belong to) is built on its first delivery and kept until the
//! configuration or its project changes (a rotated secret or key, a new database URL).
//!
//! Answers besides those of `cls listen`'s receiver:
//! - `404`: no configuration with that id (a stale endpoint URL: Stripe should stop);
//! - `400`: the configuration has no signing secret yet, so nothing can be verified;
//! - `200` `{"received": true, "skipped": …}`: a correctly signed delivery for a paused
//!   configuration — nothing is written, and the next incremental run reads the event from
//!   Stripe's events feed, so Stripe need not retry;
//! - `500`: the state or the destination database failed; Stripe retries later.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cls_control::{Configuration, ConfigurationId, Project, Store, StoreError};
use cls_engine::resolve_account;
use cls_stripe::{ClientConfig, RequestCounters};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::sync::Mutex;
use url::Url;

use crate::webhook::{self, WebhookSecret};
use crate::{deliver, refuse, WebhookState};

/// The receivers built so far, per configuration.
struct Receivers {
    /// Where configurations and projects are read.
    store: Arc<dyn Store>,
    /// The server's `--stripe-api-base`, for configurations without their own.
    default_api_base: Option<Url>,
    /// Built receivers with the versions they were built from.
    built: Mutex<HashMap<ConfigurationId, Built>>,
}

/// One configuration's receiver.
struct Built {
    /// `updated_at` of the configuration and of its project when it was built.
    stamp: (DateTime<Utc>, DateTime<Utc>),
    /// The receiver.
    state: Arc<WebhookState>,
}

/// The routes: `POST /webhooks/stripe/{configuration}`.
pub fn configured_webhooks(store: Arc<dyn Store>, default_api_base: Option<Url>) -> Router {
    let receivers = Arc::new(Receivers {
        store,
        default_api_base,
        built: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/webhooks/stripe/{configuration}", post(receive))
        .with_state(receivers)
}

async fn receive(
    State(receivers): State<Arc<Receivers>>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let not_found = || {
        refuse(
            StatusCode::NOT_FOUND,
            format!("there is no configuration `{raw}`: the endpoint URL ends with the id of a configuration, e.g. /webhooks/stripe/3"),
        )
    };
    let Ok(id) = raw.parse::<i64>() else {
        return not_found();
    };
    let configuration = match receivers.store.configuration(ConfigurationId(id)).await {
        Ok(c) => c,
        Err(StoreError::NotFound { .. }) => {
            // Deleted: its receiver (and its connection to the database) goes with it.
            receivers.forget(ConfigurationId(id)).await;
            return not_found();
        }
        Err(e) => return unavailable(&e),
    };
    let Some(raw_secret) = configuration.webhook_secret.as_ref() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("configuration {id} has no webhook signing secret, so this delivery cannot be verified: add the endpoint's whsec_… secret to the configuration"),
        );
    };
    let secret = match WebhookSecret::parse(raw_secret.expose_secret()) {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Anyone can reach this endpoint: the signature is checked before any work is done for
    // the delivery (a Stripe request, a connection to the project's database) and before an
    // answer can say anything about that database. `deliver` checks it again, with replays.
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let now = Utc::now().timestamp();
    if let Err(e) = webhook::verify(&body, header, &secret, now, webhook::DEFAULT_TOLERANCE_SECS) {
        tracing::warn!(configuration_id = id, error = %e, "webhook delivery refused");
        return refuse(StatusCode::BAD_REQUEST, e.to_string());
    }
    if let Some(paused) = configuration.paused() {
        return (
            StatusCode::OK,
            Json(json!({"received": true, "skipped": paused.to_string()})),
        )
            .into_response();
    }
    let project = match receivers.store.project(configuration.project_id).await {
        Ok(p) => p,
        Err(StoreError::NotFound { .. }) => {
            receivers.forget(configuration.id).await;
            return not_found();
        }
        Err(e) => return unavailable(&e),
    };
    let state = match receivers.state_for(configuration, &project, secret).await {
        Ok(s) => s,
        Err(message) => {
            tracing::error!(configuration_id = id, %message, "cannot set up the webhook receiver");
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, message);
        }
    };
    deliver(&state, &headers, &body).await
}

/// `500` for a state store that failed: Stripe retries the delivery later.
fn unavailable(e: &StoreError) -> Response {
    tracing::error!(error = %e, "webhook delivery: the state store failed");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the state database is unavailable; Stripe will retry this delivery".to_string(),
    )
}

impl Receivers {
    /// Drops a configuration's receiver, if one was built.
    async fn forget(&self, id: ConfigurationId) {
        self.built.lock().await.remove(&id);
    }

    /// The configuration's receiver, built (or rebuilt after a change) when needed.
    async fn state_for(
        &self,
        configuration: Configuration,
        project: &Project,
        secret: WebhookSecret,
    ) -> Result<Arc<WebhookState>, String> {
        let stamp = (configuration.updated_at, project.updated_at);
        if let Some(b) = self.built.lock().await.get(&configuration.id) {
            if b.stamp == stamp {
                return Ok(b.state.clone());
            }
        }
        // Built without holding the map: a configuration whose Stripe API or database is
        // slow to answer must not hold up the deliveries of every other configuration. Two
        // first deliveries of one configuration may both build; the later one is kept.
        let mut types = Vec::new();
        for name in &configuration.data_types {
            let t = cls_catalog::find(name).ok_or_else(|| {
                format!("data type `{name}` is not in this version's catalog: recreate the configuration with known data types")
            })?;
            types.push(t);
        }
        let client = configuration
            .stripe_client(self.default_api_base.as_ref(), ClientConfig::default())
            .map_err(|e| e.to_string())?;
        let account_id = resolve_account(&client, &RequestCounters::default())
            .await
            .map_err(|e| {
                format!("cannot read the Stripe account of the configuration's key: {e}")
            })?;
        let dest = cls_destination::connect(&project.database_url, &project.schema)
            .await
            .map_err(|e| e.to_string())?;
        dest.prepare(&types).await.map_err(|e| e.to_string())?;
        let mut state = WebhookState::new(secret, Arc::from(dest), Some(client), account_id, types);
        state.connected_accounts = configuration.include_connected_accounts;
        let state = Arc::new(state);
        self.built.lock().await.insert(
            configuration.id,
            Built {
                stamp,
                state: state.clone(),
            },
        );
        Ok(state)
    }
}
