//! End-to-end tests of incremental sync and webhooks: the real `cls` binary against the
//! in-process Stripe emulator, real PostgreSQL (a fresh database per test) and SQLite.
//!
//! The reference is the emulator's `/_emulator/export` after `POST /_emulator/mutate`: every
//! live object of a chosen type must be a live row with `data` equal to the API's object, and
//! no other row may be live (objects deleted in Stripe are rows flagged `deleted`).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;

use cls_catalog::DataType;
use cls_server::webhook::{sign, WebhookSecret};
use cls_testkit::emulator::spawn_emulator;
use common::{cls, export, is_deleted, requests_total, text, Db};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

const KEY: &str = "rk_test_cls_emulator";
const SECRET: &str = "whsec_cls_incremental_test";

/// Types followed by events in these tests; `products` is left out on purpose so that product
/// events are skipped as "not chosen".
const TYPES: &str = "customers,prices,plans,subscriptions,subscription_items,invoices,\
                     invoice_line_items,payment_intents,charges,events";

/// `cls sync --json` with `extra` arguments; the parsed report.
async fn sync(env: &[(&str, &str)], extra: &[&str]) -> Value {
    let mut args = vec!["sync", "--json", "--types", TYPES];
    args.extend_from_slice(extra);
    let out = cls(&args, env).await;
    assert!(out.status.success(), "sync failed:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", text(&out)))
}

fn chosen() -> Vec<&'static DataType> {
    cls_catalog::parse_list(TYPES).expect("valid types")
}

/// Asserts every chosen table equals the export exactly; returns deleted rows per table.
async fn assert_equals_export(db: &Db, base_url: &str) -> BTreeMap<&'static str, usize> {
    let want = export(base_url).await;
    let empty = BTreeMap::new();
    let mut deleted = BTreeMap::new();
    for t in chosen() {
        let expected = want.get(t.object).unwrap_or(&empty);
        let table = db.table(t.name).await.expect("the table exists");
        let live: BTreeMap<&String, &Value> = table
            .iter()
            .filter(|(_, (_, d))| !d)
            .map(|(id, (data, _))| (id, data))
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(id, o)| !is_deleted(o) && !live.contains_key(id))
            .map(|(id, _)| id)
            .collect();
        let extra: Vec<_> = live
            .keys()
            .filter(|id| expected.get(**id).is_none_or(is_deleted))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: {} missing (e.g. {:?}), {} extra live (e.g. {:?})",
            t.name,
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        );
        let differ: Vec<_> = live
            .iter()
            .filter(|(id, data)| expected.get(**id) != Some(**data))
            .map(|(id, _)| id)
            .collect();
        assert!(
            differ.is_empty(),
            "{}: {} rows differ from the API's object, e.g. {:?}",
            t.name,
            differ.len(),
            differ.first()
        );
        deleted.insert(t.name, table.values().filter(|(_, d)| *d).count());
    }
    deleted
}

async fn mutate(base_url: &str, count: usize, seed: u64) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{base_url}/_emulator/mutate"))
        .json(&json!({"count": count, "seed": seed}))
        .send()
        .await
        .expect("mutate answers");
    assert!(
        resp.status().is_success(),
        "mutate failed: {}",
        resp.status()
    );
    resp.json().await.expect("mutate answers JSON")
}

fn env<'a>(db_url: &'a str, base_url: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("STRIPE_API_KEY", KEY),
        ("DATABASE_URL", db_url),
        ("CLS_STRIPE_API_BASE", base_url),
    ]
}

/// Full sync, thousands of changes, incremental run → the export exactly, at the cost of the
/// events feed.
async fn incremental_equals_export_after_mutations(db: Db) {
    let emulator = spawn_emulator(11, 40).await;
    let url = db.url();
    let env = env(&url, &emulator.base_url);

    let first = sync(&env, &[]).await;
    assert_eq!(first["mode"], "full", "no cursor yet: {first}");
    assert_eq!(first["status"], "succeeded");
    assert_equals_export(&db, &emulator.base_url).await;

    mutate(&emulator.base_url, 3000, 5).await;
    let before = requests_total(&emulator.base_url).await;
    let report = sync(&env, &[]).await;
    let made = requests_total(&emulator.base_url).await - before;
    assert_eq!(report["mode"], "incremental", "{report}");
    assert_eq!(report["status"], "succeeded", "{report}");
    let events = &report["events"];
    let read = events["read"].as_u64().expect("events read");
    assert!(
        read >= 3000,
        "3000 changes make at least as many events: {events}"
    );
    assert!(
        events["skipped_not_chosen"].as_u64() > Some(0),
        "product events are skipped (products not chosen): {events}"
    );
    // One request for the account, ceil(read/100) (+1 when the last page is full) for the
    // feed, and a few child lists of parents whose embedded page says has_more.
    let bound = read.div_ceil(100) + 2 + 5;
    assert!(
        made <= bound,
        "{made} requests for {read} events (bound {bound}): {report}"
    );

    let deleted = assert_equals_export(&db, &emulator.base_url).await;
    assert!(
        deleted["customers"] > 0,
        "deleted customers are kept, flagged: {deleted:?}"
    );

    // Nothing changed since: a rerun applies nothing and costs about two requests.
    let before = requests_total(&emulator.base_url).await;
    let again = sync(&env, &[]).await;
    let made = requests_total(&emulator.base_url).await - before;
    assert_eq!(again["events"]["read"], 0, "{again}");
    assert!(made <= 2, "{made} requests for no change");
    assert_equals_export(&db, &emulator.base_url).await;

    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_incremental_after_mutations_equals_the_export() {
    incremental_equals_export_after_mutations(Db::pg().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_incremental_after_mutations_equals_the_export() {
    incremental_equals_export_after_mutations(Db::lite()).await;
}

/// Requests of an incremental run after `changes` mutations on an account of `customers`.
async fn incremental_cost(customers: usize, changes: usize) -> (u64, u64) {
    let emulator = spawn_emulator(3, customers).await;
    let db = Db::lite();
    let url = db.url();
    let env = env(&url, &emulator.base_url);
    sync(&env, &[]).await;
    mutate(&emulator.base_url, changes, 9).await;
    let before = requests_total(&emulator.base_url).await;
    let report = sync(&env, &["--mode", "incremental"]).await;
    let made = requests_total(&emulator.base_url).await - before;
    assert_eq!(report["mode"], "incremental", "{report}");
    assert_equals_export(&db, &emulator.base_url).await;
    emulator.shutdown().await;
    (
        made,
        report["events"]["read"].as_u64().expect("events read"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_follows_change_not_account_size() {
    let (small, small_events) = incremental_cost(20, 500).await;
    let (large, large_events) = incremental_cost(400, 500).await;
    eprintln!(
        "incremental after 500 changes: {small} requests for {small_events} events (20 customers), \
         {large} requests for {large_events} events (400 customers)"
    );
    for (made, events) in [(small, small_events), (large, large_events)] {
        assert!(
            made <= events.div_ceil(100) + 2 + 5,
            "{made} requests for {events} events"
        );
    }
    assert!(
        large.abs_diff(small) <= 5,
        "a 20x larger account should cost about the same: {small} vs {large}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_the_30_day_horizon_falls_back_to_a_full_sync_and_says_so() {
    let emulator = spawn_emulator(5, 10).await;
    let db = Db::lite();
    let url = db.url();
    let env = env(&url, &emulator.base_url);
    sync(&env, &[]).await;

    let dest = db.dest().await;
    let account: String = export(&emulator.base_url).await["account"]
        .keys()
        .next()
        .expect("an account")
        .clone();
    let mut cursor = cls_engine::load_cursor(dest.as_ref(), &account)
        .await
        .expect("read state")
        .expect("a full sync stored a cursor");
    cursor.created -= 31 * 86_400;
    cls_engine::store_cursor(dest.as_ref(), &account, &cursor)
        .await
        .expect("store");

    let report = sync(&env, &[]).await;
    assert_eq!(report["mode"], "full", "{report}");
    assert!(
        report["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("30 days")),
        "the summary says why: {report}"
    );
    // The full sync stored a fresh cursor: the next run is incremental again.
    let next = sync(&env, &[]).await;
    assert_eq!(next["mode"], "incremental", "{next}");

    // A cursor whose event Stripe no longer has: full as well, saying so.
    let mut gone = cls_engine::load_cursor(dest.as_ref(), &account)
        .await
        .expect("read state")
        .expect("cursor");
    gone.event_id = Some("evt_expired000000000000000".into());
    cls_engine::store_cursor(dest.as_ref(), &account, &gone)
        .await
        .expect("store");
    let report = sync(&env, &["--mode", "incremental"]).await;
    assert_eq!(report["mode"], "full", "{report}");
    assert!(
        report["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("no longer")),
        "{report}"
    );
    assert_equals_export(&db, &emulator.base_url).await;
    emulator.shutdown().await;
}

/// A running `cls listen`; killed on drop.
struct Listener {
    _child: tokio::process::Child,
    url: String,
}

async fn listen(db_url: &str, extra: &[&str]) -> Listener {
    let mut args = vec![
        "listen",
        "--port",
        "0",
        "--webhook-secret",
        SECRET,
        "--database-url",
        db_url,
        "--types",
        TYPES,
    ];
    args.extend_from_slice(extra);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"))
        .args(&args)
        .env_remove("STRIPE_API_KEY")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cls listen starts");
    let stdout = child.stdout.take().expect("stdout piped");
    // The receiver prints its address once it is listening.
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .expect("read stdout")
        .expect("cls listen printed its address");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Listener { _child: child, url }
}

fn secret() -> WebhookSecret {
    WebhookSecret::parse(SECRET).expect("valid secret")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, Value) {
    let mut req = client.post(url).body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("Stripe-Signature", s);
    }
    let resp = req.send().await.expect("receiver answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every event after the stored cursor, oldest first, read as the engine does.
async fn events_after(base_url: &str, mut before: String) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    loop {
        let page: Value = client
            .get(format!("{base_url}/v1/events"))
            .bearer_auth(KEY)
            .query(&[("limit", "100"), ("ending_before", before.as_str())])
            .send()
            .await
            .expect("events answer")
            .json()
            .await
            .expect("JSON");
        let mut data = page["data"].as_array().cloned().unwrap_or_default();
        let Some(newest) = data
            .first()
            .and_then(|e| e["id"].as_str())
            .map(str::to_string)
        else {
            break;
        };
        data.reverse();
        out.extend(data);
        if page["has_more"] != true {
            break;
        }
        before = newest;
    }
    out
}

/// A deterministic shuffle (no extra dependency): a linear congruential generator.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = ((seed >> 33) as usize) % (i + 1);
        items.swap(i, j);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_shuffled_and_duplicated_converge_on_the_export() {
    let emulator = spawn_emulator(13, 30).await;
    let db = Db::pg().await;
    let url = db.url();
    let env = env(&url, &emulator.base_url);
    sync(&env, &[]).await;
    let dest = db.dest().await;
    let account: String = export(&emulator.base_url).await["account"]
        .keys()
        .next()
        .expect("account")
        .clone();
    let cursor = cls_engine::load_cursor(dest.as_ref(), &account)
        .await
        .expect("state")
        .expect("cursor");

    let listener = listen(
        &url,
        &["--stripe-key", KEY, "--api-base", &emulator.base_url],
    )
    .await;
    mutate(&emulator.base_url, 1500, 21).await;
    let events = events_after(&emulator.base_url, cursor.event_id.clone().expect("id")).await;
    assert!(events.len() >= 1500, "{} events", events.len());

    // Every event once, a fifth of them twice, in a shuffled order.
    let mut deliveries: Vec<&Value> = events.iter().collect();
    deliveries.extend(events.iter().step_by(5));
    shuffle(&mut deliveries, 42);
    let client = reqwest::Client::new();
    let mut attempts: HashMap<&str, i64> = HashMap::new();
    for (i, event) in deliveries.iter().enumerate() {
        let body = serde_json::to_vec(event).expect("serialize");
        // A fresh signature per attempt, as Stripe does for retries: its retries come minutes
        // apart, so their `t` differs (here: one second later per attempt, never reused).
        let attempt = attempts
            .entry(event["id"].as_str().unwrap_or("?"))
            .or_default();
        let sig = sign(&body, &secret(), now() + *attempt);
        *attempt += 1;
        let (status, answer) = deliver(&client, &listener.url, &body, Some(&sig)).await;
        assert_eq!(status, 200, "delivery {i} refused: {answer}");
    }

    // Webhooks alone: every object whose newest event is alone in its second holds exactly
    // the API's object (same-second events of one object cannot be ordered from webhooks; the
    // next incremental run settles those).
    let want = export(&emulator.base_url).await;
    let mut newest: HashMap<(String, String), (i64, usize)> = HashMap::new();
    for e in &events {
        let o = &e["data"]["object"];
        let key = (
            o["object"].as_str().unwrap_or_default().to_string(),
            o["id"].as_str().unwrap_or_default().to_string(),
        );
        let created = e["created"].as_i64().unwrap_or_default();
        let entry = newest.entry(key).or_insert((created, 0));
        if created > entry.0 {
            *entry = (created, 0);
        }
        if created == entry.0 {
            entry.1 += 1;
        }
    }
    let mut checked = 0;
    for t in chosen()
        .into_iter()
        .filter(|t| !t.is_child() && t.name != "events")
    {
        let table = db.table(t.name).await.expect("the table exists");
        for ((object, id), (_, n)) in &newest {
            if object != t.object || *n != 1 {
                continue;
            }
            let Some(expected) = want.get(object).and_then(|m| m.get(id)) else {
                continue;
            };
            let row = table.get(id).unwrap_or_else(|| panic!("{id} missing"));
            if is_deleted(expected) {
                assert!(row.1, "{id} should be flagged deleted");
            } else {
                assert_eq!(&row.0, expected, "{id} is not the newest snapshot");
                assert!(!row.1, "{id} should be live");
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} objects could be checked");

    // Polling is the safety net: the next incremental run makes the database exact.
    let report = sync(&env, &["--mode", "incremental"]).await;
    assert_eq!(report["mode"], "incremental", "{report}");
    assert_equals_export(&db, &emulator.base_url).await;

    drop(listener);
    db.finish().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_signatures_are_refused_and_write_nothing() {
    let db = Db::lite();
    let url = db.url();
    let listener = listen(&url, &["--account-id", "acct_webhooks"]).await;
    let client = reqwest::Client::new();
    let customer_event = |id: &str, name: &str, created: i64| {
        json!({
            "id": format!("evt_{id}"), "object": "event", "type": "customer.updated",
            "created": created, "livemode": false, "api_version": "2025-09-30.clover",
            "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
            "data": {"object": {"id": format!("cus_{id}"), "object": "customer", "name": name,
                                 "created": created, "livemode": false}}
        })
    };
    let body = serde_json::to_vec(&customer_event("a", "Ada", now())).expect("json");
    let forged = sign(
        &body,
        &WebhookSecret::parse("whsec_wrong").expect("valid"),
        now(),
    );
    let stale = sign(&body, &secret(), now() - 400);
    let future = sign(&body, &secret(), now() + 400);
    for (what, sig) in [
        ("forged", Some(forged.as_str())),
        ("stale", Some(stale.as_str())),
        ("from the future", Some(future.as_str())),
        ("missing", None),
        ("malformed", Some("t=abc,v1=zz")),
    ] {
        let (status, answer) = deliver(&client, &listener.url, &body, sig).await;
        assert_eq!(status, 400, "{what} signature accepted: {answer}");
    }
    // A body altered after signing.
    let good = sign(&body, &secret(), now());
    let mut altered = body.clone();
    let at = altered.len() - 3;
    altered[at] = b' ';
    let (status, _) = deliver(&client, &listener.url, &altered, Some(&good)).await;
    assert_eq!(status, 400, "an altered body must not verify");
    assert!(
        db.table("customers")
            .await
            .expect("the table exists")
            .is_empty(),
        "nothing was written by refused deliveries"
    );

    // The genuine delivery is applied; the exact same signed request again is a replay.
    let (status, answer) = deliver(&client, &listener.url, &body, Some(&good)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = deliver(&client, &listener.url, &body, Some(&good)).await;
    assert_eq!(status, 400, "a replay must be refused: {answer}");
    let after_first = db.table("customers").await.expect("the table exists");
    assert_eq!(after_first["cus_a"].0["name"], "Ada");

    // Stripe's retry of the same event (a fresh signature) is accepted and changes nothing.
    let (status, answer) = deliver(
        &client,
        &listener.url,
        &body,
        Some(&sign(&body, &secret(), now() - 60)),
    )
    .await;
    assert_eq!(
        (status, &answer["rows_written"]),
        (200, &json!(0)),
        "{answer}"
    );
    assert_eq!(
        db.table("customers").await.expect("the table exists"),
        after_first
    );

    // An older snapshot arriving late does not overwrite the newer one.
    let old = serde_json::to_vec(&customer_event("a", "Old Ada", now() - 100)).expect("json");
    let (status, _) = deliver(
        &client,
        &listener.url,
        &old,
        Some(&sign(&old, &secret(), now())),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        db.table("customers").await.expect("the table exists")["cus_a"].0["name"],
        "Ada"
    );

    // Unknown object types and types not chosen are skipped safely: no object row is
    // written (the event itself is kept in `events`, like every event of the feed).
    for (ty, object) in [
        (
            "customer.discount.created",
            json!({"id": "di_1", "object": "discount"}),
        ),
        (
            "product.created",
            json!({"id": "prod_1", "object": "product"}),
        ),
        (
            "radar.value_list.created",
            json!({"id": "rsl_1", "object": "radar.value_list"}),
        ),
    ] {
        let event = json!({"id": "evt_x", "object": "event", "type": ty, "created": now(),
                           "data": {"object": object}});
        let b = serde_json::to_vec(&event).expect("json");
        let (status, answer) = deliver(
            &client,
            &listener.url,
            &b,
            Some(&sign(&b, &secret(), now())),
        )
        .await;
        assert_eq!(status, 200, "{ty}: {answer}");
        assert!(answer["skipped"].is_string(), "{ty}: {answer}");
    }
    assert_eq!(
        db.table("customers").await.expect("the table exists"),
        after_first
    );
    // A signed body that is not an event is refused.
    let b = br#"{"hello":"world"}"#;
    let (status, _) = deliver(&client, &listener.url, b, Some(&sign(b, &secret(), now()))).await;
    assert_eq!(status, 400);
    // The configuration-scoped route works the same way.
    let b = serde_json::to_vec(&customer_event("b", "Grace", now())).expect("json");
    let (status, answer) = deliver(
        &client,
        &format!("{}/cfg_1", listener.url),
        &b,
        Some(&sign(&b, &secret(), now())),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let customers = db.table("customers").await.expect("the table exists");
    assert_eq!(customers.len(), 2, "{customers:?}");
    let events = db.table("events").await.expect("the table exists");
    assert_eq!(
        events.keys().cloned().collect::<Vec<_>>(),
        vec![
            "evt_a".to_string(),
            "evt_b".to_string(),
            "evt_x".to_string()
        ],
        "verified events are stored, each once"
    );
    assert_eq!(events["evt_a"].0["data"]["object"]["name"], "Ada");
    drop(listener);
}
