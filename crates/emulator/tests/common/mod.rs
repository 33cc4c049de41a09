//! Helpers shared by the emulator's black-box tests.
#![allow(dead_code, clippy::unwrap_used)]

use cls_emulator::{EmulatorConfig, Mode, RunningEmulator};
use serde_json::Value;

/// Fixed end of history, so every run sees the same account.
pub const ANCHOR: i64 = 1_750_000_000;

pub const KEY: &str = "sk_test_cls_emulator";

pub fn config(seed: u64, customers: usize, mode: Mode) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(seed, customers);
    c.anchor = ANCHOR;
    c.mode = mode;
    c
}

pub async fn start(customers: usize) -> RunningEmulator {
    cls_emulator::spawn(
        config(7, customers, Mode::Test),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

pub async fn get_with(emu: &RunningEmulator, path: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", emu.base_url));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

pub async fn get(emu: &RunningEmulator, path: &str) -> (u16, Value) {
    get_with(emu, path, Some(KEY)).await
}

pub async fn ok(emu: &RunningEmulator, path: &str) -> Value {
    let (s, v) = get(emu, path).await;
    assert_eq!(s, 200, "{path}: {v}");
    v
}

pub async fn export(emu: &RunningEmulator) -> Value {
    let resp = reqwest::get(format!("{}/_emulator/export", emu.base_url))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// Walks a list to the end with `starting_after`, returning every object in order.
pub async fn walk(emu: &RunningEmulator, path: &str, limit: usize) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(last) = out.last() {
            url.push_str(&format!("&starting_after={}", last["id"].as_str().unwrap()));
        }
        let page = ok(emu, &url).await;
        let data = page["data"].as_array().unwrap().clone();
        assert!(data.len() <= limit);
        let more = page["has_more"].as_bool().unwrap();
        out.extend(data);
        if !more {
            return out;
        }
    }
}

pub fn err(v: &Value) -> (&str, &str, &str, &str) {
    let e = &v["error"];
    (
        e["type"].as_str().unwrap_or(""),
        e["code"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or(""),
        e["param"].as_str().unwrap_or(""),
    )
}

pub fn arr<'a>(export: &'a Value, object: &str) -> &'a Vec<Value> {
    export[object].as_array().unwrap()
}
