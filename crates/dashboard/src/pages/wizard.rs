//! The configuration wizard: (1) data types, (2) project, (3) Stripe key and Test
//! Connection, (4) tables, (5) review and name.
//!
//! Each step posts to the server, which keeps the answers in the session's draft
//! ([`crate::drafts`]) and redirects to the next step, so the back button and a reload are
//! harmless and the Stripe key pasted at step 3 is never sent back to the browser.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use axum_extra::extract::Form;
use cls_catalog::{DataType, CATALOG};
use cls_control::{check_key, NewConfiguration, Project, ProjectId, StripeCheckError, TimeLimits};
use cls_engine::StripeCheck;
use cls_stripe::ApiKey;
use maud::{html, Markup};
use serde::Deserialize;

use super::{all_projects, shell};
use crate::auth::Session;
use crate::drafts::Wizard;
use crate::error::{PageError, PageResult};
use crate::layout::{self, csrf, mark, Nav};
use crate::DashboardState;

/// The steps' names, in order.
const STEPS: &[&str] = &["Data types", "Project", "Stripe key", "Tables", "Review"];

fn steps(current: usize) -> Markup {
    html! {
        ol.wizard-steps aria-label="Steps" {
            @for (i, name) in STEPS.iter().enumerate() {
                li.done[i < current] aria-current=[(i == current).then_some("step")] {
                    span.num { (i + 1) } " " (name)
                }
            }
        }
    }
}

fn wizard_page(
    state: &DashboardState,
    session: &Session,
    step: usize,
    body: Markup,
    status: StatusCode,
) -> Response {
    let title = format!("New configuration: {}", STEPS[step]);
    let body = html! {
        h1 { "New configuration" }
        (steps(step))
        (body)
    };
    (
        status,
        layout::page(shell(state, session, &title, Nav::Configurations), body),
    )
        .into_response()
}

fn draft(state: &DashboardState, session: &Session) -> Wizard {
    state.drafts.with(&session.id, |d| d.wizard.clone())
}

/// The catalog's data types grouped by Stripe Dashboard section, sections in catalog order.
fn sections() -> Vec<(&'static str, Vec<&'static DataType>)> {
    let mut out: Vec<(&'static str, Vec<&'static DataType>)> = Vec::new();
    for t in CATALOG {
        match out.iter_mut().find(|(s, _)| *s == t.dashboard_section) {
            Some((_, types)) => types.push(t),
            None => out.push((t.dashboard_section, vec![t])),
        }
    }
    out
}

/// Step 1's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct TypesForm {
    /// The chosen data types (one field per ticked box).
    #[serde(default)]
    types: Vec<String>,
}

fn types_view(session: &Session, chosen: &[&'static DataType], error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.notice.bad role="alert" { (e) } }
        form.card method="post" action="/configurations/new" {
            (csrf(session))
            p { "Which Stripe data should be copied? Each data type becomes one table." }
            div.type-groups {
                @for (section, types) in sections() {
                    fieldset {
                        legend { (section) }
                        @for t in types {
                            div.check-row {
                                input type="checkbox" name="types" value=(t.name) id={ "t-" (t.name) }
                                    checked[chosen.iter().any(|c| c.name == t.name)];
                                label for={ "t-" (t.name) } { (t.name) }
                            }
                        }
                    }
                }
            }
            div.actions { button.primary type="submit" { "Next: project" } }
        }
    }
}

/// `GET /configurations/new`.
pub(crate) async fn types_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Response {
    let d = draft(&state, &session);
    wizard_page(
        &state,
        &session,
        0,
        types_view(&session, &d.types, None),
        StatusCode::OK,
    )
}

/// `POST /configurations/new`.
pub(crate) async fn types_submit(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<TypesForm>,
) -> Response {
    // Catalog order, whatever order the form sent; unknown names are not offered, so
    // they are dropped.
    let chosen: Vec<&'static DataType> = CATALOG
        .iter()
        .filter(|t| form.types.iter().any(|n| n == t.name))
        .collect();
    if chosen.is_empty() {
        let view = types_view(
            &session,
            &[],
            Some("no data type chosen: tick at least one, e.g. customers"),
        );
        return wizard_page(&state, &session, 0, view, StatusCode::BAD_REQUEST);
    }
    state.drafts.with(&session.id, |d| {
        if d.wizard.types != chosen {
            // A new choice must be tested again.
            d.wizard.check = None;
        }
        d.wizard.types = chosen;
    });
    Redirect::to("/configurations/new/project").into_response()
}

/// Step 2's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct ProjectChoice {
    /// The chosen project's id.
    project: Option<i64>,
}

fn project_view(
    session: &Session,
    projects: &[Project],
    chosen: Option<ProjectId>,
    error: Option<&str>,
) -> Markup {
    html! {
        @if let Some(e) = error { p.notice.bad role="alert" { (e) } }
        @if projects.is_empty() {
            div.card {
                p { "There is no project yet: the configuration needs a database to write into." }
                a.button.primary href="/projects/new" { "Create a project" }
                p.hint { "Then come back to " a href="/configurations/new/project" { "this step" } "; the data types you chose are kept." }
            }
        } @else {
            form.card method="post" action="/configurations/new/project" {
                (csrf(session))
                fieldset {
                    legend { "Which database should the data go into?" }
                    @for p in projects {
                        div.check-row {
                            input type="radio" name="project" value=(p.id) id={ "p-" (p.id) }
                                checked[chosen == Some(p.id) || (chosen.is_none() && projects.len() == 1)];
                            label for={ "p-" (p.id) } {
                                (p.name) " " span.mono.muted { (p.database_url.masked()) }
                                @if !p.active { " (inactive)" }
                            }
                        }
                    }
                }
                div.actions {
                    a.button href="/configurations/new" { "Back" }
                    button.primary type="submit" { "Next: Stripe key" }
                }
                p.hint { "Or " a href="/projects/new" { "create another project" } "." }
            }
        }
    }
}

/// `GET /configurations/new/project`.
pub(crate) async fn project_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Response> {
    let d = draft(&state, &session);
    if d.types.is_empty() {
        return Ok(Redirect::to("/configurations/new").into_response());
    }
    let projects = all_projects(state.store.as_ref()).await?;
    let view = project_view(&session, &projects, d.project, None);
    Ok(wizard_page(&state, &session, 1, view, StatusCode::OK))
}

/// `POST /configurations/new/project`.
pub(crate) async fn project_submit(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<ProjectChoice>,
) -> PageResult<Response> {
    let projects = all_projects(state.store.as_ref()).await?;
    let Some(p) = form
        .project
        .and_then(|id| projects.iter().find(|p| p.id.0 == id))
    else {
        let view = project_view(
            &session,
            &projects,
            None,
            Some("no project chosen: pick the database the data should go into"),
        );
        return Ok(wizard_page(
            &state,
            &session,
            1,
            view,
            StatusCode::BAD_REQUEST,
        ));
    };
    let id = p.id;
    state
        .drafts
        .with(&session.id, |d| d.wizard.project = Some(id));
    Ok(Redirect::to("/configurations/new/key").into_response())
}

/// Step 3's key field.
#[derive(Deserialize)]
pub(crate) struct KeyForm {
    /// The pasted key (never rendered back, never logged).
    #[serde(default)]
    key: String,
}

/// Test Connection, Stripe side, for a pasted key: through the dashboard's Stripe API base.
async fn check_pasted_key(
    state: &DashboardState,
    key: &ApiKey,
    types: &[&'static DataType],
) -> Result<StripeCheck, StripeCheckError> {
    let limit = TimeLimits::default().stripe;
    check_key(key, state.default_stripe_api_base.as_ref(), types, limit).await
}

/// The Test Connection result, one line per data type.
pub(crate) fn check_view<E: std::fmt::Display>(result: &Result<StripeCheck, E>) -> Markup {
    match result {
        Err(e) => html! {
            div.check role="status" { p { (mark(false)) " " (e) } }
        },
        Ok(c) => html! {
            div.check role="status" {
                p { (mark(true)) " Stripe account " span.mono { (c.account_id) }
                    @if let Some(name) = &c.account_name { " (" (name) ")" } }
                ul.type-results {
                    @for t in &c.types {
                        li {
                            (mark(t.readable)) " " strong { (t.data_type) }
                            @if let Some(p) = &t.missing_permission {
                                " — missing " code { (p) } ": in the Stripe Dashboard open Developers → API keys → your restricted key → Edit, and set "
                                strong { (section_of(t.data_type)) } " to Read."
                            } @else if let Some(e) = &t.error {
                                " — " (e)
                            }
                        }
                    }
                }
                @if !c.connected.accounts.is_empty() {
                    p { "Stripe Connect: this platform key reaches "
                        (c.connected.accounts.len())
                        (if c.connected.accounts.len() == 1 { " connected account" } else { " connected accounts" })
                        " (synced when the configuration's Stripe Connect option is on): "
                        @for (i, a) in c.connected.accounts.iter().take(20).enumerate() {
                            @if i > 0 { ", " }
                            span.mono { (a.id) } @if let Some(n) = &a.name { " (" (n) ")" }
                        }
                        @if c.connected.accounts.len() > 20 { ", …" }
                    }
                }
                @if let Some(e) = &c.connected.error {
                    p.muted { "Connected accounts: " (e) }
                }
                @if c.all_readable() {
                    p.ok { "Every chosen data type can be read." }
                } @else {
                    p.bad { "Data types marked ✗ will fail until the key gets the permission. Fix the key and test again, or go on and fix it later." }
                }
            }
        },
    }
}

fn section_of(data_type: &str) -> &'static str {
    cls_catalog::find(data_type).map_or("the matching section", |t| t.dashboard_section)
}

/// How the key field and its live helper look.
pub(crate) fn key_input(id: &str) -> Markup {
    html! {
        label for=(id) { "Stripe API key" }
        input id=(id) name="key" type="password" autocomplete="off" spellcheck="false" required
            data-key-helper={ (id) "-info" } placeholder="rk_live_… or rk_test_…";
        p.hint id={ (id) "-info" } aria-live="polite" {
            "A restricted key (rk_…) with Read on the chosen data types is recommended. The mode (test/live) and key type are read from the prefix."
        }
    }
}

fn key_view(session: &Session, d: &Wizard, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.notice.bad role="alert" { (e) } }
        @if let Some(key) = &d.key {
            section.card {
                h2 { "Key " span.mono { (key.masked()) } }
                p { (key.kind()) " key, " strong { (key.mode()) " mode" } }
                @if let Some(w) = key.warning() { p.notice.warn { (w) } }
                @if let Some(result) = &d.check { (check_view(result)) }
                div.actions {
                    form.inline method="post" action="/configurations/new/check" {
                        (csrf(session))
                        button type="submit" { "Test connection again" }
                    }
                    @if matches!(d.check, Some(Ok(_))) {
                        a.button.primary href="/configurations/new/tables" { "Next: tables" }
                    }
                }
            }
        }
        form.card method="post" action="/configurations/new/key" {
            (csrf(session))
            @if d.key.is_some() { p { "Paste another key to replace it:" } }
            (key_input("key"))
            div.actions {
                a.button href="/configurations/new/project" { "Back" }
                button.primary type="submit" { "Test connection" }
            }
        }
    }
}

/// `GET /configurations/new/key`.
pub(crate) async fn key_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Response {
    let d = draft(&state, &session);
    if d.project.is_none() {
        return Redirect::to("/configurations/new/project").into_response();
    }
    wizard_page(
        &state,
        &session,
        2,
        key_view(&session, &d, None),
        StatusCode::OK,
    )
}

/// `POST /configurations/new/key`: parse, keep server-side, test.
pub(crate) async fn key_submit(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<KeyForm>,
) -> Response {
    let key = match ApiKey::parse(&form.key) {
        Ok(k) => k,
        Err(e) => {
            let d = draft(&state, &session);
            let view = key_view(&session, &d, Some(&e.to_string()));
            return wizard_page(&state, &session, 2, view, StatusCode::BAD_REQUEST);
        }
    };
    let types = draft(&state, &session).types;
    let result = check_pasted_key(&state, &key, &types).await;
    state.drafts.with(&session.id, |d| {
        d.wizard.key = Some(key);
        d.wizard.check = Some(result);
    });
    Redirect::to("/configurations/new/key").into_response()
}

/// `POST /configurations/new/check`: Test Connection again with the kept key.
pub(crate) async fn check_submit(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Response {
    let d = draft(&state, &session);
    let Some(key) = d.key else {
        return Redirect::to("/configurations/new/key").into_response();
    };
    let result = check_pasted_key(&state, &key, &d.types).await;
    state
        .drafts
        .with(&session.id, |d| d.wizard.check = Some(result));
    Redirect::to("/configurations/new/key").into_response()
}

/// The draft as far as step 4 needs it, or where to go instead.
fn ready_for_tables(d: &Wizard) -> Result<(ProjectId, &ApiKey), &'static str> {
    let Some(project) = d.project else {
        return Err("/configurations/new/project");
    };
    match (&d.key, &d.check) {
        (Some(key), Some(Ok(_))) => Ok((project, key)),
        _ => Err("/configurations/new/key"),
    }
}

/// Step 4's field.
#[derive(Debug, Deserialize)]
pub(crate) struct TablesForm {
    /// `auto` or `manual`.
    #[serde(default)]
    tables: String,
}

/// `GET /configurations/new/tables`.
pub(crate) async fn tables_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Response> {
    let d = draft(&state, &session);
    let project = match ready_for_tables(&d) {
        Ok((project, _)) => project,
        Err(to) => return Ok(Redirect::to(to).into_response()),
    };
    let p = state.store.project(project).await?;
    let sql = match cls_destination::connect(&p.database_url, &p.schema).await {
        Ok(dest) => Ok(dest.create_tables_sql(&d.types)),
        Err(e) => Err(e.to_string()),
    };
    let auto = d.tables_auto.unwrap_or(true);
    let view = html! {
        form.card method="post" action="/configurations/new/tables" {
            (csrf(&session))
            fieldset {
                legend { "Tables in " (p.name) }
                div.check-row {
                    input #tables-auto type="radio" name="tables" value="auto" checked[auto];
                    label for="tables-auto" { "Create them automatically (recommended): one table per data type, added when missing, never dropped." }
                }
                div.check-row {
                    input #tables-manual type="radio" name="tables" value="manual" checked[!auto];
                    label for="tables-manual" { "I will run the SQL myself (for a database user that may not create tables)." }
                }
            }
            @match &sql {
                Ok(sql) => {
                    details open[!auto] {
                        summary { "The exact SQL" }
                        pre.sql { code { (sql) } }
                    }
                }
                Err(e) => { p.notice.bad { "Cannot reach the database to prepare the SQL: " (e) } }
            }
            div.actions {
                a.button href="/configurations/new/key" { "Back" }
                button.primary type="submit" { "Next: review" }
            }
        }
    };
    Ok(wizard_page(&state, &session, 3, view, StatusCode::OK))
}

/// `POST /configurations/new/tables`.
pub(crate) async fn tables_submit(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<TablesForm>,
) -> Response {
    let auto = form.tables != "manual";
    state
        .drafts
        .with(&session.id, |d| d.wizard.tables_auto = Some(auto));
    Redirect::to("/configurations/new/review").into_response()
}

/// Step 5's field.
#[derive(Debug, Deserialize)]
pub(crate) struct ReviewForm {
    /// The configuration's name.
    #[serde(default)]
    name: String,
}

fn review_view(session: &Session, d: &Wizard, p: &Project, key: &ApiKey, name: &str) -> Markup {
    let readable = match &d.check {
        Some(Ok(c)) => c.types.iter().filter(|t| t.readable).count(),
        _ => 0,
    };
    html! {
        form.card method="post" action="/configurations/new/review" {
            (csrf(session))
            dl.summary {
                dt { "Data types" } dd { (d.types.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")) }
                dt { "Project" } dd { (p.name) " " span.mono.muted { (p.database_url.masked()) } }
                dt { "Stripe key" } dd { span.mono { (key.masked()) } " (" (key.kind()) ", " (key.mode()) " mode)" }
                dt { "Test Connection" } dd { (readable) " of " (d.types.len()) " data types readable" }
                dt { "Tables" } dd { (if d.tables_auto.unwrap_or(true) { "created automatically" } else { "created by you with the SQL shown" }) }
            }
            label for="name" { "Name" }
            input #name name="name" type="text" required value=(name);
            div.actions {
                a.button href="/configurations/new/tables" { "Back" }
                button.primary type="submit" { "Create configuration" }
            }
        }
    }
}

/// `GET /configurations/new/review`.
pub(crate) async fn review_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Response> {
    let d = draft(&state, &session);
    let (project, key) = match ready_for_tables(&d) {
        Ok(x) => x,
        Err(to) => return Ok(Redirect::to(to).into_response()),
    };
    let p = state.store.project(project).await?;
    let name = format!("Stripe ({}) → {}", key.mode(), p.name);
    let view = review_view(&session, &d, &p, key, &name);
    Ok(wizard_page(&state, &session, 4, view, StatusCode::OK))
}

/// `POST /configurations/new/review`: creates the configuration (and the tables, when
/// chosen), then forgets the draft.
pub(crate) async fn review_submit(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<ReviewForm>,
) -> PageResult<Response> {
    let d = draft(&state, &session);
    let (project, key) = match ready_for_tables(&d) {
        Ok((p, k)) => (p, k.clone()),
        Err(_) => {
            return Err(PageError::BadRequest(
                "this wizard has no Stripe key any more (it was finished in another tab, you signed out, or cls restarted): start again from the first step".into(),
            ))
        }
    };
    let p = state.store.project(project).await?;
    let created = state
        .store
        .create_configuration(NewConfiguration {
            name: form.name.clone(),
            project_id: project,
            key: key.clone(),
            data_types: d.types.clone(),
            stripe_api_base: None,
            webhook_secret: None,
        })
        .await;
    let c = match created {
        Ok(c) => c,
        Err(cls_control::StoreError::Invalid { reason, .. }) => {
            let view = html! {
                p.notice.bad role="alert" { (reason) }
                (review_view(&session, &d, &p, &key, &form.name))
            };
            return Ok(wizard_page(
                &state,
                &session,
                4,
                view,
                StatusCode::BAD_REQUEST,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut notice = (true, format!("Configuration \"{}\" created.", c.name));
    if d.tables_auto.unwrap_or(true) {
        let prepared = match cls_destination::connect(&p.database_url, &p.schema).await {
            Ok(dest) => dest.prepare(&d.types).await,
            Err(e) => Err(e),
        };
        notice = match prepared {
            Ok(()) => (
                true,
                format!(
                    "Configuration \"{}\" created, and its tables are ready. Press Sync Now to copy the data.",
                    c.name
                ),
            ),
            Err(e) => (
                false,
                format!(
                    "Configuration \"{}\" created, but its tables could not be created yet ({e}); the first sync tries again.",
                    c.name
                ),
            ),
        };
    }
    state
        .drafts
        .with(&session.id, |dr| dr.wizard = Wizard::default());
    state.drafts.notice(&session.id, notice.0, notice.1);
    Ok(Redirect::to(&format!("/configurations/{}", c.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cls_engine::TypeAccess;

    #[test]
    fn test_connection_escapes_what_stripe_says_and_names_the_permission() {
        let check = StripeCheck {
            key_kind: "restricted".into(),
            mode: "test".into(),
            key: "rk_test_…abcd".into(),
            warning: None,
            account_id: "acct_<b>1</b>".into(),
            account_name: Some("<script>alert(1)</script>".into()),
            types: vec![
                TypeAccess {
                    data_type: "customers",
                    readable: true,
                    missing_permission: None,
                    error: None,
                },
                TypeAccess {
                    data_type: "charges",
                    readable: false,
                    missing_permission: Some("rak_charge_read".into()),
                    error: Some("<img src=x onerror=alert(1)>".into()),
                },
            ],
            connected: Default::default(),
        };
        let html = check_view(&Ok::<_, String>(check)).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>1"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("rak_charge_read"), "{html}");
        assert!(html.contains("<strong>Charges</strong> to Read"), "{html}");
        let failed =
            check_view(&Err::<StripeCheck, _>("<img src=x onerror=alert(1)>")).into_string();
        assert!(!failed.contains("<img"), "{failed}");
    }

    #[test]
    fn data_types_are_grouped_by_dashboard_section_in_catalog_order() {
        let groups = sections();
        assert_eq!(groups.first().map(|g| g.0), Some("Customers"));
        let total: usize = groups.iter().map(|g| g.1.len()).sum();
        assert_eq!(total, CATALOG.len());
        let subs = groups.iter().find(|g| g.0 == "Subscriptions");
        assert!(subs.is_some_and(|g| g.1.len() > 1));
    }
}
