//! The catalog: every Stripe data type Codeless Sync can copy, described as data.
//!
//! A [`DataType`] says where Stripe lists the objects (`list_path`), which filters that list
//! accepts, whether the objects hang off a parent (invoice line items belong to an invoice), the
//! table they land in, and the typed columns people query. Adding a data type is adding one entry
//! to [`CATALOG`]; the source, engine and destinations read only these descriptions.
//!
//! Words used here:
//! - *data type*: the user-facing name of a kind of object (`customers`, `invoice_line_items`); it
//!   is also the table name.
//! - *object type*: the value of Stripe's `object` field (`customer`, `line_item`).
//! - *typed column*: a column extracted from the object for querying; the whole object is always
//!   kept in `data` as well.

use serde_json::Value;

/// SQL-agnostic column kinds; each destination maps them to its own SQL types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text (ids, emails, statuses, currencies).
    Text,
    /// 64-bit integer (money in minor units, counts).
    BigInt,
    /// Boolean.
    Boolean,
    /// A unix-seconds field stored as a timestamp (`timestamptz` in PostgreSQL).
    Timestamp,
    /// A floating-point number (percentages).
    Double,
    /// Structured JSON (`jsonb` in PostgreSQL, JSON text in SQLite).
    Json,
}

/// One typed column: its name in the table and where its value sits in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name in the destination table.
    pub name: &'static str,
    /// Path of keys from the object's root to the value (usually one key, the column name).
    pub path: &'static [&'static str],
    /// SQL-agnostic type.
    pub kind: ColumnKind,
}

/// How a child data type is reached from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// Name of the parent data type (`invoices`).
    pub data_type: &'static str,
    /// Field of the parent that embeds the first page of children as a list object (`lines`),
    /// or `None` when the parent embeds nothing and the child list must always be fetched.
    pub embedded_field: Option<&'static str>,
    /// Path of the child list with `{id}` standing for the parent's id
    /// (`/v1/invoices/{id}/lines`), or a path plus a parent query parameter (`subscription_items`).
    pub list_path: &'static str,
    /// Query parameter that names the parent, when the child list is not nested under the
    /// parent's path (`subscription` for `/v1/subscription_items?subscription=…`).
    pub parent_param: Option<&'static str>,
    /// Column of the child table that holds the parent's id.
    pub parent_column: &'static str,
}

/// One data type of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataType {
    /// User-facing name, also the table name (`customers`, `checkout_sessions`).
    pub name: &'static str,
    /// Stripe's `object` value for these objects (`customer`, `checkout.session`).
    pub object: &'static str,
    /// Top-level list endpoint (`/v1/customers`). For child types, the parent's list is walked
    /// and the children come from [`Parent::list_path`].
    pub list_path: &'static str,
    /// The object field that the list's `created[gte]`/`created[lt]` filters apply to
    /// (`created`; `date` for invoice items, which have no `created`), or `None` when the list
    /// cannot filter by creation time (so it cannot be windowed).
    pub created_field: Option<&'static str>,
    /// Extra query parameters always sent with the list (`status=all` for subscriptions, whose
    /// default hides canceled ones).
    pub list_params: &'static [(&'static str, &'static str)],
    /// Set for data types that are children of another (invoice line items).
    pub parent: Option<Parent>,
    /// The restricted-key permission needed to read it (`rak_customer_read`).
    pub permission: &'static str,
    /// Where that permission is enabled on a restricted key in the Stripe Dashboard.
    pub dashboard_section: &'static str,
    /// Event type prefixes whose `data.object` is an object of this type (`customer.` but not
    /// `customer.subscription.`); used by incremental sync.
    pub event_types: &'static [&'static str],
    /// Whether Stripe deletes these objects for good (`customer.deleted`), so a full sync must
    /// reconcile rows that disappeared.
    pub deletable: bool,
    /// Typed columns besides the common ones every table has.
    pub columns: &'static [Column],
}

impl DataType {
    /// The table name (same as the data type's name).
    pub fn table(&self) -> &'static str {
        self.name
    }

    /// Whether the list accepts `created[gte]`/`created[lt]` filters (so it can be windowed).
    pub fn created_filter(&self) -> bool {
        self.created_field.is_some()
    }

    /// When `object` (one of this type's objects) was created, from the field the list's
    /// `created` filter applies to.
    pub fn created_of(&self, object: &serde_json::Value) -> Option<i64> {
        object.get(self.created_field?)?.as_i64()
    }

    /// Whether this type is fetched through a parent.
    pub fn is_child(&self) -> bool {
        self.parent.is_some()
    }
}

const fn col(name: &'static str, kind: ColumnKind) -> Column {
    Column {
        name,
        path: &[],
        kind,
    }
}

const fn nested(name: &'static str, path: &'static [&'static str], kind: ColumnKind) -> Column {
    Column { name, path, kind }
}

use ColumnKind::{BigInt, Boolean, Double, Json, Text, Timestamp};

/// Every data type, in the order a full sync walks them (parents before children).
pub static CATALOG: &[DataType] = &[
    DataType {
        name: "customers",
        object: "customer",
        list_path: "/v1/customers",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_customer_read",
        dashboard_section: "Customers",
        event_types: &["customer.created", "customer.updated", "customer.deleted"],
        deletable: true,
        columns: &[
            col("email", Text),
            col("name", Text),
            col("phone", Text),
            col("description", Text),
            col("currency", Text),
            col("balance", BigInt),
            col("delinquent", Boolean),
            col("default_source", Text),
            nested(
                "default_payment_method",
                &["invoice_settings", "default_payment_method"],
                Text,
            ),
            col("address", Json),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "products",
        object: "product",
        list_path: "/v1/products",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_product_read",
        dashboard_section: "Products",
        event_types: &["product.created", "product.updated", "product.deleted"],
        deletable: true,
        columns: &[
            col("name", Text),
            col("description", Text),
            col("active", Boolean),
            col("type", Text),
            col("default_price", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("updated", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "prices",
        object: "price",
        list_path: "/v1/prices",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_price_read",
        dashboard_section: "Prices",
        event_types: &["price.created", "price.updated", "price.deleted"],
        deletable: true,
        columns: &[
            col("product", Text),
            col("active", Boolean),
            col("currency", Text),
            col("unit_amount", BigInt),
            col("type", Text),
            nested("recurring_interval", &["recurring", "interval"], Text),
            nested(
                "recurring_interval_count",
                &["recurring", "interval_count"],
                BigInt,
            ),
            col("nickname", Text),
            col("lookup_key", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "plans",
        object: "plan",
        list_path: "/v1/plans",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_plan_read",
        dashboard_section: "Plans",
        event_types: &["plan.created", "plan.updated", "plan.deleted"],
        deletable: true,
        columns: &[
            col("product", Text),
            col("active", Boolean),
            col("amount", BigInt),
            col("currency", Text),
            col("interval", Text),
            col("interval_count", BigInt),
            col("nickname", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "coupons",
        object: "coupon",
        list_path: "/v1/coupons",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_coupon_read",
        dashboard_section: "Coupons",
        event_types: &["coupon.created", "coupon.updated", "coupon.deleted"],
        deletable: true,
        columns: &[
            col("name", Text),
            col("amount_off", BigInt),
            col("percent_off", Double),
            col("currency", Text),
            col("duration", Text),
            col("duration_in_months", BigInt),
            col("valid", Boolean),
            col("times_redeemed", BigInt),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "promotion_codes",
        object: "promotion_code",
        list_path: "/v1/promotion_codes",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_promotion_code_read",
        dashboard_section: "Promotion codes",
        event_types: &["promotion_code.created", "promotion_code.updated"],
        deletable: false,
        columns: &[
            col("code", Text),
            col("active", Boolean),
            col("customer", Text),
            nested("coupon", &["promotion", "coupon"], Text),
            col("times_redeemed", BigInt),
            col("expires_at", Timestamp),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "tax_rates",
        object: "tax_rate",
        list_path: "/v1/tax_rates",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_tax_rate_read",
        dashboard_section: "Tax rates",
        event_types: &["tax_rate.created", "tax_rate.updated"],
        deletable: false,
        columns: &[
            col("display_name", Text),
            col("percentage", Double),
            col("inclusive", Boolean),
            col("active", Boolean),
            col("country", Text),
            col("jurisdiction", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "subscriptions",
        object: "subscription",
        list_path: "/v1/subscriptions",
        created_field: Some("created"),
        // Without status=all Stripe leaves out canceled and incomplete_expired subscriptions.
        list_params: &[("status", "all")],
        parent: None,
        permission: "rak_subscription_read",
        dashboard_section: "Subscriptions",
        event_types: &[
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "customer.subscription.paused",
            "customer.subscription.resumed",
            "customer.subscription.trial_will_end",
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
        ],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("status", Text),
            col("currency", Text),
            col("collection_method", Text),
            col("cancel_at_period_end", Boolean),
            col("cancel_at", Timestamp),
            col("canceled_at", Timestamp),
            col("ended_at", Timestamp),
            col("start_date", Timestamp),
            col("trial_start", Timestamp),
            col("trial_end", Timestamp),
            col("latest_invoice", Text),
            col("schedule", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "subscription_items",
        object: "subscription_item",
        list_path: "/v1/subscription_items",
        created_field: None,
        list_params: &[],
        parent: Some(Parent {
            data_type: "subscriptions",
            embedded_field: Some("items"),
            list_path: "/v1/subscription_items",
            parent_param: Some("subscription"),
            parent_column: "subscription",
        }),
        permission: "rak_subscription_read",
        dashboard_section: "Subscriptions",
        event_types: &[],
        deletable: true,
        columns: &[
            col("subscription", Text),
            nested("price", &["price", "id"], Text),
            nested("product", &["price", "product"], Text),
            col("quantity", BigInt),
            col("current_period_start", Timestamp),
            col("current_period_end", Timestamp),
            col("metadata", Json),
            col("created", Timestamp),
        ],
    },
    DataType {
        name: "subscription_schedules",
        object: "subscription_schedule",
        list_path: "/v1/subscription_schedules",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_subscription_read",
        dashboard_section: "Subscriptions",
        event_types: &["subscription_schedule."],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("subscription", Text),
            col("status", Text),
            col("end_behavior", Text),
            col("canceled_at", Timestamp),
            col("completed_at", Timestamp),
            col("released_at", Timestamp),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "invoices",
        object: "invoice",
        list_path: "/v1/invoices",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_invoice_read",
        dashboard_section: "Invoices",
        event_types: &["invoice."],
        deletable: true,
        columns: &[
            col("customer", Text),
            col("subscription", Text),
            col("status", Text),
            col("number", Text),
            col("currency", Text),
            col("amount_due", BigInt),
            col("amount_paid", BigInt),
            col("amount_remaining", BigInt),
            col("subtotal", BigInt),
            col("total", BigInt),
            col("collection_method", Text),
            col("billing_reason", Text),
            col("customer_email", Text),
            col("due_date", Timestamp),
            col("period_start", Timestamp),
            col("period_end", Timestamp),
            col("hosted_invoice_url", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "invoice_line_items",
        object: "line_item",
        list_path: "/v1/invoices/{id}/lines",
        created_field: None,
        list_params: &[],
        parent: Some(Parent {
            data_type: "invoices",
            embedded_field: Some("lines"),
            list_path: "/v1/invoices/{id}/lines",
            parent_param: None,
            parent_column: "invoice",
        }),
        permission: "rak_invoice_read",
        dashboard_section: "Invoices",
        event_types: &[],
        deletable: true,
        columns: &[
            col("invoice", Text),
            col("subscription", Text),
            col("amount", BigInt),
            col("currency", Text),
            col("description", Text),
            col("quantity", BigInt),
            nested("period_start", &["period", "start"], Timestamp),
            nested("period_end", &["period", "end"], Timestamp),
            col("metadata", Json),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "invoiceitems",
        object: "invoiceitem",
        list_path: "/v1/invoiceitems",
        created_field: Some("date"),
        list_params: &[],
        parent: None,
        permission: "rak_invoice_read",
        dashboard_section: "Invoices",
        event_types: &[
            "invoiceitem.created",
            "invoiceitem.updated",
            "invoiceitem.deleted",
        ],
        deletable: true,
        columns: &[
            col("customer", Text),
            col("invoice", Text),
            col("amount", BigInt),
            col("currency", Text),
            col("description", Text),
            col("quantity", BigInt),
            col("date", Timestamp),
            col("metadata", Json),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "credit_notes",
        object: "credit_note",
        list_path: "/v1/credit_notes",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_credit_note_read",
        dashboard_section: "Credit notes",
        event_types: &["credit_note."],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("invoice", Text),
            col("status", Text),
            col("type", Text),
            col("number", Text),
            col("amount", BigInt),
            col("total", BigInt),
            col("currency", Text),
            col("reason", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "payment_intents",
        object: "payment_intent",
        list_path: "/v1/payment_intents",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_payment_intent_read",
        dashboard_section: "PaymentIntents",
        event_types: &["payment_intent."],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("status", Text),
            col("amount", BigInt),
            col("amount_received", BigInt),
            col("currency", Text),
            col("payment_method", Text),
            col("latest_charge", Text),
            col("description", Text),
            col("canceled_at", Timestamp),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "charges",
        object: "charge",
        list_path: "/v1/charges",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_charge_read",
        dashboard_section: "Charges",
        event_types: &[
            "charge.captured",
            "charge.expired",
            "charge.failed",
            "charge.pending",
            "charge.refunded",
            "charge.succeeded",
            "charge.updated",
        ],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("payment_intent", Text),
            col("status", Text),
            col("amount", BigInt),
            col("amount_captured", BigInt),
            col("amount_refunded", BigInt),
            col("currency", Text),
            col("paid", Boolean),
            col("refunded", Boolean),
            col("disputed", Boolean),
            col("balance_transaction", Text),
            col("payment_method", Text),
            col("failure_code", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "refunds",
        object: "refund",
        list_path: "/v1/refunds",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_refund_read",
        dashboard_section: "Refunds",
        event_types: &[
            "refund.created",
            "refund.updated",
            "refund.failed",
            "charge.refund.updated",
        ],
        deletable: false,
        columns: &[
            col("charge", Text),
            col("payment_intent", Text),
            col("status", Text),
            col("amount", BigInt),
            col("currency", Text),
            col("reason", Text),
            col("metadata", Json),
            col("created", Timestamp),
        ],
    },
    DataType {
        name: "disputes",
        object: "dispute",
        list_path: "/v1/disputes",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_dispute_read",
        dashboard_section: "Disputes",
        event_types: &["charge.dispute."],
        deletable: false,
        columns: &[
            col("charge", Text),
            col("payment_intent", Text),
            col("status", Text),
            col("reason", Text),
            col("amount", BigInt),
            col("currency", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "setup_intents",
        object: "setup_intent",
        list_path: "/v1/setup_intents",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_setup_intent_read",
        dashboard_section: "SetupIntents",
        event_types: &["setup_intent."],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("status", Text),
            col("usage", Text),
            col("payment_method", Text),
            col("description", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "payment_methods",
        object: "payment_method",
        list_path: "/v1/customers/{id}/payment_methods",
        created_field: None,
        list_params: &[],
        // Stripe lists a customer's saved payment methods only per customer: there is no
        // account-wide list of attached payment methods, so each customer costs one request.
        parent: Some(Parent {
            data_type: "customers",
            embedded_field: None,
            list_path: "/v1/customers/{id}/payment_methods",
            parent_param: None,
            parent_column: "customer",
        }),
        permission: "rak_payment_method_read",
        dashboard_section: "PaymentMethods",
        event_types: &[
            "payment_method.attached",
            "payment_method.updated",
            "payment_method.automatically_updated",
            "payment_method.detached",
        ],
        deletable: true,
        columns: &[
            col("customer", Text),
            col("type", Text),
            nested("card_brand", &["card", "brand"], Text),
            nested("card_last4", &["card", "last4"], Text),
            nested("card_exp_month", &["card", "exp_month"], BigInt),
            nested("card_exp_year", &["card", "exp_year"], BigInt),
            nested("billing_email", &["billing_details", "email"], Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "checkout_sessions",
        object: "checkout.session",
        list_path: "/v1/checkout/sessions",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_checkout_session_read",
        dashboard_section: "Checkout Sessions",
        event_types: &["checkout.session."],
        deletable: false,
        columns: &[
            col("customer", Text),
            col("mode", Text),
            col("status", Text),
            col("payment_status", Text),
            col("amount_total", BigInt),
            col("currency", Text),
            col("payment_intent", Text),
            col("subscription", Text),
            col("invoice", Text),
            col("expires_at", Timestamp),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "balance_transactions",
        object: "balance_transaction",
        list_path: "/v1/balance_transactions",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_balance_transaction_read",
        dashboard_section: "Balance transaction sources",
        event_types: &[],
        deletable: false,
        columns: &[
            col("type", Text),
            col("status", Text),
            col("amount", BigInt),
            col("fee", BigInt),
            col("net", BigInt),
            col("currency", Text),
            col("source", Text),
            col("reporting_category", Text),
            col("available_on", Timestamp),
            col("created", Timestamp),
        ],
    },
    DataType {
        name: "payouts",
        object: "payout",
        list_path: "/v1/payouts",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_payout_read",
        dashboard_section: "Payouts",
        event_types: &["payout."],
        deletable: false,
        columns: &[
            col("status", Text),
            col("amount", BigInt),
            col("currency", Text),
            col("method", Text),
            col("type", Text),
            col("destination", Text),
            col("balance_transaction", Text),
            col("arrival_date", Timestamp),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "transfers",
        object: "transfer",
        list_path: "/v1/transfers",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_transfer_read",
        dashboard_section: "Transfers",
        event_types: &["transfer."],
        deletable: false,
        columns: &[
            col("amount", BigInt),
            col("amount_reversed", BigInt),
            col("currency", Text),
            col("destination", Text),
            col("reversed", Boolean),
            col("transfer_group", Text),
            col("balance_transaction", Text),
            col("metadata", Json),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "early_fraud_warnings",
        object: "radar.early_fraud_warning",
        list_path: "/v1/radar/early_fraud_warnings",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_radar_early_fraud_warning_read",
        dashboard_section: "Radar",
        event_types: &["radar.early_fraud_warning."],
        deletable: false,
        columns: &[
            col("charge", Text),
            col("payment_intent", Text),
            col("fraud_type", Text),
            col("actionable", Boolean),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "reviews",
        object: "review",
        list_path: "/v1/reviews",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_review_read",
        dashboard_section: "Radar",
        event_types: &["review."],
        deletable: false,
        columns: &[
            col("charge", Text),
            col("payment_intent", Text),
            col("reason", Text),
            col("open", Boolean),
            col("closed_reason", Text),
            col("opened_reason", Text),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
    DataType {
        name: "events",
        object: "event",
        list_path: "/v1/events",
        created_field: Some("created"),
        list_params: &[],
        parent: None,
        permission: "rak_event_read",
        dashboard_section: "Events",
        event_types: &[],
        deletable: false,
        columns: &[
            col("type", Text),
            col("api_version", Text),
            nested("object_id", &["data", "object", "id"], Text),
            nested("object_type", &["data", "object", "object"], Text),
            col("pending_webhooks", BigInt),
            col("created", Timestamp),
            col("livemode", Boolean),
        ],
    },
];

/// Error for a data type name that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDataType {
    /// What the user typed.
    pub given: String,
}

impl std::fmt::Display for UnknownDataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown data type `{}`: choose from {}",
            self.given,
            CATALOG
                .iter()
                .map(|t| t.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl std::error::Error for UnknownDataType {}

/// Looks a data type up by its name.
pub fn find(name: &str) -> Option<&'static DataType> {
    CATALOG.iter().find(|t| t.name == name)
}

/// Looks a data type up by Stripe's `object` value (`line_item` → `invoice_line_items`).
pub fn by_object(object: &str) -> Option<&'static DataType> {
    CATALOG.iter().find(|t| t.object == object)
}

/// Parses a comma-separated list of data type names (`customers,invoices`), in catalog order,
/// without duplicates.
pub fn parse_list(list: &str) -> Result<Vec<&'static DataType>, UnknownDataType> {
    let mut wanted = Vec::new();
    for raw in list.split(',') {
        let name = raw.trim();
        if name.is_empty() {
            continue;
        }
        let t = find(name).ok_or_else(|| UnknownDataType {
            given: name.to_string(),
        })?;
        wanted.push(t.name);
    }
    if wanted.is_empty() {
        return Err(UnknownDataType {
            given: list.to_string(),
        });
    }
    Ok(select(&wanted))
}

/// The catalog entries named in `names`, in catalog order, each once (names must exist).
fn select(names: &[&str]) -> Vec<&'static DataType> {
    CATALOG.iter().filter(|t| names.contains(&t.name)).collect()
}

/// Converts a unix-seconds timestamp into RFC 3339 UTC text (`2024-05-01T12:00:00Z`).
pub fn rfc3339(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// The value of one typed column, read from an object.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValue {
    /// SQL NULL (absent, null, or of an unexpected JSON type).
    Null,
    /// Text.
    Text(String),
    /// Integer.
    Int(i64),
    /// Floating point.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Unix seconds, stored as a timestamp.
    Timestamp(i64),
    /// JSON value.
    Json(Value),
}

impl Column {
    /// Reads this column's value from an object. An expanded reference (an object where an id
    /// is expected) yields its `id`. Values of an unexpected JSON type become NULL rather than
    /// failing the row: the whole object is still kept in `data`.
    pub fn extract(&self, object: &Value) -> ColumnValue {
        let mut v = object;
        let path: &[&str] = if self.path.is_empty() {
            std::slice::from_ref(&self.name)
        } else {
            self.path
        };
        for key in path {
            match v.get(key) {
                Some(next) => v = next,
                None => return ColumnValue::Null,
            }
        }
        if v.is_null() {
            return ColumnValue::Null;
        }
        match self.kind {
            ColumnKind::Text => match v {
                Value::String(s) => ColumnValue::Text(s.clone()),
                Value::Object(o) => match o.get("id") {
                    Some(Value::String(id)) => ColumnValue::Text(id.clone()),
                    _ => ColumnValue::Null,
                },
                Value::Number(n) => ColumnValue::Text(n.to_string()),
                Value::Bool(b) => ColumnValue::Text(b.to_string()),
                _ => ColumnValue::Null,
            },
            ColumnKind::BigInt => v.as_i64().map_or(ColumnValue::Null, ColumnValue::Int),
            ColumnKind::Double => v.as_f64().map_or(ColumnValue::Null, ColumnValue::Float),
            ColumnKind::Boolean => v.as_bool().map_or(ColumnValue::Null, ColumnValue::Bool),
            ColumnKind::Timestamp => v
                .as_i64()
                .filter(|t| chrono::DateTime::from_timestamp(*t, 0).is_some())
                .map_or(ColumnValue::Null, ColumnValue::Timestamp),
            ColumnKind::Json => ColumnValue::Json(v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    #[test]
    fn catalog_has_at_least_25_types_with_unique_names_and_objects() {
        assert!(CATALOG.len() >= 25, "only {} data types", CATALOG.len());
        let names: HashSet<_> = CATALOG.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), CATALOG.len());
        let objects: HashSet<_> = CATALOG.iter().map(|t| t.object).collect();
        assert_eq!(objects.len(), CATALOG.len());
    }

    #[test]
    fn the_core_types_and_their_children_are_present() {
        for name in [
            "customers",
            "invoices",
            "invoice_line_items",
            "subscriptions",
            "subscription_items",
            "payment_intents",
            "charges",
            "products",
            "prices",
        ] {
            assert!(find(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn parents_come_before_children_and_exist() {
        for (i, t) in CATALOG.iter().enumerate() {
            if let Some(p) = t.parent {
                let pi = CATALOG
                    .iter()
                    .position(|c| c.name == p.data_type)
                    .expect("parent exists");
                assert!(
                    pi < i,
                    "{} listed before its parent {}",
                    t.name,
                    p.data_type
                );
            }
        }
    }

    #[test]
    fn column_names_are_unique_and_not_reserved() {
        let reserved = [
            "id",
            "data",
            "account_id",
            "deleted",
            "deleted_at",
            "synced_at",
            "version",
        ];
        for t in CATALOG {
            let mut seen = HashSet::new();
            for c in t.columns {
                assert!(seen.insert(c.name), "{}.{} twice", t.name, c.name);
                assert!(
                    !reserved.contains(&c.name),
                    "{}.{} reserved",
                    t.name,
                    c.name
                );
            }
        }
    }

    #[test]
    fn parse_list_orders_and_dedupes() {
        let got = parse_list("invoices, customers,invoices").expect("valid");
        let names: Vec<_> = got.iter().map(|t| t.name).collect();
        assert_eq!(names, vec!["customers", "invoices"]);
    }

    #[test]
    fn parse_list_rejects_unknown_names_and_lists_the_choices() {
        let err = parse_list("customers,custmers").expect_err("unknown");
        assert_eq!(err.given, "custmers");
        assert!(err.to_string().contains("customers, products"));
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn extract_reads_nested_paths_expanded_references_and_timestamps() {
        let obj = json!({
            "id": "si_1",
            "price": {"id": "price_1", "product": {"id": "prod_1", "object": "product"}},
            "created": 1700000000,
            "quantity": "many",
            "metadata": {"a": "b"}
        });
        let t = find("subscription_items").expect("exists");
        let get = |name: &str| {
            t.columns
                .iter()
                .find(|c| c.name == name)
                .expect("column")
                .extract(&obj)
        };
        assert_eq!(get("price"), ColumnValue::Text("price_1".into()));
        assert_eq!(get("product"), ColumnValue::Text("prod_1".into()));
        assert_eq!(get("created"), ColumnValue::Timestamp(1700000000));
        assert_eq!(get("quantity"), ColumnValue::Null, "mistyped becomes NULL");
        assert_eq!(
            get("subscription"),
            ColumnValue::Null,
            "absent becomes NULL"
        );
        assert_eq!(get("metadata"), ColumnValue::Json(json!({"a": "b"})));
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(rfc3339(1700000000).as_deref(), Some("2023-11-14T22:13:20Z"));
    }
}
