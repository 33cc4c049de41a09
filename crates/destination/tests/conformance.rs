//! Conformance suite: every scenario runs against PostgreSQL and SQLite through the same
//! [`Destination`] trait, so both backends promise the same things.
//!
//! PostgreSQL scenarios each get a fresh database from `cls_testkit::db::TestDb` (dropped at
//! the end); PostgreSQL being unreachable fails the test. SQLite scenarios get a fresh file in
//! a temp directory.

use std::collections::HashMap;

use cls_catalog::DataType;
use cls_destination::{
    connect, prepare_rows, Batch, Checkpoint, CheckpointOp, DatabaseKind, DatabaseUrl, Destination,
    Row, StoredRow, WriteSet, WriteStats,
};
use cls_testkit::db::{sqlite_url, temp_dir, TestDb};
use serde_json::{json, Value};

fn customers() -> &'static DataType {
    cls_catalog::find("customers").expect("customers in catalog")
}

fn invoices() -> &'static DataType {
    cls_catalog::find("invoices").expect("invoices in catalog")
}

const ACCT: &str = "acct_test_1";

/// Direct SQL access to the same database, to look behind the trait.
enum Raw {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

impl Raw {
    async fn exec(&self, sql: &str) {
        let res = match self {
            Raw::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Raw::Lite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        };
        if let Err(e) = res {
            panic!("raw SQL failed: {e}\n{sql}");
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        let res = match self {
            Raw::Pg(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
            Raw::Lite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        };
        res.unwrap_or_else(|e| panic!("raw count failed: {e}\n{sql}"))
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        let res = match self {
            Raw::Pg(p) => sqlx::query_scalar::<_, String>(sql).fetch_all(p).await,
            Raw::Lite(p) => sqlx::query_scalar::<_, String>(sql).fetch_all(p).await,
        };
        res.unwrap_or_else(|e| panic!("raw query failed: {e}\n{sql}"))
    }

    /// Every column (with type, nullability, default) and index of the destination's schema.
    async fn describe(&self, schema: &str) -> Vec<String> {
        match self {
            Raw::Pg(_) => {
                let s = schema.replace('\'', "''");
                let mut out = self
                    .strings(&format!(
                        "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || \
                         is_nullable || ' ' || coalesce(column_default, '') \
                         FROM information_schema.columns WHERE table_schema = '{s}' \
                         ORDER BY table_name, ordinal_position"
                    ))
                    .await;
                out.extend(
                    self.strings(&format!(
                        "SELECT indexname || ' ' || indexdef FROM pg_indexes \
                         WHERE schemaname = '{s}' ORDER BY indexname"
                    ))
                    .await,
                );
                out
            }
            Raw::Lite(_) => {
                let mut out = self
                    .strings(
                        "SELECT m.name || '.' || p.name || ' ' || p.type || ' ' || p.\"notnull\" \
                         || ' ' || coalesce(p.dflt_value, '') FROM sqlite_master m \
                         JOIN pragma_table_info(m.name) p WHERE m.type = 'table' \
                         ORDER BY m.name, p.cid",
                    )
                    .await;
                out.extend(
                    self.strings(
                        "SELECT name || ' ' || coalesce(sql, '') FROM sqlite_master \
                         WHERE type = 'index' ORDER BY name",
                    )
                    .await,
                );
                out
            }
        }
    }
}

/// One backend under test: the destination, raw access, and what to clean up.
struct Env {
    kind: DatabaseKind,
    dest: Box<dyn Destination>,
    raw: Raw,
    url: String,
    schema: String,
    pg: Option<TestDb>,
}

impl Env {
    async fn new(kind: DatabaseKind, schema: &str) -> Env {
        match kind {
            DatabaseKind::Postgres => {
                let db = TestDb::new().await;
                let url = DatabaseUrl::parse(&db.url).expect("test url");
                let dest = connect(&url, schema).await.expect("connect to postgres");
                let raw = Raw::Pg(sqlx::PgPool::connect(&db.url).await.expect("raw pg pool"));
                Env {
                    kind,
                    dest,
                    raw,
                    url: db.url.clone(),
                    schema: schema.to_string(),
                    pg: Some(db),
                }
            }
            DatabaseKind::Sqlite => {
                let raw_url = sqlite_url(&temp_dir("cls_dest_test"));
                let url = DatabaseUrl::parse(&raw_url).expect("sqlite url");
                let dest = connect(&url, schema).await.expect("connect to sqlite");
                let raw = Raw::Lite(
                    sqlx::SqlitePool::connect(&raw_url)
                        .await
                        .expect("raw sqlite pool"),
                );
                Env {
                    kind,
                    dest,
                    raw,
                    url: raw_url,
                    schema: "main".to_string(),
                    pg: None,
                }
            }
        }
    }

    /// Another fresh database of the same kind.
    async fn sibling(&self) -> Env {
        let schema = if self.kind == DatabaseKind::Postgres {
            self.schema.clone()
        } else {
            "stripe".to_string()
        };
        Env::new(self.kind, &schema).await
    }

    async fn finish(self) {
        let Env { dest, raw, pg, .. } = self;
        drop(dest);
        match raw {
            Raw::Pg(p) => p.close().await,
            Raw::Lite(p) => p.close().await,
        }
        if let Some(db) = pg {
            db.drop_now().await;
        }
    }

    /// `"schema"."table"` for raw SQL (just the table for SQLite).
    fn table(&self, table: &str) -> String {
        match self.kind {
            DatabaseKind::Postgres => format!(
                "{}.{}",
                cls_destination::ident::quote(&self.schema),
                cls_destination::ident::quote(table)
            ),
            DatabaseKind::Sqlite => cls_destination::ident::quote(table),
        }
    }

    async fn write(
        &self,
        data_type: &'static DataType,
        rows: Vec<Row>,
        cp: Option<Checkpoint>,
    ) -> WriteStats {
        self.dest
            .write(Batch {
                data_type,
                account_id: ACCT,
                rows,
                checkpoint: cp,
            })
            .await
            .unwrap_or_else(|e| panic!("write failed: {e}"))
    }

    async fn rows(&self, data_type: &'static DataType) -> Vec<StoredRow> {
        self.dest.rows(data_type, ACCT).await.expect("rows")
    }
}

fn customer(id: &str, version: i64, name: &str) -> Row {
    Row {
        id: id.to_string(),
        object: json!({
            "id": id,
            "object": "customer",
            "email": format!("{id}@example.com"),
            "name": name,
            "balance": 100,
            "delinquent": true,
            "created": 1_700_000_000,
            "livemode": false,
            "metadata": {"k": "v"},
            "invoice_settings": {"default_payment_method": "pm_1"},
        }),
        version,
        deleted: false,
    }
}

fn objects(rows: &[StoredRow]) -> HashMap<String, Value> {
    rows.iter()
        .map(|r| (r.id.clone(), r.object.clone()))
        .collect()
}

// ---------------------------------------------------------------- scenarios

async fn prepare_creates_tables_and_is_idempotent(env: &Env) {
    let types = [customers(), invoices()];
    env.dest.prepare(&types).await.expect("prepare");
    let first = env.raw.describe(&env.schema).await;
    assert!(
        first.iter().any(|c| c.starts_with("customers.email ")),
        "{first:#?}"
    );
    assert!(
        first.iter().any(|c| c.starts_with("invoices.data ")),
        "{first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|c| c.starts_with("_cls_checkpoints.window ")),
        "{first:#?}"
    );
    assert!(
        first.iter().any(|c| c.starts_with("_cls_state.value ")),
        "{first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|c| c.starts_with("customers_created_idx ")),
        "{first:#?}"
    );
    env.dest.prepare(&types).await.expect("prepare again");
    assert_eq!(
        env.raw.describe(&env.schema).await,
        first,
        "prepare is idempotent"
    );
    let info = env.dest.check().await.expect("check");
    assert_eq!(info.kind, env.kind);
    assert!(!info.server_version.is_empty());
    assert!(info.can_create);
    assert_eq!(info.schema, env.schema);
    assert_eq!(env.dest.schema(), env.schema);
}

async fn create_tables_sql_matches_prepare(env: &Env) {
    let types = [
        customers(),
        invoices(),
        cls_catalog::find("invoice_line_items").expect("lines"),
    ];
    env.dest.prepare(&types).await.expect("prepare");
    let by_prepare = env.raw.describe(&env.schema).await;
    let other = env.sibling().await;
    let sql = other.dest.create_tables_sql(&types);
    assert_eq!(sql, env.dest.create_tables_sql(&types));
    other.raw.exec(&sql).await;
    let by_hand = other.raw.describe(&other.schema).await;
    assert_eq!(by_hand, by_prepare, "hand-run DDL equals what prepare made");
    other
        .dest
        .prepare(&types)
        .await
        .expect("prepare over hand-made tables");
    assert_eq!(other.raw.describe(&other.schema).await, by_prepare);
    other.finish().await;
}

async fn write_inserts_and_counts_and_fills_typed_columns(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let rows = vec![
        customer("cus_a", 10, "Ann"),
        customer("cus_b", 10, "Bob"),
        customer("cus_c", 10, "Cid"),
    ];
    let stats = env.write(customers(), rows.clone(), None).await;
    assert_eq!(
        stats,
        WriteStats {
            inserted: 3,
            updated: 0,
            skipped: 0
        }
    );
    let stored = env.rows(customers()).await;
    assert_eq!(stored.len(), 3);
    for (s, r) in stored.iter().zip(&rows) {
        assert_eq!(s.id, r.id);
        assert_eq!(s.object, r.object);
        assert_eq!(s.version, 10);
        assert!(!s.deleted);
        assert!(s.deleted_at.is_none());
    }
    let t = env.table("customers");
    let n = env
        .raw
        .count(&format!(
            "SELECT count(*) FROM {t} WHERE email = 'cus_a@example.com' AND name = 'Ann' \
             AND balance = 100 AND delinquent = true AND livemode = false \
             AND created = '2023-11-14T22:13:20Z' AND metadata ->> 'k' = 'v' \
             AND default_payment_method = 'pm_1' AND phone IS NULL \
             AND account_id = '{ACCT}' AND deleted = false AND version = 10 \
             AND synced_at IS NOT NULL AND deleted_at IS NULL"
        ))
        .await;
    assert_eq!(n, 1, "typed columns hold the extracted values");
    // An empty batch is a no-op.
    assert_eq!(
        env.write(customers(), vec![], None).await,
        WriteStats::default()
    );
}

async fn rewriting_counts_skipped_then_updated(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let rows = vec![customer("cus_a", 10, "Ann"), customer("cus_b", 10, "Bob")];
    env.write(customers(), rows.clone(), None).await;
    let before = env.rows(customers()).await;
    let stats = env.write(customers(), rows, None).await;
    assert_eq!(
        stats,
        WriteStats {
            inserted: 0,
            updated: 0,
            skipped: 2
        }
    );
    assert_eq!(
        env.rows(customers()).await,
        before,
        "equal version changes nothing"
    );

    let newer = vec![
        customer("cus_a", 11, "Ann 2"),
        customer("cus_b", 9, "Bob old"),
    ];
    let stats = env.write(customers(), newer, None).await;
    assert_eq!(
        stats,
        WriteStats {
            inserted: 0,
            updated: 1,
            skipped: 1
        }
    );
    let after = objects(&env.rows(customers()).await);
    assert_eq!(after["cus_a"]["name"], "Ann 2");
    assert_eq!(after["cus_b"]["name"], "Bob");

    // The same id twice in one batch: the highest version wins, the other is skipped.
    let dup = vec![
        customer("cus_d", 5, "D5"),
        customer("cus_d", 7, "D7"),
        customer("cus_d", 6, "D6"),
    ];
    let stats = env.write(customers(), dup, None).await;
    assert_eq!(
        stats,
        WriteStats {
            inserted: 1,
            updated: 0,
            skipped: 2
        }
    );
    let after = objects(&env.rows(customers()).await);
    assert_eq!(after["cus_d"]["name"], "D7");
}

/// Any order of versioned writes, split into any batches, ends with each id holding the
/// object of its highest version, and every write's counts match a simple model.
async fn older_never_overwrites_newer(env: &Env) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    env.dest.prepare(&[customers()]).await.expect("prepare");
    // (id, version) pairs, versions unique per id so "the newest" is well defined, in any
    // order, cut into batches of 1 to 3.
    let strategy =
        proptest::collection::btree_set((0u8..3, 0i64..40), 1..12).prop_flat_map(|set| {
            let v: Vec<(u8, i64)> = set.into_iter().collect();
            let n = v.len();
            (
                Just(v).prop_shuffle(),
                proptest::collection::vec(1usize..4, n),
            )
        });
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(writes, sizes)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            handle.block_on(async {
                let id = |i: u8| format!("cus_p{n}_{i}");
                let mut model: HashMap<String, i64> = HashMap::new();
                let mut rest = &writes[..];
                let mut sizes = sizes.iter().cycle();
                while !rest.is_empty() {
                    let take = (*sizes.next().unwrap_or(&1)).min(rest.len());
                    let (chunk, tail) = rest.split_at(take);
                    rest = tail;
                    let rows: Vec<Row> = chunk
                        .iter()
                        .map(|&(i, v)| customer(&id(i), v, &format!("v{v}")))
                        .collect();
                    // Model: dedupe within the batch, then compare with what is stored.
                    let mut expected = WriteStats::default();
                    let mut batch_best: HashMap<String, i64> = HashMap::new();
                    for r in &rows {
                        let e = batch_best.entry(r.id.clone()).or_insert(r.version);
                        *e = (*e).max(r.version);
                    }
                    for (k, v) in &batch_best {
                        match model.get(k) {
                            None => expected.inserted += 1,
                            Some(old) if old < v => expected.updated += 1,
                            Some(_) => {}
                        }
                        let m = model.entry(k.clone()).or_insert(*v);
                        *m = (*m).max(*v);
                    }
                    expected.skipped = rows.len() as u64 - expected.inserted - expected.updated;
                    let got = env.write(customers(), rows, None).await;
                    prop_assert_eq!(got, expected);
                }
                let stored = objects(&env.rows(customers()).await);
                for (k, v) in &model {
                    prop_assert_eq!(&stored[k]["name"], &json!(format!("v{v}")));
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("ordering property failed: {e}");
    }
}

async fn checkpoint_commits_and_rolls_back_with_rows(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let cp = |cursor: Option<&str>, done: bool| Checkpoint {
        data_type: "customers".into(),
        window: "1600000000..1600864000".into(),
        cursor: cursor.map(String::from),
        done,
    };
    env.write(
        customers(),
        vec![customer("cus_a", 1, "A")],
        Some(cp(Some("cus_a"), false)),
    )
    .await;
    assert_eq!(
        env.dest.checkpoints(ACCT, "customers").await.expect("cps"),
        vec![cp(Some("cus_a"), false)]
    );
    // A checkpoint alone (an empty last page) is saved too.
    env.write(customers(), vec![], Some(cp(None, true))).await;
    let other = Checkpoint {
        window: "1500000000..1600000000".into(),
        ..cp(Some("cus_z"), false)
    };
    env.write(customers(), vec![], Some(other.clone())).await;
    assert_eq!(
        env.dest.checkpoints(ACCT, "customers").await.expect("cps"),
        vec![other, cp(None, true)],
        "sorted by window"
    );
    assert!(env
        .dest
        .checkpoints("acct_other", "customers")
        .await
        .expect("cps")
        .is_empty());

    // A failure while saving the checkpoint rolls the rows back too.
    env.raw
        .exec(&format!("DROP TABLE {}", env.table("_cls_checkpoints")))
        .await;
    let err = env
        .dest
        .write(Batch {
            data_type: customers(),
            account_id: ACCT,
            rows: vec![customer("cus_new", 1, "N"), customer("cus_a", 2, "A2")],
            checkpoint: Some(cp(Some("cus_new"), false)),
        })
        .await
        .expect_err("checkpoint table is gone");
    assert!(err.to_string().contains("_cls_checkpoints"), "{err}");
    env.dest
        .prepare(&[customers()])
        .await
        .expect("prepare recreates");
    let stored = objects(&env.rows(customers()).await);
    assert_eq!(stored.len(), 1, "cus_new was rolled back");
    assert_eq!(stored["cus_a"]["name"], "A", "the update was rolled back");
    assert!(env
        .dest
        .checkpoints(ACCT, "customers")
        .await
        .expect("cps")
        .is_empty());

    env.write(customers(), vec![], Some(cp(None, true))).await;
    env.dest
        .clear_checkpoints(ACCT, "customers")
        .await
        .expect("clear");
    assert!(env
        .dest
        .checkpoints(ACCT, "customers")
        .await
        .expect("cps")
        .is_empty());
}

async fn replace_checkpoint_splits_a_window_atomically(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let window = |w: &str, cursor: Option<&str>| Checkpoint {
        data_type: "customers".into(),
        window: w.into(),
        cursor: cursor.map(str::to_string),
        done: false,
    };
    env.write(customers(), vec![], Some(window("0..100", Some("cus_9"))))
        .await;
    env.dest
        .replace_checkpoint(
            ACCT,
            "customers",
            "0..100",
            &[window("50..100", Some("cus_9")), window("0..50", None)],
        )
        .await
        .expect("split");
    let got = env.dest.checkpoints(ACCT, "customers").await.expect("cps");
    assert_eq!(
        got,
        vec![window("0..50", None), window("50..100", Some("cus_9"))]
    );
    // Retiring a window that is not there only adds the replacements.
    env.dest
        .replace_checkpoint(ACCT, "customers", "7..8", &[window("100..200", None)])
        .await
        .expect("replace");
    assert_eq!(
        env.dest
            .checkpoints(ACCT, "customers")
            .await
            .expect("cps")
            .len(),
        3
    );
    // Other accounts and data types are untouched.
    assert!(env
        .dest
        .checkpoints("acct_other", "customers")
        .await
        .expect("cps")
        .is_empty());
}

fn invoice(id: &str, version: i64, customer: &str) -> Row {
    Row {
        id: id.to_string(),
        object: json!({
            "id": id,
            "object": "invoice",
            "customer": customer,
            "amount_due": 1200,
            "created": 1_700_000_000,
        }),
        version,
        deleted: false,
    }
}

fn window_cp(data_type: &str, window: &str, cursor: Option<&str>, done: bool) -> Checkpoint {
    Checkpoint {
        data_type: data_type.into(),
        window: window.into(),
        cursor: cursor.map(String::from),
        done,
    }
}

fn stats(inserted: u64, updated: u64, skipped: u64) -> WriteStats {
    WriteStats {
        inserted,
        updated,
        skipped,
    }
}

async fn write_set_counts_each_table_and_applies_checkpoints_in_order(env: &Env) {
    env.dest
        .prepare(&[customers(), invoices()])
        .await
        .expect("prepare");
    env.write(customers(), vec![customer("cus_old", 5, "Old")], None)
        .await;
    env.write(
        customers(),
        vec![],
        Some(window_cp("customers", "0..100", Some("cus_0"), false)),
    )
    .await;

    let got = env
        .dest
        .write_set(&WriteSet {
            insert_only: false,
            account_id: ACCT,
            tables: vec![
                (
                    customers(),
                    prepare_rows(
                        customers(),
                        vec![
                            customer("cus_a", 1, "A"),
                            customer("cus_b", 1, "B"),
                            // Older than stored: left alone.
                            customer("cus_old", 4, "Older"),
                        ],
                    ),
                ),
                (
                    invoices(),
                    prepare_rows(invoices(), vec![invoice("in_1", 1, "cus_a")]),
                ),
                // The same data type again: appended to the first entry, de-duplicated with
                // it (the higher version wins, the other counts as skipped).
                (
                    customers(),
                    prepare_rows(
                        customers(),
                        vec![customer("cus_a", 2, "A2"), customer("cus_old", 6, "Newer")],
                    ),
                ),
            ],
            checkpoints: vec![
                CheckpointOp::Save(window_cp("customers", "0..100", Some("cus_a"), false)),
                // The later save of one window wins.
                CheckpointOp::Save(window_cp("customers", "0..100", Some("cus_b"), false)),
                CheckpointOp::Save(window_cp("invoices", "0..100", Some("in_1"), false)),
                // A split after the saves retires the saved window...
                CheckpointOp::Replace {
                    data_type: "customers".into(),
                    retired: "0..100".into(),
                    replacements: vec![
                        window_cp("customers", "0..50", None, false),
                        window_cp("customers", "50..100", Some("cus_b"), false),
                    ],
                },
                // ...and a save after the split updates one of its parts.
                CheckpointOp::Save(window_cp("customers", "0..50", None, true)),
            ],
        })
        .await
        .expect("write set");
    assert_eq!(
        got,
        vec![("customers", stats(2, 1, 2)), ("invoices", stats(1, 0, 0))],
        "one entry per data type, in the set's order"
    );
    let stored = objects(&env.rows(customers()).await);
    assert_eq!(stored.len(), 3);
    assert_eq!(stored["cus_a"]["name"], "A2");
    assert_eq!(stored["cus_old"]["name"], "Newer");
    assert_eq!(
        objects(&env.rows(invoices()).await)["in_1"]["customer"],
        "cus_a"
    );
    assert_eq!(
        env.dest.checkpoints(ACCT, "customers").await.expect("cps"),
        vec![
            window_cp("customers", "0..50", None, true),
            window_cp("customers", "50..100", Some("cus_b"), false),
        ]
    );
    assert_eq!(
        env.dest.checkpoints(ACCT, "invoices").await.expect("cps"),
        vec![window_cp("invoices", "0..100", Some("in_1"), false)]
    );

    // Nothing to do: no transaction, zero counts.
    let empty = env
        .dest
        .write_set(&WriteSet {
            insert_only: false,
            account_id: ACCT,
            tables: vec![(invoices(), prepare_rows(invoices(), vec![]))],
            checkpoints: vec![],
        })
        .await
        .expect("empty set");
    assert_eq!(empty, vec![("invoices", WriteStats::default())]);
    // Checkpoint operations alone.
    let only_cps = env
        .dest
        .write_set(&WriteSet {
            insert_only: false,
            account_id: ACCT,
            tables: vec![],
            checkpoints: vec![CheckpointOp::Replace {
                data_type: "invoices".into(),
                retired: "0..100".into(),
                replacements: vec![],
            }],
        })
        .await
        .expect("checkpoints only");
    assert!(only_cps.is_empty());
    assert!(env
        .dest
        .checkpoints(ACCT, "invoices")
        .await
        .expect("cps")
        .is_empty());
}

async fn write_set_is_one_transaction(env: &Env) {
    env.dest
        .prepare(&[customers(), invoices()])
        .await
        .expect("prepare");
    env.write(customers(), vec![customer("cus_a", 1, "A")], None)
        .await;
    env.write(invoices(), vec![invoice("in_1", 1, "cus_a")], None)
        .await;

    // The rows of both tables are written first; the checkpoint table being gone fails the
    // set at its checkpoint operations, which must roll every table back.
    env.raw
        .exec(&format!("DROP TABLE {}", env.table("_cls_checkpoints")))
        .await;
    let err = env
        .dest
        .write_set(&WriteSet {
            insert_only: false,
            account_id: ACCT,
            tables: vec![
                (
                    customers(),
                    prepare_rows(
                        customers(),
                        vec![customer("cus_new", 1, "N"), customer("cus_a", 2, "A2")],
                    ),
                ),
                (
                    invoices(),
                    prepare_rows(
                        invoices(),
                        vec![invoice("in_new", 1, "cus_new"), invoice("in_1", 2, "cus_b")],
                    ),
                ),
            ],
            checkpoints: vec![
                CheckpointOp::Save(window_cp("customers", "0..100", Some("cus_new"), false)),
                CheckpointOp::Replace {
                    data_type: "invoices".into(),
                    retired: "0..100".into(),
                    replacements: vec![window_cp("invoices", "0..50", None, false)],
                },
            ],
        })
        .await
        .expect_err("checkpoint table is gone");
    assert!(err.to_string().contains("_cls_checkpoints"), "{err}");
    env.dest
        .prepare(&[customers(), invoices()])
        .await
        .expect("prepare recreates");
    let customers_now = objects(&env.rows(customers()).await);
    assert_eq!(customers_now.len(), 1, "cus_new was rolled back");
    assert_eq!(
        customers_now["cus_a"]["name"], "A",
        "the update was rolled back"
    );
    let invoices_now = objects(&env.rows(invoices()).await);
    assert_eq!(invoices_now.len(), 1, "in_new was rolled back");
    assert_eq!(invoices_now["in_1"]["customer"], "cus_a");

    // A set whose second table fails rolls back the first table's rows and the checkpoints.
    env.raw
        .exec(&format!("DROP TABLE {}", env.table("invoices")))
        .await;
    let err = env
        .dest
        .write_set(&WriteSet {
            insert_only: false,
            account_id: ACCT,
            tables: vec![
                (
                    customers(),
                    prepare_rows(customers(), vec![customer("cus_new", 1, "N")]),
                ),
                (
                    invoices(),
                    prepare_rows(invoices(), vec![invoice("in_new", 1, "cus_new")]),
                ),
            ],
            checkpoints: vec![CheckpointOp::Save(window_cp(
                "customers",
                "0..100",
                Some("cus_new"),
                false,
            ))],
        })
        .await
        .expect_err("invoices is gone");
    assert!(err.to_string().contains("invoices"), "{err}");
    assert_eq!(objects(&env.rows(customers()).await).len(), 1);
    assert!(env
        .dest
        .checkpoints(ACCT, "customers")
        .await
        .expect("cps")
        .is_empty());

    // Afterwards the same connection pool writes sets normally (no staging table left over).
    env.dest
        .prepare(&[customers(), invoices()])
        .await
        .expect("prepare recreates");
    for round in 0..3 {
        let got = env
            .dest
            .write_set(&WriteSet {
                insert_only: false,
                account_id: ACCT,
                tables: vec![
                    (
                        customers(),
                        prepare_rows(
                            customers(),
                            vec![customer(&format!("cus_r{round}"), 1, "R")],
                        ),
                    ),
                    (
                        invoices(),
                        prepare_rows(
                            invoices(),
                            vec![invoice(&format!("in_r{round}"), 1, "cus_a")],
                        ),
                    ),
                ],
                checkpoints: vec![],
            })
            .await
            .expect("write set");
        assert_eq!(
            got,
            vec![("customers", stats(1, 0, 0)), ("invoices", stats(1, 0, 0))]
        );
    }
}

async fn mark_unseen_deleted_flags_rows_a_walk_did_not_see(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    env.write(
        customers(),
        vec![
            customer("cus_old", 5, "Old"),
            customer("cus_seen", 20, "Seen"),
        ],
        None,
    )
    .await;
    let marked = env
        .dest
        .mark_unseen_deleted(customers(), ACCT, 10, 30)
        .await
        .expect("mark");
    assert_eq!(marked, 1);
    assert_eq!(
        env.dest.live_ids(customers(), ACCT).await.expect("ids"),
        vec!["cus_seen".to_string()]
    );
    let rows = env.rows(customers()).await;
    let old = rows
        .iter()
        .find(|r| r.id == "cus_old")
        .expect("kept as a row");
    assert!(old.deleted && old.deleted_at.is_some());
    assert_eq!(old.version, 30);
    // Other accounts are untouched, and a second pass finds nothing more.
    assert_eq!(
        env.dest
            .mark_unseen_deleted(customers(), "acct_other", 100, 100)
            .await
            .expect("mark"),
        0
    );
    assert_eq!(
        env.dest
            .mark_unseen_deleted(customers(), ACCT, 10, 31)
            .await
            .expect("mark"),
        0
    );
}

async fn insert_only_sets_copy_new_rows_and_fall_back_when_one_exists(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    assert!(!env.dest.has_rows(customers()).await.expect("has_rows"));
    let got = env
        .dest
        .write_set(&WriteSet {
            insert_only: true,
            account_id: ACCT,
            tables: vec![(
                customers(),
                prepare_rows(
                    customers(),
                    vec![customer("cus_a", 5, "A"), customer("cus_b", 5, "B")],
                ),
            )],
            checkpoints: vec![CheckpointOp::Save(Checkpoint {
                data_type: "customers".into(),
                window: "0..10".into(),
                cursor: Some("cus_b".into()),
                done: false,
            })],
        })
        .await
        .expect("insert-only set");
    assert_eq!(got[0].1.inserted, 2);
    assert!(env.dest.has_rows(customers()).await.expect("has_rows"));
    let rows = env.rows(customers()).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].object["name"], "A");
    assert!(!rows[0].deleted && rows[0].version == 5);
    assert_eq!(
        env.dest
            .checkpoints(ACCT, "customers")
            .await
            .expect("cps")
            .len(),
        1,
        "the checkpoint commits with the rows"
    );
    // A row that exists after all: the set is written again with upserts, nothing is lost
    // and the version guard still holds.
    let got = env
        .dest
        .write_set(&WriteSet {
            insert_only: true,
            account_id: ACCT,
            tables: vec![(
                customers(),
                prepare_rows(
                    customers(),
                    vec![
                        customer("cus_a", 6, "A2"),
                        customer("cus_c", 6, "C"),
                        customer("cus_b", 1, "old"),
                    ],
                ),
            )],
            checkpoints: vec![],
        })
        .await
        .expect("falls back");
    assert_eq!(
        (got[0].1.inserted, got[0].1.updated, got[0].1.skipped),
        (1, 1, 1)
    );
    let rows = objects(&env.rows(customers()).await);
    assert_eq!(rows["cus_a"]["name"], "A2");
    assert_eq!(rows["cus_b"]["name"], "B");
    assert_eq!(rows["cus_c"]["name"], "C");
}

async fn mark_deleted_and_live_ids(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let ids = ["cus_a", "cus_b", "cus_c", "cus_d"];
    env.write(
        customers(),
        ids.iter().map(|i| customer(i, 10, i)).collect(),
        None,
    )
    .await;
    let live = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        env.dest.live_ids(customers(), ACCT).await.expect("live"),
        live(&ids)
    );

    let gone = live(&["cus_a", "cus_b", "cus_missing"]);
    assert_eq!(
        env.dest
            .mark_deleted(customers(), ACCT, &gone, 5)
            .await
            .expect("md"),
        0,
        "older deletion ignored"
    );
    assert_eq!(
        env.dest
            .mark_deleted(customers(), "acct_other", &gone, 50)
            .await
            .expect("md"),
        0,
        "other account"
    );
    assert_eq!(
        env.dest
            .mark_deleted(customers(), ACCT, &gone, 10)
            .await
            .expect("md"),
        2
    );
    assert_eq!(
        env.dest
            .mark_deleted(customers(), ACCT, &gone, 12)
            .await
            .expect("md"),
        0,
        "already deleted"
    );
    assert_eq!(
        env.dest
            .mark_deleted(customers(), ACCT, &[], 12)
            .await
            .expect("md"),
        0
    );
    assert_eq!(
        env.dest.live_ids(customers(), ACCT).await.expect("live"),
        live(&["cus_c", "cus_d"])
    );
    assert!(env
        .dest
        .live_ids(customers(), "acct_other")
        .await
        .expect("live")
        .is_empty());

    let rows = env.rows(customers()).await;
    let a = rows.iter().find(|r| r.id == "cus_a").expect("cus_a kept");
    assert!(a.deleted && a.deleted_at.is_some() && a.version == 10);

    // An older snapshot does not resurrect it; a newer one does.
    let stats = env
        .write(customers(), vec![customer("cus_a", 9, "old")], None)
        .await;
    assert_eq!(stats.skipped, 1);
    let stats = env
        .write(customers(), vec![customer("cus_a", 20, "back")], None)
        .await;
    assert_eq!(stats.updated, 1);
    let rows = env.rows(customers()).await;
    let a = rows.iter().find(|r| r.id == "cus_a").expect("cus_a");
    assert!(!a.deleted && a.deleted_at.is_none());

    // A deleted snapshot (a `customer.deleted` event) sets the flag and its time.
    let mut del = customer("cus_c", 30, "c");
    del.deleted = true;
    env.write(customers(), vec![del], None).await;
    assert_eq!(
        env.dest.live_ids(customers(), ACCT).await.expect("live"),
        live(&["cus_a", "cus_d"])
    );
    let rows = env.rows(customers()).await;
    let c = rows.iter().find(|r| r.id == "cus_c").expect("cus_c");
    assert!(c.deleted && c.deleted_at.is_some());
}

async fn state_get_and_set(env: &Env) {
    env.dest.prepare(&[]).await.expect("prepare");
    assert_eq!(
        env.dest
            .get_state(ACCT, "events_cursor")
            .await
            .expect("get"),
        None
    );
    env.dest
        .set_state(ACCT, "events_cursor", "evt_1")
        .await
        .expect("set");
    env.dest
        .set_state(ACCT, "events_cursor", "evt_2 'quoted' ✓")
        .await
        .expect("set");
    env.dest
        .set_state("acct_other", "events_cursor", "evt_9")
        .await
        .expect("set");
    assert_eq!(
        env.dest
            .get_state(ACCT, "events_cursor")
            .await
            .expect("get")
            .as_deref(),
        Some("evt_2 'quoted' ✓")
    );
    assert_eq!(
        env.dest
            .get_state("acct_other", "events_cursor")
            .await
            .expect("get")
            .as_deref(),
        Some("evt_9")
    );
    assert_eq!(env.dest.get_state(ACCT, "other").await.expect("get"), None);
}

async fn add_column_keeps_data_and_never_retypes(env: &Env) {
    // An older layout: no `phone` column, and `balance` made as text by someone.
    let ddl = env.dest.create_tables_sql(&[customers()]);
    let old: String = ddl
        .lines()
        .filter(|l| !l.contains("\"phone\""))
        .map(|l| {
            if l.contains("\"balance\"") {
                "    \"balance\" text,".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    env.raw.exec(&old).await;
    let t = env.table("customers");
    env.raw
        .exec(&format!(
            "INSERT INTO {t} (id, data, account_id, synced_at, version) VALUES \
             ('cus_old', '{{\"id\": \"cus_old\"}}', '{ACCT}', '2024-01-01T00:00:00Z', 1)"
        ))
        .await;
    let before = env.raw.describe(&env.schema).await;
    assert!(!before.iter().any(|c| c.starts_with("customers.phone ")));
    env.dest
        .prepare(&[customers()])
        .await
        .expect("prepare evolves");
    let after = env.raw.describe(&env.schema).await;
    assert!(
        after.iter().any(|c| c.starts_with("customers.phone ")),
        "{after:#?}"
    );
    let balance_type = |d: &[String]| {
        d.iter()
            .find(|c| c.starts_with("customers.balance "))
            .cloned()
            .expect("balance")
    };
    assert_eq!(balance_type(&after), balance_type(&before), "never retyped");
    for line in &before {
        if line.starts_with("customers.") {
            assert!(after.contains(line), "column changed: {line}");
        }
    }
    let rows = env.rows(customers()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].object, json!({"id": "cus_old"}));
    let mut c = customer("cus_old", 2, "Old");
    c.object["phone"] = json!("+1 555");
    assert_eq!(env.write(customers(), vec![c], None).await.updated, 1);
    assert_eq!(
        env.raw
            .count(&format!("SELECT count(*) FROM {t} WHERE phone = '+1 555'"))
            .await,
        1
    );
}

fn tricky_object() -> Value {
    let mut metadata = serde_json::Map::new();
    for i in 0..50 {
        metadata.insert(format!("key_{i} ü \"q\" 'a'"), json!("x".repeat(500)));
    }
    json!({
        "id": "cus_tricky",
        "object": "customer",
        "name": "O'Brien \"the\" \\N tab\there\nnewline\r\n \\. end",
        "email": "ñandú@exämple.com",
        "description": "emoji 🎉👩‍👩‍👧 CJK 漢字 RTL שלום combining é ZWJ \u{200d} BOM \u{feff} \u{1}\u{7f}",
        "balance": i64::MAX,
        "metadata": metadata,
        "big": u64::MAX,
        "neg": -1,
        "small": 1.5e-7,
        "tenth": 0.1,
        "float_int": 2.0,
        "huge": 1e300,
        "nested": [[], {}, [null, true, false], {"a": {"b": {"c": ["\\", "\\\\", "\t"]}}}],
        "long": "y".repeat(1_000_000),
        "created": 1_700_000_000,
        "empty": "",
    })
}

async fn unicode_quotes_and_large_objects_round_trip(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let obj = tricky_object();
    let row = Row {
        id: "cus_tricky".into(),
        object: obj.clone(),
        version: 1,
        deleted: false,
    };
    env.write(customers(), vec![row], None).await;
    let rows = env.rows(customers()).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].object == obj, "object changed on the way through");
    let name = obj["name"].as_str().expect("name");
    let t = env.table("customers");
    let n = env
        .raw
        .count(&format!(
            "SELECT count(*) FROM {t} WHERE name = {} AND balance = {}",
            cls_destination::ident::literal(name),
            i64::MAX
        ))
        .await;
    assert_eq!(n, 1, "typed text column holds the exact string");
}

async fn nul_characters_follow_the_documented_rule(env: &Env) {
    env.dest.prepare(&[customers()]).await.expect("prepare");
    let obj = json!({"id": "cus_nul", "name": "a\u{0}b", "metadata": {"k\u{0}": "v\u{0}"}});
    env.write(
        customers(),
        vec![Row {
            id: "cus_nul".into(),
            object: obj.clone(),
            version: 1,
            deleted: false,
        }],
        None,
    )
    .await;
    let rows = env.rows(customers()).await;
    let expected = match env.kind {
        // PostgreSQL cannot store U+0000 in text or jsonb: it becomes U+FFFD.
        DatabaseKind::Postgres => {
            json!({"id": "cus_nul", "name": "a\u{FFFD}b", "metadata": {"k\u{FFFD}": "v\u{FFFD}"}})
        }
        DatabaseKind::Sqlite => obj,
    };
    assert_eq!(rows[0].object, expected);
}

async fn concurrent_writes_from_several_tasks(env: &Env) {
    env.dest
        .prepare(&[customers(), invoices()])
        .await
        .expect("prepare");
    let mut total = WriteStats::default();
    let writes = (0..8).map(|w| {
        let rows: Vec<Row> = (0..200)
            .map(|i| customer(&format!("cus_{w}_{i}"), 1, "n"))
            .collect();
        env.dest.write(Batch {
            data_type: customers(),
            account_id: ACCT,
            rows,
            checkpoint: None,
        })
    });
    for r in futures::future::join_all(writes).await {
        total += r.expect("concurrent write");
    }
    assert_eq!(total.inserted, 1600);
    assert_eq!(
        env.dest
            .live_ids(customers(), ACCT)
            .await
            .expect("live")
            .len(),
        1600
    );
}

async fn live_child_ids_follow_one_parent(env: &Env) {
    let lines = cls_catalog::find("invoice_line_items").expect("in catalog");
    env.dest.prepare(&[lines]).await.expect("prepare");
    let line = |id: &str, invoice: &str| Row {
        id: id.to_string(),
        object: json!({"id": id, "object": "line_item", "invoice": invoice, "amount": 5}),
        version: 10,
        deleted: false,
    };
    env.write(
        lines,
        vec![
            line("il_1", "in_a"),
            line("il_2", "in_a"),
            line("il_3", "in_b"),
        ],
        None,
    )
    .await;
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let of = |parent: &'static str| async move {
        env.dest
            .live_child_ids(lines, ACCT, "invoice", parent)
            .await
            .expect("live children")
    };
    assert_eq!(of("in_a").await, ids(&["il_1", "il_2"]));
    assert_eq!(of("in_b").await, ids(&["il_3"]));
    assert!(of("in_none").await.is_empty());
    env.dest
        .mark_deleted(lines, ACCT, &ids(&["il_2"]), 11)
        .await
        .expect("mark deleted");
    assert_eq!(
        of("in_a").await,
        ids(&["il_1"]),
        "deleted children are left out"
    );
    assert!(env
        .dest
        .live_child_ids(lines, "acct_other", "invoice", "in_a")
        .await
        .expect("other account")
        .is_empty());
}

const ACCT2: &str = "acct_connected_2";

/// Writes `rows` of `data_type` for `account`.
async fn write_for(
    env: &Env,
    account: &str,
    data_type: &'static DataType,
    rows: Vec<Row>,
) -> WriteStats {
    env.dest
        .write(Batch {
            data_type,
            account_id: account,
            rows,
            checkpoint: None,
        })
        .await
        .unwrap_or_else(|e| panic!("write for {account} failed: {e}"))
}

/// Stripe Connect: a platform and its connected accounts share every table. The same object id
/// in two accounts is two rows, and nothing done for one account touches the other's rows.
async fn two_accounts_share_a_table_side_by_side(env: &Env) {
    let lines = cls_catalog::find("invoice_line_items").expect("in catalog");
    env.dest
        .prepare(&[customers(), lines])
        .await
        .expect("prepare");
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // The same id in both accounts: two inserts, two rows, each with its own object.
    let s1 = write_for(
        env,
        ACCT,
        customers(),
        vec![customer("cus_same", 10, "platform")],
    )
    .await;
    let s2 = write_for(
        env,
        ACCT2,
        customers(),
        vec![customer("cus_same", 10, "connected")],
    )
    .await;
    assert_eq!((s1.inserted, s2.inserted), (1, 1), "{s1:?} {s2:?}");
    let t = env.table("customers");
    assert_eq!(
        env.raw
            .count(&format!("SELECT count(*) FROM {t} WHERE id = 'cus_same'"))
            .await,
        2
    );
    let mine = env.dest.rows(customers(), ACCT).await.expect("rows");
    let theirs = env.dest.rows(customers(), ACCT2).await.expect("rows");
    assert_eq!(mine.len(), 1);
    assert_eq!(theirs.len(), 1);
    assert_eq!(mine[0].object["name"], json!("platform"));
    assert_eq!(theirs[0].object["name"], json!("connected"));

    // Versions are compared within an account: an older snapshot of one account is skipped
    // even though the other account's row is older still, and an update touches one row.
    let s = write_for(
        env,
        ACCT2,
        customers(),
        vec![customer("cus_same", 20, "connected v2")],
    )
    .await;
    assert_eq!(s.updated, 1);
    let s = write_for(
        env,
        ACCT,
        customers(),
        vec![customer("cus_same", 15, "platform v2")],
    )
    .await;
    assert_eq!(
        s.updated, 1,
        "the platform's row is at 10, not the connected one's 20"
    );
    let s = write_for(
        env,
        ACCT2,
        customers(),
        vec![customer("cus_same", 18, "stale")],
    )
    .await;
    assert_eq!(s.skipped, 1);
    let mine = env.dest.rows(customers(), ACCT).await.expect("rows");
    let theirs = env.dest.rows(customers(), ACCT2).await.expect("rows");
    assert_eq!(mine[0].object["name"], json!("platform v2"));
    assert_eq!(theirs[0].object["name"], json!("connected v2"));

    // More rows on each side, then a reconcile of one account: the other keeps every row.
    write_for(
        env,
        ACCT,
        customers(),
        vec![customer("cus_p_only", 10, "p")],
    )
    .await;
    write_for(
        env,
        ACCT2,
        customers(),
        vec![customer("cus_c_only", 10, "c")],
    )
    .await;
    let marked = env
        .dest
        .mark_unseen_deleted(customers(), ACCT, 1_000, 1_001)
        .await
        .expect("reconcile");
    assert_eq!(marked, 2, "both platform rows are below the walk's version");
    assert!(env
        .dest
        .live_ids(customers(), ACCT)
        .await
        .expect("live")
        .is_empty());
    assert_eq!(
        env.dest.live_ids(customers(), ACCT2).await.expect("live"),
        ids(&["cus_c_only", "cus_same"]),
        "a reconcile of one account never marks the other's rows deleted"
    );
    assert!(env
        .dest
        .rows(customers(), ACCT2)
        .await
        .expect("rows")
        .iter()
        .all(|r| !r.deleted && r.deleted_at.is_none()));

    // A deletion by id in one account leaves the same id in the other alone.
    assert_eq!(
        env.dest
            .mark_deleted(customers(), ACCT2, &ids(&["cus_same"]), 30)
            .await
            .expect("mark deleted"),
        1
    );
    assert_eq!(
        env.dest.live_ids(customers(), ACCT2).await.expect("live"),
        ids(&["cus_c_only"])
    );
    let platform_same = env.dest.rows(customers(), ACCT).await.expect("rows");
    let platform_same = platform_same
        .iter()
        .find(|r| r.id == "cus_same")
        .expect("platform row kept");
    assert_eq!(
        platform_same.version, 1_001,
        "only the reconcile above touched it"
    );

    // Child rows: the same line id under the same invoice id in both accounts.
    let line = |id: &str| Row {
        id: id.to_string(),
        object: json!({"id": id, "object": "line_item", "invoice": "in_x", "amount": 5}),
        version: 10,
        deleted: false,
    };
    write_for(env, ACCT, lines, vec![line("il_1"), line("il_2")]).await;
    write_for(env, ACCT2, lines, vec![line("il_1")]).await;
    env.dest
        .mark_deleted(lines, ACCT, &ids(&["il_1"]), 11)
        .await
        .expect("mark deleted");
    assert_eq!(
        env.dest
            .live_child_ids(lines, ACCT, "invoice", "in_x")
            .await
            .expect("children"),
        ids(&["il_2"])
    );
    assert_eq!(
        env.dest
            .live_child_ids(lines, ACCT2, "invoice", "in_x")
            .await
            .expect("children"),
        ids(&["il_1"])
    );

    // Checkpoints and state are per account too.
    env.dest
        .write(Batch {
            data_type: customers(),
            account_id: ACCT2,
            rows: Vec::new(),
            checkpoint: Some(window_cp("customers", "0..10", Some("cus_c_only"), false)),
        })
        .await
        .expect("checkpoint");
    assert!(env
        .dest
        .checkpoints(ACCT, "customers")
        .await
        .expect("cps")
        .is_empty());
    assert_eq!(
        env.dest
            .checkpoints(ACCT2, "customers")
            .await
            .expect("cps")
            .len(),
        1
    );
    env.dest
        .set_state(ACCT, "k", "platform")
        .await
        .expect("set");
    env.dest
        .set_state(ACCT2, "k", "connected")
        .await
        .expect("set");
    assert_eq!(
        env.dest.get_state(ACCT, "k").await.expect("get").as_deref(),
        Some("platform")
    );
    assert_eq!(
        env.dest
            .get_state(ACCT2, "k")
            .await
            .expect("get")
            .as_deref(),
        Some("connected")
    );
}

/// A table made before Stripe Connect (keyed by `id` alone) is re-keyed by `(account_id, id)`
/// on `prepare`: every row and every column stays, nothing is retyped, and afterwards the same
/// id can be stored for another account.
async fn a_table_keyed_by_id_alone_is_rekeyed_without_loss(env: &Env) {
    // The DDL as it was: `"id" … PRIMARY KEY`, no composite key; plus a column of the user's.
    let ddl = env.dest.create_tables_sql(&[customers()]);
    let mut old: Vec<String> = Vec::new();
    for line in ddl.lines() {
        if line.contains("PRIMARY KEY (\"account_id\", \"id\")") {
            if let Some(prev) = old.last_mut() {
                *prev = prev.trim_end_matches(',').to_string();
            }
            continue;
        }
        if line.trim_start().starts_with("\"id\" ") {
            old.push("    \"id\" text PRIMARY KEY,".to_string());
            old.push("    \"note\" text,".to_string());
            continue;
        }
        old.push(line.to_string());
    }
    let old = old.join("\n");
    assert!(!old.contains("\"account_id\", \"id\""), "{old}");
    env.raw.exec(&old).await;
    let t = env.table("customers");
    for (id, note) in [("cus_1", "first"), ("cus_2", "second")] {
        env.raw
            .exec(&format!(
                "INSERT INTO {t} (id, note, name, data, account_id, synced_at, version) VALUES \
                 ('{id}', '{note}', 'Name {id}', '{{\"id\": \"{id}\"}}', '{ACCT}', \
                 '2024-01-01T00:00:00Z', 7)"
            ))
            .await;
    }
    let before = env.raw.describe(&env.schema).await;

    env.dest
        .prepare(&[customers()])
        .await
        .expect("prepare re-keys");
    env.dest
        .prepare(&[customers()])
        .await
        .expect("prepare again is a no-op");

    let after = env.raw.describe(&env.schema).await;
    for line in before.iter().filter(|l| l.starts_with("customers.")) {
        if line.starts_with("customers.id ") {
            // A key column is NOT NULL (SQLite let a lone `PRIMARY KEY` be NULL); its type
            // stays.
            let ty = line.split(' ').nth(1).expect("type");
            assert!(
                after
                    .iter()
                    .any(|l| l.starts_with(&format!("customers.id {ty} "))),
                "id retyped: {after:#?}"
            );
            continue;
        }
        assert!(after.contains(line), "column changed: {line}\n{after:#?}");
    }
    let rows = env.rows(customers()).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].object, json!({"id": "cus_1"}));
    assert_eq!(rows[1].version, 7);
    assert_eq!(
        env.raw
            .strings(&format!("SELECT note FROM {t} ORDER BY id"))
            .await,
        vec!["first".to_string(), "second".to_string()]
    );
    // The new key: the same id in another account is a second row; the old one is updated
    // in place.
    assert_eq!(
        write_for(env, ACCT2, customers(), vec![customer("cus_1", 8, "other")])
            .await
            .inserted,
        1
    );
    assert_eq!(
        write_for(env, ACCT, customers(), vec![customer("cus_1", 8, "mine")])
            .await
            .updated,
        1
    );
    assert_eq!(env.raw.count(&format!("SELECT count(*) FROM {t}")).await, 3);
    assert_eq!(
        env.raw
            .strings(&format!(
                "SELECT note FROM {t} WHERE id = 'cus_1' AND account_id = '{ACCT}'"
            ))
            .await,
        vec!["first".to_string()],
        "a column cls does not know is kept through the re-key and the update"
    );
}

// ---------------------------------------------------------------- wiring

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::new(super::DatabaseKind::Postgres, "stripe").await;
                    super::$name(&env).await;
                    env.finish().await;
                }
            )*
        }
        mod postgres_odd_schema {
            $(
                /// The same scenarios in a schema whose name needs quoting.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::new(super::DatabaseKind::Postgres, "We\"ird sch'ema").await;
                    super::$name(&env).await;
                    env.finish().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::new(super::DatabaseKind::Sqlite, "stripe").await;
                    super::$name(&env).await;
                    env.finish().await;
                }
            )*
        }
    };
}

conformance!(
    prepare_creates_tables_and_is_idempotent,
    create_tables_sql_matches_prepare,
    write_inserts_and_counts_and_fills_typed_columns,
    rewriting_counts_skipped_then_updated,
    older_never_overwrites_newer,
    checkpoint_commits_and_rolls_back_with_rows,
    replace_checkpoint_splits_a_window_atomically,
    write_set_counts_each_table_and_applies_checkpoints_in_order,
    write_set_is_one_transaction,
    mark_deleted_and_live_ids,
    insert_only_sets_copy_new_rows_and_fall_back_when_one_exists,
    mark_unseen_deleted_flags_rows_a_walk_did_not_see,
    state_get_and_set,
    add_column_keeps_data_and_never_retypes,
    unicode_quotes_and_large_objects_round_trip,
    nul_characters_follow_the_documented_rule,
    concurrent_writes_from_several_tasks,
    live_child_ids_follow_one_parent,
    two_accounts_share_a_table_side_by_side,
    a_table_keyed_by_id_alone_is_rekeyed_without_loss,
);

#[tokio::test]
async fn sqlite_ignores_the_schema_and_reports_main() {
    let env = Env::new(DatabaseKind::Sqlite, "We\"ird").await;
    assert_eq!(env.dest.schema(), "main");
    env.dest.prepare(&[customers()]).await.expect("prepare");
    assert_eq!(env.dest.check().await.expect("check").schema, "main");
    assert!(!env.url.is_empty());
    env.finish().await;
}
