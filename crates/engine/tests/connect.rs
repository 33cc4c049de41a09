//! Stripe Connect end to end: a platform with connected accounts (the emulator's), synced into
//! PostgreSQL with `run_sync_with_connected`; each account's rows equal that account's own
//! `/_emulator/export?account=…` exactly, a second (incremental) run keeps them so, and Test
//! Connection lists the connected accounts. PostgreSQL being down fails these tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use cls_catalog::CATALOG;
use cls_destination::{DatabaseUrl, Destination};
use cls_emulator::{EmulatorConfig, RunningEmulator};
use cls_engine::{
    check_stripe, run_sync_with_connected, ProgressFn, RequestedMode, RunStatus, SyncMode,
    SyncOptions,
};
use cls_stripe::{ApiKey, ClientConfig, StripeClient};
use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator_with;
use serde_json::Value;

const KEY: &str = "sk_test_cls_emulator";

async fn platform(connected: usize) -> RunningEmulator {
    let mut config = EmulatorConfig::new(23, 30);
    config.connected_accounts = connected;
    spawn_emulator_with(config).await
}

fn client(emu: &RunningEmulator) -> StripeClient {
    let key = ApiKey::parse(KEY).expect("the emulator's key parses");
    let config = ClientConfig {
        api_base: emu.base_url.parse().expect("emulator URL"),
        ..ClientConfig::default()
    };
    StripeClient::new(key, config).expect("client")
}

/// The export of one account: object type → id → object.
async fn export(emu: &RunningEmulator, account: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let all: BTreeMap<String, Vec<Value>> = reqwest::get(format!(
        "{}/_emulator/export?account={account}",
        emu.base_url
    ))
    .await
    .expect("export answers")
    .json()
    .await
    .expect("export is JSON");
    all.into_iter()
        .map(|(object, items)| {
            let by_id = items
                .into_iter()
                .filter_map(|o| Some((o.get("id")?.as_str()?.to_string(), o)))
                .collect();
            (object, by_id)
        })
        .collect()
}

/// Asserts that the live rows of every catalog table for `account` are exactly the account's
/// exported live objects, each stored exactly as the API serves it.
async fn assert_account_equals_export(
    dest: &dyn Destination,
    emu: &RunningEmulator,
    account: &str,
) -> usize {
    let want = export(emu, account).await;
    let mut copied = 0;
    for t in CATALOG {
        let expected: BTreeMap<&String, &Value> = want
            .get(t.object)
            .into_iter()
            .flatten()
            .filter(|(_, o)| o.get("deleted").and_then(Value::as_bool) != Some(true))
            .collect();
        let rows = dest.rows(t, account).await.expect("rows");
        let got: BTreeMap<&String, &Value> = rows
            .iter()
            .filter(|r| !r.deleted)
            .map(|r| (&r.id, &r.object))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{account} {}: the ids differ from the account's export",
            t.name
        );
        for (id, object) in &expected {
            assert_eq!(got[id], *object, "{account} {}: {id} differs", t.name);
        }
        copied += got.len();
    }
    copied
}

fn quiet() -> ProgressFn {
    Arc::new(|_| {})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_and_its_connected_accounts_sync_into_postgres_each_equal_to_its_export() {
    let emu = platform(3).await;
    let db = TestDb::new().await;
    let url = DatabaseUrl::parse(&db.url).expect("url");
    let dest: Arc<dyn Destination> = Arc::from(
        cls_destination::connect(&url, "stripe")
            .await
            .expect("PostgreSQL must be reachable for this test"),
    );
    let client = client(&emu);
    let options = SyncOptions {
        types: CATALOG.iter().collect(),
        now: None,
        sequential: false,
    };

    let report = run_sync_with_connected(
        &client,
        dest.clone(),
        &options,
        RequestedMode::Full,
        quiet(),
    )
    .await
    .expect("the run completes");
    assert_eq!(report.status(), RunStatus::Succeeded, "{report:#?}");
    assert_eq!(
        report.accounts.len(),
        4,
        "the platform and three connected accounts"
    );
    let ids: Vec<String> = report
        .accounts
        .iter()
        .map(|r| r.account_id.clone())
        .collect();
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{ids:?}");

    let mut sizes = Vec::new();
    for id in &ids {
        sizes.push(assert_account_equals_export(dest.as_ref(), &emu, id).await);
    }
    assert!(sizes.iter().all(|n| *n > 0), "{sizes:?}");
    assert!(
        sizes[1..].iter().all(|n| *n < sizes[0]),
        "connected accounts are smaller than the platform: {sizes:?}"
    );
    let aggregate = report.aggregate();
    assert_eq!(aggregate.account_id, ids[0]);
    assert_eq!(
        aggregate.objects(),
        report.accounts.iter().map(|r| r.objects()).sum::<u64>()
    );

    // Each account keeps its own events cursor: the second run follows every account's feed.
    let again = run_sync_with_connected(
        &client,
        dest.clone(),
        &options,
        RequestedMode::Auto,
        quiet(),
    )
    .await
    .expect("the second run completes");
    assert_eq!(again.status(), RunStatus::Succeeded, "{again:#?}");
    for r in &again.accounts {
        assert_eq!(
            r.mode,
            SyncMode::Incremental,
            "{}: {:?}",
            r.account_id,
            r.notes
        );
        assert!(
            dest.get_state(&r.account_id, cls_engine::EVENTS_CURSOR_KEY)
                .await
                .expect("state")
                .is_some(),
            "{} has its own cursor",
            r.account_id
        );
    }
    for id in &ids {
        assert_account_equals_export(dest.as_ref(), &emu, id).await;
    }

    // Test Connection lists the accounts the key reaches.
    let check = check_stripe(
        &client,
        &[cls_catalog::find("customers").expect("customers")],
    )
    .await
    .expect("check");
    assert_eq!(check.account_id, ids[0]);
    let listed: Vec<&str> = check
        .connected
        .accounts
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    let mut want: Vec<&str> = ids[1..].iter().map(String::as_str).collect();
    let mut got = listed.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(check.connected.error.is_none());
    assert!(check.connected.accounts.iter().all(|a| a
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("Connected Shop"))));

    drop(dest);
    db.drop_now().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connection_of_a_platform_without_connected_accounts_lists_none() {
    let emu = platform(0).await;
    let check = check_stripe(&client(&emu), &[]).await.expect("check");
    assert!(check.connected.accounts.is_empty());
    assert!(check.connected.error.is_none());
    emu.shutdown().await;
}
