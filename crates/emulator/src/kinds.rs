//! What the emulator knows about each object type and each list endpoint: the digest keys of its
//! shape, the fields a list can filter on, and which path lists it.
//!
//! Filters are equality tests on a value captured when the object is stored (see
//! [`crate::store::Record::fields`]), so filtering never re-parses JSON.

/// One filterable field: the query parameter and the path of keys to its value in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterField {
    /// Query parameter name (`customer`).
    pub param: &'static str,
    /// Path from the object's root (`["promotion", "coupon"]` for promotion codes' `coupon`).
    pub path: &'static [&'static str],
}

const fn f(param: &'static str, path: &'static [&'static str]) -> FilterField {
    FilterField { param, path }
}

/// One object type the emulator stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Stripe's `object` value (`customer`, `checkout.session`).
    pub object: &'static str,
    /// Key of its shape in the digest.
    pub digest: &'static str,
    /// Key of its deleted stub's shape, for types Stripe deletes.
    pub deleted_digest: Option<&'static str>,
    /// Values captured for list filters.
    pub filters: &'static [FilterField],
}

/// Every stored object type, in the order the export lists them.
pub static KINDS: &[Kind] = &[
    Kind {
        object: "customer",
        digest: "customer",
        deleted_digest: Some("deleted_customer"),
        filters: &[f("email", &["email"])],
    },
    Kind {
        object: "product",
        digest: "product",
        deleted_digest: Some("deleted_product"),
        filters: &[
            f("active", &["active"]),
            f("type", &["type"]),
            f("shippable", &["shippable"]),
        ],
    },
    Kind {
        object: "price",
        digest: "price",
        deleted_digest: Some("deleted_price"),
        filters: &[
            f("active", &["active"]),
            f("currency", &["currency"]),
            f("product", &["product"]),
            f("type", &["type"]),
        ],
    },
    Kind {
        object: "plan",
        digest: "plan",
        deleted_digest: Some("deleted_plan"),
        filters: &[f("active", &["active"]), f("product", &["product"])],
    },
    Kind {
        object: "coupon",
        digest: "coupon",
        deleted_digest: Some("deleted_coupon"),
        filters: &[],
    },
    Kind {
        object: "promotion_code",
        digest: "promotion_code",
        deleted_digest: None,
        filters: &[
            f("active", &["active"]),
            f("code", &["code"]),
            f("coupon", &["promotion", "coupon"]),
            f("customer", &["customer"]),
        ],
    },
    Kind {
        object: "tax_rate",
        digest: "tax_rate",
        deleted_digest: None,
        filters: &[f("active", &["active"]), f("inclusive", &["inclusive"])],
    },
    Kind {
        object: "subscription",
        digest: "subscription",
        deleted_digest: None,
        filters: &[
            f("collection_method", &["collection_method"]),
            f("customer", &["customer"]),
            f("status", &["status"]),
        ],
    },
    Kind {
        object: "subscription_item",
        digest: "subscription_item",
        deleted_digest: None,
        filters: &[],
    },
    Kind {
        object: "subscription_schedule",
        digest: "subscription_schedule",
        deleted_digest: None,
        filters: &[f("customer", &["customer"])],
    },
    Kind {
        object: "invoice",
        digest: "invoice",
        deleted_digest: None,
        filters: &[
            f("collection_method", &["collection_method"]),
            f("customer", &["customer"]),
            f("status", &["status"]),
            f("subscription", &["subscription"]),
        ],
    },
    Kind {
        object: "line_item",
        digest: "line_item",
        deleted_digest: None,
        filters: &[],
    },
    Kind {
        object: "invoiceitem",
        digest: "invoiceitem",
        deleted_digest: None,
        filters: &[f("customer", &["customer"]), f("invoice", &["invoice"])],
    },
    Kind {
        object: "credit_note",
        digest: "credit_note",
        deleted_digest: None,
        filters: &[f("customer", &["customer"]), f("invoice", &["invoice"])],
    },
    Kind {
        object: "credit_note_line_item",
        digest: "credit_note_line_item",
        deleted_digest: None,
        filters: &[],
    },
    Kind {
        object: "payment_intent",
        digest: "payment_intent",
        deleted_digest: None,
        filters: &[f("customer", &["customer"])],
    },
    Kind {
        object: "charge",
        digest: "charge",
        deleted_digest: None,
        filters: &[
            f("customer", &["customer"]),
            f("payment_intent", &["payment_intent"]),
            f("transfer_group", &["transfer_group"]),
        ],
    },
    Kind {
        object: "refund",
        digest: "refund",
        deleted_digest: None,
        filters: &[
            f("charge", &["charge"]),
            f("payment_intent", &["payment_intent"]),
        ],
    },
    Kind {
        object: "dispute",
        digest: "dispute",
        deleted_digest: None,
        filters: &[
            f("charge", &["charge"]),
            f("payment_intent", &["payment_intent"]),
        ],
    },
    Kind {
        object: "setup_intent",
        digest: "setup_intent",
        deleted_digest: None,
        filters: &[
            f("customer", &["customer"]),
            f("payment_method", &["payment_method"]),
        ],
    },
    Kind {
        object: "payment_method",
        digest: "payment_method",
        deleted_digest: None,
        filters: &[f("type", &["type"]), f("customer", &["customer"])],
    },
    Kind {
        object: "checkout.session",
        digest: "checkout.session",
        deleted_digest: None,
        filters: &[
            f("customer", &["customer"]),
            f("payment_intent", &["payment_intent"]),
            f("status", &["status"]),
            f("subscription", &["subscription"]),
        ],
    },
    Kind {
        object: "item",
        digest: "item",
        deleted_digest: None,
        filters: &[],
    },
    Kind {
        object: "balance_transaction",
        digest: "balance_transaction",
        deleted_digest: None,
        filters: &[
            f("currency", &["currency"]),
            f("source", &["source"]),
            f("type", &["type"]),
        ],
    },
    Kind {
        object: "payout",
        digest: "payout",
        deleted_digest: None,
        filters: &[f("status", &["status"]), f("destination", &["destination"])],
    },
    Kind {
        object: "transfer",
        digest: "transfer",
        deleted_digest: None,
        filters: &[
            f("destination", &["destination"]),
            f("transfer_group", &["transfer_group"]),
        ],
    },
    Kind {
        object: "radar.early_fraud_warning",
        digest: "radar.early_fraud_warning",
        deleted_digest: None,
        filters: &[
            f("charge", &["charge"]),
            f("payment_intent", &["payment_intent"]),
        ],
    },
    Kind {
        object: "review",
        digest: "review",
        deleted_digest: None,
        filters: &[],
    },
    Kind {
        object: "event",
        digest: "event",
        deleted_digest: None,
        filters: &[f("type", &["type"])],
    },
];

/// Looks a kind up by Stripe's `object` value.
pub fn kind(object: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.object == object)
}

/// How a list endpoint orders its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (descending `created`, ties broken by newest insertion): top-level lists.
    NewestFirst,
    /// In the order the parent holds them (oldest insertion first): invoice lines, subscription
    /// items, credit note lines, checkout line items.
    AsInserted,
}

/// A top-level list endpoint (`GET /v1/<path>`) and its object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRoute {
    /// Path after `/v1/` (`checkout/sessions`).
    pub path: &'static str,
    /// Object type listed.
    pub object: &'static str,
    /// Whether the list accepts `created` filters (per `list-endpoints.tsv`).
    pub created: bool,
    /// Restricted-key permission to read it.
    pub permission: &'static str,
}

/// Top-level list endpoints the emulator serves. Filters beyond `created` and paging come from the
/// kind's [`Kind::filters`] (plus endpoint-specific ones handled in [`crate::api`]).
pub static LIST_ROUTES: &[ListRoute] = &[
    ListRoute {
        path: "customers",
        object: "customer",
        created: true,
        permission: "rak_customer_read",
    },
    ListRoute {
        path: "products",
        object: "product",
        created: true,
        permission: "rak_product_read",
    },
    ListRoute {
        path: "prices",
        object: "price",
        created: true,
        permission: "rak_price_read",
    },
    ListRoute {
        path: "plans",
        object: "plan",
        created: true,
        permission: "rak_plan_read",
    },
    ListRoute {
        path: "coupons",
        object: "coupon",
        created: true,
        permission: "rak_coupon_read",
    },
    ListRoute {
        path: "promotion_codes",
        object: "promotion_code",
        created: true,
        permission: "rak_promotion_code_read",
    },
    ListRoute {
        path: "tax_rates",
        object: "tax_rate",
        created: true,
        permission: "rak_tax_rate_read",
    },
    ListRoute {
        path: "subscriptions",
        object: "subscription",
        created: true,
        permission: "rak_subscription_read",
    },
    ListRoute {
        path: "subscription_items",
        object: "subscription_item",
        created: false,
        permission: "rak_subscription_read",
    },
    ListRoute {
        path: "subscription_schedules",
        object: "subscription_schedule",
        created: true,
        permission: "rak_subscription_read",
    },
    ListRoute {
        path: "invoices",
        object: "invoice",
        created: true,
        permission: "rak_invoice_read",
    },
    ListRoute {
        path: "invoiceitems",
        object: "invoiceitem",
        created: true,
        permission: "rak_invoice_read",
    },
    ListRoute {
        path: "credit_notes",
        object: "credit_note",
        created: true,
        permission: "rak_credit_note_read",
    },
    ListRoute {
        path: "payment_intents",
        object: "payment_intent",
        created: true,
        permission: "rak_payment_intent_read",
    },
    ListRoute {
        path: "charges",
        object: "charge",
        created: true,
        permission: "rak_charge_read",
    },
    ListRoute {
        path: "refunds",
        object: "refund",
        created: true,
        permission: "rak_refund_read",
    },
    ListRoute {
        path: "disputes",
        object: "dispute",
        created: true,
        permission: "rak_dispute_read",
    },
    ListRoute {
        path: "setup_intents",
        object: "setup_intent",
        created: true,
        permission: "rak_setup_intent_read",
    },
    ListRoute {
        path: "payment_methods",
        object: "payment_method",
        created: false,
        permission: "rak_payment_method_read",
    },
    ListRoute {
        path: "checkout/sessions",
        object: "checkout.session",
        created: true,
        permission: "rak_checkout_session_read",
    },
    ListRoute {
        path: "balance_transactions",
        object: "balance_transaction",
        created: true,
        permission: "rak_balance_transaction_read",
    },
    ListRoute {
        path: "payouts",
        object: "payout",
        created: true,
        permission: "rak_payout_read",
    },
    ListRoute {
        path: "transfers",
        object: "transfer",
        created: true,
        permission: "rak_transfer_read",
    },
    ListRoute {
        path: "radar/early_fraud_warnings",
        object: "radar.early_fraud_warning",
        created: true,
        permission: "rak_radar_early_fraud_warning_read",
    },
    ListRoute {
        path: "reviews",
        object: "review",
        created: true,
        permission: "rak_review_read",
    },
    ListRoute {
        path: "events",
        object: "event",
        created: true,
        permission: "rak_event_read",
    },
];

/// Child lists nested under a parent's path (`/v1/invoices/{id}/lines`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildRoute {
    /// The parent's list path (`invoices`).
    pub parent_path: &'static str,
    /// The parent's object type.
    pub parent_object: &'static str,
    /// The segment after the parent's id (`lines`).
    pub child: &'static str,
    /// Object type of the children.
    pub object: &'static str,
    /// Their order.
    pub order: Order,
    /// Restricted-key permission to read them.
    pub permission: &'static str,
}

/// Child lists the emulator serves.
pub static CHILD_ROUTES: &[ChildRoute] = &[
    ChildRoute {
        parent_path: "invoices",
        parent_object: "invoice",
        child: "lines",
        object: "line_item",
        order: Order::AsInserted,
        permission: "rak_invoice_read",
    },
    ChildRoute {
        parent_path: "credit_notes",
        parent_object: "credit_note",
        child: "lines",
        object: "credit_note_line_item",
        order: Order::AsInserted,
        permission: "rak_credit_note_read",
    },
    ChildRoute {
        parent_path: "checkout/sessions",
        parent_object: "checkout.session",
        child: "line_items",
        object: "item",
        order: Order::AsInserted,
        permission: "rak_checkout_session_read",
    },
    // Stripe lists a customer's saved payment methods newest first.
    ChildRoute {
        parent_path: "customers",
        parent_object: "customer",
        child: "payment_methods",
        object: "payment_method",
        order: Order::NewestFirst,
        permission: "rak_payment_method_read",
    },
];

/// The object type an id prefix names, for `expand[]` and cursors.
pub fn object_for_id(id: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("cus_", "customer"),
        ("prod_", "product"),
        ("price_", "price"),
        ("plan_", "plan"),
        ("promo_", "promotion_code"),
        ("txr_", "tax_rate"),
        ("sub_sched_", "subscription_schedule"),
        ("sub_", "subscription"),
        ("si_", "subscription_item"),
        ("in_", "invoice"),
        ("il_", "line_item"),
        ("ii_", "invoiceitem"),
        ("cnli_", "credit_note_line_item"),
        ("cn_", "credit_note"),
        ("pi_", "payment_intent"),
        ("ch_", "charge"),
        ("py_", "charge"),
        ("re_", "refund"),
        ("dp_", "dispute"),
        ("du_", "dispute"),
        ("seti_", "setup_intent"),
        ("pm_", "payment_method"),
        ("cs_", "checkout.session"),
        ("li_", "item"),
        ("txn_", "balance_transaction"),
        ("po_", "payout"),
        ("tr_", "transfer"),
        ("issfr_", "radar.early_fraud_warning"),
        ("prv_", "review"),
        ("evt_", "event"),
    ];
    PREFIXES
        .iter()
        .find(|(p, _)| id.starts_with(p))
        .map(|(_, o)| *o)
}
