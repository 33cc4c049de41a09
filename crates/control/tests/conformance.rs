//! The state store's conformance suite: every scenario runs against SQLite (a temp file) and
//! PostgreSQL (a fresh database per test, dropped at the end). PostgreSQL being unreachable
//! fails the PostgreSQL half, never skips it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use cls_control::{
    AccountShare, ApiTokenId, Cadence, ConfigurationId, ConfigurationPatch, CronExpression, Entity,
    Every, KeyLookup, KeySource, MasterKey, NewConfiguration, NewProject, NewRun, NewSchedule,
    PageRequest, Paused, PostgresStore, ProjectId, ProjectPatch, QueuedRun, RunError, RunId,
    RunStatus, RunUpdate, ScheduleId, SchedulePatch, SecretsError, SqliteStore, StateUrl, Store,
    StoreError, SyncMode, Trigger, TypeStats, UserId,
};
use cls_destination::{DatabaseKind, DatabaseUrl};
use cls_stripe::{ApiKey, KeyKind, Mode};
use cls_testkit::db::TestDb;
use secrecy::{ExposeSecret, SecretString};

/// The password used in project URLs; must never appear in the state database.
const DB_PASSWORD: &str = "pw-Zq81xKe0tSecret";
/// A Stripe key used in configurations; must never appear in the state database.
const STRIPE_KEY: &str = "rk_test_51ConformanceKeyBodyAbCdEf0123";
/// The replacement key for rotation tests.
const ROTATED_KEY: &str = "rk_live_51RotatedKeyBodyZyXw98765";
/// A webhook signing secret; must never appear in the state database.
const WEBHOOK_SECRET: &str = "whsec_ConformanceWebhookSecret0123456789";
/// Its replacement.
const ROTATED_WEBHOOK_SECRET: &str = "whsec_RotatedWebhookSecretAbCdEf987654";

/// The worker name claims are made under.
const WORKER: &str = "worker-a";
/// The run lease used in claims.
const LEASE: chrono::Duration = chrono::Duration::seconds(60);

type TestResult = Result<(), StoreError>;

/// Raw access to the state database, to check what is really stored.
enum Raw {
    /// The SQLite file (its `-wal` sibling is read too).
    Sqlite(PathBuf),
    /// A pool on the PostgreSQL test database.
    Postgres(sqlx::PgPool),
}

/// One store under test plus what is needed to reopen, inspect and clean it up.
struct Harness {
    /// The store, through the trait.
    store: Arc<dyn Store>,
    /// The state URL (to reopen with another key).
    url: StateUrl,
    /// The master key the state was first opened with (its key check's).
    key: MasterKey,
    /// Raw access.
    raw: Raw,
    /// The PostgreSQL test database, dropped by `finish`.
    db: Option<TestDb>,
    /// The SQLite temp directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temp dir: {e}"),
        };
        let path = dir.path().join("state").join("state.db");
        let url = must(StateUrl::parse(&format!("sqlite://{}", path.display())));
        let key = MasterKey::generate();
        let store = must(SqliteStore::open(&url, key.clone()).await);
        Harness {
            store: Arc::new(store),
            url,
            key,
            raw: Raw::Sqlite(path),
            db: None,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Harness {
        let db = TestDb::new().await;
        let url = must(StateUrl::parse(&db.url));
        let key = MasterKey::generate();
        let store = must(PostgresStore::open(&url, key.clone()).await);
        let raw = Raw::Postgres(store.pool().clone());
        Harness {
            store: Arc::new(store),
            url,
            key,
            raw,
            db: Some(db),
            _dir: None,
        }
    }

    /// Opens the same state again with `key`.
    async fn reopen(&self, key: impl Into<KeyLookup>) -> Result<Arc<dyn Store>, StoreError> {
        cls_control::open(&self.url, key).await
    }

    /// The one text value `sql` selects, if any row.
    async fn text(&self, sql: &str) -> Option<String> {
        match &self.raw {
            Raw::Sqlite(path) => {
                let pool =
                    must(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await);
                let value = must(sqlx::query_scalar(sql).fetch_optional(&pool).await);
                pool.close().await;
                value
            }
            Raw::Postgres(pool) => must(sqlx::query_scalar(sql).fetch_optional(pool).await),
        }
    }

    /// The state's key check as stored, if any.
    async fn key_check(&self) -> Option<String> {
        self.text("SELECT value FROM state_meta WHERE name = 'master_key_check'")
            .await
    }

    /// Everything the state database holds, as text (bytes of the file for SQLite; every
    /// row of every control-plane table for PostgreSQL).
    async fn dump(&self) -> String {
        match &self.raw {
            Raw::Sqlite(path) => {
                let mut bytes = std::fs::read(path).unwrap_or_default();
                let wal = PathBuf::from(format!("{}-wal", path.display()));
                bytes.extend(std::fs::read(wal).unwrap_or_default());
                String::from_utf8_lossy(&bytes).into_owned()
            }
            Raw::Postgres(pool) => {
                let tables: Vec<String> = must(
                    sqlx::query_scalar(
                        "SELECT table_name::TEXT FROM information_schema.tables \
                         WHERE table_schema = 'cls_control'",
                    )
                    .fetch_all(pool)
                    .await,
                );
                assert!(
                    tables.len() >= 4,
                    "expected the control tables, got {tables:?}"
                );
                let mut all = String::new();
                for table in tables {
                    let rows: Vec<String> = must(
                        sqlx::query_scalar(&format!(
                            "SELECT t::TEXT FROM cls_control.\"{table}\" t"
                        ))
                        .fetch_all(pool)
                        .await,
                    );
                    for row in rows {
                        all.push_str(&row);
                        all.push('\n');
                    }
                }
                all
            }
        }
    }

    /// Runs one raw statement on the state database (to set up what the API cannot, such
    /// as an expired session).
    async fn execute(&self, sql: &str) {
        match &self.raw {
            Raw::Sqlite(path) => {
                let pool =
                    must(sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await);
                must(sqlx::query(sql).execute(&pool).await);
                pool.close().await;
            }
            // The store's own pool: its search_path is the control schema.
            Raw::Postgres(pool) => {
                must(sqlx::query(sql).execute(pool).await);
            }
        }
    }

    /// Runs one raw statement on the state database, saying whether the database took it.
    async fn try_execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match &self.raw {
            Raw::Sqlite(path) => {
                let pool =
                    sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
                let done = sqlx::query(sql).execute(&pool).await;
                pool.close().await;
                done.map(drop)
            }
            Raw::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
    }

    async fn finish(self) {
        if let Raw::Postgres(pool) = &self.raw {
            pool.close().await;
        }
        if let Some(db) = self.db {
            db.drop_now().await;
        }
    }
}

/// Unwraps a setup step, panicking with its message.
fn must<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("test setup failed: {e}"),
    }
}

fn db_url() -> DatabaseUrl {
    must(DatabaseUrl::parse(&format!(
        "postgres://syncer:{DB_PASSWORD}@db.example.com:5432/app"
    )))
}

fn api_key(raw: &str) -> ApiKey {
    must(ApiKey::parse(raw))
}

fn new_project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        database_url: db_url(),
        schema: None,
    }
}

fn new_configuration(name: &str, project_id: ProjectId) -> NewConfiguration {
    NewConfiguration {
        name: name.into(),
        project_id,
        key: api_key(STRIPE_KEY),
        data_types: must(cls_catalog::parse_list("invoices,customers")),
        stripe_api_base: None,
        webhook_secret: None,
    }
}

fn not_found(r: &StoreError, entity: Entity) -> bool {
    matches!(r, StoreError::NotFound { entity: e, .. } if *e == entity)
}

mod scenarios {
    use super::*;

    pub async fn project_round_trip(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("  Production  ")).await?;
        assert_eq!(p.name, "Production");
        assert_eq!(p.kind, DatabaseKind::Postgres);
        assert_eq!(p.schema, "stripe");
        assert!(p.active);
        assert!(p.paused().is_none());
        assert_eq!(p.database_url.expose(), db_url().expose());
        assert!(!format!("{p:?}").contains(DB_PASSWORD));

        let got = s.project(p.id).await?;
        assert_eq!(got.name, "Production");
        assert_eq!(got.created_at.timestamp(), p.created_at.timestamp());

        let q = s
            .create_project(NewProject {
                name: "Local".into(),
                database_url: must(DatabaseUrl::parse("sqlite://local.db")),
                schema: Some("billing".into()),
            })
            .await?;
        assert_eq!(q.kind, DatabaseKind::Sqlite);
        assert_eq!(q.schema, "billing");

        let page = s.list_projects(PageRequest::default()).await?;
        assert_eq!(page.total, 2);
        assert_eq!(
            page.items
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["Production", "Local"]
        );
        let second = s
            .list_projects(PageRequest {
                offset: 1,
                limit: 1,
            })
            .await?;
        assert_eq!(second.total, 2);
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].id, q.id);

        let updated = s
            .update_project(
                q.id,
                ProjectPatch {
                    name: Some("Local copy".into()),
                    database_url: Some(db_url()),
                    schema: Some("stripe_2".into()),
                    active: Some(false),
                },
            )
            .await?;
        assert_eq!(updated.name, "Local copy");
        assert_eq!(updated.kind, DatabaseKind::Postgres);
        assert_eq!(updated.schema, "stripe_2");
        assert!(!updated.active);
        assert_eq!(updated.paused(), Some(Paused::ProjectInactive));
        assert!(updated.updated_at >= updated.created_at);

        let untouched = s.update_project(q.id, ProjectPatch::default()).await?;
        assert_eq!(untouched.name, "Local copy");
        assert!(!untouched.active);

        let missing = ProjectId(999_999);
        assert!(not_found(
            &s.project(missing).await.err().ok_or_else(none)?,
            Entity::Project
        ));
        assert!(not_found(
            &s.update_project(missing, ProjectPatch::default())
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Project
        ));
        assert!(not_found(
            &s.delete_project(missing).await.err().ok_or_else(none)?,
            Entity::Project
        ));
        Ok(())
    }

    pub async fn invalid_input_is_refused(h: &Harness) -> TestResult {
        let s = &h.store;
        let empty = s.create_project(new_project("   ")).await;
        assert!(
            matches!(empty, Err(StoreError::Invalid { field: "name", .. })),
            "{empty:?}"
        );
        let bad_schema = s
            .create_project(NewProject {
                schema: Some("Robert'); DROP TABLE".into()),
                ..new_project("x")
            })
            .await;
        assert!(matches!(
            bad_schema,
            Err(StoreError::Invalid {
                field: "schema",
                ..
            })
        ));
        let p = s.create_project(new_project("p")).await?;
        let no_types = s
            .create_configuration(NewConfiguration {
                data_types: Vec::new(),
                ..new_configuration("c", p.id)
            })
            .await;
        assert!(matches!(
            no_types,
            Err(StoreError::Invalid {
                field: "data_types",
                ..
            })
        ));
        let orphan = s
            .create_configuration(new_configuration("c", ProjectId(424_242)))
            .await
            .err()
            .ok_or_else(none)?;
        assert!(not_found(&orphan, Entity::Project));
        assert!(orphan.to_string().contains("project 424242 does not exist"));
        let no_config = s
            .create_schedule(NewSchedule {
                configuration_id: ConfigurationId(77),
                cadence: Cadence::Every(Every::Hour),
                mode: SyncMode::Incremental,
            })
            .await
            .err()
            .ok_or_else(none)?;
        assert!(not_found(&no_config, Entity::Configuration));
        let no_run = s
            .create_run(NewRun {
                configuration_id: ConfigurationId(77),
                trigger: Trigger::Manual,
                mode: SyncMode::Full,
            })
            .await
            .err()
            .ok_or_else(none)?;
        assert!(not_found(&no_run, Entity::Configuration));
        assert_eq!(s.list_projects(PageRequest::default()).await?.total, 1);
        Ok(())
    }

    pub async fn configuration_round_trip_and_fixed_fields(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s
            .create_configuration(NewConfiguration {
                stripe_api_base: Some(must(url::Url::parse("http://127.0.0.1:12111"))),
                ..new_configuration("Main account", p.id)
            })
            .await?;
        assert_eq!(c.name, "Main account");
        assert_eq!(c.project_id, p.id);
        assert_eq!(c.provider, "stripe");
        assert_eq!(c.key.expose_secret(), STRIPE_KEY);
        assert_eq!(c.key_kind, KeyKind::Restricted);
        assert_eq!(c.key_mode, Mode::Test);
        assert_eq!(c.key_masked, "rk_test_…0123");
        // Catalog order, whatever order they were given in.
        assert_eq!(c.data_types, ["customers", "invoices"]);
        assert_eq!(c.table_names(), ["customers", "invoices"]);
        assert_eq!(
            c.stripe_api_base.as_deref(),
            Some("http://127.0.0.1:12111/")
        );
        assert!(c.active && c.paused().is_none());
        assert!(!format!("{c:?}").contains(STRIPE_KEY));

        let renamed = s
            .update_configuration(
                c.id,
                ConfigurationPatch {
                    name: Some("Renamed".into()),
                    ..ConfigurationPatch::default()
                },
            )
            .await?;
        assert_eq!(renamed.name, "Renamed");
        assert_eq!(renamed.key.expose_secret(), STRIPE_KEY);

        let rotated = s
            .update_configuration(
                c.id,
                ConfigurationPatch {
                    key: Some(api_key(ROTATED_KEY)),
                    active: Some(false),
                    ..ConfigurationPatch::default()
                },
            )
            .await?;
        assert_eq!(rotated.key.expose_secret(), ROTATED_KEY);
        assert_eq!(rotated.key_mode, Mode::Live);
        assert_eq!(rotated.key_masked, "rk_live_…8765");
        assert!(!rotated.active);
        // Fixed after creation: project, provider, data types.
        assert_eq!(rotated.project_id, p.id);
        assert_eq!(rotated.provider, "stripe");
        assert_eq!(rotated.data_types, ["customers", "invoices"]);
        assert_eq!(rotated.name, "Renamed");

        let other = s.create_project(new_project("other")).await?;
        let c2 = s
            .create_configuration(new_configuration("second", other.id))
            .await?;
        let all = s.list_configurations(None, PageRequest::default()).await?;
        assert_eq!(all.total, 2);
        let only = s
            .list_configurations(Some(other.id), PageRequest::default())
            .await?;
        assert_eq!(only.total, 1);
        assert_eq!(only.items[0].id, c2.id);

        s.delete_configuration(c2.id).await?;
        assert!(not_found(
            &s.configuration(c2.id).await.err().ok_or_else(none)?,
            Entity::Configuration
        ));
        assert!(not_found(
            &s.delete_configuration(c2.id).await.err().ok_or_else(none)?,
            Entity::Configuration
        ));
        assert!(not_found(
            &s.update_configuration(c2.id, ConfigurationPatch::default())
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Configuration
        ));
        Ok(())
    }

    pub async fn project_delete_cascades(h: &Harness) -> TestResult {
        let s = &h.store;
        let doomed = s.create_project(new_project("doomed")).await?;
        let kept = s.create_project(new_project("kept")).await?;
        let a = s
            .create_configuration(new_configuration("a", doomed.id))
            .await?;
        let b = s
            .create_configuration(new_configuration("b", doomed.id))
            .await?;
        let k = s
            .create_configuration(new_configuration("k", kept.id))
            .await?;
        let sched = s
            .create_schedule(NewSchedule {
                configuration_id: a.id,
                cadence: Cadence::Every(Every::Day),
                mode: SyncMode::Incremental,
            })
            .await?;
        let run = s
            .create_run(NewRun {
                configuration_id: b.id,
                trigger: Trigger::Manual,
                mode: SyncMode::Full,
            })
            .await?;
        let kept_run = s
            .create_run(NewRun {
                configuration_id: k.id,
                trigger: Trigger::Cli,
                mode: SyncMode::Full,
            })
            .await?;

        s.delete_project(doomed.id).await?;
        for id in [a.id, b.id] {
            assert!(not_found(
                &s.configuration(id).await.err().ok_or_else(none)?,
                Entity::Configuration
            ));
        }
        assert!(not_found(
            &s.schedule(sched.id).await.err().ok_or_else(none)?,
            Entity::Schedule
        ));
        assert!(not_found(
            &s.run(run.id).await.err().ok_or_else(none)?,
            Entity::Run
        ));
        assert_eq!(
            s.list_configurations(None, PageRequest::default())
                .await?
                .total,
            1
        );
        assert_eq!(s.configuration(k.id).await?.name, "k");
        assert_eq!(s.run(kept_run.id).await?.status, RunStatus::Queued);
        assert_eq!(s.list_projects(PageRequest::default()).await?.total, 1);
        Ok(())
    }

    pub async fn inactive_project_or_configuration_is_paused(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s.create_configuration(new_configuration("c", p.id)).await?;
        let sched = s
            .create_schedule(NewSchedule {
                configuration_id: c.id,
                cadence: Cadence::Every(Every::Hour),
                mode: SyncMode::Incremental,
            })
            .await?;
        assert_eq!(sched.paused(), None);

        s.update_configuration(
            c.id,
            ConfigurationPatch {
                active: Some(false),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
        assert_eq!(
            s.configuration(c.id).await?.paused(),
            Some(Paused::ConfigurationInactive)
        );
        assert_eq!(
            s.schedule(sched.id).await?.paused(),
            Some(Paused::ConfigurationInactive)
        );

        s.update_project(
            p.id,
            ProjectPatch {
                active: Some(false),
                ..ProjectPatch::default()
            },
        )
        .await?;
        // The project is checked first: switching it off pauses everything under it.
        assert_eq!(
            s.configuration(c.id).await?.paused(),
            Some(Paused::ProjectInactive)
        );
        assert_eq!(
            s.schedule(sched.id).await?.paused(),
            Some(Paused::ProjectInactive)
        );
        let listed = s
            .list_configurations(Some(p.id), PageRequest::default())
            .await?;
        assert_eq!(listed.items[0].paused(), Some(Paused::ProjectInactive));

        s.update_project(
            p.id,
            ProjectPatch {
                active: Some(true),
                ..ProjectPatch::default()
            },
        )
        .await?;
        s.update_configuration(
            c.id,
            ConfigurationPatch {
                active: Some(true),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
        assert_eq!(s.configuration(c.id).await?.paused(), None);
        assert_eq!(s.schedule(sched.id).await?.paused(), None);
        Ok(())
    }

    pub async fn schedules(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s.create_configuration(new_configuration("c", p.id)).await?;
        let c2 = s
            .create_configuration(new_configuration("c2", p.id))
            .await?;
        let hourly = s
            .create_schedule(NewSchedule {
                configuration_id: c.id,
                cadence: Cadence::Every(Every::Hour),
                mode: SyncMode::Incremental,
            })
            .await?;
        assert_eq!(hourly.cadence, Cadence::Every(Every::Hour));
        assert_eq!(hourly.mode, SyncMode::Incremental);
        assert!(hourly.active && hourly.paused_reason.is_none());
        let cron = must(CronExpression::parse("30 3 * * 1"));
        let nightly = s
            .create_schedule(NewSchedule {
                configuration_id: c2.id,
                cadence: Cadence::Cron(cron.clone()),
                mode: SyncMode::Full,
            })
            .await?;
        assert_eq!(nightly.cadence, Cadence::Cron(cron.clone()));
        assert_eq!(nightly.cadence.to_string(), "30 3 * * 1");

        let paused = s
            .pause_schedule(hourly.id, "the Stripe key was revoked: paste a new key")
            .await?;
        assert!(!paused.active);
        assert_eq!(
            paused.paused(),
            Some(Paused::Schedule(Some(
                "the Stripe key was revoked: paste a new key".into()
            )))
        );
        // A patch that does not touch `active` keeps the pause and its reason.
        let still = s
            .update_schedule(
                hourly.id,
                SchedulePatch {
                    cadence: Some(Cadence::Cron(cron.clone())),
                    ..SchedulePatch::default()
                },
            )
            .await?;
        assert_eq!(still.cadence, Cadence::Cron(cron));
        assert!(still.paused_reason.is_some());
        let resumed = s
            .update_schedule(
                hourly.id,
                SchedulePatch {
                    active: Some(true),
                    cadence: Some(Cadence::Every(Every::Month)),
                    mode: Some(SyncMode::Full),
                },
            )
            .await?;
        assert!(resumed.active);
        assert_eq!(resumed.paused_reason, None);
        assert_eq!(resumed.paused(), None);
        assert_eq!(resumed.cadence, Cadence::Every(Every::Month));
        assert_eq!(resumed.mode, SyncMode::Full);
        let by_hand = s
            .update_schedule(
                hourly.id,
                SchedulePatch {
                    active: Some(false),
                    ..SchedulePatch::default()
                },
            )
            .await?;
        assert_eq!(by_hand.paused(), Some(Paused::Schedule(None)));

        assert_eq!(
            s.list_schedules(None, PageRequest::default()).await?.total,
            2
        );
        let mine = s
            .list_schedules(Some(c2.id), PageRequest::default())
            .await?;
        assert_eq!(mine.total, 1);
        assert_eq!(mine.items[0].id, nightly.id);

        s.delete_schedule(nightly.id).await?;
        assert!(not_found(
            &s.schedule(nightly.id).await.err().ok_or_else(none)?,
            Entity::Schedule
        ));
        let missing = ScheduleId(31_337);
        assert!(not_found(
            &s.pause_schedule(missing, "x")
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Schedule
        ));
        assert!(not_found(
            &s.delete_schedule(missing).await.err().ok_or_else(none)?,
            Entity::Schedule
        ));
        // Deleting a configuration deletes its schedules.
        s.delete_configuration(c.id).await?;
        assert_eq!(
            s.list_schedules(None, PageRequest::default()).await?.total,
            0
        );
        Ok(())
    }

    /// The runner's queue: one queued run per configuration, the oldest claimed first, never
    /// two running runs of one configuration.
    pub async fn run_queue(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let a = s.create_configuration(new_configuration("a", p.id)).await?;
        let b = s.create_configuration(new_configuration("b", p.id)).await?;
        let manual = |c: ConfigurationId| NewRun {
            configuration_id: c,
            trigger: Trigger::Manual,
            mode: SyncMode::Full,
        };
        assert!(s.claim_next_run(Utc::now(), WORKER, LEASE).await?.is_none());

        let a1 = s.queue_run(manual(a.id)).await?;
        assert!(matches!(a1, QueuedRun::Queued { behind: None, .. }));
        assert_eq!(a1.run().status, RunStatus::Queued);
        // Asked again while it waits: the same run, nothing new.
        let again = s.queue_run(manual(a.id)).await?;
        assert_eq!(again, QueuedRun::AlreadyQueued(a1.run().clone()));
        let b1 = s.queue_run(manual(b.id)).await?;

        // Oldest first; it becomes running with the given start time.
        let now = Utc::now();
        let claimed = s
            .claim_next_run(now, WORKER, LEASE)
            .await?
            .ok_or_else(none)?;
        assert_eq!(claimed.id, a1.run().id);
        assert_eq!(claimed.status, RunStatus::Running);
        assert_eq!(
            claimed.started_at.map(|t| t.timestamp_micros()),
            Some(now.timestamp_micros())
        );

        // Sync Now during a's run: queued behind it, and it does not start while a runs.
        let incremental = NewRun {
            mode: SyncMode::Incremental,
            ..manual(a.id)
        };
        let a2 = s.queue_run(incremental.clone()).await?;
        assert!(matches!(a2, QueuedRun::Queued { behind: Some(r), .. } if r == claimed.id));
        assert_eq!(a2.run().mode, SyncMode::Incremental);
        // A full sync asked for while an incremental one waits: the waiting run becomes full
        // (it covers both); asked incremental again, it stays full.
        let widened = s.queue_run(manual(a.id)).await?;
        assert!(matches!(&widened, QueuedRun::AlreadyQueued(r) if r.id == a2.run().id));
        assert_eq!(widened.run().mode, SyncMode::Full);
        assert!(
            widened.message().contains("(full)"),
            "{}",
            widened.message()
        );
        let kept = s.queue_run(incremental).await?;
        assert_eq!(kept.run().mode, SyncMode::Full);
        let next = s
            .claim_next_run(Utc::now(), WORKER, LEASE)
            .await?
            .ok_or_else(none)?;
        assert_eq!(next.id, b1.run().id, "b's run starts; a's second waits");
        assert!(s.claim_next_run(Utc::now(), WORKER, LEASE).await?.is_none());

        s.update_run(
            claimed.id,
            RunUpdate {
                status: Some(RunStatus::Succeeded),
                ended_at: Some(Utc::now()),
                ..RunUpdate::default()
            },
        )
        .await?;
        let last = s
            .claim_next_run(Utc::now(), WORKER, LEASE)
            .await?
            .ok_or_else(none)?;
        assert_eq!(last.id, a2.run().id);
        assert!(s.claim_next_run(Utc::now(), WORKER, LEASE).await?.is_none());

        let missing = s.queue_run(manual(ConfigurationId(999_999))).await;
        assert!(matches!(&missing, Err(e) if not_found(e, Entity::Configuration)));
        Ok(())
    }

    /// A schedule's due slot is recorded compare-and-set: of two callers that read the same
    /// last slot, only the first records the next one.
    pub async fn schedule_due_slots(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s.create_configuration(new_configuration("c", p.id)).await?;
        let sched = s
            .create_schedule(NewSchedule {
                configuration_id: c.id,
                cadence: Cadence::Every(Every::Hour),
                mode: SyncMode::Full,
            })
            .await?;
        assert_eq!(sched.last_due_at, None);
        let slot = Utc
            .with_ymd_and_hms(2026, 3, 10, 11, 0, 0)
            .single()
            .ok_or_else(none)?;
        assert!(s.mark_schedule_due(sched.id, None, slot).await?);
        assert!(!s.mark_schedule_due(sched.id, None, slot).await?);
        assert_eq!(s.schedule(sched.id).await?.last_due_at, Some(slot));
        let later = slot + chrono::Duration::hours(5);
        assert!(!s.mark_schedule_due(sched.id, None, later).await?);
        assert!(s.mark_schedule_due(sched.id, Some(slot), later).await?);
        assert_eq!(s.schedule(sched.id).await?.last_due_at, Some(later));
        let missing = s.mark_schedule_due(ScheduleId(999_999), None, slot).await;
        assert!(matches!(&missing, Err(e) if not_found(e, Entity::Schedule)));
        Ok(())
    }

    pub async fn sync_runs(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s.create_configuration(new_configuration("c", p.id)).await?;
        let first = s
            .create_run(NewRun {
                configuration_id: c.id,
                trigger: Trigger::Schedule,
                mode: SyncMode::Incremental,
            })
            .await?;
        assert_eq!(first.status, RunStatus::Queued);
        assert_eq!(first.trigger, Trigger::Schedule);
        assert!(first.started_at.is_none() && first.ended_at.is_none());
        assert!(first.stats.is_empty() && first.errors.is_empty());

        let started = Utc::now();
        let running = s
            .update_run(
                first.id,
                RunUpdate {
                    status: Some(RunStatus::Running),
                    started_at: Some(started),
                    ..RunUpdate::default()
                },
            )
            .await?;
        assert_eq!(running.status, RunStatus::Running);
        assert_eq!(
            running.started_at.map(|t| t.timestamp_micros()),
            Some(started.timestamp_micros())
        );

        let mut stats = BTreeMap::new();
        stats.insert(
            "customers".to_string(),
            TypeStats {
                objects: 120,
                inserted: 100,
                updated: 20,
                deleted: 1,
                requests: 2,
                retries: 1,
                rate_limited: 1,
            },
        );
        let errors = vec![RunError {
            data_type: Some("invoices".into()),
            message: "the restricted key lacks rak_invoice_read: enable Invoices → Read on the key"
                .into(),
        }];
        let done = s
            .update_run(
                first.id,
                RunUpdate {
                    status: Some(RunStatus::Partial),
                    ended_at: Some(Utc::now()),
                    stats: Some(stats.clone()),
                    errors: Some(errors.clone()),
                    ..RunUpdate::default()
                },
            )
            .await?;
        assert_eq!(done.status, RunStatus::Partial);
        assert!(done.status.is_finished());
        assert!(done.started_at.is_some() && done.ended_at.is_some());
        assert_eq!(done.stats, stats);
        assert_eq!(done.errors, errors);
        assert_eq!(s.run(first.id).await?, done);
        // An ended run keeps its status: a late cancel loses.
        let late = s
            .update_run(
                first.id,
                RunUpdate {
                    status: Some(RunStatus::Canceled),
                    ..RunUpdate::default()
                },
            )
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(
                late,
                StoreError::RunFinished {
                    status: RunStatus::Partial,
                    ..
                }
            ),
            "{late:?}"
        );
        assert_eq!(s.run(first.id).await?.status, RunStatus::Partial);

        for trigger in [Trigger::Manual, Trigger::Webhook, Trigger::Cli] {
            s.create_run(NewRun {
                configuration_id: c.id,
                trigger,
                mode: SyncMode::Full,
            })
            .await?;
        }
        let history = s.list_runs(c.id, PageRequest::default()).await?;
        assert_eq!(history.total, 4);
        // Newest first.
        assert_eq!(
            history.items.iter().map(|r| r.trigger).collect::<Vec<_>>(),
            [
                Trigger::Cli,
                Trigger::Webhook,
                Trigger::Manual,
                Trigger::Schedule
            ]
        );
        let page = s
            .list_runs(
                c.id,
                PageRequest {
                    offset: 2,
                    limit: 10,
                },
            )
            .await?;
        assert_eq!(page.total, 4);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[1].id, first.id);

        let other = s
            .create_configuration(new_configuration("other", p.id))
            .await?;
        assert_eq!(
            s.list_runs(other.id, PageRequest::default()).await?.total,
            0
        );
        assert!(not_found(
            &s.run(RunId(55_555)).await.err().ok_or_else(none)?,
            Entity::Run
        ));
        assert!(not_found(
            &s.update_run(RunId(55_555), RunUpdate::default())
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Run
        ));
        Ok(())
    }

    pub async fn secrets_never_stored_in_plaintext(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s
            .create_project(new_project("Visible project name"))
            .await?;
        let c = s
            .create_configuration(NewConfiguration {
                webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
                ..new_configuration("c", p.id)
            })
            .await?;
        let hooked = s
            .create_configuration(NewConfiguration {
                webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
                ..new_configuration("hooked", p.id)
            })
            .await?;
        s.update_configuration(
            c.id,
            ConfigurationPatch {
                key: Some(api_key(ROTATED_KEY)),
                webhook_secret: Some(Some(SecretString::from(ROTATED_WEBHOOK_SECRET))),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
        s.update_project(
            p.id,
            ProjectPatch {
                database_url: Some(db_url()),
                ..ProjectPatch::default()
            },
        )
        .await?;
        let dump = h.dump().await;
        // The dump is real: what is stored in the open is found.
        assert!(dump.contains("Visible project name"), "dump looks empty");
        assert!(
            dump.contains("rk_live_…8765"),
            "masked key missing from dump"
        );
        for secret in [
            DB_PASSWORD,
            STRIPE_KEY,
            ROTATED_KEY,
            "51ConformanceKeyBody",
            WEBHOOK_SECRET,
            ROTATED_WEBHOOK_SECRET,
            "ConformanceWebhookSecret",
        ] {
            assert!(
                !dump.contains(secret),
                "a secret was found in plain text in the state database"
            );
        }
        assert!(dump.contains("v1:"), "sealed secrets are stored as v1:…");
        // And they still open.
        assert_eq!(
            s.project(p.id).await?.database_url.expose(),
            db_url().expose()
        );
        assert_eq!(
            s.configuration(c.id).await?.key.expose_secret(),
            ROTATED_KEY
        );
        assert_eq!(
            s.configuration(c.id)
                .await?
                .webhook_secret
                .as_ref()
                .map(|w| w.expose_secret()),
            Some(ROTATED_WEBHOOK_SECRET)
        );
        assert!(s.configuration(hooked.id).await?.has_webhook_secret());
        Ok(())
    }

    /// A key that is not the state's is refused when the state is opened, before anything
    /// is read or sealed with it, whatever the state holds.
    pub async fn wrong_master_key_is_refused_at_open(h: &Harness) -> TestResult {
        // An empty state already knows its key: the first open wrote the key check.
        assert!(h.key_check().await.is_some(), "no key check was written");
        let err = h
            .reopen(MasterKey::generate())
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(
                err,
                StoreError::Secrets(SecretsError::KeyMismatch {
                    source_name: KeySource::Generated
                })
            ),
            "{err:?}"
        );
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        s.create_configuration(new_configuration("c", p.id)).await?;
        let env_key = MasterKey::from_base64(
            &SecretString::from("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
            KeySource::Environment,
        )?;
        let err = h.reopen(env_key).await.err().ok_or_else(none)?;
        assert_eq!(
            err.to_string(),
            "the master key in CLS_MASTER_KEY is not the one this state's secrets were sealed with, so cls cannot read them: set CLS_MASTER_KEY to the key this state was sealed with (or unset it, if the key file master.key in the data directory holds that key)"
        );
        // The right key still opens it and reads the secrets.
        let again = h.reopen(h.key.clone()).await?;
        assert_eq!(
            again.project(p.id).await?.database_url.expose(),
            db_url().expose()
        );
        Ok(())
    }

    /// A state from before the key check: the key is proven on a sealed secret, and only
    /// then is the check written.
    pub async fn states_without_a_key_check_are_checked_on_a_secret(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        h.execute("DELETE FROM state_meta").await;
        let err = h
            .reopen(MasterKey::generate())
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(err, StoreError::Secrets(SecretsError::KeyMismatch { .. })),
            "{err:?}"
        );
        assert_eq!(h.key_check().await, None, "a wrong key wrote a key check");
        let again = h.reopen(h.key.clone()).await?;
        assert!(
            h.key_check().await.is_some(),
            "the right key wrote no key check"
        );
        assert_eq!(again.project(p.id).await?.name, "p");
        // From now on the check decides, even with no secret left.
        again.delete_project(p.id).await?;
        assert!(h.reopen(MasterKey::generate()).await.is_err());
        Ok(())
    }

    /// No key (no CLS_MASTER_KEY, no key file): a key file is made for a state that holds
    /// nothing sealed, and never for one that does — the error names the file expected.
    pub async fn a_missing_key_file_is_made_only_for_a_new_state(h: &Harness) -> TestResult {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Invalid {
            field: "test",
            reason: e.to_string(),
        })?;
        let path = dir.path().join("master.key");
        let missing = || KeyLookup::Missing { path: path.clone() };
        // The state knows its key already (the harness's): no file is made.
        let err = h.reopen(missing()).await.err().ok_or_else(none)?;
        assert!(
            matches!(err, StoreError::Secrets(SecretsError::KeyMissing { .. })),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string())
                && message.contains("is already sealed under a master key")
                && message.contains("restore"),
            "{message}"
        );
        assert!(
            !path.exists(),
            "a key file was made for a state sealed under another key"
        );

        // A state with nothing sealed yet (standing in for a new one): the file is made,
        // private, and the state is sealed under it from then on.
        h.execute("DELETE FROM state_meta").await;
        let fresh = h.reopen(missing()).await?;
        assert!(path.exists(), "no key file was made for a new state");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
            assert!(matches!(mode, Ok(0o600)), "{mode:?}");
        }
        let p = fresh.create_project(new_project("p")).await?;
        let key = MasterKey::from_key_file(&path)?;
        assert_eq!(h.reopen(key).await?.project(p.id).await?.name, "p");
        assert!(
            h.reopen(h.key.clone()).await.is_err(),
            "the old key still opens the state"
        );

        // The key file deleted: refused, and not made again.
        std::fs::remove_file(&path).map_err(|e| StoreError::Invalid {
            field: "test",
            reason: e.to_string(),
        })?;
        let err = h.reopen(missing()).await.err().ok_or_else(none)?;
        assert!(
            matches!(err, StoreError::Secrets(SecretsError::KeyMissing { .. })),
            "{err:?}"
        );
        assert!(!path.exists(), "a new key file replaced the deleted one");
        Ok(())
    }

    /// Two nodes on a new state, each without a key, start at once: one key wins, the other
    /// node fails clearly and keeps no key file of its own.
    pub async fn two_nodes_making_their_own_keys(h: &Harness) -> TestResult {
        h.execute("DELETE FROM state_meta").await;
        let dirs = [tempfile::tempdir(), tempfile::tempdir()];
        let [Ok(a), Ok(b)] = dirs else {
            return Err(StoreError::Invalid {
                field: "test",
                reason: "no temp dir".into(),
            });
        };
        let (path_a, path_b) = (a.path().join("master.key"), b.path().join("master.key"));
        let (first, second) = tokio::join!(
            h.reopen(KeyLookup::Missing {
                path: path_a.clone()
            }),
            h.reopen(KeyLookup::Missing {
                path: path_b.clone()
            }),
        );
        let (winner, loser, lost_path) = match (first, second) {
            (Ok(w), Err(l)) => (w, l, &path_b),
            (Err(l), Ok(w)) => (w, l, &path_a),
            (Ok(_), Ok(_)) => panic!("both nodes started, each with its own key"),
            (Err(a), Err(b)) => panic!("neither node started: {a}; {b}"),
        };
        assert!(
            matches!(loser, StoreError::Secrets(SecretsError::KeyMissing { .. })),
            "{loser:?}"
        );
        assert!(loser.to_string().contains("another node"), "{loser}");
        assert!(
            !lost_path.exists(),
            "the losing node kept its unused key file"
        );
        winner.create_project(new_project("p")).await?;
        Ok(())
    }

    pub async fn reopening_keeps_state(h: &Harness) -> TestResult {
        let key = h.key.clone();
        let first = h.reopen(key.clone()).await?;
        let p = first.create_project(new_project("kept")).await?;
        // Opening again runs the migrations again: nothing changes, nothing is lost.
        let second = h.reopen(key).await?;
        assert_eq!(second.project(p.id).await?.name, "kept");
        Ok(())
    }

    /// API tokens: shown once, stored hashed, listed by prefix, authenticated (cached),
    /// revoked at once even while cached, and every refusal is `Unauthorized` with a fix.
    pub async fn api_tokens(h: &Harness) -> TestResult {
        let s = &h.store;
        let (ci, token) = s.create_api_token("  ci  ").await?;
        let token = token.expose_secret().to_string();
        assert_eq!(ci.name, "ci");
        assert!(
            token.starts_with(&format!("{}_", ci.prefix)),
            "token/prefix mismatch"
        );
        assert!(ci.prefix.starts_with("cls_") && ci.prefix.len() == 12);
        assert!(token.len() >= ci.prefix.len() + 1 + 32);
        assert!(ci.last_used_at.is_none() && ci.revoked_at.is_none());
        let (grafana, other) = s.create_api_token("grafana").await?;
        assert!(matches!(
            s.create_api_token(" ").await,
            Err(StoreError::Invalid { field: "name", .. })
        ));

        let listed = s.list_api_tokens(PageRequest::default()).await?;
        assert_eq!(listed.total, 2);
        assert_eq!(listed.items, [ci.clone(), grafana.clone()]);

        let who = s.authenticate_api_token(&token).await?;
        assert_eq!(who.id, ci.id);
        let first_use = who.last_used_at.ok_or_else(none)?;
        // Cached now; still answered, and last_used_at is not rewritten within a minute.
        let again = s.authenticate_api_token(&token).await?;
        assert_eq!(again.last_used_at, Some(first_use));
        assert_eq!(
            s.authenticate_api_token(other.expose_secret()).await?.id,
            grafana.id
        );

        // The stored hash is argon2id, and the token itself is nowhere in the database.
        let dump = h.dump().await;
        assert!(dump.contains("$argon2id$"), "token hashes are argon2id");
        assert!(dump.contains(&ci.prefix));
        assert!(!dump.contains(&token), "a token was stored in plain text");
        assert!(!dump.contains(other.expose_secret()));

        // Refusals: malformed, unknown prefix, right prefix with a wrong secret.
        let wrong_secret = format!("{}_{}", ci.prefix, "Z".repeat(40));
        let unknown = format!("cls_00000000_{}", "a".repeat(40));
        for bad in ["", "Bearer x", "cls_nothex!!_abc", &unknown, &wrong_secret] {
            let err = s.authenticate_api_token(bad).await.err().ok_or_else(none)?;
            assert!(matches!(err, StoreError::Unauthorized { .. }), "{err:?}");
            assert!(
                err.to_string().contains("cls admin create-api-key"),
                "{err}"
            );
        }

        // Revoked: refused at once, although the verification is cached.
        let revoked = s.revoke_api_token(ci.id).await?;
        let revoked_at = revoked.revoked_at.ok_or_else(none)?;
        let err = s
            .authenticate_api_token(&token)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(err, StoreError::Unauthorized { .. }));
        assert!(err.to_string().contains("revoked"), "{err}");
        // Revoking again keeps the first time; the other token still works.
        assert_eq!(
            s.revoke_api_token(ci.id).await?.revoked_at,
            Some(revoked_at)
        );
        assert_eq!(
            s.authenticate_api_token(other.expose_secret()).await?.id,
            grafana.id
        );
        // Another node (no cache) agrees.
        let fresh = h.reopen(h.key.clone()).await?;
        assert!(fresh.authenticate_api_token(&token).await.is_err());
        assert_eq!(
            fresh
                .authenticate_api_token(other.expose_secret())
                .await?
                .id,
            grafana.id
        );
        let missing = s.revoke_api_token(ApiTokenId(404_404)).await;
        assert!(matches!(&missing, Err(e) if not_found(e, Entity::ApiToken)));
        Ok(())
    }

    /// Dashboard users and sessions: passwords hashed and checked, short ones refused,
    /// usernames unique, sessions found by token until they expire or are deleted.
    pub async fn users_and_sessions(h: &Harness) -> TestResult {
        let s = &h.store;
        let password = SecretString::from("correct horse battery");
        assert_eq!(s.user_count().await?, 0);
        let short = s
            .create_user("admin", &SecretString::from("short"))
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(
                short,
                StoreError::Invalid {
                    field: "password",
                    ..
                }
            ),
            "{short:?}"
        );
        assert!(short.to_string().contains("12 characters"), "{short}");
        let admin = s.create_user(" admin ", &password).await?;
        assert_eq!(admin.username, "admin");
        assert_eq!(s.user_count().await?, 1);
        let taken = s
            .create_user("admin", &password)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(
                taken,
                StoreError::Invalid {
                    field: "username",
                    ..
                }
            ),
            "{taken:?}"
        );

        assert_eq!(
            s.verify_user_password("admin", &password).await?.id,
            admin.id
        );
        for (user, pw) in [
            ("admin", "Correct horse battery"),
            ("nobody", "correct horse battery"),
        ] {
            let err = s
                .verify_user_password(user, &SecretString::from(pw))
                .await
                .err()
                .ok_or_else(none)?;
            assert!(matches!(err, StoreError::Unauthorized { .. }), "{err:?}");
        }

        let (session, token) = s
            .create_session(admin.id, chrono::Duration::hours(12))
            .await?;
        assert_eq!(session.user_id, admin.id);
        assert_eq!(session.username, "admin");
        assert!(session.csrf_token.len() >= 32);
        assert!(!format!("{session:?}").contains(&session.csrf_token));
        assert!(session.expires_at > Utc::now() + chrono::Duration::hours(11));
        let found = s.session_by_token(token.expose_secret()).await?;
        assert_eq!(found, session);
        let dump = h.dump().await;
        assert!(
            !dump.contains(token.expose_secret()),
            "a session token was stored"
        );
        assert!(
            !dump.contains("correct horse battery"),
            "a password was stored"
        );

        let err = s
            .session_by_token("not-a-session")
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(err, StoreError::Unauthorized { .. }));
        assert!(err.to_string().contains("sign in again"), "{err}");
        assert!(matches!(
            s.create_session(admin.id, chrono::Duration::zero()).await,
            Err(StoreError::Invalid { field: "ttl", .. })
        ));
        let nobody = s
            .create_session(UserId(9_999), chrono::Duration::hours(1))
            .await
            .err()
            .ok_or_else(none)?;
        assert!(not_found(&nobody, Entity::User));

        s.delete_session(session.id).await?;
        assert!(s.session_by_token(token.expose_secret()).await.is_err());
        assert!(not_found(
            &s.delete_session(session.id).await.err().ok_or_else(none)?,
            Entity::Session
        ));

        // An expired session is refused.
        let (short_lived, token) = s
            .create_session(admin.id, chrono::Duration::seconds(1))
            .await?;
        h.execute(&format!(
            "UPDATE sessions SET expires_at = created_at WHERE id = {}",
            short_lived.id
        ))
        .await;
        let err = s
            .session_by_token(token.expose_secret())
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(err, StoreError::Unauthorized { .. }));

        // A new password replaces the old one and ends the user's sessions.
        let (_, live) = s
            .create_session(admin.id, chrono::Duration::hours(1))
            .await?;
        let renewed = SecretString::from("a brand new passphrase");
        let too_short = s
            .set_user_password("admin", &SecretString::from("short"))
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(
            too_short,
            StoreError::Invalid {
                field: "password",
                ..
            }
        ));
        assert_eq!(
            s.verify_user_password("admin", &password).await?.id,
            admin.id
        );
        assert_eq!(s.set_user_password("admin", &renewed).await?.id, admin.id);
        assert_eq!(
            s.verify_user_password("admin", &renewed).await?.id,
            admin.id
        );
        assert!(s.verify_user_password("admin", &password).await.is_err());
        assert!(s.session_by_token(live.expose_secret()).await.is_err());
        let nobody = s
            .set_user_password("nobody", &renewed)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(
            nobody,
            StoreError::Invalid {
                field: "username",
                ..
            }
        ));
        Ok(())
    }

    /// Run leases: a live worker's run is never claimed by another; a silent one is taken
    /// over (same id); the old worker's heartbeats and final record are then refused.
    /// Cancel: a queued run ends at once, a running one is flagged for its worker.
    pub async fn run_leases_and_cancel(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s.create_configuration(new_configuration("c", p.id)).await?;
        let manual = |c: ConfigurationId| NewRun {
            configuration_id: c,
            trigger: Trigger::Manual,
            mode: SyncMode::Full,
        };
        let t0 = Utc::now();
        let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
        let first = s.queue_run(manual(c.id)).await?.run().clone();
        let claimed = s.claim_next_run(t0, "a", LEASE).await?.ok_or_else(none)?;
        assert_eq!(claimed.id, first.id);
        assert_eq!(claimed.worker_id.as_deref(), Some("a"));
        assert_eq!(
            claimed.heartbeat_at.map(|t| t.timestamp_micros()),
            Some(t0.timestamp_micros())
        );
        assert!(!claimed.cancel_requested);
        let behind = s.queue_run(manual(c.id)).await?.run().clone();

        // Within the lease nothing can be claimed: the configuration is live-running.
        assert!(s.claim_next_run(at(30), "b", LEASE).await?.is_none());
        let mut stats = BTreeMap::new();
        stats.insert(
            "customers".to_string(),
            TypeStats {
                objects: 42,
                ..TypeStats::default()
            },
        );
        let beat = s
            .heartbeat(first.id, "a", at(30), Some(stats.clone()))
            .await?;
        assert!(!beat.cancel_requested);
        assert_eq!(
            s.run(first.id).await?.stats,
            stats,
            "live progress is stored"
        );
        // The heartbeat renewed the lease: 80 s after the start is 50 s after it.
        assert!(s.claim_next_run(at(80), "b", LEASE).await?.is_none());
        let err = s
            .heartbeat(first.id, "b", at(80), None)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");

        // Silent for longer than the lease: b takes it over, same run.
        let taken = s
            .claim_next_run(at(100), "b", LEASE)
            .await?
            .ok_or_else(none)?;
        assert_eq!(taken.id, first.id);
        assert_eq!(taken.status, RunStatus::Running);
        assert_eq!(taken.worker_id.as_deref(), Some("b"));
        assert_eq!(taken.stats, stats, "progress so far is kept");
        assert!(s.claim_next_run(at(101), "c", LEASE).await?.is_none());
        let lost = s
            .heartbeat(first.id, "a", at(101), None)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost:?}");
        assert!(lost.to_string().contains("took it over"), "{lost}");
        let late = s
            .finish_run(
                first.id,
                "a",
                RunUpdate {
                    status: Some(RunStatus::Failed),
                    ..RunUpdate::default()
                },
            )
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(late, StoreError::LeaseLost { .. }), "{late:?}");
        assert_eq!(s.run(first.id).await?.status, RunStatus::Running);

        // Cancel a running run: flagged, still running, until its worker stops it.
        let flagged = s.request_cancel(first.id, at(110)).await?;
        assert_eq!(flagged.status, RunStatus::Running);
        assert!(flagged.cancel_requested);
        assert!(
            s.heartbeat(first.id, "b", at(111), None)
                .await?
                .cancel_requested
        );
        let ended = s
            .finish_run(
                first.id,
                "b",
                RunUpdate {
                    status: Some(RunStatus::Canceled),
                    ended_at: Some(at(112)),
                    ..RunUpdate::default()
                },
            )
            .await?;
        assert_eq!(ended.status, RunStatus::Canceled);
        let over = s
            .heartbeat(first.id, "b", at(113), None)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(over, StoreError::LeaseLost { .. }), "{over:?}");
        let again = s
            .request_cancel(first.id, at(113))
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(
                again,
                StoreError::RunFinished {
                    status: RunStatus::Canceled,
                    ..
                }
            ),
            "{again:?}"
        );

        // The run waiting behind it starts now.
        let next = s
            .claim_next_run(at(114), "a", LEASE)
            .await?
            .ok_or_else(none)?;
        assert_eq!(next.id, behind.id);

        // Cancel a queued run: it ends at once, saying it never started.
        let other = s
            .create_configuration(new_configuration("other", p.id))
            .await?;
        let waiting = s.queue_run(manual(other.id)).await?.run().clone();
        let canceled = s.request_cancel(waiting.id, at(120)).await?;
        assert_eq!(canceled.status, RunStatus::Canceled);
        assert_eq!(
            canceled.ended_at.map(|t| t.timestamp_micros()),
            Some(at(120).timestamp_micros())
        );
        let message = canceled
            .errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        assert!(message.contains("before it started"), "{message}");
        assert!(s.claim_next_run(at(121), "b", LEASE).await?.is_none());

        let counts = s.run_status_counts().await?;
        assert_eq!(counts.len(), RunStatus::ALL.len());
        assert_eq!(counts.get(&RunStatus::Canceled), Some(&2));
        assert_eq!(counts.get(&RunStatus::Running), Some(&1));
        assert_eq!(counts.get(&RunStatus::Queued), Some(&0));
        assert_eq!(counts.get(&RunStatus::Succeeded), Some(&0));

        let missing = RunId(777_777);
        assert!(not_found(
            &s.request_cancel(missing, at(1))
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Run
        ));
        assert!(not_found(
            &s.heartbeat(missing, "a", at(1), None)
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Run
        ));
        Ok(())
    }

    /// Runs of one Stripe account share its rate budget: each registers the account and
    /// counts the live runs of it (silent, ended and other accounts' runs not counted). A
    /// released run keeps its progress and is taken over by the next claim at once; its
    /// worker's heartbeats are refused from then on.
    pub async fn account_sharing_and_release(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let manual = |c: ConfigurationId| NewRun {
            configuration_id: c,
            trigger: Trigger::Manual,
            mode: SyncMode::Full,
        };
        let t0 = Utc::now();
        let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
        let mut runs = Vec::new();
        for (i, worker) in ["a", "b", "c", "d"].iter().enumerate() {
            let c = s
                .create_configuration(new_configuration(&format!("c{i}"), p.id))
                .await?;
            s.queue_run(manual(c.id)).await?;
            let run = s
                .claim_next_run(at(0), worker, LEASE)
                .await?
                .ok_or_else(none)?;
            runs.push((run.id, *worker));
        }
        let (a, b, c, d) = (runs[0], runs[1], runs[2], runs[3]);
        let acct = "acct_1/test";
        let share = |runs: u32, settled: bool| AccountShare { runs, settled };
        assert_eq!(
            s.share_account(a.0, a.1, acct, at(1), LEASE).await?,
            share(1, true)
        );
        // b starts beside a, which still runs at the whole budget: not settled until a
        // takes its half.
        assert_eq!(
            s.share_account(b.0, b.1, acct, at(1), LEASE).await?,
            share(2, false)
        );
        assert_eq!(
            s.share_account(a.0, a.1, acct, at(1), LEASE).await?,
            share(2, true)
        );
        assert_eq!(
            s.share_account(b.0, b.1, acct, at(1), LEASE).await?,
            share(2, true)
        );
        // Another account, or the same account in the other mode, is another budget.
        assert_eq!(
            s.share_account(c.0, c.1, "acct_1/live", at(1), LEASE)
                .await?,
            share(1, true)
        );
        assert_eq!(
            s.share_account(d.0, d.1, acct, at(1), LEASE).await?,
            share(3, false)
        );
        // a and b take their third (a still sees b behind): then d may go.
        assert_eq!(
            s.share_account(a.0, a.1, acct, at(1), LEASE).await?,
            share(3, false)
        );
        assert_eq!(
            s.share_account(b.0, b.1, acct, at(1), LEASE).await?,
            share(3, true)
        );
        assert_eq!(
            s.share_account(d.0, d.1, acct, at(1), LEASE).await?,
            share(3, true)
        );
        // Only the run's own worker may register it.
        let err = s
            .share_account(a.0, "b", acct, at(1), LEASE)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(err, StoreError::LeaseLost { .. }), "{err:?}");

        // d's worker goes silent: past the lease it no longer counts.
        s.heartbeat(a.0, a.1, at(50), None).await?;
        s.heartbeat(b.0, b.1, at(50), None).await?;
        s.heartbeat(c.0, c.1, at(50), None).await?;
        assert_eq!(
            s.share_account(a.0, a.1, acct, at(70), LEASE).await?.runs,
            2
        );
        // b ends: one run left on the account.
        s.finish_run(
            b.0,
            b.1,
            RunUpdate {
                status: Some(RunStatus::Succeeded),
                ended_at: Some(at(71)),
                ..RunUpdate::default()
            },
        )
        .await?;
        assert_eq!(
            s.share_account(a.0, a.1, acct, at(72), LEASE).await?,
            share(1, true)
        );

        // a's node shuts down and releases a: still running, progress kept, lease over.
        let mut stats = BTreeMap::new();
        stats.insert(
            "customers".to_string(),
            TypeStats {
                objects: 7,
                ..TypeStats::default()
            },
        );
        s.heartbeat(a.0, a.1, at(73), Some(stats.clone())).await?;
        let released = s.release_run(a.0, a.1).await?;
        assert_eq!(released.status, RunStatus::Running);
        assert_eq!(released.worker_id, None);
        assert_eq!(released.stats, stats);
        let gone = s
            .heartbeat(a.0, a.1, at(74), None)
            .await
            .err()
            .ok_or_else(none)?;
        assert!(matches!(gone, StoreError::LeaseLost { .. }), "{gone:?}");
        let twice = s.release_run(a.0, a.1).await.err().ok_or_else(none)?;
        assert!(matches!(twice, StoreError::LeaseLost { .. }), "{twice:?}");
        // Taken over at once, well within what would have been its lease; d (silent for 74 s,
        // lease 60 s) is older and goes first, then a.
        let first = s
            .claim_next_run(at(74), "e", LEASE)
            .await?
            .ok_or_else(none)?;
        let second = s
            .claim_next_run(at(74), "e", LEASE)
            .await?
            .ok_or_else(none)?;
        let mut taken = vec![first.id, second.id];
        taken.sort();
        let mut expected = vec![a.0, d.0];
        expected.sort();
        assert_eq!(taken, expected);
        let a_now = s.run(a.0).await?;
        assert_eq!(a_now.worker_id.as_deref(), Some("e"));
        assert_eq!(a_now.stats, stats, "progress so far is kept");
        assert_eq!(
            s.share_account(a.0, "e", acct, at(75), LEASE).await?.runs,
            2
        );

        // A run is held under the lease of the worker holding it: a node configured with a
        // shorter lease does not take over a run that is alive under a longer one.
        for id in [a.0, d.0] {
            s.finish_run(
                id,
                "e",
                RunUpdate {
                    status: Some(RunStatus::Succeeded),
                    ended_at: Some(at(80)),
                    ..RunUpdate::default()
                },
            )
            .await?;
        }
        s.finish_run(
            c.0,
            c.1,
            RunUpdate {
                status: Some(RunStatus::Succeeded),
                ended_at: Some(at(80)),
                ..RunUpdate::default()
            },
        )
        .await?;
        let long = s
            .create_configuration(new_configuration("long lease", p.id))
            .await?;
        let held = s.queue_run(manual(long.id)).await?.run().clone();
        let hour = chrono::Duration::hours(1);
        let four = chrono::Duration::seconds(4);
        let got = s
            .claim_next_run(at(100), "slow", hour)
            .await?
            .ok_or_else(none)?;
        assert_eq!(got.id, held.id);
        for (claimant, when) in [("e", 110), ("e", 3_000)] {
            let r = s.claim_next_run(at(when), claimant, four).await?;
            assert!(
                r.is_none(),
                "taken over at {when} s under a 4 s lease: {r:?}"
            );
        }
        let taken = s
            .claim_next_run(at(100 + 3_601), "e", four)
            .await?
            .ok_or_else(none)?;
        assert_eq!(taken.id, held.id, "silent past its own lease");
        // Now held under e's 4 s lease: silent for 5 s, anyone takes it over.
        let again = s
            .claim_next_run(at(100 + 3_606), "f", hour)
            .await?
            .ok_or_else(none)?;
        assert_eq!(again.id, held.id);
        assert_eq!(again.worker_id.as_deref(), Some("f"));
        // The database itself refuses a second running run of one configuration, whatever
        // path would try it.
        let behind = s.queue_run(manual(long.id)).await?.run().clone();
        let second = h
            .try_execute(&format!(
                "UPDATE sync_runs SET status = 'running' WHERE id = {}",
                behind.id.0
            ))
            .await;
        assert!(second.is_err(), "a second running run was accepted");
        assert_eq!(s.run(behind.id).await?.status, RunStatus::Queued);

        let missing = RunId(777_777);
        assert!(not_found(
            &s.release_run(missing, "a").await.err().ok_or_else(none)?,
            Entity::Run
        ));
        assert!(not_found(
            &s.share_account(missing, "a", acct, at(1), LEASE)
                .await
                .err()
                .ok_or_else(none)?,
            Entity::Run
        ));
        Ok(())
    }

    /// A state from before `20261127000001_budget_share.sql` holding two running runs of one
    /// configuration (edited by hand) still migrates: the newest keeps running, the other is
    /// recorded failed with the reason.
    pub async fn two_running_runs_of_one_configuration_migrate(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s.create_configuration(new_configuration("c", p.id)).await?;
        let manual = NewRun {
            configuration_id: c.id,
            trigger: Trigger::Manual,
            mode: SyncMode::Full,
        };
        let first = s.queue_run(manual.clone()).await?.run().clone();
        s.claim_next_run(Utc::now(), WORKER, LEASE)
            .await?
            .ok_or_else(none)?;
        let second = s.queue_run(manual).await?.run().clone();
        for sql in [
            "DROP INDEX sync_runs_one_running_per_configuration".to_string(),
            "ALTER TABLE sync_runs DROP COLUMN budget_share".to_string(),
            "DELETE FROM _sqlx_migrations WHERE version = 20261127000001".to_string(),
            format!(
                "UPDATE sync_runs SET status = 'running', started_at = heartbeat_at WHERE id = {}",
                second.id.0
            ),
        ] {
            h.execute(&sql).await;
        }
        let again = h.reopen(h.key.clone()).await?;
        assert_eq!(again.run(second.id).await?.status, RunStatus::Running);
        let stopped = again.run(first.id).await?;
        assert_eq!(stopped.status, RunStatus::Failed);
        assert!(stopped.ended_at.is_some());
        assert!(
            stopped.errors[0]
                .message
                .contains("running at the same time"),
            "{:?}",
            stopped.errors
        );
        Ok(())
    }

    /// Webhook secrets: set at creation, replaced, cleared; sealed like the Stripe key.
    pub async fn webhook_secrets(h: &Harness) -> TestResult {
        let s = &h.store;
        let p = s.create_project(new_project("p")).await?;
        let c = s
            .create_configuration(NewConfiguration {
                webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
                ..new_configuration("c", p.id)
            })
            .await?;
        assert!(c.has_webhook_secret());
        assert_eq!(
            c.webhook_secret.as_ref().map(|w| w.expose_secret()),
            Some(WEBHOOK_SECRET)
        );
        assert!(!format!("{c:?}").contains(WEBHOOK_SECRET));
        // A patch that does not mention it keeps it.
        let renamed = s
            .update_configuration(
                c.id,
                ConfigurationPatch {
                    name: Some("renamed".into()),
                    ..ConfigurationPatch::default()
                },
            )
            .await?;
        assert!(renamed.has_webhook_secret());
        let replaced = s
            .update_configuration(
                c.id,
                ConfigurationPatch {
                    webhook_secret: Some(Some(SecretString::from(ROTATED_WEBHOOK_SECRET))),
                    ..ConfigurationPatch::default()
                },
            )
            .await?;
        assert_eq!(
            replaced.webhook_secret.as_ref().map(|w| w.expose_secret()),
            Some(ROTATED_WEBHOOK_SECRET)
        );
        let cleared = s
            .update_configuration(
                c.id,
                ConfigurationPatch {
                    webhook_secret: Some(None),
                    ..ConfigurationPatch::default()
                },
            )
            .await?;
        assert!(!cleared.has_webhook_secret());
        assert!(!s.configuration(c.id).await?.has_webhook_secret());
        Ok(())
    }

    /// Master key rotation: every secret re-sealed in one go; the new key reads them all,
    /// the old one fails clearly; a store whose key does not open them changes nothing.
    pub async fn master_key_rotation(h: &Harness) -> TestResult {
        let old = h.key.clone();
        let s = h.reopen(old.clone()).await?;
        let p = s.create_project(new_project("p")).await?;
        let q = s.create_project(new_project("q")).await?;
        let with_hook = s
            .create_configuration(NewConfiguration {
                webhook_secret: Some(SecretString::from(WEBHOOK_SECRET)),
                ..new_configuration("hooked", p.id)
            })
            .await?;
        let plain = s
            .create_configuration(new_configuration("plain", q.id))
            .await?;

        // A node with the wrong key cannot even open the state.
        let stranger = h
            .reopen(MasterKey::generate())
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(
                stranger,
                StoreError::Secrets(SecretsError::KeyMismatch { .. })
            ),
            "{stranger:?}"
        );

        // A rotation that fails part way (one secret sealed under some other key) changes
        // nothing, the key check included: the old key still opens the state, the new not.
        let check = h.key_check().await;
        let foreign = MasterKey::generate().seal(&SecretString::from("postgres://x@y/z"))?;
        let q_sealed = h
            .text(&format!(
                "SELECT database_url_sealed FROM projects WHERE id = {}",
                q.id.0
            ))
            .await
            .ok_or_else(none)?;
        h.execute(&format!(
            "UPDATE projects SET database_url_sealed = '{}' WHERE id = {}",
            foreign.as_str(),
            q.id.0
        ))
        .await;
        let failed = MasterKey::generate();
        let refused = s
            .rotate_master_key(failed.clone())
            .await
            .err()
            .ok_or_else(none)?;
        assert!(
            matches!(refused, StoreError::Secrets(SecretsError::WrongKey)),
            "{refused:?}"
        );
        assert_eq!(
            h.key_check().await,
            check,
            "a failed rotation changed the key check"
        );
        assert!(
            h.reopen(failed).await.is_err(),
            "a failed rotation's key opens the state"
        );
        h.reopen(old.clone()).await?;
        h.execute(&format!(
            "UPDATE projects SET database_url_sealed = '{q_sealed}' WHERE id = {}",
            q.id.0
        ))
        .await;
        assert_eq!(
            s.project(p.id).await?.database_url.expose(),
            db_url().expose()
        );

        let new = MasterKey::generate();
        let report = s.rotate_master_key(new.clone()).await?;
        assert_eq!(report.projects, 2);
        assert_eq!(report.configurations, 2);
        assert_eq!(report.webhook_secrets, 1);
        // The rotating store uses the new key from now on, for reads and writes.
        assert_eq!(
            s.project(q.id).await?.database_url.expose(),
            db_url().expose()
        );
        let later = s.create_project(new_project("later")).await?;

        let reopened = h.reopen(new).await?;
        assert_eq!(
            reopened.project(p.id).await?.database_url.expose(),
            db_url().expose()
        );
        assert_eq!(reopened.project(later.id).await?.name, "later");
        let hooked = reopened.configuration(with_hook.id).await?;
        assert_eq!(hooked.key.expose_secret(), STRIPE_KEY);
        assert_eq!(
            hooked.webhook_secret.as_ref().map(|w| w.expose_secret()),
            Some(WEBHOOK_SECRET)
        );
        assert_eq!(
            reopened.configuration(plain.id).await?.key.expose_secret(),
            STRIPE_KEY
        );

        // The key check moved with the secrets: the old key is refused at open.
        let with_old = h.reopen(old).await.err().ok_or_else(none)?;
        assert!(
            matches!(
                with_old,
                StoreError::Secrets(SecretsError::KeyMismatch { .. })
            ),
            "{with_old:?}"
        );
        Ok(())
    }

    fn none() -> StoreError {
        StoreError::Invalid {
            field: "test",
            reason: "expected an error, got success".into(),
        }
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    let result = super::scenarios::$name(&h).await;
                    h.finish().await;
                    if let Err(e) = result {
                        panic!("{e}");
                    }
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::Harness::postgres().await;
                    let result = super::scenarios::$name(&h).await;
                    h.finish().await;
                    if let Err(e) = result {
                        panic!("{e}");
                    }
                }
            )*
        }
    };
}

conformance!(
    project_round_trip,
    two_running_runs_of_one_configuration_migrate,
    invalid_input_is_refused,
    configuration_round_trip_and_fixed_fields,
    project_delete_cascades,
    inactive_project_or_configuration_is_paused,
    schedules,
    sync_runs,
    secrets_never_stored_in_plaintext,
    wrong_master_key_is_refused_at_open,
    states_without_a_key_check_are_checked_on_a_secret,
    a_missing_key_file_is_made_only_for_a_new_state,
    two_nodes_making_their_own_keys,
    reopening_keeps_state,
    run_queue,
    schedule_due_slots,
    api_tokens,
    users_and_sessions,
    run_leases_and_cancel,
    account_sharing_and_release,
    webhook_secrets,
    master_key_rotation,
);

/// Several nodes starting at once on a fresh PostgreSQL database all come up (schema
/// creation and migrations are serialised by advisory locks).
#[tokio::test]
async fn postgres_nodes_starting_together() {
    let db = TestDb::new().await;
    let url = must(StateUrl::parse(&db.url));
    let key = MasterKey::generate();
    let (a, b, c, d) = tokio::join!(
        PostgresStore::open(&url, key.clone()),
        PostgresStore::open(&url, key.clone()),
        PostgresStore::open(&url, key.clone()),
        PostgresStore::open(&url, key.clone()),
    );
    let stores = [must(a), must(b), must(c), must(d)];
    let p = must(stores[0].create_project(new_project("shared")).await);
    for store in &stores {
        assert_eq!(must(store.project(p.id).await).name, "shared");
        store.pool().close().await;
    }
    db.drop_now().await;
}

/// Sync Now (full) while another node is claiming the incremental run waiting for the same
/// configuration: the claim holds the run's row and waits for the configuration's, so queueing
/// must not wait for the run's row while holding the configuration's (a deadlock). It answers
/// at once with the waiting run as it is.
#[tokio::test]
async fn postgres_sync_now_does_not_wait_for_a_run_being_claimed() {
    let db = TestDb::new().await;
    let url = must(StateUrl::parse(&db.url));
    let store = must(PostgresStore::open(&url, MasterKey::generate()).await);
    let p = must(store.create_project(new_project("p")).await);
    let c = must(
        store
            .create_configuration(new_configuration("c", p.id))
            .await,
    );
    let run = NewRun {
        configuration_id: c.id,
        trigger: Trigger::Manual,
        mode: SyncMode::Incremental,
    };
    let waiting = must(store.queue_run(run.clone()).await).run().clone();
    // Another node's claim, between locking the run and locking the configuration.
    let mut claimer = must(store.pool().begin().await);
    must(
        sqlx::query("SELECT id FROM sync_runs WHERE id = $1 FOR UPDATE")
            .bind(waiting.id.0)
            .execute(&mut *claimer)
            .await,
    );
    let full = NewRun {
        mode: SyncMode::Full,
        ..run
    };
    let answered =
        tokio::time::timeout(std::time::Duration::from_secs(5), store.queue_run(full)).await;
    let queued = must(answered.map_err(|_| "Sync Now waited for the run being claimed"));
    let queued = must(queued);
    assert_eq!(queued.run().id, waiting.id);
    assert_eq!(queued.run().mode, SyncMode::Incremental);
    assert!(
        queued.message().contains("(incremental)"),
        "{}",
        queued.message()
    );
    must(claimer.rollback().await);
    store.pool().close().await;
    db.drop_now().await;
}

/// Several nodes claiming at once from one PostgreSQL state: every run is claimed at most
/// once, and never two runs of one configuration (`FOR UPDATE SKIP LOCKED` plus the
/// configuration's row lock).
#[tokio::test]
async fn postgres_nodes_claiming_together() {
    let db = TestDb::new().await;
    let url = must(StateUrl::parse(&db.url));
    let key = MasterKey::generate();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(must(PostgresStore::open(&url, key.clone()).await));
    }
    let p = must(stores[0].create_project(new_project("shared")).await);
    let mut configurations = Vec::new();
    for name in ["a", "b"] {
        let c = must(
            stores[0]
                .create_configuration(new_configuration(name, p.id))
                .await,
        );
        // Several queued runs each (the raw `create_run` does not deduplicate).
        for _ in 0..3 {
            must(
                stores[0]
                    .create_run(NewRun {
                        configuration_id: c.id,
                        trigger: Trigger::Manual,
                        mode: SyncMode::Full,
                    })
                    .await,
            );
        }
        configurations.push(c.id);
    }
    let claims = stores.iter().flat_map(|s| {
        (0..3).map(move |_| async move { must(s.claim_next_run(Utc::now(), WORKER, LEASE).await) })
    });
    let claimed: Vec<_> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut by_configuration: Vec<_> = claimed.iter().map(|r| r.configuration_id).collect();
    by_configuration.sort();
    assert_eq!(by_configuration, configurations, "{claimed:?}");
    for store in &stores {
        store.pool().close().await;
    }
    db.drop_now().await;
}

/// Several nodes claiming at once while a run's worker has gone silent: exactly one takes
/// it over, and nobody starts the run queued behind it.
#[tokio::test]
async fn postgres_nodes_taking_over_together() {
    let db = TestDb::new().await;
    let url = must(StateUrl::parse(&db.url));
    let key = MasterKey::generate();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(must(PostgresStore::open(&url, key.clone()).await));
    }
    let p = must(stores[0].create_project(new_project("shared")).await);
    let c = must(
        stores[0]
            .create_configuration(new_configuration("c", p.id))
            .await,
    );
    let manual = NewRun {
        configuration_id: c.id,
        trigger: Trigger::Manual,
        mode: SyncMode::Full,
    };
    let t0 = Utc::now();
    let first = must(stores[0].queue_run(manual.clone()).await).run().id;
    let dead = must(stores[0].claim_next_run(t0, "dead", LEASE).await);
    assert_eq!(dead.map(|r| r.id), Some(first));
    let behind = must(stores[0].queue_run(manual).await).run().id;

    let later = t0 + chrono::Duration::seconds(120);
    let claims = stores.iter().enumerate().flat_map(|(n, s)| {
        (0..2).map(move |k| async move {
            must(
                s.claim_next_run(later, &format!("node-{n}-{k}"), LEASE)
                    .await,
            )
        })
    });
    let claimed: Vec<_> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, first);
    assert_ne!(claimed[0].worker_id.as_deref(), Some("dead"));
    assert_eq!(must(stores[0].run(behind).await).status, RunStatus::Queued);
    for store in &stores {
        store.pool().close().await;
    }
    db.drop_now().await;
}
