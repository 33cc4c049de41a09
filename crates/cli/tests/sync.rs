//! End-to-end tests of `cls sync` and `cls check`: the real binary against the in-process Stripe
//! emulator and the real PostgreSQL (a fresh database per test) or a SQLite file.
//!
//! The reference for "exactly as Stripe holds it" is the emulator's `/_emulator/export`: every
//! live object of a chosen type must be in its table with `data` equal to the API's object, and
//! nothing else may be there.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cls_catalog::CATALOG;
use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator;
use common::{assert_live_rows_equal_export, cls, export, text, Db, Table};
use serde_json::Value;

const FULL_KEY: &str = "rk_test_cls_emulator";
const LIMITED_KEY: &str = "rk_test_cls_limited";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_into_postgres_equals_the_export_and_a_rerun_changes_nothing() {
    let emulator = spawn_emulator(7, 40).await;
    let db = Db::pg().await;
    let url = db.url();
    let env = [
        ("STRIPE_API_KEY", FULL_KEY),
        ("DATABASE_URL", url.as_str()),
        ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
    ];
    let out = cls(&["sync"], &env).await;
    assert!(out.status.success(), "sync failed:\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("succeeded"));

    let want = export(&emulator.base_url).await;
    let mut first = BTreeMap::new();
    for t in CATALOG {
        let table = db.table(t.name).await;
        assert_live_rows_equal_export(t, table.as_ref(), &want);
        first.insert(t.name, table);
    }
    assert!(
        want.get("customer").is_some_and(|c| c.len() > 10),
        "the account has customers to copy"
    );

    let again = cls(&["sync", "--json"], &env).await;
    assert!(
        again.status.success(),
        "second sync failed:\n{}",
        text(&again)
    );
    let report: Value = serde_json::from_slice(&again.stdout).expect("--json prints JSON");
    assert_eq!(report["status"], "succeeded");
    for t in CATALOG {
        let table = db.table(t.name).await;
        let (a, b) = (first[t.name].as_ref(), table.as_ref());
        let data = |x: Option<&Table>| {
            x.map(|m| {
                m.iter()
                    .map(|(k, (d, del))| (k.clone(), d.clone(), *del))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            data(a),
            data(b),
            "{}: a second run changed the rows",
            t.name
        );
    }
    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_into_sqlite_equals_the_export() {
    let emulator = spawn_emulator(11, 25).await;
    let db = Db::lite();
    let url = db.url();
    let out = cls(
        &[
            "sync",
            "--database-url",
            &url,
            "--api-base",
            &emulator.base_url,
        ],
        &[("STRIPE_API_KEY", FULL_KEY)],
    )
    .await;
    assert!(out.status.success(), "sync failed:\n{}", text(&out));
    let want = export(&emulator.base_url).await;
    for t in CATALOG {
        let table = db.table(t.name).await;
        assert_live_rows_equal_export(t, table.as_ref(), &want);
    }
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lacking_permissions_syncs_the_rest_and_exits_partial() {
    let emulator = spawn_emulator(3, 15).await;
    let db = Db::pg().await;
    let url = db.url();
    let out = cls(
        &[
            "sync",
            "--types",
            "customers,charges,invoices,invoice_line_items,products",
            "--json",
        ],
        &[
            ("STRIPE_API_KEY", LIMITED_KEY),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "partial exit status:\n{}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["status"], "partial");
    let by_type: BTreeMap<String, Value> = report["types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| {
            (
                t["data_type"].as_str().unwrap_or_default().to_string(),
                t.clone(),
            )
        })
        .collect();
    assert_eq!(by_type["charges"]["status"], "failed");
    assert_eq!(by_type["charges"]["missing_permission"], "rak_charge_read");
    assert_eq!(
        by_type["invoices"]["missing_permission"],
        "rak_invoice_read"
    );
    assert_eq!(by_type["invoice_line_items"]["status"], "failed");
    let error = by_type["charges"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("rak_charge_read"),
        "error names the permission: {error}"
    );
    assert_eq!(by_type["customers"]["status"], "succeeded");
    assert_eq!(by_type["products"]["status"], "succeeded");

    let want = export(&emulator.base_url).await;
    for name in ["customers", "products"] {
        let t = cls_catalog::find(name).expect("in catalog");
        let table = db.table(name).await;
        assert_live_rows_equal_export(t, table.as_ref(), &want);
    }
    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_key_is_refused_clearly_and_writes_nothing() {
    let emulator = spawn_emulator(5, 5).await;
    let db = TestDb::new().await;
    let env_base = [
        ("DATABASE_URL", db.url.as_str()),
        ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
    ];
    // Well-formed but unknown to Stripe: 401.
    let mut env = env_base.to_vec();
    env.push(("STRIPE_API_KEY", "rk_test_notarealkey1234"));
    let out = cls(&["sync"], &env).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("API key"),
        "says the key is the problem: {err}"
    );
    assert!(
        !err.contains("rk_test_notarealkey1234"),
        "never echoes the key: {err}"
    );

    // Publishable key: refused before any request.
    let mut env = env_base.to_vec();
    env.push(("STRIPE_API_KEY", "pk_test_abcdefghijklmnop"));
    let out = cls(&["sync"], &env).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rk_"), "says what to paste instead: {err}");

    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let schemas: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.schemata where schema_name = 'stripe'",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(schemas, 0, "nothing was created");
    pool.close().await;
    db.drop_now().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_named_with_the_fix_and_no_password() {
    let emulator = spawn_emulator(5, 5).await;
    let out = cls(
        &["sync", "--types", "customers"],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            (
                "DATABASE_URL",
                "postgres://someone:s3cretpass@127.0.0.1:1/nowhere",
            ),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        !all.contains("s3cretpass"),
        "never prints the password:\n{all}"
    );
    assert!(
        all.to_lowercase().contains("reach") || all.to_lowercase().contains("connect"),
        "says the database cannot be reached:\n{all}"
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_mode_kind_account_and_missing_permissions() {
    let emulator = spawn_emulator(9, 5).await;
    let db = TestDb::new().await;
    let out = cls(
        &[
            "check",
            "--json",
            "--types",
            "customers,charges,invoices,payment_methods",
        ],
        &[
            ("STRIPE_API_KEY", LIMITED_KEY),
            ("DATABASE_URL", db.url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missing permission fails the check:\n{}",
        text(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let s = &r["stripe"];
    assert_eq!(s["mode"], "test");
    assert_eq!(s["key_kind"], "restricted");
    assert!(s["account_id"]
        .as_str()
        .is_some_and(|a| a.starts_with("acct_")));
    assert!(!text(&out).contains(LIMITED_KEY), "never echoes the key");
    let types = s["types"].as_array().expect("types");
    let find = |n: &str| {
        types
            .iter()
            .find(|t| t["data_type"] == n)
            .cloned()
            .expect("reported")
    };
    assert_eq!(find("customers")["readable"], true);
    assert_eq!(find("payment_methods")["readable"], true);
    assert_eq!(find("charges")["readable"], false);
    assert_eq!(find("charges")["missing_permission"], "rak_charge_read");
    assert_eq!(find("invoices")["missing_permission"], "rak_invoice_read");
    let d = &r["database"];
    assert_eq!(d["can_create"], true);
    assert!(d["server_version"].as_str().is_some_and(|v| !v.is_empty()));

    let ok = cls(
        &["check"],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("DATABASE_URL", db.url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    assert!(ok.status.success(), "a full key passes:\n{}", text(&ok));
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("rk_test_…"),
        "shows the key masked"
    );
    db.drop_now().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_happens() {
    let out = cls(
        &[
            "sync",
            "--types",
            "customers,custmers",
            "--database-url",
            "sqlite://x.db",
        ],
        &[("STRIPE_API_KEY", FULL_KEY)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("custmers"));
    let out = cls(
        &["sync", "--database-url", "mysql://root@localhost/x"],
        &[("STRIPE_API_KEY", FULL_KEY)],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postgres://"),
        "{}",
        text(&out)
    );
    assert!(!Path::new("x.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_user_without_privileges_gets_the_grant_to_run() {
    use sqlx::Executor;
    let emulator = spawn_emulator(5, 5).await;
    let db = TestDb::new().await;
    let role = format!("cls_cli_role_{}", db.name.trim_start_matches("cls_test_"));
    let mut admin = cls_testkit::db::admin_connection().await;
    admin
        .execute(format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'cli_role_pw_9'").as_str())
        .await
        .expect("create role");
    // PostgreSQL 15 gives PUBLIC no CREATE on databases: the role can connect but not create
    // the schema.
    let mut url = url::Url::parse(&db.url).expect("test url");
    url.set_username(&role).expect("user");
    url.set_password(Some("cli_role_pw_9")).expect("password");
    let out = cls(
        &["sync", "--types", "customers"],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    db.drop_now().await;
    admin
        .execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
        .await
        .expect("drop role");
    emulator.shutdown().await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("GRANT CREATE ON DATABASE"),
        "names the fix:\n{all}"
    );
    assert!(
        !all.contains("cli_role_pw_9"),
        "never prints the password:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_are_absorbed_and_counted() {
    // The client is told Stripe allows far more than the emulator does, so 429s must come.
    let mut config = cls_emulator::EmulatorConfig::new(17, 30);
    config.rate_limits = true;
    let emulator = cls_testkit::emulator::spawn_emulator_with(config).await;
    let db = Db::pg().await;
    let url = db.url();
    let out = cls(
        &[
            "sync",
            "--json",
            "--types",
            "customers,payment_methods,invoices,invoice_line_items",
            "--global-rps",
            "400",
            "--endpoint-rps",
            "200",
        ],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "429s are retried, the run succeeds:\n{}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!(report["status"], "succeeded");
    let limited: u64 = report["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t["rate_limited"].as_u64())
        .sum();
    assert!(
        limited > 0,
        "the emulator answered 429 and the summary counts it: {report}"
    );
    let want = export(&emulator.base_url).await;
    for name in [
        "customers",
        "payment_methods",
        "invoices",
        "invoice_line_items",
    ] {
        let t = cls_catalog::find(name).expect("in catalog");
        let table = db.table(name).await;
        assert_live_rows_equal_export(t, table.as_ref(), &want);
    }
    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_and_live_data_of_one_account_are_kept_apart() {
    let test = spawn_emulator(23, 5).await;
    let mut live_config = cls_emulator::EmulatorConfig::new(23, 5);
    live_config.mode = cls_emulator::Mode::Live;
    let live = cls_testkit::emulator::spawn_emulator_with(live_config).await;
    let db = Db::pg().await;
    let url = db.url();
    let first = cls(
        &["sync", "--types", "customers", "--json"],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", test.base_url.as_str()),
        ],
    )
    .await;
    assert!(first.status.success(), "{}", text(&first));
    let second = cls(
        &["sync", "--types", "customers", "--json"],
        &[
            ("STRIPE_API_KEY", "rk_live_cls_emulator"),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", live.base_url.as_str()),
        ],
    )
    .await;
    let a: Value = serde_json::from_slice(&first.stdout).expect("JSON");
    let account = a["account_id"].as_str().expect("account");
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("test-mode data") && err.contains("--schema"),
        "{err}"
    );
    assert!(err.contains(account), "names the account: {err}");
    db.finish().await;
    test.shutdown().await;
    live.shutdown().await;
}
