//! Row wrappers shared by both backends: the columns as the database returns them, and their
//! conversion into the model's types (opening sealed secrets on the way).
//!
//! The SQL that fills these lives in each backend; the column names are the same in both
//! schemas, so `sqlx::FromRow` works for either.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cls_destination::{DatabaseKind, DatabaseUrl};
use cls_stripe::{ApiKey, KeyKind, Mode};
use secrecy::{ExposeSecret, SecretString};
use sqlx::types::Json;

use super::StoreError;
use crate::model::{
    ApiToken, ApiTokenId, Cadence, Configuration, ConfigurationId, CronExpression, Every, Project,
    ProjectId, RunError, RunId, Schedule, ScheduleId, Session, SessionId, SyncRun, TypeStats, User,
    UserId,
};
use crate::secrets::{MasterKey, Sealed};
use crate::tokens::StoredApiToken;

/// Columns of `projects`.
#[derive(sqlx::FromRow)]
pub(super) struct ProjectRow {
    /// `id`.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `kind` (`postgres`/`sqlite`).
    pub kind: String,
    /// `database_url_sealed`.
    pub database_url_sealed: String,
    /// `schema_name`.
    pub schema_name: String,
    /// `active`.
    pub active: bool,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// Columns of `configurations`, plus the project's `active` as `project_active`.
#[derive(sqlx::FromRow)]
pub(super) struct ConfigurationRow {
    /// `id`.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `project_id`.
    pub project_id: i64,
    /// `provider`.
    pub provider: String,
    /// `stripe_key_sealed`.
    pub stripe_key_sealed: String,
    /// `key_kind`.
    pub key_kind: String,
    /// `key_mode`.
    pub key_mode: String,
    /// `key_masked`.
    pub key_masked: String,
    /// `data_types` (JSON array of names).
    pub data_types: Json<Vec<String>>,
    /// `stripe_api_base`.
    pub stripe_api_base: Option<String>,
    /// `active`.
    pub active: bool,
    /// The project's `active`.
    pub project_active: bool,
    /// `webhook_secret_sealed`.
    pub webhook_secret_sealed: Option<String>,
    /// `include_connected_accounts`.
    pub include_connected_accounts: bool,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// Columns of `schedules`, plus the configuration's and project's `active`.
#[derive(sqlx::FromRow)]
pub(super) struct ScheduleRow {
    /// `id`.
    pub id: i64,
    /// `configuration_id`.
    pub configuration_id: i64,
    /// `cadence` (`hourly`… or `cron`).
    pub cadence: String,
    /// `cron_expression` (set when `cadence` is `cron`).
    pub cron_expression: Option<String>,
    /// `mode`.
    pub mode: String,
    /// `active`.
    pub active: bool,
    /// `paused_reason`.
    pub paused_reason: Option<String>,
    /// The configuration's `active`.
    pub configuration_active: bool,
    /// The project's `active`.
    pub project_active: bool,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
    /// `last_due_at`.
    pub last_due_at: Option<DateTime<Utc>>,
}

/// Columns of `sync_runs`.
#[derive(sqlx::FromRow)]
pub(super) struct RunRow {
    /// `id`.
    pub id: i64,
    /// `configuration_id`.
    pub configuration_id: i64,
    /// `trigger_kind`.
    pub trigger_kind: String,
    /// `mode`.
    pub mode: String,
    /// `status`.
    pub status: String,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `started_at`.
    pub started_at: Option<DateTime<Utc>>,
    /// `ended_at`.
    pub ended_at: Option<DateTime<Utc>>,
    /// `stats` (JSON object: data type → counters).
    pub stats: Json<BTreeMap<String, TypeStats>>,
    /// `errors` (JSON array).
    pub errors: Json<Vec<RunError>>,
    /// `worker_id`.
    pub worker_id: Option<String>,
    /// `heartbeat_at`.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// `cancel_requested`.
    pub cancel_requested: bool,
}

/// Columns of `api_tokens`.
#[derive(sqlx::FromRow)]
pub(super) struct ApiTokenRow {
    /// `id`.
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `prefix`.
    pub prefix: String,
    /// `token_hash` (argon2id PHC string).
    pub token_hash: String,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `last_used_at`.
    pub last_used_at: Option<DateTime<Utc>>,
    /// `revoked_at`.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Columns of `users`.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    /// `id`.
    pub id: i64,
    /// `username`.
    pub username: String,
    /// `password_hash` (argon2id PHC string).
    pub password_hash: String,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
}

/// Columns of `sessions`, plus the user's `username`.
#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
    /// `id`.
    pub id: i64,
    /// `user_id`.
    pub user_id: i64,
    /// The user's `username`.
    pub username: String,
    /// `csrf_token`.
    pub csrf_token: String,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `expires_at`.
    pub expires_at: DateTime<Utc>,
}

/// The secret columns of one configuration, for master key rotation.
#[derive(sqlx::FromRow)]
pub(super) struct ConfigurationSecretsRow {
    /// `id`.
    pub id: i64,
    /// `stripe_key_sealed`.
    pub stripe_key_sealed: String,
    /// `webhook_secret_sealed`.
    pub webhook_secret_sealed: Option<String>,
}

/// How a database kind is stored.
pub(super) fn kind_text(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Postgres => "postgres",
        DatabaseKind::Sqlite => "sqlite",
    }
}

/// How a key kind is stored.
pub(super) fn key_kind_text(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Restricted => "restricted",
        KeyKind::Secret => "secret",
    }
}

/// How a key mode is stored.
pub(super) fn key_mode_text(mode: Mode) -> &'static str {
    match mode {
        Mode::Test => "test",
        Mode::Live => "live",
    }
}

/// Splits a cadence into its two columns.
pub(super) fn cadence_columns(cadence: &Cadence) -> (&'static str, Option<String>) {
    match cadence {
        Cadence::Every(e) => (e.as_str(), None),
        Cadence::Cron(c) => ("cron", Some(c.as_str().to_string())),
    }
}

/// Seals a database URL.
pub(super) fn seal_url(key: &MasterKey, url: &DatabaseUrl) -> Result<String, StoreError> {
    let secret = SecretString::from(url.expose());
    Ok(key.seal(&secret)?.as_str().to_string())
}

/// Seals any secret text (webhook secrets).
pub(super) fn seal_secret(key: &MasterKey, secret: &SecretString) -> Result<String, StoreError> {
    Ok(key.seal(secret)?.as_str().to_string())
}

/// Opens a stored secret under `old` and seals it again under `new` (key rotation).
pub(super) fn reseal(
    old: &MasterKey,
    new: &MasterKey,
    stored: String,
) -> Result<String, StoreError> {
    let plain = old.open(&Sealed::from_stored(stored))?;
    seal_secret(new, &plain)
}

/// Seals a Stripe key.
pub(super) fn seal_key(key: &MasterKey, api_key: &ApiKey) -> Result<String, StoreError> {
    let secret = SecretString::from(api_key.expose_secret());
    Ok(key.seal(&secret)?.as_str().to_string())
}

fn corrupt(what: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        reason: reason.to_string(),
    }
}

impl ProjectRow {
    /// The model value, URL opened.
    pub fn into_project(self, key: &MasterKey) -> Result<Project, StoreError> {
        let plain = key.open(&Sealed::from_stored(self.database_url_sealed))?;
        // The parse error never quotes the URL, so no password leaks through it.
        let database_url =
            DatabaseUrl::parse(plain.expose_secret()).map_err(|e| corrupt("database URL", e))?;
        let kind = match self.kind.as_str() {
            "postgres" => DatabaseKind::Postgres,
            "sqlite" => DatabaseKind::Sqlite,
            other => return Err(corrupt("project kind", other)),
        };
        Ok(Project {
            id: ProjectId(self.id),
            name: self.name,
            kind,
            database_url,
            schema: self.schema_name,
            active: self.active,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl ConfigurationRow {
    /// The model value, key opened.
    pub fn into_configuration(self, key: &MasterKey) -> Result<Configuration, StoreError> {
        let plain = key.open(&Sealed::from_stored(self.stripe_key_sealed))?;
        let api_key = ApiKey::parse(plain.expose_secret()).map_err(|e| corrupt("Stripe key", e))?;
        let key_kind = match self.key_kind.as_str() {
            "restricted" => KeyKind::Restricted,
            "secret" => KeyKind::Secret,
            other => return Err(corrupt("key kind", other)),
        };
        let key_mode = match self.key_mode.as_str() {
            "test" => Mode::Test,
            "live" => Mode::Live,
            other => return Err(corrupt("key mode", other)),
        };
        Ok(Configuration {
            id: ConfigurationId(self.id),
            name: self.name,
            project_id: ProjectId(self.project_id),
            provider: self.provider,
            key: api_key,
            key_kind,
            key_mode,
            key_masked: self.key_masked,
            data_types: self.data_types.0,
            stripe_api_base: self.stripe_api_base,
            active: self.active,
            project_active: self.project_active,
            webhook_secret: self
                .webhook_secret_sealed
                .map(|sealed| key.open(&Sealed::from_stored(sealed)))
                .transpose()?,
            include_connected_accounts: self.include_connected_accounts,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl ScheduleRow {
    /// The model value.
    pub fn into_schedule(self) -> Result<Schedule, StoreError> {
        let cadence = if self.cadence == "cron" {
            let text = self
                .cron_expression
                .ok_or_else(|| corrupt("schedule cadence", "cron without an expression"))?;
            Cadence::Cron(CronExpression::parse(&text).map_err(|e| corrupt("cron expression", e))?)
        } else {
            Cadence::Every(
                self.cadence
                    .parse::<Every>()
                    .map_err(|e| corrupt("schedule cadence", e))?,
            )
        };
        Ok(Schedule {
            id: ScheduleId(self.id),
            configuration_id: ConfigurationId(self.configuration_id),
            cadence,
            mode: self.mode.parse().map_err(|e| corrupt("sync mode", e))?,
            active: self.active,
            paused_reason: self.paused_reason,
            configuration_active: self.configuration_active,
            project_active: self.project_active,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_due_at: self.last_due_at,
        })
    }
}

impl RunRow {
    /// The model value.
    pub fn into_run(self) -> Result<SyncRun, StoreError> {
        Ok(SyncRun {
            id: RunId(self.id),
            configuration_id: ConfigurationId(self.configuration_id),
            trigger: self
                .trigger_kind
                .parse()
                .map_err(|e| corrupt("run trigger", e))?,
            mode: self.mode.parse().map_err(|e| corrupt("sync mode", e))?,
            status: self.status.parse().map_err(|e| corrupt("run status", e))?,
            created_at: self.created_at,
            started_at: self.started_at,
            ended_at: self.ended_at,
            stats: self.stats.0,
            errors: self.errors.0,
            worker_id: self.worker_id,
            heartbeat_at: self.heartbeat_at,
            cancel_requested: self.cancel_requested,
        })
    }
}

impl ApiTokenRow {
    /// The listable token.
    pub fn into_token(self) -> ApiToken {
        self.into_stored().token
    }

    /// The token with its hash, for checking.
    pub fn into_stored(self) -> StoredApiToken {
        StoredApiToken {
            token: ApiToken {
                id: ApiTokenId(self.id),
                name: self.name,
                prefix: self.prefix,
                created_at: self.created_at,
                last_used_at: self.last_used_at,
                revoked_at: self.revoked_at,
            },
            hash: self.token_hash,
        }
    }
}

impl UserRow {
    /// The user (without the hash).
    pub fn into_user(self) -> User {
        self.into_user_and_hash().0
    }

    /// The user and their password hash, for checking.
    pub fn into_user_and_hash(self) -> (User, String) {
        (
            User {
                id: UserId(self.id),
                username: self.username,
                created_at: self.created_at,
            },
            self.password_hash,
        )
    }
}

impl SessionRow {
    /// The session.
    pub fn into_session(self) -> Session {
        Session {
            id: SessionId(self.id),
            user_id: UserId(self.user_id),
            username: self.username,
            csrf_token: self.csrf_token,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}
