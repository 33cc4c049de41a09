//! The state store: where projects, configurations, schedules and sync runs live.
//!
//! [`Store`] is the one interface; [`SqliteStore`] (the embedded default) and
//! [`PostgresStore`] (for several nodes sharing one database) implement it, each owning its
//! SQL and its migrations (`migrations/sqlite`, `migrations/postgres`: the same schema in
//! each dialect). [`open`] picks the implementation from a [`StateUrl`].
//!
//! Rules the store enforces, whatever the caller:
//! - secrets (database URLs, Stripe keys) are sealed with the [`MasterKey`] before they are
//!   written and opened when read; the state database never holds them in plain text;
//! - a store opens only with the master key the state's secrets were sealed with, and makes
//!   a new key file only for a state that holds nothing sealed ([`key_check`]);
//! - deleting a project deletes its configurations (and their schedules and runs);
//! - a configuration's provider, project and data types never change after creation
//!   ([`ConfigurationPatch`] cannot express it);
//! - an inactive project or configuration shows as paused ([`Configuration::paused`],
//!   [`Schedule::paused`]);
//! - API tokens, passwords and session tokens are stored only as hashes
//!   ([`crate::tokens`]);
//! - a running run belongs to the worker holding its lease: only that worker's heartbeats
//!   and final record are accepted ([`StoreError::LeaseLost`]), and a run whose heartbeat is
//!   older than the lease (or that its worker released on shutdown) is taken over by the
//!   next claim, keeping its id;
//! - a running run names the Stripe account it syncs, so the runs of one account on every
//!   node can divide its rate budget ([`Store::share_account`]).

mod key_check;
mod postgres;
mod rows;
mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cls_destination::{DatabaseKind, DatabaseUrl};

use std::collections::BTreeMap;

use secrecy::SecretString;

use crate::model::{
    AccountShare, ApiToken, ApiTokenId, Configuration, ConfigurationId, ConfigurationPatch,
    Heartbeat, NewConfiguration, NewProject, NewRun, NewSchedule, Page, PageRequest, Project,
    ProjectId, ProjectPatch, RotationReport, RunError, RunId, RunStatus, RunUpdate, Schedule,
    ScheduleId, SchedulePatch, Session, SessionId, SyncRun, TypeStats, User, UserId,
};
use crate::secrets::{KeyLookup, MasterKey, SecretsError};

pub use postgres::{PostgresStore, CONTROL_SCHEMA};
pub use sqlite::SqliteStore;

/// Which kind of thing was looked up; named in [`StoreError::NotFound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A project.
    Project,
    /// A configuration.
    Configuration,
    /// A schedule.
    Schedule,
    /// A sync run.
    Run,
    /// An API token.
    ApiToken,
    /// A dashboard user.
    User,
    /// A dashboard session.
    Session,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Entity::Project => "project",
            Entity::Configuration => "configuration",
            Entity::Schedule => "schedule",
            Entity::Run => "sync run",
            Entity::ApiToken => "API token",
            Entity::User => "user",
            Entity::Session => "session",
        })
    }
}

/// What went wrong in the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The `--state-url` is not one the store accepts.
    #[error("invalid state URL ({reason}): use `sqlite://path/to/state.db` (the default) or `postgres://user:password@host:5432/dbname`")]
    InvalidStateUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The state database could not be opened.
    #[error("cannot open the state database {url}: {source}: check --state-url, that the database is running and that the user may connect")]
    Connect {
        /// The URL, password masked.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot prepare the state database schema: {0}: check the user may create tables, or restore the database if it was changed by hand")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A looked-up id does not exist.
    #[error("{entity} {id} does not exist: list them to find the right id")]
    NotFound {
        /// What was looked up.
        entity: Entity,
        /// The id asked for.
        id: i64,
    },
    /// A run that has ended cannot change status (a cancel that lost the race against the
    /// run's own end, or a late report).
    #[error("sync run {id} has already ended ({status}): start a new run instead")]
    RunFinished {
        /// The run.
        id: i64,
        /// How it ended.
        status: crate::model::RunStatus,
    },
    /// A credential (API token, password, session) was refused: malformed, unknown,
    /// revoked or expired. The API answers 401 with `reason`.
    #[error("{reason}")]
    Unauthorized {
        /// What was wrong and what to do, without saying more than needed.
        reason: &'static str,
    },
    /// The run is no longer this worker's: another worker took it over after missed
    /// heartbeats, or it ended. The worker stops and records nothing.
    #[error("sync run {id} is no longer held by this worker (another worker took it over after missed heartbeats, or it ended): stop working on it; its current owner records the outcome")]
    LeaseLost {
        /// The run.
        id: i64,
    },
    /// Hashing a password or token failed (not expected with valid inputs).
    #[error("hashing a password or token failed ({0}): retry, and report this if it persists")]
    Hash(argon2::password_hash::Error),
    /// A value given to the store is not acceptable (the API answers 400 naming `field`).
    #[error("{reason}")]
    Invalid {
        /// The input field at fault (`name`, `schema`, `data_types`).
        field: &'static str,
        /// What is wrong and what to give instead.
        reason: String,
    },
    /// A query failed.
    #[error("the state database failed: {0}: check it is reachable and retry")]
    Database(#[from] sqlx::Error),
    /// Sealing or opening a secret failed (wrong master key, damaged value).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A stored value does not parse (a damaged or newer state database).
    #[error("the state database holds an unreadable {what} ({reason}): it may have been written by a newer version of cls, or changed by hand")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where the state lives: `sqlite://path` or `postgres://…`. `Display`/`Debug` mask the
/// password.
#[derive(Clone)]
pub struct StateUrl {
    /// The parsed URL (its `Display` masks the password).
    url: DatabaseUrl,
}

impl StateUrl {
    /// Parses a state URL. `sqlite::memory:` is refused: state must outlive the process.
    pub fn parse(raw: &str) -> Result<StateUrl, StoreError> {
        let url = DatabaseUrl::parse(raw).map_err(|e| StoreError::InvalidStateUrl {
            reason: e.to_string(),
        })?;
        if url.kind() == DatabaseKind::Sqlite && url.expose().contains(":memory:") {
            return Err(StoreError::InvalidStateUrl {
                reason: "an in-memory SQLite database would lose all state when cls stops".into(),
            });
        }
        Ok(StateUrl { url })
    }

    /// The default: `sqlite://<data_dir>/state.db`.
    pub fn default_in(data_dir: &std::path::Path) -> Result<StateUrl, StoreError> {
        StateUrl::parse(&format!("sqlite://{}", data_dir.join("state.db").display()))
    }

    /// SQLite or PostgreSQL.
    pub fn kind(&self) -> DatabaseKind {
        self.url.kind()
    }

    /// The real URL, for connecting.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// For SQLite, the file path.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.kind() != DatabaseKind::Sqlite {
            return None;
        }
        let raw = self.url.expose();
        let rest = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next()?;
        Some(PathBuf::from(path))
    }
}

impl fmt::Display for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.masked())
    }
}

impl fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StateUrl").field(&self.url.masked()).finish()
    }
}

/// The state store's interface; see the module doc for the rules every implementation keeps.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Creates a project (active, schema `stripe` unless given).
    async fn create_project(&self, new: NewProject) -> Result<Project, StoreError>;
    /// One project.
    async fn project(&self, id: ProjectId) -> Result<Project, StoreError>;
    /// Projects, oldest first.
    async fn list_projects(&self, page: PageRequest) -> Result<Page<Project>, StoreError>;
    /// Changes a project's name, URL, schema or active toggle.
    async fn update_project(
        &self,
        id: ProjectId,
        patch: ProjectPatch,
    ) -> Result<Project, StoreError>;
    /// Deletes a project with its configurations, their schedules and runs.
    async fn delete_project(&self, id: ProjectId) -> Result<(), StoreError>;

    /// Creates a configuration (active) in an existing project.
    async fn create_configuration(
        &self,
        new: NewConfiguration,
    ) -> Result<Configuration, StoreError>;
    /// One configuration.
    async fn configuration(&self, id: ConfigurationId) -> Result<Configuration, StoreError>;
    /// Configurations, oldest first; only one project's when `project` is given.
    async fn list_configurations(
        &self,
        project: Option<ProjectId>,
        page: PageRequest,
    ) -> Result<Page<Configuration>, StoreError>;
    /// Changes a configuration's name, active toggle or key.
    async fn update_configuration(
        &self,
        id: ConfigurationId,
        patch: ConfigurationPatch,
    ) -> Result<Configuration, StoreError>;
    /// Stripe Connect: whether runs of the configuration also sync the connected accounts of
    /// its key's platform (see [`Configuration::include_connected_accounts`]). A setter of its
    /// own rather than a [`NewConfiguration`]/[`ConfigurationPatch`] field, so adding it
    /// changed no caller's struct literal.
    async fn set_include_connected_accounts(
        &self,
        id: ConfigurationId,
        include: bool,
    ) -> Result<Configuration, StoreError>;
    /// Deletes a configuration with its schedules and runs.
    async fn delete_configuration(&self, id: ConfigurationId) -> Result<(), StoreError>;

    /// Creates a schedule (active) for an existing configuration.
    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, StoreError>;
    /// One schedule.
    async fn schedule(&self, id: ScheduleId) -> Result<Schedule, StoreError>;
    /// Schedules, oldest first; only one configuration's when `configuration` is given.
    async fn list_schedules(
        &self,
        configuration: Option<ConfigurationId>,
        page: PageRequest,
    ) -> Result<Page<Schedule>, StoreError>;
    /// Changes a schedule's cadence, mode or active toggle (switching it on clears the
    /// pause reason).
    async fn update_schedule(
        &self,
        id: ScheduleId,
        patch: SchedulePatch,
    ) -> Result<Schedule, StoreError>;
    /// Pauses a schedule, saying why (the system's words, e.g. "the Stripe key was revoked").
    async fn pause_schedule(&self, id: ScheduleId, reason: &str) -> Result<Schedule, StoreError>;
    /// Deletes a schedule.
    async fn delete_schedule(&self, id: ScheduleId) -> Result<(), StoreError>;

    /// Queues a run of an existing configuration.
    async fn create_run(&self, new: NewRun) -> Result<SyncRun, StoreError>;
    /// One run.
    async fn run(&self, id: RunId) -> Result<SyncRun, StoreError>;
    /// A configuration's runs (its sync history), newest first.
    async fn list_runs(
        &self,
        configuration: ConfigurationId,
        page: PageRequest,
    ) -> Result<Page<SyncRun>, StoreError>;
    /// Records a run's progress or outcome. Once a run has ended (succeeded, partial, failed,
    /// canceled) its status no longer changes: [`StoreError::RunFinished`].
    async fn update_run(&self, id: RunId, update: RunUpdate) -> Result<SyncRun, StoreError>;

    /// Queues a run unless the configuration already has a queued one, atomically (at most
    /// one queued run per configuration, whoever asks): Sync Now pressed twice, or a
    /// schedule coming due while a run waits, returns the waiting run.
    async fn queue_run(&self, new: NewRun) -> Result<QueuedRun, StoreError>;
    /// Records that a schedule came due at `slot`, if its last due slot is still `expected`
    /// (what the caller read). `false` when another caller recorded a slot first: that
    /// caller queues the run, so a slot is never queued twice.
    async fn mark_schedule_due(
        &self,
        id: ScheduleId,
        expected: Option<DateTime<Utc>>,
        slot: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Claims a run for `worker`, atomically (two workers never claim the same run, and a
    /// configuration never has two live running runs). First a *running* run silent for
    /// longer than the lease its worker holds it under (its worker died; `lease` for runs
    /// claimed before leases were recorded): it is taken over, same id, worker, heartbeat
    /// and lease set to this one's and `now`; the engine resumes from its checkpoints.
    /// Otherwise the oldest queued run whose configuration has no running run, marked
    /// running since `now` under `lease`. `None` when nothing can start. Every run records
    /// the lease it is held under, so a node configured with a shorter lease never takes
    /// over a run that is alive under a longer one.
    async fn claim_next_run(
        &self,
        now: DateTime<Utc>,
        worker: &str,
        lease: chrono::Duration,
    ) -> Result<Option<SyncRun>, StoreError>;
    /// Says `worker` is still executing run `id` at `now`, with its live per-data-type
    /// counters when given (for progress bars). Tells whether a cancel was requested;
    /// [`StoreError::LeaseLost`] when the run is no longer this worker's.
    async fn heartbeat(
        &self,
        id: RunId,
        worker: &str,
        now: DateTime<Utc>,
        stats: Option<BTreeMap<String, TypeStats>>,
    ) -> Result<Heartbeat, StoreError>;
    /// Records how `worker`'s run ended, only while it still holds the lease
    /// ([`StoreError::LeaseLost`] otherwise: whoever took it over records it).
    async fn finish_run(
        &self,
        id: RunId,
        worker: &str,
        update: RunUpdate,
    ) -> Result<SyncRun, StoreError>;
    /// Records that `worker`'s running run `id` syncs the Stripe account `account` (the rate
    /// budget's key, e.g. `acct_123/test`) and says how many live runs share that account
    /// now, this one included: running runs registered with the same account whose heartbeat
    /// is within the lease its worker holds it under (`lease` when none is recorded), on any
    /// node. Records that count as the share the run applies (the runner divides the
    /// account's rate budget by it at once), and says whether every other live run of the
    /// account has applied at least that share ([`AccountShare::settled`]). Only reads
    /// unless the share changed. The runner asks again several times a second while the run
    /// lives, so shares follow runs starting, ending, dying and being taken over, and a run
    /// starting beside others waits until they are settled.
    /// [`StoreError::LeaseLost`] when the run is no longer this worker's.
    async fn share_account(
        &self,
        id: RunId,
        worker: &str,
        account: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<AccountShare, StoreError>;
    /// Gives `worker`'s running run back without ending it (a node shutting down): it stays
    /// running with its progress, but its lease ends now, so the next claim on any node takes
    /// it over at once — instead of after the lease — and resumes it from its checkpoints.
    /// [`StoreError::LeaseLost`] when the run is no longer this worker's.
    async fn release_run(&self, id: RunId, worker: &str) -> Result<SyncRun, StoreError>;
    /// Cancels a run: a queued one ends `canceled` at `now` (it never started); a running
    /// one is marked `cancel_requested` and stays running until its worker stops it at a
    /// checkpoint. [`StoreError::RunFinished`] when it has ended.
    async fn request_cancel(&self, id: RunId, now: DateTime<Utc>) -> Result<SyncRun, StoreError>;
    /// How many runs are in each status (every status present, zeros included).
    async fn run_status_counts(&self) -> Result<BTreeMap<RunStatus, u64>, StoreError>;
    /// The state database's clock (PostgreSQL's `clock_timestamp()`; a SQLite state lives on
    /// this machine, so its wall clock). Nodes sharing a state align their clocks to it
    /// ([`crate::runner::AlignedClock`]), so leases written by one node are judged by another
    /// on one clock.
    async fn database_time(&self) -> Result<DateTime<Utc>, StoreError>;

    /// Creates an API token named `name`. The token is returned once, here; only its
    /// prefix and an argon2id hash are stored.
    async fn create_api_token(&self, name: &str) -> Result<(ApiToken, SecretString), StoreError>;
    /// API tokens (revoked ones included), oldest first.
    async fn list_api_tokens(&self, page: PageRequest) -> Result<Page<ApiToken>, StoreError>;
    /// Revokes a token; it authenticates nothing from now on (revoking twice keeps the
    /// first time).
    async fn revoke_api_token(&self, id: ApiTokenId) -> Result<ApiToken, StoreError>;
    /// The token a request's `Authorization: Bearer …` names, or
    /// [`StoreError::Unauthorized`] (malformed, unknown, revoked). Successful argon2 checks
    /// are cached briefly; revocation is read from the database every time. Updates
    /// `last_used_at` at most about once a minute.
    async fn authenticate_api_token(&self, token: &str) -> Result<ApiToken, StoreError>;

    /// Dashboard users there are (0: the dashboard asks to create the first one).
    async fn user_count(&self) -> Result<u64, StoreError>;
    /// Creates a dashboard user; passwords under 12 characters and taken usernames are
    /// refused ([`StoreError::Invalid`]).
    async fn create_user(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, StoreError>;
    /// Replaces a user's password (same rules as [`Store::create_user`]) and ends every
    /// session of theirs, so a stolen cookie stops working with the old password.
    async fn set_user_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, StoreError>;
    /// The user when `password` is theirs; [`StoreError::Unauthorized`] otherwise (an
    /// unknown username takes about as long as a wrong password).
    async fn verify_user_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<User, StoreError>;
    /// Signs a user in for `ttl`: the session and its token (for the cookie; only its
    /// SHA-256 is stored).
    async fn create_session(
        &self,
        user: UserId,
        ttl: chrono::Duration,
    ) -> Result<(Session, SecretString), StoreError>;
    /// The session a cookie's token names; [`StoreError::Unauthorized`] when unknown or
    /// expired.
    async fn session_by_token(&self, token: &str) -> Result<Session, StoreError>;
    /// Signs a session out.
    async fn delete_session(&self, id: SessionId) -> Result<(), StoreError>;

    /// Re-seals every secret (database URLs, Stripe keys, webhook secrets) under `new` in
    /// one transaction — all or nothing — after which this store uses `new`. Every secret
    /// must open with the current key first. The state's key check is replaced in the same
    /// transaction, so from then on the state opens only with `new`. Other nodes still hold
    /// the old key: stop them while rotating and start them with the new one.
    async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport, StoreError>;
}

/// What [`Store::queue_run`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum QueuedRun {
    /// A new run was queued; `behind` is the configuration's running run it waits for.
    Queued {
        /// The new run.
        run: SyncRun,
        /// The run it waits for, if one is running.
        behind: Option<RunId>,
    },
    /// The configuration already had a queued run; no new one was made.
    AlreadyQueued(SyncRun),
}

impl QueuedRun {
    /// The run that will carry out the request (new or already waiting).
    pub fn run(&self) -> &SyncRun {
        match self {
            QueuedRun::Queued { run, .. } | QueuedRun::AlreadyQueued(run) => run,
        }
    }

    /// What happened, in words for the person who pressed Sync Now.
    pub fn message(&self) -> String {
        match self {
            QueuedRun::Queued { run, behind: None } => format!("sync run {} queued", run.id),
            QueuedRun::Queued {
                run,
                behind: Some(running),
            } => format!(
                "sync run {} queued: run {running} of this configuration is still running, and a configuration never runs twice at once",
                run.id
            ),
            QueuedRun::AlreadyQueued(run) => format!(
                "sync run {} ({}) is already queued for this configuration: it will start when the current run ends, no second run was queued",
                run.id,
                run.mode.as_str()
            ),
        }
    }
}

/// Opens the state store at `url` (creating a SQLite file and its directory when missing),
/// brings its schema up to date and checks the master key against the state: a
/// [`MasterKey`] (or [`KeyLookup::Found`]) must be the state's; with
/// [`KeyLookup::Missing`], a new key file is made only when the state holds nothing sealed
/// ([`SecretsError::KeyMismatch`], [`SecretsError::KeyMissing`] otherwise).
pub async fn open(url: &StateUrl, key: impl Into<KeyLookup>) -> Result<Arc<dyn Store>, StoreError> {
    match url.kind() {
        DatabaseKind::Sqlite => Ok(Arc::new(SqliteStore::open(url, key).await?)),
        DatabaseKind::Postgres => Ok(Arc::new(PostgresStore::open(url, key).await?)),
    }
}

/// Checks a name given to a project or configuration.
fn check_name(what: &str, name: &str) -> Result<String, StoreError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(StoreError::Invalid {
            field: "name",
            reason: format!("the {what} name is empty: give it a name people will recognise"),
        });
    }
    // PostgreSQL's `text` cannot hold NUL (the SQLite state could, so the two stores would
    // disagree), and line breaks or escape codes garble logs, terminals and the dashboard.
    if trimmed.chars().any(char::is_control) {
        return Err(StoreError::Invalid {
            field: "name",
            reason: format!(
                "the {what} name contains control characters (a line break, tab, NUL or terminal escape code): give it a name of plain text"
            ),
        });
    }
    if trimmed.chars().count() > 200 {
        return Err(StoreError::Invalid {
            field: "name",
            reason: format!(
                "the {what} name is longer than 200 characters: give it a shorter name"
            ),
        });
    }
    Ok(trimmed.to_string())
}

/// Checks a target schema name (a plain SQL identifier).
fn check_schema(schema: &str) -> Result<String, StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(schema.to_string())
    } else {
        Err(StoreError::Invalid {
            field: "schema",
            reason: format!(
                "`{schema}` is not a usable schema name: use lowercase letters, digits and _, starting with a letter (e.g. `stripe`)"
            ),
        })
    }
}

/// `NotFound` for `entity` `id` when a statement that names it by id touched no row.
fn found(affected: u64, entity: Entity, id: i64) -> Result<(), StoreError> {
    if affected == 0 {
        Err(StoreError::NotFound { entity, id })
    } else {
        Ok(())
    }
}

/// Converts a page request into SQL `LIMIT`/`OFFSET` values.
fn limit_offset(page: PageRequest) -> (i64, i64) {
    let limit = i64::try_from(page.limit.clamp(1, 1000)).unwrap_or(1000);
    let offset = i64::try_from(page.offset).unwrap_or(i64::MAX);
    (limit, offset)
}

/// The heartbeat a released run is given: older than any lease, so the next claim takes it
/// over.
fn released_heartbeat() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

/// A lease in whole seconds as recorded on a run, rounded up (a run is never taken over
/// sooner than its worker's lease says).
fn lease_seconds(lease: chrono::Duration) -> i64 {
    lease
        .num_milliseconds()
        .saturating_add(999)
        .div_euclid(1000)
        .max(1)
}

/// The number of runs sharing an account, from a SQL count (the asking run at least).
fn sharing(count: i64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX).max(1)
}

/// The error recorded on a queued run canceled before a worker took it.
fn canceled_before_start() -> Vec<RunError> {
    vec![RunError {
        data_type: None,
        message: "canceled before it started: nothing was copied; sync again when you want it"
            .into(),
    }]
}

/// Counts per status from `(status, count)` rows, every status present.
fn status_counts(rows: Vec<(String, i64)>) -> Result<BTreeMap<RunStatus, u64>, StoreError> {
    let mut counts: BTreeMap<RunStatus, u64> = RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        let status = status
            .parse::<RunStatus>()
            .map_err(|e| StoreError::Corrupt {
                what: "run status",
                reason: e.to_string(),
            })?;
        counts.insert(status, u64::try_from(n).unwrap_or(0));
    }
    Ok(counts)
}

/// `NotFound` or `LeaseLost` for a lease-guarded statement that touched no row: the run
/// exists (`exists`) but is not this worker's running run.
fn lease_lost(exists: bool, id: RunId) -> StoreError {
    if exists {
        StoreError::LeaseLost { id: id.0 }
    } else {
        StoreError::NotFound {
            entity: Entity::Run,
            id: id.0,
        }
    }
}

/// A unique-constraint violation becomes `Invalid` naming `field`; other errors pass.
fn unique_or(e: sqlx::Error, field: &'static str, reason: String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Invalid { field, reason }
        }
        _ => StoreError::Database(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_parse_and_mask() -> Result<(), StoreError> {
        let pg = StateUrl::parse("postgres://cls:hunter2@db.example.com:5432/state")?;
        assert_eq!(pg.kind(), DatabaseKind::Postgres);
        assert!(!pg.to_string().contains("hunter2"));
        assert!(!format!("{pg:?}").contains("hunter2"));
        assert!(pg.expose().contains("hunter2"));
        let lite = StateUrl::parse("sqlite:///var/lib/cls/state.db")?;
        assert_eq!(lite.kind(), DatabaseKind::Sqlite);
        assert_eq!(
            lite.sqlite_path(),
            Some(PathBuf::from("/var/lib/cls/state.db"))
        );
        assert!(StateUrl::parse("sqlite::memory:").is_err());
        assert!(StateUrl::parse("mysql://x@y/z").is_err());
        assert!(StateUrl::parse("").is_err());
        Ok(())
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema("stripe").is_ok());
        assert!(check_schema("stripe_2").is_ok());
        assert!(check_schema("Stripe").is_err());
        assert!(check_schema("a;drop").is_err());
        assert!(check_schema("").is_err());
    }

    #[test]
    fn names_keep_unicode_and_refuse_control_characters() {
        for good in ["Entrepôt 🇫🇷", "مستودع", "倉庫", "<b>x</b> & 'y'"] {
            assert_eq!(check_name("project", good).ok().as_deref(), Some(good));
        }
        for bad in [
            "a\u{0}b",
            "two\nlines",
            "red \u{1b}[31m",
            "tab\there",
            "del\u{7f}",
        ] {
            let err = check_name("project", bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("control characters")),
                "{bad:?}: {err:?}"
            );
        }
    }
}
