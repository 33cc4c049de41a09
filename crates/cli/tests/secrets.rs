//! One test runs every flow a secret passes through — the CLI (`cls check`, `cls sync`, their
//! failures), `cls serve`'s REST API (create, Test Connection, Sync Now, failures), its webhook
//! receiver (genuine and forged deliveries), and the dashboard (sign-in, every page, Test
//! Connection, key rotation) — then searches everything a person or an attacker with the files
//! could read: the server's log (JSON, debug level), the CLI's output, every HTTP answer, the
//! state database's files and every table of the destination database. The Stripe keys, the
//! webhook secret and the database password used must appear nowhere.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The restricted key the emulator accepts.
const KEY: &str = "rk_test_cls_emulator";
/// The emulator's secret key, pasted in the dashboard to rotate the configuration's key.
const SECRET_KEY: &str = "sk_test_cls_emulator";
/// A well-formed key Stripe (the emulator) rejects: the error paths.
const WRONG_KEY: &str = "rk_test_51WrongKeyForTheSecretsTest0000abcd";
/// The configuration's webhook signing secret.
const WEBHOOK_SECRET: &str = "whsec_secretsTestSigningSecret0123456789";
/// The destination's password (PostgreSQL here trusts local connections, so any password
/// connects; it must still never be shown or stored in plain text).
const DB_PASSWORD: &str = "pw-SecretsTest-9f3Kq";

const SECRETS: [&str; 5] = [KEY, SECRET_KEY, WRONG_KEY, WEBHOOK_SECRET, DB_PASSWORD];

/// Everything readable the flows produced, searched at the end.
#[derive(Default)]
struct Evidence(Vec<(String, String)>);

impl Evidence {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn assert_clean(&self) {
        for (what, text) in &self.0 {
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "`{secret}` appears in {what}:\n{}",
                    excerpt(text, secret)
                );
            }
        }
    }
}

/// The lines around a secret's first appearance.
fn excerpt(text: &str, secret: &str) -> String {
    let at = text.find(secret).unwrap_or(0);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[start..end].chars().take(600).collect()
}

fn with_password(url: &str) -> String {
    let mut u = url::Url::parse(url).expect("a database URL");
    u.set_password(Some(DB_PASSWORD)).expect("takes a password");
    u.to_string()
}

/// An HTTP client that keeps cookies and does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the page carries a CSRF token: {page}"))
        .to_string()
}

async fn text_of(resp: reqwest::Response, evidence: &mut Evidence, what: &str) -> (u16, String) {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    evidence.add(what, body.clone());
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flow_leaves_a_secret_in_plain_text() {
    let emulator = cls_testkit::emulator::spawn_emulator(23, 12).await;
    let dest = common::Db::pg().await;
    let dest_url = with_password(&dest.url());
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("data");
    let data_arg = data_dir.display().to_string();
    let mut evidence = Evidence::default();

    // --- The CLI: Test Connection, a sync, and their failures.
    let cli_env = |key: &'static str, db: String| {
        vec![
            ("STRIPE_API_KEY", key.to_string()),
            ("DATABASE_URL", db),
            ("CLS_STRIPE_API_BASE", emulator.base_url.clone()),
            ("RUST_LOG", "debug".to_string()),
        ]
    };
    let unreachable = format!("postgres://someone:{DB_PASSWORD}@127.0.0.1:1/nowhere");
    for (args, key, db, ok) in [
        (vec!["check"], KEY, dest_url.clone(), true),
        (
            vec!["sync", "--types", "customers", "--schema", "cli_copy"],
            KEY,
            dest_url.clone(),
            true,
        ),
        (
            vec!["sync", "--types", "customers", "--schema", "cli_copy"],
            WRONG_KEY,
            dest_url.clone(),
            false,
        ),
        (vec!["check"], KEY, unreachable.clone(), false),
        (
            vec!["sync", "--types", "customers"],
            SECRET_KEY,
            unreachable.clone(),
            false,
        ),
    ] {
        let env = cli_env(key, db);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = common::cls(&args, &env).await;
        assert_eq!(
            out.status.success(),
            ok,
            "cls {args:?}: {}",
            common::text(&out)
        );
        evidence.add(format!("the output of cls {args:?}"), common::text(&out));
    }

    // --- cls serve, with a debug-level JSON log.
    let out = common::cls(
        &[
            "admin",
            "create-api-key",
            "--data-dir",
            &data_arg,
            "--name",
            "t",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", common::text(&out));
    evidence.add("cls admin create-api-key's output", common::text(&out));
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let log_path = dir.path().join("serve.log");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--port",
            "0",
            "--data-dir",
            &data_arg,
        ])
        .args([
            "--stripe-api-base",
            &emulator.base_url,
            "--grace-seconds",
            "10",
        ])
        .env("RUST_LOG", "debug")
        .env_remove("CLS_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(&log_path).expect("a log file"),
        ))
        .kill_on_drop(true)
        .spawn()
        .expect("cls serve starts");
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("cls serve prints its address")
        .expect("readable")
        .expect("a line");
    let base = first
        .strip_prefix("listening on ")
        .expect("the address line")
        .to_string();
    let http = reqwest::Client::new();
    let api = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}/api{path}"))
            .bearer_auth(&token)
    };

    // --- The REST API: the flow and its failures.
    let (status, body) = text_of(
        api(reqwest::Method::POST, "/projects")
            .json(&json!({"name": "warehouse", "database_url": dest_url}))
            .send()
            .await
            .expect("answers"),
        &mut evidence,
        "POST /api/projects",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let project: Value = serde_json::from_str(&body).expect("JSON");
    let project_id = project["data"]["id"].clone();
    let mut configuration_ids = Vec::new();
    for key in [KEY, WRONG_KEY] {
        let (status, body) = text_of(
            api(reqwest::Method::POST, "/configurations")
                .json(
                    &json!({"name": format!("with {}", &key[..8]), "project_id": project_id,
                              "stripe_api_key": key, "data_types": ["customers", "invoices"],
                              "webhook_secret": WEBHOOK_SECRET}),
                )
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            "POST /api/configurations",
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        configuration_ids.push(v["data"]["id"].as_i64().expect("an id"));
    }
    // Refused input echoing secrets back would be a leak too.
    for bad in [
        json!({"name": "x", "project_id": project_id, "stripe_api_key": format!("{KEY}\u{7}"), "data_types": ["customers"]}),
        json!({"name": "x", "project_id": project_id, "stripe_api_key": KEY, "data_types": ["customers"], "webhook_secret": format!("{WEBHOOK_SECRET}\u{1}")}),
    ] {
        let (status, answer) = text_of(
            api(reqwest::Method::POST, "/configurations")
                .json(&bad)
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            "a refused POST /api/configurations",
        )
        .await;
        assert_eq!(status, 400, "{answer}");
    }
    let (status, _) = text_of(
        api(reqwest::Method::POST, "/projects")
            .json(
                &json!({"name": "bad", "database_url": format!("postgres://u:{DB_PASSWORD}@[bad")}),
            )
            .send()
            .await
            .expect("answers"),
        &mut evidence,
        "a refused POST /api/projects",
    )
    .await;
    assert_eq!(status, 400);
    let mut run_ids = Vec::new();
    for id in &configuration_ids {
        text_of(
            api(
                reqwest::Method::POST,
                &format!("/configurations/{id}/test-connection"),
            )
            .send()
            .await
            .expect("answers"),
            &mut evidence,
            "Test Connection",
        )
        .await;
        let (_, body) = text_of(
            api(reqwest::Method::POST, &format!("/configurations/{id}/sync"))
                .json(&json!({"mode": "full"}))
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            "Sync Now",
        )
        .await;
        let v: Value = serde_json::from_str(&body).expect("JSON");
        run_ids.push(v["data"]["run_id"].as_i64().expect("a run id"));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut statuses = Vec::new();
    for run in &run_ids {
        loop {
            let (_, body) = text_of(
                api(reqwest::Method::GET, &format!("/runs/{run}"))
                    .send()
                    .await
                    .expect("answers"),
                &mut evidence,
                "GET /api/runs/{id}",
            )
            .await;
            let v: Value = serde_json::from_str(&body).expect("JSON");
            let status = v["data"]["status"].as_str().unwrap_or_default().to_string();
            if status != "queued" && status != "running" {
                statuses.push(status);
                break;
            }
            assert!(Instant::now() < deadline, "run {run} did not end");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        statuses,
        ["succeeded", "failed"],
        "the good key syncs, the rejected one fails"
    );
    for path in ["/projects", "/configurations", "/openapi.json"] {
        text_of(
            api(reqwest::Method::GET, path)
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            path,
        )
        .await;
    }

    // --- Webhooks: a genuine delivery and a forged one.
    let secret = cls_server::WebhookSecret::parse(WEBHOOK_SECRET).expect("a secret");
    let customer = common::export(&emulator.base_url).await["customer"]
        .values()
        .find(|o| !common::is_deleted(o))
        .cloned()
        .expect("a customer");
    let event = json!({"id": "evt_secrets_1", "object": "event", "type": "customer.updated",
                       "created": chrono::Utc::now().timestamp() + 5, "data": {"object": customer}});
    let body = serde_json::to_vec(&event).expect("JSON");
    for (signature, expect) in [
        (
            cls_server::webhook::sign(&body, &secret, chrono::Utc::now().timestamp()),
            200,
        ),
        ("t=1,v1=00".to_string(), 400),
    ] {
        let (status, answer) = text_of(
            http.post(format!("{base}/webhooks/stripe/{}", configuration_ids[0]))
                .header("stripe-signature", signature)
                .body(body.clone())
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            "a webhook answer",
        )
        .await;
        assert_eq!(status, expect, "{answer}");
    }

    // --- The dashboard: sign in, every page, Test Connection, key rotation.
    let log = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    let password = log
        .split("password `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("serve printed the admin's one-time password")
        .to_string();
    let b = browser();
    let (_, login) = text_of(
        b.get(format!("{base}/login"))
            .send()
            .await
            .expect("answers"),
        &mut evidence,
        "/login",
    )
    .await;
    let (status, _) = text_of(
        b.post(format!("{base}/login"))
            .form(&[
                ("username", "admin"),
                ("password", &password),
                ("csrf", &csrf_of(&login)),
            ])
            .send()
            .await
            .expect("answers"),
        &mut evidence,
        "POST /login",
    )
    .await;
    assert_eq!(status, 303, "signed in");
    let c = configuration_ids[0];
    let mut csrf = String::new();
    for path in [
        "/".to_string(),
        "/projects".to_string(),
        format!("/projects/{project_id}"),
        "/configurations".to_string(),
        format!("/configurations/{c}"),
        format!("/configurations/{c}/runs"),
        format!("/runs/{}", run_ids[0]),
        format!("/runs/{}", run_ids[1]),
        "/settings".to_string(),
    ] {
        let (status, page) = text_of(
            b.get(format!("{base}{path}"))
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            &path,
        )
        .await;
        assert_eq!(status, 200, "{path}");
        csrf = csrf_of(&page);
    }
    for (path, form) in [
        (
            format!("/configurations/{c}/check"),
            vec![("csrf", csrf.clone())],
        ),
        (
            format!("/configurations/{c}/key"),
            vec![("csrf", csrf.clone()), ("key", SECRET_KEY.to_string())],
        ),
        (
            format!("/configurations/{c}/key"),
            vec![("csrf", csrf.clone()), ("key", WRONG_KEY.to_string())],
        ),
    ] {
        let (status, _) = text_of(
            b.post(format!("{base}{path}"))
                .form(&form)
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            &path,
        )
        .await;
        assert!(status == 200 || status == 303, "{path}: {status}");
        let (_, page) = text_of(
            b.get(format!("{base}/configurations/{c}"))
                .send()
                .await
                .expect("answers"),
            &mut evidence,
            "the configuration page after a form",
        )
        .await;
        assert_eq!(csrf_of(&page), csrf, "one CSRF token per session");
    }

    // --- Stop, then search everything.
    let pid = server.id().expect("running");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let exit = tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert!(exit.success(), "{exit}");
    let log = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "the log is at debug level, the most a leak could reach"
    );
    evidence.add("the server's log", log);
    evidence.add("the state database", state_files(&data_dir));
    evidence.add("the destination's tables", dump(&dest.url()).await);
    evidence.assert_clean();

    dest.finish().await;
    emulator.shutdown().await;
}

/// The state database's files (the database and its write-ahead log), as text.
fn state_files(data_dir: &Path) -> String {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data_dir)
        .expect("the data folder")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("state.db") {
            bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    assert!(
        !bytes.is_empty(),
        "the state database is in the data folder"
    );
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every row of every table outside PostgreSQL's own schemas, as text.
async fn dump(url: &str) -> String {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select table_schema, table_name from information_schema.tables \
         where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'",
    )
    .fetch_all(&pool)
    .await
    .expect("list tables");
    assert!(tables.len() >= 4, "the syncs made tables: {tables:?}");
    let mut all = String::new();
    for (schema, table) in tables {
        let sql = format!(
            "select coalesce(string_agg(t::text, E'\\n'), '') from \"{}\".\"{}\" t",
            schema.replace('"', "\"\""),
            table.replace('"', "\"\"")
        );
        let rows: String = sqlx::query_scalar(&sql)
            .fetch_one(&pool)
            .await
            .expect("dump a table");
        all.push_str(&rows);
        all.push('\n');
    }
    pool.close().await;
    all
}
