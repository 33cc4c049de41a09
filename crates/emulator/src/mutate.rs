//! `POST /_emulator/mutate` (`{"count": N, "seed": S}`): N random, realistic changes to the account,
//! each made through the same [`Writer`] operations as the HTTP writes, so they record the same
//! events and keep relations as the API does.
//!
//! Mutation kinds and their odds (per mutation):
//! - `customer.create` 12%, `customer.update` 22% (email, name, phone, description, balance,
//!   address, metadata), `customer.delete` 3% — Stripe's rule applies: the customer's live
//!   subscriptions are canceled first (`customer.subscription.deleted`), then `customer.deleted`;
//! - `product.create` 3% (with a monthly price: `product.created`, `price.created`,
//!   `plan.created`), `product.update` 5%;
//! - `price.create` 3%, `price.update` 5% (nickname, metadata; one in three archives with
//!   `active=false` or restores an archived one);
//! - `subscription.update` 15% (metadata, or toggling `cancel_at_period_end`),
//!   `subscription.cancel` 5%;
//! - `invoice.pay` 12% (open or uncollectible ones; a subscription waiting on it becomes active),
//!   `invoice.void` 5%, `invoice.update` 10% (metadata, description).
//!
//! When no object fits a kind (no open invoice left…), a customer is created instead. Choices and
//! ids come from a ChaCha RNG seeded with S and the store's insertion counter, so the outcome is a
//! pure function of (store state, S). About a third of the changes are "automatic" (events with a
//! null `request.id`, as Stripe's own billing changes are); the rest carry a `req_…` id.

use crate::error::ApiError;
use crate::form::Form;
use crate::store::Store;
use crate::write::Writer;
use bytes::Bytes;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The request body.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutateRequest {
    /// How many mutations to apply (at most [`MAX_COUNT`]).
    pub count: usize,
    /// Seed of the choices.
    #[serde(default)]
    pub seed: u64,
}

/// Upper bound on one call, so a typo cannot hold the store's lock for minutes.
pub const MAX_COUNT: usize = 1_000_000;

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Hedy", "Ken", "Radia", "Sophie",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen", "Lamarr", "Thompson", "Perlman",
    "Wilson",
];
const CITIES: &[(&str, &str)] = &[
    ("Berlin", "DE"),
    ("Paris", "FR"),
    ("London", "GB"),
    ("Toronto", "CA"),
    ("Austin", "US"),
];
const PLANS: &[&str] = &["free", "starter", "pro", "team", "enterprise"];

/// Live ids of each kind the mutations pick from, in store order (deterministic).
struct Pools {
    customers: Vec<String>,
    products: Vec<String>,
    prices: Vec<String>,
    subscriptions: Vec<String>,
    invoices: Vec<String>,
    all_invoices: Vec<String>,
}

fn live_ids(
    store: &Store,
    object: &str,
    keep: impl Fn(&crate::store::Record) -> bool,
) -> Vec<String> {
    store
        .table(object)
        .map(|t| {
            t.iter()
                .filter(|r| !r.deleted && keep(r))
                .map(|r| r.id.to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Picks a random id of `pool` that still passes `ok`, dropping stale ones on the way.
fn pick<R: Rng>(rng: &mut R, pool: &mut Vec<String>, ok: impl Fn(&str) -> bool) -> Option<String> {
    for _ in 0..8 {
        if pool.is_empty() {
            return None;
        }
        let i = rng.gen_range(0..pool.len());
        if ok(&pool[i]) {
            return Some(pool[i].clone());
        }
        pool.swap_remove(i);
    }
    None
}

/// Applies `req.count` mutations; returns the summary and the recorded events (for webhooks).
pub fn mutate(store: &mut Store, now: i64, req: MutateRequest) -> (Value, Vec<Bytes>) {
    let count = req.count.min(MAX_COUNT);
    let mut pools = Pools {
        customers: live_ids(store, "customer", |_| true),
        products: live_ids(store, "product", |_| true),
        prices: live_ids(store, "price", |_| true),
        subscriptions: live_ids(store, "subscription", |r| {
            !matches!(r.field("status"), Some("canceled" | "incomplete_expired"))
        }),
        invoices: live_ids(store, "invoice", |r| {
            matches!(r.field("status"), Some("open" | "uncollectible"))
        }),
        all_invoices: live_ids(store, "invoice", |_| true),
    };
    let mut w = Writer::new(store, req.seed, now);
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed = 0u64;
    for _ in 0..count {
        if w.rng.gen_bool(0.35) {
            w.automatic();
        } else {
            w.begin_request(None);
        }
        let (kind, result) = one(&mut w, &mut pools);
        match result {
            Ok(()) => *by_kind.entry(kind).or_default() += 1,
            Err(e) => {
                tracing::warn!(kind, error = %e, "mutation refused");
                failed += 1;
            }
        }
    }
    let events = std::mem::take(&mut w.events);
    let ends = |b: Option<&Bytes>| {
        b.and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .map(|v| json!({"id": v["id"], "created": v["created"], "type": v["type"]}))
    };
    let summary = json!({
        "applied": by_kind.values().sum::<u64>(),
        "failed": failed,
        "by_kind": by_kind,
        "events": events.len(),
        "first_event": ends(events.first()),
        "last_event": ends(events.last()),
        "now": now,
    });
    (summary, events)
}

/// One mutation: its kind and whether it applied.
fn one(w: &mut Writer<'_>, p: &mut Pools) -> (&'static str, Result<(), ApiError>) {
    let roll = w.rng.gen_range(0..100);
    match roll {
        12..=33 => {
            if let Some(id) = pick(&mut w.rng, &mut p.customers, |id| {
                live(w.store, "customer", id)
            }) {
                let form = customer_changes(w);
                return ("customer.update", w.update_customer(&id, &form).map(drop));
            }
        }
        34..=36 => {
            if let Some(id) = pick(&mut w.rng, &mut p.customers, |id| {
                live(w.store, "customer", id)
            }) {
                p.customers.retain(|c| *c != id);
                return ("customer.delete", w.delete_customer(&id).map(drop));
            }
        }
        37..=39 => {
            let n = w.rng.gen_range(1..1000);
            let form = Form::new()
                .set("name", format!("{} Add-on {n}", PLANS[n % PLANS.len()]))
                .set("description", "Created by a mutation");
            let result = w.create_product(&form).and_then(|bytes| {
                let id = id_of(&bytes);
                p.products.push(id.clone());
                let amount = w.rng.gen_range(5..=200) * 100;
                let pf = Form::new()
                    .set("currency", "usd")
                    .set("product", id)
                    .set("unit_amount", amount);
                let pf = with_recurring(pf, "month");
                let price = w.create_price(&pf)?;
                p.prices.push(id_of(&price));
                w.update_product(
                    &id_of(&bytes),
                    &Form::new().set("default_price", id_of(&price)),
                )
                .map(drop)
            });
            return ("product.create", result);
        }
        40..=44 => {
            if let Some(id) = pick(&mut w.rng, &mut p.products, |id| {
                live(w.store, "product", id)
            }) {
                let n = w.rng.gen_range(0..PLANS.len());
                let form = if w.rng.gen_bool(0.5) {
                    Form::new().meta("tier", Some(PLANS[n]))
                } else {
                    Form::new().set("description", format!("{} plan, revised", PLANS[n]))
                };
                return ("product.update", w.update_product(&id, &form).map(drop));
            }
        }
        45..=47 => {
            if let Some(product) = pick(&mut w.rng, &mut p.products, |id| {
                live(w.store, "product", id)
            }) {
                let amount = w.rng.gen_range(1..=500) * 100;
                let mut form = Form::new()
                    .set("currency", "usd")
                    .set("product", product)
                    .set("unit_amount", amount);
                if w.rng.gen_bool(0.6) {
                    form = with_recurring(form, if w.rng.gen_bool(0.8) { "month" } else { "year" });
                }
                let result = w.create_price(&form).map(|b| p.prices.push(id_of(&b)));
                return ("price.create", result);
            }
        }
        48..=52 => {
            if let Some(id) = pick(&mut w.rng, &mut p.prices, |id| live(w.store, "price", id)) {
                let form = match w.rng.gen_range(0..3) {
                    0 => {
                        let active = w.store.get("price", &id).and_then(|r| r.field("active"))
                            == Some("true");
                        Form::new().set("active", !active)
                    }
                    1 => Form::new().set(
                        "nickname",
                        format!("{} pricing", PLANS[w.rng.gen_range(0..PLANS.len())]),
                    ),
                    _ => {
                        Form::new().meta("campaign", Some(&format!("c{}", w.rng.gen_range(1..50))))
                    }
                };
                return ("price.update", w.update_price(&id, &form).map(drop));
            }
        }
        53..=67 => {
            if let Some(id) = pick(&mut w.rng, &mut p.subscriptions, |id| {
                !matches!(
                    status_of(w.store, "subscription", id),
                    None | Some("canceled" | "incomplete_expired")
                )
            }) {
                let form = if w.rng.gen_bool(0.3) {
                    let cur = serde_json::from_slice::<Value>(
                        &w.store
                            .get("subscription", &id)
                            .map(|r| r.json.clone())
                            .unwrap_or_default(),
                    )
                    .ok()
                    .and_then(|v| v["cancel_at_period_end"].as_bool())
                    .unwrap_or(false);
                    Form::new().set("cancel_at_period_end", !cur)
                } else {
                    Form::new().meta("seats", Some(&w.rng.gen_range(1..100).to_string()))
                };
                return (
                    "subscription.update",
                    w.update_subscription(&id, &form).map(drop),
                );
            }
        }
        68..=72 => {
            if let Some(id) = pick(&mut w.rng, &mut p.subscriptions, |id| {
                !matches!(
                    status_of(w.store, "subscription", id),
                    None | Some("canceled" | "incomplete_expired")
                )
            }) {
                return (
                    "subscription.cancel",
                    w.cancel_subscription(&id, &Form::new()).map(drop),
                );
            }
        }
        73..=84 => {
            if let Some(id) = pick(&mut w.rng, &mut p.invoices, |id| {
                matches!(
                    status_of(w.store, "invoice", id),
                    Some("open" | "uncollectible")
                )
            }) {
                let oob = w.rng.gen_bool(0.2);
                let form = Form::new().set("paid_out_of_band", oob);
                return ("invoice.pay", w.pay_invoice(&id, &form).map(drop));
            }
        }
        85..=89 => {
            if let Some(id) = pick(&mut w.rng, &mut p.invoices, |id| {
                matches!(
                    status_of(w.store, "invoice", id),
                    Some("open" | "uncollectible")
                )
            }) {
                return ("invoice.void", w.void_invoice(&id).map(drop));
            }
        }
        90..=99 => {
            // Any invoice, not only open ones: metadata can change whatever the status.
            if let Some(id) = pick(&mut w.rng, &mut p.all_invoices, |id| {
                live(w.store, "invoice", id)
            }) {
                let form = Form::new().meta(
                    "reconciled",
                    Some(if w.rng.gen_bool(0.5) { "yes" } else { "no" }),
                );
                return ("invoice.update", w.update_invoice(&id, &form).map(drop));
            }
        }
        _ => {}
    }
    // 0..=11, or nothing fits the kind drawn: a new customer.
    let form = new_customer(w);
    let result = w
        .create_customer(&form)
        .map(|b| p.customers.push(id_of(&b)));
    ("customer.create", result)
}

fn live(store: &Store, object: &str, id: &str) -> bool {
    store.get(object, id).is_some_and(|r| !r.deleted)
}

fn status_of<'s>(store: &'s Store, object: &str, id: &str) -> Option<&'s str> {
    store
        .get(object, id)
        .filter(|r| !r.deleted)
        .and_then(|r| r.field("status"))
}

fn id_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn with_recurring(mut form: Form, interval: &str) -> Form {
    let mut h = serde_json::Map::new();
    h.insert("interval".into(), json!(interval));
    form.put("recurring", crate::form::Field::Hash(Some(h)));
    form
}

fn new_customer(w: &mut Writer<'_>) -> Form {
    let first = FIRST[w.rng.gen_range(0..FIRST.len())];
    let last = LAST[w.rng.gen_range(0..LAST.len())];
    let n: u32 = w.rng.gen_range(0..1_000_000);
    let mut form = Form::new().set("name", format!("{first} {last}")).set(
        "email",
        format!(
            "{}.{}{n}@example.com",
            first.to_lowercase(),
            last.to_lowercase()
        ),
    );
    if w.rng.gen_bool(0.5) {
        form = form.meta("plan", Some(PLANS[w.rng.gen_range(0..PLANS.len())]));
    }
    if w.rng.gen_bool(0.4) {
        form.put("address", city(w));
    }
    form
}

fn city(w: &mut Writer<'_>) -> crate::form::Field {
    let (c, country) = CITIES[w.rng.gen_range(0..CITIES.len())];
    let mut h = serde_json::Map::new();
    h.insert("city".into(), json!(c));
    h.insert("country".into(), json!(country));
    h.insert(
        "line1".into(),
        json!(format!("{} Market Street", w.rng.gen_range(1..999))),
    );
    crate::form::Field::Hash(Some(h))
}

fn customer_changes(w: &mut Writer<'_>) -> Form {
    let form = Form::new();
    match w.rng.gen_range(0..7) {
        0 => {
            let n: u32 = w.rng.gen_range(0..1_000_000);
            form.set("email", format!("changed{n}@example.com"))
        }
        1 => form.set(
            "name",
            format!(
                "{} {}",
                FIRST[w.rng.gen_range(0..FIRST.len())],
                LAST[w.rng.gen_range(0..LAST.len())]
            ),
        ),
        2 => form.set(
            "phone",
            format!("+1555{:07}", w.rng.gen_range(0..10_000_000)),
        ),
        3 => form.set(
            "description",
            format!("Account note {}", w.rng.gen_range(1..1000)),
        ),
        4 => form.set("balance", -w.rng.gen_range(0..50) * 100),
        5 => {
            let mut f = form;
            f.put("address", city(w));
            f
        }
        _ => {
            let plan = PLANS[w.rng.gen_range(0..PLANS.len())];
            if w.rng.gen_bool(0.2) {
                form.meta("plan", None)
            } else {
                form.meta("plan", Some(plan))
            }
        }
    }
}
