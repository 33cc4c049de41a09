//! Stripe Connect in the control plane: the `include_connected_accounts` option (migration
//! `20261126000004_connect.sql`) on both state backends, and a run of a configuration with it
//! on copying the platform and each connected account into the project's database. PostgreSQL
//! being unreachable fails the PostgreSQL half, never skips it.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use cls_control::runner::{ManualClock, Runner, RunnerConfig};
use cls_control::{
    ConfigurationId, Entity, MasterKey, NewConfiguration, NewProject, PageRequest, PostgresStore,
    RunStatus, SqliteStore, StateUrl, Store, StoreError, SyncMode,
};
use cls_destination::DatabaseUrl;
use cls_emulator::EmulatorConfig;
use cls_stripe::ApiKey;
use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator_with;

fn must<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// A state store of each kind; the PostgreSQL database is dropped by the caller.
async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = must(StateUrl::parse(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    )));
    Arc::new(must(SqliteStore::open(&url, MasterKey::generate()).await))
}

async fn postgres_store(db: &TestDb) -> Arc<dyn Store> {
    let url = must(StateUrl::parse(&db.url));
    Arc::new(must(PostgresStore::open(&url, MasterKey::generate()).await))
}

async fn configuration(
    store: &dyn Store,
    database_url: &str,
    api_base: Option<&str>,
) -> cls_control::Configuration {
    let project = must(
        store
            .create_project(NewProject {
                name: "warehouse".into(),
                database_url: must(DatabaseUrl::parse(database_url)),
                schema: None,
            })
            .await,
    );
    must(
        store
            .create_configuration(NewConfiguration {
                name: "platform".into(),
                project_id: project.id,
                key: must(ApiKey::parse("sk_test_cls_emulator")),
                data_types: must(cls_catalog::parse_list("customers,invoices")),
                stripe_api_base: api_base.map(|b| must(url::Url::parse(b))),
                webhook_secret: None,
            })
            .await,
    )
}

/// The option is off by default, can be switched on and off, is read back by every way of
/// reading a configuration, and a missing configuration is a not-found error.
async fn the_option_round_trips(store: &dyn Store, dest_url: &str) {
    let c = configuration(store, dest_url, None).await;
    assert!(!c.include_connected_accounts, "off by default");
    let on = must(store.set_include_connected_accounts(c.id, true).await);
    assert!(on.include_connected_accounts);
    assert!(on.updated_at >= c.updated_at);
    assert!(must(store.configuration(c.id).await).include_connected_accounts);
    let listed = must(
        store
            .list_configurations(None, PageRequest::default())
            .await,
    );
    assert!(listed
        .items
        .iter()
        .any(|x| x.id == c.id && x.include_connected_accounts));
    // Other changes leave it alone.
    let renamed = must(
        store
            .update_configuration(
                c.id,
                cls_control::ConfigurationPatch {
                    name: Some("renamed".into()),
                    ..Default::default()
                },
            )
            .await,
    );
    assert!(renamed.include_connected_accounts);
    let off = must(store.set_include_connected_accounts(c.id, false).await);
    assert!(!off.include_connected_accounts);
    match store
        .set_include_connected_accounts(ConfigurationId(987_654), true)
        .await
    {
        Err(StoreError::NotFound { entity, .. }) => assert_eq!(entity, Entity::Configuration),
        other => panic!("expected not found, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_state_keeps_the_connected_accounts_option() {
    let dir = must(tempfile::tempdir());
    let store = sqlite_store(&dir).await;
    let dest = format!("sqlite://{}", dir.path().join("dest.db").display());
    the_option_round_trips(store.as_ref(), &dest).await;
}

#[tokio::test]
async fn postgres_state_keeps_the_connected_accounts_option() {
    let db = TestDb::new().await;
    let store = postgres_store(&db).await;
    let dir = must(tempfile::tempdir());
    let dest = format!("sqlite://{}", dir.path().join("dest.db").display());
    the_option_round_trips(store.as_ref(), &dest).await;
    drop(store);
    db.drop_now().await;
}

/// A state database from before the migration: configurations made then read as "off" once
/// `20261126000004_connect.sql` is applied (the column is dropped and the migration's record
/// removed to stand for the older database; reopening applies it again).
async fn an_older_state_database_gets_the_option_off(url: &StateUrl, key: MasterKey) {
    let store = must(cls_control::open(url, key.clone()).await);
    let dir = must(tempfile::tempdir());
    let dest = format!("sqlite://{}", dir.path().join("dest.db").display());
    let c = configuration(store.as_ref(), &dest, None).await;
    must(store.set_include_connected_accounts(c.id, true).await);
    drop(store);
    let undo = [
        "ALTER TABLE configurations DROP COLUMN include_connected_accounts",
        "DELETE FROM _sqlx_migrations WHERE version = 20261126000004",
    ];
    if url.kind() == cls_destination::DatabaseKind::Sqlite {
        let pool = must(sqlx::SqlitePool::connect(url.expose()).await);
        for sql in undo {
            must(sqlx::query(sql).execute(&pool).await);
        }
        pool.close().await;
    } else {
        let pool = must(sqlx::PgPool::connect(url.expose()).await);
        for sql in undo {
            let sql = sql
                .replace("configurations", "cls_control.configurations")
                .replace("_sqlx_migrations", "cls_control._sqlx_migrations");
            must(sqlx::query(&sql).execute(&pool).await);
        }
        pool.close().await;
    }
    let store = must(cls_control::open(url, key).await);
    let again = must(store.configuration(c.id).await);
    assert!(
        !again.include_connected_accounts,
        "off for what existed before"
    );
    assert_eq!(again.name, c.name, "the configuration itself is untouched");
    assert!(
        must(store.set_include_connected_accounts(c.id, true).await).include_connected_accounts
    );
}

#[tokio::test]
async fn sqlite_state_migrates_older_configurations_to_off() {
    let dir = must(tempfile::tempdir());
    let url = must(StateUrl::parse(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    )));
    an_older_state_database_gets_the_option_off(&url, MasterKey::generate()).await;
}

#[tokio::test]
async fn postgres_state_migrates_older_configurations_to_off() {
    let db = TestDb::new().await;
    let url = must(StateUrl::parse(&db.url));
    an_older_state_database_gets_the_option_off(&url, MasterKey::generate()).await;
    db.drop_now().await;
}

/// A run of a configuration with the option on copies the platform and each of its two
/// connected accounts (rows keyed by account), and is recorded as one succeeded run whose
/// counts are the accounts' summed; with the option off, only the platform's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_connected_accounts_copies_every_account() {
    let mut emu_config = EmulatorConfig::new(31, 20);
    emu_config.connected_accounts = 2;
    let emulator = spawn_emulator_with(emu_config).await;
    let dir = must(tempfile::tempdir());
    let store = sqlite_store(&dir).await;
    let dest_file = dir.path().join("dest.db");
    let dest_url = format!("sqlite://{}", dest_file.display());
    let c = configuration(store.as_ref(), &dest_url, Some(&emulator.base_url)).await;
    must(store.set_include_connected_accounts(c.id, true).await);
    let runner = Runner::with_config(
        store.clone(),
        Arc::new(ManualClock::new(Utc::now())),
        RunnerConfig::default(),
    );
    must(runner.sync_now(c.id, SyncMode::Full).await);
    let executed = must(runner.run_next().await).unwrap_or_else(|| panic!("no run executed"));
    assert_eq!(
        executed.run.status,
        RunStatus::Succeeded,
        "{:?}",
        executed.run.errors
    );

    // Live customers per account, from the emulator.
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    let mut stores = vec![&emulator.state.store];
    stores.extend(emulator.state.connected.iter().map(|a| &a.store));
    for s in stores {
        let s = s.read().unwrap_or_else(|p| p.into_inner());
        for r in s.table("customer").into_iter().flat_map(|t| t.iter()) {
            if !r.deleted {
                want.insert((s.account_id.clone(), r.id.to_string()));
            }
        }
    }
    let accounts: BTreeSet<&String> = want.iter().map(|(a, _)| a).collect();
    assert_eq!(accounts.len(), 3, "the platform and two connected accounts");

    let pool = must(sqlx::SqlitePool::connect(&dest_url).await);
    let got: Vec<(String, String)> = must(
        sqlx::query_as("SELECT account_id, id FROM customers WHERE NOT deleted")
            .fetch_all(&pool)
            .await,
    );
    pool.close().await;
    let got: BTreeSet<(String, String)> = got.into_iter().collect();
    assert_eq!(got, want);
    let stats = executed
        .run
        .stats
        .get("customers")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        stats.objects,
        want.len() as u64,
        "counts summed over the accounts"
    );
    emulator.shutdown().await;
}
