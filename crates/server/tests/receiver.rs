//! `cls serve`'s per-configuration webhook endpoints over real HTTP: a signed delivery is
//! applied to the configuration's own database; a forged one, one for an unknown
//! configuration and one for a configuration without a secret are refused and write nothing;
//! a paused configuration acknowledges without writing; a rotated secret takes effect.

use std::sync::Arc;

use chrono::Utc;
use cls_control::{
    Configuration, ConfigurationPatch, MasterKey, NewConfiguration, NewProject, Project,
    SqliteStore, StateUrl, Store,
};
use cls_destination::DatabaseUrl;
use cls_server::webhook::{sign, WebhookSecret};
use cls_stripe::ApiKey;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::Row;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SECRET: &str = "whsec_receiverTestSecret0123456789";

/// The customer named `name` as a `customer.updated` event. Each event id `evt_aN` is created
/// N seconds after the first, so later events are newer: events of one second cannot be
/// ordered from webhooks alone, and the receiver rightly keeps the first it saw.
fn event(id: &str, customer: &Value, name: &str) -> Value {
    let n: i64 = id.trim_start_matches("evt_a").parse().unwrap_or(0);
    let mut object = customer.clone();
    object["name"] = json!(name);
    json!({
        "id": id,
        "object": "event",
        "type": "customer.updated",
        "created": Utc::now().timestamp() - 60 + n,
        "livemode": false,
        "api_version": cls_stripe::DEFAULT_STRIPE_VERSION,
        "data": {"object": object},
    })
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    secret: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let text = serde_json::to_vec(body)?;
    let header = sign(
        &text,
        &WebhookSecret::parse(secret)?,
        Utc::now().timestamp(),
    );
    let resp = http
        .post(url)
        .header("stripe-signature", header)
        .body(text)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

async fn name_in_destination(file: &std::path::Path, id: &str) -> Option<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
        .await
        .ok()?;
    let row = sqlx::query(
        "select name from customers where id = ? and account_id <> 'acct_1ConnectedTest'",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await
    .ok()??;
    pool.close().await;
    row.get("name")
}

/// State in SQLite under `dir`, one project writing to `database_url`, and the receivers served
/// on 127.0.0.1:0 with the emulator at `api_base` as the default Stripe API.
struct Receivers {
    store: Arc<dyn Store>,
    project: Project,
    base: String,
}

impl Receivers {
    async fn start(
        dir: &std::path::Path,
        database_url: &str,
        api_base: &str,
    ) -> Result<Receivers, Box<dyn std::error::Error>> {
        let url = StateUrl::parse(&format!("sqlite://{}", dir.join("state.db").display()))?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url, MasterKey::generate()).await?);
        let project = store
            .create_project(NewProject {
                name: "warehouse".into(),
                database_url: DatabaseUrl::parse(database_url)?,
                schema: None,
            })
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let router =
            cls_server::configured_webhooks(store.clone(), Some(url::Url::parse(api_base)?));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Receivers {
            store,
            project,
            base,
        })
    }

    /// Creates a configuration of `customers` with the emulator's key, `secret` and `api_base`.
    async fn configuration(
        &self,
        name: &str,
        secret: Option<&str>,
        api_base: Option<url::Url>,
    ) -> Result<Configuration, Box<dyn std::error::Error>> {
        Ok(self
            .store
            .create_configuration(NewConfiguration {
                name: name.into(),
                project_id: self.project.id,
                key: ApiKey::parse("rk_test_cls_emulator")?,
                data_types: vec![cls_catalog::find("customers").ok_or("customers")?],
                stripe_api_base: api_base,
                webhook_secret: secret.map(|s| SecretString::from(s.to_string())),
            })
            .await?)
    }

    /// The webhook endpoint of a configuration.
    fn endpoint(&self, c: &Configuration) -> String {
        format!("{}/webhooks/stripe/{}", self.base, c.id)
    }
}

#[tokio::test]
async fn deliveries_reach_their_configurations_database() -> TestResult {
    let emulator = cls_testkit::emulator::spawn_emulator(5, 4).await;
    let dir = tempfile::tempdir()?;
    let dest_file = dir.path().join("dest.db");
    let r = Receivers::start(
        dir.path(),
        &format!("sqlite://{}", dest_file.display()),
        &emulator.base_url,
    )
    .await?;
    let store = r.store.clone();
    let base = r.base.clone();
    let with_secret = r.configuration("stripe", Some(SECRET), None).await?;
    let without_secret = r.configuration("stripe", None, None).await?;
    let http = reqwest::Client::new();

    let customers: Value = http
        .get(format!("{}/v1/customers?limit=1", emulator.base_url))
        .bearer_auth("rk_test_cls_emulator")
        .send()
        .await?
        .json()
        .await?;
    let customer = customers["data"][0].clone();
    let cid = customer["id"].as_str().unwrap_or_default().to_string();
    assert!(cid.starts_with("cus_"), "{customers}");
    let endpoint = format!("{base}/webhooks/stripe/{}", with_secret.id);

    // Signed with the configuration's secret: applied to its database.
    let (status, answer) =
        post(&http, &endpoint, &event("evt_a1", &customer, "Ada"), SECRET).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        name_in_destination(&dest_file, &cid).await.as_deref(),
        Some("Ada")
    );

    // Forged (another secret): refused, nothing written.
    let forged = "whsec_someoneElsesSecret9876543210";
    let (status, answer) = post(
        &http,
        &endpoint,
        &event("evt_a2", &customer, "Mallory"),
        forged,
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        name_in_destination(&dest_file, &cid).await.as_deref(),
        Some("Ada")
    );

    // Unknown configuration, a non-numeric id, and a configuration without a secret.
    let (status, _) = post(
        &http,
        &format!("{base}/webhooks/stripe/999"),
        &event("evt_a3", &customer, "X"),
        SECRET,
    )
    .await?;
    assert_eq!(status, 404);
    let (status, _) = post(
        &http,
        &format!("{base}/webhooks/stripe/abc"),
        &event("evt_a4", &customer, "X"),
        SECRET,
    )
    .await?;
    assert_eq!(status, 404);
    let (status, answer) = post(
        &http,
        &format!("{base}/webhooks/stripe/{}", without_secret.id),
        &event("evt_a5", &customer, "X"),
        SECRET,
    )
    .await?;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("signing secret"),
        "{answer}"
    );

    // Paused: acknowledged, not written.
    store
        .update_configuration(
            with_secret.id,
            ConfigurationPatch {
                active: Some(false),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
    let (status, answer) = post(
        &http,
        &endpoint,
        &event("evt_a6", &customer, "Paused"),
        SECRET,
    )
    .await?;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["skipped"].is_string(), "{answer}");
    assert_eq!(
        name_in_destination(&dest_file, &cid).await.as_deref(),
        Some("Ada")
    );

    // Rotated secret: the old one stops working at once, the new one works.
    let rotated = "whsec_rotatedSecretAbcdef0123456789";
    store
        .update_configuration(
            with_secret.id,
            ConfigurationPatch {
                active: Some(true),
                webhook_secret: Some(Some(SecretString::from(rotated.to_string()))),
                ..ConfigurationPatch::default()
            },
        )
        .await?;
    let (status, _) = post(&http, &endpoint, &event("evt_a7", &customer, "Old"), SECRET).await?;
    assert_eq!(status, 400);
    let (status, answer) = post(
        &http,
        &endpoint,
        &event("evt_a8", &customer, "Grace"),
        rotated,
    )
    .await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        name_in_destination(&dest_file, &cid).await.as_deref(),
        Some("Grace")
    );

    // Stripe Connect: an event naming a connected account is skipped unless the
    // configuration syncs connected accounts; then it is stored under that account.
    let mut connected = event("evt_a9", &customer, "Connected Co");
    connected["account"] = json!("acct_1ConnectedTest");
    let (status, answer) = post(&http, &endpoint, &connected, rotated).await?;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["skipped"].is_string(), "{answer}");
    assert_eq!(rows_of(&dest_file, &cid).await, 1);
    store
        .set_include_connected_accounts(with_secret.id, true)
        .await?;
    connected["id"] = json!("evt_a10");
    let (status, answer) = post(&http, &endpoint, &connected, rotated).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(rows_of(&dest_file, &cid).await, 2, "one row per account");
    assert_eq!(
        name_in_destination(&dest_file, &cid).await.as_deref(),
        Some("Grace")
    );

    emulator.shutdown().await;
    Ok(())
}

/// How many accounts hold a row with this id.
async fn rows_of(file: &std::path::Path, id: &str) -> i64 {
    let Ok(pool) = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display())).await else {
        return -1;
    };
    let n = sqlx::query_scalar("select count(*) from customers where id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap_or(-1);
    pool.close().await;
    n
}

/// A delivery that is not signed with the configuration's secret is refused before anything
/// else happens: no Stripe request, no connection to the project's database, and nothing about
/// that database (its host, its user) in the answer. Anyone can reach these endpoints.
#[tokio::test]
async fn unsigned_deliveries_do_no_work_and_reveal_nothing() -> TestResult {
    let emulator = cls_testkit::emulator::spawn_emulator(5, 4).await;
    let dir = tempfile::tempdir()?;
    // Nothing listens on port 1: building this configuration's receiver fails.
    let r = Receivers::start(
        dir.path(),
        "postgres://warehouse_user:hunter2@127.0.0.1:1/warehouse",
        &emulator.base_url,
    )
    .await?;
    let configuration = r.configuration("stripe", Some(SECRET), None).await?;
    let http = reqwest::Client::new();
    let endpoint = r.endpoint(&configuration);
    let body = event("evt_a1", &json!({"id": "cus_X", "object": "customer"}), "X");

    let unsigned = http
        .post(&endpoint)
        .body(serde_json::to_vec(&body)?)
        .send()
        .await?;
    let status = unsigned.status().as_u16();
    let answer = unsigned.text().await?;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("Stripe-Signature"), "{answer}");
    let (status, answer) = post(
        &http,
        &endpoint,
        &body,
        "whsec_someoneElsesSecret9876543210",
    )
    .await?;
    assert_eq!(status, 400, "{answer}");
    for hidden in ["127.0.0.1", "warehouse_user", "database"] {
        assert!(!answer.to_string().contains(hidden), "{hidden}: {answer}");
    }
    let stats: Value = http
        .get(format!("{}/_emulator/stats", emulator.base_url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(stats["requests_total"], json!(0), "{stats}");

    // Signed: now the receiver is built, and its failure is Stripe's to retry.
    let (status, answer) = post(&http, &endpoint, &body, SECRET).await?;
    assert_eq!(status, 500, "{answer}");

    emulator.shutdown().await;
    Ok(())
}

/// One configuration whose receiver takes long to build (its Stripe API does not answer)
/// holds up nobody else's deliveries.
#[tokio::test]
async fn a_slow_configuration_does_not_hold_up_the_others() -> TestResult {
    let emulator = cls_testkit::emulator::spawn_emulator(5, 4).await;
    // A Stripe API that accepts connections and never answers; says when it was reached.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hole_url = format!("http://{}", black_hole.local_addr()?);
    let (reached, mut reached_rx) = tokio::sync::mpsc::channel::<()>(8);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            held.push(socket);
            let _ = reached.try_send(());
        }
    });
    let dir = tempfile::tempdir()?;
    let dest_file = dir.path().join("dest.db");
    let r = Receivers::start(
        dir.path(),
        &format!("sqlite://{}", dest_file.display()),
        &emulator.base_url,
    )
    .await?;
    let slow = r
        .configuration("slow", Some(SECRET), Some(url::Url::parse(&hole_url)?))
        .await?;
    let fine = r.configuration("fine", Some(SECRET), None).await?;
    let base = r.base.clone();
    let http = reqwest::Client::new();
    let customer = json!({"id": "cus_Slow", "object": "customer", "name": "x"});

    let slow_delivery = {
        let http = http.clone();
        let endpoint = format!("{base}/webhooks/stripe/{}", slow.id);
        let body = event("evt_a1", &customer, "Slow");
        tokio::spawn(async move {
            post(&http, &endpoint, &body, SECRET)
                .await
                .map(|r| r.0)
                .ok()
        })
    };
    // The slow configuration's receiver is being built (its Stripe API was reached).
    tokio::time::timeout(std::time::Duration::from_secs(30), reached_rx.recv()).await?;

    let endpoint = format!("{base}/webhooks/stripe/{}", fine.id);
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        post(
            &http,
            &endpoint,
            &event("evt_a2", &customer, "Fine"),
            SECRET,
        ),
    )
    .await;
    let (status, answer) = answered.map_err(|_| "the other configuration's delivery waited")??;
    assert_eq!(status, 200, "{answer}");
    slow_delivery.abort();
    emulator.shutdown().await;
    Ok(())
}

/// Files of this process open on `file` (Linux: /proc/self/fd).
fn open_handles(file: &std::path::Path) -> usize {
    let Ok(target) = file.canonicalize() else {
        return 0;
    };
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
                .count()
        })
        .unwrap_or(0)
}

/// A deleted configuration's receiver goes with it: its connection to the project's
/// database is closed at its next delivery (a 404), not kept for the life of the server.
#[tokio::test]
async fn a_deleted_configurations_receiver_lets_go_of_its_database() -> TestResult {
    let emulator = cls_testkit::emulator::spawn_emulator(5, 4).await;
    let dir = tempfile::tempdir()?;
    let dest_file = dir.path().join("dest.db");
    let r = Receivers::start(
        dir.path(),
        &format!("sqlite://{}", dest_file.display()),
        &emulator.base_url,
    )
    .await?;
    let store = r.store.clone();
    let configuration = r.configuration("stripe", Some(SECRET), None).await?;
    let http = reqwest::Client::new();
    let endpoint = r.endpoint(&configuration);
    let customer = json!({"id": "cus_Gone", "object": "customer", "name": "x"});

    let (status, answer) = post(&http, &endpoint, &event("evt_a1", &customer, "A"), SECRET).await?;
    assert_eq!(status, 200, "{answer}");
    assert!(
        open_handles(&dest_file) > 0,
        "the receiver holds the database"
    );

    store.delete_configuration(configuration.id).await?;
    let (status, answer) = post(&http, &endpoint, &event("evt_a2", &customer, "B"), SECRET).await?;
    assert_eq!(status, 404, "{answer}");
    // The driver closes a dropped connection on its own thread: wait for it, within bounds.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while open_handles(&dest_file) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the deleted receiver's database is still open"
    );
    emulator.shutdown().await;
    Ok(())
}
