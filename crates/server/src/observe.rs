//! Health, readiness and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics`. None of them
//! needs an API key (probes and scrapers carry none) and none says anything secret.
//!
//! - `/healthz`: the process is up and serving (liveness);
//! - `/readyz`: the state store answers a cheap query within [`READY_TIMEOUT`] (readiness);
//!   `503` otherwise;
//! - `/metrics`: the Prometheus text format — every `metrics` counter the process records
//!   (the runner's `cls_sync_*` family) through the recorder [`install_metrics_recorder`]
//!   installed, plus `cls_sync_runs_by_status{status}`, the runs in the state store by
//!   status, counted at scrape time, and `cls_state_store_up`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use cls_control::{PageRequest, RunStatus};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{ApiError, Envelope, ErrorCode};
use crate::state::AppState;

/// How long `/readyz` waits for the state store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The handle of the recorder this process installed, once it has.
static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the process-wide Prometheus recorder the first time it is called and returns a
/// handle to render it; later calls return the same handle (so tests, and a serve command
/// started twice in one process, can all call it). Fails only when another recorder (not
/// this function's) was installed first.
pub fn install_metrics_recorder() -> Result<PrometheusHandle, BuildError> {
    let mut installed = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new().install_recorder()?;
    *installed = Some(handle.clone());
    Ok(handle)
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: &'static str,
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Response {
    Envelope::ok(Health { status: "ok" })
}

/// `GET /readyz`: the state store is reachable.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let probe = state.store.list_projects(PageRequest {
        offset: 0,
        limit: 1,
    });
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => Envelope::ok(Health { status: "ready" }),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the state store failed");
            not_ready("the state store failed a query: the server's log has the cause")
        }
        Err(_) => not_ready(&format!(
            "the state store did not answer within {} s",
            READY_TIMEOUT.as_secs()
        )),
    }
}

fn not_ready(why: &str) -> Response {
    ApiError::new(
        ErrorCode::Unavailable,
        format!("not ready: {why}; check that the state database is running and reachable"),
    )
    .into_response()
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut body = state.metrics.render();
    // Rendered here rather than set as a global gauge: each scrape reads this state store,
    // whichever recorder (or none) the process installed.
    let counts = tokio::time::timeout(READY_TIMEOUT, state.store.run_status_counts()).await;
    let up = match counts {
        Ok(Ok(counts)) => {
            let _ = writeln!(
                body,
                "# HELP cls_sync_runs_by_status Sync runs in the state store, by status.\n# TYPE cls_sync_runs_by_status gauge"
            );
            for status in RunStatus::ALL {
                let n = counts.get(status).copied().unwrap_or(0);
                let _ = writeln!(body, "cls_sync_runs_by_status{{status=\"{status}\"}} {n}");
            }
            1
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "metrics: the state store failed");
            0
        }
        Err(_) => 0,
    };
    let _ = writeln!(
        body,
        "# HELP cls_state_store_up Whether the state store answered this scrape.\n# TYPE cls_state_store_up gauge\ncls_state_store_up {up}"
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
