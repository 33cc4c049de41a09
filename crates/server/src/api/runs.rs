//! Sync runs: a configuration's sync history (`/api/configurations/{id}/runs`), one run with
//! its per-data-type counts and errors (`/api/runs/{id}`), and cancelling one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use cls_control::{ConfigurationId, RunId, RunStatus, SyncRun, TypeStats};
use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::{ApiError, ApiResult, Envelope, ErrorEnvelope, ListEnvelope};
use super::extract::{parse_id, PageQuery};
use crate::state::AppState;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatusView {
    /// Waiting for a worker (or for the configuration's current run to end).
    Queued,
    /// A worker is executing it.
    Running,
    /// Every chosen data type was copied.
    Succeeded,
    /// Some data types failed; the others were copied.
    Partial,
    /// Nothing was copied.
    Failed,
    /// Stopped on request.
    Canceled,
}

impl From<RunStatus> for RunStatusView {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Queued => RunStatusView::Queued,
            RunStatus::Running => RunStatusView::Running,
            RunStatus::Succeeded => RunStatusView::Succeeded,
            RunStatus::Partial => RunStatusView::Partial,
            RunStatus::Failed => RunStatusView::Failed,
            RunStatus::Canceled => RunStatusView::Canceled,
        }
    }
}

/// Counters for one data type in one run (or summed over all of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct TypeStatsView {
    /// Objects received from Stripe.
    pub objects: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows marked deleted.
    pub deleted: u64,
    /// HTTP requests made to Stripe.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Rate-limited (429) responses received.
    pub rate_limited: u64,
}

impl From<&TypeStats> for TypeStatsView {
    fn from(t: &TypeStats) -> Self {
        TypeStatsView {
            objects: t.objects,
            inserted: t.inserted,
            updated: t.updated,
            deleted: t.deleted,
            requests: t.requests,
            retries: t.retries,
            rate_limited: t.rate_limited,
        }
    }
}

/// One error a run met, in words a person can act on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunErrorView {
    /// The data type it concerns, if any.
    pub data_type: Option<String>,
    /// What happened and what to do.
    pub message: String,
}

/// A sync run as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunView {
    /// Its id.
    pub id: i64,
    /// The configuration it syncs.
    pub configuration_id: i64,
    /// What started it: `manual`, `schedule`, `webhook` or `cli`.
    pub trigger: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// Where it is in its life.
    pub status: RunStatusView,
    /// Someone asked to cancel it while it ran; it stops at its next checkpoint.
    pub cancel_requested: bool,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Counters per data type.
    pub stats: BTreeMap<String, TypeStatsView>,
    /// The counters summed over every data type.
    pub totals: TypeStatsView,
    /// Errors, in the order met.
    pub errors: Vec<RunErrorView>,
}

impl From<&SyncRun> for RunView {
    fn from(r: &SyncRun) -> Self {
        let stats: BTreeMap<String, TypeStatsView> = r
            .stats
            .iter()
            .map(|(k, v)| (k.clone(), TypeStatsView::from(v)))
            .collect();
        RunView {
            id: r.id.0,
            configuration_id: r.configuration_id.0,
            trigger: r.trigger.to_string(),
            mode: r.mode.to_string(),
            status: r.status.into(),
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            stats,
            totals: TypeStatsView::from(&r.totals()),
            errors: r
                .errors
                .iter()
                .map(|e| RunErrorView {
                    data_type: e.data_type.clone(),
                    message: e.message.clone(),
                })
                .collect(),
        }
    }
}

fn run_id(raw: &str) -> Result<RunId, ApiError> {
    parse_id(raw).map(RunId)
}

/// A configuration's sync history, newest first.
#[utoipa::path(get, path = "/api/configurations/{id}/runs", operation_id = "list_runs", tag = "runs",
    params(("id" = i64, Path, description = "Configuration id"), PageQuery),
    responses(
        (status = 200, description = "One page of runs", body = ListEnvelope<RunView>),
        (status = 400, description = "Bad `page` or `limit`", body = ErrorEnvelope),
        (status = 404, description = "No such configuration", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    page: PageQuery,
) -> ApiResult {
    let id = ConfigurationId(parse_id(&id)?);
    // An unknown configuration is a 404, not an empty history.
    state.store.configuration(id).await?;
    let got = state.store.list_runs(id, page.request()).await?;
    let items = got.items.iter().map(RunView::from).collect();
    Ok(ListEnvelope::ok(items, page.pagination(got.total)))
}

/// One run, with its counts per data type and its errors.
#[utoipa::path(get, path = "/api/runs/{id}", operation_id = "get_run", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = Envelope<RunView>),
        (status = 404, description = "No such run", body = ErrorEnvelope),
    ))]
pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let run = state.store.run(run_id(&id)?).await?;
    Ok(Envelope::ok(RunView::from(&run)))
}

/// Cancels a run: a queued run ends at once; a running one is asked to stop and does at its
/// next checkpoint (`cancel_requested`). A run that already ended is a `409`.
#[utoipa::path(post, path = "/api/runs/{id}/cancel", operation_id = "cancel_run", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run after the request", body = Envelope<RunView>),
        (status = 404, description = "No such run", body = ErrorEnvelope),
        (status = 409, description = "The run has already ended", body = ErrorEnvelope),
    ))]
pub async fn cancel(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let run = state
        .store
        .request_cancel(run_id(&id)?, state.clock.now())
        .await?;
    Ok(Envelope::ok(RunView::from(&run)))
}
