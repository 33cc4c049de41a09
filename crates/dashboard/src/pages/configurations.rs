//! A configuration's page: Sync Now, live progress per data type, the schedule editor, key
//! rotation, switching on/off, deletion — and the list of configurations.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use cls_control::{
    check_configuration_key, resume_system_paused, test_configuration, Cadence, Configuration,
    ConfigurationId, ConfigurationPatch, CronExpression, Every, NewSchedule, PageRequest, Schedule,
    SchedulePatch, Store, StoreError, SyncMode, SyncRun, TimeLimits,
};
use cls_stripe::ApiKey;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::projects::database_view;
use super::wizard::{check_view, key_input};
use super::{
    all_configurations, confirm_delete_view, first_schedule, latest_run, shell, toggle_form,
    ActiveForm,
};
use crate::auth::Session;
use crate::error::PageResult;
use crate::layout::{self, badge, button_form, csrf, Nav};
use crate::DashboardState;

/// Runs read to find the current one and the last finished one.
const RECENT_RUNS: u64 = 20;

/// Whether a configuration syncs, in words: `active`, or why it is paused.
fn state_text(c: &Configuration) -> String {
    c.paused()
        .map_or_else(|| "active".to_string(), |p| p.to_string())
}

/// Configurations with their latest run, as a table.
pub(crate) fn table(rows: &[(&Configuration, Option<SyncRun>)]) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr { th { "Configuration" } th { "Key" } th { "Data types" } th { "State" } th { "Last run" } } }
                tbody {
                    @for (c, run) in rows {
                        tr {
                            td { a href={ "/configurations/" (c.id) } { (c.name) } }
                            td.mono { (c.key_masked) }
                            td { (c.data_types.len()) }
                            td { (state_text(c)) }
                            td { @match run {
                                Some(r) => { a href={ "/runs/" (r.id) } { (badge(r.status.as_str())) } " " (r.created_at.format("%Y-%m-%d %H:%M")) }
                                None => { span.muted { "never synced" } }
                            } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /configurations`.
pub(crate) async fn list(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let configurations = all_configurations(store, None).await?;
    let mut rows = Vec::new();
    for c in &configurations {
        rows.push((c, latest_run(store, c).await?));
    }
    let body = html! {
        div.titlebar {
            h1 { "Configurations" }
            a.button.primary href="/configurations/new" { "New configuration" }
        }
        @if rows.is_empty() {
            p.empty { "No configuration yet. A configuration copies one Stripe account into one project." }
        } @else {
            (table(&rows))
        }
    };
    Ok(layout::page(
        shell(&state, &session, "Configurations", Nav::Configurations),
        body,
    ))
}

/// Live progress of one data type.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct TypeProgress {
    /// Data type name.
    pub data_type: String,
    /// Objects received so far.
    pub objects: u64,
    /// Objects the last finished run received (an estimate of the total), if known.
    pub expected: Option<u64>,
    /// Requests made so far.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// 429 responses.
    pub rate_limited: u64,
}

/// The body of the progress endpoints.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Progress {
    /// The run followed, if any.
    pub run_id: Option<i64>,
    /// Its status (`queued`, `running`, …).
    pub status: Option<String>,
    /// Whether it has ended (the page reloads to show the outcome).
    pub finished: bool,
    /// Per chosen data type.
    pub types: Vec<TypeProgress>,
}

/// Progress of `run` over `data_types`, with totals estimated from `previous`.
pub(crate) fn progress_of(
    data_types: &[String],
    run: Option<&SyncRun>,
    previous: Option<&SyncRun>,
) -> Progress {
    let empty = BTreeMap::new();
    let stats = run.map_or(&empty, |r| &r.stats);
    let types = data_types
        .iter()
        .map(|t| {
            let s = stats.get(t).cloned().unwrap_or_default();
            TypeProgress {
                data_type: t.clone(),
                objects: s.objects,
                expected: previous.and_then(|p| p.stats.get(t)).map(|s| s.objects),
                requests: s.requests,
                retries: s.retries,
                rate_limited: s.rate_limited,
            }
        })
        .collect();
    Progress {
        run_id: run.map(|r| r.id.0),
        status: run.map(|r| r.status.to_string()),
        finished: run.is_none_or(|r| r.status.is_finished()),
        types,
    }
}

/// The configuration's current (queued or running) run and its last finished one.
async fn current_and_previous(
    store: &dyn Store,
    id: ConfigurationId,
) -> Result<(Option<SyncRun>, Option<SyncRun>, Vec<SyncRun>), StoreError> {
    let runs = store
        .list_runs(
            id,
            PageRequest {
                offset: 0,
                limit: RECENT_RUNS,
            },
        )
        .await?
        .items;
    // A queued run waits behind a running one: follow the running one first.
    let current = runs
        .iter()
        .find(|r| r.status == cls_control::RunStatus::Running)
        .or_else(|| {
            runs.iter()
                .find(|r| r.status == cls_control::RunStatus::Queued)
        })
        .cloned();
    let previous = runs
        .iter()
        .find(|r| r.status.is_finished() && !r.stats.is_empty())
        .cloned();
    Ok((current, previous, runs))
}

/// What a screen reader is told about the run: `Sync run 3: running.` (`app.js` writes
/// the same words when the status changes).
fn announcement(p: &Progress) -> String {
    match (p.run_id, &p.status) {
        (Some(id), Some(status)) => format!("Sync run {id}: {status}."),
        _ => "No sync run yet.".to_string(),
    }
}

/// The bars, rendered on the server; `app.js` updates them in place.
pub(crate) fn progress_view(url: &str, p: &Progress) -> Markup {
    html! {
        // Only the one-line status is a live region: the counts change every poll and
        // would be read out again and again.
        section.card.progress data-progress-url=(url) data-live=(!p.finished) {
            h2 {
                "Sync run "
                @if let Some(id) = p.run_id { a href={ "/runs/" (id) } { (id) } }
                " " span data-field="status" { (badge(p.status.as_deref().unwrap_or(""))) }
            }
            p.sr-only data-field="announce" role="status" { (announcement(p)) }
            @for t in &p.types {
                div.bar-row data-type=(t.data_type) {
                    label for={ "bar-" (t.data_type) } { (t.data_type) }
                    @match t.expected {
                        // The run is over: every type is done, whatever was estimated (an
                        // indeterminate bar would say it is still working).
                        _ if p.finished => { progress id={ "bar-" (t.data_type) } max="1" value="1" {} }
                        Some(max) if max > 0 => {
                            progress id={ "bar-" (t.data_type) } max=(max) value=(t.objects.min(max)) {}
                        }
                        // No estimate yet (a first run, or a type that had no objects).
                        _ => { progress id={ "bar-" (t.data_type) } {} }
                    }
                    span.count data-field="count" {
                        (t.objects)
                        @if let Some(max) = t.expected { " / ≈" (max) }
                        " objects · " (t.requests) (if t.requests == 1 { " request" } else { " requests" })
                        @if t.rate_limited > 0 { " · " (t.rate_limited) " × 429" }
                    }
                }
            }
            p.hint { "Counts are updated while the run goes; the estimate is the last run's count." }
        }
    }
}

/// Sync Now, with the mode: incremental once a run has copied data, full before.
fn sync_form(session: &Session, c: &Configuration, synced_before: bool) -> Markup {
    html! {
        form.sync method="post" action={ "/configurations/" (c.id) "/sync" } {
            (csrf(session))
            label.sr-only for="sync-mode" { "Sync mode" }
            select #sync-mode name="mode" {
                option value="incremental" selected[synced_before] { "Changes since the last run" }
                option value="full" selected[!synced_before] { "Everything (full)" }
            }
            button.primary type="submit" { "Sync Now" }
        }
    }
}

fn cadence_value(s: Option<&Schedule>) -> (&'static str, String) {
    match s.map(|s| &s.cadence) {
        Some(Cadence::Every(e)) => (e.as_str(), String::new()),
        Some(Cadence::Cron(c)) => ("cron", c.as_str().to_string()),
        None => ("daily", String::new()),
    }
}

fn schedule_view(session: &Session, c: &Configuration, s: Option<&Schedule>) -> Markup {
    let (cadence, cron) = cadence_value(s);
    let mode = s.map_or(SyncMode::Incremental, |s| s.mode);
    html! {
        section.card {
            h2 { "Schedule" }
            @match s {
                None => { p { "No schedule: this configuration syncs only when you press Sync Now." } }
                Some(s) => {
                    p {
                        "Syncs " strong { (s.cadence) } " (" (s.mode) "). "
                        @match s.paused() {
                            Some(p) => { span.badge.paused { "paused" } " " (p.to_string()) }
                            None => { span.badge.succeeded { "active" } }
                        }
                    }
                    @if let Some(reason) = &s.paused_reason { p.notice.warn { "Paused by the system: " (reason) } }
                }
            }
            form method="post" action={ "/configurations/" (c.id) "/schedule" } {
                (csrf(session))
                div.grid2 {
                    div {
                        label for="cadence" { "Every" }
                        select #cadence name="cadence" {
                            @for e in Every::ALL {
                                option value=(e.as_str()) selected[cadence == e.as_str()] { (e.as_str()) }
                            }
                            option value="cron" selected[cadence == "cron"] { "cron expression" }
                        }
                    }
                    div {
                        label for="cron" { "Cron expression (when “cron”)" }
                        input #cron name="cron" type="text" value=(cron) placeholder="0 3 * * *" spellcheck="false";
                    }
                    div {
                        label for="mode" { "Mode" }
                        select #mode name="mode" {
                            option value="incremental" selected[mode == SyncMode::Incremental] { "incremental (changes only)" }
                            option value="full" selected[mode == SyncMode::Full] { "full (everything again)" }
                        }
                    }
                }
                p.hint { "Incremental copies what changed since the last run; full reads every object again." }
                div.actions {
                    button.primary type="submit" { (if s.is_some() { "Save schedule" } else { "Add schedule" }) }
                }
            }
            @if let Some(s) = s {
                div.actions {
                    (toggle_form(session, &format!("/configurations/{}/schedule/active", c.id), s.active, "Pause schedule", "Resume schedule"))
                    (button_form(session, &format!("/configurations/{}/schedule/delete", c.id), "Remove schedule", "danger"))
                }
            }
        }
    }
}

/// `GET /configurations/{id}`.
pub(crate) async fn show(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    let project = store.project(c.project_id).await?;
    let schedule = first_schedule(store, c.id).await?;
    let (current, previous, runs) = current_and_previous(store, c.id).await?;
    let live = current.is_some();
    let progress = progress_of(
        &c.data_types,
        current.as_ref().or(previous.as_ref()),
        previous.as_ref(),
    );
    let body = html! {
        div.titlebar {
            h1 { (c.name) }
            (sync_form(&session, &c, previous.is_some()))
        }
        // Near the title: on a phone the progress bars below run several screens long.
        div.actions.page-links {
            (button_form(&session, &format!("/configurations/{}/check", c.id), "Test Connection", ""))
            @if !runs.is_empty() {
                a.button href={ "/configurations/" (c.id) "/runs" } {
                    "Sync history (" (runs.len()) (if runs.len() as u64 >= RECENT_RUNS { "+" } else { "" })
                    (if runs.len() == 1 { " run)" } else { " runs)" })
                }
            }
        }
        dl.summary {
            dt { "Project" } dd { a href={ "/projects/" (project.id) } { (project.name) } " " span.mono.muted { (project.database_url.masked()) } }
            dt { "Stripe key" } dd { span.mono { (c.key_masked) } " (" (c.key_kind) ", " (c.key_mode) " mode)" }
            dt { "Data types" } dd { (c.data_types.join(", ")) }
            dt { "State" } dd { (state_text(&c)) }
        }
        @if !runs.is_empty() {
            (progress_view(&format!("/configurations/{}/progress", c.id), &progress))
        }
        (schedule_view(&session, &c, schedule.as_ref()))
        section.card {
            h2 { "Rotate the Stripe key" }
            p { "Paste the new key: it is tested, then replaces " span.mono { (c.key_masked) } ". Data types and tables stay as they are." }
            form method="post" action={ "/configurations/" (c.id) "/key" } {
                (csrf(&session))
                (key_input("new-key"))
                div.actions { button type="submit" { "Test and replace key" } }
            }
        }
        (webhook_view(&session, &c))
        section.card {
            h2 { "Stripe Connect" }
            @if c.include_connected_accounts {
                p { "Each run also syncs every connected account this platform key reaches, into the same tables; each row's " span.mono { "account_id" } " says whose it is." }
            } @else {
                p { "Is this a Connect platform? Runs can also sync every connected account the key reaches, into the same tables, each row carrying its " span.mono { "account_id" } "." }
            }
            div.actions {
                (toggle_form(&session, &format!("/configurations/{}/connected-accounts", c.id), c.include_connected_accounts, "Stop syncing connected accounts", "Also sync connected accounts"))
            }
        }
        section.card {
            h2 { "Switch on or off, delete" }
            div.actions {
                (toggle_form(&session, &format!("/configurations/{}/active", c.id), c.active, "Deactivate", "Activate"))
                a.button.danger href={ "/configurations/" (c.id) "/delete" } { "Delete…" }
            }
        }
    };
    let mut shell = shell(&state, &session, &c.name, Nav::Configurations);
    shell.refresh = live;
    Ok(layout::page(shell, body))
}

/// `GET /configurations/{id}/progress`: the JSON `app.js` polls.
pub(crate) async fn progress(
    State(state): State<DashboardState>,
    Path(id): Path<i64>,
) -> PageResult<Json<Progress>> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    let (current, previous, runs) = current_and_previous(store, c.id).await?;
    // Between runs, the latest run's outcome (what the page shows too).
    let shown = current.as_ref().or(runs.first());
    Ok(Json(progress_of(&c.data_types, shown, previous.as_ref())))
}

/// Sync Now's field.
#[derive(Debug, Deserialize)]
pub(crate) struct SyncForm {
    /// `full` or `incremental`; full when missing.
    #[serde(default)]
    mode: String,
}

/// `POST /configurations/{id}/sync`.
pub(crate) async fn sync_now(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<SyncForm>,
) -> PageResult<Response> {
    let c = state.store.configuration(ConfigurationId(id)).await?;
    let mode = form.mode.parse::<SyncMode>().unwrap_or(SyncMode::Full);
    let (ok, text) = match state.runner.sync_now(c.id, mode).await {
        Ok(q) => (true, q.message()),
        Err(cls_control::RunnerError::Store(e)) => return Err(e.into()),
    };
    let text = match c.paused() {
        Some(p) => format!(
            "{text}; but this configuration is {p}, so the run will be canceled: activate it first"
        ),
        None => text,
    };
    state.drafts.notice(&session.id, ok, text);
    Ok(Redirect::to(&format!("/configurations/{id}")).into_response())
}

/// The schedule editor's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct ScheduleForm {
    /// `hourly`, `daily`, `weekly`, `monthly` or `cron`.
    #[serde(default)]
    cadence: String,
    /// The cron expression, when `cadence` is `cron`.
    #[serde(default)]
    cron: String,
    /// `full` or `incremental`.
    #[serde(default)]
    mode: String,
}

fn parse_schedule(form: &ScheduleForm) -> Result<(Cadence, SyncMode), String> {
    let cadence = if form.cadence == "cron" {
        Cadence::Cron(CronExpression::parse(&form.cron).map_err(|e| e.to_string())?)
    } else {
        Cadence::Every(form.cadence.parse::<Every>().map_err(|e| e.to_string())?)
    };
    let mode = form.mode.parse::<SyncMode>().map_err(|e| e.to_string())?;
    Ok((cadence, mode))
}

/// `POST /configurations/{id}/schedule`: creates or changes the schedule.
pub(crate) async fn save_schedule(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<ScheduleForm>,
) -> PageResult<Redirect> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    let (cadence, mode) = match parse_schedule(&form) {
        Ok(x) => x,
        Err(e) => {
            state.drafts.notice(&session.id, false, e);
            return Ok(Redirect::to(&format!("/configurations/{id}")));
        }
    };
    let s = match first_schedule(store, c.id).await? {
        Some(s) => {
            store
                .update_schedule(
                    s.id,
                    SchedulePatch {
                        cadence: Some(cadence),
                        mode: Some(mode),
                        active: None,
                    },
                )
                .await?
        }
        None => {
            store
                .create_schedule(NewSchedule {
                    configuration_id: c.id,
                    cadence,
                    mode,
                })
                .await?
        }
    };
    state.drafts.notice(
        &session.id,
        true,
        format!("Schedule saved: {} ({}).", s.cadence, s.mode),
    );
    Ok(Redirect::to(&format!("/configurations/{id}")))
}

/// `POST /configurations/{id}/schedule/active`: pause or resume.
pub(crate) async fn schedule_active(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> PageResult<Redirect> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    if let Some(s) = first_schedule(store, c.id).await? {
        store
            .update_schedule(
                s.id,
                SchedulePatch {
                    active: Some(form.active),
                    ..SchedulePatch::default()
                },
            )
            .await?;
        let text = if form.active {
            "Schedule resumed."
        } else {
            "Schedule paused."
        };
        state.drafts.notice(&session.id, true, text);
    }
    Ok(Redirect::to(&format!("/configurations/{id}")))
}

/// `POST /configurations/{id}/schedule/delete`: back to Sync Now only.
pub(crate) async fn delete_schedule(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Redirect> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    // Every page of them: the API may have added more than one.
    loop {
        let page = store
            .list_schedules(Some(c.id), PageRequest::default())
            .await?
            .items;
        if page.is_empty() {
            break;
        }
        for s in page {
            store.delete_schedule(s.id).await?;
        }
    }
    state.drafts.notice(
        &session.id,
        true,
        "Schedule removed: this configuration now syncs only when you press Sync Now.",
    );
    Ok(Redirect::to(&format!("/configurations/{id}")))
}

/// The key rotation field.
#[derive(Deserialize)]
pub(crate) struct KeyForm {
    /// The new key (never rendered back, never logged).
    #[serde(default)]
    key: String,
}

/// `POST /configurations/{id}/check`: Test Connection with the stored key and the project's
/// database. When both pass, schedules the system paused (key revoked, permission lost,
/// database unreachable) are resumed — what their pause reasons tell people to do.
pub(crate) async fn test_connection(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let test = test_configuration(
        state.store.as_ref(),
        ConfigurationId(id),
        state.default_stripe_api_base.as_ref(),
        TimeLimits::default(),
    )
    .await?;
    let (c, project) = (&test.configuration, &test.project);
    let body = html! {
        p.crumbs { a href={ "/configurations/" (c.id) } { (c.name) } " ›" }
        h1 { "Test Connection" }
        @if test.passed() {
            p.notice.ok role="status" {
                "Connection test passed."
                @if !test.resumed.is_empty() { " The schedule the system had paused is resumed." }
            }
        } @else {
            p.notice.bad role="status" { "Connection test failed: fix the items marked ✗ below, then test again." }
        }
        section.card {
            h2 { "Stripe, with " span.mono { (c.key_masked) } }
            (check_view(&test.stripe))
        }
        section.card {
            h2 { "Database " span.mono.muted { (project.database_url.masked()) } }
            (database_view(&test.database))
        }
        div.actions {
            (button_form(&session, &format!("/configurations/{}/check", c.id), "Test again", ""))
            a.button.primary href={ "/configurations/" (c.id) } { "Back to " (c.name) }
        }
    };
    Ok(layout::page(
        shell(&state, &session, "Test Connection", Nav::Configurations),
        body,
    ))
}

/// `POST /configurations/{id}/key`: tests the new key, then stores it; resumes schedules
/// the system paused when the new key reads every data type.
pub(crate) async fn rotate_key(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<KeyForm>,
) -> PageResult<Response> {
    let store = state.store.as_ref();
    let c = store.configuration(ConfigurationId(id)).await?;
    let back = Redirect::to(&format!("/configurations/{id}")).into_response();
    let key = match ApiKey::parse(&form.key) {
        Ok(k) => k,
        Err(e) => {
            state
                .drafts
                .notice(&session.id, false, format!("The key was not replaced: {e}"));
            return Ok(back);
        }
    };
    let limit = TimeLimits::default().stripe;
    let default_api_base = state.default_stripe_api_base.as_ref();
    let result = check_configuration_key(&c, &key, default_api_base, limit).await;
    let all_readable = match &result {
        Ok(check) => check.all_readable(),
        Err(e) => {
            state.drafts.notice(
                &session.id,
                false,
                format!("The key was not replaced: Test Connection failed: {e}"),
            );
            return Ok(back);
        }
    };
    let c = store
        .update_configuration(
            c.id,
            ConfigurationPatch {
                key: Some(key),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
    let resumed = if all_readable {
        resume_system_paused(store, c.id).await?
    } else {
        Vec::new()
    };
    let mut text = format!("Key replaced: now {}.", c.key_masked);
    if !resumed.is_empty() {
        text.push_str(" The schedule the system had paused is resumed.");
    }
    if !all_readable {
        text.push_str(" Some data types cannot be read with it: see Test Connection below.");
    }
    state.drafts.notice(&session.id, all_readable, text);
    let page = html! {
        h1 { "Key replaced" }
        p { "Test Connection with " span.mono { (c.key_masked) } ":" }
        (check_view(&result))
        p { a.button.primary href={ "/configurations/" (c.id) } { "Back to " (c.name) } }
    };
    if all_readable {
        return Ok(back);
    }
    Ok(layout::page(
        shell(&state, &session, "Key replaced", Nav::Configurations),
        page,
    )
    .into_response())
}

fn webhook_view(session: &Session, c: &Configuration) -> Markup {
    html! {
        section.card {
            h2 { "Real-time updates (webhooks)" }
            p {
                "In the Stripe Dashboard open Developers → Webhooks → Add endpoint, enter this server's address followed by "
                code { "/webhooks/stripe/" (c.id) } ", select the events of the chosen data types, then paste the endpoint's signing secret here."
            }
            p { "Signing secret: " strong { (if c.has_webhook_secret() { "set" } else { "not set" }) } }
            form method="post" action={ "/configurations/" (c.id) "/webhook-secret" } {
                (csrf(session))
                label for="webhook-secret" { "Signing secret (whsec_…)" }
                input #webhook-secret name="secret" type="password" autocomplete="off" spellcheck="false" placeholder="whsec_…";
                div.actions {
                    button type="submit" name="action" value="save" { "Save signing secret" }
                    @if c.has_webhook_secret() {
                        button.danger type="submit" name="action" value="clear" { "Remove it" }
                    }
                }
            }
        }
    }
}

/// The webhook secret form's fields.
#[derive(Deserialize)]
pub(crate) struct WebhookSecretForm {
    /// The signing secret (never rendered back, never logged).
    #[serde(default)]
    secret: String,
    /// `save` or `clear`.
    #[serde(default)]
    action: String,
}

/// What a pasted signing secret is, or why it is not one.
fn parse_webhook_secret(raw: &str) -> Result<SecretString, &'static str> {
    if raw.trim() != raw || raw.is_empty() {
        return Err("paste the signing secret alone, with nothing before or after it");
    }
    if !raw.starts_with("whsec_") || raw.len() < 16 {
        return Err("this is not a webhook signing secret: copy it from the Stripe Dashboard → Developers → Webhooks → your endpoint → Signing secret (it starts with whsec_)");
    }
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("the signing secret contains characters Stripe never uses (only letters, digits and _): copy it again");
    }
    Ok(SecretString::from(raw))
}

/// `POST /configurations/{id}/webhook-secret`: sets or removes the signing secret.
pub(crate) async fn webhook_secret(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<WebhookSecretForm>,
) -> PageResult<Redirect> {
    let c = state.store.configuration(ConfigurationId(id)).await?;
    let (value, text) = if form.action == "clear" {
        (None, "Webhook signing secret removed: deliveries for this configuration are refused until one is set.")
    } else {
        match parse_webhook_secret(&form.secret) {
            Ok(s) => (Some(s), "Webhook signing secret saved."),
            Err(e) => {
                state.drafts.notice(
                    &session.id,
                    false,
                    format!("The signing secret was not saved: {e}."),
                );
                return Ok(Redirect::to(&format!("/configurations/{id}")));
            }
        }
    };
    state
        .store
        .update_configuration(
            c.id,
            ConfigurationPatch {
                webhook_secret: Some(value),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
    state.drafts.notice(&session.id, true, text);
    Ok(Redirect::to(&format!("/configurations/{id}")))
}

/// `POST /configurations/{id}/active`.
pub(crate) async fn set_active(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> PageResult<Redirect> {
    let c = state
        .store
        .update_configuration(
            ConfigurationId(id),
            ConfigurationPatch {
                active: Some(form.active),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
    let what = if c.active {
        "activated"
    } else {
        "deactivated: it will not sync until activated again"
    };
    state.drafts.notice(
        &session.id,
        true,
        format!("Configuration \"{}\" {what}.", c.name),
    );
    Ok(Redirect::to(&format!("/configurations/{id}")))
}

/// `POST /configurations/{id}/connected-accounts`: Stripe Connect on or off.
pub(crate) async fn set_connected_accounts(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> PageResult<Redirect> {
    let c = state
        .store
        .set_include_connected_accounts(ConfigurationId(id), form.active)
        .await?;
    let text = if c.include_connected_accounts {
        "From the next run, the connected accounts the key reaches are synced too."
    } else {
        "Connected accounts are no longer synced; their rows already copied stay in the tables."
    };
    state.drafts.notice(&session.id, true, text.to_string());
    Ok(Redirect::to(&format!("/configurations/{id}")))
}

/// `GET /configurations/{id}/delete`: the confirmation step.
pub(crate) async fn confirm_delete(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let c = state.store.configuration(ConfigurationId(id)).await?;
    let consequences = html! { "This deletes the configuration, its schedule and its sync history from Codeless Sync. The tables already written in your database are left as they are." };
    let url = format!("/configurations/{}", c.id);
    let body = confirm_delete_view(&session, "configuration", &c.name, &url, consequences);
    Ok(layout::page(
        shell(
            &state,
            &session,
            "Delete configuration",
            Nav::Configurations,
        ),
        body,
    ))
}

/// `POST /configurations/{id}/delete`.
pub(crate) async fn delete(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Redirect> {
    let c = state.store.configuration(ConfigurationId(id)).await?;
    state.store.delete_configuration(c.id).await?;
    state.drafts.notice(
        &session.id,
        true,
        format!("Configuration \"{}\" deleted.", c.name),
    );
    Ok(Redirect::to("/configurations"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(finished: bool, expected: Option<u64>, objects: u64) -> Progress {
        Progress {
            run_id: Some(1),
            status: Some(if finished { "succeeded" } else { "running" }.into()),
            finished,
            types: vec![TypeProgress {
                data_type: "customers".into(),
                objects,
                expected,
                requests: 1,
                retries: 0,
                rate_limited: 0,
            }],
        }
    }

    #[test]
    fn a_finished_run_shows_full_static_bars() {
        // A first run (no estimate), an empty type, fewer objects than estimated.
        for (expected, objects) in [(None, 10), (Some(0), 0), (Some(10), 8)] {
            let html = progress_view("/p", &progress(true, expected, objects)).into_string();
            assert!(
                html.contains("<progress id=\"bar-customers\" max=\"1\" value=\"1\">"),
                "{expected:?}, {objects}: {html}"
            );
        }
        // While running: indeterminate without an estimate, the share with one.
        let html = progress_view("/p", &progress(false, None, 10)).into_string();
        assert!(html.contains("<progress id=\"bar-customers\">"), "{html}");
        let html = progress_view("/p", &progress(false, Some(10), 4)).into_string();
        assert!(
            html.contains("<progress id=\"bar-customers\" max=\"10\" value=\"4\">"),
            "{html}"
        );
    }

    #[test]
    fn only_a_short_status_line_is_announced() {
        let html = progress_view("/p", &progress(false, Some(10), 4)).into_string();
        let live = html.matches("aria-live").count() + html.matches("role=\"status\"").count();
        assert_eq!(live, 1, "one live region: {html}");
        assert!(
            html.contains("role=\"status\">Sync run 1: running.</p>"),
            "{html}"
        );
    }

    #[test]
    fn schedules_parse_from_the_form() {
        let f = |cadence: &str, cron: &str, mode: &str| ScheduleForm {
            cadence: cadence.into(),
            cron: cron.into(),
            mode: mode.into(),
        };
        assert!(matches!(
            parse_schedule(&f("daily", "", "full")),
            Ok((Cadence::Every(Every::Day), SyncMode::Full))
        ));
        assert!(matches!(
            parse_schedule(&f("cron", "0 3 * * *", "incremental")),
            Ok((Cadence::Cron(_), SyncMode::Incremental))
        ));
        let bad = parse_schedule(&f("cron", "every day", "full"));
        assert!(bad.is_err_and(|e| e.contains("five fields")));
        assert!(parse_schedule(&f("sometimes", "", "full")).is_err());
    }

    #[test]
    fn webhook_secrets_are_checked_without_quoting_them() {
        assert!(parse_webhook_secret("whsec_abcdefghijklmnop").is_ok());
        for bad in [
            "",
            " whsec_abcdefghijklmnop",
            "sk_test_abcdefghijklmnop",
            "whsec_abc",
            "whsec_abcdefghij'klmnop",
        ] {
            let e = parse_webhook_secret(bad);
            assert!(e.is_err_and(|m| !m.contains("abcdefghij")), "{bad}");
        }
    }
}
