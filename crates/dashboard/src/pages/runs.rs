//! Sync history: a configuration's runs with their counters and a chart, one run's detail
//! (with Cancel while it is queued or running) and its live progress.

use axum::extract::{Path, State};
use axum::response::Redirect;
use axum::{Extension, Json};
use chrono::Utc;
use cls_control::{ConfigurationId, PageRequest, RunId, SyncRun};
use maud::{html, Markup};

use super::configurations::{progress_of, progress_view, Progress};
use super::shell;
use crate::auth::Session;
use crate::chart;
use crate::error::PageResult;
use crate::layout::{self, badge, button_form, Nav};
use crate::DashboardState;

/// Runs shown in the history.
const HISTORY_LEN: u64 = 100;

fn duration_text(run: &SyncRun) -> String {
    match run.duration().map(|d| d.as_secs_f64()) {
        Some(s) if s < 60.0 => format!("{s:.1} s"),
        Some(s) => format!("{}m {:02}s", (s / 60.0) as u64, (s as u64) % 60),
        None if run.started_at.is_some() => "running".into(),
        None => "—".into(),
    }
}

/// `GET /configurations/{id}/runs`.
pub(crate) async fn history(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    let runs = store
        .list_runs(
            c.id,
            PageRequest {
                offset: 0,
                limit: HISTORY_LEN,
            },
        )
        .await?;
    let points: Vec<chart::Point> = runs
        .items
        .iter()
        .rev()
        .map(|r| chart::Point {
            label: r.id.to_string(),
            objects: r.totals().objects,
            seconds: r.duration().map(|d| d.as_secs_f64()),
        })
        .collect();
    let body = html! {
        p.crumbs { a href={ "/configurations/" (c.id) } { (c.name) } " ›" }
        h1 { "Sync history" }
        @if runs.items.is_empty() {
            p.empty { "No run yet: press Sync Now on the configuration's page." }
        } @else {
            (chart::history(&points))
            div.table-wrap {
                table.runs {
                    thead { tr {
                        th { "Run" } th { "Status" } th { "Trigger" } th { "Started" } th { "Duration" }
                        th { "Objects per data type" } th.num { "Requests" } th.num { "Retries" } th.num { "429s" } th.num { "Errors" }
                    } }
                    tbody {
                        @for r in &runs.items {
                            @let t = r.totals();
                            tr {
                                td { a href={ "/runs/" (r.id) } { "#" (r.id) } }
                                td { (badge(r.status.as_str())) }
                                td { (r.trigger) " · " (r.mode) }
                                td { (r.started_at.unwrap_or(r.created_at).format("%Y-%m-%d %H:%M:%S")) }
                                td { (duration_text(r)) }
                                td.types {
                                    @for (name, s) in &r.stats {
                                        span.type-count { (name) " " strong { (s.objects) } }
                                    }
                                }
                                td.num { (t.requests) }
                                td.num { (t.retries) }
                                td.num { (t.rate_limited) }
                                td.num { (r.errors.len()) }
                            }
                        }
                    }
                }
            }
            @if runs.total > HISTORY_LEN { p.hint { "The " (HISTORY_LEN) " most recent of " (runs.total) " runs." } }
        }
    };
    Ok(layout::page(
        shell(&state, &session, "Sync history", Nav::Configurations),
        body,
    ))
}

/// `GET /runs/{id}`.
pub(crate) async fn show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let run = store.run(RunId(id)).await?;
    let c = store.configuration(run.configuration_id).await?;
    let live = !run.status.is_finished();
    let t = run.totals();
    let body = html! {
        p.crumbs {
            a href={ "/configurations/" (c.id) } { (c.name) } " › "
            a href={ "/configurations/" (c.id) "/runs" } { "Sync history" } " ›"
        }
        div.titlebar {
            h1 { "Sync run #" (run.id) " " (badge(run.status.as_str())) }
            @if live {
                (button_form(&session, &format!("/runs/{}/cancel", run.id), "Cancel run", "danger"))
            }
        }
        dl.summary {
            dt { "Trigger" } dd { (run.trigger) }
            dt { "Mode" } dd { (run.mode) }
            dt { "Queued" } dd { (run.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
            dt { "Started" } dd { @match run.started_at { Some(s) => { (s.format("%Y-%m-%d %H:%M:%S UTC")) }, None => { "not yet" } } }
            dt { "Duration" } dd { (duration_text(&run)) }
            dt { "Totals" } dd { (t.objects) " objects, " (t.inserted) " inserted, " (t.updated) " updated, " (t.deleted) " deleted; "
                (t.requests) " requests, " (t.retries) " retries, " (t.rate_limited) " × 429" }
        }
        @if live {
            (progress_view(&format!("/runs/{}/progress", run.id), &progress_of(&c.data_types, Some(&run), None)))
        }
        @if !run.stats.is_empty() {
            h2 { "Per data type" }
            div.table-wrap {
                table.per-type {
                    thead { tr { th { "Data type" } th.num { "Objects" } th.num { "Inserted" } th.num { "Updated" } th.num { "Deleted" } th.num { "Requests" } th.num { "Retries" } th.num { "429s" } } }
                    tbody {
                        @for (name, s) in &run.stats {
                            tr {
                                td { (name) }
                                td.num { (s.objects) } td.num { (s.inserted) } td.num { (s.updated) } td.num { (s.deleted) }
                                td.num { (s.requests) } td.num { (s.retries) } td.num { (s.rate_limited) }
                            }
                        }
                    }
                }
            }
        }
        @if !run.errors.is_empty() {
            h2 { "Errors" }
            ul.errors {
                @for e in &run.errors {
                    li { @if let Some(t) = &e.data_type { strong { (t) } ": " } (e.message) }
                }
            }
        }
    };
    let mut shell = shell(&state, &session, "Sync run", Nav::Configurations);
    shell.refresh = live;
    Ok(layout::page(shell, body))
}

/// `GET /runs/{id}/progress`.
pub(crate) async fn progress(
    State(state): State<DashboardState>,
    Path(id): Path<i64>,
) -> PageResult<Json<Progress>> {
    let store = state.store.as_ref();
    let run = store.run(RunId(id)).await?;
    let c = store.configuration(run.configuration_id).await?;
    Ok(Json(progress_of(&c.data_types, Some(&run), None)))
}

/// `POST /runs/{id}/cancel`.
pub(crate) async fn cancel(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Redirect> {
    let run = state.store.run(RunId(id)).await?;
    let text = match state.store.request_cancel(run.id, Utc::now()).await {
        Ok(r) if r.status.is_finished() => (true, format!("Sync run {} canceled.", r.id)),
        Ok(r) => (
            true,
            format!(
                "Cancel requested: sync run {} stops at its next checkpoint.",
                r.id
            ),
        ),
        Err(cls_control::StoreError::RunFinished { id, status }) => (
            false,
            format!("Sync run {id} had already ended ({status}): nothing to cancel."),
        ),
        Err(e) => return Err(e.into()),
    };
    state.drafts.notice(&session.id, text.0, text.1);
    Ok(Redirect::to(&format!("/runs/{id}")))
}
