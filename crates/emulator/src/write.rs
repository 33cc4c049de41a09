//! Writes: the account changing over time. Customers (create, update, delete), products (create,
//! update, delete), prices (create, update/archive), subscriptions (update, cancel) and invoices
//! (update, pay, void), each recording the events Stripe would.
//!
//! Every write goes through a [`Writer`], which holds the store's write lock for the whole change,
//! so an object and its events appear together. The rules every write keeps:
//! - An event's `data.object` is the object's stored bytes right after the change (deletions carry
//!   the object as it was, as Stripe's `*.deleted` events do); `previous_attributes` holds the old
//!   value of each top-level key that changed, and nothing else. A write that changes nothing
//!   records no event.
//! - Objects and events created here have `created` = the emulator's now, so they are the newest
//!   in every list; several in the same second keep their order through the store's `seq`.
//! - Ids come from a seeded RNG, so a write is deterministic given the store and the seed; an id
//!   already stored is drawn again.
//!
//! Stripe quirks kept: deleting a customer cancels its live subscriptions first (each with
//! `customer.subscription.deleted`); a product with prices cannot be deleted; prices are never
//! deleted, only archived (`active=false`); a recurring price is mirrored by a plan of the same id,
//! updated alongside it; a canceled subscription only takes `metadata` and `cancellation_details`.
//!
//! Not emulated: idempotent replays (the `Idempotency-Key` header is recorded in events' `request`
//! but a repeated key runs again), creating subscriptions or invoices, changing subscription items,
//! charges for paid invoices (a paid invoice is settled without a new charge), finalizing drafts on
//! pay, detaching a deleted customer's payment methods.

use crate::error::ApiError;
use crate::form::{apply_metadata, Field, Form, Param};
use crate::generate::{event_json, shaped};
use crate::ids;
use crate::store::Store;
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Fields of a customer's `address` (and of other address hashes).
const ADDRESS: &[&str] = &["city", "country", "line1", "line2", "postal_code", "state"];

/// Parameters of `POST /v1/customers` and `POST /v1/customers/{id}`.
pub const CUSTOMER_PARAMS: &[(&str, Param)] = &[
    ("address", Param::Hash(ADDRESS)),
    ("balance", Param::Int),
    ("description", Param::Text),
    ("email", Param::Text),
    ("expand", Param::List),
    ("invoice_prefix", Param::Text),
    ("metadata", Param::Metadata),
    ("name", Param::Text),
    ("phone", Param::Text),
    ("preferred_locales", Param::List),
    ("tax_exempt", Param::OneOf(&["none", "exempt", "reverse"])),
];

/// Parameters of `POST /v1/products` (`id`, `type` only on create).
pub const PRODUCT_PARAMS: &[(&str, Param)] = &[
    ("active", Param::Bool),
    ("default_price", Param::Text),
    ("description", Param::Text),
    ("expand", Param::List),
    ("id", Param::Text),
    ("images", Param::List),
    ("metadata", Param::Metadata),
    ("name", Param::Text),
    ("shippable", Param::Bool),
    ("statement_descriptor", Param::Text),
    ("tax_code", Param::Text),
    ("type", Param::OneOf(&["service", "good"])),
    ("unit_label", Param::Text),
    ("url", Param::Text),
];

/// Parameters of `POST /v1/prices` (create).
pub const PRICE_CREATE_PARAMS: &[(&str, Param)] = &[
    ("active", Param::Bool),
    ("currency", Param::Text),
    ("expand", Param::List),
    ("lookup_key", Param::Text),
    ("metadata", Param::Metadata),
    ("nickname", Param::Text),
    ("product", Param::Text),
    ("product_data", Param::Hash(&["name"])),
    (
        "recurring",
        Param::Hash(&["interval", "interval_count", "usage_type"]),
    ),
    (
        "tax_behavior",
        Param::OneOf(&["inclusive", "exclusive", "unspecified"]),
    ),
    ("unit_amount", Param::Int),
];

/// Parameters of `POST /v1/prices/{id}` (update).
pub const PRICE_UPDATE_PARAMS: &[(&str, Param)] = &[
    ("active", Param::Bool),
    ("expand", Param::List),
    ("lookup_key", Param::Text),
    ("metadata", Param::Metadata),
    ("nickname", Param::Text),
    (
        "tax_behavior",
        Param::OneOf(&["inclusive", "exclusive", "unspecified"]),
    ),
];

/// Parameters of `POST /v1/subscriptions/{id}`.
pub const SUBSCRIPTION_UPDATE_PARAMS: &[(&str, Param)] = &[
    ("cancel_at_period_end", Param::Bool),
    (
        "cancellation_details",
        Param::Hash(&["comment", "feedback"]),
    ),
    ("description", Param::Text),
    ("expand", Param::List),
    ("metadata", Param::Metadata),
    (
        "proration_behavior",
        Param::OneOf(&["always_invoice", "create_prorations", "none"]),
    ),
];

/// Parameters of `DELETE /v1/subscriptions/{id}`.
pub const SUBSCRIPTION_CANCEL_PARAMS: &[(&str, Param)] = &[
    (
        "cancellation_details",
        Param::Hash(&["comment", "feedback"]),
    ),
    ("expand", Param::List),
    ("invoice_now", Param::Bool),
    ("prorate", Param::Bool),
];

/// Parameters of `POST /v1/invoices/{id}`.
pub const INVOICE_UPDATE_PARAMS: &[(&str, Param)] = &[
    ("description", Param::Text),
    ("expand", Param::List),
    ("footer", Param::Text),
    ("metadata", Param::Metadata),
];

/// Parameters of `POST /v1/invoices/{id}/pay`.
pub const INVOICE_PAY_PARAMS: &[(&str, Param)] =
    &[("expand", Param::List), ("paid_out_of_band", Param::Bool)];

/// Parameters of `POST /v1/invoices/{id}/void` and of the deletes.
pub const EXPAND_ONLY: &[(&str, Param)] = &[("expand", Param::List)];

/// One write endpoint, resolved from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRoute {
    /// `POST /v1/customers`.
    CreateCustomer,
    /// `POST /v1/customers/{id}`.
    UpdateCustomer(String),
    /// `DELETE /v1/customers/{id}`.
    DeleteCustomer(String),
    /// `POST /v1/products`.
    CreateProduct,
    /// `POST /v1/products/{id}`.
    UpdateProduct(String),
    /// `DELETE /v1/products/{id}`.
    DeleteProduct(String),
    /// `POST /v1/prices`.
    CreatePrice,
    /// `POST /v1/prices/{id}`.
    UpdatePrice(String),
    /// `POST /v1/subscriptions/{id}`.
    UpdateSubscription(String),
    /// `DELETE /v1/subscriptions/{id}`.
    CancelSubscription(String),
    /// `POST /v1/invoices/{id}`.
    UpdateInvoice(String),
    /// `POST /v1/invoices/{id}/pay`.
    PayInvoice(String),
    /// `POST /v1/invoices/{id}/void`.
    VoidInvoice(String),
}

impl WriteRoute {
    /// Resolves `method` (`POST`/`DELETE`) and the path after `/v1/`.
    pub fn resolve(method: &str, path: &str) -> Option<WriteRoute> {
        let segs: Vec<&str> = path.split('/').collect();
        let id = |i: usize| segs.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
        use WriteRoute::*;
        Some(match (method, segs.as_slice()) {
            ("POST", ["customers"]) => CreateCustomer,
            ("POST", ["customers", _]) => UpdateCustomer(id(1)?),
            ("DELETE", ["customers", _]) => DeleteCustomer(id(1)?),
            ("POST", ["products"]) => CreateProduct,
            ("POST", ["products", _]) => UpdateProduct(id(1)?),
            ("DELETE", ["products", _]) => DeleteProduct(id(1)?),
            ("POST", ["prices"]) => CreatePrice,
            ("POST", ["prices", _]) => UpdatePrice(id(1)?),
            ("POST", ["subscriptions", _]) => UpdateSubscription(id(1)?),
            ("DELETE", ["subscriptions", _]) => CancelSubscription(id(1)?),
            ("POST", ["invoices", _]) => UpdateInvoice(id(1)?),
            ("POST", ["invoices", _, "pay"]) => PayInvoice(id(1)?),
            ("POST", ["invoices", _, "void"]) => VoidInvoice(id(1)?),
            _ => return None,
        })
    }

    /// The endpoint's name in stats and rate limits (`POST /v1/invoices/{id}/pay`).
    pub fn endpoint(&self) -> &'static str {
        use WriteRoute::*;
        match self {
            CreateCustomer => "POST /v1/customers",
            UpdateCustomer(_) => "POST /v1/customers/{id}",
            DeleteCustomer(_) => "DELETE /v1/customers/{id}",
            CreateProduct => "POST /v1/products",
            UpdateProduct(_) => "POST /v1/products/{id}",
            DeleteProduct(_) => "DELETE /v1/products/{id}",
            CreatePrice => "POST /v1/prices",
            UpdatePrice(_) => "POST /v1/prices/{id}",
            UpdateSubscription(_) => "POST /v1/subscriptions/{id}",
            CancelSubscription(_) => "DELETE /v1/subscriptions/{id}",
            UpdateInvoice(_) => "POST /v1/invoices/{id}",
            PayInvoice(_) => "POST /v1/invoices/{id}/pay",
            VoidInvoice(_) => "POST /v1/invoices/{id}/void",
        }
    }

    /// The restricted-key permission a write needs (`rak_customer_write`).
    pub fn permission(&self) -> &'static str {
        use WriteRoute::*;
        match self {
            CreateCustomer | UpdateCustomer(_) | DeleteCustomer(_) => "rak_customer_write",
            CreateProduct | UpdateProduct(_) | DeleteProduct(_) => "rak_product_write",
            CreatePrice | UpdatePrice(_) => "rak_price_write",
            UpdateSubscription(_) | CancelSubscription(_) => "rak_subscription_write",
            UpdateInvoice(_) | PayInvoice(_) | VoidInvoice(_) => "rak_invoice_write",
        }
    }

    /// The parameters the endpoint accepts.
    pub fn params(&self) -> &'static [(&'static str, Param)] {
        use WriteRoute::*;
        match self {
            CreateCustomer | UpdateCustomer(_) => CUSTOMER_PARAMS,
            CreateProduct | UpdateProduct(_) => PRODUCT_PARAMS,
            CreatePrice => PRICE_CREATE_PARAMS,
            UpdatePrice(_) => PRICE_UPDATE_PARAMS,
            UpdateSubscription(_) => SUBSCRIPTION_UPDATE_PARAMS,
            CancelSubscription(_) => SUBSCRIPTION_CANCEL_PARAMS,
            UpdateInvoice(_) => INVOICE_UPDATE_PARAMS,
            PayInvoice(_) => INVOICE_PAY_PARAMS,
            VoidInvoice(_) | DeleteCustomer(_) | DeleteProduct(_) => EXPAND_ONLY,
        }
    }
}

/// One change in progress: the store (write-locked by the caller), the RNG for ids, the clock, and
/// the events recorded so far (for webhooks).
pub struct Writer<'a> {
    /// The account.
    pub store: &'a mut Store,
    /// Source of ids.
    pub rng: ChaCha8Rng,
    /// The emulator's now: `created` of new objects and events.
    pub now: i64,
    request: String,
    /// JSON of every event recorded, oldest first.
    pub events: Vec<Bytes>,
}

impl<'a> Writer<'a> {
    /// A writer whose ids come from `seed` mixed with the store's insertion counter (so two writes
    /// with the same seed still draw different ids).
    pub fn new(store: &'a mut Store, seed: u64, now: i64) -> Self {
        let mix = seed ^ store.next_seq().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Writer {
            store,
            rng: ChaCha8Rng::seed_from_u64(mix),
            now,
            request: "{\"id\":null,\"idempotency_key\":null}".to_string(),
            events: Vec::new(),
        }
    }

    /// Starts a new API request: the `request` of the events that follow
    /// (`{"id":"req_…","idempotency_key":…}`). Returns the request id.
    pub fn begin_request(&mut self, idempotency_key: Option<&str>) -> String {
        let id = ids::make(&mut self.rng, "req_", 14);
        self.request = json!({"id": id, "idempotency_key": idempotency_key}).to_string();
        id
    }

    /// Events that follow have no request (Stripe's automatic changes: `request.id` null).
    pub fn automatic(&mut self) {
        self.request = "{\"id\":null,\"idempotency_key\":null}".to_string();
    }

    /// Runs one write endpoint; returns the response body.
    pub fn run(&mut self, route: &WriteRoute, form: &Form) -> Result<Bytes, ApiError> {
        use WriteRoute::*;
        match route {
            CreateCustomer => self.create_customer(form),
            UpdateCustomer(id) => self.update_customer(id, form),
            DeleteCustomer(id) => self.delete_customer(id),
            CreateProduct => self.create_product(form),
            UpdateProduct(id) => self.update_product(id, form),
            DeleteProduct(id) => self.delete_product(id),
            CreatePrice => self.create_price(form),
            UpdatePrice(id) => self.update_price(id, form),
            UpdateSubscription(id) => self.update_subscription(id, form),
            CancelSubscription(id) => self.cancel_subscription(id, form),
            UpdateInvoice(id) => self.update_invoice(id, form),
            PayInvoice(id) => self.pay_invoice(id, form),
            VoidInvoice(id) => self.void_invoice(id),
        }
    }

    fn livemode(&self) -> bool {
        self.store.mode.livemode()
    }

    /// A fresh id for `object`, never one already stored.
    fn new_id(&mut self, object: &str, prefix: &str) -> String {
        loop {
            let id = ids::new_id(&mut self.rng, prefix);
            if self.store.get(object, &id).is_none() {
                return id;
            }
        }
    }

    /// A live (not deleted) object, parsed; 404 `resource_missing` otherwise.
    fn load(&self, object: &str, id: &str) -> Result<Map<String, Value>, ApiError> {
        let rec = self
            .store
            .get(object, id)
            .filter(|r| !r.deleted)
            .ok_or_else(|| ApiError::no_such(404, object, id, "id"))?;
        match serde_json::from_slice(&rec.json) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ApiError::invalid(
                "id",
                "Stored object is unreadable.".into(),
            )),
        }
    }

    /// Stores a new object and returns its stored bytes.
    fn insert(&mut self, v: &Value, parent: Option<&str>) -> Result<Bytes, ApiError> {
        let id = self
            .store
            .insert(v, parent, self.now)
            .ok_or_else(|| ApiError::invalid("id", "The object could not be stored.".into()))?;
        let object = v.get("object").and_then(Value::as_str).unwrap_or("");
        self.stored(object, &id)
    }

    fn stored(&self, object: &str, id: &str) -> Result<Bytes, ApiError> {
        self.store
            .get(object, id)
            .map(|r| r.json.clone())
            .ok_or_else(|| ApiError::no_such(404, object, id, "id"))
    }

    /// Replaces a stored object; returns the new bytes and the previous attributes, or `None`
    /// when nothing changed (then nothing is written).
    fn update(
        &mut self,
        old: &Map<String, Value>,
        new: Map<String, Value>,
    ) -> Result<Option<(Bytes, Value)>, ApiError> {
        let Some(previous) = previous_attributes(old, &new) else {
            return Ok(None);
        };
        let v = Value::Object(new);
        if !self.store.replace(&v) {
            return Err(ApiError::invalid(
                "id",
                "The object could not be stored.".into(),
            ));
        }
        let object = v.get("object").and_then(Value::as_str).unwrap_or("");
        let id = v.get("id").and_then(Value::as_str).unwrap_or("");
        Ok(Some((self.stored(object, id)?, previous)))
    }

    /// Records an event around an object's bytes.
    pub fn emit(&mut self, ty: &str, object: &[u8], previous: Option<&Value>) {
        let id = self.new_id("event", "evt_");
        let bytes = event_json(
            &id,
            self.now,
            self.livemode(),
            ty,
            object,
            previous,
            &self.request,
        );
        self.store.insert_bytes(
            "event",
            &id,
            self.now,
            bytes.clone(),
            vec![("type", ty.into())],
        );
        self.events.push(bytes);
    }

    // ---- customers ----

    /// `POST /v1/customers`.
    pub fn create_customer(&mut self, form: &Form) -> Result<Bytes, ApiError> {
        let id = self.new_id("customer", "cus_");
        let prefix = ids::make(&mut self.rng, "", 8).to_uppercase();
        let mut m = as_map(json!({
            "id": id, "object": "customer", "address": null, "balance": 0, "created": self.now,
            "currency": null, "default_source": null, "delinquent": false, "description": null,
            "discount": null, "email": null, "invoice_prefix": prefix,
            "invoice_settings": {"custom_fields": null, "default_payment_method": null, "footer": null, "rendering_options": null},
            "metadata": {}, "name": null, "next_invoice_sequence": 1, "phone": null,
            "preferred_locales": [], "shipping": null, "tax_exempt": "none", "test_clock": null,
        }));
        apply(&mut m, form, CUSTOMER_PARAMS, &[]);
        let v = shaped(self.store.mode, "customer", Value::Object(m));
        let bytes = self.insert(&v, None)?;
        self.emit("customer.created", &bytes, None);
        Ok(bytes)
    }

    /// `POST /v1/customers/{id}`.
    pub fn update_customer(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        let old = self.load("customer", id)?;
        let mut new = old.clone();
        apply(&mut new, form, CUSTOMER_PARAMS, &[]);
        match self.update(&old, new)? {
            Some((bytes, prev)) => {
                self.emit("customer.updated", &bytes, Some(&prev));
                Ok(bytes)
            }
            None => self.stored("customer", id),
        }
    }

    /// `DELETE /v1/customers/{id}`: cancels the customer's live subscriptions (as Stripe does),
    /// then deletes it. Returns the deleted stub.
    pub fn delete_customer(&mut self, id: &str) -> Result<Bytes, ApiError> {
        let old = self.load("customer", id)?;
        // An unordered scan, sorted after: oldest subscription first, deterministic.
        let mut live: Vec<(crate::store::Key, String)> = self
            .store
            .table("subscription")
            .map(|t| {
                t.unordered()
                    .filter(|r| {
                        r.field("customer") == Some(id)
                            && !matches!(r.field("status"), Some("canceled" | "incomplete_expired"))
                    })
                    .map(|r| (r.key(), r.id.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        live.sort();
        for (_, sub) in live {
            self.cancel_subscription(&sub, &Form::new())?;
        }
        let before = Value::Object(old);
        let bytes = Bytes::from(serde_json::to_vec(&before).unwrap_or_default());
        if !self.store.delete("customer", id) {
            return Err(ApiError::no_such(404, "customer", id, "id"));
        }
        self.emit("customer.deleted", &bytes, None);
        self.stored("customer", id)
    }

    // ---- products ----

    /// `POST /v1/products`.
    pub fn create_product(&mut self, form: &Form) -> Result<Bytes, ApiError> {
        let name = form
            .text("name")
            .ok_or_else(|| ApiError::missing_param("name"))?
            .to_string();
        let id = match form.text("id") {
            Some(id) if self.store.get("product", id).is_some() => {
                return Err(ApiError::invalid(
                    "id",
                    "Product already exists.".to_string(),
                ))
            }
            Some(id) => id.to_string(),
            None => self.new_id("product", "prod_"),
        };
        if form.get("default_price").is_some() {
            // A new product has no prices yet; Stripe sets its default with `default_price_data`.
            return Err(ApiError::unknown_param("default_price"));
        }
        let mut m = as_map(json!({
            "id": id, "object": "product", "active": true, "created": self.now, "default_price": null,
            "description": null, "images": [], "marketing_features": [], "metadata": {}, "name": name,
            "package_dimensions": null, "shippable": null, "statement_descriptor": null, "tax_code": null,
            "type": "service", "unit_label": null, "updated": self.now, "url": null,
        }));
        apply(&mut m, form, PRODUCT_PARAMS, &["id"]);
        let v = shaped(self.store.mode, "product", Value::Object(m));
        let bytes = self.insert(&v, None)?;
        self.emit("product.created", &bytes, None);
        Ok(bytes)
    }

    /// `POST /v1/products/{id}`.
    pub fn update_product(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        for p in ["id", "type"] {
            if form.get(p).is_some() {
                return Err(ApiError::unknown_param(p));
            }
        }
        let old = self.load("product", id)?;
        if let Some(price) = form.text("default_price") {
            let of_product = self
                .store
                .get("price", price)
                .is_some_and(|r| !r.deleted && r.field("product") == Some(id));
            if !of_product {
                return Err(ApiError::no_such(400, "price", price, "default_price"));
            }
        }
        let mut new = old.clone();
        apply(&mut new, form, PRODUCT_PARAMS, &[]);
        if new != old {
            new.insert("updated".into(), json!(self.now));
        }
        match self.update(&old, new)? {
            Some((bytes, prev)) => {
                self.emit("product.updated", &bytes, Some(&prev));
                Ok(bytes)
            }
            None => self.stored("product", id),
        }
    }

    /// `DELETE /v1/products/{id}`: only a product without prices (Stripe's rule).
    pub fn delete_product(&mut self, id: &str) -> Result<Bytes, ApiError> {
        let old = self.load("product", id)?;
        let has_prices = self.store.table("price").is_some_and(|t| {
            t.unordered()
                .any(|r| !r.deleted && r.field("product") == Some(id))
        });
        if has_prices {
            return Err(ApiError::invalid(
                "id",
                "This product cannot be deleted because it has one or more user-created prices."
                    .to_string(),
            ));
        }
        let bytes = Bytes::from(serde_json::to_vec(&Value::Object(old)).unwrap_or_default());
        if !self.store.delete("product", id) {
            return Err(ApiError::no_such(404, "product", id, "id"));
        }
        self.emit("product.deleted", &bytes, None);
        self.stored("product", id)
    }

    // ---- prices ----

    /// `POST /v1/prices` (recurring prices also get their mirror plan).
    pub fn create_price(&mut self, form: &Form) -> Result<Bytes, ApiError> {
        let currency = form
            .text("currency")
            .ok_or_else(|| ApiError::missing_param("currency"))?
            .to_lowercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(ApiError::invalid(
                "currency",
                format!("Invalid currency: {currency}."),
            ));
        }
        let amount = form
            .scalar("unit_amount")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::missing_param("unit_amount"))?;
        if amount < 0 {
            return Err(ApiError::out_of_range(
                "unit_amount",
                "This value must be greater than or equal to 0.",
            ));
        }
        let recurring = match form.get("recurring") {
            Some(Field::Hash(Some(h))) => {
                let interval = h.get("interval").and_then(Value::as_str).unwrap_or("");
                if !matches!(interval, "day" | "week" | "month" | "year") {
                    return Err(ApiError::invalid(
                        "recurring[interval]",
                        "Invalid recurring[interval]: must be one of day, week, month, or year"
                            .to_string(),
                    ));
                }
                let count = h.get("interval_count").and_then(Value::as_i64).unwrap_or(1);
                let usage = h
                    .get("usage_type")
                    .and_then(Value::as_str)
                    .unwrap_or("licensed");
                Some(
                    json!({"interval": interval, "interval_count": count, "meter": null, "trial_period_days": null, "usage_type": usage}),
                )
            }
            _ => None,
        };
        let product = match (form.text("product"), form.get("product_data")) {
            (Some(_), Some(_)) => return Err(ApiError::only_one("product", "product_data")),
            (Some(p), None) => {
                if self.store.get("product", p).is_none_or(|r| r.deleted) {
                    return Err(ApiError::no_such(400, "product", p, "product"));
                }
                p.to_string()
            }
            (None, Some(Field::Hash(Some(h)))) => {
                let name = h.get("name").and_then(Value::as_str).unwrap_or("");
                let pf = Form::new().set("name", name);
                let bytes = self.create_product(&pf)?;
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                v["id"].as_str().unwrap_or("").to_string()
            }
            _ => return Err(ApiError::missing_param("product")),
        };
        let id = self.new_id("price", "price_");
        let mut m = as_map(json!({
            "id": id, "object": "price", "active": true, "billing_scheme": "per_unit", "created": self.now,
            "currency": currency, "custom_unit_amount": null, "lookup_key": null, "metadata": {},
            "nickname": null, "product": product, "recurring": recurring,
            "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
            "type": if recurring.is_some() { "recurring" } else { "one_time" },
            "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
        }));
        apply(
            &mut m,
            form,
            PRICE_CREATE_PARAMS,
            &[
                "currency",
                "product",
                "product_data",
                "recurring",
                "unit_amount",
            ],
        );
        let v = shaped(self.store.mode, "price", Value::Object(m));
        let bytes = self.insert(&v, None)?;
        self.emit("price.created", &bytes, None);
        if let Some(r) = &recurring {
            let plan = plan_of(self.store.mode, &v, r);
            let pb = self.insert(&plan, None)?;
            self.emit("plan.created", &pb, None);
        }
        Ok(bytes)
    }

    /// `POST /v1/prices/{id}` (`active=false` archives it; its plan follows).
    pub fn update_price(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        let old = self.load("price", id)?;
        let mut new = old.clone();
        apply(&mut new, form, PRICE_UPDATE_PARAMS, &[]);
        let Some((bytes, prev)) = self.update(&old, new.clone())? else {
            return self.stored("price", id);
        };
        self.emit("price.updated", &bytes, Some(&prev));
        if let Ok(plan_old) = self.load("plan", id) {
            let mut plan_new = plan_old.clone();
            for k in ["active", "nickname", "metadata"] {
                if let Some(v) = new.get(k) {
                    plan_new.insert(k.into(), v.clone());
                }
            }
            if let Some((pb, pprev)) = self.update(&plan_old, plan_new)? {
                self.emit("plan.updated", &pb, Some(&pprev));
            }
        }
        Ok(bytes)
    }

    // ---- subscriptions ----

    /// `POST /v1/subscriptions/{id}`: metadata, description, `cancel_at_period_end`,
    /// `cancellation_details`.
    pub fn update_subscription(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        let old = self.load("subscription", id)?;
        let ended = matches!(
            old.get("status").and_then(Value::as_str),
            Some("canceled" | "incomplete_expired")
        );
        if ended
            && form
                .iter()
                .any(|(n, _)| !matches!(n, "metadata" | "cancellation_details" | "expand"))
        {
            return Err(ApiError::invalid(
                "id",
                "A canceled subscription can only update its cancellation_details and metadata."
                    .to_string(),
            ));
        }
        let mut new = old.clone();
        apply(
            &mut new,
            form,
            SUBSCRIPTION_UPDATE_PARAMS,
            &["cancel_at_period_end", "proration_behavior"],
        );
        if let Some(flag) = form.scalar("cancel_at_period_end").and_then(Value::as_bool) {
            let was = old.get("cancel_at_period_end").and_then(Value::as_bool) == Some(true);
            if flag != was {
                new.insert("cancel_at_period_end".into(), json!(flag));
                // Stripe: `cancel_at` becomes the end of the current period, and `canceled_at`
                // the time of the request (not the end of the period).
                let period_end = old
                    .get("items")
                    .and_then(|i| i.get("data"))
                    .and_then(|d| d.get(0))
                    .and_then(|it| it.get("current_period_end"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let (cancel_at, canceled_at, reason) = if flag {
                    (period_end, json!(self.now), json!("cancellation_requested"))
                } else {
                    (Value::Null, Value::Null, Value::Null)
                };
                new.insert("cancel_at".into(), cancel_at);
                new.insert("canceled_at".into(), canceled_at);
                if let Some(Value::Object(d)) = new.get_mut("cancellation_details") {
                    d.insert("reason".into(), reason);
                }
            }
        }
        match self.update(&old, new)? {
            Some((bytes, prev)) => {
                self.emit("customer.subscription.updated", &bytes, Some(&prev));
                Ok(bytes)
            }
            None => self.stored("subscription", id),
        }
    }

    /// `DELETE /v1/subscriptions/{id}`: cancels now (`customer.subscription.deleted`; the
    /// subscription and its items stay, with status `canceled`).
    pub fn cancel_subscription(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        let old = self.load("subscription", id)?;
        if matches!(
            old.get("status").and_then(Value::as_str),
            Some("canceled" | "incomplete_expired")
        ) {
            // Stripe treats a canceled subscription as gone for another cancel.
            return Err(ApiError::no_such(404, "subscription", id, "id"));
        }
        let mut new = old.clone();
        apply(
            &mut new,
            form,
            SUBSCRIPTION_CANCEL_PARAMS,
            &["invoice_now", "prorate"],
        );
        new.insert("status".into(), json!("canceled"));
        new.insert("canceled_at".into(), json!(self.now));
        new.insert("ended_at".into(), json!(self.now));
        new.insert("cancel_at_period_end".into(), json!(false));
        new.insert("cancel_at".into(), Value::Null);
        if let Some(Value::Object(d)) = new.get_mut("cancellation_details") {
            d.insert("reason".into(), json!("cancellation_requested"));
        }
        let (bytes, _) = self
            .update(&old, new)?
            .ok_or_else(|| ApiError::no_such(404, "subscription", id, "id"))?;
        self.emit("customer.subscription.deleted", &bytes, None);
        Ok(bytes)
    }

    // ---- invoices ----

    /// `POST /v1/invoices/{id}`: metadata, description, footer.
    pub fn update_invoice(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        let old = self.load("invoice", id)?;
        let mut new = old.clone();
        apply(&mut new, form, INVOICE_UPDATE_PARAMS, &[]);
        match self.update(&old, new)? {
            Some((bytes, prev)) => {
                self.emit("invoice.updated", &bytes, Some(&prev));
                Ok(bytes)
            }
            None => self.stored("invoice", id),
        }
    }

    /// `POST /v1/invoices/{id}/pay`: an open or uncollectible invoice becomes paid
    /// (`invoice.paid`, `invoice.payment_succeeded`); a subscription waiting on it becomes active.
    pub fn pay_invoice(&mut self, id: &str, form: &Form) -> Result<Bytes, ApiError> {
        let old = self.load("invoice", id)?;
        match old.get("status").and_then(Value::as_str) {
            Some("open" | "uncollectible") => {}
            Some("paid") => return Err(ApiError::invalid("id", "Invoice is already paid".into())),
            Some("void") => {
                return Err(ApiError::invalid(
                    "id",
                    "This invoice can no longer be paid because it is void.".into(),
                ))
            }
            _ => {
                // Emulator simplification: drafts are not finalized on pay.
                return Err(ApiError::invalid(
                    "id",
                    "This invoice is a draft: finalize it before paying it.".into(),
                ));
            }
        }
        let out_of_band = form.scalar("paid_out_of_band").and_then(Value::as_bool) == Some(true);
        let mut new = old.clone();
        let due = old.get("amount_due").cloned().unwrap_or(json!(0));
        new.insert("status".into(), json!("paid"));
        new.insert("amount_paid".into(), due);
        new.insert("amount_remaining".into(), json!(0));
        new.insert("attempted".into(), json!(true));
        if !out_of_band {
            let n = old
                .get("attempt_count")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            new.insert("attempt_count".into(), json!(n + 1));
        }
        new.insert("auto_advance".into(), json!(false));
        new.insert("next_payment_attempt".into(), Value::Null);
        if let Some(Value::Object(st)) = new.get_mut("status_transitions") {
            st.insert("paid_at".into(), json!(self.now));
        }
        let (bytes, prev) = self
            .update(&old, new)?
            .ok_or_else(|| ApiError::no_such(404, "invoice", id, "id"))?;
        self.emit("invoice.paid", &bytes, Some(&prev));
        self.emit("invoice.payment_succeeded", &bytes, Some(&prev));
        if let Some(sub) = old.get("subscription").and_then(Value::as_str) {
            self.reactivate(sub, id)?;
        }
        Ok(bytes)
    }

    /// A subscription that was past due, unpaid or incomplete becomes active once its latest
    /// invoice is paid.
    fn reactivate(&mut self, sub: &str, invoice: &str) -> Result<(), ApiError> {
        let Ok(old) = self.load("subscription", sub) else {
            return Ok(());
        };
        let waiting = matches!(
            old.get("status").and_then(Value::as_str),
            Some("past_due" | "unpaid" | "incomplete")
        );
        if !waiting || old.get("latest_invoice").and_then(Value::as_str) != Some(invoice) {
            return Ok(());
        }
        let mut new = old.clone();
        new.insert("status".into(), json!("active"));
        if let Some((bytes, prev)) = self.update(&old, new)? {
            self.emit("customer.subscription.updated", &bytes, Some(&prev));
        }
        Ok(())
    }

    /// `POST /v1/invoices/{id}/void`: only open or uncollectible invoices.
    pub fn void_invoice(&mut self, id: &str) -> Result<Bytes, ApiError> {
        let old = self.load("invoice", id)?;
        if !matches!(
            old.get("status").and_then(Value::as_str),
            Some("open" | "uncollectible")
        ) {
            return Err(ApiError::invalid(
                "id",
                "You can only void open or uncollectible invoices.".into(),
            ));
        }
        let mut new = old.clone();
        new.insert("status".into(), json!("void"));
        new.insert("amount_remaining".into(), json!(0));
        new.insert("auto_advance".into(), json!(false));
        new.insert("next_payment_attempt".into(), Value::Null);
        if let Some(Value::Object(st)) = new.get_mut("status_transitions") {
            st.insert("voided_at".into(), json!(self.now));
        }
        let (bytes, prev) = self
            .update(&old, new)?
            .ok_or_else(|| ApiError::no_such(404, "invoice", id, "id"))?;
        self.emit("invoice.voided", &bytes, Some(&prev));
        Ok(bytes)
    }
}

/// The plan Stripe serves for a recurring price (same id).
fn plan_of(mode: crate::Mode, price: &Value, recurring: &Value) -> Value {
    let amount = price["unit_amount"].as_i64().unwrap_or(0);
    shaped(
        mode,
        "plan",
        json!({
            "id": price["id"], "object": "plan", "active": price["active"], "amount": amount,
            "amount_decimal": amount.to_string(), "billing_scheme": "per_unit", "created": price["created"],
            "currency": price["currency"], "interval": recurring["interval"], "interval_count": recurring["interval_count"],
            "metadata": price["metadata"], "meter": null, "nickname": price["nickname"], "product": price["product"],
            "tiers_mode": null, "transform_usage": null, "trial_period_days": null, "usage_type": recurring["usage_type"],
        }),
    )
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Applies form fields to an object: scalars replace, metadata merges (Stripe's unset rules),
/// hashes merge into the existing one (a new hash starts with every sub-key null), lists replace.
/// `skip` names parameters the caller handles itself; `expand` is never stored.
fn apply(obj: &mut Map<String, Value>, form: &Form, spec: &[(&'static str, Param)], skip: &[&str]) {
    for (name, field) in form.iter() {
        if name == "expand" || skip.contains(&name) {
            continue;
        }
        match field {
            Field::Scalar(v) => {
                obj.insert(name.to_string(), v.clone());
            }
            Field::Metadata { clear, changes } => {
                let slot = obj
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                apply_metadata(slot, *clear, changes);
            }
            Field::Hash(None) => {
                obj.insert(name.to_string(), Value::Null);
            }
            Field::Hash(Some(h)) => {
                let keys: &[&str] = spec
                    .iter()
                    .find_map(|(n, p)| match p {
                        Param::Hash(keys) if *n == name => Some(*keys),
                        _ => None,
                    })
                    .unwrap_or(&[]);
                let slot = obj.entry(name.to_string()).or_insert(Value::Null);
                if !slot.is_object() {
                    *slot =
                        Value::Object(keys.iter().map(|k| (k.to_string(), Value::Null)).collect());
                }
                if let Value::Object(m) = slot {
                    for (k, v) in h {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            Field::List(items) => {
                obj.insert(
                    name.to_string(),
                    Value::Array(items.iter().cloned().map(Value::String).collect()),
                );
            }
        }
    }
}

/// Old values of the top-level keys whose value differs; `None` when nothing changed.
pub fn previous_attributes(old: &Map<String, Value>, new: &Map<String, Value>) -> Option<Value> {
    let mut prev = Map::new();
    for (k, v) in new {
        let before = old.get(k).unwrap_or(&Value::Null);
        if before != v {
            prev.insert(k.clone(), before.clone());
        }
    }
    (!prev.is_empty()).then_some(Value::Object(prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_with_their_templates_and_permissions() {
        let r = WriteRoute::resolve("POST", "invoices/in_1/pay").expect("route");
        assert_eq!(r, WriteRoute::PayInvoice("in_1".into()));
        assert_eq!(r.endpoint(), "POST /v1/invoices/{id}/pay");
        assert_eq!(r.permission(), "rak_invoice_write");
        assert!(WriteRoute::resolve("DELETE", "prices/price_1").is_none());
        assert!(WriteRoute::resolve("POST", "customers/").is_none());
    }

    #[test]
    fn previous_attributes_hold_only_changed_keys() {
        let old = as_map(json!({"a": 1, "b": {"x": 1}, "c": "s"}));
        let new = as_map(json!({"a": 1, "b": {"x": 2}, "c": "s"}));
        assert_eq!(
            previous_attributes(&old, &new),
            Some(json!({"b": {"x": 1}}))
        );
        assert_eq!(previous_attributes(&old, &old), None);
    }
}
