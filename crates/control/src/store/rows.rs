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
    Cadence, Configuration, ConfigurationId, CronExpression, Every, Project, ProjectId, RunError,
    RunId, Schedule, ScheduleId, SyncRun, TypeStats,
};
use crate::secrets::{MasterKey, Sealed};

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
        })
    }
}
