//! Rate limits, latency and faults in front of `/v1/`; `/_emulator/*` untouched.
#![allow(clippy::unwrap_used)]

mod common;

use cls_emulator::{EmulatorConfig, Mode, RunningEmulator};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn start_with(f: impl FnOnce(&mut EmulatorConfig)) -> RunningEmulator {
    let mut c = config(7, 20, Mode::Test);
    f(&mut c);
    cls_emulator::spawn(c, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn stats(emu: &RunningEmulator) -> Value {
    reqwest::get(format!("{}/_emulator/stats", emu.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn over_the_limit_is_a_429_with_stripes_body() {
    let emu = start_with(|c| c.rate_limits = true).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/customers?limit=1", emu.base_url);
    let sends = (0..60).map(|_| client.get(&url).bearer_auth(KEY).send());
    let responses = futures::future::join_all(sends).await;
    let mut limited = 0;
    for r in responses {
        let r = r.unwrap();
        if r.status().as_u16() == 429 {
            limited += 1;
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                err(&v),
                (
                    "invalid_request_error",
                    "rate_limit",
                    "Request rate limit exceeded. You can learn more about rate limits here https://stripe.com/docs/rate-limits.",
                    ""
                )
            );
        } else {
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    assert!(limited >= 30, "{limited} of 60 limited");
    let s = stats(&emu).await;
    assert_eq!(s["rate_limited_total"], limited);
    assert_eq!(
        s["endpoints"]["GET /v1/customers"]["status"]["429"],
        limited
    );
    // The inspection routes are never limited.
    for _ in 0..50 {
        assert_eq!(
            reqwest::get(format!("{}/_emulator/stats", emu.base_url))
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
}

#[tokio::test]
async fn under_the_limit_nothing_is_refused() {
    let emu = start_with(|c| c.rate_limits = true).await;
    // 15 req/s on two endpoints: under 25 per endpoint, at the edge of 25 in all.
    let mut tick = tokio::time::interval(Duration::from_millis(80));
    for i in 0..24 {
        tick.tick().await;
        let path = if i % 2 == 0 {
            "/v1/customers?limit=1"
        } else {
            "/v1/customers/cus_x"
        };
        let (s, _) = get(&emu, path).await;
        assert_ne!(s, 429, "request {i}");
    }
    assert_eq!(stats(&emu).await["rate_limited_total"], 0);
}

#[tokio::test]
async fn latency_is_added_to_stripe_requests_only() {
    let emu = start_with(|c| c.latency_ms = 200).await;
    for _ in 0..3 {
        let t = Instant::now();
        let (s, _) = get(&emu, "/v1/customers?limit=1").await;
        assert_eq!(s, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_millis(2_000));
    }
    let t = Instant::now();
    stats(&emu).await;
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
}

/// How one request ended: an HTTP status with its body read in full, or a transport error.
async fn outcome(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    let r = client
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = r.status().as_u16();
    let body = r.bytes().await.map_err(|e| format!("body: {e}"))?;
    if status == 200 {
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("json: {e}"))?;
    }
    Ok(status)
}

#[tokio::test]
async fn fault_rate_one_fails_every_request() {
    let emu = start_with(|c| c.fault_rate = 1.0).await;
    let url = format!("{}/v1/customers?limit=3", emu.base_url);
    let (mut statuses, mut transport) = (0, 0);
    for _ in 0..60 {
        // A fresh client each time: a reset connection is not reused.
        let client = reqwest::Client::new();
        match outcome(&client, &url).await {
            Ok(s) => {
                assert!(matches!(s, 500 | 502 | 503), "status {s}");
                statuses += 1;
            }
            Err(_) => transport += 1,
        }
    }
    assert!(
        statuses > 0 && transport > 0,
        "{statuses} statuses, {transport} transport errors"
    );
    assert_eq!(stats(&emu).await["faults_total"], 60);
    // Inspection routes are never faulted.
    assert_eq!(export(&emu).await["customer"].as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn fault_rate_fraction_fails_about_that_share() {
    let emu = start_with(|c| {
        c.fault_rate = 0.2;
        c.slow_response_ms = 50;
    })
    .await;
    let url = format!("{}/v1/customers?limit=1", emu.base_url);
    let mut failed = 0;
    let n = 200;
    for _ in 0..n {
        let client = reqwest::Client::new();
        match outcome(&client, &url).await {
            Ok(200) => {}
            _ => failed += 1,
        }
    }
    assert!(
        (n * 8 / 100..=n * 35 / 100).contains(&failed),
        "{failed} of {n} failed"
    );
    let faults = stats(&emu).await["faults_total"].as_u64().unwrap();
    assert!(
        faults >= failed as u64,
        "{faults} faults, {failed} failures"
    );
}
