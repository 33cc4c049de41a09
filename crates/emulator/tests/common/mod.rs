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

/// Sends a form-encoded write (`POST`, or `DELETE` when `delete`) with `key`.
pub async fn write_with(
    emu: &RunningEmulator,
    delete: bool,
    path: &str,
    form: &str,
    key: &str,
) -> (u16, Value) {
    let url = format!("{}{path}", emu.base_url);
    let c = reqwest::Client::new();
    let req = if delete { c.delete(url) } else { c.post(url) };
    let resp = req
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", "test-key-1")
        .body(form.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// `POST` with the secret key.
pub async fn post(emu: &RunningEmulator, path: &str, form: &str) -> (u16, Value) {
    write_with(emu, false, path, form, KEY).await
}

/// `DELETE` with the secret key.
pub async fn delete(emu: &RunningEmulator, path: &str) -> (u16, Value) {
    write_with(emu, true, path, "", KEY).await
}

/// The newest event of a type.
pub async fn newest_event(emu: &RunningEmulator, ty: &str) -> Value {
    let page = ok(emu, &format!("/v1/events?type={ty}&limit=1")).await;
    page["data"][0].clone()
}

/// Checks every object of an export against the shape digest.
pub fn check_export_shapes(export: &Value) -> usize {
    let mut checked = 0;
    for (object, items) in export.as_object().unwrap() {
        for item in items.as_array().unwrap() {
            let deleted = item.get("deleted") == Some(&Value::Bool(true));
            let key = match cls_emulator::kinds::kind(object) {
                Some(k) if deleted => k.deleted_digest.unwrap().to_string(),
                Some(k) => k.digest.to_string(),
                None => object.clone(),
            };
            let errors = cls_emulator::shapes::check(&key, item);
            assert!(errors.is_empty(), "{object} {}: {errors:?}", item["id"]);
            if object == "event" {
                let inner = &item["data"]["object"];
                let k = cls_emulator::kinds::kind(inner["object"].as_str().unwrap()).unwrap();
                let errors = cls_emulator::shapes::check(k.digest, inner);
                assert!(
                    errors.is_empty(),
                    "event {} data.object: {errors:?}",
                    item["id"]
                );
            }
            checked += 1;
        }
    }
    checked
}
