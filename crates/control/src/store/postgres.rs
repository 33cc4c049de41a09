//! [`PostgresStore`]: the state store on PostgreSQL, for several `cls` nodes sharing one
//! database.
//!
//! Its tables live in their own schema, [`CONTROL_SCHEMA`] (every connection's
//! `search_path`), so they never meet the user's tables or another tool's `_sqlx_migrations`
//! when the state shares a database with synced data. Migrations come from
//! `migrations/postgres`; sqlx takes an advisory lock while applying them, so nodes starting
//! together do not race.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Connection, Executor, PgConnection, PgPool};

use super::key_check::{self, KeyCheckRows, KEY_CHECK_NAME};
use super::rows::{
    cadence_columns, key_kind_text, key_mode_text, kind_text, reseal, seal_key, seal_secret,
    seal_url, ApiTokenRow, ConfigurationRow, ConfigurationSecretsRow, ProjectRow, RunRow,
    ScheduleRow, SessionRow, UserRow,
};
use super::{
    canceled_before_start, check_name, check_schema, found, lease_lost, lease_seconds,
    limit_offset, released_heartbeat, sharing, status_counts, unique_or, Entity, QueuedRun,
    StateUrl, Store, StoreError,
};
use crate::model::{
    AccountShare, ApiToken, ApiTokenId, Configuration, ConfigurationId, ConfigurationPatch,
    Heartbeat, NewConfiguration, NewProject, NewRun, NewSchedule, Page, PageRequest, Project,
    ProjectId, ProjectPatch, RotationReport, RunId, RunStatus, RunUpdate, Schedule, ScheduleId,
    SchedulePatch, Session, SessionId, SyncMode, SyncRun, TypeStats, User, UserId, DEFAULT_SCHEMA,
};
use crate::secrets::{KeyLookup, MasterKey, Sealed};
use crate::tokens::{self, refused, CredentialRows, StoredApiToken, TokenCache};

/// The PostgreSQL schema holding the control plane's tables.
pub const CONTROL_SCHEMA: &str = "cls_control";

/// Advisory lock key held while the schema is created ("cls_ctrl" as ASCII bytes).
const SCHEMA_LOCK_ID: i64 = 0x636c_735f_6374_726c;

const PROJECT_SELECT: &str = "SELECT id, name, kind, database_url_sealed, schema_name, active, \
     created_at, updated_at FROM projects";

const CONFIGURATION_SELECT: &str = "SELECT c.id, c.name, c.project_id, c.provider, \
     c.stripe_key_sealed, c.key_kind, c.key_mode, c.key_masked, c.data_types, \
     c.stripe_api_base, c.active, p.active AS project_active, c.webhook_secret_sealed, \
     c.include_connected_accounts, c.created_at, c.updated_at \
     FROM configurations c JOIN projects p ON p.id = c.project_id";

const SCHEDULE_SELECT: &str = "SELECT s.id, s.configuration_id, s.cadence, s.cron_expression, \
     s.mode, s.active, s.paused_reason, c.active AS configuration_active, \
     p.active AS project_active, s.created_at, s.updated_at, s.last_due_at \
     FROM schedules s JOIN configurations c ON c.id = s.configuration_id \
     JOIN projects p ON p.id = c.project_id";

const RUN_SELECT: &str = "SELECT id, configuration_id, trigger_kind, mode, status, created_at, \
     started_at, ended_at, stats, errors, worker_id, heartbeat_at, cancel_requested \
     FROM sync_runs";

const API_TOKEN_SELECT: &str = "SELECT id, name, prefix, token_hash, created_at, last_used_at, \
     revoked_at FROM api_tokens";

const SESSION_SELECT: &str = "SELECT s.id, s.user_id, u.username, s.csrf_token, s.created_at, \
     s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id";

/// The state store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Connections, each with `search_path` set to [`CONTROL_SCHEMA`].
    pool: PgPool,
    /// Seals and opens secrets (replaced by [`Store::rotate_master_key`]).
    key: Arc<RwLock<MasterKey>>,
    /// Recent successful API token verifications.
    tokens: Arc<TokenCache>,
}

impl PostgresStore {
    /// Connects, creates [`CONTROL_SCHEMA`] if needed and applies the migrations.
    #[tracing::instrument(name = "store.open", skip_all, fields(url = %url))]
    pub async fn open(
        url: &StateUrl,
        key: impl Into<KeyLookup>,
    ) -> Result<PostgresStore, StoreError> {
        let connect_error = |source| StoreError::Connect {
            url: url.to_string(),
            source,
        };
        let base = PgConnectOptions::from_str(url.expose()).map_err(connect_error)?;
        let mut conn = PgConnection::connect_with(&base)
            .await
            .map_err(connect_error)?;
        // Nodes starting together would race on CREATE SCHEMA IF NOT EXISTS (it is not
        // atomic in PostgreSQL); a transaction-scoped advisory lock serialises them.
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK_ID)
            .execute(&mut *tx)
            .await?;
        tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA}").as_str())
            .await?;
        tx.commit().await?;
        conn.close().await?;
        let options = base.options([("search_path", CONTROL_SCHEMA)]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(15))
            .connect_with(options)
            .await
            .map_err(connect_error)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let key = key_check::settle(&pool, key.into()).await?;
        Ok(PostgresStore {
            pool,
            key: Arc::new(RwLock::new(key)),
            tokens: Arc::default(),
        })
    }

    /// The master key in use.
    fn key(&self) -> MasterKey {
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The connection pool (for tests and for the scheduler's row leases).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn fetch_project(&self, id: ProjectId) -> Result<ProjectRow, StoreError> {
        sqlx::query_as::<_, ProjectRow>(&format!("{PROJECT_SELECT} WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound {
                entity: Entity::Project,
                id: id.0,
            })
    }

    async fn exists(&self, table: &str, id: i64) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// `NotFound` for `entity` `id` unless a row with that id is in `table`.
    async fn require(&self, table: &str, entity: Entity, id: i64) -> Result<(), StoreError> {
        if self.exists(table, id).await? {
            Ok(())
        } else {
            Err(StoreError::NotFound { entity, id })
        }
    }
}

#[async_trait]
impl Store for PostgresStore {
    #[tracing::instrument(name = "store.create_project", skip_all)]
    async fn create_project(&self, new: NewProject) -> Result<Project, StoreError> {
        let name = check_name("project", &new.name)?;
        let schema = check_schema(new.schema.as_deref().unwrap_or(DEFAULT_SCHEMA))?;
        let sealed = seal_url(&self.key(), &new.database_url)?;
        let now = Utc::now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO projects (name, kind, database_url_sealed, schema_name, active, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, TRUE, $5, $5) RETURNING id",
        )
        .bind(name)
        .bind(kind_text(new.database_url.kind()))
        .bind(sealed)
        .bind(schema)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        self.project(ProjectId(id)).await
    }

    async fn project(&self, id: ProjectId) -> Result<Project, StoreError> {
        self.fetch_project(id).await?.into_project(&self.key())
    }

    async fn list_projects(&self, page: PageRequest) -> Result<Page<Project>, StoreError> {
        let (limit, offset) = limit_offset(page);
        let rows = sqlx::query_as::<_, ProjectRow>(&format!(
            "{PROJECT_SELECT} ORDER BY id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects")
            .fetch_one(&self.pool)
            .await?;
        let items = rows
            .into_iter()
            .map(|r| r.into_project(&self.key()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    #[tracing::instrument(name = "store.update_project", skip_all, fields(project_id = %id))]
    async fn update_project(
        &self,
        id: ProjectId,
        patch: ProjectPatch,
    ) -> Result<Project, StoreError> {
        let name = patch
            .name
            .as_deref()
            .map(|n| check_name("project", n))
            .transpose()?;
        let schema = patch.schema.as_deref().map(check_schema).transpose()?;
        let sealed = patch
            .database_url
            .as_ref()
            .map(|u| seal_url(&self.key(), u))
            .transpose()?;
        let kind = patch.database_url.as_ref().map(|u| kind_text(u.kind()));
        let done = sqlx::query(
            "UPDATE projects SET name = COALESCE($2, name), \
             database_url_sealed = COALESCE($3, database_url_sealed), \
             kind = COALESCE($4, kind), schema_name = COALESCE($5, schema_name), \
             active = COALESCE($6, active), updated_at = $7 WHERE id = $1",
        )
        .bind(id.0)
        .bind(name)
        .bind(sealed)
        .bind(kind)
        .bind(schema)
        .bind(patch.active)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), Entity::Project, id.0)?;
        self.project(id).await
    }

    async fn delete_project(&self, id: ProjectId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected(), Entity::Project, id.0)?;
        Ok(())
    }

    #[tracing::instrument(name = "store.create_configuration", skip_all, fields(project_id = %new.project_id))]
    async fn create_configuration(
        &self,
        new: NewConfiguration,
    ) -> Result<Configuration, StoreError> {
        let name = check_name("configuration", &new.name)?;
        if new.data_types.is_empty() {
            return Err(StoreError::Invalid {
                field: "data_types",
                reason: "no data types were chosen: pick at least one (e.g. customers, invoices)"
                    .into(),
            });
        }
        self.require("projects", Entity::Project, new.project_id.0)
            .await?;
        let mut names: Vec<String> = Vec::new();
        for t in cls_catalog::CATALOG.iter() {
            if new.data_types.iter().any(|d| d.name == t.name) {
                names.push(t.name.to_string());
            }
        }
        let key = self.key();
        let sealed = seal_key(&key, &new.key)?;
        let webhook = new
            .webhook_secret
            .as_ref()
            .map(|w| seal_secret(&key, w))
            .transpose()?;
        let now = Utc::now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO configurations (name, project_id, provider, stripe_key_sealed, \
             key_kind, key_mode, key_masked, data_types, stripe_api_base, active, created_at, \
             updated_at, webhook_secret_sealed) \
             VALUES ($1, $2, 'stripe', $3, $4, $5, $6, $7, $8, TRUE, $9, $9, $10) RETURNING id",
        )
        .bind(name)
        .bind(new.project_id.0)
        .bind(sealed)
        .bind(key_kind_text(new.key.kind()))
        .bind(key_mode_text(new.key.mode()))
        .bind(new.key.masked())
        .bind(Json(names))
        .bind(new.stripe_api_base.map(|u| u.to_string()))
        .bind(now)
        .bind(webhook)
        .fetch_one(&self.pool)
        .await?;
        self.configuration(ConfigurationId(id)).await
    }

    async fn configuration(&self, id: ConfigurationId) -> Result<Configuration, StoreError> {
        sqlx::query_as::<_, ConfigurationRow>(&format!("{CONFIGURATION_SELECT} WHERE c.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound {
                entity: Entity::Configuration,
                id: id.0,
            })?
            .into_configuration(&self.key())
    }

    async fn list_configurations(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> Result<Page<Configuration>, StoreError> {
        let (limit, offset) = limit_offset(page);
        let project = project.map(|p| p.0);
        let rows = sqlx::query_as::<_, ConfigurationRow>(&format!(
            "{CONFIGURATION_SELECT} WHERE ($1::BIGINT IS NULL OR c.project_id = $1) \
             ORDER BY c.id LIMIT $2 OFFSET $3"
        ))
        .bind(project)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM configurations WHERE ($1::BIGINT IS NULL OR project_id = $1)",
        )
        .bind(project)
        .fetch_one(&self.pool)
        .await?;
        let items = rows
            .into_iter()
            .map(|r| r.into_configuration(&self.key()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    #[tracing::instrument(name = "store.update_configuration", skip_all, fields(configuration_id = %id))]
    async fn update_configuration(
        &self,
        id: ConfigurationId,
        patch: ConfigurationPatch,
    ) -> Result<Configuration, StoreError> {
        let name = patch
            .name
            .as_deref()
            .map(|n| check_name("configuration", n))
            .transpose()?;
        let key = self.key();
        let sealed = patch.key.as_ref().map(|k| seal_key(&key, k)).transpose()?;
        let webhook = patch
            .webhook_secret
            .as_ref()
            .and_then(|w| w.as_ref())
            .map(|w| seal_secret(&key, w))
            .transpose()?;
        let done = sqlx::query(
            "UPDATE configurations SET name = COALESCE($2, name), \
             active = COALESCE($3, active), \
             stripe_key_sealed = COALESCE($4, stripe_key_sealed), \
             key_kind = COALESCE($5, key_kind), key_mode = COALESCE($6, key_mode), \
             key_masked = COALESCE($7, key_masked), updated_at = $8, \
             webhook_secret_sealed = CASE WHEN $9::BOOLEAN THEN $10::TEXT \
             ELSE webhook_secret_sealed END WHERE id = $1",
        )
        .bind(id.0)
        .bind(name)
        .bind(patch.active)
        .bind(sealed)
        .bind(patch.key.as_ref().map(|k| key_kind_text(k.kind())))
        .bind(patch.key.as_ref().map(|k| key_mode_text(k.mode())))
        .bind(patch.key.as_ref().map(|k| k.masked()))
        .bind(Utc::now())
        .bind(patch.webhook_secret.is_some())
        .bind(webhook)
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), Entity::Configuration, id.0)?;
        self.configuration(id).await
    }

    async fn set_include_connected_accounts(
        &self,
        id: ConfigurationId,
        include: bool,
    ) -> Result<Configuration, StoreError> {
        let done = sqlx::query(
            "UPDATE configurations SET include_connected_accounts = $2, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(include)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), Entity::Configuration, id.0)?;
        self.configuration(id).await
    }

    async fn delete_configuration(&self, id: ConfigurationId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM configurations WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected(), Entity::Configuration, id.0)?;
        Ok(())
    }

    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, StoreError> {
        self.require(
            "configurations",
            Entity::Configuration,
            new.configuration_id.0,
        )
        .await?;
        let (cadence, cron) = cadence_columns(&new.cadence);
        let now = Utc::now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO schedules (configuration_id, cadence, cron_expression, mode, active, \
             paused_reason, created_at, updated_at) VALUES ($1, $2, $3, $4, TRUE, NULL, $5, $5) \
             RETURNING id",
        )
        .bind(new.configuration_id.0)
        .bind(cadence)
        .bind(cron)
        .bind(new.mode.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        self.schedule(ScheduleId(id)).await
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError> {
        sqlx::query_as::<_, ScheduleRow>(&format!("{SCHEDULE_SELECT} WHERE s.id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound {
                entity: Entity::Schedule,
                id: id.0,
            })?
            .into_schedule()
    }

    async fn list_schedules(
        &self,
        configuration: Option<ConfigurationId>,
        page: PageRequest,
    ) -> Result<Page<Schedule>, StoreError> {
        let (limit, offset) = limit_offset(page);
        let configuration = configuration.map(|c| c.0);
        let rows = sqlx::query_as::<_, ScheduleRow>(&format!(
            "{SCHEDULE_SELECT} WHERE ($1::BIGINT IS NULL OR s.configuration_id = $1) \
             ORDER BY s.id LIMIT $2 OFFSET $3"
        ))
        .bind(configuration)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM schedules WHERE ($1::BIGINT IS NULL OR configuration_id = $1)",
        )
        .bind(configuration)
        .fetch_one(&self.pool)
        .await?;
        let items = rows
            .into_iter()
            .map(ScheduleRow::into_schedule)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn update_schedule(
        &self,
        id: ScheduleId,
        patch: SchedulePatch,
    ) -> Result<Schedule, StoreError> {
        let cadence = patch.cadence.as_ref().map(cadence_columns);
        let done = sqlx::query(
            "UPDATE schedules SET cadence = COALESCE($2, cadence), \
             cron_expression = CASE WHEN $2::TEXT IS NULL THEN cron_expression ELSE $3 END, \
             mode = COALESCE($4, mode), active = COALESCE($5, active), \
             paused_reason = CASE WHEN $5::BOOLEAN IS NULL THEN paused_reason ELSE NULL END, \
             updated_at = $6 WHERE id = $1",
        )
        .bind(id.0)
        .bind(cadence.as_ref().map(|c| c.0))
        .bind(cadence.and_then(|c| c.1))
        .bind(patch.mode.map(|m| m.as_str()))
        .bind(patch.active)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), Entity::Schedule, id.0)?;
        self.schedule(id).await
    }

    async fn pause_schedule(&self, id: ScheduleId, reason: &str) -> Result<Schedule, StoreError> {
        let done = sqlx::query(
            "UPDATE schedules SET active = FALSE, paused_reason = $2, updated_at = $3 \
             WHERE id = $1",
        )
        .bind(id.0)
        .bind(reason)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), Entity::Schedule, id.0)?;
        self.schedule(id).await
    }

    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM schedules WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected(), Entity::Schedule, id.0)?;
        Ok(())
    }

    async fn create_run(&self, new: NewRun) -> Result<SyncRun, StoreError> {
        self.require(
            "configurations",
            Entity::Configuration,
            new.configuration_id.0,
        )
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sync_runs (configuration_id, trigger_kind, mode, status, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(new.configuration_id.0)
        .bind(new.trigger.as_str())
        .bind(new.mode.as_str())
        .bind(RunStatus::Queued.as_str())
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await?;
        self.run(RunId(id)).await
    }

    async fn run(&self, id: RunId) -> Result<SyncRun, StoreError> {
        sqlx::query_as::<_, RunRow>(&format!("{RUN_SELECT} WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound {
                entity: Entity::Run,
                id: id.0,
            })?
            .into_run()
    }

    async fn list_runs(
        &self,
        configuration: ConfigurationId,
        page: PageRequest,
    ) -> Result<Page<SyncRun>, StoreError> {
        let (limit, offset) = limit_offset(page);
        let rows = sqlx::query_as::<_, RunRow>(&format!(
            "{RUN_SELECT} WHERE configuration_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
        ))
        .bind(configuration.0)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE configuration_id = $1")
                .bind(configuration.0)
                .fetch_one(&self.pool)
                .await?;
        let items = rows
            .into_iter()
            .map(RunRow::into_run)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn update_run(&self, id: RunId, update: RunUpdate) -> Result<SyncRun, StoreError> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = COALESCE($2, status), \
             started_at = COALESCE($3, started_at), ended_at = COALESCE($4, ended_at), \
             stats = COALESCE($5, stats), errors = COALESCE($6, errors) \
             WHERE id = $1 AND ($2::TEXT IS NULL OR status IN ('queued', 'running'))",
        )
        .bind(id.0)
        .bind(update.status.map(|s| s.as_str()))
        .bind(update.started_at)
        .bind(update.ended_at)
        .bind(update.stats.map(Json))
        .bind(update.errors.map(Json))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            // Either the run does not exist (NotFound from `run`) or it has ended.
            let current = self.run(id).await?;
            return Err(StoreError::RunFinished {
                id: id.0,
                status: current.status,
            });
        }
        self.run(id).await
    }

    async fn queue_run(&self, new: NewRun) -> Result<QueuedRun, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Locking the configuration's row serialises every queue and claim of this
        // configuration across nodes, so the check and the insert below are atomic.
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM configurations WHERE id = $1 FOR UPDATE")
                .bind(new.configuration_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::NotFound {
                entity: Entity::Configuration,
                id: new.configuration_id.0,
            });
        }
        let pending: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, status FROM sync_runs WHERE configuration_id = $1 \
             AND status IN ('queued', 'running') ORDER BY id",
        )
        .bind(new.configuration_id.0)
        .fetch_all(&mut *tx)
        .await?;
        if let Some((queued, _)) = pending.iter().find(|(_, s)| s == "queued") {
            let queued = RunId(*queued);
            if new.mode == SyncMode::Full {
                // A full run covers an incremental one: the waiting run does what was asked.
                // SKIP LOCKED: a node claiming that run right now holds its row and waits for
                // the configuration's, which this transaction holds — waiting here would
                // deadlock; the run then starts as it was, and the answer names its mode.
                sqlx::query(
                    "UPDATE sync_runs SET mode = 'full' WHERE id = (SELECT id FROM sync_runs \
                     WHERE id = $1 AND status = 'queued' AND mode = 'incremental' \
                     FOR UPDATE SKIP LOCKED)",
                )
                .bind(queued.0)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            return Ok(QueuedRun::AlreadyQueued(self.run(queued).await?));
        }
        let behind = pending.first().map(|(id, _)| RunId(*id));
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sync_runs (configuration_id, trigger_kind, mode, status, created_at) \
             VALUES ($1, $2, $3, 'queued', $4) RETURNING id",
        )
        .bind(new.configuration_id.0)
        .bind(new.trigger.as_str())
        .bind(new.mode.as_str())
        .bind(Utc::now())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(QueuedRun::Queued {
            run: self.run(RunId(id)).await?,
            behind,
        })
    }

    async fn mark_schedule_due(
        &self,
        id: ScheduleId,
        expected: Option<DateTime<Utc>>,
        slot: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE schedules SET last_due_at = $2 WHERE id = $1 \
             AND last_due_at IS NOT DISTINCT FROM $3::TIMESTAMPTZ",
        )
        .bind(id.0)
        .bind(slot)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 && !self.exists("schedules", id.0).await? {
            return Err(StoreError::NotFound {
                entity: Entity::Schedule,
                id: id.0,
            });
        }
        Ok(done.rows_affected() == 1)
    }

    async fn claim_next_run(
        &self,
        now: DateTime<Utc>,
        worker: &str,
        lease: chrono::Duration,
    ) -> Result<Option<SyncRun>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A dead worker's run first: it holds its configuration, so nothing else of that
        // configuration can start until it is done. SKIP LOCKED passes over a run another
        // node is taking over (or its worker is beating) right now; a heartbeat committed
        // since this statement began is re-checked against the row's newest version.
        // Silent for longer than the lease its worker holds it under (the claimant's for runs
        // claimed before leases were recorded).
        let stale: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM sync_runs WHERE status = 'running' \
             AND COALESCE(heartbeat_at, started_at, created_at) \
             + make_interval(secs => COALESCE(lease_seconds, $2)::DOUBLE PRECISION) < $1 \
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(lease_seconds(lease))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = stale {
            sqlx::query(
                "UPDATE sync_runs SET worker_id = $2, heartbeat_at = $3, lease_seconds = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(worker)
            .bind(now)
            .bind(lease_seconds(lease))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::warn!(
                run_id = id,
                worker,
                "took over a run whose worker stopped sending heartbeats"
            );
            return Ok(Some(self.run(RunId(id)).await?));
        }
        // SKIP LOCKED: a run another node is claiming right now is passed over, not waited on.
        let candidate: Option<(i64, i64)> = sqlx::query_as(
            "SELECT r.id, r.configuration_id FROM sync_runs r WHERE r.status = 'queued' \
             AND NOT EXISTS (SELECT 1 FROM sync_runs x WHERE \
             x.configuration_id = r.configuration_id AND x.status = 'running') \
             ORDER BY r.id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, configuration)) = candidate else {
            return Ok(None);
        };
        // Two nodes may have picked two queued runs of one configuration; the
        // configuration's row lock lets only the first start, the second sees it running.
        sqlx::query("SELECT id FROM configurations WHERE id = $1 FOR UPDATE")
            .bind(configuration)
            .execute(&mut *tx)
            .await?;
        let running: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM sync_runs WHERE configuration_id = $1 AND status = 'running' LIMIT 1",
        )
        .bind(configuration)
        .fetch_optional(&mut *tx)
        .await?;
        if running.is_some() {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE sync_runs SET status = 'running', started_at = $2, worker_id = $3, \
             heartbeat_at = $2, lease_seconds = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .bind(worker)
        .bind(lease_seconds(lease))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(self.run(RunId(id)).await?))
    }

    async fn heartbeat(
        &self,
        id: RunId,
        worker: &str,
        now: DateTime<Utc>,
        stats: Option<BTreeMap<String, TypeStats>>,
    ) -> Result<Heartbeat, StoreError> {
        let cancel: Option<bool> = sqlx::query_scalar(
            "UPDATE sync_runs SET heartbeat_at = $3, stats = COALESCE($4, stats) \
             WHERE id = $1 AND worker_id = $2 AND status = 'running' RETURNING cancel_requested",
        )
        .bind(id.0)
        .bind(worker)
        .bind(now)
        .bind(stats.map(Json))
        .fetch_optional(&self.pool)
        .await?;
        match cancel {
            Some(cancel_requested) => Ok(Heartbeat { cancel_requested }),
            None => Err(lease_lost(self.exists("sync_runs", id.0).await?, id)),
        }
    }

    async fn finish_run(
        &self,
        id: RunId,
        worker: &str,
        update: RunUpdate,
    ) -> Result<SyncRun, StoreError> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = COALESCE($3, status), \
             started_at = COALESCE($4, started_at), ended_at = COALESCE($5, ended_at), \
             stats = COALESCE($6, stats), errors = COALESCE($7, errors) \
             WHERE id = $1 AND worker_id = $2 AND status = 'running'",
        )
        .bind(id.0)
        .bind(worker)
        .bind(update.status.map(|s| s.as_str()))
        .bind(update.started_at)
        .bind(update.ended_at)
        .bind(update.stats.map(Json))
        .bind(update.errors.map(Json))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(self.exists("sync_runs", id.0).await?, id));
        }
        self.run(id).await
    }

    async fn share_account(
        &self,
        id: RunId,
        worker: &str,
        account: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<AccountShare, StoreError> {
        // Asked several times a second by every running run: one read, and a write only when
        // the share changed. Live: within the lease its own worker holds it under; this run
        // counts whether or not it registered the account before.
        let own: Option<(Option<String>, String, Option<String>, Option<i64>, i64)> =
            sqlx::query_as(
                "SELECT r.worker_id, r.status, r.budget_account, r.budget_share, \
                 (SELECT COUNT(*) FROM sync_runs x WHERE x.status = 'running' AND (x.id = $2 \
                 OR (x.budget_account = $1 AND COALESCE(x.heartbeat_at, x.started_at, x.created_at) \
                 + make_interval(secs => COALESCE(x.lease_seconds, $4)::DOUBLE PRECISION) >= $3))) \
                 FROM sync_runs r WHERE r.id = $2",
            )
            .bind(account)
            .bind(id.0)
            .bind(now)
            .bind(lease_seconds(lease))
            .fetch_optional(&self.pool)
            .await?;
        let Some((holder, status, registered, applied, live)) = own else {
            return Err(lease_lost(false, id));
        };
        if holder.as_deref() != Some(worker) || status != RunStatus::Running.as_str() {
            return Err(lease_lost(true, id));
        }
        let runs = sharing(live);
        if registered.as_deref() != Some(account) || applied != Some(i64::from(runs)) {
            let changed = sqlx::query(
                "UPDATE sync_runs SET budget_account = $3, budget_share = $4 \
                 WHERE id = $1 AND worker_id = $2 AND status = 'running'",
            )
            .bind(id.0)
            .bind(worker)
            .bind(account)
            .bind(i64::from(runs))
            .execute(&self.pool)
            .await?;
            if changed.rows_affected() == 0 {
                return Err(lease_lost(self.exists("sync_runs", id.0).await?, id));
            }
        }
        if runs == 1 {
            return Ok(AccountShare {
                runs,
                settled: true,
            });
        }
        // Live peers still running at a larger rate than the account can afford now.
        let behind: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_runs WHERE status = 'running' AND budget_account = $1 \
             AND id <> $2 AND COALESCE(budget_share, 0) < $5 AND COALESCE(heartbeat_at, started_at, created_at) \
             + make_interval(secs => COALESCE(lease_seconds, $4)::DOUBLE PRECISION) >= $3",
        )
        .bind(account)
        .bind(id.0)
        .bind(now)
        .bind(lease_seconds(lease))
        .bind(i64::from(runs))
        .fetch_one(&self.pool)
        .await?;
        Ok(AccountShare {
            runs,
            settled: behind == 0,
        })
    }

    async fn release_run(&self, id: RunId, worker: &str) -> Result<SyncRun, StoreError> {
        let released = sqlx::query(
            "UPDATE sync_runs SET worker_id = NULL, heartbeat_at = $3, budget_account = NULL, \
             budget_share = NULL \
             WHERE id = $1 AND worker_id = $2 AND status = 'running'",
        )
        .bind(id.0)
        .bind(worker)
        .bind(released_heartbeat())
        .execute(&self.pool)
        .await?;
        if released.rows_affected() == 0 {
            return Err(lease_lost(self.exists("sync_runs", id.0).await?, id));
        }
        self.run(id).await
    }

    async fn request_cancel(&self, id: RunId, now: DateTime<Utc>) -> Result<SyncRun, StoreError> {
        // Every SET expression reads the row as it was, so `status` below is the old one.
        let done = sqlx::query(
            "UPDATE sync_runs SET cancel_requested = TRUE, \
             ended_at = CASE WHEN status = 'queued' THEN $2 ELSE ended_at END, \
             errors = CASE WHEN status = 'queued' THEN $3 ELSE errors END, \
             status = CASE WHEN status = 'queued' THEN 'canceled' ELSE status END \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id.0)
        .bind(now)
        .bind(Json(canceled_before_start()))
        .execute(&self.pool)
        .await?;
        let run = self.run(id).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::RunFinished {
                id: id.0,
                status: run.status,
            });
        }
        Ok(run)
    }

    async fn database_time(&self) -> Result<DateTime<Utc>, StoreError> {
        Ok(sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn run_status_counts(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM sync_runs GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        status_counts(rows)
    }

    #[tracing::instrument(name = "store.create_api_token", skip_all)]
    async fn create_api_token(&self, name: &str) -> Result<(ApiToken, SecretString), StoreError> {
        let name = check_name("API token", name)?;
        let new = tokens::new_api_token().await?;
        let row = sqlx::query_as::<_, ApiTokenRow>(
            "INSERT INTO api_tokens (name, prefix, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) \
             RETURNING id, name, prefix, token_hash, created_at, last_used_at, revoked_at",
        )
        .bind(name)
        .bind(&new.prefix)
        .bind(&new.hash)
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.into_token(), new.token))
    }

    async fn list_api_tokens(&self, page: PageRequest) -> Result<Page<ApiToken>, StoreError> {
        let (limit, offset) = limit_offset(page);
        let rows = sqlx::query_as::<_, ApiTokenRow>(&format!(
            "{API_TOKEN_SELECT} ORDER BY id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(Page {
            items: rows.into_iter().map(ApiTokenRow::into_token).collect(),
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn revoke_api_token(&self, id: ApiTokenId) -> Result<ApiToken, StoreError> {
        sqlx::query_as::<_, ApiTokenRow>(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             RETURNING id, name, prefix, token_hash, created_at, last_used_at, revoked_at",
        )
        .bind(id.0)
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await?
        .map(ApiTokenRow::into_token)
        .ok_or(StoreError::NotFound {
            entity: Entity::ApiToken,
            id: id.0,
        })
    }

    #[tracing::instrument(name = "store.authenticate_api_token", skip_all)]
    async fn authenticate_api_token(&self, token: &str) -> Result<ApiToken, StoreError> {
        tokens::authenticate(self, &self.tokens, token).await
    }

    async fn user_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    #[tracing::instrument(name = "store.create_user", skip_all)]
    async fn create_user(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, StoreError> {
        let (username, hash) = tokens::new_user(username, password).await?;
        let row = sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) \
             RETURNING id, username, password_hash, created_at",
        )
        .bind(&username)
        .bind(hash)
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            unique_or(
                e,
                "username",
                format!("the username `{username}` is taken: choose another"),
            )
        })?;
        Ok(row.into_user())
    }

    #[tracing::instrument(name = "store.set_user_password", skip_all)]
    async fn set_user_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, StoreError> {
        let (username, hash) = tokens::new_user(username, password).await?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query_as::<_, UserRow>(
            "UPDATE users SET password_hash = $1 WHERE username = $2 \
             RETURNING id, username, password_hash, created_at",
        )
        .bind(hash)
        .bind(&username)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| tokens::unknown_user(&username))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.into_user())
    }

    #[tracing::instrument(name = "store.verify_user_password", skip_all)]
    async fn verify_user_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, StoreError> {
        tokens::verify_user(self, username, password).await
    }

    #[tracing::instrument(name = "store.create_session", skip_all, fields(user_id = %user))]
    async fn create_session(
        &self,
        user: UserId,
        ttl: chrono::Duration,
    ) -> Result<(Session, SecretString), StoreError> {
        let new = tokens::new_session(ttl)?;
        self.require("users", Entity::User, user.0).await?;
        // Expired sessions are of no use to anyone: clear them as new ones are made.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(new.created_at)
            .execute(&self.pool)
            .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sessions (user_id, token_hash, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user.0)
        .bind(&new.token_hash)
        .bind(&new.csrf_token)
        .bind(new.created_at)
        .bind(new.expires_at)
        .fetch_one(&self.pool)
        .await?;
        let session = sqlx::query_as::<_, SessionRow>(&format!("{SESSION_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            .into_session();
        Ok((session, new.token))
    }

    #[tracing::instrument(name = "store.session_by_token", skip_all)]
    async fn session_by_token(&self, token: &str) -> Result<Session, StoreError> {
        sqlx::query_as::<_, SessionRow>(&format!(
            "{SESSION_SELECT} WHERE s.token_hash = $1 AND s.expires_at > $2"
        ))
        .bind(tokens::session_token_hash(token))
        .bind(Utc::now())
        .fetch_optional(&self.pool)
        .await?
        .map(SessionRow::into_session)
        .ok_or(StoreError::Unauthorized {
            reason: refused::NO_SESSION,
        })
    }

    async fn delete_session(&self, id: SessionId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        found(done.rows_affected(), Entity::Session, id.0)
    }

    #[tracing::instrument(name = "store.rotate_master_key", skip_all)]
    async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport, StoreError> {
        let old = self.key();
        let mut report = RotationReport::default();
        let mut tx = self.pool.begin().await?;
        // No other node may write a secret (sealed under the old key) while this runs.
        sqlx::query("LOCK TABLE projects, configurations, state_meta IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let projects: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, database_url_sealed FROM projects")
                .fetch_all(&mut *tx)
                .await?;
        for (id, sealed) in projects {
            sqlx::query("UPDATE projects SET database_url_sealed = $2 WHERE id = $1")
                .bind(id)
                .bind(reseal(&old, &new, sealed)?)
                .execute(&mut *tx)
                .await?;
            report.projects += 1;
        }
        let configurations = sqlx::query_as::<_, ConfigurationSecretsRow>(
            "SELECT id, stripe_key_sealed, webhook_secret_sealed FROM configurations",
        )
        .fetch_all(&mut *tx)
        .await?;
        for c in configurations {
            let webhook = c
                .webhook_secret_sealed
                .map(|w| reseal(&old, &new, w))
                .transpose()?;
            report.webhook_secrets += u64::from(webhook.is_some());
            sqlx::query(
                "UPDATE configurations SET stripe_key_sealed = $2, webhook_secret_sealed = $3 \
                 WHERE id = $1",
            )
            .bind(c.id)
            .bind(reseal(&old, &new, c.stripe_key_sealed)?)
            .bind(webhook)
            .execute(&mut *tx)
            .await?;
            report.configurations += 1;
        }
        // The state's key check moves to the new key with its secrets, or not at all.
        sqlx::query(
            "INSERT INTO state_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(KEY_CHECK_NAME)
        .bind(new.key_check()?.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(report)
    }
}

#[async_trait]
impl CredentialRows for PostgresStore {
    async fn api_token_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<StoredApiToken>, StoreError> {
        Ok(
            sqlx::query_as::<_, ApiTokenRow>(&format!("{API_TOKEN_SELECT} WHERE prefix = $1"))
                .bind(prefix)
                .fetch_optional(&self.pool)
                .await?
                .map(ApiTokenRow::into_stored),
        )
    }

    async fn touch_api_token(
        &self,
        id: ApiTokenId,
        now: DateTime<Utc>,
        written_after: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(id.0)
        .bind(now)
        .bind(written_after)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>, StoreError> {
        Ok(sqlx::query_as::<_, UserRow>(
            "SELECT id, username, password_hash, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .map(UserRow::into_user_and_hash))
    }
}

#[async_trait]
impl KeyCheckRows for PgPool {
    async fn key_check(&self) -> Result<Option<Sealed>, StoreError> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM state_meta WHERE name = $1")
                .bind(KEY_CHECK_NAME)
                .fetch_optional(self)
                .await?;
        Ok(value.map(Sealed::from_stored))
    }

    async fn some_sealed_secret(&self) -> Result<Option<Sealed>, StoreError> {
        let value: Option<String> = sqlx::query_scalar(
            "SELECT sealed FROM (SELECT database_url_sealed AS sealed FROM projects \
             UNION ALL SELECT stripe_key_sealed FROM configurations) AS secrets LIMIT 1",
        )
        .fetch_optional(self)
        .await?;
        Ok(value.map(Sealed::from_stored))
    }

    async fn add_key_check(&self, check: &Sealed) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO state_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(KEY_CHECK_NAME)
        .bind(check.as_str())
        .execute(self)
        .await?;
        Ok(())
    }
}
