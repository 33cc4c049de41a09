//! The product's concepts as typed values: [`Project`], [`Configuration`], [`Schedule`] and
//! [`SyncRun`] (ARCHITECTURE.md, "Concepts"), the `New…` values that create them and the
//! `…Patch` values that change them.
//!
//! What can change after creation is fixed by the types: a [`ConfigurationPatch`] has no
//! project, provider or data types, so no caller can change them. Secrets are held as
//! [`DatabaseUrl`] and [`ApiKey`], whose `Debug`/`Display` are masked.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cls_destination::{DatabaseKind, DatabaseUrl};
use cls_stripe::{ApiKey, ClientConfig, KeyKind, Mode, StripeClient, StripeError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Schema used in a project's database when none is given.
pub const DEFAULT_SCHEMA: &str = "stripe";

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a project.
    ProjectId
);
id_type!(
    /// Identifies a configuration.
    ConfigurationId
);
id_type!(
    /// Identifies a schedule.
    ScheduleId
);
id_type!(
    /// Identifies a sync run.
    RunId
);
id_type!(
    /// Identifies an API token (shown in `cls admin list-api-keys`, used to revoke it).
    ApiTokenId
);
id_type!(
    /// Identifies a dashboard user.
    UserId
);
id_type!(
    /// Identifies a dashboard session.
    SessionId
);

/// A stored enum's text did not match any variant (a damaged or newer state database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a valid {what}: expected one of {expected}")]
pub struct UnknownVariant {
    /// What kind of value it was meant to be.
    pub what: &'static str,
    /// The text found.
    pub given: String,
    /// The accepted spellings.
    pub expected: &'static str,
}

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored and shown (`"full"`, `"queued"`, …).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownVariant {
                        what: $what,
                        given: other.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

text_enum!(
    /// Full copy or changes since the last run.
    SyncMode, "sync mode" {
        /// Every chosen list is walked again.
        Full => "full",
        /// Only the events since the stored cursor are applied.
        Incremental => "incremental",
    }
);

text_enum!(
    /// What started a run.
    Trigger, "trigger" {
        /// Sync Now (dashboard or API).
        Manual => "manual",
        /// A schedule came due.
        Schedule => "schedule",
        /// A Stripe webhook delivery.
        Webhook => "webhook",
        /// `cls sync` recorded against the state database.
        Cli => "cli",
    }
);

text_enum!(
    /// Where a run is in its life.
    RunStatus, "run status" {
        /// Waiting for a worker (or for the configuration's current run to end).
        Queued => "queued",
        /// A worker is executing it.
        Running => "running",
        /// Every chosen data type was copied.
        Succeeded => "succeeded",
        /// Some data types failed; the others were copied.
        Partial => "partial",
        /// Nothing was copied.
        Failed => "failed",
        /// Stopped on request, at a checkpoint.
        Canceled => "canceled",
    }
);

impl RunStatus {
    /// Whether the run has ended (no further status change is expected).
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

text_enum!(
    /// The fixed cadences a schedule can have besides a cron expression.
    Every, "cadence" {
        /// At the top of every hour.
        Hour => "hourly",
        /// Once a day.
        Day => "daily",
        /// Once a week.
        Week => "weekly",
        /// Once a month.
        Month => "monthly",
    }
);

/// Why a project, configuration or schedule does not run by itself right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "reason", rename_all = "snake_case")]
pub enum Paused {
    /// The project's active toggle is off.
    ProjectInactive,
    /// The configuration's active toggle is off.
    ConfigurationInactive,
    /// The schedule itself is paused, by a person (no reason) or by the system (the reason,
    /// e.g. "the Stripe key was revoked").
    Schedule(Option<String>),
}

impl fmt::Display for Paused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Paused::ProjectInactive => f.write_str("paused: the project is inactive"),
            Paused::ConfigurationInactive => f.write_str("paused: the configuration is inactive"),
            Paused::Schedule(None) => f.write_str("paused: the schedule is paused"),
            Paused::Schedule(Some(reason)) => write!(f, "paused: {reason}"),
        }
    }
}

/// A destination database.
#[derive(Debug, Clone)]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// Name shown to people.
    pub name: String,
    /// PostgreSQL or SQLite (from the URL).
    pub kind: DatabaseKind,
    /// Connection string (decrypted; `Display`/`Debug` mask the password).
    pub database_url: DatabaseUrl,
    /// Schema the tables go into (`stripe` by default; ignored by SQLite).
    pub schema: String,
    /// Off: none of its configurations sync.
    pub active: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Project {
    /// `Some` when the project is switched off.
    pub fn paused(&self) -> Option<Paused> {
        (!self.active).then_some(Paused::ProjectInactive)
    }
}

/// What creating a project takes.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Name shown to people.
    pub name: String,
    /// Connection string.
    pub database_url: DatabaseUrl,
    /// Target schema; [`DEFAULT_SCHEMA`] when `None`.
    pub schema: Option<String>,
}

/// Changes to a project; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    /// New name.
    pub name: Option<String>,
    /// New connection string (e.g. a rotated password).
    pub database_url: Option<DatabaseUrl>,
    /// New target schema.
    pub schema: Option<String>,
    /// Switch on or off.
    pub active: Option<bool>,
}

/// One Stripe source feeding one project.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// Its id.
    pub id: ConfigurationId,
    /// Name shown to people.
    pub name: String,
    /// The project it writes into (fixed).
    pub project_id: ProjectId,
    /// The source's provider; always `stripe` today (fixed).
    pub provider: String,
    /// The Stripe key (decrypted; `Debug`/`Display` show only the masked form).
    pub key: ApiKey,
    /// Restricted or secret, as stored with the key.
    pub key_kind: KeyKind,
    /// Test or live, as stored with the key.
    pub key_mode: Mode,
    /// `rk_test_…abcd`, as stored with the key.
    pub key_masked: String,
    /// Data types synced, in catalog order; each is also its table's name (fixed).
    pub data_types: Vec<String>,
    /// A Stripe-compatible API base for this configuration (an emulator, a proxy); `None`
    /// uses the server's default (fixed).
    pub stripe_api_base: Option<String>,
    /// Off: it does not sync.
    pub active: bool,
    /// Whether its project is active (read with the configuration).
    pub project_active: bool,
    /// The Stripe webhook signing secret (`whsec_…`) that deliveries for this configuration
    /// are checked with (decrypted; `Debug` shows `[REDACTED]`); `None` when not set.
    pub webhook_secret: Option<SecretString>,
    /// Stripe Connect: a run also copies every connected account of the key's platform
    /// (listed from `/v1/accounts`, read with `Stripe-Account`), after the platform's own
    /// data, into the same tables — each row carries its account's `account_id`. Off by
    /// default; set with [`crate::Store::set_include_connected_accounts`].
    pub include_connected_accounts: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Configuration {
    /// Whether a webhook signing secret is set (for masked display: show "set", never it).
    pub fn has_webhook_secret(&self) -> bool {
        self.webhook_secret.is_some()
    }

    /// `Some` when this configuration cannot sync: its project or itself is switched off.
    pub fn paused(&self) -> Option<Paused> {
        if !self.project_active {
            Some(Paused::ProjectInactive)
        } else if !self.active {
            Some(Paused::ConfigurationInactive)
        } else {
            None
        }
    }

    /// The Stripe API base this configuration reaches: its own, else `default` (the server's
    /// `--stripe-api-base`), else Stripe's (`None`).
    pub fn api_base(&self, default: Option<&url::Url>) -> Result<Option<url::Url>, StripeError> {
        match self.stripe_api_base.as_deref() {
            Some(raw) => url::Url::parse(raw).map(Some).map_err(|e| StripeError::Config {
                message: format!(
                    "the configuration's Stripe API base `{raw}` is not a URL ({e}): recreate the configuration with a valid one"
                ),
            }),
            None => Ok(default.cloned()),
        }
    }

    /// A Stripe client for this configuration's key and API base ([`Configuration::api_base`]),
    /// with `config`'s other settings (timeouts, retries, rates).
    pub fn stripe_client(
        &self,
        default_api_base: Option<&url::Url>,
        mut config: ClientConfig,
    ) -> Result<StripeClient, StripeError> {
        if let Some(base) = self.api_base(default_api_base)? {
            config.api_base = base;
        }
        StripeClient::new(self.key.clone(), config)
    }

    /// The catalog entries of its data types, in its order (a name the catalog no longer
    /// knows is left out).
    pub fn catalog_types(&self) -> Vec<&'static cls_catalog::DataType> {
        self.data_types
            .iter()
            .filter_map(|t| cls_catalog::find(t))
            .collect()
    }

    /// The table names, one per data type (the catalog names each table after its type).
    pub fn table_names(&self) -> Vec<String> {
        self.data_types
            .iter()
            .map(|t| cls_catalog::find(t).map_or_else(|| t.clone(), |d| d.table().to_string()))
            .collect()
    }
}

/// What creating a configuration takes.
#[derive(Debug, Clone)]
pub struct NewConfiguration {
    /// Name shown to people.
    pub name: String,
    /// The project it writes into; must exist.
    pub project_id: ProjectId,
    /// The Stripe key.
    pub key: ApiKey,
    /// Data types to sync (catalog entries, so always known names).
    pub data_types: Vec<&'static cls_catalog::DataType>,
    /// Optional Stripe-compatible API base.
    pub stripe_api_base: Option<url::Url>,
    /// Optional Stripe webhook signing secret (`whsec_…`), sealed at rest.
    pub webhook_secret: Option<SecretString>,
}

/// Changes to a configuration. Only these fields can change: provider, project, data types
/// and tables are fixed after creation.
#[derive(Debug, Clone, Default)]
pub struct ConfigurationPatch {
    /// New name.
    pub name: Option<String>,
    /// Switch on or off.
    pub active: Option<bool>,
    /// A replacement key (rotation).
    pub key: Option<ApiKey>,
    /// The webhook signing secret: `None` leaves it, `Some(Some(s))` sets it,
    /// `Some(None)` clears it.
    pub webhook_secret: Option<Option<SecretString>>,
}

/// When a schedule comes due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    /// A fixed cadence.
    Every(Every),
    /// A cron expression.
    Cron(CronExpression),
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Every(e) => e.fmt(f),
            Cadence::Cron(c) => c.fmt(f),
        }
    }
}

/// A cron expression that parses: five fields (`min hour day month weekday`) or six/seven
/// with seconds (and year), as the `cron` crate reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpression {
    /// The expression as the user wrote it.
    text: String,
}

/// A cron expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` is not a valid cron expression ({reason}): write five fields `minute hour day-of-month month day-of-week`, e.g. `0 3 * * *` for 03:00 every day")]
pub struct InvalidCron {
    /// The text given.
    pub given: String,
    /// What the parser said.
    pub reason: String,
}

impl CronExpression {
    /// Parses and validates an expression.
    pub fn parse(text: &str) -> Result<CronExpression, InvalidCron> {
        let text = text.trim();
        let fields = text.split_whitespace().count();
        // The cron crate wants seconds first; people write the classic five fields.
        let full = if fields == 5 {
            format!("0 {text}")
        } else {
            text.to_string()
        };
        cron::Schedule::from_str(&full).map_err(|e| InvalidCron {
            given: text.to_string(),
            reason: e.to_string(),
        })?;
        Ok(CronExpression {
            text: text.to_string(),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed schedule (with seconds), for computing due times.
    pub fn schedule(&self) -> Option<cron::Schedule> {
        let full = if self.text.split_whitespace().count() == 5 {
            format!("0 {}", self.text)
        } else {
            self.text.clone()
        };
        cron::Schedule::from_str(&full).ok()
    }
}

impl fmt::Display for CronExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// When a configuration syncs by itself.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// The configuration it starts.
    pub configuration_id: ConfigurationId,
    /// When it comes due.
    pub cadence: Cadence,
    /// Full or incremental runs.
    pub mode: SyncMode,
    /// Off: paused by a person or by the system.
    pub active: bool,
    /// Why the system paused it (key revoked, permission lost, database unreachable).
    pub paused_reason: Option<String>,
    /// Whether the configuration is active (read with the schedule).
    pub configuration_active: bool,
    /// Whether the configuration's project is active (read with the schedule).
    pub project_active: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The last slot it came due at (a run was queued for it); `None` before the first.
    pub last_due_at: Option<DateTime<Utc>>,
}

impl Schedule {
    /// `Some` when the schedule does not start runs: its project, its configuration or
    /// itself is paused (checked in that order).
    pub fn paused(&self) -> Option<Paused> {
        if !self.project_active {
            Some(Paused::ProjectInactive)
        } else if !self.configuration_active {
            Some(Paused::ConfigurationInactive)
        } else if !self.active {
            Some(Paused::Schedule(self.paused_reason.clone()))
        } else {
            None
        }
    }
}

/// What creating a schedule takes.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    /// The configuration it starts; must exist.
    pub configuration_id: ConfigurationId,
    /// When it comes due.
    pub cadence: Cadence,
    /// Full or incremental runs.
    pub mode: SyncMode,
}

/// Changes to a schedule; `None` leaves a field as it is. Pausing with a reason is
/// [`crate::Store::pause_schedule`].
#[derive(Debug, Clone, Default)]
pub struct SchedulePatch {
    /// New cadence.
    pub cadence: Option<Cadence>,
    /// New mode.
    pub mode: Option<SyncMode>,
    /// Switch on (clears the pause reason) or off.
    pub active: Option<bool>,
}

/// Counters for one data type in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStats {
    /// Objects received from Stripe.
    pub objects: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows marked deleted.
    pub deleted: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// 429 responses received.
    pub rate_limited: u64,
}

impl std::ops::AddAssign<&TypeStats> for TypeStats {
    fn add_assign(&mut self, o: &TypeStats) {
        self.objects += o.objects;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.requests += o.requests;
        self.retries += o.retries;
        self.rate_limited += o.rate_limited;
    }
}

/// One error a run met, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// The data type it concerns, if any.
    pub data_type: Option<String>,
    /// What happened and what to do.
    pub message: String,
}

/// One execution of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRun {
    /// Its id.
    pub id: RunId,
    /// The configuration it syncs.
    pub configuration_id: ConfigurationId,
    /// What started it.
    pub trigger: Trigger,
    /// Full or incremental.
    pub mode: SyncMode,
    /// Where it is in its life.
    pub status: RunStatus,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Counters per data type name.
    pub stats: BTreeMap<String, TypeStats>,
    /// Errors, in the order met.
    pub errors: Vec<RunError>,
    /// The worker holding the run's lease while it runs (kept after it ends, to say who
    /// ran it); `None` before it was claimed.
    pub worker_id: Option<String>,
    /// When that worker last said it was alive; a running run whose heartbeat is older than
    /// the lease is taken over by another worker.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Someone asked to cancel the running run; its worker stops it at the next heartbeat.
    pub cancel_requested: bool,
}

impl SyncRun {
    /// Its counters summed over every data type.
    pub fn totals(&self) -> TypeStats {
        let mut totals = TypeStats::default();
        for s in self.stats.values() {
            totals += s;
        }
        totals
    }

    /// How long it ran, to the millisecond: `None` until it has started and ended (a clock
    /// that stepped back counts as zero).
    pub fn duration(&self) -> Option<std::time::Duration> {
        let ran = self.ended_at? - self.started_at?;
        Some(std::time::Duration::from_millis(
            ran.num_milliseconds().max(0).unsigned_abs(),
        ))
    }
}

/// What a heartbeat learned about its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Someone asked to cancel the run: stop it (at a checkpoint) and record it canceled.
    pub cancel_requested: bool,
}

/// How a running run shares its Stripe account's rate budget ([`crate::Store::share_account`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountShare {
    /// Live runs of the account, this one included: the run divides the account's limits by
    /// this many (at least 1).
    pub runs: u32,
    /// Every other live run of the account has applied a share of at least `runs`, so the
    /// sum of their rates is within the account's limits. A run starting beside others waits
    /// for this before its first request (bounded: a peer whose worker died never answers).
    pub settled: bool,
}

/// What [`crate::Store::rotate_master_key`] re-sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Projects whose database URL was re-sealed.
    pub projects: u64,
    /// Configurations whose Stripe key was re-sealed.
    pub configurations: u64,
    /// Webhook secrets re-sealed.
    pub webhook_secrets: u64,
}

/// A REST API token as listed: never its secret part, which is shown once at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id (to revoke it).
    pub id: ApiTokenId,
    /// Name given by whoever created it ("ci", "grafana").
    pub name: String,
    /// The public start of the token (`cls_1a2b3c4d`), to recognise it in lists.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (updated at most about once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A dashboard user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The name it signs in with (unique).
    pub username: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A signed-in dashboard session. `Debug` leaves out the CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id (to sign out).
    pub id: SessionId,
    /// Who is signed in.
    pub user_id: UserId,
    /// Their username.
    pub username: String,
    /// The token every state-changing form must echo (double-submit CSRF protection).
    pub csrf_token: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("username", &self.username)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What queuing a run takes.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The configuration to sync; must exist.
    pub configuration_id: ConfigurationId,
    /// What started it.
    pub trigger: Trigger,
    /// Full or incremental.
    pub mode: SyncMode,
}

/// Changes to a run as it progresses; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    /// New status.
    pub status: Option<RunStatus>,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// End time.
    pub ended_at: Option<DateTime<Utc>>,
    /// Counters (replace the stored ones).
    pub stats: Option<BTreeMap<String, TypeStats>>,
    /// Errors (replace the stored ones).
    pub errors: Option<Vec<RunError>>,
}

/// One page of a list, with the total for pagination.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items exist in all.
    pub total: u64,
}

/// Which page of a list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Items to skip.
    pub offset: u64,
    /// Items to return at most.
    pub limit: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            offset: 0,
            limit: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_text() {
        for m in SyncMode::ALL {
            assert_eq!(m.as_str().parse::<SyncMode>(), Ok(*m));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(*t));
        }
        for e in Every::ALL {
            assert_eq!(e.as_str().parse::<Every>(), Ok(*e));
        }
        assert!("sometimes".parse::<Every>().is_err());
    }

    #[test]
    fn cron_expressions_are_checked() {
        assert!(CronExpression::parse("0 3 * * *").is_ok());
        assert!(CronExpression::parse("0 0 3 * * * *").is_ok());
        let err = CronExpression::parse("every day");
        assert!(err.is_err());
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("five fields"), "{msg}");
    }

    fn run(stats: &[(&str, u64, u64)], ran_ms: Option<i64>) -> SyncRun {
        let start = Utc::now();
        SyncRun {
            id: RunId(1),
            configuration_id: ConfigurationId(1),
            trigger: Trigger::Manual,
            mode: SyncMode::Full,
            status: RunStatus::Succeeded,
            created_at: start,
            started_at: Some(start),
            ended_at: ran_ms.map(|ms| start + chrono::Duration::milliseconds(ms)),
            stats: stats
                .iter()
                .map(|(name, objects, requests)| {
                    let s = TypeStats {
                        objects: *objects,
                        requests: *requests,
                        ..TypeStats::default()
                    };
                    (name.to_string(), s)
                })
                .collect(),
            errors: Vec::new(),
            worker_id: None,
            heartbeat_at: None,
            cancel_requested: false,
        }
    }

    #[test]
    fn a_runs_totals_sum_every_data_type() {
        let r = run(&[("customers", 12, 2), ("charges", 30, 3)], None);
        let t = r.totals();
        assert_eq!((t.objects, t.requests, t.inserted), (42, 5, 0));
        assert_eq!(run(&[], None).totals(), TypeStats::default());
    }

    #[test]
    fn a_run_has_a_duration_once_it_has_ended() {
        use std::time::Duration;
        assert_eq!(run(&[], None).duration(), None);
        assert_eq!(
            run(&[], Some(1_234)).duration(),
            Some(Duration::from_millis(1_234))
        );
        // A clock that stepped back between start and end.
        assert_eq!(run(&[], Some(-5)).duration(), Some(Duration::ZERO));
    }
}
