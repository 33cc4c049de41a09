//! `/api/projects`: destination databases. A project's database URL is accepted in full and
//! only ever shown masked (`postgres://app:***@host/db`).

use std::sync::Arc;

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use cls_control::{
    test_project, DatabaseCheck, DatabaseCheckError, NewProject, Project, ProjectId, ProjectPatch,
    TimeLimits,
};
use cls_destination::{DatabaseInfo, DatabaseKind, DatabaseUrl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::envelope::{ApiError, ApiResult, Deleted, Envelope, ErrorEnvelope, ListEnvelope};
use super::extract::{parse_id, ApiJson, PageQuery};
use crate::state::AppState;

/// The database engine, from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseKindView {
    /// `postgres://` or `postgresql://` (Supabase, Neon, Railway, Render, …).
    Postgres,
    /// `sqlite://path/to/file.db`.
    Sqlite,
}

impl From<DatabaseKind> for DatabaseKindView {
    fn from(k: DatabaseKind) -> Self {
        match k {
            DatabaseKind::Postgres => DatabaseKindView::Postgres,
            DatabaseKind::Sqlite => DatabaseKindView::Sqlite,
        }
    }
}

/// A project as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectView {
    /// Its id.
    pub id: i64,
    /// Name shown to people.
    pub name: String,
    /// PostgreSQL or SQLite.
    pub kind: DatabaseKindView,
    /// The connection string with its password replaced by `***`.
    pub database_url: String,
    /// Schema the tables go into (ignored by SQLite).
    pub schema: String,
    /// Off: none of its configurations sync.
    pub active: bool,
    /// Why it does not sync by itself, when it does not.
    pub paused: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<&Project> for ProjectView {
    fn from(p: &Project) -> Self {
        ProjectView {
            id: p.id.0,
            name: p.name.clone(),
            kind: p.kind.into(),
            database_url: p.database_url.masked().to_string(),
            schema: p.schema.clone(),
            active: p.active,
            paused: p.paused().map(|x| x.to_string()),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// What creating a project takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Name shown to people.
    pub name: String,
    /// `postgres://user:password@host:5432/db` or `sqlite://path/to/file.db`; stored
    /// encrypted, never shown again in full.
    pub database_url: String,
    /// Target schema (default `stripe`; lowercase letters, digits and `_`).
    #[serde(default)]
    pub schema: Option<String>,
    /// `postgres` or `sqlite`, as the dashboard chose it; must match the URL's scheme.
    #[serde(default)]
    pub kind: Option<String>,
}

/// Changes to a project; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchProject {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New connection string (a rotated password, a moved server).
    #[serde(default)]
    pub database_url: Option<String>,
    /// New target schema.
    #[serde(default)]
    pub schema: Option<String>,
    /// Switch on or off.
    #[serde(default)]
    pub active: Option<bool>,
}

/// What the database side of Test Connection found.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatabaseCheckView {
    /// Reachable, and cls may create its schema and tables, or they exist already (made by
    /// hand) and it may read and write them.
    pub ok: bool,
    /// The database URL tested, masked.
    pub database_url: String,
    /// What the check found, when the database answered.
    pub database: Option<DatabaseInfoView>,
    /// The outcome in words: what failed and how to fix it, or that all is well.
    pub message: String,
    /// When the database is reachable but cls may not create its tables and they are not
    /// all there: the exact SQL to run by hand as a user who may (for the configuration's
    /// data types; a project's test: those of its configurations).
    pub create_tables_sql: Option<String>,
}

/// What Test Connection found for a project: its database, and the schedules it switched
/// on again.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectCheckView {
    /// The database check.
    #[serde(flatten)]
    pub check: DatabaseCheckView,
    /// Schedules of this project's configurations the system had paused because the
    /// database was unreachable, that this passing test switched on again. Pauses for the
    /// Stripe key stay: a configuration's Test Connection lifts those.
    pub resumed_schedules: Vec<i64>,
}

/// Facts about a reachable database.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DatabaseInfoView {
    /// PostgreSQL or SQLite.
    pub kind: DatabaseKindView,
    /// Server version (or SQLite's library version).
    pub server_version: String,
    /// Whether the connection is encrypted (never for SQLite, a local file).
    pub tls: bool,
    /// Whether cls may create the schema (when missing) and its tables.
    pub can_create: bool,
    /// When it may not: whether every table the data types need exists and cls may read
    /// and write it (tables made by hand), which is enough to sync.
    pub tables_ready: bool,
    /// The schema tables go to (`main` for SQLite).
    pub schema: String,
}

impl From<DatabaseInfo> for DatabaseInfoView {
    fn from(i: DatabaseInfo) -> Self {
        DatabaseInfoView {
            kind: i.kind.into(),
            server_version: i.server_version,
            tls: i.tls,
            can_create: i.can_create,
            tables_ready: i.tables_ready,
            schema: i.schema,
        }
    }
}

impl DatabaseCheckView {
    /// The view of the database half of Test Connection on the database at `url`.
    pub(crate) fn new(
        url: &DatabaseUrl,
        checked: &Result<DatabaseCheck, DatabaseCheckError>,
    ) -> DatabaseCheckView {
        let database_url = url.masked().to_string();
        match checked {
            Ok(check) => DatabaseCheckView {
                ok: check.passed(),
                database_url,
                database: Some(check.info.clone().into()),
                message: check.message(),
                create_tables_sql: check.create_tables_sql.clone(),
            },
            // The errors name the database by its masked URL only.
            Err(e) => DatabaseCheckView {
                ok: false,
                database_url,
                database: None,
                message: e.to_string(),
                create_tables_sql: None,
            },
        }
    }
}

/// Parses a database URL given in field `field`.
fn database_url(field: &str, raw: &str) -> Result<DatabaseUrl, ApiError> {
    // The parser's messages never echo the URL, so no password reaches the answer.
    DatabaseUrl::parse(raw).map_err(|e| ApiError::invalid(field, e))
}

fn project_id(raw: &str) -> Result<ProjectId, ApiError> {
    parse_id(raw).map(ProjectId)
}

/// Creates a project.
#[utoipa::path(post, path = "/api/projects", operation_id = "create_project", tag = "projects",
    request_body = CreateProject,
    responses(
        (status = 201, description = "The project", body = Envelope<ProjectView>),
        (status = 400, description = "Invalid input; the message names the field", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<CreateProject>,
) -> ApiResult {
    let url = database_url("database_url", &body.database_url)?;
    if let Some(kind) = &body.kind {
        let wanted = match kind.as_str() {
            "postgres" | "postgresql" => DatabaseKind::Postgres,
            "sqlite" => DatabaseKind::Sqlite,
            _ => {
                return Err(ApiError::invalid(
                    "kind",
                    "give `postgres` or `sqlite`, or leave it out: the URL's scheme tells",
                ))
            }
        };
        if wanted != url.kind() {
            return Err(ApiError::invalid(
                "kind",
                format!(
                    "`{kind}` does not match the database URL, which is a {} URL: fix one of the two",
                    url.kind()
                ),
            ));
        }
    }
    let project = state
        .store
        .create_project(NewProject {
            name: body.name,
            database_url: url,
            schema: body.schema,
        })
        .await?;
    Ok(Envelope::created(ProjectView::from(&project)))
}

/// Lists projects, oldest first.
#[utoipa::path(get, path = "/api/projects", operation_id = "list_projects", tag = "projects",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of projects", body = ListEnvelope<ProjectView>),
        (status = 400, description = "Bad `page` or `limit`", body = ErrorEnvelope),
    ))]
pub async fn list(State(state): State<Arc<AppState>>, page: PageQuery) -> ApiResult {
    let got = state.store.list_projects(page.request()).await?;
    let items = got.items.iter().map(ProjectView::from).collect();
    Ok(ListEnvelope::ok(items, page.pagination(got.total)))
}

/// One project.
#[utoipa::path(get, path = "/api/projects/{id}", operation_id = "get_project", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses(
        (status = 200, description = "The project", body = Envelope<ProjectView>),
        (status = 404, description = "No such project", body = ErrorEnvelope),
    ))]
pub async fn get(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let project = state.store.project(project_id(&id)?).await?;
    Ok(Envelope::ok(ProjectView::from(&project)))
}

/// Changes a project's name, database URL, schema or active toggle.
#[utoipa::path(patch, path = "/api/projects/{id}", operation_id = "update_project", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    request_body = PatchProject,
    responses(
        (status = 200, description = "The project as changed", body = Envelope<ProjectView>),
        (status = 400, description = "Invalid input; the message names the field", body = ErrorEnvelope),
        (status = 404, description = "No such project", body = ErrorEnvelope),
    ))]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchProject>,
) -> ApiResult {
    let id = project_id(&id)?;
    let patch = ProjectPatch {
        name: body.name,
        database_url: body
            .database_url
            .as_deref()
            .map(|raw| database_url("database_url", raw))
            .transpose()?,
        schema: body.schema,
        active: body.active,
    };
    let project = state.store.update_project(id, patch).await?;
    Ok(Envelope::ok(ProjectView::from(&project)))
}

/// Deletes a project with its configurations, their schedules and runs. The data already
/// copied into the project's database stays there.
#[utoipa::path(delete, path = "/api/projects/{id}", operation_id = "delete_project", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses(
        (status = 200, description = "Deleted", body = Envelope<Deleted>),
        (status = 404, description = "No such project", body = ErrorEnvelope),
    ))]
pub async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let id = project_id(&id)?;
    state.store.delete_project(id).await?;
    Ok(Envelope::ok(Deleted {
        id: id.0,
        deleted: true,
    }))
}

/// Test Connection for a project: connects to its database and checks that cls may create
/// its tables. The answer is `200` either way; `data.ok` and `data.message` tell. A passing
/// test switches on again the schedules of the project's configurations the system had
/// paused because the database was unreachable.
#[utoipa::path(post, path = "/api/projects/{id}/test-connection", operation_id = "test_project_connection", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses(
        (status = 200, description = "What the check found", body = Envelope<ProjectCheckView>),
        (status = 404, description = "No such project", body = ErrorEnvelope),
    ))]
pub async fn test_connection(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult {
    let test = test_project(
        state.store.as_ref(),
        project_id(&id)?,
        TimeLimits::default(),
    )
    .await?;
    let mut check = DatabaseCheckView::new(&test.project.database_url, &test.database);
    if !test.resumed.is_empty() {
        check.message = format!(
            "{}; {} schedule(s) the system had paused because the database was unreachable are running again",
            check.message,
            test.resumed.len()
        );
    }
    Ok(Envelope::ok(ProjectCheckView {
        check,
        resumed_schedules: test.resumed.iter().map(|s| s.0).collect(),
    }))
}
