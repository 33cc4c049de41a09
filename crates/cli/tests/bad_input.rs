//! The bad-input catalogue, as a user meets it through the `cls` binary: each malformed,
//! empty, padded, truncated, publishable, wrong-mode or control-character key; each bad,
//! unreachable or unsafe database URL; each schema name with quotes, spaces or SQL in it.
//!
//! Every case asserts the specific message (what is wrong and what to do instead), that the
//! rejected secret is never printed, and that nothing happened: no request reached Stripe, no
//! database file was created, no schema or table appeared.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator;
use common::{cls, export, requests_total, text, Db};
use serde_json::{json, Value};
use sqlx::{Executor, PgPool};

const FULL_KEY: &str = "rk_test_cls_emulator";

/// Runs `cls <command>` with `key` against a fresh emulator and a SQLite file that must not be
/// created; asserts exit 1, that stderr contains every one of `expected`, that no part of the
/// key's body is printed and that Stripe saw no request.
async fn refused_key(command: &str, key: &str, expected: &[&str]) {
    let emulator = spawn_emulator(3, 2).await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("never.db");
    let url = format!("sqlite://{}", file.display());
    let out = cls(
        &[command, "--stripe-key", key, "--database-url", &url],
        &[("CLS_STRIPE_API_BASE", emulator.base_url.as_str())],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{key:?}:\n{all}");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in expected {
        assert!(err.contains(want), "{key:?}: `{want}` missing from:\n{all}");
    }
    assert!(
        err.contains("--stripe-key / STRIPE_API_KEY"),
        "names the setting:\n{all}"
    );
    // The distinctive part of every key below is `s3cr3tbody`.
    assert!(!all.contains("s3cr3tbody"), "repeats the key:\n{all}");
    assert_eq!(
        requests_total(&emulator.base_url).await,
        0,
        "{key:?}: Stripe was asked"
    );
    assert!(!file.exists(), "{key:?}: the database file was created");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_malformed_is_refused_before_any_request() {
    for key in [
        "s3cr3tbody_0123456789",
        "whsec_s3cr3tbody0123456789",
        "Bearer rk_test_s3cr3tbody0123",
        "RK_TEST_s3cr3tbody0123456789",
    ] {
        refused_key("sync", key, &["this is not a Stripe API key", "rk_"]).await;
    }
    refused_key(
        "check",
        "rk_test_s3cr3tbody-0123456789",
        &["characters Stripe keys never have", "paste the key alone"],
    )
    .await;
    refused_key(
        "sync",
        "\"rk_test_s3cr3tbody0123456789\"",
        &["quotes or spaces may have been copied along"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_empty_is_refused_with_where_to_find_one() {
    refused_key("sync", "", &["no Stripe API key was given", "rk_test_"]).await;
    refused_key("check", "   ", &["no Stripe API key was given"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_whitespace_padded_is_refused_not_trimmed() {
    for key in [
        " rk_test_s3cr3tbody0123",
        "rk_test_s3cr3tbody0123\n",
        "rk_test_s3cr3tbody0123\r\n",
        "\trk_test_s3cr3tbody0123",
    ] {
        refused_key(
            "sync",
            key,
            &["spaces or line breaks around it", "paste the key alone"],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_truncated_is_refused_as_cut_off() {
    for key in ["rk_test_", "sk_live_", "rk_test_s3cr3"] {
        refused_key(
            "check",
            key,
            &["too short and looks cut off", "copy button"],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_publishable_is_refused_with_the_kind_to_use() {
    for key in [
        "pk_test_s3cr3tbody0123456789",
        "pk_live_s3cr3tbody0123456789",
    ] {
        refused_key(
            "sync",
            key,
            &[
                "publishable keys cannot read account data",
                "restricted key (rk_…)",
            ],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_with_control_characters_is_refused() {
    for key in [
        "rk_test_s3cr3t\u{1b}[0mbody0123",
        "rk_test_s3cr3t\u{7}body0123",
        "rk_test_s3cr3t\u{7f}body0123",
    ] {
        refused_key(
            "sync",
            key,
            &["control characters", "paste it as plain text"],
        )
        .await;
    }
}

/// A key of the other mode than the account's data: Stripe (here the test-mode emulator)
/// does not know it, the answer names the key masked and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_the_wrong_mode_is_refused_by_stripe_and_writes_nothing() {
    let emulator = spawn_emulator(3, 2).await;
    let db = Db::lite();
    let url = db.url();
    let out = cls(
        &["sync", "--types", "customers"],
        &[
            ("STRIPE_API_KEY", "rk_live_cls_emulator"),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("API key"),
        "says the key is the problem:\n{all}"
    );
    assert!(
        !all.contains("rk_live_cls_emulator"),
        "repeats the key:\n{all}"
    );
    assert_eq!(db.table("customers").await.unwrap_or_default().len(), 0);
    db.finish().await;
    emulator.shutdown().await;
}

/// `cls sync` with a database URL that must be refused before anything happens: exit 1, the
/// message holds every one of `expected` and the forms to paste, and no password is shown.
async fn refused_url(url: &str, expected: &[&str]) {
    let emulator = spawn_emulator(3, 2).await;
    let out = cls(
        &["sync", "--types", "customers", "--database-url", url],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{url:?}:\n{all}");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in expected {
        assert!(err.contains(want), "{url:?}: `{want}` missing from:\n{all}");
    }
    assert!(
        !all.contains("pa55word"),
        "{url:?}: shows the password:\n{all}"
    );
    assert_eq!(requests_total(&emulator.base_url).await, 0, "{url:?}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_bad_is_refused_with_what_to_paste() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["the database URL is empty"]),
        ("   ", &["the database URL is empty"]),
        ("localhost:5432", &["unknown scheme `localhost:`"]),
        ("/var/lib/cls.db", &["has no scheme"]),
        ("postgres://", &["the PostgreSQL URL has no host"]),
        (
            "postgres://u:pa55word@[::1/db",
            &["not a valid PostgreSQL URL"],
        ),
        (
            "postgres://u:pa55word@db.example.com:99999/db",
            &["not a valid PostgreSQL URL"],
        ),
        ("sqlite://", &["the SQLite URL has no file path"]),
        ("sqlite:?mode=rwc", &["the SQLite URL has no file path"]),
        (
            "mysql://root:pa55word@localhost/x",
            &["mysql is not supported", "PostgreSQL or SQLite"],
        ),
        (
            "postgres://u:pa55word@exa mple.com/db",
            &["not a valid PostgreSQL URL"],
        ),
    ];
    for (url, expected) in cases {
        let mut want = expected.to_vec();
        want.push("postgres://user:password@host:5432/dbname");
        want.push("--database-url / DATABASE_URL");
        refused_url(url, &want).await;
    }
}

/// Schemes that would make cls read or write something other than a database: refused by
/// name, never followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_unsafe_schemes_are_refused() {
    for (url, scheme) in [
        ("file:///etc/passwd", "file"),
        ("http://u:pa55word@example.com/db", "http"),
        ("https://example.com/db", "https"),
        ("javascript:alert(1)", "javascript"),
        ("ftp://u:pa55word@example.com/db", "ftp"),
        ("postgres+ssh://u:pa55word@example.com/db", "postgres+ssh"),
    ] {
        refused_url(url, &[&format!("unknown scheme `{scheme}:`")]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_unreachable_host_is_named_without_the_password() {
    let emulator = spawn_emulator(3, 2).await;
    for url in [
        "postgres://someone:pa55word@does-not-exist.invalid:5432/db",
        "postgres://someone:pa55word@127.0.0.1:1/db",
    ] {
        let out = cls(
            &["sync", "--types", "customers", "--database-url", url],
            &[
                ("STRIPE_API_KEY", FULL_KEY),
                ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
            ],
        )
        .await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{url}:\n{all}");
        assert!(
            all.contains("cannot reach the database at postgres://someone:***@"),
            "names the masked target:\n{all}"
        );
        assert!(
            all.contains("check that the server is running"),
            "says what to check:\n{all}"
        );
        assert!(!all.contains("pa55word"), "shows the password:\n{all}");
    }
    emulator.shutdown().await;
}

/// A SQLite file in a folder that does not exist (or cannot be written): named, with the fix,
/// and no folder is created on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_url_sqlite_in_a_missing_folder_is_named() {
    let emulator = spawn_emulator(3, 2).await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let missing = dir.path().join("no-such-folder");
    let url = format!("sqlite://{}/cls.db", missing.display());
    let out = cls(
        &["sync", "--types", "customers", "--database-url", &url],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("CLS_STRIPE_API_BASE", emulator.base_url.as_str()),
        ],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("no-such-folder"), "names the path:\n{all}");
    assert!(!missing.exists(), "created the folder");
    emulator.shutdown().await;
}

/// Runs `cls sync --schema <schema>` into `db` and returns the output.
async fn sync_into_schema(db: &TestDb, emulator_url: &str, schema: &str) -> std::process::Output {
    cls(
        &["sync", "--types", "customers", "--schema", schema, "--json"],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("DATABASE_URL", db.url.as_str()),
            ("CLS_STRIPE_API_BASE", emulator_url),
        ],
    )
    .await
}

async fn schemas(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select schema_name::text from information_schema.schemata \
         where schema_name not in ('public', 'information_schema') and schema_name not like 'pg\\_%' \
         order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("list schemas")
}

/// Quotes, spaces, upper case, unicode and SQL in a schema name are kept exactly as a name
/// (every identifier is quoted): the schema is created with that very name, the rows land in
/// it and the SQL is never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_names_with_quotes_spaces_or_sql_are_names_not_sql() {
    let emulator = spawn_emulator(3, 4).await;
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.expect("connect");
    pool.execute("create table public.keep (x int); insert into public.keep values (1)")
        .await
        .expect("a table the SQL would drop");
    let names = [
        "Stripe Data",
        "we\"ird",
        "x\"; drop table public.keep; --",
        "stripe'); drop table public.keep; --",
        "données_ストライプ",
    ];
    for schema in names {
        let out = sync_into_schema(&db, &emulator.base_url, schema).await;
        assert!(out.status.success(), "{schema:?}:\n{}", text(&out));
        let sql = format!(
            "select count(*) from {}.customers",
            cls_destination::ident::quote(schema)
        );
        let rows: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{schema:?}: {e}"));
        assert!(rows > 0, "{schema:?}: no rows");
    }
    let kept: i64 = sqlx::query_scalar("select count(*) from public.keep")
        .fetch_one(&pool)
        .await
        .expect("public.keep still exists");
    assert_eq!(kept, 1);
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        schemas(&pool).await,
        want,
        "exactly these schemas, named as given"
    );
    pool.close().await;
    db.drop_now().await;
    emulator.shutdown().await;
}

/// Schema names PostgreSQL would refuse or silently change: refused with the reason and
/// `--schema`, and no schema is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_names_postgres_would_refuse_or_change_are_refused() {
    let emulator = spawn_emulator(3, 2).await;
    let db = TestDb::new().await;
    let long = "x".repeat(64);
    let cases = [
        ("", "it is empty"),
        (" stripe", "starts or ends with whitespace"),
        ("stripe\n", "starts or ends with whitespace"),
        ("pg_stripe", "reserved by PostgreSQL"),
        ("information_schema", "system catalog"),
        (long.as_str(), "at most 63 bytes"),
    ];
    for (schema, reason) in cases {
        let out = sync_into_schema(&db, &emulator.base_url, schema).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{schema:?}:\n{all}");
        assert!(
            all.contains(reason),
            "{schema:?}: `{reason}` missing:\n{all}"
        );
        assert!(
            all.contains("--schema"),
            "{schema:?}: says what to change:\n{all}"
        );
    }
    let pool = PgPool::connect(&db.url).await.expect("connect");
    assert_eq!(
        schemas(&pool).await,
        Vec::<String>::new(),
        "nothing was created"
    );
    pool.close().await;
    assert!(!Path::new(&long).exists());
    db.drop_now().await;
    emulator.shutdown().await;
}

/// What the proxy does to a `/v1/customers` list answer.
type Rewrite = Arc<dyn Fn(u64, Vec<u8>) -> Vec<u8> + Send + Sync>;

struct Proxy {
    base_url: String,
    task: tokio::task::JoinHandle<()>,
}

/// A Stripe API in front of the emulator that passes every request through, except the
/// answers of `GET /v1/customers` (the list), which `rewrite` changes (given how many it has
/// rewritten before): a server answering with bad pages, everything else being right.
async fn bad_stripe(emulator: &str, rewrite: Rewrite) -> Proxy {
    use axum::extract::{Request, State};
    use axum::response::Response;

    #[derive(Clone)]
    struct Ctx {
        upstream: String,
        http: reqwest::Client,
        rewrite: Rewrite,
        count: Arc<AtomicU64>,
    }

    async fn pass(State(ctx): State<Ctx>, req: Request) -> Response {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let mut upstream = ctx.http.get(format!("{}{path_and_query}", ctx.upstream));
        for (name, value) in req.headers() {
            if name != "host" {
                upstream = upstream.header(name, value);
            }
        }
        let answer = upstream.send().await.expect("the emulator answers");
        let status = answer.status().as_u16();
        let mut body = answer.bytes().await.expect("a body").to_vec();
        if req.uri().path() == "/v1/customers" && status == 200 {
            let n = ctx.count.fetch_add(1, Ordering::SeqCst);
            body = (ctx.rewrite)(n, body);
        }
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .expect("a response")
    }

    let ctx = Ctx {
        upstream: emulator.to_string(),
        http: reqwest::Client::new(),
        rewrite,
        count: Arc::new(AtomicU64::new(0)),
    };
    let app = axum::Router::new().fallback(pass).with_state(ctx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let base_url = format!("http://{}", listener.local_addr().expect("an address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Proxy { base_url, task }
}

/// `cls sync --types customers --json` through `stripe` into `db`.
async fn sync_customers(stripe: &str, db: &Db) -> std::process::Output {
    let url = db.url();
    cls(
        &["sync", "--types", "customers", "--mode", "full", "--json"],
        &[
            ("STRIPE_API_KEY", FULL_KEY),
            ("DATABASE_URL", url.as_str()),
            ("CLS_STRIPE_API_BASE", stripe),
        ],
    )
    .await
}

/// The live customers the emulator holds, by id.
async fn customers(emulator: &str) -> BTreeMap<String, Value> {
    export(emulator)
        .await
        .remove("customer")
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, c)| !common::is_deleted(c))
        .collect()
}

/// Pages that are not list objects (another object, no `data`, a mistyped `has_more`, not
/// JSON at all every time): the data type fails with the decoder's reason and no row is
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_that_are_not_lists_fail_the_type_and_store_nothing() {
    let emulator = spawn_emulator(3, 6).await;
    let cases: Vec<(&str, Rewrite, &str)> = vec![
        (
            "another object",
            Arc::new(|_, _| {
                br#"{"object":"customer","id":"cus_x","has_more":false,"data":[]}"#.to_vec()
            }),
            "expected a list object, got object \"customer\"",
        ),
        (
            "no data",
            Arc::new(|_, _| br#"{"object":"list","has_more":false}"#.to_vec()),
            "the list has no `data` array",
        ),
        (
            "data is an object",
            Arc::new(|_, _| {
                br#"{"object":"list","has_more":false,"data":{"id":"cus_1"}}"#.to_vec()
            }),
            "the list has no `data` array",
        ),
        (
            "has_more as text",
            Arc::new(|_, body| {
                let mut page: Value = serde_json::from_slice(&body).expect("JSON");
                page["has_more"] = Value::String("false".into());
                page.to_string().into_bytes()
            }),
            "the list has no `has_more` flag",
        ),
        (
            "an array",
            Arc::new(|_, _| b"[]".to_vec()),
            "expected a list object, got something else",
        ),
    ];
    for (case, rewrite, want) in cases {
        let proxy = bad_stripe(&emulator.base_url, rewrite).await;
        let db = Db::lite();
        let out = sync_customers(&proxy.base_url, &db).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{case}: not a failure:\n{all}");
        let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
        let customers = &report["types"][0];
        assert_eq!(customers["status"], "failed", "{case}: {report}");
        let error = customers["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(want),
            "{case}: `{want}` missing from {report}"
        );
        assert_eq!(
            db.table("customers").await.unwrap_or_default().len(),
            0,
            "{case}: rows were stored"
        );
        proxy.task.abort();
        db.finish().await;
    }
    emulator.shutdown().await;
}

/// A page cut off mid-way (or garbled) is not valid JSON: retried like a network fault, and
/// once the answer is whole the rows equal Stripe's objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_json_page_is_retried_and_then_stored_exactly() {
    let emulator = spawn_emulator(3, 6).await;
    let proxy = bad_stripe(
        &emulator.base_url,
        Arc::new(|n, body| {
            if n == 0 {
                body[..body.len() / 2].to_vec()
            } else if n == 1 {
                b"<html><body>502 Bad Gateway</body></html>".to_vec()
            } else {
                body
            }
        }),
    )
    .await;
    let db = Db::lite();
    let out = sync_customers(&proxy.base_url, &db).await;
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert!(
        report["types"][0]["retries"].as_u64().unwrap_or(0) >= 2,
        "the bad answers were retried: {report}"
    );
    let want = customers(&emulator.base_url).await;
    let got: BTreeMap<String, Value> = db
        .table("customers")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, (data, _))| (id, data))
        .collect();
    assert_eq!(got, want);
    proxy.task.abort();
    db.finish().await;
    emulator.shutdown().await;
}

/// Objects with extra fields, missing fields and mistyped fields are stored exactly as sent
/// (the `data` column is the object); objects of another `object` type or without an id are
/// not stored in the customers table, and say so in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_objects_are_stored_as_sent_and_foreign_ones_are_not_stored() {
    let emulator = spawn_emulator(3, 12).await;
    /// What the proxy does to the customer at `case`, and so what the table must hold.
    fn odd(case: usize, c: &mut Value) {
        match case % 6 {
            0 => c["x_unexpected"] = json!({"nested": [1, "two", null], "ü": "🧾"}),
            1 => {
                c.as_object_mut().map(|o| o.remove("email"));
            }
            2 => c["created"] = json!("yesterday"),
            3 => c["metadata"] = json!(["not", "a", "map"]),
            4 => c["object"] = json!("unicorn"),
            _ => {
                c.as_object_mut().map(|o| o.remove("id"));
            }
        }
    }
    let before = customers(&emulator.base_url).await;
    // Each customer gets the case of its place among the ids: every case is used.
    let cases: Arc<BTreeMap<String, usize>> = Arc::new(
        before
            .keys()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect(),
    );
    let for_proxy = cases.clone();
    let proxy = bad_stripe(
        &emulator.base_url,
        Arc::new(move |_, body| {
            let mut page: Value = serde_json::from_slice(&body).expect("JSON");
            if let Some(items) = page["data"].as_array_mut() {
                for c in items {
                    let id = c["id"].as_str().unwrap_or_default().to_string();
                    odd(for_proxy.get(&id).copied().unwrap_or(0), c);
                }
            }
            page.to_string().into_bytes()
        }),
    )
    .await;
    let db = Db::lite();
    let out = sync_customers(&proxy.base_url, &db).await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let mut want = BTreeMap::new();
    for (id, mut c) in before {
        odd(cases[&id], &mut c);
        if c["object"] == "customer" && c.get("id").is_some() {
            want.insert(id, c);
        }
    }
    assert_eq!(want.len(), 8, "12 customers, 4 left out");
    let got: BTreeMap<String, Value> = db
        .table("customers")
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(id, (data, _))| (id, data))
        .collect();
    assert_eq!(got, want);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("Stripe's list returned an object of another type; it is not stored")
            .count(),
        2,
        "{all}"
    );
    assert_eq!(
        err.matches("Stripe returned an object without an id; it cannot be stored")
            .count(),
        2,
        "{all}"
    );
    proxy.task.abort();
    db.finish().await;
    emulator.shutdown().await;
}

/// Creates a customer through the emulator's write API (form-encoded, as Stripe takes it).
async fn create_customer(emulator: &str, fields: &[(String, String)]) -> Value {
    let body = serde_urlencoded_pairs(fields);
    let answer = reqwest::Client::new()
        .post(format!("{emulator}/v1/customers"))
        .bearer_auth("sk_test_cls_emulator")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the emulator answers");
    let status = answer.status();
    let created: Value = answer.json().await.expect("JSON");
    assert!(status.is_success(), "{created}");
    created
}

/// `k=v&…`, percent-encoded.
fn serde_urlencoded_pairs(fields: &[(String, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Text of every kind a Stripe account can hold: emoji and flags, right-to-left, combining
/// marks, CJK, characters outside the BMP, HTML and script, quotes and backslashes, line
/// breaks and tabs, a NUL (which PostgreSQL's `jsonb` cannot hold in a string).
const UNICODE: &[&str] = &[
    "Zoë Ångström 🇫🇷👩🏽‍💻",
    "مرحبا بالعالم",
    "e\u{301}le\u{300}ve",
    "東京都渋谷区 ストライプ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🧾💳",
    "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "quote \" backslash \\ apostrophe ' semicolon ; drop table customers; --",
    "line\nbreak\ttab\r\nCRLF",
    "nul\u{0}inside",
    "\u{feff}BOM and zero\u{200b}width",
];

/// Metadata at Stripe's limits (50 keys, 40-character keys, 500-character values) in every
/// script, plus unicode in every text field: the rows equal the API's objects exactly, in
/// PostgreSQL and in SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn very_large_metadata_and_unicode_everywhere_are_copied_exactly() {
    let emulator = spawn_emulator(3, 3).await;
    let mut ids = Vec::new();
    for (i, text) in UNICODE.iter().enumerate() {
        let mut fields = vec![
            ("name".to_string(), text.to_string()),
            ("description".to_string(), text.repeat(3)),
            ("address[city]".to_string(), text.to_string()),
            ("email".to_string(), format!("ü{i}@exämple.com")),
        ];
        for k in 0..50 {
            let key: String = format!(
                "{k:02}{}",
                text.chars().cycle().take(38).collect::<String>()
            );
            let value: String = text.chars().cycle().take(500).collect();
            fields.push((format!("metadata[{key}]"), value));
        }
        let created = create_customer(&emulator.base_url, &fields).await;
        assert_eq!(
            created["metadata"].as_object().map(|m| m.len()),
            Some(50),
            "{text:?}: the emulator kept every key"
        );
        ids.push(created["id"].as_str().expect("an id").to_string());
    }
    let exact = customers(&emulator.base_url).await;
    // PostgreSQL's `jsonb` cannot hold NUL: the destination stores it as U+FFFD, by design
    // (crates/destination/src/copy_text.rs); SQLite keeps it.
    let in_postgres: BTreeMap<String, Value> = exact
        .iter()
        .map(|(id, c)| {
            let text = c.to_string().replace("\\u0000", "\u{FFFD}");
            (id.clone(), serde_json::from_str(&text).expect("JSON"))
        })
        .collect();
    assert_ne!(in_postgres, exact, "a NUL was sent");
    for (db, want) in [(Db::pg().await, &in_postgres), (Db::lite(), &exact)] {
        let out = sync_customers(&emulator.base_url, &db).await;
        assert!(out.status.success(), "{}", text(&out));
        let got: BTreeMap<String, Value> = db
            .table("customers")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(id, (data, _))| (id, data))
            .collect();
        for id in &ids {
            assert!(got.get(id) == want.get(id), "{id} differs");
        }
        assert!(&got == want, "the rows differ from the API's objects");
        db.finish().await;
    }
    emulator.shutdown().await;
}
