//! Projects: the destination databases. List, create (with Test Connection before saving),
//! edit, switch on/off, delete after a confirmation.
//!
//! A connection string is never rendered back: after Test Connection the form shows its
//! masked form and keeps the real one in the session's drafts until Save.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cls_control::{
    check_database, DatabaseCheck, DatabaseCheckError, NewProject, Project, ProjectId,
    ProjectPatch, TimeLimits, DEFAULT_SCHEMA,
};
use cls_destination::{DatabaseKind, DatabaseUrl};
use maud::{html, Markup};
use serde::Deserialize;

use super::{
    all_configurations, all_projects, confirm_delete_view, shell, toggle_form, ActiveForm,
};
use crate::auth::Session;
use crate::drafts::PendingUrl;
use crate::error::PageResult;
use crate::layout::{self, csrf, mark, Nav};
use crate::DashboardState;

/// The kinds offered, with the hint shown for each: `(value, label, hint)`.
const KINDS: &[(&str, &str, &str)] = &[
    (
        "supabase",
        "Supabase",
        "Supabase: Project Settings → Database → Connection string → Transaction pooler, the URL on port 6543 (postgresql://postgres.<ref>:<password>@aws-0-<region>.pooler.supabase.com:6543/postgres).",
    ),
    (
        "neon",
        "Neon",
        "Neon: Dashboard → Connect, with Connection pooling on: the host ending in -pooler (postgresql://<user>:<password>@ep-…-pooler.<region>.aws.neon.tech/neondb?sslmode=require).",
    ),
    (
        "postgres",
        "Other PostgreSQL",
        "PostgreSQL: postgres://user:password@host:5432/dbname (add ?sslmode=require for TLS). The user needs to create a schema and tables, or run the SQL shown later by hand.",
    ),
    (
        "sqlite",
        "SQLite",
        "SQLite: a file path such as sqlite://./cls-data/stripe.db (created if missing).",
    ),
];

/// The project form's fields.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProjectForm {
    /// Name shown to people.
    #[serde(default)]
    name: String,
    /// `supabase`, `neon`, `postgres` or `sqlite`: picks the hint and is checked against the URL.
    #[serde(default)]
    kind: String,
    /// The connection string; empty keeps the tested (or, when editing, the saved) one.
    #[serde(default)]
    database_url: String,
    /// Target schema.
    #[serde(default)]
    schema: String,
    /// `test` or `save`.
    #[serde(default)]
    action: String,
}

/// What Test Connection found in a database, or why it could not ask.
type Tested = Result<DatabaseCheck, DatabaseCheckError>;

/// Test Connection's database half, in words.
pub(crate) fn database_view(tested: &Tested) -> Markup {
    match tested {
        Err(e) => html! {
            div.check role="status" {
                p { (mark(false)) " " (e) }
            }
        },
        Ok(DatabaseCheck {
            info,
            create_tables_sql,
        }) => html! {
            div.check role="status" {
                p { (mark(true)) " Reached " (info.kind) " " (info.server_version) }
                p { (mark(true)) " TLS " (if info.tls { "in use" } else { "not in use" }) }
                p { (mark(info.can_create)) " Can create the schema \"" (info.schema) "\" and its tables"
                    @if !info.can_create { ": grant CREATE on the database, or run the SQL shown in the configuration wizard by hand" } }
                @if let Some(sql) = create_tables_sql {
                    details {
                        summary { "The SQL to run by hand" }
                        pre.sql { code { (sql) } }
                    }
                }
            }
        },
    }
}

/// The kind (a [`KINDS`] value) a saved connection string belongs to. The kind chosen at
/// creation is not stored, so it is read back from the host: Supabase's and Neon's own
/// domains, `sqlite:`, else any other PostgreSQL.
fn kind_of(url: &DatabaseUrl) -> &'static str {
    if url.kind() == DatabaseKind::Sqlite {
        return "sqlite";
    }
    // The masked form keeps the host (only the password is replaced).
    let host = url::Url::parse(url.masked())
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if under("supabase.co") || under("supabase.com") {
        "supabase"
    } else if under("neon.tech") {
        "neon"
    } else {
        "postgres"
    }
}

/// The label of a [`KINDS`] value.
fn kind_label(value: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| k.0 == value)
        .map_or("unknown", |k| k.1)
}

/// The create/edit form. `kept` is the masked connection string already known (tested or
/// saved), shown instead of the real one.
fn form_view(
    session: &Session,
    action: &str,
    form: &ProjectForm,
    kept: Option<&str>,
    error: Option<&str>,
    tested: Option<&Tested>,
) -> Markup {
    let kind = if form.kind.is_empty() {
        "supabase"
    } else {
        form.kind.as_str()
    };
    let schema = if form.schema.is_empty() {
        DEFAULT_SCHEMA
    } else {
        form.schema.as_str()
    };
    html! {
        @if let Some(e) = error { p.notice.bad role="alert" { (e) } }
        form.card method="post" action=(action) {
            (csrf(session))
            label for="name" { "Name" }
            input #name name="name" type="text" required value=(form.name) placeholder="Production analytics";
            label for="kind" { "Kind" }
            select #kind name="kind" {
                @for (value, label, _) in KINDS {
                    option value=(value) selected[*value == kind] { (label) }
                }
            }
            label for="database_url" { "Connection string" }
            input #database_url name="database_url" type="text" autocomplete="off" spellcheck="false"
                placeholder=(kept.map_or("postgresql://user:password@host:6543/postgres".to_string(), |k| format!("kept: {k} (paste again to change)")))
                aria-describedby="url-hints";
            ul #url-hints .hints {
                @for (value, _, hint) in KINDS {
                    li data-kind=(value) .current[*value == kind] { (hint) }
                }
            }
            label for="schema" { "Schema" }
            input #schema name="schema" type="text" value=(schema) pattern="[a-z_][a-z0-9_]*";
            p.hint { "PostgreSQL only: the tables go into this schema. SQLite ignores it." }
            @if let Some(t) = tested { (database_view(t)) }
            div.actions {
                button type="submit" name="action" value="test" { "Test connection" }
                button.primary type="submit" name="action" value="save" { "Save project" }
            }
        }
    }
}

/// `GET /projects`.
pub(crate) async fn list(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> PageResult<Markup> {
    let projects = all_projects(state.store.as_ref()).await?;
    let body = html! {
        div.titlebar {
            h1 { "Projects" }
            a.button.primary href="/projects/new" { "New project" }
        }
        @if projects.is_empty() {
            p.empty { "No project yet. A project is the database your Stripe data is copied into." }
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Name" } th { "Kind" } th { "Database" } th { "Schema" } th { "State" } } }
                    tbody {
                        @for p in &projects {
                            tr {
                                td { a href={ "/projects/" (p.id) } { (p.name) } }
                                td { (kind_label(kind_of(&p.database_url))) }
                                td.mono { (p.database_url.masked()) }
                                td { (p.schema) }
                                td { (if p.active { "active" } else { "inactive" }) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        shell(&state, &session, "Projects", Nav::Projects),
        body,
    ))
}

/// `GET /projects/new`.
pub(crate) async fn new_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
) -> Markup {
    let kept = state.drafts.with(&session.id, |d| match &d.pending_url {
        Some(p) if p.project.is_none() => Some(p.url.masked().to_string()),
        _ => None,
    });
    let body = html! {
        h1 { "New project" }
        p { "A project is the database Codeless Sync writes into. Its connection string is encrypted at rest and never shown again in full." }
        (form_view(&session, "/projects", &ProjectForm::default(), kept.as_deref(), None, None))
    };
    layout::page(shell(&state, &session, "New project", Nav::Projects), body)
}

/// The connection string a submitted form means: the pasted one, or the one kept.
fn chosen_url(
    state: &DashboardState,
    session: &Session,
    project: Option<ProjectId>,
    form: &ProjectForm,
) -> Result<Option<DatabaseUrl>, String> {
    let raw = form.database_url.trim();
    if raw.is_empty() {
        return Ok(state.drafts.with(&session.id, |d| match &d.pending_url {
            Some(p) if p.project == project => Some(p.url.clone()),
            _ => None,
        }));
    }
    let url = DatabaseUrl::parse(raw).map_err(|e| e.to_string())?;
    let wants_sqlite = form.kind == "sqlite";
    if wants_sqlite != (url.kind() == DatabaseKind::Sqlite) {
        return Err(format!(
            "the kind is {} but the connection string is a {} URL: pick the matching kind, or paste the other connection string",
            kind_label(&form.kind),
            url.kind()
        ));
    }
    Ok(Some(url))
}

/// Test Connection or Save for a new project (`project` = `None`) or an existing one.
async fn submit(
    state: &DashboardState,
    session: &Session,
    project: Option<&Project>,
    mut form: ProjectForm,
) -> PageResult<Response> {
    let id = project.map(|p| p.id);
    let action = match id {
        Some(id) => format!("/projects/{id}"),
        None => "/projects".to_string(),
    };
    let title = if project.is_some() {
        "Edit project"
    } else {
        "New project"
    };
    let schema = match form.schema.trim() {
        "" => DEFAULT_SCHEMA.to_string(),
        s => s.to_string(),
    };
    let url = chosen_url(state, session, id, &form);
    let kept_masked = |url: &Option<DatabaseUrl>| {
        url.as_ref()
            .map(|u| u.masked().to_string())
            .or_else(|| project.map(|p| p.database_url.masked().to_string()))
    };
    let render = |form: &ProjectForm,
                  kept: Option<String>,
                  error: Option<String>,
                  tested: Option<Tested>,
                  status: StatusCode| {
        let body = html! {
            h1 { (title) }
            (form_view(session, &action, form, kept.as_deref(), error.as_deref(), tested.as_ref()))
        };
        (
            status,
            layout::page(shell(state, session, title, Nav::Projects), body),
        )
            .into_response()
    };
    // The pasted text is never rendered back.
    form.database_url.clear();
    let url = match url {
        Ok(u) => u,
        Err(e) => {
            return Ok(render(
                &form,
                kept_masked(&None),
                Some(e),
                None,
                StatusCode::BAD_REQUEST,
            ))
        }
    };
    if let Some(u) = &url {
        state.drafts.with(&session.id, |d| {
            d.pending_url = Some(PendingUrl {
                project: id,
                url: u.clone(),
            })
        });
    }
    if form.action == "test" {
        let Some(target) = url
            .clone()
            .or_else(|| project.map(|p| p.database_url.clone()))
        else {
            return Ok(render(
                &form,
                None,
                Some("paste a connection string to test".into()),
                None,
                StatusCode::BAD_REQUEST,
            ));
        };
        let limit = TimeLimits::default().database;
        let tested = check_database(&target, &schema, &[], limit).await;
        return Ok(render(
            &form,
            kept_masked(&url),
            None,
            Some(tested),
            StatusCode::OK,
        ));
    }
    let saved = match project {
        None => {
            let Some(database_url) = url else {
                return Ok(render(
                    &form,
                    None,
                    Some("the connection string is empty: paste the URL of the database to write into".into()),
                    None,
                    StatusCode::BAD_REQUEST,
                ));
            };
            state
                .store
                .create_project(NewProject {
                    name: form.name.clone(),
                    database_url,
                    schema: Some(schema),
                })
                .await
        }
        Some(p) => {
            state
                .store
                .update_project(
                    p.id,
                    ProjectPatch {
                        name: Some(form.name.clone()),
                        database_url: url,
                        schema: Some(schema),
                        active: None,
                    },
                )
                .await
        }
    };
    match saved {
        Ok(p) => {
            state.drafts.with(&session.id, |d| d.pending_url = None);
            state
                .drafts
                .notice(&session.id, true, format!("Project \"{}\" saved.", p.name));
            Ok(Redirect::to("/projects").into_response())
        }
        Err(cls_control::StoreError::Invalid { reason, .. }) => Ok(render(
            &form,
            kept_masked(&None),
            Some(reason),
            None,
            StatusCode::BAD_REQUEST,
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /projects`.
pub(crate) async fn create(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Form(form): Form<ProjectForm>,
) -> PageResult<Response> {
    submit(&state, &session, None, form).await
}

/// `GET /projects/{id}`.
pub(crate) async fn edit_form(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let p = store.project(ProjectId(id)).await?;
    let configurations = all_configurations(store, Some(p.id)).await?;
    let form = ProjectForm {
        name: p.name.clone(),
        kind: kind_of(&p.database_url).to_string(),
        schema: p.schema.clone(),
        ..ProjectForm::default()
    };
    let action = format!("/projects/{}", p.id);
    let body = html! {
        h1 { (p.name) }
        p { "Database " span.mono { (p.database_url.masked()) } " · " (if p.active { "active" } else { "inactive: none of its configurations sync" }) }
        h2 { "Configurations" }
        @if configurations.is_empty() {
            p.empty { "None yet. " a href="/configurations/new" { "Create a configuration" } " to feed this project." }
        } @else {
            ul { @for c in &configurations { li { a href={ "/configurations/" (c.id) } { (c.name) } } } }
        }
        h2 { "Edit" }
        (form_view(&session, &action, &form, Some(p.database_url.masked()), None, None))
        h2 { "Switch on or off, delete" }
        div.actions {
            (toggle_form(&session, &format!("/projects/{}/active", p.id), p.active, "Deactivate", "Activate"))
            a.button.danger href={ "/projects/" (p.id) "/delete" } { "Delete…" }
        }
    };
    Ok(layout::page(
        shell(&state, &session, &p.name, Nav::Projects),
        body,
    ))
}

/// `POST /projects/{id}`.
pub(crate) async fn update(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<ProjectForm>,
) -> PageResult<Response> {
    let p = state.store.project(ProjectId(id)).await?;
    submit(&state, &session, Some(&p), form).await
}

/// `POST /projects/{id}/active`.
pub(crate) async fn set_active(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> PageResult<Redirect> {
    let p = state
        .store
        .update_project(
            ProjectId(id),
            ProjectPatch {
                active: Some(form.active),
                ..ProjectPatch::default()
            },
        )
        .await?;
    let what = if p.active {
        "activated"
    } else {
        "deactivated: its configurations will not sync until it is activated again"
    };
    state
        .drafts
        .notice(&session.id, true, format!("Project \"{}\" {what}.", p.name));
    Ok(Redirect::to(&format!("/projects/{id}")))
}

/// `GET /projects/{id}/delete`: the confirmation step.
pub(crate) async fn confirm_delete(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Markup> {
    let store = state.store.as_ref();
    let p = store.project(ProjectId(id)).await?;
    let n = all_configurations(store, Some(p.id)).await?.len();
    let consequences = html! { "This deletes the project, its " (n) " configuration(s), their schedules and sync history from Codeless Sync. The tables already written in your database are left as they are." };
    let url = format!("/projects/{}", p.id);
    let body = confirm_delete_view(&session, "project", &p.name, &url, consequences);
    Ok(layout::page(
        shell(&state, &session, "Delete project", Nav::Projects),
        body,
    ))
}

/// `POST /projects/{id}/delete`.
pub(crate) async fn delete(
    State(state): State<DashboardState>,
    Extension(session): Extension<Session>,
    Path(id): Path<i64>,
) -> PageResult<Redirect> {
    let p = state.store.project(ProjectId(id)).await?;
    state.store.delete_project(p.id).await?;
    state.drafts.notice(
        &session.id,
        true,
        format!("Project \"{}\" deleted.", p.name),
    );
    Ok(Redirect::to("/projects"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_is_read_back_from_the_host() {
        let cases = [
            ("postgresql://postgres.abc:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres", "supabase"),
            ("postgres://postgres:pw@db.abcdefgh.supabase.co:5432/postgres", "supabase"),
            ("postgresql://u:pw@ep-cool-1234-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require", "neon"),
            ("postgres://u:pw@EP-X.US-EAST-2.AWS.NEON.TECH/db", "neon"),
            ("postgres://u:pw@127.0.0.1:5432/stripe", "postgres"),
            ("postgres://u:pw@db.example.com/stripe", "postgres"),
            // Look-alikes are not the provider's.
            ("postgres://u:pw@notsupabase.co/db", "postgres"),
            ("postgres://u:pw@neon.tech.example.com/db", "postgres"),
            ("postgres:///db?host=/var/run/postgresql", "postgres"),
            ("sqlite://./cls-data/stripe.db", "sqlite"),
            ("sqlite::memory:", "sqlite"),
        ];
        for (raw, kind) in cases {
            let url = DatabaseUrl::parse(raw).expect(raw);
            assert_eq!(kind_of(&url), kind, "{raw}");
        }
        assert_eq!(kind_label("supabase"), "Supabase");
    }
}
