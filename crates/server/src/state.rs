//! [`AppState`]: what the HTTP server's handlers share.

use std::sync::Arc;

use cls_control::{Clock, Runner, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use url::Url;

use crate::api::RateLimit;

/// Everything the API, health and metrics handlers need. Build it with [`AppState::new`]
/// and change the public fields before handing it to [`crate::app`].
#[derive(Debug, Clone)]
pub struct AppState {
    /// The state store: projects, configurations, schedules, runs, API keys.
    pub store: Arc<dyn Store>,
    /// Queues runs for Sync Now (the same runner the worker loop steps).
    pub runner: Runner,
    /// Where "now" comes from (the runner's clock, so tests control both).
    pub clock: Arc<dyn Clock>,
    /// The server's `--stripe-api-base`, for Test Connection of configurations without
    /// their own; `None` means Stripe's. Give the runner the same value.
    pub default_stripe_api_base: Option<Url>,
    /// Requests each API client may make.
    pub rate_limit: RateLimit,
    /// Renders the process's metrics at `GET /metrics`
    /// ([`crate::install_metrics_recorder`]).
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// State with the default rate limit and Stripe's API as the default base.
    pub fn new(
        store: Arc<dyn Store>,
        runner: Runner,
        clock: Arc<dyn Clock>,
        metrics: PrometheusHandle,
    ) -> AppState {
        AppState {
            store,
            runner,
            clock,
            default_stripe_api_base: None,
            rate_limit: RateLimit::default(),
            metrics,
        }
    }
}
