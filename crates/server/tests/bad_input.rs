//! The bad-input catalogue, through the REST API: bodies that are not JSON, not objects,
//! truncated or huge; names with unicode, control characters or NUL; schema names with
//! quotes, spaces or SQL; keys and database URLs of every bad kind. Each case asserts the
//! specific `400` message (naming the field and the fix) and that nothing was created: the
//! number of projects and configurations in the state is unchanged.
//!
//! State is SQLite in a temp directory, and PostgreSQL for the cases where the two stores
//! could differ (NUL characters, which PostgreSQL's `text` cannot hold).

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use cls_control::{
    ManualClock, MasterKey, PageRequest, PostgresStore, Runner, RunnerConfig, SqliteStore,
    StateUrl, Store,
};
use cls_server::{app, install_metrics_recorder, serve, AppState};
use cls_testkit::db::TestDb;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FULL_KEY: &str = "rk_test_cls_emulator";

struct TestApp {
    base: String,
    token: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
}

async fn spawn_app_with(store: Arc<dyn Store>, dir: tempfile::TempDir) -> TestApp {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0)
            .single()
            .unwrap_or_default(),
    ));
    let runner = Runner::with_config(store.clone(), clock.clone(), RunnerConfig::default());
    let metrics = match install_metrics_recorder() {
        Ok(h) => h,
        Err(e) => panic!("cannot install the metrics recorder: {e}"),
    };
    let state = AppState::new(store.clone(), runner, clock, metrics);
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind 127.0.0.1:0: {e}"),
    };
    let base = match listener.local_addr() {
        Ok(a) => format!("http://{a}"),
        Err(e) => panic!("no local address: {e}"),
    };
    tokio::spawn(serve(listener, app(state), std::future::pending()));
    let token = match store.create_api_token("tests").await {
        Ok((_, secret)) => secret.expose_secret().to_string(),
        Err(e) => panic!("cannot create an API token: {e}"),
    };
    TestApp {
        base,
        token,
        http: reqwest::Client::new(),
        store,
        dir,
    }
}

async fn spawn_sqlite_app() -> TestApp {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("no temp dir: {e}"),
    };
    let url = match StateUrl::parse(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    )) {
        Ok(u) => u,
        Err(e) => panic!("{e}"),
    };
    let store = match SqliteStore::open(&url, MasterKey::generate()).await {
        Ok(s) => s,
        Err(e) => panic!("cannot open the SQLite state: {e}"),
    };
    spawn_app_with(Arc::new(store), dir).await
}

impl TestApp {
    /// Sends `body` as it is (any bytes) with a JSON content type.
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(StatusCode, Value), reqwest::Error> {
        self.raw(reqwest::Method::POST, path, body.to_string().into_bytes())
            .await
    }

    /// Projects and configurations in the state.
    async fn counts(&self) -> Result<(u64, u64), Box<dyn std::error::Error>> {
        let projects = self.store.list_projects(PageRequest::default()).await?;
        let confs = self
            .store
            .list_configurations(None, PageRequest::default())
            .await?;
        Ok((projects.total, confs.total))
    }

    fn dest_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("dest.db").display())
    }

    async fn project(&self) -> Result<i64, Box<dyn std::error::Error>> {
        let (status, body) = self
            .post(
                "/api/projects",
                &json!({"name": "Warehouse", "database_url": self.dest_url()}),
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Ok(body["data"]["id"].as_i64().unwrap_or(-1))
    }
}

/// The failure envelope's message, after checking its shape and code.
fn message(status: StatusCode, body: &Value) -> String {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["success"], json!(false), "{body}");
    assert_eq!(body["error"]["code"], json!("invalid_request"), "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Bodies that are not a JSON object of the route's shape: a 400 that says what to send, and
/// no project is created.
#[tokio::test]
async fn malformed_json_bodies_are_400s_and_create_nothing() -> TestResult {
    let app = spawn_sqlite_app().await;
    let good = json!({"name": "x", "database_url": app.dest_url()}).to_string();
    let truncated = good.as_bytes()[..good.len() / 2].to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "send a JSON object"),
        (
            "not JSON",
            b"name=x&database_url=y".to_vec(),
            "send a JSON object",
        ),
        ("truncated", truncated, "send a JSON object"),
        ("an array", b"[1,2]".to_vec(), "send a JSON object"),
        ("a string", b"\"x\"".to_vec(), "send a JSON object"),
        ("null", b"null".to_vec(), "send a JSON object"),
        (
            "invalid UTF-8",
            b"{\"name\":\"\xff\xfe\"}".to_vec(),
            "send a JSON object",
        ),
        (
            "a number for a string",
            br#"{"name": 5, "database_url": "sqlite://x.db"}"#.to_vec(),
            "name",
        ),
        (
            "duplicate field",
            br#"{"name": "a", "name": "b", "database_url": "sqlite://x.db"}"#.to_vec(),
            "duplicate field `name`",
        ),
        (
            "deeply nested",
            format!(
                "{{\"name\": {}1{}, \"database_url\": \"sqlite://x.db\"}}",
                "[".repeat(200),
                "]".repeat(200)
            )
            .into_bytes(),
            "send a JSON object",
        ),
    ];
    for (case, body, want) in cases {
        let (status, answer) = app
            .raw(reqwest::Method::POST, "/api/projects", body)
            .await?;
        let msg = message(status, &answer);
        assert!(msg.contains(want), "{case}: `{want}` missing from `{msg}`");
    }
    assert_eq!(app.counts().await?, (0, 0), "nothing was created");
    Ok(())
}

/// A body far over any sane size is refused without being buffered whole.
#[tokio::test]
async fn huge_bodies_are_refused_and_create_nothing() -> TestResult {
    let app = spawn_sqlite_app().await;
    let name = "n".repeat(4 * 1024 * 1024);
    let body = json!({"name": name, "database_url": app.dest_url()})
        .to_string()
        .into_bytes();
    let (status, answer) = app
        .raw(reqwest::Method::POST, "/api/projects", body)
        .await?;
    let msg = message(status, &answer);
    assert!(msg.contains("length limit exceeded"), "{msg}");
    assert!(msg.contains("send a JSON object"), "{msg}");
    assert!(msg.len() < 1000, "the message does not echo the body");

    // Under the limit but over the name's own limit: refused by the name rule.
    let body = json!({"name": "n".repeat(201), "database_url": app.dest_url()});
    let msg = message_of(app.post("/api/projects", &body).await?);
    assert!(msg.contains("longer than 200 characters"), "{msg}");
    assert_eq!(app.counts().await?, (0, 0));
    Ok(())
}

fn message_of((status, body): (StatusCode, Value)) -> String {
    message(status, &body)
}

/// Unicode is kept exactly in names: emoji, right-to-left text, combining marks, CJK, and
/// characters outside the Basic Multilingual Plane.
#[tokio::test]
async fn unicode_names_round_trip_exactly() -> TestResult {
    let app = spawn_sqlite_app().await;
    let names = [
        "Entrepôt données 🇫🇷",
        "مستودع البيانات",
        "e\u{301}le\u{300}ve",
        "倉庫 ストライプ",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🧾💳",
        "<script>alert(1)</script> & \"quotes\" 'too'",
    ];
    for name in names {
        let (status, body) = app
            .post(
                "/api/projects",
                &json!({"name": name, "database_url": app.dest_url()}),
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        let id = body["data"]["id"].as_i64().unwrap_or(-1);
        let (_, got) = app
            .raw(
                reqwest::Method::GET,
                &format!("/api/projects/{id}"),
                Vec::new(),
            )
            .await?;
        assert_eq!(got["data"]["name"], json!(name), "stored exactly");
    }
    assert_eq!(app.counts().await?.0, names.len() as u64);
    Ok(())
}

/// Names with control characters (NUL, escape codes, line breaks) are refused with the
/// reason: PostgreSQL's `text` cannot hold NUL, and the others would garble logs and
/// terminals. Both stores answer the same.
#[tokio::test]
async fn control_characters_in_names_are_400s_in_both_stores() -> TestResult {
    let sqlite = spawn_sqlite_app().await;
    let db = TestDb::new().await;
    let pg = {
        let url = StateUrl::parse(&db.url)?;
        let store = PostgresStore::open(&url, MasterKey::generate()).await?;
        spawn_app_with(Arc::new(store), tempfile::tempdir()?).await
    };
    for app in [&sqlite, &pg] {
        let project = app.project().await?;
        for name in ["a\u{0}b", "red \u{1b}[31malert", "two\nlines", "bell\u{7}"] {
            let msg = message_of(
                app.post(
                    "/api/projects",
                    &json!({"name": name, "database_url": app.dest_url()}),
                )
                .await?,
            );
            assert!(
                msg.contains("`name`") && msg.contains("control characters"),
                "{name:?}: {msg}"
            );
            let msg = message_of(
                app.post(
                    "/api/configurations",
                    &json!({"name": name, "project_id": project, "stripe_api_key": FULL_KEY,
                            "data_types": ["customers"], "stripe_api_base": "http://127.0.0.1:9"}),
                )
                .await?,
            );
            assert!(msg.contains("control characters"), "{name:?}: {msg}");
        }
        assert_eq!(app.counts().await?, (1, 0), "nothing more was created");
    }
    db.drop_now().await;
    Ok(())
}

/// Schema names with quotes, spaces, SQL or upper case: the API keeps to plain identifiers and
/// says which characters to use; no project is created.
#[tokio::test]
async fn schema_names_with_quotes_spaces_or_sql_are_400s() -> TestResult {
    let app = spawn_sqlite_app().await;
    for schema in [
        "we\"ird",
        "Stripe Data",
        "x; drop table users; --",
        "stripe'); drop table projects; --",
        "Stripe",
        "données",
        "",
        "1stripe",
        &"x".repeat(64),
    ] {
        let msg = message_of(
            app.post(
                "/api/projects",
                &json!({"name": "x", "database_url": app.dest_url(), "schema": schema}),
            )
            .await?,
        );
        assert!(
            msg.contains("`schema`") && msg.contains("use lowercase letters, digits and _"),
            "{schema:?}: {msg}"
        );
    }
    assert_eq!(app.counts().await?, (0, 0));
    Ok(())
}

/// Every kind of bad key is a 400 naming `stripe_api_key` and the fix, never repeating the key;
/// no configuration is created.
#[tokio::test]
async fn bad_keys_are_400s_naming_the_fix() -> TestResult {
    let app = spawn_sqlite_app().await;
    let project = app.project().await?;
    let cases = [
        ("", "no Stripe API key was given"),
        ("   ", "no Stripe API key was given"),
        (
            "rk_test_s3cr3tbody0123\n",
            "spaces or line breaks around it",
        ),
        (" rk_test_s3cr3tbody0123", "spaces or line breaks around it"),
        ("rk_test_s3cr3", "too short and looks cut off"),
        (
            "pk_live_s3cr3tbody0123",
            "publishable keys cannot read account data",
        ),
        ("rk_test_s3cr3t\u{1b}body0123", "control characters"),
        ("rk_test_s3cr3t\u{0}body0123", "control characters"),
        ("whsec_s3cr3tbody0123", "this is not a Stripe API key"),
        (
            "rk_test_s3cr3tbødy0123",
            "characters Stripe keys never have",
        ),
    ];
    for (key, want) in cases {
        let (status, body) = app
            .post(
                "/api/configurations",
                &json!({"name": "c", "project_id": project, "stripe_api_key": key,
                        "data_types": ["customers"]}),
            )
            .await?;
        let msg = message(status, &body);
        assert!(msg.contains("`stripe_api_key`"), "{key:?}: {msg}");
        assert!(msg.contains(want), "{key:?}: `{want}` missing from {msg}");
        assert!(
            !body.to_string().contains("s3cr3t"),
            "{key:?}: echoed: {body}"
        );
    }
    assert_eq!(app.counts().await?, (1, 0));
    Ok(())
}

/// Database URLs of every bad kind: a 400 naming `database_url` with the forms to paste, no
/// password repeated, no project created.
#[tokio::test]
async fn bad_database_urls_are_400s_without_the_password() -> TestResult {
    let app = spawn_sqlite_app().await;
    let cases = [
        ("", "the database URL is empty"),
        ("file:///etc/passwd", "unknown scheme `file:`"),
        ("http://u:pa55word@example.com/db", "unknown scheme `http:`"),
        ("javascript:alert(1)", "unknown scheme `javascript:`"),
        (
            "mysql://root:pa55word@localhost/x",
            "mysql is not supported",
        ),
        (
            "postgres://u:pa55word@[::1/db",
            "not a valid PostgreSQL URL",
        ),
        ("postgres://", "has no host"),
        ("sqlite://", "has no file path"),
        ("/var/lib/cls.db", "has no scheme"),
    ];
    for (url, want) in cases {
        let (status, body) = app
            .post("/api/projects", &json!({"name": "x", "database_url": url}))
            .await?;
        let msg = message(status, &body);
        assert!(msg.contains("`database_url`"), "{url:?}: {msg}");
        assert!(msg.contains(want), "{url:?}: `{want}` missing from {msg}");
        assert!(msg.contains("postgres://user:password@host"), "{msg}");
        assert!(!body.to_string().contains("pa55word"), "{url:?}: {body}");
    }
    assert_eq!(app.counts().await?, (0, 0));
    Ok(())
}
