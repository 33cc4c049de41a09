//! Codeless Sync's control plane: the state behind the REST API, the scheduler and the
//! dashboard.
//!
//! - [`check`]: Test Connection — a key's account and per-data-type access, a database's
//!   readiness, each within a time bound, and the resuming of the schedules the system
//!   paused once a configuration's (or, for database pauses, a project's) test passes.
//! - [`model`]: the product's concepts as types — [`Project`] (a destination database),
//!   [`Configuration`] (a Stripe key feeding a project), [`Schedule`] (when a configuration
//!   syncs by itself) and [`SyncRun`] (one execution; the sync history is the list of runs).
//! - [`secrets`]: AES-256-GCM sealing of Stripe keys and database URLs under the
//!   [`MasterKey`] (`CLS_MASTER_KEY` or the generated key file), checked against the state
//!   when it is opened.
//! - [`store`]: the [`Store`] trait with one implementation per backend ([`SqliteStore`],
//!   the embedded default, and [`PostgresStore`], for several nodes), each with its own
//!   migrations; [`open`] picks one from a [`StateUrl`].
//! - [`schedule`]: when a schedule comes due — pure functions of a cadence and times.
//! - [`service`]: the scheduler and worker loops `cls serve` runs, with graceful shutdown.
//! - [`tokens`]: API tokens, dashboard passwords and sessions — how they are made, hashed
//!   and checked, shared by both backends.
//! - [`runner`]: the scheduler and runner — [`Runner::step`] queues due runs and executes
//!   one queued run through the engine; time comes from an injectable [`Clock`].

pub mod check;
pub mod model;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod service;
pub mod store;
pub mod tokens;

pub use check::{
    check_configuration_key, check_database, check_key, resume_system_paused, test_configuration,
    test_project, ConnectionTest, DatabaseCheck, DatabaseCheckError, ProjectTest, StripeCheckError,
    TimeLimits,
};
pub use model::{
    AccountShare, ApiToken, ApiTokenId, Cadence, Configuration, ConfigurationId,
    ConfigurationPatch, CronExpression, Every, Heartbeat, NewConfiguration, NewProject, NewRun,
    NewSchedule, Page, PageRequest, Paused, Project, ProjectId, ProjectPatch, RotationReport,
    RunError, RunId, RunStatus, RunUpdate, Schedule, ScheduleId, SchedulePatch, Session, SessionId,
    SyncMode, SyncRun, Trigger, TypeStats, User, UserId, DEFAULT_SCHEMA,
};
pub use runner::{
    AlignedClock, Clock, ExecutedRun, ManualClock, Runner, RunnerConfig, RunnerError, ScheduledRun,
    StepOutcome, SystemClock,
};
pub use secrets::{KeyLookup, KeySource, MasterKey, Sealed, SecretsError, MASTER_KEY_ENV};
pub use store::{open, Entity, PostgresStore, QueuedRun, SqliteStore, StateUrl, Store, StoreError};
