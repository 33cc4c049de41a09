//! Stripe Connect through the binary: `cls sync --connected-accounts` copies the platform and
//! each connected account (every account's rows equal its own export), and `cls check` lists the
//! connected accounts the key reaches.

mod common;

use cls_catalog::CATALOG;
use cls_emulator::EmulatorConfig;
use cls_testkit::emulator::spawn_emulator_with;
use common::{cls, text, Db};
use serde_json::Value;

const KEY: &str = "sk_test_cls_emulator";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_connected_accounts_copies_each_account_and_check_lists_them() {
    let mut config = EmulatorConfig::new(41, 20);
    config.connected_accounts = 2;
    let emulator = spawn_emulator_with(config).await;
    let db = Db::lite();
    let url = db.url();
    let env = [
        ("STRIPE_API_KEY", KEY),
        ("DATABASE_URL", url.as_str()),
        ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
    ];

    let check = cls(&["check", "--json"], &env).await;
    assert!(check.status.success(), "{}", text(&check));
    let report: Value = serde_json::from_slice(&check.stdout).expect("--json prints JSON");
    let listed: Vec<String> = report["stripe"]["connected"]["accounts"]
        .as_array()
        .expect("connected accounts listed")
        .iter()
        .filter_map(|a| a["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed.len(), 2, "{report}");
    let human = cls(&["check"], &env).await;
    let out = String::from_utf8_lossy(&human.stdout);
    assert!(out.contains("2 connected account(s) reachable"), "{out}");
    for id in &listed {
        assert!(out.contains(id.as_str()), "{out}");
    }

    let sync = cls(&["sync", "--connected-accounts", "--json"], &env).await;
    assert!(sync.status.success(), "{}", text(&sync));
    let report: Value = serde_json::from_slice(&sync.stdout).expect("--json prints JSON");
    assert_eq!(report["status"], "succeeded", "{report}");
    let accounts: Vec<String> = report["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["account_id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(accounts.len(), 3);
    assert_eq!(&accounts[1..], &listed[..]);
    // What the run says it drew from the read allocation for connected accounts is what the
    // emulator saw sent with `Stripe-Account` (the check above made some too).
    let drawn = report["connected_account_requests"].as_u64().unwrap_or(0);
    let stats: Value = reqwest::get(format!("{}/_emulator/stats", emulator.base_url))
        .await
        .expect("stats")
        .json()
        .await
        .expect("JSON stats");
    let seen = stats["connected_account_requests_total"]
        .as_u64()
        .unwrap_or(0);
    assert!(drawn > 0, "{report}");
    assert!(drawn <= seen, "{drawn} reported, {seen} seen");

    // Every account's live customers are exactly its export's.
    let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
    for account in &accounts {
        let export: Value = reqwest::get(format!(
            "{}/_emulator/export?account={account}",
            emulator.base_url
        ))
        .await
        .expect("export")
        .json()
        .await
        .expect("json");
        for t in CATALOG
            .iter()
            .filter(|t| t.name == "customers" || t.name == "invoices")
        {
            let mut want: Vec<String> = export[t.object]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|o| o.get("deleted").is_none())
                        .filter_map(|o| o["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut got: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT id FROM \"{}\" WHERE account_id = ? AND NOT deleted",
                t.name
            ))
            .bind(account)
            .fetch_all(&pool)
            .await
            .expect("rows");
            want.sort();
            got.sort();
            assert!(!want.is_empty());
            assert_eq!(got, want, "{account} {}", t.name);
        }
    }
    pool.close().await;
    db.finish().await;
    emulator.shutdown().await;
}
