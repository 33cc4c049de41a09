//! The seeded account generator: `(seed, customers, anchor)` → a [`Store`] holding a realistic,
//! internally consistent Stripe account, byte-identical for the same inputs.
//!
//! How the history is shaped:
//! - It spans three years up to the anchor. Customers arrive with growth (arrival density rises
//!   linearly), and about a quarter arrive in the same second as the previous one (imports), so
//!   ties on `created` are common; related objects (subscription, invoice, payment, charge,
//!   balance transaction) are often created in the very same second too.
//! - Objects are rendered through the shape digest ([`crate::shapes::finish`]), so each carries
//!   every field of Stripe's example.
//! - Events exist only for the last 30 days before the anchor (Stripe keeps no more): a creation
//!   event per object created in that window, plus state events (`invoice.paid`,
//!   `customer.subscription.deleted`, `customer.updated`, `*.deleted`). `data.object` is the
//!   object's final snapshot.
//!
//! Submodules: [`catalog`] (products, prices, plans, coupons, promotion codes, tax rates),
//! [`billing`] (customers and everything hanging off them), [`money`] (payments, charges, balance
//! transactions, refunds, disputes, payouts, transfers).

pub mod billing;
pub mod catalog;
pub mod money;

use crate::ids;
use crate::shapes;
use crate::store::Store;
use crate::{EmulatorConfig, Mode};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Length of the generated history.
pub const HISTORY_SECS: i64 = 3 * 365 * 86_400;

/// Events older than this before the anchor are not generated (Stripe keeps 30 days).
pub const EVENT_WINDOW_SECS: i64 = 30 * 86_400;

/// One event waiting to be numbered and stored once the history is complete.
struct PendingEvent {
    created: i64,
    ty: String,
    object: Bytes,
    previous: Option<Value>,
}

/// Generator state shared by the submodules.
pub struct Gen {
    /// The seeded RNG: the only source of randomness.
    pub rng: ChaCha8Rng,
    /// Test or live.
    pub mode: Mode,
    /// End of history.
    pub anchor: i64,
    /// Start of history.
    pub start: i64,
    /// Where objects go.
    pub store: Store,
    events: Vec<PendingEvent>,
}

impl Gen {
    /// `livemode` of every object.
    pub fn livemode(&self) -> bool {
        self.mode.livemode()
    }

    /// A new id with the usual length for `prefix`.
    pub fn id(&mut self, prefix: &str) -> String {
        ids::new_id(&mut self.rng, prefix)
    }

    /// A uniform time in `[a, b]` (or `a` when the range is empty).
    pub fn time_between(&mut self, a: i64, b: i64) -> i64 {
        if b <= a {
            a
        } else {
            self.rng.gen_range(a..=b)
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// Stores an object; `hint` is its `created` when the type has none (line items).
    pub fn put(&mut self, v: &Value, parent: Option<&str>, hint: i64) {
        if self.store.insert(v, parent, hint).is_none() {
            tracing::error!(object = ?v.get("object"), "generator produced an unstorable object");
        }
    }

    /// Records an event at `t` (kept only inside the 30-day window).
    pub fn event(&mut self, t: i64, ty: &str, object: &Value, previous: Option<Value>) {
        if t < self.anchor - EVENT_WINDOW_SECS || t > self.anchor {
            return;
        }
        // Events are recorded right after the object is stored in its final state, so the stored
        // bytes are the snapshot: reuse them rather than serializing again (a deleted object's
        // record holds its stub, so it is serialized from the value).
        let stored = match (
            object.get("object").and_then(Value::as_str),
            object.get("id").and_then(Value::as_str),
        ) {
            (Some(o), Some(id)) => self
                .store
                .get(o, id)
                .filter(|r| !r.deleted)
                .map(|r| r.json.clone()),
            _ => None,
        };
        let bytes = stored.unwrap_or_else(|| {
            Bytes::from(
                serde_json::to_vec(object)
                    .unwrap_or_default()
                    .into_boxed_slice(),
            )
        });
        self.events.push(PendingEvent {
            created: t,
            ty: ty.to_string(),
            object: bytes,
            previous,
        });
    }

    /// Whether `t` falls inside the event window.
    pub fn in_event_window(&self, t: i64) -> bool {
        t >= self.anchor - EVENT_WINDOW_SECS && t <= self.anchor
    }

    /// Deletes a stored object at time `t`, with its `<type>.deleted` event (whose `data.object`
    /// is the object as it was).
    pub fn delete(&mut self, t: i64, v: &Value) {
        let object = v.get("object").and_then(Value::as_str).unwrap_or("");
        let id = v.get("id").and_then(Value::as_str).unwrap_or("");
        self.event(t, &format!("{object}.deleted"), v, None);
        let (object, id) = (object.to_string(), id.to_string());
        self.store.delete(&object, &id);
    }

    fn flush_events(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        // Stable sort: events of the same second keep the order they happened in.
        events.sort_by_key(|e| e.created);
        for e in events {
            let id = self.id("evt_");
            let request = if self.chance(0.6) {
                let req = self.id("req_");
                format!(
                    "{{\"id\":\"{}\",\"idempotency_key\":null}}",
                    &req[..18.min(req.len())]
                )
            } else {
                "{\"id\":null,\"idempotency_key\":null}".to_string()
            };
            let s = event_json(
                &id,
                e.created,
                self.livemode(),
                &e.ty,
                &e.object,
                e.previous.as_ref(),
                &request,
            );
            self.store.insert_bytes(
                "event",
                &id,
                e.created,
                s,
                vec![("type", e.ty.into_boxed_str())],
            );
        }
    }
}

/// An event's JSON, assembled as text around the object's stored bytes (no re-serialization of
/// the snapshot), with the fields in the digest's order. `request` is the rendered
/// `{"id":…,"idempotency_key":…}` object.
pub fn event_json(
    id: &str,
    created: i64,
    livemode: bool,
    ty: &str,
    object: &[u8],
    previous: Option<&Value>,
    request: &str,
) -> Bytes {
    let mut s = Vec::with_capacity(object.len() + 256);
    s.extend_from_slice(b"{\"api_version\":\"");
    s.extend_from_slice(crate::api::API_VERSION.as_bytes());
    s.extend_from_slice(format!("\",\"created\":{created},\"data\":{{\"object\":").as_bytes());
    s.extend_from_slice(object);
    if let Some(prev) = previous {
        s.extend_from_slice(b",\"previous_attributes\":");
        s.extend_from_slice(&serde_json::to_vec(prev).unwrap_or_default());
    }
    let live = if livemode { "true" } else { "false" };
    s.extend_from_slice(
        format!(
            "}},\"id\":\"{id}\",\"livemode\":{live},\"object\":\"event\",\"pending_webhooks\":0,\"request\":{request},\"type\":{}}}",
            Value::String(ty.to_string())
        )
        .as_bytes(),
    );
    Bytes::from(s.into_boxed_slice())
}

/// Shapes `v` (a `json!` object) as digest type `digest_key`, adding `livemode` where the type
/// has it. A free function taking the (copied) mode, so `json!` arguments may use the generator.
pub fn shaped(mode: Mode, digest_key: &str, v: Value) -> Value {
    let mut m = match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if shapes::digest()
        .get(digest_key)
        .is_some_and(|f| f.iter().any(|(k, _)| k == "livemode"))
    {
        m.insert("livemode".into(), Value::Bool(mode.livemode()));
    }
    shapes::finish(digest_key, m)
}

/// A `json!` object as a map (anything else becomes empty).
pub fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Builds the whole account.
pub fn generate(config: &EmulatorConfig) -> Store {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let account_id = ids::make(&mut rng, "acct_", 16);
    let anchor = config.anchor;
    let mut g = Gen {
        rng,
        mode: config.mode,
        anchor,
        start: anchor - HISTORY_SECS,
        store: Store::new(config.mode, anchor, account_id.clone()),
        events: Vec::new(),
    };
    let cat = catalog::generate(&mut g, config.customers);
    let totals = billing::generate(&mut g, &cat, config.customers);
    let mut totals = totals;
    money::payouts_and_transfers(&mut g, config.customers, &mut totals);
    g.store.account =
        Bytes::from(serde_json::to_vec(&account(&g, &account_id)).unwrap_or_default());
    g.store.balance = Bytes::from(serde_json::to_vec(&balance(&g, &totals)).unwrap_or_default());
    g.flush_events();
    g.store
}

fn account(g: &Gen, id: &str) -> Value {
    shaped(
        g.mode,
        "account",
        json!({
            "id": id,
            "object": "account",
            "business_profile": {"mcc": "5734", "name": "Codeless Demo Inc.", "support_email": "support@example.com", "url": "https://example.com"},
            "business_type": "company",
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": true,
            "controller": {"type": "account"},
            "country": "US",
            "created": g.start - 30 * 86_400,
            "default_currency": "usd",
            "details_submitted": true,
            "email": "owner@example.com",
            "external_accounts": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/accounts/{id}/external_accounts")},
            "future_requirements": {"alternatives": [], "current_deadline": null, "currently_due": [], "disabled_reason": null, "errors": [], "eventually_due": [], "past_due": [], "pending_verification": []},
            "payouts_enabled": true,
            "requirements": {"alternatives": [], "current_deadline": null, "currently_due": [], "disabled_reason": null, "errors": [], "eventually_due": [], "past_due": [], "pending_verification": []},
            "settings": {"dashboard": {"display_name": "Codeless Demo", "timezone": "Etc/UTC"}, "payments": {"statement_descriptor": "CODELESS DEMO"}},
            "tos_acceptance": {"date": g.start - 30 * 86_400},
            "type": "standard",
        }),
    )
}

fn balance(g: &Gen, totals: &money::Totals) -> Value {
    shaped(
        g.mode,
        "balance",
        json!({
            "object": "balance",
            "available": [{"amount": totals.available, "currency": "usd", "source_types": {"card": totals.available}}],
            "pending": [{"amount": totals.pending, "currency": "usd", "source_types": {"card": totals.pending}}],
            "connect_reserved": [{"amount": 0, "currency": "usd"}],
        }),
    )
}
