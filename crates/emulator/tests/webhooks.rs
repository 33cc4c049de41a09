//! Webhooks: every new event POSTed, signed as Stripe signs, retried after failures.
#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as post_route;
use axum::Router;
use cls_emulator::Mode;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec_test_emulator_secret";

/// What the receiver saw: attempts per event id, and ids in the order first accepted.
#[derive(Default)]
struct Seen {
    attempts: HashMap<String, u32>,
    accepted: Vec<String>,
    bad_signatures: u32,
}

/// Verifies `Stripe-Signature` the way Stripe's libraries do: HMAC-SHA256 of "<t>.<body>",
/// compared in constant time, timestamp within 300 s.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = Vec::new();
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1.push(x.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    v1.iter().any(|hexsig| {
        let Ok(expected) = hex::decode(hexsig) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut seen = seen.lock().unwrap();
    if !verify(&headers, &body) {
        seen.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    let id = event["id"].as_str().unwrap().to_string();
    let n = seen.attempts.entry(id.clone()).or_default();
    *n += 1;
    // The first two attempts of every event fail: the emulator must retry.
    if *n <= 2 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if *n == 3 {
        seen.accepted.push(id);
    }
    StatusCode::OK
}

#[tokio::test]
async fn events_are_signed_retried_and_all_delivered() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post_route(receive))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut c = config(7, 60, Mode::Test);
    c.webhook_url = Some(format!("http://{addr}/hook"));
    c.webhook_secret = Some(SECRET.to_string());
    c.webhook_backoff_ms = 20;
    let emu = cls_emulator::spawn(c, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(!format!("{:?}", emu.state.config).contains(SECRET));

    let (s, _) = post(&emu, "/v1/customers", "name=Hook+Test").await;
    assert_eq!(s, 200);
    let summary: Value = reqwest::Client::new()
        .post(format!("{}/_emulator/mutate", emu.base_url))
        .json(&json!({"count": 60, "seed": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = summary["events"].as_u64().unwrap() + 1;

    // Wait for delivery to settle (bounded), polling the emulator's own counters.
    let stats_url = format!("{}/_emulator/webhooks", emu.base_url);
    let mut stats = Value::Null;
    for _ in 0..200 {
        stats = reqwest::get(&stats_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["pending"] == 0 && stats["queued"] == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats["enabled"], true);
    assert_eq!(stats["delivered"], expected, "{stats}");
    assert_eq!(stats["gave_up"], 0);
    assert_eq!(stats["failed_attempts"], 2 * expected, "{stats}");

    // Every new event was delivered: the newest `expected` events of the account.
    let export = export(&emu).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0);
    assert_eq!(seen.accepted.len() as u64, expected);
    let events = arr(&export, "event");
    let newest: Vec<String> = events[events.len() - expected as usize..]
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let mut got = seen.accepted.clone();
    got.sort();
    let mut want = newest.clone();
    want.sort();
    assert_eq!(got, want);
    // Not in chronological order (shuffled batches, concurrent retries).
    assert_ne!(seen.accepted, newest);
}

#[tokio::test]
async fn without_a_url_nothing_is_sent() {
    let emu = start(10).await;
    let (s, _) = post(&emu, "/v1/customers", "name=x").await;
    assert_eq!(s, 200);
    let stats: Value = reqwest::get(format!("{}/_emulator/webhooks", emu.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["enabled"], false);
    assert_eq!(stats["queued"], 0);
}
