//! Test Connection: the one rule behind the REST API's and the dashboard's test of a
//! configuration, a project and a pasted key.
//!
//! - The Stripe half ([`check_key`]): whose account the key opens, its kind and mode, and
//!   per chosen data type whether it is readable or which `rak_…` permission it lacks.
//! - The database half ([`check_database`]): reachable, and may cls create its schema and
//!   tables — or, when it may not, do the tables of the data types exist already (made by
//!   hand) and may it read and write them; when neither, the exact `CREATE TABLE` SQL to run
//!   by hand.
//! - A configuration's whole test ([`test_configuration`]): both halves and, when both
//!   pass, the schedules the *system* paused (a revoked key, a lost permission, an
//!   unreachable database) switched on again ([`resume_system_paused`]). A schedule a person
//!   paused has no reason and stays paused.
//! - A project's test ([`test_project`]): the database half only; when it passes, the
//!   schedules of the project's configurations the system paused because the database was
//!   unreachable are switched on again — and no others, since the key was not tested.
//!
//! Each half gives up after a [`TimeLimits`] bound, so a black-holed host cannot hold a page
//! or a request open; a timeout is its own error variant, with what to check.

use std::time::Duration;

use cls_catalog::DataType;
use cls_destination::{DatabaseInfo, DatabaseUrl, DestinationError};
use cls_engine::{check_stripe, StripeCheck};
use cls_stripe::{ApiKey, ClientConfig, StripeClient, StripeError};
use url::Url;

use crate::model::{
    Configuration, ConfigurationId, PageRequest, Project, ProjectId, ScheduleId, SchedulePatch,
};
use crate::store::{Store, StoreError};

/// How long each half of Test Connection may take before it is reported as timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    /// The Stripe half (the account and one list request per data type).
    pub stripe: Duration,
    /// The database half (connect, and ask what the user may do).
    pub database: Duration,
}

impl Default for TimeLimits {
    /// 45 s for Stripe (a few slow requests, each retried at most twice), 30 s for the
    /// database (a cold serverless PostgreSQL can take seconds to wake).
    fn default() -> Self {
        TimeLimits {
            stripe: Duration::from_secs(45),
            database: Duration::from_secs(30),
        }
    }
}

/// Why the Stripe half of Test Connection could not say anything per data type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeCheckError {
    /// Stripe answered with an error that concerns the key or the account (rejected key,
    /// unreachable API, bad API base), or the client could not be built.
    #[error(transparent)]
    Stripe(#[from] StripeError),
    /// Stripe did not answer in time.
    #[error("Stripe did not answer within {} s: check the server can reach the Stripe API (or the configured API base), then test again", .0.as_secs())]
    TimedOut(Duration),
}

/// Why the database half of Test Connection could not reach the database or ask it.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseCheckError {
    /// The destination refused or failed (its messages name the database by its masked URL
    /// only).
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The database did not answer in time.
    #[error("the database did not answer within {} s: check that it is running and reachable from this server (host, port, firewall)", .0.as_secs())]
    TimedOut(Duration),
}

/// What the database half found in a database that answered.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseCheck {
    /// What the database said about itself and the user.
    pub info: DatabaseInfo,
    /// When the user may not create tables, data types were given and their tables are not
    /// all there to write: the SQL that creates them, to run by hand as a user who may.
    pub create_tables_sql: Option<String>,
}

impl DatabaseCheck {
    /// Whether the sync can write here: cls may create its schema and tables, or every table
    /// it needs exists and it may read and write them ([`DatabaseInfo::tables_ready`]).
    pub fn passed(&self) -> bool {
        self.info.can_create || self.info.tables_ready
    }

    /// The outcome in one sentence, with what to do when it did not pass.
    pub fn message(&self) -> String {
        if self.info.can_create {
            format!(
                "the database is reachable and cls can create schema \"{}\" and its tables",
                self.info.schema
            )
        } else if self.info.tables_ready {
            format!(
                "the database is reachable; this user cannot create tables, but every table needed already exists in schema \"{}\" and it may read and write them",
                self.info.schema
            )
        } else {
            format!(
                "the database is reachable, but this user cannot create schema \"{}\" or tables in it: grant CREATE on the database (or the schema) to the user, or create the tables by hand",
                self.info.schema
            )
        }
    }
}

/// Test Connection's client settings: it gives up sooner than a sync would, so the whole
/// check fits in [`TimeLimits::stripe`].
fn client_config(api_base: Option<&Url>) -> ClientConfig {
    let mut config = ClientConfig {
        max_retries: 2,
        max_retry_elapsed: Duration::from_secs(15),
        request_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    };
    if let Some(base) = api_base {
        config.api_base = base.clone();
    }
    config
}

/// Runs `client`'s Stripe check within `limit`.
async fn check_with(
    client: Result<StripeClient, StripeError>,
    types: &[&'static DataType],
    limit: Duration,
) -> Result<StripeCheck, StripeCheckError> {
    let client = client?;
    match tokio::time::timeout(limit, check_stripe(&client, types)).await {
        Ok(checked) => Ok(checked?),
        Err(_) => Err(StripeCheckError::TimedOut(limit)),
    }
}

/// The Stripe half for a key not stored yet (a wizard's pasted key): `api_base` is the
/// Stripe-compatible API to ask, `None` for Stripe's own.
pub async fn check_key(
    key: &ApiKey,
    api_base: Option<&Url>,
    types: &[&'static DataType],
    limit: Duration,
) -> Result<StripeCheck, StripeCheckError> {
    let client = StripeClient::new(key.clone(), client_config(api_base));
    check_with(client, types, limit).await
}

/// The Stripe half for `key` used as `configuration`'s (its stored key, or one about to
/// replace it), through the configuration's API base, else `default_api_base`, else
/// Stripe's ([`Configuration::api_base`]) — the runner's own rule.
pub async fn check_configuration_key(
    configuration: &Configuration,
    key: &ApiKey,
    default_api_base: Option<&Url>,
    limit: Duration,
) -> Result<StripeCheck, StripeCheckError> {
    let api_base = configuration.api_base(default_api_base)?;
    check_key(
        key,
        api_base.as_ref(),
        &configuration.catalog_types(),
        limit,
    )
    .await
}

/// The database half: connects to `url` (tables in `schema`) and asks what the sync needs.
/// With data types, a database where cls may not create tables passes when their tables
/// are all there and writable (made by hand), and otherwise comes with the SQL to create
/// them by hand; with none, only the CREATE privilege counts.
pub async fn check_database(
    url: &DatabaseUrl,
    schema: &str,
    types: &[&'static DataType],
    limit: Duration,
) -> Result<DatabaseCheck, DatabaseCheckError> {
    let attempt = async {
        let dest = cls_destination::connect(url, schema).await?;
        let mut info = dest.check().await?;
        if !info.can_create && !types.is_empty() {
            info.tables_ready = dest.tables_ready(types).await?;
        }
        let create_tables_sql = (!info.can_create && !info.tables_ready && !types.is_empty())
            .then(|| dest.create_tables_sql(types));
        Ok::<_, DestinationError>(DatabaseCheck {
            info,
            create_tables_sql,
        })
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(checked) => Ok(checked?),
        Err(_) => Err(DatabaseCheckError::TimedOut(limit)),
    }
}

/// How the runner's pause reasons for an unreachable database begin (its words, in
/// `runner.rs`: "the database <masked URL> is unreachable: …"); the reasons for a key begin
/// with "Stripe" or "the Stripe key". A project's test lifts only these.
const DATABASE_PAUSE_START: &str = "the database ";

/// Whether a system pause's `reason` was the database being unreachable.
fn paused_for_database(reason: &str) -> bool {
    reason.starts_with(DATABASE_PAUSE_START)
}

/// Switches on again `configuration`'s schedules the system paused (those with a reason; a
/// person's pause has none and stays), every page of them; the ids switched on.
pub async fn resume_system_paused(
    store: &dyn Store,
    configuration: ConfigurationId,
) -> Result<Vec<ScheduleId>, StoreError> {
    resume_paused(store, configuration, |_| true).await
}

/// Switches on again `configuration`'s schedules the system paused for a reason `lifts`
/// accepts, every page of them; the ids switched on.
async fn resume_paused(
    store: &dyn Store,
    configuration: ConfigurationId,
    lifts: fn(&str) -> bool,
) -> Result<Vec<ScheduleId>, StoreError> {
    let mut resumed = Vec::new();
    let mut page = PageRequest {
        offset: 0,
        limit: 500,
    };
    loop {
        let got = store.list_schedules(Some(configuration), page).await?;
        let n = got.items.len() as u64;
        for s in got.items {
            if !s.active && s.paused_reason.as_deref().is_some_and(lifts) {
                let patch = SchedulePatch {
                    active: Some(true),
                    ..SchedulePatch::default()
                };
                let s = store.update_schedule(s.id, patch).await?;
                tracing::info!(schedule_id = %s.id, "schedule resumed by a passing Test Connection");
                resumed.push(s.id);
            }
        }
        page.offset += n;
        if n == 0 || page.offset >= got.total {
            return Ok(resumed);
        }
    }
}

/// Switches on again the schedules of `project`'s configurations that the system paused
/// because of the database; the ids switched on.
async fn resume_database_paused(
    store: &dyn Store,
    project: ProjectId,
) -> Result<Vec<ScheduleId>, StoreError> {
    let mut resumed = Vec::new();
    for c in project_configurations(store, project).await? {
        resumed.extend(resume_paused(store, c.id, paused_for_database).await?);
    }
    Ok(resumed)
}

/// The data types `project`'s configurations sync, each once, in catalog order: the
/// tables its database must hold.
async fn project_types(
    store: &dyn Store,
    project: ProjectId,
) -> Result<Vec<&'static DataType>, StoreError> {
    let names: std::collections::BTreeSet<String> = project_configurations(store, project)
        .await?
        .into_iter()
        .flat_map(|c| c.data_types)
        .collect();
    Ok(cls_catalog::CATALOG
        .iter()
        .filter(|t| names.contains(t.name))
        .collect())
}

/// Every configuration of `project`, paging through the store.
async fn project_configurations(
    store: &dyn Store,
    project: ProjectId,
) -> Result<Vec<Configuration>, StoreError> {
    let mut all = Vec::new();
    let mut page = PageRequest {
        offset: 0,
        limit: 500,
    };
    loop {
        let got = store.list_configurations(Some(project), page).await?;
        let n = got.items.len() as u64;
        all.extend(got.items);
        page.offset += n;
        if n == 0 || page.offset >= got.total {
            return Ok(all);
        }
    }
}

/// What Test Connection found for a project.
#[derive(Debug)]
pub struct ProjectTest {
    /// The project tested.
    pub project: Project,
    /// Its database.
    pub database: Result<DatabaseCheck, DatabaseCheckError>,
    /// The schedules the system had paused for an unreachable database that this passing
    /// test switched on again (empty when it did not pass).
    pub resumed: Vec<ScheduleId>,
}

impl ProjectTest {
    /// Whether the database is reachable and cls may create its tables (or they are there
    /// to write).
    pub fn passed(&self) -> bool {
        matches!(&self.database, Ok(d) if d.passed())
    }
}

/// Test Connection for a project: its database ([`check_database`], with the data types of
/// its configurations, so tables made by hand count); when it passes, the schedules of the
/// project's configurations the system paused because of the database are switched on again
/// (a pause for the key stays: only a configuration's test checks the key). An unknown project is [`StoreError::NotFound`]; a
/// failing check is not an error.
pub async fn test_project(
    store: &dyn Store,
    id: ProjectId,
    limits: TimeLimits,
) -> Result<ProjectTest, StoreError> {
    let project = store.project(id).await?;
    let types = project_types(store, id).await?;
    let database = check_database(
        &project.database_url,
        &project.schema,
        &types,
        limits.database,
    )
    .await;
    let mut test = ProjectTest {
        project,
        database,
        resumed: Vec::new(),
    };
    if test.passed() {
        test.resumed = resume_database_paused(store, test.project.id).await?;
    }
    Ok(test)
}

/// What Test Connection found for a configuration.
#[derive(Debug)]
pub struct ConnectionTest {
    /// The configuration tested.
    pub configuration: Configuration,
    /// Its project, whose database was tested.
    pub project: Project,
    /// The Stripe half.
    pub stripe: Result<StripeCheck, StripeCheckError>,
    /// The database half.
    pub database: Result<DatabaseCheck, DatabaseCheckError>,
    /// The schedules the system had paused that this passing test switched on again (empty
    /// when it did not pass).
    pub resumed: Vec<ScheduleId>,
}

impl ConnectionTest {
    /// Whether the key works and reads every chosen data type.
    pub fn stripe_passed(&self) -> bool {
        matches!(&self.stripe, Ok(s) if s.all_readable())
    }

    /// Whether the database is reachable and cls may create its tables (or they are there
    /// to write).
    pub fn database_passed(&self) -> bool {
        matches!(&self.database, Ok(d) if d.passed())
    }

    /// Whether everything passed (and so the system's pauses were lifted).
    pub fn passed(&self) -> bool {
        self.stripe_passed() && self.database_passed()
    }
}

/// Test Connection for a configuration: its stored key ([`check_configuration_key`]) and its
/// project's database ([`check_database`], with the SQL for its data types); when both pass,
/// the schedules the system paused are switched on again ([`resume_system_paused`]). An
/// unknown configuration is [`StoreError::NotFound`]; a failing check is not an error.
pub async fn test_configuration(
    store: &dyn Store,
    id: ConfigurationId,
    default_api_base: Option<&Url>,
    limits: TimeLimits,
) -> Result<ConnectionTest, StoreError> {
    let configuration = store.configuration(id).await?;
    let project = store.project(configuration.project_id).await?;
    let types = configuration.catalog_types();
    let (stripe, database) = tokio::join!(
        check_configuration_key(
            &configuration,
            &configuration.key,
            default_api_base,
            limits.stripe
        ),
        check_database(
            &project.database_url,
            &project.schema,
            &types,
            limits.database
        ),
    );
    let mut test = ConnectionTest {
        configuration,
        project,
        stripe,
        database,
        resumed: Vec::new(),
    };
    if test.passed() {
        test.resumed = resume_system_paused(store, test.configuration.id).await?;
    }
    Ok(test)
}

#[cfg(test)]
mod tests {
    use super::paused_for_database;

    #[test]
    fn only_database_pauses_are_database_pauses() {
        assert!(paused_for_database(
            "the database postgres://u:***@db/app is unreachable: check that it is running and reachable, then Test Connection to resume"
        ));
        for other in [
            "Stripe rejected the key rk_test_…abcd (revoked, expired or rolled): paste a current key, then Test Connection to resume",
            "the Stripe key rk_test_…abcd lacks rak_charge_read: grant them to the restricted key (or paste a new key), then Test Connection to resume",
            "",
        ] {
            assert!(!paused_for_database(other), "{other}");
        }
    }
}
