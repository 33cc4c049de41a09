//! `/_emulator/mutate`: seeded changes whose events and export agree with what the API serves.
#![allow(clippy::unwrap_used)]

mod common;

use cls_emulator::{generate, mutate, Mode};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;

#[test]
fn mutations_are_deterministic_given_store_and_seed() {
    let run = |seed: u64| {
        let mut store = generate::generate(&config(5, 120, Mode::Test));
        let req = mutate::MutateRequest { count: 500, seed };
        let (summary, events) = mutate::mutate(&mut store, ANCHOR + 10, req);
        (summary, events.len(), store.export_json())
    };
    let a = run(9);
    assert_eq!(a, run(9));
    assert_ne!(a.2, run(10).2);
    assert_eq!(a.0["applied"], 500, "{}", a.0);
    // Applying the same seed again on the changed store draws new ids and new changes.
    let mut store = generate::generate(&config(5, 120, Mode::Test));
    let req = mutate::MutateRequest { count: 50, seed: 1 };
    let (s1, _) = mutate::mutate(&mut store, ANCHOR + 10, req);
    let (s2, _) = mutate::mutate(&mut store, ANCHOR + 10, req);
    assert_ne!(s1["first_event"]["id"], s2["first_event"]["id"]);
}

#[tokio::test]
async fn after_mutations_export_lists_and_events_agree() {
    let emu = start(250).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/_emulator/mutate", emu.base_url))
        .json(&json!({"count": 2000, "seed": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["applied"], 2000, "{summary}");
    assert_eq!(summary["failed"], 0);
    let by_kind = summary["by_kind"].as_object().unwrap();
    for k in [
        "customer.create",
        "customer.update",
        "customer.delete",
        "product.create",
        "price.update",
        "subscription.update",
        "subscription.cancel",
        "invoice.pay",
        "invoice.void",
    ] {
        assert!(
            by_kind.get(k).and_then(Value::as_u64).unwrap_or(0) > 0,
            "no {k}: {summary}"
        );
    }
    let n_events = summary["events"].as_u64().unwrap() as usize;
    assert!(n_events >= 2000);

    let export = export(&emu).await;
    check_export_shapes(&export);

    // Lists serve exactly the export's live objects (newest first).
    for (path, object) in [
        ("/v1/customers", "customer"),
        ("/v1/products", "product"),
        ("/v1/prices", "price"),
        ("/v1/subscriptions?status=all", "subscription"),
        ("/v1/invoices", "invoice"),
    ] {
        let listed = walk(&emu, path, 100).await;
        let mut live: Vec<Value> = arr(&export, object)
            .iter()
            .filter(|o| o.get("deleted").is_none())
            .cloned()
            .collect();
        live.reverse();
        assert_eq!(listed.len(), live.len(), "{path}");
        assert!(listed == live, "{path}: list differs from export");
    }

    // The mutation's events are the newest ones: the export's last `n_events`, and the first
    // page of /v1/events serves them newest first.
    let events = arr(&export, "event");
    let new_events = &events[events.len() - n_events..];
    assert_eq!(new_events[0]["id"], summary["first_event"]["id"]);
    assert_eq!(new_events[n_events - 1]["id"], summary["last_event"]["id"]);
    let page = ok(&emu, "/v1/events?limit=100").await;
    let mut newest: Vec<Value> = new_events[n_events - 100..].to_vec();
    newest.reverse();
    assert_eq!(page["data"].as_array().unwrap(), &newest);

    // The last event of each object carries its current state (or it was deleted).
    let mut current: HashMap<(String, String), &Value> = HashMap::new();
    for (object, items) in export.as_object().unwrap() {
        for item in items.as_array().unwrap() {
            if let Some(id) = item["id"].as_str() {
                current.insert((object.clone(), id.to_string()), item);
            }
        }
    }
    let mut last: HashMap<(String, String), &Value> = HashMap::new();
    for e in new_events {
        let o = &e["data"]["object"];
        last.insert(
            (
                o["object"].as_str().unwrap().to_string(),
                o["id"].as_str().unwrap().to_string(),
            ),
            e,
        );
    }
    let mut compared = 0;
    for (key, e) in &last {
        let now = current[key];
        if now.get("deleted") == Some(&Value::Bool(true)) {
            assert!(e["type"].as_str().unwrap().ends_with(".deleted"), "{key:?}");
        } else {
            assert_eq!(&e["data"]["object"], now, "{key:?} {}", e["type"]);
            compared += 1;
        }
    }
    assert!(compared > 500, "{compared}");
    // Every update event's previous_attributes names only keys whose value differs.
    for e in new_events
        .iter()
        .filter(|e| e["data"].get("previous_attributes").is_some())
    {
        for (k, old) in e["data"]["previous_attributes"].as_object().unwrap() {
            assert_ne!(&e["data"]["object"][k], old, "{} {k}", e["type"]);
        }
    }
}
