//! Request counters for `GET /_emulator/stats`: total Stripe requests, per endpoint and status,
//! and the rate-limited and fault totals (incremented by the rate-limit and fault layers).

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters, safe to share between requests.
#[derive(Debug, Default)]
pub struct Stats {
    requests_total: AtomicU64,
    rate_limited_total: AtomicU64,
    faults_total: AtomicU64,
    connected_account_requests_total: AtomicU64,
    by_endpoint: Mutex<BTreeMap<String, BTreeMap<u16, u64>>>,
}

impl Stats {
    /// Counts one Stripe request (`endpoint` like `GET /v1/customers/{id}`) and its status.
    pub fn record(&self, endpoint: &str, status: u16) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.by_endpoint.lock() {
            let per_status = match map.get_mut(endpoint) {
                Some(m) => m,
                None => map.entry(endpoint.to_string()).or_default(),
            };
            *per_status.entry(status).or_default() += 1;
        }
    }

    /// Counts one request answered 429 by the rate limiter.
    pub fn add_rate_limited(&self) {
        self.rate_limited_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request made for a known connected account (`Stripe-Account`): Stripe
    /// draws those from the platform's separate read allocation for its connected accounts.
    pub fn add_for_connected_account(&self) {
        self.connected_account_requests_total
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one injected fault.
    pub fn add_fault(&self) {
        self.faults_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Total Stripe requests so far.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// The stats body: `{requests_total, rate_limited_total, faults_total,
    /// connected_account_requests_total, endpoints: {endpoint: {total, status: {"200": n}}}}`.
    pub fn to_json(&self) -> Value {
        let mut endpoints = Map::new();
        if let Ok(map) = self.by_endpoint.lock() {
            for (endpoint, statuses) in map.iter() {
                let mut by_status = Map::new();
                let mut total = 0;
                for (status, n) in statuses {
                    by_status.insert(status.to_string(), json!(n));
                    total += n;
                }
                endpoints.insert(
                    endpoint.clone(),
                    json!({"total": total, "status": by_status}),
                );
            }
        }
        json!({
            "requests_total": self.requests_total.load(Ordering::Relaxed),
            "rate_limited_total": self.rate_limited_total.load(Ordering::Relaxed),
            "faults_total": self.faults_total.load(Ordering::Relaxed),
            "connected_account_requests_total": self
                .connected_account_requests_total
                .load(Ordering::Relaxed),
            "endpoints": endpoints,
        })
    }
}
