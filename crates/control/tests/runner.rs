//! The scheduler and runner, driven one [`Runner::step`] at a time with a manual clock,
//! against the in-process Stripe emulator, a SQLite destination and SQLite (or PostgreSQL)
//! state. Nothing sleeps: time only moves when a test advances the clock.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, Utc};
use cls_control::runner::{clock_offset, AlignedClock, Clock, ManualClock, Runner, RunnerConfig};
use cls_control::RunId;
use cls_control::{
    Cadence, Configuration, Every, MasterKey, NewConfiguration, NewProject, NewSchedule,
    PageRequest, Paused, PostgresStore, QueuedRun, RunStatus, RunUpdate, Schedule, SchedulePatch,
    SqliteStore, StateUrl, Store, SyncMode, Trigger,
};
use cls_destination::DatabaseUrl;
use cls_emulator::{EmulatorConfig, RunningEmulator};
use cls_stripe::ApiKey;
use cls_testkit::db::TestDb;
use cls_testkit::emulator::{spawn_emulator, spawn_emulator_with};

/// The worker name claims are made under outside the runner.
const WORKER: &str = "another-worker";
/// The run lease used in those claims.
const LEASE: Duration = Duration::seconds(60);

/// Customers the emulator's account holds.
const CUSTOMERS: usize = 12;

fn must<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// State, clock, runner, emulator and a destination directory for one test.
struct World {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    runner: Runner,
    emulator: RunningEmulator,
    dest_dir: tempfile::TempDir,
    _state_dir: Option<tempfile::TempDir>,
    db: Option<TestDb>,
}

impl World {
    async fn sqlite() -> World {
        let dir = must(tempfile::tempdir());
        let url = must(StateUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("state.db").display()
        )));
        let store: Arc<dyn Store> =
            Arc::new(must(SqliteStore::open(&url, MasterKey::generate()).await));
        World::with(store, Some(dir), None, spawn_emulator(7, CUSTOMERS).await).await
    }

    /// SQLite (or PostgreSQL) state and a larger, slower Stripe account (each request takes
    /// about 20 ms), so a run is still in flight when a test acts on it.
    async fn slow(postgres: bool) -> World {
        let mut config = EmulatorConfig::new(11, 300);
        // Slow enough that a run is still in flight while a test interrupts it, even on a loaded
        // machine: after the first page, a run has seconds left (at 20 ms it once ended first).
        config.latency_ms = 400;
        let emulator = spawn_emulator_with(config).await;
        if postgres {
            let db = TestDb::new().await;
            let url = must(StateUrl::parse(&db.url));
            let store: Arc<dyn Store> =
                Arc::new(must(PostgresStore::open(&url, MasterKey::generate()).await));
            return World::with(store, None, Some(db), emulator).await;
        }
        let dir = must(tempfile::tempdir());
        let url = must(StateUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("state.db").display()
        )));
        let store: Arc<dyn Store> =
            Arc::new(must(SqliteStore::open(&url, MasterKey::generate()).await));
        World::with(store, Some(dir), None, emulator).await
    }

    async fn postgres() -> World {
        let db = TestDb::new().await;
        let url = must(StateUrl::parse(&db.url));
        let store: Arc<dyn Store> =
            Arc::new(must(PostgresStore::open(&url, MasterKey::generate()).await));
        World::with(store, None, Some(db), spawn_emulator(7, CUSTOMERS).await).await
    }

    async fn with(
        store: Arc<dyn Store>,
        state_dir: Option<tempfile::TempDir>,
        db: Option<TestDb>,
        emulator: RunningEmulator,
    ) -> World {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let runner = Runner::with_config(store.clone(), clock.clone(), RunnerConfig::default());
        World {
            store,
            clock,
            runner,
            emulator,
            dest_dir: must(tempfile::tempdir()),
            _state_dir: state_dir,
            db,
        }
    }

    async fn finish(self) {
        self.emulator.shutdown().await;
        if let Some(db) = self.db {
            db.drop_now().await;
        }
    }

    fn dest_file(&self) -> std::path::PathBuf {
        self.dest_dir.path().join("dest.db")
    }

    /// A project on a SQLite destination and a configuration with `key` and `types`.
    async fn configuration(&self, key: &str, types: &[&str]) -> Configuration {
        self.configuration_on(
            &format!("sqlite://{}", self.dest_file().display()),
            key,
            types,
        )
        .await
    }

    async fn configuration_on(
        &self,
        database_url: &str,
        key: &str,
        types: &[&str],
    ) -> Configuration {
        let project = must(
            self.store
                .create_project(NewProject {
                    name: "warehouse".into(),
                    database_url: must(DatabaseUrl::parse(database_url)),
                    schema: None,
                })
                .await,
        );
        let data_types = types
            .iter()
            .map(|t| cls_catalog::find(t).unwrap_or_else(|| panic!("unknown type {t}")))
            .collect();
        must(
            self.store
                .create_configuration(NewConfiguration {
                    name: "stripe test".into(),
                    project_id: project.id,
                    key: must(ApiKey::parse(key)),
                    data_types,
                    stripe_api_base: Some(must(url::Url::parse(&self.emulator.base_url))),
                    webhook_secret: None,
                })
                .await,
        )
    }

    async fn hourly(&self, c: &Configuration) -> Schedule {
        must(
            self.store
                .create_schedule(NewSchedule {
                    configuration_id: c.id,
                    cadence: Cadence::Every(Every::Hour),
                    mode: SyncMode::Full,
                })
                .await,
        )
    }

    /// Moves the clock an hour on and steps the runner: the run that came due, executed.
    async fn run_due_after_an_hour(&self) -> cls_control::ExecutedRun {
        self.clock.advance(Duration::hours(1));
        let out = must(self.runner.step().await);
        out.executed
            .unwrap_or_else(|| panic!("the due run did not run"))
    }

    async fn runs(&self, c: &Configuration) -> Vec<cls_control::SyncRun> {
        must(self.store.list_runs(c.id, PageRequest::default()).await).items
    }

    /// A runner on the same state and clock under another worker name, beating every 10 ms.
    fn runner_as(&self, worker: &str) -> Runner {
        Runner::with_config(
            self.store.clone(),
            self.clock.clone(),
            RunnerConfig {
                worker_id: worker.to_string(),
                heartbeat_every: std::time::Duration::from_millis(10),
                ..RunnerConfig::default()
            },
        )
    }

    /// Waits until the running run `id` has reported objects through its heartbeats (a
    /// condition, polled; bounded so a broken runner fails the test instead of hanging it).
    async fn until_progress(&self, id: RunId) {
        let wait = async {
            loop {
                let run = must(self.store.run(id).await);
                if run.stats.values().any(|s| s.objects > 0) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(60), wait)
            .await
            .is_err()
        {
            panic!("run {id} reported no progress within a minute");
        }
    }

    /// The destination holds exactly the emulator's live objects of `object` (ids).
    async fn assert_destination_equals_emulator(&self, object: &str, table: &str) {
        let want: BTreeSet<String> = {
            let store = self
                .emulator
                .state
                .store
                .read()
                .unwrap_or_else(|p| p.into_inner());
            store.table(object).map_or_else(BTreeSet::new, |t| {
                t.iter()
                    .filter(|r| !r.deleted)
                    .map(|r| r.id.to_string())
                    .collect()
            })
        };
        assert!(!want.is_empty(), "the emulator holds {object}s");
        let file = self.dest_file();
        let pool = must(sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await);
        let got: Vec<String> = must(
            sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE NOT deleted"))
                .fetch_all(&pool)
                .await,
        );
        pool.close().await;
        let got: BTreeSet<String> = got.into_iter().collect();
        assert_eq!(got, want, "{table} differs from the emulator's {object}s");
    }
}

/// Customers the emulator's account holds, not counting those its seeded history deleted.
fn emulator_customers(emulator: &RunningEmulator) -> u64 {
    let store = emulator
        .state
        .store
        .read()
        .unwrap_or_else(|p| p.into_inner());
    store
        .table("customer")
        .map_or(0, |t| t.iter().filter(|r| !r.deleted).count() as u64)
}

async fn count_customers(file: &Path) -> i64 {
    let pool = must(sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await);
    let n: i64 = must(
        sqlx::query_scalar("SELECT COUNT(*) FROM customers")
            .fetch_one(&pool)
            .await,
    );
    pool.close().await;
    n
}

/// Hourly schedule: nothing is due until the next top of the hour; then one step queues the
/// run and executes it, the run succeeds with counters, and the customers are in the
/// destination. Five hours "down" later, one step queues exactly one run.
async fn scheduled_run_then_missed_slots(w: &World) {
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    let s = w.hourly(&c).await;

    assert!(must(w.runner.step().await).is_idle(), "nothing is due yet");

    w.clock.advance(Duration::hours(1));
    let out = must(w.runner.step().await);
    assert_eq!(out.scheduled.len(), 1);
    assert_eq!(out.scheduled[0].schedule, s.id);
    let executed = out
        .executed
        .unwrap_or_else(|| panic!("the due run did not run"));
    let run = executed.run;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.errors);
    assert_eq!(run.trigger, Trigger::Schedule);
    assert!(run.started_at.is_some() && run.ended_at.is_some());
    let stats = run.stats.get("customers").cloned().unwrap_or_default();
    let expected = emulator_customers(&w.emulator);
    assert!(expected > 0);
    assert_eq!(stats.objects, expected);
    assert_eq!(stats.inserted, expected);
    assert!(stats.requests > 0);
    assert!(run.errors.is_empty());
    assert!(executed.paused.is_empty());
    assert_eq!(count_customers(&w.dest_file()).await, expected as i64);

    // The same hour again: nothing.
    assert!(must(w.runner.step().await).is_idle());

    // Down for five hours: one run, not five.
    w.clock.advance(Duration::hours(5));
    let out = must(w.runner.step().await);
    assert_eq!(out.scheduled.len(), 1, "{:?}", out.scheduled);
    assert!(out
        .executed
        .as_ref()
        .is_some_and(|e| e.run.status == RunStatus::Succeeded));
    assert!(must(w.runner.step().await).is_idle());
    let runs = w.runs(&c).await;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.trigger == Trigger::Schedule));
    let last_due = must(w.store.schedule(s.id).await).last_due_at;
    assert_eq!(last_due, Some(out.scheduled[0].slot));
}

#[tokio::test]
async fn scheduled_runs_on_sqlite_state() {
    let w = World::sqlite().await;
    scheduled_run_then_missed_slots(&w).await;
    w.finish().await;
}

#[tokio::test]
async fn scheduled_runs_on_postgres_state() {
    let w = World::postgres().await;
    scheduled_run_then_missed_slots(&w).await;
    w.finish().await;
}

/// Sync Now while a run is running queues one run behind it (and says so); pressing it
/// again returns that run; the queued run starts only once the first has ended.
#[tokio::test]
async fn sync_now_during_a_run_is_queued_once() {
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;

    let first = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    assert!(matches!(first, QueuedRun::Queued { behind: None, .. }));
    // Another worker takes it: it is running now.
    let running = must(w.store.claim_next_run(w.clock.now(), WORKER, LEASE).await)
        .unwrap_or_else(|| panic!("the queued run could not be claimed"));
    assert_eq!(running.id, first.run().id);
    assert_eq!(running.status, RunStatus::Running);

    let second = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    match &second {
        QueuedRun::Queued { behind, run } => {
            assert_eq!(*behind, Some(running.id));
            assert_eq!(run.status, RunStatus::Queued);
        }
        other => panic!("expected a new queued run, got {other:?}"),
    }
    assert!(
        second.message().contains("still running"),
        "{}",
        second.message()
    );
    let third = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    assert_eq!(third, QueuedRun::AlreadyQueued(second.run().clone()));
    assert!(third.message().contains("already queued"));

    // While the first runs, the second waits.
    assert!(must(w.runner.step().await).executed.is_none());
    assert_eq!(
        must(w.store.run(second.run().id).await).status,
        RunStatus::Queued
    );

    must(
        w.store
            .update_run(
                running.id,
                RunUpdate {
                    status: Some(RunStatus::Succeeded),
                    ended_at: Some(w.clock.now()),
                    ..RunUpdate::default()
                },
            )
            .await,
    );
    let out = must(w.runner.step().await);
    let executed = out
        .executed
        .unwrap_or_else(|| panic!("the queued run did not start"));
    assert_eq!(executed.run.id, second.run().id);
    assert_eq!(executed.run.status, RunStatus::Succeeded);
    assert_eq!(w.runs(&c).await.len(), 2);
    assert!(must(w.runner.step().await).is_idle());
    w.finish().await;
}

/// A well-formed key Stripe does not know (401): the run fails, and the schedule pauses
/// with a reason naming the key; no more runs are queued until it is switched on again.
#[tokio::test]
async fn rejected_key_fails_the_run_and_pauses_the_schedule() {
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_notarealkey1234", &["customers"])
        .await;
    let s = w.hourly(&c).await;

    let executed = w.run_due_after_an_hour().await;
    assert_eq!(executed.run.status, RunStatus::Failed);
    assert!(!executed.run.errors.is_empty());
    assert_eq!(executed.paused.len(), 1);

    let paused = must(w.store.schedule(s.id).await);
    let reason = paused.paused_reason.clone().unwrap_or_default();
    assert!(reason.contains(&c.key_masked), "{reason}");
    assert!(!reason.contains("rk_test_notarealkey1234"), "{reason}");
    assert_eq!(paused.paused(), Some(Paused::Schedule(Some(reason))));

    w.clock.advance(Duration::hours(3));
    assert!(
        must(w.runner.step().await).is_idle(),
        "a paused schedule queued a run"
    );
    assert_eq!(w.runs(&c).await.len(), 1);

    // Switched on again (what a passing Test Connection does): due again at the next slot.
    must(
        w.store
            .update_schedule(
                s.id,
                SchedulePatch {
                    active: Some(true),
                    ..SchedulePatch::default()
                },
            )
            .await,
    );
    w.clock.advance(Duration::hours(1));
    assert_eq!(must(w.runner.step().await).scheduled.len(), 1);
    w.finish().await;
}

/// A restricted key lacking the permission of every chosen data type (403): the run fails
/// with the missing permissions and the schedule pauses; with one type still readable the
/// run is partial and the schedule keeps running.
#[tokio::test]
async fn lost_permissions_pause_only_when_nothing_can_sync() {
    let w = World::sqlite().await;
    let denied = w
        .configuration("rk_test_cls_limited", &["charges", "invoices"])
        .await;
    let s = w.hourly(&denied).await;
    let executed = w.run_due_after_an_hour().await;
    assert_eq!(executed.run.status, RunStatus::Failed, "{:?}", executed.run);
    assert_eq!(executed.run.errors.len(), 2);
    let reason = must(w.store.schedule(s.id).await)
        .paused_reason
        .unwrap_or_default();
    assert!(reason.contains("rak_charge_read"), "{reason}");
    assert!(reason.contains("rak_invoice_read"), "{reason}");

    let dest2 = w.dest_dir.path().join("second.db");
    let partial = w
        .configuration_on(
            &format!("sqlite://{}", dest2.display()),
            "rk_test_cls_limited",
            &["customers", "charges"],
        )
        .await;
    let s2 = w.hourly(&partial).await;
    let executed = w.run_due_after_an_hour().await;
    assert_eq!(executed.run.status, RunStatus::Partial);
    assert_eq!(executed.run.errors.len(), 1);
    assert_eq!(executed.run.errors[0].data_type.as_deref(), Some("charges"));
    assert!(executed.paused.is_empty());
    assert!(must(w.store.schedule(s2.id).await).active);
    w.finish().await;
}

/// A destination that cannot take the run — nobody listens, or the server answers but the
/// database named in the URL does not exist — fails the run and pauses the schedule with the
/// cause and "Test Connection to resume", the password masked.
#[tokio::test]
async fn a_database_that_cannot_take_the_run_pauses_the_schedule() {
    let cases = [
        (
            "postgres://cls:pw-Unreach4ble@127.0.0.1:1/nowhere",
            "unreachable",
        ),
        (
            "postgres://postgres:pw-Refus3d@127.0.0.1:5432/cls_no_such_database_here",
            "does not exist",
        ),
    ];
    for (url, cause) in cases {
        let w = World::sqlite().await;
        let c = w
            .configuration_on(url, "rk_test_cls_emulator", &["customers"])
            .await;
        let s = w.hourly(&c).await;
        let executed = w.run_due_after_an_hour().await;
        assert_eq!(executed.run.status, RunStatus::Failed, "{url}");
        assert_eq!(executed.paused.len(), 1, "{url}");
        let reason = must(w.store.schedule(s.id).await)
            .paused_reason
            .unwrap_or_default();
        assert!(reason.contains(cause), "{reason}");
        assert!(reason.contains("Test Connection to resume"), "{reason}");
        assert!(!reason.contains("pw-"), "{reason}");
        w.finish().await;
    }
}

/// An inactive configuration's schedule queues nothing.
#[tokio::test]
async fn inactive_configuration_queues_nothing() {
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    w.hourly(&c).await;
    must(
        w.store
            .update_configuration(
                c.id,
                cls_control::ConfigurationPatch {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await,
    );
    w.clock.advance(Duration::hours(2));
    assert!(must(w.runner.step().await).is_idle());
    w.finish().await;
}

/// A Sync Now queued before its configuration was switched off does not run: it ends
/// canceled, saying why.
#[tokio::test]
async fn queued_run_of_a_switched_off_configuration_is_canceled() {
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    let queued = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    must(
        w.store
            .update_configuration(
                c.id,
                cls_control::ConfigurationPatch {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await,
    );
    let out = must(w.runner.step().await);
    let executed = out
        .executed
        .unwrap_or_else(|| panic!("the queued run was not taken"));
    assert_eq!(executed.run.id, queued.run().id);
    assert_eq!(executed.run.status, RunStatus::Canceled);
    let message = executed
        .run
        .errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("inactive"), "{message}");
    assert!(!w.dest_file().exists(), "nothing was written");
    w.finish().await;
}

/// A cron schedule comes due at its next match, once, and runs incrementally as asked.
#[tokio::test]
async fn cron_schedule_runs_at_its_next_match() {
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    must(
        w.store
            .create_schedule(NewSchedule {
                configuration_id: c.id,
                cadence: Cadence::Cron(must(cls_control::CronExpression::parse("*/15 * * * *"))),
                mode: SyncMode::Incremental,
            })
            .await,
    );
    w.clock.advance(Duration::minutes(16));
    let out = must(w.runner.step().await);
    assert_eq!(out.scheduled.len(), 1);
    let run = out
        .executed
        .unwrap_or_else(|| panic!("the due run did not run"))
        .run;
    assert_eq!(run.mode, SyncMode::Incremental);
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.errors);
    assert!(must(w.runner.step().await).is_idle());
    w.finish().await;
}

/// A worker that stops sending heartbeats mid-run (its step is dropped, as when its process
/// dies): while its lease is live no other worker touches the configuration; once it has
/// expired another worker takes the run over, same id, and completes the data.
async fn silent_workers_run_is_taken_over(w: World) {
    let c = w
        .configuration("rk_test_cls_emulator", &["customers", "invoices"])
        .await;
    let queued = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    let id = queued.run().id;
    let a = w.runner_as("worker-a");
    let b = w.runner_as("worker-b");

    let mut step_a = Box::pin(a.step());
    tokio::select! {
        out = &mut step_a => panic!("the run ended before it could be interrupted: {out:?}"),
        () = w.until_progress(id) => {}
    }
    // Worker a is alive: b finds nothing to do (not a's run, not a second run of it).
    let queued_behind = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    tokio::select! {
        out = &mut step_a => panic!("the run ended before it could be interrupted: {out:?}"),
        out = b.step() => assert!(must(out).is_idle(), "b claimed a live-running configuration"),
    }
    drop(step_a);
    let held = must(w.store.run(id).await);
    assert_eq!(held.status, RunStatus::Running);
    assert_eq!(held.worker_id.as_deref(), Some("worker-a"));

    // Still within the lease: nothing.
    w.clock.advance(Duration::seconds(30));
    assert!(must(b.step().await).is_idle());

    w.clock.advance(Duration::seconds(61));
    let out = must(b.step().await);
    let executed = out
        .executed
        .unwrap_or_else(|| panic!("the silent worker's run was not taken over"));
    assert_eq!(executed.run.id, id, "taken over, not started again");
    assert!(!executed.lease_lost);
    assert_eq!(
        executed.run.status,
        RunStatus::Succeeded,
        "{:?}",
        executed.run.errors
    );
    assert_eq!(executed.run.worker_id.as_deref(), Some("worker-b"));
    w.assert_destination_equals_emulator("customer", "customers")
        .await;
    w.assert_destination_equals_emulator("invoice", "invoices")
        .await;

    // The run that waited behind it comes next.
    let next = must(b.step().await)
        .executed
        .unwrap_or_else(|| panic!("the queued run did not start"));
    assert_eq!(next.run.id, queued_behind.run().id);
    assert_eq!(next.run.status, RunStatus::Succeeded);
    w.finish().await;
}

#[tokio::test]
async fn a_silent_workers_run_is_taken_over_on_sqlite_state() {
    silent_workers_run_is_taken_over(World::slow(false).await).await;
}

#[tokio::test]
async fn a_silent_workers_run_is_taken_over_on_postgres_state() {
    silent_workers_run_is_taken_over(World::slow(true).await).await;
}

/// A node shutting down releases its run: the engine stops at a checkpoint, the run stays
/// running with no worker, and another worker takes it over at once — the clock has not
/// moved, so no lease had to expire — and completes the data.
#[tokio::test]
async fn a_released_run_is_taken_over_at_once() {
    let w = World::slow(true).await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers", "invoices"])
        .await;
    let id = must(w.runner.sync_now(c.id, SyncMode::Full).await).run().id;
    let a = w.runner_as("worker-a");
    let b = w.runner_as("worker-b");
    let (release, released) = tokio::sync::watch::channel(false);
    let mut run_a = Box::pin(a.run_next_until(released));
    tokio::select! {
        out = &mut run_a => panic!("the run ended before it could be released: {out:?}"),
        () = w.until_progress(id) => {}
    }
    assert!(must(b.step().await).is_idle(), "b claimed a live run");
    must(release.send(true));
    let out = must(run_a.await).unwrap_or_else(|| panic!("a executed nothing"));
    assert!(out.released, "{out:?}");
    assert!(!out.lease_lost);
    assert_eq!(out.run.id, id);
    assert_eq!(out.run.status, RunStatus::Running);
    assert_eq!(out.run.worker_id, None);

    let taken = must(b.step().await)
        .executed
        .unwrap_or_else(|| panic!("the released run was not taken over at once"));
    assert_eq!(taken.run.id, id, "taken over, not started again");
    assert_eq!(
        taken.run.status,
        RunStatus::Succeeded,
        "{:?}",
        taken.run.errors
    );
    assert_eq!(taken.run.worker_id.as_deref(), Some("worker-b"));
    w.assert_destination_equals_emulator("customer", "customers")
        .await;
    w.assert_destination_equals_emulator("invoice", "invoices")
        .await;
    w.finish().await;
}

/// Cancel of a queued run: it ends at once and never starts.
#[tokio::test]
async fn canceling_a_queued_run_ends_it_before_it_starts() {
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    let queued = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    let canceled = must(w.store.request_cancel(queued.run().id, w.clock.now()).await);
    assert_eq!(canceled.status, RunStatus::Canceled);
    assert!(canceled.ended_at.is_some());
    assert!(must(w.runner.step().await).is_idle());
    assert!(!w.dest_file().exists(), "nothing was written");
    w.finish().await;
}

/// Cancel of a running run: its worker stops it at the next heartbeat and records it
/// canceled, saying what stays; the next run completes the data.
#[tokio::test]
async fn canceling_a_running_run_stops_it_and_the_next_run_completes() {
    let w = World::slow(false).await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers", "invoices"])
        .await;
    let queued = must(w.runner.sync_now(c.id, SyncMode::Full).await);
    let id = queued.run().id;
    let a = w.runner_as("worker-a");
    let mut step = Box::pin(a.step());
    tokio::select! {
        out = &mut step => panic!("the run ended before it could be canceled: {out:?}"),
        () = w.until_progress(id) => {}
    }
    let flagged = must(w.store.request_cancel(id, w.clock.now()).await);
    assert_eq!(flagged.status, RunStatus::Running);
    assert!(flagged.cancel_requested);
    let executed = must(step.await)
        .executed
        .unwrap_or_else(|| panic!("the step lost its run"));
    assert_eq!(executed.run.id, id);
    assert_eq!(executed.run.status, RunStatus::Canceled);
    let message = executed
        .run
        .errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("resumes from there"), "{message}");
    assert!(
        executed.run.stats.values().any(|s| s.objects > 0),
        "the progress made is kept: {:?}",
        executed.run.stats
    );
    assert!(must(a.step().await).is_idle());

    must(w.runner.sync_now(c.id, SyncMode::Full).await);
    let next = must(a.step().await)
        .executed
        .unwrap_or_else(|| panic!("the next run did not start"));
    assert_eq!(
        next.run.status,
        RunStatus::Succeeded,
        "{:?}",
        next.run.errors
    );
    w.assert_destination_equals_emulator("customer", "customers")
        .await;
    w.assert_destination_equals_emulator("invoice", "invoices")
        .await;
    w.finish().await;
}

/// Records every counter and histogram the process emits, keyed `name{label=value,…}`, so a
/// test can read what the runner counted (installed once per test binary; other tests run
/// alongside, so checks are lower bounds).
mod recorded {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    /// Every counter's value and every histogram's number of records.
    #[derive(Debug, Default)]
    pub struct Metrics {
        /// Values by `name{labels}`.
        values: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    }

    impl Metrics {
        fn slot(&self, key: &Key) -> Arc<AtomicU64> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
            values.entry(name).or_default().clone()
        }

        /// The value of `name{labels}` (0 when never emitted).
        pub fn get(&self, name: &str) -> u64 {
            let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
            values.get(name).map_or(0, |v| v.load(Ordering::SeqCst))
        }
    }

    /// Counts a histogram's records.
    struct Records(Arc<AtomicU64>);

    impl HistogramFn for Records {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Capture(Arc<Metrics>);

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.0.slot(key))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Records(self.0.slot(key))))
        }
    }

    /// The process's recorder, installed on first use.
    pub fn metrics() -> Arc<Metrics> {
        static INSTALLED: OnceLock<Arc<Metrics>> = OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let metrics = Arc::new(Metrics::default());
                if metrics::set_global_recorder(Capture(metrics.clone())).is_err() {
                    panic!("another metrics recorder is installed in this test binary");
                }
                metrics
            })
            .clone()
    }
}

/// A run's end and each data type's counters are emitted as metrics with the documented
/// names and labels.
#[tokio::test]
async fn runs_are_counted_in_metrics() {
    let metrics = recorded::metrics();
    let before_runs = metrics.get("cls_sync_runs_total{status=succeeded}");
    let before_durations = metrics.get("cls_sync_run_duration_seconds{}");
    let before_objects = metrics.get("cls_sync_objects_total{type=customers}");
    let before_requests = metrics.get("cls_sync_requests_total{type=customers}");
    let w = World::sqlite().await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    must(w.runner.sync_now(c.id, SyncMode::Full).await);
    let run = must(w.runner.step().await)
        .executed
        .unwrap_or_else(|| panic!("the run did not start"))
        .run;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.errors);
    let stats = run.stats.get("customers").cloned().unwrap_or_default();
    assert!(metrics.get("cls_sync_runs_total{status=succeeded}") > before_runs);
    assert!(metrics.get("cls_sync_run_duration_seconds{}") > before_durations);
    assert!(
        metrics.get("cls_sync_objects_total{type=customers}") >= before_objects + stats.objects
    );
    assert!(
        metrics.get("cls_sync_requests_total{type=customers}") >= before_requests + stats.requests
    );
    assert!(stats.requests > 0);
    w.finish().await;
}

/// A worker whose heartbeats stop getting through (here the state database is locked by
/// someone else; a network partition is the same) stops its run once a whole lease has
/// passed without one: by then another node may have taken the run over, and two engines
/// must not write one configuration at once. It records nothing; the run stays running for
/// the taker.
#[tokio::test]
async fn a_worker_cut_off_from_the_state_stops_its_run_after_the_lease() {
    use sqlx::{Connection, Executor};
    let mut config = EmulatorConfig::new(11, 2000);
    config.latency_ms = 1000;
    let emulator = spawn_emulator_with(config).await;
    let dir = must(tempfile::tempdir());
    let state = dir.path().join("state.db");
    let url = must(StateUrl::parse(&format!("sqlite://{}", state.display())));
    let store: Arc<dyn Store> =
        Arc::new(must(SqliteStore::open(&url, MasterKey::generate()).await));
    let w = World::with(store, Some(dir), None, emulator).await;
    let c = w
        .configuration("rk_test_cls_emulator", &["customers"])
        .await;
    let id = must(w.runner.sync_now(c.id, SyncMode::Full).await).run().id;
    let a = Runner::with_config(
        w.store.clone(),
        w.clock.clone(),
        RunnerConfig {
            worker_id: "worker-a".to_string(),
            lease: Duration::seconds(1),
            heartbeat_every: std::time::Duration::from_millis(50),
            ..RunnerConfig::default()
        },
    );
    let mut step = Box::pin(a.step());
    tokio::select! {
        out = &mut step => panic!("the run ended before it could be cut off: {out:?}"),
        () = w.until_progress(id) => {}
    }
    let mut locker =
        must(sqlx::SqliteConnection::connect(&format!("sqlite://{}", state.display())).await);
    must(locker.execute("BEGIN EXCLUSIVE").await);
    let out = tokio::time::timeout(std::time::Duration::from_secs(4), &mut step).await;
    must(locker.execute("ROLLBACK").await);
    let executed = must(must(
        out.map_err(|_| "the worker kept its run without heartbeats"),
    ))
    .executed
    .unwrap_or_else(|| panic!("the step lost its run"));
    assert!(executed.lease_lost, "{:?}", executed.run);
    let run = must(w.store.run(id).await);
    assert_eq!(
        run.status,
        RunStatus::Running,
        "nothing recorded: {:?}",
        run.errors
    );
    w.finish().await;
}

/// Nodes read one clock: the offset to the state database's is measured half-way through the
/// round trip, and an aligned clock shows the database's time whatever the machine's says.
#[test]
fn an_aligned_clock_shows_the_state_databases_time() {
    let sent = Utc::now();
    let trip = std::time::Duration::from_millis(30);
    // The database runs 40 s ahead; it read its clock 15 ms into the 30 ms trip.
    let theirs = sent + Duration::seconds(40) + Duration::milliseconds(15);
    assert_eq!(clock_offset(sent, trip, theirs), Duration::seconds(40));
    // …or 3 s behind.
    let theirs = sent - Duration::seconds(3) + Duration::milliseconds(15);
    assert_eq!(clock_offset(sent, trip, theirs), Duration::seconds(-3));

    let clock = AlignedClock::default();
    clock.set_offset(Duration::seconds(40));
    let shown = clock.now() - Utc::now();
    assert!(
        (Duration::seconds(39)..=Duration::seconds(41)).contains(&shown),
        "{shown}"
    );
    // A manual clock ignores it.
    let manual = ManualClock::new(sent);
    manual.set_offset(Duration::seconds(40));
    assert_eq!(manual.now(), sent);
}

/// On PostgreSQL state, a runner reads the database's clock and sets its own by it.
#[tokio::test]
async fn a_runner_aligns_its_clock_to_the_postgres_state() {
    let db = TestDb::new().await;
    let url = must(StateUrl::parse(&db.url));
    let store: Arc<dyn Store> =
        Arc::new(must(PostgresStore::open(&url, MasterKey::generate()).await));
    let clock = Arc::new(AlignedClock::default());
    clock.set_offset(Duration::hours(5));
    let runner = Runner::new(store.clone(), clock.clone());
    // The same machine's PostgreSQL: no real offset, so the 5 h set by hand is replaced.
    let offset = must(runner.align_clock().await);
    assert!(offset.num_seconds().abs() < 2, "{offset}");
    assert_eq!(clock.offset().num_microseconds(), offset.num_microseconds());
    let database = must(store.database_time().await);
    assert!((clock.now() - database).num_seconds().abs() < 2);
    drop(runner);
    drop(store);
    db.drop_now().await;
}
