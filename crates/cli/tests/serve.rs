//! `cls serve` end to end, as a user runs it: the real binary on a free port, state in SQLite
//! under a data folder, the in-process Stripe emulator, a PostgreSQL destination — driven only
//! through the REST API with a key made by `cls admin create-api-key`. It checks the whole
//! flow (project → configuration → Test Connection → Sync Now → run succeeded → rows equal the
//! emulator's export), that a graceful shutdown exits cleanly, and that neither the Stripe key
//! nor the database password is anywhere in plain text: not in the state database, the logs,
//! nor any API response.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_live_rows_equal_export, export, Db};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The restricted key the emulator accepts with every read permission.
const KEY: &str = "rk_test_cls_emulator";
/// The password put in the destination's URL (PostgreSQL here trusts local connections, so
/// any password connects; it must still never be stored or shown in plain text).
const DB_PASSWORD: &str = "pw-E2e7Serve0Secret";
/// The configuration's webhook signing secret.
const WEBHOOK_SECRET: &str = "whsec_e2eServeSigningSecret0123456";

/// A running `cls serve`, with its stderr going to a file in the data folder.
struct Server {
    child: tokio::process::Child,
    base: String,
    log: std::path::PathBuf,
}

impl Server {
    async fn start(data_dir: &Path, api_base: &str) -> Server {
        let log = data_dir.join("serve.log");
        let log_file = std::fs::File::create(&log).expect("a log file");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"))
            .args([
                "--log-format",
                "json",
                "serve",
                "--port",
                "0",
                "--data-dir",
                &data_dir.display().to_string(),
                "--stripe-api-base",
                api_base,
                "--grace-seconds",
                "20",
            ])
            .env("RUST_LOG", "info")
            .env_remove("CLS_MASTER_KEY")
            .env_remove("CLS_STATE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("cls serve starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "cls serve printed no address within a minute; log:\n{}",
                    read(&log)
                )
            })
            .expect("stdout readable")
            .unwrap_or_else(|| panic!("cls serve exited before listening; log:\n{}", read(&log)));
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line `{first}`"))
            .to_string();
        Server { child, base, log }
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(mut self) -> String {
        let pid = self.child.id().expect("still running");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("cls serve stops within a minute of SIGTERM")
            .expect("wait works");
        let log = read(&self.log);
        assert!(
            status.success(),
            "cls serve exited with {status}; log:\n{log}"
        );
        log
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Every response body the test saw, to search for secrets at the end.
#[derive(Default)]
struct Seen(Vec<String>);

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        seen: &mut Seen,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/api{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a body");
        seen.0.push(text.clone());
        let value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, value)
    }
}

fn data(v: &Value) -> &Value {
    assert_eq!(v["success"], json!(true), "{v}");
    &v["data"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_api_flow_syncs_exactly_and_keeps_secrets() {
    let emulator = cls_testkit::emulator::spawn_emulator(11, 25).await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("data");
    let dest = Db::pg().await;
    let mut dest_url = url::Url::parse(&dest.url()).expect("the test database URL parses");
    dest_url
        .set_password(Some(DB_PASSWORD))
        .expect("a PostgreSQL URL takes a password");
    let dest_url = dest_url.to_string();

    // An API key, made by the admin command before the server starts.
    let data_arg = data_dir.display().to_string();
    let out = common::cls(
        &[
            "admin",
            "create-api-key",
            "--data-dir",
            &data_arg,
            "--name",
            "e2e",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", common::text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        token.starts_with("cls_"),
        "the last line is the token: {stdout}"
    );

    let server = Server::start(&data_dir, &emulator.base_url).await;
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token,
    };
    let mut seen = Seen::default();

    let (status, project) = api
        .call(
            &mut seen,
            reqwest::Method::POST,
            "/projects",
            Some(json!({"name": "warehouse", "database_url": dest_url})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let project_id = data(&project)["id"].clone();

    let (status, tested) = api
        .call(
            &mut seen,
            reqwest::Method::POST,
            &format!("/projects/{project_id}/test-connection"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    // Test Connection answers 200 whether or not it passed: the body tells.
    assert_eq!(data(&tested)["ok"], json!(true), "{tested}");

    let types = [
        "customers",
        "products",
        "prices",
        "invoices",
        "subscriptions",
    ];
    let (status, configuration) = api
        .call(
            &mut seen,
            reqwest::Method::POST,
            "/configurations",
            Some(json!({
                "name": "stripe test",
                "project_id": project_id,
                "stripe_api_key": KEY,
                "data_types": types,
                "webhook_secret": WEBHOOK_SECRET,
            })),
        )
        .await;
    assert_eq!(status, 201, "{configuration}");
    let c = data(&configuration);
    assert_eq!(c["key"]["kind"], json!("restricted"), "{c}");
    assert_eq!(c["key"]["mode"], json!("test"), "{c}");
    let configuration_id = c["id"].clone();

    let (status, check) = api
        .call(
            &mut seen,
            reqwest::Method::POST,
            &format!("/configurations/{configuration_id}/test-connection"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(data(&check)["ok"], json!(true), "{check}");
    assert_eq!(data(&check)["database"]["ok"], json!(true), "{check}");

    let (status, queued) = api
        .call(
            &mut seen,
            reqwest::Method::POST,
            &format!("/configurations/{configuration_id}/sync"),
            Some(json!({"mode": "full"})),
        )
        .await;
    assert!(status == 200 || status == 202, "{queued}");
    let run_id = data(&queued)["run_id"].clone();

    // The server's own workers pick the run up; wait for it to end.
    let deadline = Instant::now() + Duration::from_secs(180);
    let run = loop {
        let (status, run) = api
            .call(
                &mut seen,
                reqwest::Method::GET,
                &format!("/runs/{run_id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{run}");
        let state = data(&run)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !matches!(state.as_str(), "queued" | "running") {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} still {state} after 3 minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = data(&run).clone();
    assert_eq!(run["status"], json!("succeeded"), "{run}");

    let (status, history) = api
        .call(
            &mut seen,
            reqwest::Method::GET,
            &format!("/configurations/{configuration_id}/runs"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        data(&history).as_array().map(Vec::len),
        Some(1),
        "{history}"
    );

    let (status, metrics_text) = {
        let resp = api
            .http
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .expect("metrics answer");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    };
    assert_eq!(status, 200);
    assert!(
        metrics_text.contains("cls_sync_runs_total"),
        "{metrics_text}"
    );

    let exported = export(&emulator.base_url).await;
    for name in types {
        let t = cls_catalog::find(name).expect("a catalog type");
        assert_live_rows_equal_export(t, dest.table(t.table()).await.as_ref(), &exported);
    }

    // A webhook delivery for this configuration lands in its database at once.
    let customers = &exported["customer"];
    let (customer_id, customer) = customers
        .iter()
        .find(|(_, o)| !common::is_deleted(o))
        .expect("a live customer");
    let mut renamed = customer.clone();
    renamed["name"] = json!("Renamed By Webhook");
    let event = json!({
        "id": "evt_e2e_webhook",
        "object": "event",
        "type": "customer.updated",
        "created": chrono::Utc::now().timestamp() + 5,
        "livemode": false,
        "data": {"object": renamed},
    });
    let body = serde_json::to_vec(&event).expect("JSON");
    let secret = cls_server::WebhookSecret::parse(WEBHOOK_SECRET).expect("a valid secret");
    let signature = cls_server::webhook::sign(&body, &secret, chrono::Utc::now().timestamp());
    let resp = api
        .http
        .post(format!("{}/webhooks/stripe/{configuration_id}", api.base))
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{text}");
    seen.0.push(text);
    let rows = dest.table("customers").await.expect("the customers table");
    assert_eq!(rows[customer_id].0["name"], json!("Renamed By Webhook"));

    let log = server.stop().await;

    // No secret in plain text anywhere the user or an attacker with the files could look.
    let mut state = Vec::new();
    for entry in std::fs::read_dir(&data_dir).expect("the data folder") {
        let path = entry.expect("an entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("state.db"))
        {
            state.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    assert!(
        !state.is_empty(),
        "the state database is in the data folder"
    );
    let state = String::from_utf8_lossy(&state);
    for secret in [KEY, DB_PASSWORD, WEBHOOK_SECRET] {
        assert!(
            !state.contains(secret),
            "the state database holds `{secret}` in plain text"
        );
        assert!(!log.contains(secret), "the log holds `{secret}`");
        for body in &seen.0 {
            assert!(
                !body.contains(secret),
                "an API response holds `{secret}`: {body}"
            );
        }
    }
    assert!(
        log.contains("run"),
        "the JSON log says something about the run:\n{log}"
    );

    dest.finish().await;
    emulator.shutdown().await;
}
