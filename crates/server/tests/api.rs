//! Black-box tests of the REST API over real HTTP: the router is bound on 127.0.0.1:0 (the
//! listener is bound before serving, so no test waits), state lives in SQLite in a temp
//! directory (one test in PostgreSQL), and Stripe is the in-process emulator. The runner is
//! driven by hand with `Runner::step` and a `ManualClock`.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use cls_control::{
    ManualClock, MasterKey, PostgresStore, Runner, RunnerConfig, ScheduleId, SqliteStore, StateUrl,
    Store,
};
use cls_server::api::RateLimit;
use cls_server::{app, install_metrics_recorder, serve, AppState};
use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const FULL_KEY: &str = "rk_test_cls_emulator";
const LIMITED_KEY: &str = "rk_test_cls_limited";
const SECRET_KEY: &str = "sk_test_cls_emulator";
const DB_PASSWORD: &str = "hunter2-not-for-your-eyes";

/// One running server and what a test needs around it.
struct TestApp {
    /// `http://127.0.0.1:PORT`.
    base: String,
    /// A valid API token.
    token: String,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    runner: Runner,
    /// Keeps the SQLite files alive for the test.
    dir: tempfile::TempDir,
    /// Every response body seen, to look for leaked secrets.
    seen: std::sync::Mutex<Vec<String>>,
}

/// A response: status, headers and parsed JSON body.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The error message; asserts the failure envelope's exact shape first.
    fn error(&self) -> String {
        assert_eq!(self.body["success"], json!(false), "{}", self.body);
        let keys: BTreeSet<&str> = self
            .body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, BTreeSet::from(["success", "error"]), "{}", self.body);
        let err_keys: BTreeSet<&str> = self.body["error"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            err_keys,
            BTreeSet::from(["code", "message"]),
            "{}",
            self.body
        );
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    fn id(&self) -> i64 {
        self.data()["id"].as_i64().unwrap_or(-1)
    }
}

async fn spawn_app_with(
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    limit: Option<u32>,
) -> TestApp {
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
    let mut state = AppState::new(store.clone(), runner.clone(), clock, metrics);
    if let Some(n) = limit.and_then(NonZeroU32::new) {
        state.rate_limit = RateLimit { per_minute: n };
    }
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
        runner,
        dir,
        seen: std::sync::Mutex::new(Vec::new()),
    }
}

/// A server with SQLite state in a fresh temp directory.
async fn spawn_app(limit: Option<u32>) -> TestApp {
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
    spawn_app_with(Arc::new(store), dir, limit).await
}

impl TestApp {
    /// Sends a request with the test's token (or `auth` instead, when given).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        let token = auth.unwrap_or(&self.token);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text.clone());
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, path: &str) -> Result<Answer, reqwest::Error> {
        self.send(Method::GET, path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Answer, reqwest::Error> {
        self.send(Method::POST, path, Some(body), None).await
    }

    async fn patch(&self, path: &str, body: Value) -> Result<Answer, reqwest::Error> {
        self.send(Method::PATCH, path, Some(body), None).await
    }

    async fn delete(&self, path: &str) -> Result<Answer, reqwest::Error> {
        self.send(Method::DELETE, path, None, None).await
    }

    /// A project writing into a SQLite file in the test's directory.
    async fn sqlite_project(&self) -> Result<i64, Box<dyn std::error::Error>> {
        let url = format!("sqlite://{}", self.dir.path().join("dest.db").display());
        let a = self
            .post(
                "/api/projects",
                json!({"name": "Warehouse", "database_url": url}),
            )
            .await?;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        Ok(a.id())
    }

    /// A configuration of `key` against the emulator at `base`.
    async fn configuration(
        &self,
        project: i64,
        key: &str,
        base: &str,
        types: &[&str],
    ) -> Result<Answer, reqwest::Error> {
        self.post(
            "/api/configurations",
            json!({"name": "Main account", "project_id": project, "stripe_api_key": key,
                   "data_types": types, "stripe_api_base": base}),
        )
        .await
    }
}

#[tokio::test]
async fn the_full_flow_from_project_to_a_succeeded_run() -> TestResult {
    let emu = spawn_emulator(7, 12).await;
    let app = spawn_app(None).await;

    let project = app.sqlite_project().await?;
    let created = app
        .configuration(
            project,
            LIMITED_KEY,
            &emu.base_url,
            &["customers", "invoices"],
        )
        .await?;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["success"], json!(true));
    let conf = created.id();
    let key = &created.data()["key"];
    assert_eq!(key["kind"], json!("restricted"));
    assert_eq!(key["mode"], json!("test"));
    assert_eq!(key["masked"], json!("rk_test_…ited"));
    assert_eq!(created.data()["warning"], Value::Null);
    assert_eq!(
        created.data()["data_types"],
        json!(["customers", "invoices"])
    );
    assert_eq!(
        created.data()["stripe_api_base"],
        json!(format!("{}/", emu.base_url))
    );

    // The limited key reads customers but lacks the invoices permission, and says where to
    // enable it.
    let check = app
        .post(
            &format!("/api/configurations/{conf}/test-connection"),
            json!({}),
        )
        .await?;
    assert_eq!(check.status, StatusCode::OK, "{}", check.body);
    let c = check.data();
    assert_eq!(c["ok"], json!(false), "{c}");
    assert_eq!(c["database"]["ok"], json!(true), "{c}");
    let types = c["stripe"]["data_types"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let customers = types
        .iter()
        .find(|t| t["data_type"] == "customers")
        .cloned()
        .unwrap_or_default();
    let invoices = types
        .iter()
        .find(|t| t["data_type"] == "invoices")
        .cloned()
        .unwrap_or_default();
    assert_eq!(customers["readable"], json!(true), "{c}");
    assert_eq!(invoices["readable"], json!(false), "{c}");
    assert_eq!(
        invoices["missing_permission"],
        json!("rak_invoice_read"),
        "{c}"
    );
    let fix = invoices["error"].as_str().unwrap_or_default();
    assert!(
        fix.contains("Stripe Dashboard") && fix.contains("Invoices"),
        "{fix}"
    );

    // A schedule the system paused is resumed by a passing test after the key is rotated.
    let schedule = app
        .post(
            &format!("/api/configurations/{conf}/schedules"),
            json!({"cadence": "daily"}),
        )
        .await?;
    assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.body);
    assert_eq!(schedule.data()["cadence"], json!("daily"));
    let sid = schedule.id();
    app.store
        .pause_schedule(ScheduleId(sid), "Stripe rejected the key")
        .await?;
    let paused = app.get(&format!("/api/schedules/{sid}")).await?;
    assert_eq!(
        paused.data()["paused_reason"],
        json!("Stripe rejected the key")
    );
    assert_eq!(paused.data()["active"], json!(false));

    let rotated = app
        .patch(
            &format!("/api/configurations/{conf}"),
            json!({"stripe_api_key": FULL_KEY}),
        )
        .await?;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.data()["key"]["masked"], json!("rk_test_…ator"));
    let check = app
        .post(
            &format!("/api/configurations/{conf}/test-connection"),
            json!({}),
        )
        .await?;
    assert_eq!(check.data()["ok"], json!(true), "{}", check.body);
    assert_eq!(check.data()["resumed_schedules"], json!([sid]));
    let resumed = app.get(&format!("/api/schedules/{sid}")).await?;
    assert_eq!(resumed.data()["active"], json!(true));
    assert_eq!(resumed.data()["paused_reason"], Value::Null);

    // Sync Now, then a second press says the run is already queued.
    let sync = app
        .send(
            Method::POST,
            &format!("/api/configurations/{conf}/sync"),
            None,
            None,
        )
        .await?;
    assert_eq!(sync.status, StatusCode::ACCEPTED, "{}", sync.body);
    let run = sync.data()["run_id"].as_i64().unwrap_or(-1);
    assert_eq!(sync.data()["status"], json!("queued"));
    assert_eq!(sync.data()["mode"], json!("incremental"));
    assert!(
        sync.data()["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("sync run {run} queued")),
        "{}",
        sync.body
    );
    let again = app
        .post(
            &format!("/api/configurations/{conf}/sync"),
            json!({"mode": "full"}),
        )
        .await?;
    assert_eq!(again.data()["run_id"], json!(run));
    assert_eq!(again.data()["already_queued"], json!(true));
    assert!(
        again.data()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already queued"),
        "{}",
        again.body
    );

    let step = app.runner.step().await?;
    assert!(step.executed.is_some(), "the step ran nothing");

    let done = app.get(&format!("/api/runs/{run}")).await?;
    assert_eq!(done.status, StatusCode::OK);
    let r = done.data();
    assert_eq!(r["status"], json!("succeeded"), "{r}");
    assert!(
        r["started_at"].is_string() && r["ended_at"].is_string(),
        "{r}"
    );
    let objects = r["stats"]["customers"]["objects"].as_u64().unwrap_or(0);
    // The emulator's account holds 12 customers, some of them deleted.
    assert!((1..=12).contains(&objects), "{r}");
    assert_eq!(
        r["stats"]["customers"]["inserted"].as_u64(),
        Some(objects),
        "{r}"
    );
    assert!(
        r["stats"]["invoices"]["objects"].as_u64().unwrap_or(0) > 0,
        "{r}"
    );
    assert!(r["totals"]["requests"].as_u64().unwrap_or(0) > 0, "{r}");

    let history = app.get(&format!("/api/configurations/{conf}/runs")).await?;
    assert_eq!(history.data().as_array().map(Vec::len), Some(1));
    assert_eq!(
        history.body["pagination"],
        json!({"page": 1, "limit": 20, "total": 1, "total_pages": 1})
    );
    assert_eq!(history.data()[0]["id"], json!(run));

    // A finished run cannot be canceled.
    let cancel = app
        .send(Method::POST, &format!("/api/runs/{run}/cancel"), None, None)
        .await?;
    assert_eq!(cancel.status, StatusCode::CONFLICT, "{}", cancel.body);
    assert_eq!(cancel.code(), "conflict");
    assert!(cancel.error().contains("already ended"));

    // The runner's counters reach /metrics through the recorder the server installed.
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await?
        .text()
        .await?;
    for series in [
        "cls_sync_runs_total{status=\"succeeded\"}",
        "cls_sync_objects_total{type=\"customers\"}",
        "cls_sync_run_duration_seconds",
        "cls_sync_runs_by_status{status=\"succeeded\"} 1",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from /metrics:\n{metrics}"
        );
    }

    // Never a secret in any answer of the flow.
    assert_no_secret_seen(&app);
    Ok(())
}

fn assert_no_secret_seen(app: &TestApp) {
    let seen = app.seen.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        seen.len() > 5,
        "the flow made too few requests to prove anything"
    );
    for body in seen.iter() {
        for secret in [FULL_KEY, LIMITED_KEY, SECRET_KEY, DB_PASSWORD, &app.token] {
            assert!(!body.contains(secret), "a response shows a secret: {body}");
        }
    }
}

#[tokio::test]
async fn secrets_never_appear_in_answers() -> TestResult {
    let emu = spawn_emulator(3, 2).await;
    let app = spawn_app(None).await;
    // An unreachable PostgreSQL with a password: created, listed, tested — always masked.
    let url = format!("postgres://cls:{DB_PASSWORD}@127.0.0.1:9/warehouse");
    let p = app
        .post(
            "/api/projects",
            json!({"name": "pg", "database_url": url, "kind": "postgres"}),
        )
        .await?;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    assert_eq!(
        p.data()["database_url"],
        json!("postgres://cls:***@127.0.0.1:9/warehouse")
    );
    let pid = p.id();
    app.get("/api/projects").await?;
    app.get(&format!("/api/projects/{pid}")).await?;
    let t = app
        .post(&format!("/api/projects/{pid}/test-connection"), json!({}))
        .await?;
    assert_eq!(t.data()["ok"], json!(false), "{}", t.body);
    assert!(!t.data()["message"].as_str().unwrap_or_default().is_empty());

    let c = app
        .configuration(pid, SECRET_KEY, &emu.base_url, &["customers"])
        .await?;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    assert_eq!(c.data()["key"]["kind"], json!("secret"));
    assert!(
        c.data()["warning"]
            .as_str()
            .unwrap_or_default()
            .contains("restricted key"),
        "{}",
        c.body
    );
    let cid = c.id();
    let w = app
        .patch(
            &format!("/api/configurations/{cid}"),
            json!({"webhook_secret": "whsec_supersecretvalue"}),
        )
        .await?;
    assert_eq!(w.data()["webhook_secret_set"], json!(true), "{}", w.body);
    assert!(!w.body.to_string().contains("whsec_supersecretvalue"));
    app.get("/api/configurations").await?;
    app.post(
        &format!("/api/configurations/{cid}/test-connection"),
        json!({}),
    )
    .await?;
    let k = app.post("/api/api-keys", json!({"name": "ci"})).await?;
    assert_eq!(k.status, StatusCode::CREATED, "{}", k.body);
    let new_token = k.data()["token"].as_str().unwrap_or_default().to_string();
    assert!(!new_token.is_empty());
    let listed = app.get("/api/api-keys").await?;
    assert!(
        !listed.body.to_string().contains(&new_token),
        "the token is shown only at creation"
    );
    // The new token works until revoked.
    let kid = k.id();
    let with_new = app
        .send(Method::GET, "/api/projects", None, Some(&new_token))
        .await?;
    assert_eq!(with_new.status, StatusCode::OK);
    let revoked = app.delete(&format!("/api/api-keys/{kid}")).await?;
    assert!(revoked.data()["revoked_at"].is_string(), "{}", revoked.body);
    let after = app
        .send(Method::GET, "/api/projects", None, Some(&new_token))
        .await?;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    // (Only the creation answer held the token; drop it before the sweep.)
    app.seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|b| !b.contains(&new_token));
    assert_no_secret_seen(&app);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() -> TestResult {
    let app = spawn_app(None).await;
    let project = app.sqlite_project().await?;
    let base = "http://127.0.0.1:9";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/projects",
            json!({"name": "x", "database_url": "mysql://u:p@h/db"}),
            "`database_url`",
        ),
        (
            "/api/projects",
            json!({"name": "x", "database_url": "sqlite://a.db", "kind": "postgres"}),
            "`kind`",
        ),
        (
            "/api/projects",
            json!({"name": "x", "database_url": "sqlite://a.db", "schema": "Bad;Name"}),
            "`schema`",
        ),
        (
            "/api/projects",
            json!({"name": "  ", "database_url": "sqlite://a.db"}),
            "`name`",
        ),
        (
            "/api/projects",
            json!({"database_url": "sqlite://a.db"}),
            "name",
        ),
        (
            "/api/configurations",
            json!({"name": "c", "project_id": project, "stripe_api_key": "pk_test_abcdefghijkl", "data_types": ["customers"]}),
            "`stripe_api_key`",
        ),
        (
            "/api/configurations",
            json!({"name": "c", "project_id": project, "stripe_api_key": FULL_KEY, "data_types": ["customers", "unicorns"]}),
            "`data_types`",
        ),
        (
            "/api/configurations",
            json!({"name": "c", "project_id": project, "stripe_api_key": FULL_KEY, "data_types": []}),
            "`data_types`",
        ),
        (
            "/api/configurations",
            json!({"name": "c", "project_id": project, "stripe_api_key": FULL_KEY, "data_types": ["customers"], "stripe_api_base": "ftp://x"}),
            "`stripe_api_base`",
        ),
        (
            "/api/configurations",
            json!({"name": "c", "project_id": project, "stripe_api_key": FULL_KEY, "data_types": ["customers"], "stripe_api_base": "not a url"}),
            "`stripe_api_base`",
        ),
        (
            "/api/configurations",
            json!({"name": "c", "project_id": 9999, "stripe_api_key": FULL_KEY, "data_types": ["customers"]}),
            "`project_id`",
        ),
    ];
    for (path, body, field) in cases {
        let a = app.post(path, body.clone()).await?;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert_eq!(a.code(), "invalid_request");
        let msg = a.error();
        assert!(msg.contains(field), "{body}: `{msg}` does not name {field}");
    }
    let unknown = app
        .post("/api/configurations", json!({"name": "c", "project_id": project, "stripe_api_key": FULL_KEY, "data_types": ["unicorns"]}))
        .await?;
    assert!(
        unknown.error().contains("customers, "),
        "the valid data types are listed"
    );

    let conf = app
        .configuration(project, FULL_KEY, base, &["customers"])
        .await?
        .id();
    for field in ["project_id", "data_types", "provider", "stripe_api_base"] {
        let a = app
            .patch(&format!("/api/configurations/{conf}"), json!({field: 1}))
            .await?;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{field}: {}", a.body);
        let msg = a.error();
        assert!(
            msg.starts_with(&format!("`{field}`")) && msg.contains("fixed after creation"),
            "{msg}"
        );
    }
    let a = app
        .patch(
            &format!("/api/configurations/{conf}"),
            json!({"stripe_api_key": "sk_live_"}),
        )
        .await?;
    assert!(a.error().contains("`stripe_api_key`"));

    for (query, field) in [
        ("page=0", "`page`"),
        ("page=x", "`page`"),
        ("limit=0", "`limit`"),
        ("limit=101", "`limit`"),
    ] {
        let a = app.get(&format!("/api/projects?{query}")).await?;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(a.error().starts_with(field), "{query}");
    }
    let a = app.get("/api/projects/abc").await?;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().starts_with("`id`"));

    for (cadence, field) in [
        (json!("sometimes"), "`cadence`"),
        (json!({"cron": "every day"}), "`cadence.cron`"),
    ] {
        let a = app
            .post(
                &format!("/api/configurations/{conf}/schedules"),
                json!({"cadence": cadence}),
            )
            .await?;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert!(a.error().starts_with(field), "{}", a.body);
    }
    let a = app
        .post(
            &format!("/api/configurations/{conf}/sync"),
            json!({"mode": "turbo"}),
        )
        .await?;
    assert!(a.error().starts_with("`mode`"), "{}", a.body);
    let a = app.send(Method::POST, "/api/projects", None, None).await?;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "a missing body: {}",
        a.body
    );
    a.error();
    Ok(())
}

#[tokio::test]
async fn missing_things_are_404s() -> TestResult {
    let app = spawn_app(None).await;
    for path in [
        "/api/projects/999",
        "/api/configurations/999",
        "/api/configurations/999/runs",
        "/api/configurations/999/schedules",
        "/api/runs/999",
        "/api/schedules/999",
        "/api/no-such-route",
    ] {
        let a = app.get(path).await?;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
        assert_eq!(a.code(), "not_found");
        a.error();
    }
    for (method, path) in [
        (Method::DELETE, "/api/projects/999"),
        (Method::DELETE, "/api/api-keys/999"),
        (Method::POST, "/api/runs/999/cancel"),
        (Method::POST, "/api/configurations/999/sync"),
        (Method::POST, "/api/projects/999/test-connection"),
    ] {
        let a = app.send(method.clone(), path, None, None).await?;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            a.body
        );
    }
    let a = app.send(Method::PUT, "/api/projects", None, None).await?;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    a.error();
    Ok(())
}

#[tokio::test]
async fn lists_are_paginated_and_crud_round_trips() -> TestResult {
    let app = spawn_app(None).await;
    for i in 0..5 {
        let a = app
            .post(
                "/api/projects",
                json!({"name": format!("p{i}"), "database_url": "sqlite://x.db"}),
            )
            .await?;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    let page = app.get("/api/projects?page=2&limit=2").await?;
    assert_eq!(page.body["success"], json!(true));
    assert_eq!(
        page.body["pagination"],
        json!({"page": 2, "limit": 2, "total": 5, "total_pages": 3})
    );
    let names: Vec<&str> = page
        .data()
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["p2", "p3"]);
    let beyond = app.get("/api/projects?page=9&limit=2").await?;
    assert_eq!(beyond.data(), &json!([]));

    let id = page.data()[0]["id"].as_i64().unwrap_or(-1);
    let changed = app
        .patch(
            &format!("/api/projects/{id}"),
            json!({"name": "renamed", "active": false}),
        )
        .await?;
    assert_eq!(changed.data()["name"], json!("renamed"));
    assert_eq!(changed.data()["active"], json!(false));
    assert!(changed.data()["paused"].is_string());
    let gone = app.delete(&format!("/api/projects/{id}")).await?;
    assert_eq!(gone.data(), &json!({"id": id, "deleted": true}));
    assert_eq!(
        app.get(&format!("/api/projects/{id}")).await?.status,
        StatusCode::NOT_FOUND
    );

    // Schedules: cron shape, patch, delete.
    let project = app.sqlite_project().await?;
    let conf = app
        .configuration(project, FULL_KEY, "http://127.0.0.1:9", &["customers"])
        .await?
        .id();
    let s = app
        .post(
            &format!("/api/configurations/{conf}/schedules"),
            json!({"cadence": {"cron": "0 3 * * *"}, "mode": "full"}),
        )
        .await?;
    assert_eq!(s.status, StatusCode::CREATED, "{}", s.body);
    assert_eq!(s.data()["cadence"], json!({"cron": "0 3 * * *"}));
    assert_eq!(s.data()["mode"], json!("full"));
    assert_eq!(s.data()["next_due_at"], json!("2026-03-03T03:00:00Z"));
    let sid = s.id();
    let p = app
        .patch(
            &format!("/api/schedules/{sid}"),
            json!({"cadence": "hourly", "active": false}),
        )
        .await?;
    assert_eq!(p.data()["cadence"], json!("hourly"));
    assert_eq!(p.data()["active"], json!(false));
    assert_eq!(p.data()["paused"], json!("paused: the schedule is paused"));
    let list = app
        .get(&format!("/api/configurations/{conf}/schedules"))
        .await?;
    assert_eq!(list.body["pagination"]["total"], json!(1));
    assert_eq!(
        app.delete(&format!("/api/schedules/{sid}")).await?.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/schedules/{sid}")).await?.status,
        StatusCode::NOT_FOUND
    );

    // Configurations filtered by project; a paused configuration cannot Sync Now.
    let filtered = app
        .get(&format!("/api/configurations?project_id={project}"))
        .await?;
    assert_eq!(filtered.body["pagination"]["total"], json!(1));
    app.patch(
        &format!("/api/configurations/{conf}"),
        json!({"active": false}),
    )
    .await?;
    let refused = app
        .send(
            Method::POST,
            &format!("/api/configurations/{conf}/sync"),
            None,
            None,
        )
        .await?;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(
        app.delete(&format!("/api/configurations/{conf}"))
            .await?
            .status,
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn a_queued_run_can_be_canceled_once() -> TestResult {
    let app = spawn_app(None).await;
    let project = app.sqlite_project().await?;
    let conf = app
        .configuration(project, FULL_KEY, "http://127.0.0.1:9", &["customers"])
        .await?
        .id();
    let sync = app
        .send(
            Method::POST,
            &format!("/api/configurations/{conf}/sync"),
            None,
            None,
        )
        .await?;
    let run = sync.data()["run_id"].as_i64().unwrap_or(-1);
    let canceled = app
        .send(Method::POST, &format!("/api/runs/{run}/cancel"), None, None)
        .await?;
    assert_eq!(canceled.status, StatusCode::OK, "{}", canceled.body);
    assert_eq!(canceled.data()["status"], json!("canceled"));
    let again = app
        .send(Method::POST, &format!("/api/runs/{run}/cancel"), None, None)
        .await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "conflict");
    // Nothing is left to run.
    assert!(app.runner.step().await?.executed.is_none());
    Ok(())
}

/// Every route the OpenAPI document lists refuses a request without a valid token, so a new
/// route cannot slip through unauthenticated.
#[tokio::test]
async fn every_documented_route_requires_a_token() -> TestResult {
    let app = spawn_app(None).await;
    let doc = app.get("/api/openapi.json").await?;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body["components"]["securitySchemes"]["bearer"].is_object(),
        "{}",
        doc.body
    );
    let paths = doc.body["paths"].as_object().cloned().unwrap_or_default();
    let mut checked = 0;
    for (path, item) in &paths {
        let concrete = path.replace("{id}", "1");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes())?;
            for auth in ["", "cls_not_a_real_token", "Basic"] {
                let a = app
                    .send(m.clone(), &concrete, Some(json!({})), Some(auth))
                    .await?;
                assert_eq!(
                    a.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} with {auth:?}: {}",
                    a.body
                );
                assert!(a
                    .headers
                    .get("www-authenticate")
                    .is_some_and(|v| v.as_bytes().starts_with(b"Bearer")));
                assert_eq!(a.code(), "unauthorized");
                a.error();
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 24,
        "only {checked} operations documented: {:?}",
        paths.keys()
    );
    // The document itself, and unknown routes, need a token too.
    for path in ["/api/openapi.json", "/api/no-such-route"] {
        let a = app.send(Method::GET, path, None, Some("")).await?;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn clients_are_rate_limited_with_headers() -> TestResult {
    let app = spawn_app(Some(3)).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let a = app.get("/api/projects").await?;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(
            a.headers
                .get("ratelimit-limit")
                .and_then(|v| v.to_str().ok()),
            Some("3")
        );
        assert!(a.headers.get("ratelimit-reset").is_some());
        remaining.push(
            a.headers
                .get("ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let refused = app.get("/api/projects").await?;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    let wait: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        refused
            .headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    // Unauthenticated requests count against the peer address, not the key (whose first
    // request, before the guard knew it, spent one of the address's too).
    let anon = app
        .send(Method::GET, "/api/projects", None, Some(""))
        .await?;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anon.headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // A client guessing tokens is refused once its address's allowance is spent, until it
    // refills.
    let a = app
        .send(Method::GET, "/api/projects", None, Some("cls_guess_guess"))
        .await?;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    for _ in 0..2 {
        let a = app
            .send(Method::GET, "/api/projects", None, Some("cls_guess_guess"))
            .await?;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert!(a.headers.get("retry-after").is_some());
        assert_eq!(a.code(), "rate_limited");
    }
    // Health and metrics are not limited.
    for _ in 0..5 {
        let r = app.http.get(format!("{}/healthz", app.base)).send().await?;
        assert_eq!(r.status(), StatusCode::OK);
    }
    Ok(())
}

/// Clients behind one address (a reverse proxy): bad tokens spend that address's allowance
/// only; a key already seen to authenticate is counted against the key and still served. A
/// key not seen yet spends one of the address's requests before it is checked, so a spent
/// address is answered 429 unchecked — a guesser gets no more (argon2) checks than its
/// allowance — until the address's allowance refills.
#[tokio::test]
async fn bad_tokens_from_an_address_do_not_refuse_a_valid_key_from_it() -> TestResult {
    let app = spawn_app(Some(3)).await;
    let first = app.get("/api/projects").await?;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let guess = format!("cls_00000000_{}", "a".repeat(40));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let a = app
            .send(Method::GET, "/api/projects", None, Some(&guess))
            .await?;
        statuses.push(a.status.as_u16());
    }
    // The valid key's first request spent one of the address's three.
    assert_eq!(statuses, [401, 401, 429, 429, 429]);
    let ok = app.get("/api/projects").await?;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        ok.headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok()),
        Some("1"),
        "a valid key has its own allowance"
    );
    // The guesser is still refused.
    let again = app
        .send(Method::GET, "/api/projects", None, Some(&guess))
        .await?;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        again.body
    );
    // A valid key never seen before is refused unchecked while the address is spent: had
    // it been checked, it would have been served.
    let (_, fresh) = app.store.create_api_token("new client").await?;
    let unchecked = app
        .send(
            Method::GET,
            "/api/projects",
            None,
            Some(fresh.expose_secret()),
        )
        .await?;
    assert_eq!(
        unchecked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        unchecked.body
    );
    Ok(())
}

/// The runner pauses a schedule because the project's database is unreachable ("…then Test
/// Connection to resume"); once the URL is fixed, the project's passing Test Connection
/// switches it on again. A pause for the key and a person's pause stay; a failing test
/// resumes nothing.
#[tokio::test]
async fn a_passing_project_test_resumes_schedules_paused_for_its_database() -> TestResult {
    let emu = spawn_emulator(5, 3).await;
    let app = spawn_app(None).await;
    let created = app
        .post(
            "/api/projects",
            json!({"name": "Warehouse", "database_url": format!("postgres://cls:{DB_PASSWORD}@127.0.0.1:1/nowhere")}),
        )
        .await?;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let project = created.id();
    let conf = app
        .configuration(project, FULL_KEY, &emu.base_url, &["customers"])
        .await?
        .id();
    let other = app
        .configuration(project, FULL_KEY, &emu.base_url, &["customers"])
        .await?
        .id();
    let mut schedules = Vec::new();
    for c in [conf, conf, other] {
        let s = app
            .post(
                &format!("/api/configurations/{c}/schedules"),
                json!({"cadence": "daily"}),
            )
            .await?;
        assert_eq!(s.status, StatusCode::CREATED, "{}", s.body);
        schedules.push(s.id());
    }
    let [by_database, by_person, by_key] = schedules[..] else {
        return Err("three schedules".into());
    };
    let off = app
        .patch(
            &format!("/api/schedules/{by_person}"),
            json!({"active": false}),
        )
        .await?;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    app.store
        .pause_schedule(
            ScheduleId(by_key),
            "Stripe rejected the key rk_test_…ator (revoked, expired or rolled): paste a current key, then Test Connection to resume",
        )
        .await?;

    // A run against the unreachable database: the runner pauses the schedule.
    let sync = app
        .post(&format!("/api/configurations/{conf}/sync"), json!({}))
        .await?;
    assert_eq!(sync.status, StatusCode::ACCEPTED, "{}", sync.body);
    let step = app.runner.step().await?;
    assert_eq!(step.executed.map(|e| e.paused.len()), Some(1));
    let paused = app.get(&format!("/api/schedules/{by_database}")).await?;
    assert_eq!(paused.data()["active"], json!(false), "{}", paused.body);
    let reason = paused.data()["paused_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("unreachable"), "{reason}");

    let path = format!("/api/projects/{project}/test-connection");
    let failed = app.post(&path, json!({})).await?;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.body);
    assert_eq!(failed.data()["ok"], json!(false), "{}", failed.body);
    assert_eq!(failed.data()["resumed_schedules"], json!([]));
    let still = app.get(&format!("/api/schedules/{by_database}")).await?;
    assert_eq!(still.data()["active"], json!(false));

    // The URL fixed: the test passes and lifts the database's pause only.
    let dest = format!("sqlite://{}", app.dir.path().join("dest.db").display());
    let fixed = app
        .patch(
            &format!("/api/projects/{project}"),
            json!({"database_url": dest}),
        )
        .await?;
    assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.body);
    let passed = app.post(&path, json!({})).await?;
    assert_eq!(passed.data()["ok"], json!(true), "{}", passed.body);
    assert_eq!(passed.data()["resumed_schedules"], json!([by_database]));
    assert!(
        passed.data()["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 schedule(s)")),
        "{}",
        passed.body
    );
    let resumed = app.get(&format!("/api/schedules/{by_database}")).await?;
    assert_eq!(resumed.data()["active"], json!(true), "{}", resumed.body);
    assert_eq!(resumed.data()["paused_reason"], Value::Null);
    for (id, reason) in [(by_person, Value::Null), (by_key, json!("Stripe rejected the key rk_test_…ator (revoked, expired or rolled): paste a current key, then Test Connection to resume"))] {
        let s = app.get(&format!("/api/schedules/{id}")).await?;
        assert_eq!(s.data()["active"], json!(false), "{}", s.body);
        assert_eq!(s.data()["paused_reason"], reason, "{}", s.body);
    }
    assert_no_secret_seen(&app);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_token() -> TestResult {
    let app = spawn_app(None).await;
    let project = app.sqlite_project().await?;
    let conf = app
        .configuration(project, FULL_KEY, "http://127.0.0.1:9", &["customers"])
        .await?
        .id();
    app.send(
        Method::POST,
        &format!("/api/configurations/{conf}/sync"),
        None,
        None,
    )
    .await?;

    let h = app.send(Method::GET, "/healthz", None, Some("")).await?;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body, json!({"success": true, "data": {"status": "ok"}}));
    let r = app.send(Method::GET, "/readyz", None, Some("")).await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let m = app.http.get(format!("{}/metrics", app.base)).send().await?;
    assert_eq!(m.status(), StatusCode::OK);
    let text = m.text().await?;
    assert!(
        text.contains("# TYPE cls_sync_runs_by_status gauge"),
        "{text}"
    );
    assert!(
        text.contains("cls_sync_runs_by_status{status=\"queued\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("cls_sync_runs_by_status{status=\"succeeded\"} 0"),
        "{text}"
    );
    assert!(text.contains("cls_state_store_up 1"), "{text}");
    assert!(
        text.contains("cls_api_requests_total{method=\"POST\",route=\"/api/configurations/{id}/sync\",status=\"202\"}"),
        "{text}"
    );
    Ok(())
}

/// The same story with the state in PostgreSQL; readiness fails once the database is gone.
#[tokio::test]
async fn postgres_state_serves_the_flow_and_readiness_follows_it() -> TestResult {
    let db = TestDb::new().await;
    let url = StateUrl::parse(&db.url)?;
    let store = PostgresStore::open(&url, MasterKey::generate()).await?;
    let dir = tempfile::tempdir()?;
    let app = spawn_app_with(Arc::new(store), dir, None).await;
    let emu = spawn_emulator(11, 5).await;

    let project = app.sqlite_project().await?;
    let conf = app
        .configuration(project, FULL_KEY, &emu.base_url, &["customers"])
        .await?;
    assert_eq!(conf.status, StatusCode::CREATED, "{}", conf.body);
    let sync = app
        .send(
            Method::POST,
            &format!("/api/configurations/{}/sync", conf.id()),
            None,
            None,
        )
        .await?;
    let run = sync.data()["run_id"].as_i64().unwrap_or(-1);
    app.runner.step().await?;
    let done = app.get(&format!("/api/runs/{run}")).await?;
    assert_eq!(done.data()["status"], json!("succeeded"), "{}", done.body);
    assert!(
        done.data()["stats"]["customers"]["objects"]
            .as_u64()
            .unwrap_or(0)
            >= 5
    );
    assert_eq!(
        app.send(Method::GET, "/readyz", None, Some(""))
            .await?
            .status,
        StatusCode::OK
    );

    db.drop_now().await;
    let r = app.send(Method::GET, "/readyz", None, Some("")).await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.code(), "unavailable");
    Ok(())
}

/// Sync Now during a run queues one run behind it and says so; cancelling the running run
/// asks its worker to stop.
#[tokio::test]
async fn sync_now_during_a_run_says_it_waits_and_a_running_run_is_asked_to_stop() -> TestResult {
    let app = spawn_app(None).await;
    let project = app.sqlite_project().await?;
    let conf = app
        .configuration(project, FULL_KEY, "http://127.0.0.1:9", &["customers"])
        .await?
        .id();
    let path = format!("/api/configurations/{conf}/sync");
    let sync = |body: Option<Value>| app.send(Method::POST, &path, body, None);
    let first = sync(None).await?.data()["run_id"].as_i64().unwrap_or(-1);
    // A worker claims it: the run is now running.
    let claimed = app
        .store
        .claim_next_run(Utc::now(), "test-worker", chrono::Duration::minutes(5))
        .await?;
    assert_eq!(claimed.map(|r| r.id.0), Some(first));

    let second = sync(Some(json!({"mode": "full"}))).await?;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.body);
    let d = second.data();
    assert_ne!(d["run_id"], json!(first));
    assert_eq!(d["queued_behind"], json!(first));
    assert_eq!(d["mode"], json!("full"));
    let message = d["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "run {first} of this configuration is still running"
        )),
        "{message}"
    );

    let cancel = app
        .send(
            Method::POST,
            &format!("/api/runs/{first}/cancel"),
            None,
            None,
        )
        .await?;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.body);
    assert_eq!(cancel.data()["status"], json!("running"));
    assert_eq!(cancel.data()["cancel_requested"], json!(true));
    Ok(())
}

#[tokio::test]
async fn unknown_fields_and_non_json_bodies_are_refused() -> TestResult {
    let app = spawn_app(None).await;
    let a = app
        .post(
            "/api/projects",
            json!({"name": "x", "database_url": "sqlite://x.db", "colour": "red"}),
        )
        .await?;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("colour"), "{}", a.body);
    let a = app
        .post(
            "/api/projects",
            json!({"name": 5, "database_url": "sqlite://x.db"}),
        )
        .await?;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("name"), "{}", a.body);
    let raw = app
        .http
        .post(format!("{}/api/projects", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    let body: Value = raw.json().await?;
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["error"]["code"], json!("invalid_request"));
    Ok(())
}

/// A database where cls may not create tables fails the test and comes with the SQL to
/// create them by hand.
#[tokio::test]
async fn a_read_only_database_gets_the_create_table_sql() -> TestResult {
    let app = spawn_app(None).await;
    let rw = app.sqlite_project().await?;
    // Creates the file.
    let made = app
        .post(&format!("/api/projects/{rw}/test-connection"), json!({}))
        .await?;
    assert_eq!(made.data()["ok"], json!(true), "{}", made.body);
    let url = format!(
        "sqlite://{}?mode=ro",
        app.dir.path().join("dest.db").display()
    );
    let ro = app
        .post(
            "/api/projects",
            json!({"name": "read-only", "database_url": url}),
        )
        .await?
        .id();
    let conf = app
        .configuration(ro, FULL_KEY, "http://127.0.0.1:9", &["customers"])
        .await?
        .id();
    let check = app
        .post(
            &format!("/api/configurations/{conf}/test-connection"),
            json!({}),
        )
        .await?;
    let db = &check.data()["database"];
    assert_eq!(db["ok"], json!(false), "{}", check.body);
    let sql = db["create_tables_sql"].as_str().unwrap_or_default();
    assert!(
        sql.contains("CREATE TABLE") && sql.contains("customers"),
        "{}",
        check.body
    );
    Ok(())
}

/// Stripe Connect's option: off unless asked, set at creation, switched by PATCH.
#[tokio::test]
async fn connected_accounts_are_opt_in_and_switchable() -> TestResult {
    let app = spawn_app(None).await;
    let project = app.sqlite_project().await?;
    let plain = app
        .configuration(project, FULL_KEY, "http://127.0.0.1:9", &["customers"])
        .await?;
    assert_eq!(plain.data()["include_connected_accounts"], json!(false));
    let platform = app
        .post(
            "/api/configurations",
            json!({"name": "Platform", "project_id": project, "stripe_api_key": FULL_KEY,
                   "data_types": ["customers"], "include_connected_accounts": true}),
        )
        .await?;
    assert_eq!(platform.status, StatusCode::CREATED, "{}", platform.body);
    assert_eq!(platform.data()["include_connected_accounts"], json!(true));
    let id = platform.id();
    let off = app
        .patch(
            &format!("/api/configurations/{id}"),
            json!({"include_connected_accounts": false}),
        )
        .await?;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.data()["include_connected_accounts"], json!(false));
    let read = app
        .send(
            Method::GET,
            &format!("/api/configurations/{id}"),
            None,
            None,
        )
        .await?;
    assert_eq!(read.data()["include_connected_accounts"], json!(false));
    let bad = app
        .patch(
            &format!("/api/configurations/{id}"),
            json!({"include_connected_accounts": "yes"}),
        )
        .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    Ok(())
}
