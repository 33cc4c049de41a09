//! The pages, one module per area. Handlers are thin: read the request, call the store or
//! runner, pick a view; the views are plain functions returning [`maud::Markup`].

pub(crate) mod configurations;
pub(crate) mod projects;
pub(crate) mod runs;
pub(crate) mod settings;
pub(crate) mod wizard;

use axum::extract::State;
use axum::Extension;
use cls_control::{
    Configuration, ConfigurationId, PageRequest, Project, ProjectId, Schedule, Store, StoreError,
    SyncRun,
};
use maud::{html, Markup};
use serde::Deserialize;

use crate::auth::Session;
use crate::error::PageResult;
use crate::layout::{self, button_form, csrf, Nav, Shell};
use crate::DashboardState;

/// The shell of a signed-in page, taking the session's pending notice.
pub(crate) fn shell<'a>(
    state: &DashboardState,
    session: &'a Session,
    title: &'a str,
    nav: Nav,
) -> Shell<'a> {
    Shell {
        session,
        title,
        nav,
        notice: state.drafts.take_notice(&session.id),
        refresh: false,
    }
}

/// Every project (the dashboard lists them whole; people have a handful).
pub(crate) async fn all_projects(store: &dyn Store) -> Result<Vec<Project>, StoreError> {
    Ok(store
        .list_projects(PageRequest {
            offset: 0,
            limit: 1000,
        })
        .await?
        .items)
}

/// Every configuration, of one project when given.
pub(crate) async fn all_configurations(
    store: &dyn Store,
    project: Option<ProjectId>,
) -> Result<Vec<Configuration>, StoreError> {
    Ok(store
        .list_configurations(
            project,
            PageRequest {
                offset: 0,
                limit: 1000,
            },
        )
        .await?
        .items)
}

/// A configuration's schedule: the dashboard edits one (the API may add more; the first is
/// shown).
pub(crate) async fn first_schedule(
    store: &dyn Store,
    configuration: ConfigurationId,
) -> Result<Option<Schedule>, StoreError> {
    let first = PageRequest {
        offset: 0,
        limit: 1,
    };
    Ok(store
        .list_schedules(Some(configuration), first)
        .await?
        .items
        .into_iter()
        .next())
}

/// The field of a switch ([`toggle_form`]).
#[derive(Debug, Deserialize)]
pub(crate) struct ActiveForm {
    /// Switch on (`true`) or off.
    pub active: bool,
}

/// A switch: a form posting `active` = the opposite of `active` to `action`; its button
/// says what pressing it does (`turn_off` while on, `turn_on` while off).
pub(crate) fn toggle_form(
    session: &Session,
    action: &str,
    active: bool,
    turn_off: &str,
    turn_on: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(session))
            input type="hidden" name="active" value=(if active { "false" } else { "true" });
            button type="submit" { (if active { turn_off } else { turn_on }) }
        }
    }
}

/// The confirmation step before deleting the `what` (`project`, `configuration`) named
/// `name` whose page is `url`: what goes with it, then Delete (posting to `{url}/delete`)
/// or Keep it (back to `url`).
pub(crate) fn confirm_delete_view(
    session: &Session,
    what: &str,
    name: &str,
    url: &str,
    consequences: Markup,
) -> Markup {
    html! {
        h1 { "Delete " (what) " \"" (name) "\"?" }
        div.card.danger-zone {
            p { (consequences) }
            div.actions {
                (button_form(session, &format!("{url}/delete"), &format!("Delete {what}"), "danger"))
                a.button href=(url) { "Keep it" }
            }
        }
    }
}

/// A configuration's latest run, if any.
pub(crate) async fn latest_run(
    store: &dyn Store,
    configuration: &Configuration,
) -> Result<Option<SyncRun>, StoreError> {
    Ok(store
        .list_runs(
            configuration.id,
            PageRequest {
                offset: 0,
                limit: 1,
            },
        )
        .await?
        .items
        .into_iter()
        .next())
}

/// `GET /`: what exists and what to do next.
pub(crate) async fn home(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let projects = all_projects(store).await?;
    let configurations = all_configurations(store, None).await?;
    let mut rows = Vec::new();
    for c in &configurations {
        rows.push((c, latest_run(store, c).await?));
    }
    let body = html! {
        h1 { "Overview" }
        @if projects.is_empty() {
            section.card {
                h2 { "Get started" }
                ol.steps {
                    li { strong { "Create a project" } ": the database your Stripe data goes into (Supabase, Neon, any PostgreSQL, or a SQLite file)." }
                    li { strong { "Create a configuration" } ": pick the data types, paste a Stripe key, Test Connection." }
                    li { strong { "Sync Now" } ", then query your tables in SQL." }
                }
                a.button.primary href="/projects/new" { "Create a project" }
            }
        } @else if configurations.is_empty() {
            section.card {
                h2 { "Next: a configuration" }
                p { "You have " (projects.len()) " project(s). A configuration feeds one of them from a Stripe account." }
                a.button.primary href="/configurations/new" { "Create a configuration" }
            }
        } @else {
            (configurations::table(&rows))
            p { a.button href="/configurations/new" { "New configuration" } }
        }
    };
    Ok(layout::page(
        shell(&state, &session, "Overview", Nav::Home),
        body,
    ))
}
