//! Customers and everything that hangs off them: payment methods, setup intents, subscriptions
//! (every status) with items and schedules, invoices (every status) with lines, invoice items,
//! credit notes, one-off payments and checkout sessions.

use super::catalog::{Catalog, Price};
use super::money::{self, Card, Payer, Totals};
use super::Gen;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

const FIRST: &[&str] = &[
    "Ada",
    "Grace",
    "Linus",
    "Alan",
    "Margaret",
    "Ken",
    "Barbara",
    "Dennis",
    "Frances",
    "John",
    "Radia",
    "Tim",
    "Edsger",
    "Hedy",
    "Donald",
    "Katherine",
    "Guido",
    "Sophie",
    "Yukihiro",
    "Anita",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Turing",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "McCarthy",
    "Perlman",
    "Lee",
    "Dijkstra",
    "Lamarr",
    "Knuth",
    "Johnson",
    "Rossum",
    "Wilson",
    "Matsumoto",
    "Borg",
];
const CITIES: &[(&str, &str, &str, &str)] = &[
    ("San Francisco", "US", "CA", "94107"),
    ("New York", "US", "NY", "10001"),
    ("Berlin", "DE", "", "10115"),
    ("Paris", "FR", "", "75001"),
    ("London", "GB", "", "EC1A 1BB"),
    ("Toronto", "CA", "ON", "M5V 2T6"),
    ("Sydney", "AU", "NSW", "2000"),
];

/// One customer while its objects are generated.
struct Cust {
    id: String,
    created: i64,
    payer: Payer,
    card: Option<Card>,
    address: Value,
    invoice_prefix: String,
    invoices: u32,
    delinquent: bool,
    billed: bool,
}

/// Generates every customer (arrivals grow over the three years) and returns the balance totals.
pub fn generate(g: &mut Gen, cat: &Catalog, customers: usize) -> Totals {
    let mut totals = Totals::default();
    let span = (g.anchor - 3600 - g.start) as f64;
    let mut times: Vec<i64> = Vec::with_capacity(customers);
    let mut prev: Option<i64> = None;
    for _ in 0..customers {
        let t = match prev {
            // About a quarter arrive in the same second as another (bulk imports, busy moments).
            Some(p) if g.chance(0.25) => p,
            _ => {
                // Linearly rising arrival density: growth over time.
                let u: f64 = g.rng.gen();
                g.start + (span * u.sqrt()) as i64
            }
        };
        times.push(t);
        prev = Some(t);
    }
    times.sort_unstable();
    for (i, t) in times.into_iter().enumerate() {
        customer(g, cat, &mut totals, i, t);
    }
    totals
}

fn customer(g: &mut Gen, cat: &Catalog, totals: &mut Totals, i: usize, created: i64) {
    let id = g.id("cus_");
    let first = FIRST[g.rng.gen_range(0..FIRST.len())];
    let last = LAST[g.rng.gen_range(0..LAST.len())];
    let name = format!("{first} {last}");
    let email = format!(
        "{}.{}{}@example.com",
        first.to_lowercase(),
        last.to_lowercase(),
        i
    );
    let address = if g.chance(0.6) {
        let (city, country, state, zip) = CITIES[g.rng.gen_range(0..CITIES.len())];
        json!({"city": city, "country": country, "line1": format!("{} Main Street", g.rng.gen_range(1..999)), "line2": null, "postal_code": zip, "state": if state.is_empty() { Value::Null } else { json!(state) }})
    } else {
        Value::Null
    };
    let mut c = Cust {
        id: id.clone(),
        created,
        payer: Payer {
            customer: id,
            email,
            name,
        },
        card: None,
        address,
        invoice_prefix: crate::ids::make(&mut g.rng, "", 8).to_uppercase(),
        invoices: 0,
        delinquent: false,
        billed: false,
    };
    if g.chance(0.03) {
        // Deleted customers keep nothing else: Stripe detaches their payment methods and cancels
        // their subscriptions.
        let v = customer_json(g, &c);
        g.put(&v, None, created);
        g.event(created, "customer.created", &v, None);
        let t = g.time_between(created, g.anchor - 60);
        g.delete(t, &v);
        return;
    }
    let cards = match g.rng.gen_range(0..100) {
        0..=24 => 0,
        25..=84 => 1,
        _ => 2,
    };
    let mut card_list = Vec::new();
    for k in 0..cards {
        let t = (created + k * g.rng.gen_range(0..90 * 86_400))
            .min(g.anchor - 60)
            .max(created);
        card_list.push(payment_method(g, &c, t));
    }
    // The newest card is the default.
    c.card = card_list.last().cloned();
    if let Some(card) = card_list.first().cloned() {
        if g.chance(0.35) {
            setup_intent(g, &c, Some(&card), created, "succeeded");
        }
    }
    if g.chance(0.03) {
        let status = if g.chance(0.5) {
            "requires_payment_method"
        } else {
            "canceled"
        };
        let t = g.time_between(created, g.anchor - 60);
        setup_intent(g, &c, None, t, status);
    }
    if g.chance(0.6) {
        let n = if g.chance(0.1) { 2 } else { 1 };
        for _ in 0..n {
            subscription(g, cat, totals, &mut c);
        }
    }
    if g.chance(0.2) {
        let n = if g.chance(0.2) { 2 } else { 1 };
        for _ in 0..n {
            one_off_invoice(g, cat, totals, &mut c);
        }
    }
    if g.chance(0.04) {
        let t = g.time_between(created, g.anchor - 60);
        invoice_item(g, cat, &c, t, None, None);
        c.billed = true;
    }
    if c.card.is_some() && g.chance(0.35) {
        for _ in 0..g.rng.gen_range(1..=3) {
            let t = g.time_between(created, g.anchor - 60);
            let amount = g.rng.gen_range(5..=300) * 100;
            let roll = g.rng.gen_range(0..100);
            if roll < 6 {
                money::canceled_intent(g, t, &c.payer, amount, "One-off purchase");
            } else {
                let card = c.card.clone();
                money::payment(
                    g,
                    totals,
                    t,
                    &c.payer,
                    card.as_ref(),
                    amount,
                    "One-off purchase",
                    roll >= 12,
                );
            }
            c.billed = true;
        }
    }
    if g.chance(0.2) {
        checkout_session(g, cat, totals, &mut c);
    }
    let v = customer_json(g, &c);
    g.put(&v, None, created);
    g.event(created, "customer.created", &v, None);
    if created < g.anchor - super::EVENT_WINDOW_SECS && g.chance(0.05) {
        let t = g.time_between(g.anchor - super::EVENT_WINDOW_SECS + 60, g.anchor - 60);
        let old = format!("old.{}", c.payer.email);
        g.event(t, "customer.updated", &v, Some(json!({"email": old})));
    }
}

fn customer_json(g: &mut Gen, c: &Cust) -> Value {
    let balance = if g.chance(0.1) {
        -g.rng.gen_range(1..=50) * 100
    } else {
        0
    };
    let phone = if g.chance(0.5) {
        json!(format!("+1555{:07}", g.rng.gen_range(0..10_000_000)))
    } else {
        Value::Null
    };
    let metadata = if g.chance(0.4) {
        json!({"crm_id": format!("CRM-{}", g.rng.gen_range(10_000..99_999)), "plan_source": "web"})
    } else {
        json!({})
    };
    super::shaped(
        g.mode,
        "customer",
        json!({
            "id": c.id, "object": "customer", "address": c.address, "balance": balance, "created": c.created,
            "currency": if c.billed { json!("usd") } else { Value::Null }, "default_source": null, "delinquent": c.delinquent,
            "description": null, "discount": null, "email": c.payer.email, "invoice_prefix": c.invoice_prefix,
            "invoice_settings": {"custom_fields": null, "default_payment_method": c.card.as_ref().map(|k| k.pm.clone()), "footer": null, "rendering_options": null},
            "metadata": metadata, "name": c.payer.name, "next_invoice_sequence": c.invoices + 1, "phone": phone,
            "preferred_locales": [], "shipping": null, "tax_exempt": "none", "test_clock": null,
        }),
    )
}

fn payment_method(g: &mut Gen, c: &Cust, t: i64) -> Card {
    let (brand, display) = [
        ("visa", "visa"),
        ("mastercard", "mastercard"),
        ("amex", "american_express"),
    ][g.rng.gen_range(0..3)];
    let card = Card {
        pm: g.id("pm_"),
        brand,
        last4: format!("{:04}", g.rng.gen_range(0..10_000)),
        exp_month: g.rng.gen_range(1..=12),
        exp_year: 2026 + g.rng.gen_range(0..6),
    };
    let v = super::shaped(
        g.mode,
        "payment_method",
        json!({
            "id": card.pm, "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": {"address": c.address, "email": c.payer.email, "name": c.payer.name, "phone": null, "tax_id": null},
            "card": {"brand": brand, "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                "country": "US", "display_brand": display, "exp_month": card.exp_month, "exp_year": card.exp_year,
                "fingerprint": crate::ids::make(&mut g.rng, "", 16), "funding": "credit", "generated_from": null, "last4": card.last4,
                "networks": {"available": [brand], "preferred": null}, "three_d_secure_usage": {"supported": true}, "wallet": null, "regulated_status": "unregulated"},
            "created": t, "customer": c.id, "metadata": {}, "type": "card",
        }),
    );
    g.put(&v, Some(&c.id), t);
    g.event(t, "payment_method.attached", &v, None);
    card
}

fn setup_intent(g: &mut Gen, c: &Cust, card: Option<&Card>, t: i64, status: &str) {
    let id = g.id("seti_");
    let secret = format!("{id}_secret_{}", crate::ids::make(&mut g.rng, "", 25));
    let v = super::shaped(
        g.mode,
        "setup_intent",
        json!({
            "id": id, "object": "setup_intent", "application": null, "automatic_payment_methods": null,
            "cancellation_reason": if status == "canceled" { json!("abandoned") } else { Value::Null },
            "client_secret": secret, "created": t, "customer": c.id, "description": null, "flow_directions": null,
            "last_setup_error": null, "latest_attempt": null, "mandate": null, "metadata": {}, "next_action": null,
            "on_behalf_of": null, "payment_method": card.map(|k| k.pm.clone()), "payment_method_configuration_details": null,
            "payment_method_options": {"card": {"mandate_options": null, "network": null, "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "single_use_mandate": null, "status": status, "usage": "off_session",
        }),
    );
    g.put(&v, None, t);
    g.event(
        t,
        &format!(
            "setup_intent.{}",
            if status == "succeeded" {
                "succeeded"
            } else {
                "created"
            }
        ),
        &v,
        None,
    );
}

const MONTH: i64 = 30 * 86_400;
const YEAR: i64 = 365 * 86_400;

fn pick_status(g: &mut Gen) -> &'static str {
    match g.rng.gen_range(0..100) {
        0..=49 => "active",
        50..=57 => "trialing",
        58..=64 => "past_due",
        65..=84 => "canceled",
        85..=87 => "incomplete",
        88..=92 => "incomplete_expired",
        _ => "unpaid",
    }
}

/// One line of an invoice being built.
struct Line {
    amount: i64,
    quantity: i64,
    description: String,
    price: String,
    product: String,
    period: (i64, i64),
    subscription_item: Option<String>,
    invoice_item: Option<String>,
}

/// What the invoice builder needs besides its lines.
struct InvoiceSpec<'a> {
    subscription: Option<&'a str>,
    created: i64,
    status: &'static str,
    billing_reason: &'static str,
    send_invoice: bool,
    period: (i64, i64),
}

fn subscription(g: &mut Gen, cat: &Catalog, totals: &mut Totals, c: &mut Cust) {
    let mut status = pick_status(g);
    let lo = c.created;
    let hi = g.anchor - 3600;
    if hi <= lo {
        status = "incomplete";
    }
    let start = match status {
        "trialing" => g.time_between(lo.max(g.anchor - 13 * 86_400), hi),
        "incomplete" => g.time_between(lo.max(g.anchor - 23 * 3600), g.anchor - 60),
        "incomplete_expired" if lo < g.anchor - 2 * 86_400 => {
            g.time_between(lo, g.anchor - 2 * 86_400)
        }
        "incomplete_expired" => {
            status = "incomplete";
            g.time_between(lo.max(g.anchor - 23 * 3600), g.anchor - 60)
        }
        _ => g.time_between(lo, (lo + MONTH).min(hi)),
    };
    let start = start.max(c.created);
    let yearly = g.chance(0.15);
    let period = if yearly { YEAR } else { MONTH };
    let pool = if yearly { &cat.yearly } else { &cat.monthly };
    let n_items = match g.rng.gen_range(0..1000) {
        // A few subscriptions hold more than 10 items, so their embedded `items` has has_more.
        0..=9 => 11 + g.rng.gen_range(0..3),
        10..=149 => 2 + g.rng.gen_range(0..2),
        _ => 1,
    }
    .min(pool.len());
    let chosen: Vec<&Price> = pool
        .choose_multiple(&mut g.rng, n_items)
        .map(|&i| &cat.prices[i])
        .collect();
    let sub_id = g.id("sub_");
    let send_invoice = c.card.is_none();
    let ended_at = if status == "canceled" {
        let from = if start + period < g.anchor - 60 {
            start + period
        } else {
            start + 60
        };
        Some(g.time_between(from, g.anchor - 60))
    } else if status == "incomplete_expired" {
        Some(start + 23 * 3600)
    } else {
        None
    };
    let end = ended_at.unwrap_or(g.anchor);
    let trial_end = (status == "trialing").then_some(start + 14 * 86_400);
    // Period boundaries begun before the end.
    let periods: i64 = match status {
        "trialing" | "incomplete" | "incomplete_expired" => 1,
        _ => ((end - start) / period + 1).max(1),
    };
    let current_start = if trial_end.is_some() {
        start
    } else {
        start + (periods - 1) * period
    };
    let current_end = trial_end.unwrap_or(current_start + period);
    let items: Vec<(String, &Price, i64)> = chosen
        .iter()
        .map(|p| {
            let q = if g.chance(0.8) {
                1
            } else {
                g.rng.gen_range(2..=10)
            };
            (g.id("si_"), *p, q)
        })
        .collect();
    // The first invoice and the last two: enough history (paid, open, past due) while the
    // account stays near 15–20 objects per customer.
    let mut ks: Vec<i64> = vec![0];
    ks.extend((periods - 2).max(1)..periods);
    let mut latest_invoice: Option<String> = None;
    for &k in &ks {
        let t = start + k * period;
        let last = k == periods - 1;
        let inv_status = match status {
            "past_due" if last => "open",
            "unpaid" if k >= periods - 2 && k > 0 => "open",
            "incomplete" => "open",
            "incomplete_expired" => "void",
            "canceled" if last && g.chance(0.1) => "uncollectible",
            _ => "paid",
        };
        let p = (t, t + period);
        let lines: Vec<Line> = items
            .iter()
            .map(|(si, price, q)| Line {
                amount: if trial_end.is_some() {
                    0
                } else {
                    price.amount * q
                },
                quantity: *q,
                description: format!(
                    "{q} × {} (at ${:.2} / {})",
                    price.product_name,
                    price.amount as f64 / 100.0,
                    price.interval.unwrap_or("month")
                ),
                price: price.id.clone(),
                product: price.product.clone(),
                period: if trial_end.is_some() {
                    (start, current_end)
                } else {
                    p
                },
                subscription_item: Some(si.clone()),
                invoice_item: None,
            })
            .collect();
        let spec = InvoiceSpec {
            subscription: Some(&sub_id),
            created: t,
            status: inv_status,
            billing_reason: if k == 0 {
                "subscription_create"
            } else {
                "subscription_cycle"
            },
            send_invoice,
            period: p,
        };
        latest_invoice = Some(invoice(g, totals, c, &spec, lines));
        if inv_status == "open" && status != "incomplete" {
            c.delinquent = true;
        }
    }
    c.billed = true;
    let schedule = if status != "incomplete" && status != "incomplete_expired" && g.chance(0.06) {
        Some(schedule(
            g, c, &sub_id, start, period, &items, status, ended_at,
        ))
    } else {
        None
    };
    let item_values: Vec<Value> = items
        .iter()
        .map(|(si, price, q)| {
            super::shaped(g.mode,
                "subscription_item",
                json!({
                    "id": si, "object": "subscription_item", "created": start, "discounts": [], "metadata": {},
                    "price": price.json, "quantity": q, "subscription": sub_id, "tax_rates": [], "plan": price.plan,
                    "current_period_end": current_end, "current_period_start": current_start, "billing_thresholds": null,
                }),
            )
        })
        .collect();
    for v in &item_values {
        g.put(v, Some(&sub_id), start);
    }
    let embedded: Vec<&Value> = item_values.iter().take(crate::api::EMBEDDED_PAGE).collect();
    let canceled = status == "canceled";
    let v = super::shaped(
        g.mode,
        "subscription",
        json!({
            "id": sub_id, "object": "subscription", "application": null, "application_fee_percent": null,
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
            "billing_cycle_anchor": trial_end.unwrap_or(start), "billing_cycle_anchor_config": null,
            "cancel_at": null, "canceled_at": if canceled { json!(ended_at) } else { Value::Null },
            "cancellation_details": {"comment": null, "feedback": if canceled { json!("too_expensive") } else { Value::Null }, "reason": if canceled { json!("cancellation_requested") } else { Value::Null }},
            "collection_method": if send_invoice { "send_invoice" } else { "charge_automatically" },
            "created": start, "currency": "usd", "customer": c.id, "days_until_due": if send_invoice { json!(30) } else { Value::Null },
            "default_payment_method": c.card.as_ref().map(|k| k.pm.clone()), "default_source": null, "default_tax_rates": [],
            "description": null, "discounts": [], "ended_at": ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": embedded, "has_more": item_values.len() > crate::api::EMBEDDED_PAGE, "url": format!("/v1/subscription_items?subscription={sub_id}")},
            "latest_invoice": latest_invoice, "metadata": {}, "next_pending_invoice_item_invoice": null, "on_behalf_of": null,
            "pause_collection": null, "payment_settings": {"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"},
            "pending_invoice_item_interval": null, "pending_setup_intent": null, "pending_update": null, "schedule": schedule,
            "start_date": start, "status": status, "test_clock": null, "transfer_data": null,
            "trial_end": trial_end, "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": trial_end.map(|_| start), "cancel_at_period_end": false, "billing_thresholds": null,
            "billing_mode": {"type": "classic"},
        }),
    );
    g.put(&v, None, start);
    g.event(start, "customer.subscription.created", &v, None);
    if let Some(t) = ended_at {
        if canceled {
            g.event(t, "customer.subscription.deleted", &v, None);
        } else {
            g.event(
                t,
                "customer.subscription.updated",
                &v,
                Some(json!({"status": "incomplete"})),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn schedule(
    g: &mut Gen,
    c: &Cust,
    sub: &str,
    start: i64,
    period: i64,
    items: &[(String, &Price, i64)],
    status: &str,
    ended_at: Option<i64>,
) -> String {
    let id = g.id("sub_sched_");
    let end = start + 12 * period;
    let phase_items: Vec<Value> = items
        .iter()
        .map(|(_, p, q)| json!({"discounts": [], "metadata": {}, "plan": p.id, "price": p.id, "quantity": q, "tax_rates": []}))
        .collect();
    let canceled = status == "canceled";
    let v = super::shaped(
        g.mode,
        "subscription_schedule",
        json!({
            "id": id, "object": "subscription_schedule", "application": null,
            "canceled_at": if canceled { json!(ended_at) } else { Value::Null }, "completed_at": null, "created": start,
            "current_phase": if canceled { Value::Null } else { json!({"end_date": end, "start_date": start}) },
            "customer": c.id,
            "default_settings": {"application_fee_percent": null, "automatic_tax": {"enabled": false, "liability": null}, "billing_cycle_anchor": "automatic", "billing_thresholds": null, "collection_method": "charge_automatically", "default_payment_method": null, "description": null, "invoice_settings": {"account_tax_ids": null, "days_until_due": null, "issuer": {"type": "self"}}, "on_behalf_of": null, "transfer_data": null},
            "end_behavior": "release", "metadata": {},
            "phases": [{"add_invoice_items": [], "application_fee_percent": null, "billing_cycle_anchor": null, "collection_method": null, "currency": "usd", "default_payment_method": null, "default_tax_rates": [], "description": null, "discounts": [], "end_date": end, "invoice_settings": null, "items": phase_items, "metadata": {}, "on_behalf_of": null, "proration_behavior": "create_prorations", "start_date": start, "transfer_data": null, "trial_end": null}],
            "released_at": null, "released_subscription": null, "status": if canceled { "canceled" } else { "active" },
            "subscription": sub, "test_clock": null, "billing_mode": {"type": "classic"},
        }),
    );
    g.put(&v, None, start);
    g.event(start, "subscription_schedule.created", &v, None);
    id
}

fn invoice_item(
    g: &mut Gen,
    cat: &Catalog,
    c: &Cust,
    t: i64,
    invoice: Option<&str>,
    line: Option<&Line>,
) -> String {
    let id = g.id("ii_");
    let (amount, quantity, description, price, product) = match line {
        Some(l) => (
            l.amount,
            l.quantity,
            l.description.clone(),
            l.price.clone(),
            l.product.clone(),
        ),
        None => {
            let p = &cat.prices[g.rng.gen_range(0..cat.prices.len())];
            (
                p.amount,
                1,
                format!("{} (one-off)", p.product_name),
                p.id.clone(),
                p.product.clone(),
            )
        }
    };
    let v = super::shaped(
        g.mode,
        "invoiceitem",
        json!({
            "id": id, "object": "invoiceitem", "amount": amount, "currency": "usd", "customer": c.id, "date": t,
            "description": description, "discountable": true, "discounts": [], "invoice": invoice, "metadata": {},
            "period": {"end": t, "start": t}, "proration": false, "quantity": quantity, "tax_rates": [], "test_clock": null,
            "parent": null, "pricing": {"price_details": {"price": price, "product": product}, "type": "price_details", "unit_amount_decimal": (amount / quantity.max(1)).to_string()},
            "net_amount": amount, "quantity_decimal": quantity.to_string(),
        }),
    );
    g.put(&v, None, t);
    g.event(t, "invoiceitem.created", &v, None);
    id
}

fn one_off_invoice(g: &mut Gen, cat: &Catalog, totals: &mut Totals, c: &mut Cust) {
    let roll = g.rng.gen_range(0..100);
    let status = match roll {
        0..=74 => "paid",
        75..=84 => "open",
        85..=89 => "void",
        90..=93 => "uncollectible",
        _ => "draft",
    };
    let t = if status == "draft" {
        g.time_between(c.created.max(g.anchor - 5 * 86_400), g.anchor - 60)
    } else {
        g.time_between(c.created, g.anchor - 60)
    };
    // One in twenty one-off invoices is long: more than 10 lines, so `lines.has_more` is true.
    let n = if g.chance(0.05) {
        g.rng.gen_range(11..=25)
    } else {
        g.rng.gen_range(1..=4)
    };
    let inv_id = g.id("in_");
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let pool = if cat.one_time.is_empty() {
            &cat.monthly
        } else {
            &cat.one_time
        };
        let p = &cat.prices[pool[g.rng.gen_range(0..pool.len())]];
        let q = g.rng.gen_range(1..=3);
        let mut l = Line {
            amount: p.amount * q,
            quantity: q,
            description: format!("{} × {q}", p.product_name),
            price: p.id.clone(),
            product: p.product.clone(),
            period: (t, t),
            subscription_item: None,
            invoice_item: None,
        };
        l.invoice_item = Some(invoice_item(g, cat, c, t, Some(&inv_id), Some(&l)));
        lines.push(l);
    }
    let spec = InvoiceSpec {
        subscription: None,
        created: t,
        status,
        billing_reason: "manual",
        send_invoice: c.card.is_none() || g.chance(0.3),
        period: (t, t),
    };
    let id = invoice_with_id(g, totals, c, &spec, lines, inv_id);
    c.billed = true;
    if status == "paid" && g.chance(0.06) {
        credit_note(g, c, &id, t);
    }
}

fn invoice(
    g: &mut Gen,
    totals: &mut Totals,
    c: &mut Cust,
    spec: &InvoiceSpec<'_>,
    lines: Vec<Line>,
) -> String {
    let id = g.id("in_");
    invoice_with_id(g, totals, c, spec, lines, id)
}

fn invoice_with_id(
    g: &mut Gen,
    totals: &mut Totals,
    c: &mut Cust,
    spec: &InvoiceSpec<'_>,
    lines: Vec<Line>,
    id: String,
) -> String {
    let t = spec.created;
    let total: i64 = lines.iter().map(|l| l.amount).sum();
    let finalized = spec.status != "draft";
    let number = if finalized {
        c.invoices += 1;
        json!(format!("{}-{:04}", c.invoice_prefix, c.invoices))
    } else {
        Value::Null
    };
    // Paying: a charge on the card on file, or paid out of band for send_invoice invoices.
    let mut attempted = false;
    if total > 0 && !spec.send_invoice && matches!(spec.status, "paid" | "open" | "uncollectible") {
        let card = c.card.clone();
        let succeed = spec.status == "paid";
        money::payment(
            g,
            totals,
            t,
            &c.payer,
            card.as_ref(),
            total,
            &format!("Invoice {}", number.as_str().unwrap_or("")),
            succeed,
        );
        attempted = true;
    }
    let line_values: Vec<Value> = lines
        .iter()
        .map(|l| {
            let parent = match (&l.subscription_item, &l.invoice_item) {
                (Some(si), _) => json!({"invoice_item_details": null, "subscription_item_details": {"invoice_item": null, "proration": false, "proration_details": {"credited_items": null}, "subscription": spec.subscription, "subscription_item": si}, "type": "subscription_item_details"}),
                (None, ii) => json!({"invoice_item_details": {"invoice_item": ii, "proration": false, "proration_details": {"credited_items": null}, "subscription": null}, "subscription_item_details": null, "type": "invoice_item_details"}),
            };
            super::shaped(g.mode,
                "line_item",
                json!({
                    "id": g.id("il_"), "object": "line_item", "amount": l.amount, "currency": "usd", "description": l.description,
                    "discount_amounts": [], "discountable": true, "discounts": [], "invoice": id, "metadata": {},
                    "period": {"end": l.period.1, "start": l.period.0}, "quantity": l.quantity, "subscription": spec.subscription,
                    "pretax_credit_amounts": [], "taxes": [], "parent": parent,
                    "pricing": {"price_details": {"price": l.price, "product": l.product}, "type": "price_details", "unit_amount_decimal": (l.amount / l.quantity.max(1)).to_string()},
                    "subtotal": l.amount, "quantity_decimal": l.quantity.to_string(),
                }),
            )
        })
        .collect();
    for v in &line_values {
        g.put(v, Some(&id), t);
    }
    let paid = spec.status == "paid";
    let amount_paid = if paid { total } else { 0 };
    let amount_remaining = match spec.status {
        "open" | "draft" | "uncollectible" => total,
        _ => 0,
    };
    let embedded: Vec<&Value> = line_values.iter().take(crate::api::EMBEDDED_PAGE).collect();
    let host = crate::ids::make(&mut g.rng, "", 40);
    let v = super::shaped(
        g.mode,
        "invoice",
        json!({
            "id": id, "object": "invoice", "account_country": "US", "account_name": "Codeless Demo", "account_tax_ids": null,
            "amount_due": total, "amount_paid": amount_paid, "amount_remaining": amount_remaining, "amount_shipping": 0,
            "application": null, "attempt_count": i64::from(attempted), "attempted": attempted || paid, "auto_advance": spec.status == "open" || spec.status == "draft",
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
            "billing_reason": spec.billing_reason,
            "collection_method": if spec.send_invoice { "send_invoice" } else { "charge_automatically" },
            "created": t, "currency": "usd", "custom_fields": null, "customer": c.id, "customer_address": c.address,
            "customer_email": c.payer.email, "customer_name": c.payer.name, "customer_phone": null, "customer_shipping": null,
            "customer_tax_exempt": "none", "customer_tax_ids": [], "default_payment_method": null, "default_source": null,
            "default_tax_rates": [], "description": null, "discounts": [],
            "due_date": if spec.send_invoice { json!(t + 30 * 86_400) } else { Value::Null },
            "effective_at": if finalized { json!(t) } else { Value::Null },
            "ending_balance": if finalized { json!(0) } else { Value::Null }, "footer": null, "from_invoice": null,
            "hosted_invoice_url": if finalized { json!(format!("https://invoice.stripe.com/i/{host}")) } else { Value::Null },
            "invoice_pdf": if finalized { json!(format!("https://pay.stripe.com/invoice/{host}/pdf")) } else { Value::Null },
            "issuer": {"type": "self"}, "last_finalization_error": null, "latest_revision": null,
            "lines": {"object": "list", "data": embedded, "has_more": line_values.len() > crate::api::EMBEDDED_PAGE, "url": format!("/v1/invoices/{id}/lines")},
            "metadata": {}, "next_payment_attempt": if spec.status == "open" && !spec.send_invoice { json!(t + 3 * 86_400) } else { Value::Null },
            "number": number, "on_behalf_of": null,
            "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
            "period_end": spec.period.1, "period_start": spec.period.0, "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0, "receipt_number": null, "rendering": null, "shipping_cost": null,
            "shipping_details": null, "starting_balance": 0, "statement_descriptor": null, "status": spec.status,
            "status_transitions": {"finalized_at": if finalized { json!(t) } else { Value::Null }, "marked_uncollectible_at": if spec.status == "uncollectible" { json!(t + 30 * 86_400) } else { Value::Null }, "paid_at": if paid { json!(t) } else { Value::Null }, "voided_at": if spec.status == "void" { json!(t + 23 * 3600) } else { Value::Null }},
            "subscription": spec.subscription, "subtotal": total, "subtotal_excluding_tax": total, "test_clock": null,
            "total": total, "total_discount_amounts": [], "total_excluding_tax": total, "webhooks_delivered_at": if finalized { json!(t) } else { Value::Null },
            "automatically_finalizes_at": if spec.status == "draft" { json!(t + 3600) } else { Value::Null },
            "total_pretax_credit_amounts": [], "total_taxes": [], "amount_overpaid": 0,
            "parent": match spec.subscription {
                Some(s) => json!({"quote_details": null, "subscription_details": {"metadata": {}, "subscription": s}, "type": "subscription_details"}),
                None => Value::Null,
            },
            "customer_account": null,
        }),
    );
    g.put(&v, None, t);
    g.event(t, "invoice.created", &v, None);
    match spec.status {
        "paid" => g.event(
            t,
            "invoice.paid",
            &v,
            Some(json!({"status": "open", "amount_paid": 0, "amount_remaining": total})),
        ),
        "void" => g.event(
            t + 23 * 3600,
            "invoice.voided",
            &v,
            Some(json!({"status": "open"})),
        ),
        "open" => g.event(t, "invoice.finalized", &v, Some(json!({"status": "draft"}))),
        _ => {}
    }
    id
}

fn credit_note(g: &mut Gen, c: &Cust, invoice: &str, t0: i64) {
    let Some(table) = g.store.table("line_item") else {
        return;
    };
    let Some((line_id, amount, description)) = table.children(invoice).next().and_then(|r| {
        let v: Value = serde_json::from_slice(&r.json).ok()?;
        Some((
            r.id.to_string(),
            v["amount"].as_i64()?,
            v["description"].as_str()?.to_string(),
        ))
    }) else {
        return;
    };
    let t = g.time_between(t0 + 60, g.anchor - 60).max(t0);
    let id = g.id("cn_");
    let line = super::shaped(
        g.mode,
        "credit_note_line_item",
        json!({
            "id": g.id("cnli_"), "object": "credit_note_line_item", "amount": amount, "description": description,
            "discount_amount": 0, "discount_amounts": [], "invoice_line_item": line_id, "quantity": 1, "tax_rates": [],
            "type": "invoice_line_item", "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
            "pretax_credit_amounts": [], "taxes": [], "metadata": {},
        }),
    );
    g.put(&line, Some(&id), t);
    let v = super::shaped(
        g.mode,
        "credit_note",
        json!({
            "id": id, "object": "credit_note", "amount": amount, "amount_shipping": 0, "created": t, "currency": "usd",
            "customer": c.id, "customer_balance_transaction": null, "discount_amount": 0, "discount_amounts": [],
            "effective_at": t, "invoice": invoice,
            "lines": {"object": "list", "data": [line], "has_more": false, "url": format!("/v1/credit_notes/{id}/lines")},
            "memo": null, "metadata": {}, "number": format!("{}-CN-01", c.invoice_prefix), "out_of_band_amount": amount,
            "pdf": format!("https://pay.stripe.com/credit_notes/{}/pdf", &id[3..]), "shipping_cost": null, "status": "issued",
            "subtotal": amount, "subtotal_excluding_tax": amount, "total": amount, "total_excluding_tax": amount,
            "type": "post_payment", "voided_at": null, "pretax_credit_amounts": [], "total_taxes": [], "refunds": [],
            "post_payment_amount": amount, "pre_payment_amount": 0, "reason": "order_change",
        }),
    );
    g.put(&v, None, t);
    g.event(t, "credit_note.created", &v, None);
}

fn checkout_session(g: &mut Gen, cat: &Catalog, totals: &mut Totals, c: &mut Cust) {
    let recent = c.created.max(g.anchor - 12 * 3600);
    let roll = g.rng.gen_range(0..100);
    let (status, t) = if roll < 5 && recent < g.anchor - 60 {
        ("open", g.time_between(recent, g.anchor - 60))
    } else if roll < 25 || c.card.is_none() {
        (
            "expired",
            g.time_between(c.created, (g.anchor - 2 * 86_400).max(c.created)),
        )
    } else {
        ("complete", g.time_between(c.created, g.anchor - 60))
    };
    let id = format!(
        "cs_{}_{}",
        g.mode.as_str(),
        crate::ids::make(&mut g.rng, "a1", 56)
    );
    let n = g.rng.gen_range(1..=3);
    let mut total = 0;
    let mut items = Vec::new();
    for _ in 0..n {
        let pool = if cat.one_time.is_empty() {
            &cat.monthly
        } else {
            &cat.one_time
        };
        let p = &cat.prices[pool[g.rng.gen_range(0..pool.len())]];
        let q = g.rng.gen_range(1..=2);
        total += p.amount * q;
        items.push(super::shaped(g.mode,
            "item",
            json!({
                "id": g.id("li_"), "object": "item", "amount_discount": 0, "amount_subtotal": p.amount * q, "amount_tax": 0,
                "amount_total": p.amount * q, "currency": "usd", "description": p.product_name, "price": p.json, "quantity": q,
                "metadata": {}, "adjustable_quantity": null,
            }),
        ));
    }
    for v in &items {
        g.put(v, Some(&id), t);
    }
    let payment = if status == "complete" {
        let card = c.card.clone();
        c.billed = true;
        Some(money::payment(
            g,
            totals,
            t,
            &c.payer,
            card.as_ref(),
            total,
            "Checkout purchase",
            true,
        ))
    } else {
        None
    };
    let v = super::shaped(
        g.mode,
        "checkout.session",
        json!({
            "id": id, "object": "checkout.session", "after_expiration": null, "allow_promotion_codes": null,
            "amount_subtotal": total, "amount_total": total, "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null, "cancel_url": "https://example.com/cancel", "client_reference_id": null,
            "client_secret": null, "consent": null, "consent_collection": null, "created": t, "currency": "usd",
            "custom_fields": [], "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": c.id, "customer_creation": null,
            "customer_details": if status == "complete" { json!({"address": c.address, "email": c.payer.email, "name": c.payer.name, "phone": null, "tax_exempt": "none", "tax_ids": []}) } else { Value::Null },
            "customer_email": null, "expires_at": t + 86_400, "invoice": null, "invoice_creation": null, "locale": null,
            "metadata": {}, "mode": "payment", "payment_intent": payment.as_ref().map(|p| p.intent.clone()), "payment_link": null,
            "payment_method_collection": null, "payment_method_configuration_details": null,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}}, "payment_method_types": ["card"],
            "payment_status": if status == "complete" { "paid" } else { "unpaid" }, "phone_number_collection": {"enabled": false},
            "recovered_from": null, "saved_payment_method_options": null, "setup_intent": null, "shipping_address_collection": null,
            "shipping_cost": null, "shipping_options": [], "status": status, "submit_type": null, "subscription": null,
            "success_url": "https://example.com/success", "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted", "url": if status == "open" { json!(format!("https://checkout.stripe.com/c/pay/{id}")) } else { Value::Null },
        }),
    );
    g.put(&v, None, t);
    let ty = match status {
        "complete" => "checkout.session.completed",
        "expired" => "checkout.session.expired",
        _ => "checkout.session.created",
    };
    g.event(t, ty, &v, None);
}
