//! The API answers as its OpenAPI document says, for the cases Schemathesis
//! (`scripts/schemathesis.sh`) found it did not: each one a regression test here, driven from
//! the document served at `GET /api/openapi.json` so a route added later is covered too.
//!
//! State is SQLite in a temp directory; no Stripe and no destination are reached.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use cls_control::{ManualClock, MasterKey, Runner, RunnerConfig, SqliteStore, StateUrl, Store};
use cls_server::{app, install_metrics_recorder, serve, AppState};
use secrecy::ExposeSecret;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct TestApp {
    base: String,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> Result<TestApp, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let url = StateUrl::parse(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url, MasterKey::generate()).await?);
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0)
            .single()
            .ok_or("a valid time")?,
    ));
    let runner = Runner::with_config(store.clone(), clock.clone(), RunnerConfig::default());
    let metrics = install_metrics_recorder()?;
    let state = AppState::new(store.clone(), runner, clock, metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(serve(listener, app(state), std::future::pending()));
    let (_, secret) = store.create_api_token("tests").await?;
    Ok(TestApp {
        base,
        token: secret.expose_secret().to_string(),
        http: reqwest::Client::new(),
        _dir: dir,
    })
}

/// Every operation in the document: (method, path template, documented statuses).
fn operations(doc: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let statuses = op["responses"]
                .as_object()
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            out.push((method.clone(), path.clone(), statuses));
        }
    }
    out
}

/// Schemathesis sent `9223372036854775808` (one past `int64`'s maximum) as a path id: the
/// server refused it with a `400` that no route with a path id documented.
#[tokio::test]
async fn a_path_id_that_is_not_an_int64_gets_a_documented_400() -> TestResult {
    let app = spawn_app().await?;
    let doc: Value = app
        .http
        .get(format!("{}/api/openapi.json", app.base))
        .bearer_auth(&app.token)
        .send()
        .await?
        .json()
        .await?;
    let mut tried = 0;
    for (method, path, statuses) in operations(&doc) {
        if !path.contains("{id}") {
            continue;
        }
        for bad in ["9223372036854775808", "-9223372036854775809", "abc", "1.5"] {
            let url = format!("{}{}", app.base, path.replace("{id}", bad));
            let resp = app
                .http
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes())?,
                    url,
                )
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await?;
            assert_eq!(status, 400, "{method} {path} with id {bad}: {body}");
            assert_eq!(body["error"]["code"], "invalid_request", "{body}");
            assert!(
                statuses.iter().any(|s| s == "400"),
                "{method} {path} answers 400 to a bad id but documents only {statuses:?}"
            );
            tried += 1;
        }
    }
    assert!(
        tried >= 4 * 14,
        "only {tried} requests: the document lost its id routes?"
    );
    Ok(())
}
