//! Test Connection ([`cls_control::check`]) against the in-process Stripe emulator, SQLite
//! destinations and SQLite state: what passes, what fails with which fix, the time bounds,
//! and which paused schedules a passing test switches on again.

use std::sync::Arc;
use std::time::Duration;

use cls_control::{
    check_database, check_key, resume_system_paused, test_configuration, Cadence, Configuration,
    DatabaseCheckError, Every, MasterKey, NewConfiguration, NewProject, NewSchedule, PageRequest,
    SqliteStore, StateUrl, Store, StripeCheckError, SyncMode, TimeLimits,
};
use cls_destination::DatabaseUrl;
use cls_emulator::RunningEmulator;
use cls_stripe::ApiKey;
use cls_testkit::db::{admin_connection, TestDb};
use cls_testkit::emulator::spawn_emulator;
use sqlx::{Connection, Executor};

const FULL_KEY: &str = "rk_test_cls_emulator";
const LIMITED_KEY: &str = "rk_test_cls_limited";

fn must<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

struct World {
    store: Arc<dyn Store>,
    emulator: RunningEmulator,
    dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let dir = must(tempfile::tempdir());
        let url = must(StateUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("state.db").display()
        )));
        let store: Arc<dyn Store> =
            Arc::new(must(SqliteStore::open(&url, MasterKey::generate()).await));
        World {
            store,
            emulator: spawn_emulator(3, 4).await,
            dir,
        }
    }

    fn dest_url(&self, query: &str) -> DatabaseUrl {
        must(DatabaseUrl::parse(&format!(
            "sqlite://{}{query}",
            self.dir.path().join("dest.db").display()
        )))
    }

    async fn configuration(&self, database_url: DatabaseUrl, key: &str) -> Configuration {
        let project = must(
            self.store
                .create_project(NewProject {
                    name: "warehouse".into(),
                    database_url,
                    schema: None,
                })
                .await,
        );
        let data_types = ["customers", "charges"]
            .iter()
            .filter_map(|t| cls_catalog::find(t))
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

    async fn schedules(&self, c: &Configuration, n: usize) -> Vec<cls_control::Schedule> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(must(
                self.store
                    .create_schedule(NewSchedule {
                        configuration_id: c.id,
                        cadence: Cadence::Every(Every::Day),
                        mode: SyncMode::Incremental,
                    })
                    .await,
            ));
        }
        out
    }

    async fn active_count(&self, c: &Configuration) -> usize {
        let page = PageRequest {
            offset: 0,
            limit: 10_000,
        };
        let got = must(self.store.list_schedules(Some(c.id), page).await);
        got.items.iter().filter(|s| s.active).count()
    }
}

/// A listener that accepts connections and never answers: a black-holed host.
async fn silent_listener() -> (tokio::net::TcpListener, String) {
    let listener = must(tokio::net::TcpListener::bind("127.0.0.1:0").await);
    let addr = must(listener.local_addr());
    (listener, addr.to_string())
}

#[tokio::test]
async fn a_passing_test_resumes_what_the_system_paused_and_nothing_else() {
    let w = World::new().await;
    let c = w.configuration(w.dest_url(""), FULL_KEY).await;
    let s = w.schedules(&c, 3).await;
    must(
        w.store
            .pause_schedule(s[0].id, "the Stripe key was revoked")
            .await,
    );
    must(
        w.store
            .update_schedule(
                s[1].id,
                cls_control::SchedulePatch {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await,
    );
    let test = must(test_configuration(w.store.as_ref(), c.id, None, TimeLimits::default()).await);
    assert!(test.passed(), "{test:?}");
    assert!(test.stripe_passed() && test.database_passed());
    assert_eq!(test.resumed, vec![s[0].id]);
    // A person's pause stays.
    assert_eq!(w.active_count(&c).await, 2);
    let db = test.database.as_ref().map_err(ToString::to_string);
    assert!(db.is_ok_and(|d| d.create_tables_sql.is_none()));
    w.emulator.shutdown().await;
}

#[tokio::test]
async fn every_page_of_system_paused_schedules_is_resumed() {
    let w = World::new().await;
    let c = w.configuration(w.dest_url(""), FULL_KEY).await;
    // More than one page of the store's listing (500).
    let s = w.schedules(&c, 501).await;
    for s in &s {
        must(
            w.store
                .pause_schedule(s.id, "the database was unreachable")
                .await,
        );
    }
    let resumed = must(resume_system_paused(w.store.as_ref(), c.id).await);
    assert_eq!(resumed.len(), 501);
    assert_eq!(w.active_count(&c).await, 501);
    w.emulator.shutdown().await;
}

#[tokio::test]
async fn a_key_missing_a_permission_fails_and_resumes_nothing() {
    let w = World::new().await;
    let c = w.configuration(w.dest_url(""), LIMITED_KEY).await;
    let s = w.schedules(&c, 1).await;
    must(
        w.store
            .pause_schedule(s[0].id, "a permission was lost")
            .await,
    );
    let test = must(test_configuration(w.store.as_ref(), c.id, None, TimeLimits::default()).await);
    assert!(!test.passed() && !test.stripe_passed() && test.database_passed());
    assert!(test.resumed.is_empty());
    let Ok(stripe) = &test.stripe else {
        panic!("{test:?}")
    };
    let charges = stripe.types.iter().find(|t| t.data_type == "charges");
    assert!(
        charges.is_some_and(
            |t| !t.readable && t.missing_permission.as_deref() == Some("rak_charge_read")
        ),
        "{stripe:?}"
    );
    assert_eq!(w.active_count(&c).await, 0);
    w.emulator.shutdown().await;
}

#[tokio::test]
async fn a_read_only_database_fails_with_the_create_table_sql() {
    let w = World::new().await;
    // Creates the file, which the read-only configuration then opens.
    let made = check_database(&w.dest_url(""), "stripe", &[], Duration::from_secs(30)).await;
    assert!(made.is_ok_and(|d| d.passed() && d.create_tables_sql.is_none()));
    let c = w.configuration(w.dest_url("?mode=ro"), FULL_KEY).await;
    let test = must(test_configuration(w.store.as_ref(), c.id, None, TimeLimits::default()).await);
    assert!(test.stripe_passed() && !test.database_passed() && !test.passed());
    let Ok(db) = &test.database else {
        panic!("{test:?}")
    };
    assert!(db.message().contains("grant CREATE"), "{}", db.message());
    let sql = db.create_tables_sql.as_deref().unwrap_or_default();
    assert!(
        sql.contains("CREATE TABLE") && sql.contains("charges"),
        "{sql}"
    );
    w.emulator.shutdown().await;
}

#[tokio::test]
async fn each_half_gives_up_after_its_time_limit() {
    let (_listener, addr) = silent_listener().await;
    let bound = Duration::from_millis(200);
    let base = must(url::Url::parse(&format!("http://{addr}")));
    let types: Vec<_> = cls_catalog::find("customers").into_iter().collect();
    let stripe = check_key(&must(ApiKey::parse(FULL_KEY)), Some(&base), &types, bound).await;
    assert!(
        matches!(stripe, Err(StripeCheckError::TimedOut(d)) if d == bound),
        "{stripe:?}"
    );
    let url = must(DatabaseUrl::parse(&format!("postgres://cls:pw@{addr}/db")));
    let db = check_database(&url, "stripe", &types, bound).await;
    assert!(
        matches!(&db, Err(DatabaseCheckError::TimedOut(d)) if *d == bound),
        "{db:?}"
    );
    let said = db.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(said.contains("did not answer within"), "{said}");
}

#[tokio::test]
async fn an_unknown_configuration_is_not_found() {
    let w = World::new().await;
    let got = test_configuration(
        w.store.as_ref(),
        cls_control::ConfigurationId(404),
        None,
        TimeLimits::default(),
    )
    .await;
    assert!(matches!(got, Err(cls_control::StoreError::NotFound { .. })));
    w.emulator.shutdown().await;
}

/// A PostgreSQL role that may not create tables: Test Connection fails with the SQL to run;
/// once an admin runs it and grants reading and writing, it passes and lifts the pause an
/// unreachable database left (a sync needs nothing more: the destination's own tests write
/// through such grants); without one grant it fails again.
#[tokio::test]
async fn postgres_tables_made_by_hand_pass_without_create() {
    let db = TestDb::new().await;
    let role = format!("cls_role_{}", db.name.trim_start_matches("cls_test_"));
    let mut admin = admin_connection().await;
    must(
        admin
            .execute(format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'check_role_pw'").as_str())
            .await,
    );
    let (db_url, role_name) = (db.url.clone(), role.clone());
    let outcome = tokio::spawn(async move {
        let role = role_name;
        let w = World::new().await;
        let mut role_url = must(url::Url::parse(&db_url));
        let _ = role_url.set_username(&role);
        let _ = role_url.set_password(Some("check_role_pw"));
        let c = w
            .configuration(must(DatabaseUrl::parse(role_url.as_str())), FULL_KEY)
            .await;
        let s = w.schedules(&c, 1).await;
        must(
            w.store
                .pause_schedule(
                    s[0].id,
                    "the database postgres://… is unreachable: check that it is running and reachable, then Test Connection to resume",
                )
                .await,
        );
        let test = |w: &World| {
            let store = w.store.clone();
            async move { must(test_configuration(store.as_ref(), c.id, None, TimeLimits::default()).await) }
        };

        let before = test(&w).await;
        assert!(before.stripe_passed() && !before.database_passed(), "{before:?}");
        let Ok(checked) = &before.database else {
            panic!("{before:?}")
        };
        assert!(!checked.info.can_create && !checked.info.tables_ready);
        let Some(sql) = checked.create_tables_sql.clone() else {
            panic!("no SQL to run by hand: {checked:?}")
        };
        assert!(before.resumed.is_empty());

        // An admin runs the SQL offered and grants reading and writing.
        let mut owner = must(sqlx::PgConnection::connect(&db_url).await);
        must(owner.execute(sqlx::raw_sql(&sql)).await);
        must(
            owner
                .execute(
                    format!(
                        "GRANT USAGE ON SCHEMA stripe TO \"{role}\"; \
                         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA stripe TO \"{role}\""
                    )
                    .as_str(),
                )
                .await,
        );
        let after = test(&w).await;
        assert!(after.passed(), "{after:?}");
        let Ok(checked) = &after.database else {
            panic!("{after:?}")
        };
        assert!(!checked.info.can_create && checked.info.tables_ready, "{checked:?}");
        assert_eq!(checked.create_tables_sql, None);
        assert!(checked.message().contains("already exists"), "{}", checked.message());
        assert_eq!(after.resumed, vec![s[0].id]);

        // One table the role may not write: not ready.
        let charges = cls_catalog::find("charges").map(|t| t.table()).unwrap_or_default();
        must(
            owner
                .execute(format!("REVOKE INSERT ON stripe.\"{charges}\" FROM \"{role}\"").as_str())
                .await,
        );
        let revoked = test(&w).await;
        assert!(!revoked.database_passed(), "{revoked:?}");
        let _ = owner.close().await;
        w.emulator.shutdown().await;
    })
    .await;
    // Clean up whatever happened: the database first (it holds the grants), then the role.
    db.drop_now().await;
    let _ = admin
        .execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
        .await;
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
