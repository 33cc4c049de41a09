//! End-to-end tests of the parallel, resumable backfill: windows split under the rate budget
//! and still copy every object exactly once; a run killed with SIGKILL at random points and
//! started again ends exactly as an uninterrupted run, re-fetching little.

mod common;

use std::process::Stdio;
use std::time::Duration;

use cls_catalog::CATALOG;
use cls_emulator::EmulatorConfig;
use cls_testkit::emulator::spawn_emulator_with;
use common::{assert_live_rows_equal_export, export, is_deleted, requests_total, Db};
use rand::{Rng, SeedableRng};
use serde_json::Value;

const KEY: &str = "rk_test_cls_emulator";

fn config(seed: u64, customers: usize, latency_ms: u64) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(seed, customers);
    c.latency_ms = latency_ms;
    c
}

fn command(args: &[&str], db_url: &str, api_base: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"));
    cmd.args(args)
        .env("STRIPE_API_KEY", KEY)
        .env("DATABASE_URL", db_url)
        .env("CLS_STRIPE_API_BASE", api_base)
        .stdin(Stdio::null());
    cmd
}

/// Asserts every table equals the emulator's live objects of its type.
async fn assert_db_equals_export(db: &Db, base_url: &str) {
    let want = export(base_url).await;
    for t in CATALOG {
        assert_live_rows_equal_export(t, db.table(t.name).await.as_ref(), &want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_split_under_the_budget_and_copy_every_object_once() {
    let emulator = spawn_emulator_with(config(21, 120, 15)).await;
    let db = Db::pg().await;
    let out = command(
        &[
            "sync",
            "--json",
            "--types",
            "invoices,invoice_line_items,charges,balance_transactions,events",
            "--global-rps",
            "400",
            "--endpoint-rps",
            "100",
        ],
        &db.url(),
        &emulator.base_url,
    )
    .output()
    .await
    .expect("cls runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let windows: u64 = report["types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| t["windows"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert!(
        windows >= 2,
        "some list was walked by several windows: {report}"
    );

    let want = export(&emulator.base_url).await;
    for name in [
        "invoices",
        "invoice_line_items",
        "charges",
        "balance_transactions",
        "events",
    ] {
        let t = cls_catalog::find(name).expect("catalog");
        let rows = db.table(name).await.expect("table exists");
        let expected = want
            .get(t.object)
            .map(|m| m.values().filter(|o| !is_deleted(o)).count())
            .unwrap_or(0);
        assert_eq!(rows.len(), expected, "{name}: every object exactly once");
        let listed: u64 = report["types"]
            .as_array()
            .expect("types")
            .iter()
            .find(|r| r["data_type"] == name)
            .and_then(|r| r["objects"].as_u64())
            .expect("reported");
        assert_eq!(listed as usize, expected, "{name}: no object fetched twice");
    }
    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_at_random_points_resumes_to_the_same_result() {
    // Two emulators with the same seed hold the same account: one measures an uninterrupted
    // run's requests, the other is synced through kills.
    let clean_emulator = spawn_emulator_with(config(33, 150, 10)).await;
    let clean_db = Db::pg().await;
    let clean = command(&["sync"], &clean_db.url(), &clean_emulator.base_url)
        .output()
        .await
        .expect("cls runs");
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let clean_requests = requests_total(&clean_emulator.base_url).await;
    clean_db.finish().await;
    clean_emulator.shutdown().await;

    let emulator = spawn_emulator_with(config(33, 150, 10)).await;
    let db = Db::pg().await;
    let url = db.url();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0u64;
    let mut finished = false;
    for _ in 0..12 {
        let mut child = command(&["sync"], &url, &emulator.base_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cls starts");
        let after = Duration::from_millis(rng.gen_range(300..2500));
        match tokio::time::timeout(after, child.wait()).await {
            Ok(status) => {
                assert!(
                    status.expect("exit status").success(),
                    "a resumed run failed"
                );
                finished = true;
                break;
            }
            Err(_) => {
                // Not finished in time: kill it where it stands (SIGKILL).
                child.kill().await.expect("SIGKILL");
                kills += 1;
            }
        }
    }
    if !finished {
        let last = command(&["sync"], &url, &emulator.base_url)
            .output()
            .await
            .expect("cls runs");
        assert!(
            last.status.success(),
            "{}",
            String::from_utf8_lossy(&last.stderr)
        );
    }
    assert!(kills >= 1, "the test must kill at least one run");
    assert_db_equals_export(&db, &emulator.base_url).await;

    // Each killed attempt may re-fetch only what it had in flight: one page per walk (at most
    // one walk per stream here, 20 streams, as the rate budget leaves no room for splits at
    // the start), the child lists being fetched (8 at a time, for one stream's parents), and
    // the account request every attempt starts with: 20 + 8 + 1 = 29.
    let total = requests_total(&emulator.base_url).await;
    let refetched = total.saturating_sub(clean_requests);
    println!("clean run: {clean_requests} requests; {kills} kills; {refetched} extra requests");
    assert!(
        refetched <= kills * 29,
        "{refetched} extra requests after {kills} kills (clean run: {clean_requests})"
    );
    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_cursor_object_is_gone_walks_the_window_again() {
    let emulator = spawn_emulator_with(config(5, 30, 0)).await;
    let db = Db::pg().await;
    let dest = db.dest().await;
    let customers = cls_catalog::find("customers").expect("catalog");
    dest.prepare(&[customers]).await.expect("prepare");
    // What an interrupted run leaves behind, with a cursor naming a customer deleted since.
    let end = chrono::Utc::now().timestamp() + 1;
    let account: Value = reqwest::Client::new()
        .get(format!("{}/v1/account", emulator.base_url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("account answers")
        .json()
        .await
        .expect("JSON");
    let account_id = account["id"].as_str().expect("account id");
    let run =
        serde_json::json!({"version": 1, "end": end, "cursor": null, "streams": ["customers"]});
    dest.set_state(account_id, "full_sync_in_progress", &run.to_string())
        .await
        .expect("state");
    let gone = cls_destination::Checkpoint {
        data_type: "customers".into(),
        window: format!("0..{end}"),
        cursor: Some("cus_deletedsincethen".into()),
        done: false,
    };
    dest.replace_checkpoint(account_id, "customers", "", &[gone])
        .await
        .expect("checkpoint");

    let out = command(
        &["sync", "--types", "customers", "--mode", "full"],
        &db.url(),
        &emulator.base_url,
    )
    .output()
    .await
    .expect("cls runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = export(&emulator.base_url).await;
    assert_live_rows_equal_export(customers, db.table("customers").await.as_ref(), &want);
    db.finish().await;
    emulator.shutdown().await;
}
