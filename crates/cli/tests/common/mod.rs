//! What the end-to-end tests of `cls` share: running the binary, a destination database of
//! either kind, and the emulator's view of the account (`/_emulator/export`, `/_emulator/stats`)
//! that every "exactly as Stripe holds it" comparison is made against.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use cls_catalog::DataType;
use cls_testkit::db::TestDb;
use serde_json::Value;
use sqlx::Row;

/// Runs the `cls` binary with the given arguments and environment (and none inherited that
/// would change what it does).
pub async fn cls(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"));
    cmd.args(args)
        .env_remove("STRIPE_API_KEY")
        .env_remove("DATABASE_URL")
        .env_remove("CLS_STRIPE_API_BASE")
        .env_remove("CLS_SYNC_MODE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("the cls binary runs")
}

/// Both output streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Rows of one table: id → (data, deleted).
pub type Table = BTreeMap<String, (Value, bool)>;

/// A destination database for one test: a fresh PostgreSQL database or a SQLite file.
pub enum Db {
    /// PostgreSQL, dropped by [`Db::finish`].
    Pg(TestDb),
    /// A SQLite file in a temporary folder, removed when dropped.
    Lite(tempfile::TempDir),
}

impl Db {
    /// A fresh PostgreSQL database.
    pub async fn pg() -> Db {
        Db::Pg(TestDb::new().await)
    }

    /// A new SQLite file.
    pub fn lite() -> Db {
        Db::Lite(tempfile::tempdir().expect("a temporary folder"))
    }

    fn sqlite_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("cls.db")
    }

    /// The URL `cls` is given.
    pub fn url(&self) -> String {
        match self {
            Db::Pg(db) => db.url.clone(),
            Db::Lite(dir) => format!("sqlite://{}", Self::sqlite_path(dir).display()),
        }
    }

    /// Every row of one table (schema `stripe` in PostgreSQL), or `None` when the table does
    /// not exist.
    pub async fn table(&self, table: &str) -> Option<Table> {
        let rows: Vec<(String, String, bool)> = match self {
            Db::Pg(db) => {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
                let sql = format!("select id, data::text as data, deleted from stripe.\"{table}\"");
                let rows = sqlx::query(&sql).fetch_all(&pool).await.ok();
                pool.close().await;
                rows?
                    .into_iter()
                    .map(|r| (r.get("id"), r.get("data"), r.get("deleted")))
                    .collect()
            }
            Db::Lite(_) => {
                let pool = sqlx::SqlitePool::connect(&self.url()).await.expect("open");
                let sql = format!("select id, data, deleted from \"{table}\"");
                let rows = sqlx::query(&sql).fetch_all(&pool).await.ok();
                pool.close().await;
                rows?
                    .into_iter()
                    .map(|r| (r.get("id"), r.get("data"), r.get("deleted")))
                    .collect()
            }
        };
        Some(
            rows.into_iter()
                .map(|(id, data, deleted)| {
                    let data = serde_json::from_str(&data).expect("data is JSON");
                    (id, (data, deleted))
                })
                .collect(),
        )
    }

    /// The same database through the library's destination.
    pub async fn dest(&self) -> Box<dyn cls_destination::Destination> {
        let url = cls_destination::DatabaseUrl::parse(&self.url()).expect("valid url");
        cls_destination::connect(&url, "stripe")
            .await
            .expect("connect")
    }

    /// Drops the PostgreSQL database, or removes the SQLite file's folder.
    pub async fn finish(self) {
        match self {
            Db::Pg(db) => db.drop_now().await,
            Db::Lite(dir) => drop(dir),
        }
    }
}

/// The emulator's export: object type → id → object (deleted objects as their stubs).
pub async fn export(base_url: &str) -> BTreeMap<String, BTreeMap<String, Value>> {
    let all: BTreeMap<String, Vec<Value>> = reqwest::get(format!("{base_url}/_emulator/export"))
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

/// Whether an exported object is a deleted stub.
pub fn is_deleted(o: &Value) -> bool {
    o.get("deleted").and_then(Value::as_bool) == Some(true)
}

/// Asserts that a table's live rows are exactly the export's live objects of its data type,
/// each with `data` equal to the API's object.
pub fn assert_live_rows_equal_export(
    t: &DataType,
    table: Option<&Table>,
    export: &BTreeMap<String, BTreeMap<String, Value>>,
) {
    let table = table.unwrap_or_else(|| panic!("table {} is missing", t.name));
    let expected: BTreeMap<&String, &Value> = export
        .get(t.object)
        .into_iter()
        .flatten()
        .filter(|(_, o)| !is_deleted(o))
        .collect();
    let got: BTreeMap<&String, &Value> = table
        .iter()
        .filter(|(_, (_, deleted))| !deleted)
        .map(|(id, (data, _))| (id, data))
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !got.contains_key(*id))
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: {} missing (e.g. {:?}), {} extra (e.g. {:?})",
        t.name,
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (id, want) in expected {
        assert_eq!(
            got[id], want,
            "{}: row {id} differs from the API's object",
            t.name
        );
    }
}

/// Requests the emulator has served so far.
pub async fn requests_total(base_url: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{base_url}/_emulator/stats"))
        .await
        .expect("stats answer")
        .json()
        .await
        .expect("stats are JSON");
    stats["requests_total"].as_u64().expect("requests_total")
}
