//! Money movement: payment intents with their charges and balance transactions, refunds,
//! disputes, early fraud warnings, reviews, payouts and transfers. Every charge that succeeded
//! has a balance transaction; every refund and dispute has one too, so the balance adds up.

use super::Gen;
use rand::Rng;
use serde_json::{json, Value};

/// Running balance of the account (sum of balance transaction nets).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Net of transactions already available.
    pub available: i64,
    /// Net of transactions still pending.
    pub pending: i64,
    /// Gross charged, for sizing payouts.
    pub charged: i64,
}

/// A saved card of a customer.
#[derive(Debug, Clone)]
pub struct Card {
    /// `pm_…`.
    pub pm: String,
    /// `visa`, `mastercard`, `amex`.
    pub brand: &'static str,
    /// Last four digits.
    pub last4: String,
    /// Expiry month.
    pub exp_month: i64,
    /// Expiry year.
    pub exp_year: i64,
}

/// Who pays.
#[derive(Debug, Clone)]
pub struct Payer {
    /// `cus_…`.
    pub customer: String,
    /// Their email.
    pub email: String,
    /// Their name.
    pub name: String,
}

/// What a payment produced.
#[derive(Debug, Clone)]
pub struct Payment {
    /// `pi_…`.
    pub intent: String,
    /// The latest charge, if one was attempted.
    pub charge: Option<String>,
    /// Whether it succeeded.
    pub succeeded: bool,
}

/// Stripe's standard card fee: 2.9% + 30¢.
pub fn card_fee(amount: i64) -> i64 {
    (amount * 29 + 500) / 1000 + 30
}

/// Stores a balance transaction and returns its id.
#[allow(clippy::too_many_arguments)]
pub fn balance_txn(
    g: &mut Gen,
    totals: &mut Totals,
    t: i64,
    amount: i64,
    fee: i64,
    ty: &str,
    source: &str,
    category: &str,
    description: Option<&str>,
) -> (String, Value) {
    let id = g.id("txn_");
    let available_on = t + 2 * 86_400;
    let available = available_on <= g.anchor;
    let net = amount - fee;
    if available {
        totals.available += net;
    } else {
        totals.pending += net;
    }
    let fee_details = if fee > 0 {
        json!([{"amount": fee, "application": null, "currency": "usd", "description": "Stripe processing fees", "type": "stripe_fee"}])
    } else {
        json!([])
    };
    let v = super::shaped(
        g.mode,
        "balance_transaction",
        json!({
            "id": id, "object": "balance_transaction", "amount": amount, "available_on": available_on, "created": t,
            "currency": "usd", "description": description, "exchange_rate": null, "fee": fee, "fee_details": fee_details,
            "net": net, "reporting_category": category, "source": source,
            "status": if available { "available" } else { "pending" }, "type": ty, "balance_type": "payments",
        }),
    );
    g.put(&v, None, t);
    (id, v)
}

/// A payment of `amount` cents at `t`: a payment intent and, when a card is on file, a charge
/// (succeeded with its balance transaction, or declined). Sometimes followed by a refund, a
/// dispute, an early fraud warning or a review.
#[allow(clippy::too_many_arguments)]
pub fn payment(
    g: &mut Gen,
    totals: &mut Totals,
    t: i64,
    payer: &Payer,
    card: Option<&Card>,
    amount: i64,
    description: &str,
    succeed: bool,
) -> Payment {
    let intent = g.id("pi_");
    let secret = format!("{intent}_secret_{}", crate::ids::make(&mut g.rng, "", 25));
    let Some(card) = card else {
        let v = intent_json(
            g,
            &intent,
            &secret,
            t,
            payer,
            None,
            amount,
            description,
            "requires_payment_method",
            None,
        );
        g.put(&v, None, t);
        g.event(t, "payment_intent.created", &v, None);
        return Payment {
            intent,
            charge: None,
            succeeded: false,
        };
    };
    let charge = g.id("ch_");
    let mut refunds: Vec<Value> = Vec::new();
    let mut amount_refunded = 0;
    let mut disputed = false;
    let mut review: Option<String> = None;
    let txn = if succeed {
        totals.charged += amount;
        Some(
            balance_txn(
                g,
                totals,
                t,
                amount,
                card_fee(amount),
                "charge",
                &charge,
                "charge",
                Some(description),
            )
            .0,
        )
    } else {
        None
    };
    // Each follow-up below is drawn first (so accounts where it fits are unchanged) and then
    // dropped when its earliest time would be after the anchor: history ends there.
    if succeed && g.chance(0.04) && t + 3600 <= g.anchor {
        let full = g.chance(0.6);
        let ramount = if full { amount } else { (amount / 2).max(50) };
        let rt = g.time_between(t + 3600, (t + 20 * 86_400).min(g.anchor));
        let rid = g.id("re_");
        let (rtxn, _) = balance_txn(
            g,
            totals,
            rt,
            -ramount,
            0,
            "refund",
            &rid,
            "refund",
            Some("REFUND FOR CHARGE"),
        );
        let r = super::shaped(
            g.mode,
            "refund",
            json!({
                "id": rid, "object": "refund", "amount": ramount, "balance_transaction": rtxn, "charge": charge,
                "created": rt, "currency": "usd", "destination_details": {"card": {"reference_status": "available", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
                "metadata": {}, "payment_intent": intent, "reason": "requested_by_customer", "receipt_number": null,
                "source_transfer_reversal": null, "status": "succeeded", "transfer_reversal": null, "customer": payer.customer,
                "payment_method": card.pm,
            }),
        );
        g.put(&r, None, rt);
        g.event(rt, "refund.created", &r, None);
        amount_refunded = ramount;
        refunds.push(r);
    }
    if succeed && g.chance(0.008) && t + 86_400 <= g.anchor {
        disputed = true;
        let dt = g.time_between(t + 86_400, (t + 40 * 86_400).min(g.anchor));
        let did = g.id("dp_");
        let fee = 1500;
        let (_, dtxn) = balance_txn(
            g,
            totals,
            dt,
            -amount,
            fee,
            "adjustment",
            &did,
            "dispute",
            Some("Chargeback withdrawal"),
        );
        let status = if dt > g.anchor - 7 * 86_400 {
            "needs_response"
        } else if g.chance(0.5) {
            "won"
        } else {
            "lost"
        };
        let d = super::shaped(
            g.mode,
            "dispute",
            json!({
                "id": did, "object": "dispute", "amount": amount, "balance_transactions": [dtxn], "charge": charge,
                "created": dt, "currency": "usd", "evidence": {"customer_email_address": payer.email, "customer_name": payer.name},
                "evidence_details": {"due_by": dt + 7 * 86_400, "has_evidence": status != "needs_response", "past_due": false, "submission_count": i64::from(status != "needs_response")},
                "is_charge_refundable": false, "metadata": {}, "payment_intent": intent,
                "payment_method_details": {"card": {"brand": card.brand, "case_type": "chargeback", "network_reason_code": "10.4"}, "type": "card"},
                "reason": "fraudulent", "status": status, "enhanced_eligibility_types": [],
            }),
        );
        g.put(&d, None, dt);
        g.event(dt, "charge.dispute.created", &d, None);
    }
    if succeed && g.chance(0.006) && t + 3600 <= g.anchor {
        let et = g.time_between(t + 3600, (t + 10 * 86_400).min(g.anchor));
        let e = super::shaped(
            g.mode,
            "radar.early_fraud_warning",
            json!({"id": g.id("issfr_"), "object": "radar.early_fraud_warning", "actionable": !disputed, "charge": charge, "created": et, "fraud_type": "made_with_stolen_card", "payment_intent": intent}),
        );
        g.put(&e, None, et);
        g.event(et, "radar.early_fraud_warning.created", &e, None);
    }
    if g.chance(0.006) {
        let rid = g.id("prv_");
        let open = t > g.anchor - 5 * 86_400;
        let r = super::shaped(
            g.mode,
            "review",
            json!({
                "id": rid, "object": "review", "billing_zip": "94107", "charge": charge, "created": t, "ip_address": "203.0.113.7",
                "ip_address_location": {"city": "San Francisco", "country": "US", "latitude": 37.77, "longitude": -122.42, "region": "CA"},
                "open": open, "opened_reason": "rule", "session": null, "closed_reason": if open { Value::Null } else { json!("approved") },
                "reason": if open { "rule" } else { "approved" }, "payment_intent": intent,
            }),
        );
        g.put(&r, None, t);
        g.event(t, "review.opened", &r, None);
        review = Some(rid);
    }
    let status = if succeed { "succeeded" } else { "failed" };
    let ch = super::shaped(
        g.mode,
        "charge",
        json!({
            "id": charge, "object": "charge", "amount": amount, "amount_captured": if succeed { amount } else { 0 },
            "amount_refunded": amount_refunded, "application": null, "application_fee": null, "application_fee_amount": null,
            "balance_transaction": txn, "billing_details": {"address": null, "email": payer.email, "name": payer.name, "phone": null, "tax_id": null},
            "calculated_statement_descriptor": "CODELESS DEMO", "captured": succeed, "created": t, "currency": "usd",
            "customer": payer.customer, "description": description, "disputed": disputed, "failure_balance_transaction": null,
            "failure_code": if succeed { Value::Null } else { json!("card_declined") },
            "failure_message": if succeed { Value::Null } else { json!("Your card was declined.") },
            "fraud_details": {}, "metadata": {}, "on_behalf_of": null,
            "outcome": {"advice_code": null, "network_advice_code": null, "network_decline_code": null,
                "network_status": if succeed { "approved_by_network" } else { "declined_by_network" },
                "reason": if succeed { Value::Null } else { json!("generic_decline") }, "risk_level": "normal", "risk_score": g.rng.gen_range(0..60),
                "seller_message": if succeed { "Payment complete." } else { "The bank did not return any further details with this decline." },
                "type": if succeed { "authorized" } else { "issuer_declined" }},
            "paid": succeed, "payment_intent": intent, "payment_method": card.pm,
            "payment_method_details": {"card": {"brand": card.brand, "country": "US", "exp_month": card.exp_month, "exp_year": card.exp_year, "funding": "credit", "last4": card.last4, "network": card.brand}, "type": "card"},
            "receipt_email": payer.email, "receipt_number": null,
            "receipt_url": format!("https://pay.stripe.com/receipts/payment/{}", &charge[3..]),
            "refunded": amount_refunded == amount, "refunds": {"object": "list", "data": refunds, "has_more": false, "url": format!("/v1/charges/{charge}/refunds")},
            "review": review, "shipping": null, "source_transfer": null, "statement_descriptor": null, "statement_descriptor_suffix": null,
            "status": status, "transfer_data": null, "transfer_group": null, "source": null,
        }),
    );
    g.put(&ch, None, t);
    g.event(
        t,
        if succeed {
            "charge.succeeded"
        } else {
            "charge.failed"
        },
        &ch,
        None,
    );
    let pi_status = if succeed {
        "succeeded"
    } else {
        "requires_payment_method"
    };
    let v = intent_json(
        g,
        &intent,
        &secret,
        t,
        payer,
        Some(card),
        if succeed { amount } else { 0 },
        description,
        pi_status,
        Some(&charge),
    );
    let v = if succeed { v } else { with_amount(v, amount) };
    g.put(&v, None, t);
    g.event(
        t,
        if succeed {
            "payment_intent.succeeded"
        } else {
            "payment_intent.payment_failed"
        },
        &v,
        None,
    );
    Payment {
        intent,
        charge: Some(charge),
        succeeded: succeed,
    }
}

fn with_amount(mut v: Value, amount: i64) -> Value {
    v["amount"] = json!(amount);
    v
}

#[allow(clippy::too_many_arguments)]
fn intent_json(
    g: &mut Gen,
    id: &str,
    secret: &str,
    t: i64,
    payer: &Payer,
    card: Option<&Card>,
    received: i64,
    description: &str,
    status: &str,
    charge: Option<&str>,
) -> Value {
    let failed = status == "requires_payment_method" && charge.is_some();
    super::shaped(
        g.mode,
        "payment_intent",
        json!({
            "id": id, "object": "payment_intent", "amount": received, "amount_capturable": 0,
            "amount_details": {"tip": {}}, "amount_received": received, "application": null, "application_fee_amount": null,
            "automatic_payment_methods": null, "canceled_at": null, "cancellation_reason": null, "capture_method": "automatic_async",
            "client_secret": secret, "confirmation_method": "automatic", "created": t, "currency": "usd",
            "customer": payer.customer, "description": description,
            "last_payment_error": if failed { json!({"code": "card_declined", "decline_code": "generic_decline", "message": "Your card was declined.", "type": "card_error"}) } else { Value::Null },
            "latest_charge": charge, "metadata": {}, "next_action": null, "on_behalf_of": null,
            "payment_method": if failed { Value::Null } else { card.map_or(Value::Null, |c| json!(c.pm)) },
            "payment_method_configuration_details": null, "payment_method_options": {"card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "processing": null, "receipt_email": null, "review": null,
            "setup_future_usage": null, "shipping": null, "statement_descriptor": null, "statement_descriptor_suffix": null,
            "status": status, "transfer_data": null, "transfer_group": null, "source": null,
        }),
    )
}

/// A payment intent canceled before any charge (abandoned checkout).
pub fn canceled_intent(g: &mut Gen, t: i64, payer: &Payer, amount: i64, description: &str) {
    let id = g.id("pi_");
    let secret = format!("{id}_secret_{}", crate::ids::make(&mut g.rng, "", 25));
    let mut v = intent_json(
        g,
        &id,
        &secret,
        t,
        payer,
        None,
        0,
        description,
        "canceled",
        None,
    );
    v["amount"] = json!(amount);
    v["canceled_at"] = json!(g.time_between(t, (t + 86_400).min(g.anchor)));
    v["cancellation_reason"] = json!("abandoned");
    g.put(&v, None, t);
    g.event(t, "payment_intent.canceled", &v, None);
}

/// Payouts to the bank (weekly-ish over the history) and transfers to connected accounts, each
/// with its balance transaction.
pub fn payouts_and_transfers(g: &mut Gen, customers: usize, totals: &mut Totals) {
    let payouts = 10 + customers / 20;
    // Payouts average about 70% of what was charged, so the balance stays positive.
    let per = (totals.charged * 7 / (payouts as i64 * 15)).max(1_000);
    let bank = g.id("ba_");
    for _ in 0..payouts {
        let t = g.time_between(g.start + 30 * 86_400, g.anchor - 3600);
        let id = g.id("po_");
        let amount = per + g.rng.gen_range(0..per.max(2));
        let (txn, _) = balance_txn(
            g,
            totals,
            t,
            -amount,
            0,
            "payout",
            &id,
            "payout",
            Some("STRIPE PAYOUT"),
        );
        let arrival = t + 2 * 86_400;
        let status = if arrival <= g.anchor {
            "paid"
        } else if g.chance(0.5) {
            "in_transit"
        } else {
            "pending"
        };
        let v = super::shaped(
            g.mode,
            "payout",
            json!({
                "id": id, "object": "payout", "amount": amount, "application_fee": null, "application_fee_amount": null,
                "arrival_date": arrival, "automatic": true, "balance_transaction": txn, "created": t, "currency": "usd",
                "description": "STRIPE PAYOUT", "destination": bank, "failure_balance_transaction": null, "failure_code": null,
                "failure_message": null, "metadata": {}, "method": "standard", "original_payout": null,
                "reconciliation_status": if status == "paid" { "completed" } else { "not_applicable" }, "reversed_by": null,
                "source_type": "card", "statement_descriptor": null, "status": status, "type": "bank_account", "trace_id": {"status": "supported", "value": null},
                "payout_method": null,
            }),
        );
        g.put(&v, None, t);
        g.event(t, "payout.created", &v, None);
    }
    let transfers = 3 + customers / 100;
    let accounts: Vec<String> = (0..3)
        .map(|_| crate::ids::make(&mut g.rng, "acct_", 16))
        .collect();
    for i in 0..transfers {
        let t = g.time_between(g.start + 60 * 86_400, g.anchor - 3600);
        let id = g.id("tr_");
        let amount = g.rng.gen_range(10..=500) * 100;
        let (txn, _) = balance_txn(g, totals, t, -amount, 0, "transfer", &id, "transfer", None);
        let group = if i % 3 == 0 {
            json!(format!("ORDER_{}", 1000 + i))
        } else {
            Value::Null
        };
        let v = super::shaped(
            g.mode,
            "transfer",
            json!({
                "id": id, "object": "transfer", "amount": amount, "amount_reversed": 0, "balance_transaction": txn,
                "created": t, "currency": "usd", "description": null, "destination": accounts[i % accounts.len()],
                "destination_payment": g.id("py_"), "metadata": {}, "reversals": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/transfers/{id}/reversals")},
                "reversed": false, "source_transaction": null, "source_type": "card", "transfer_group": group,
            }),
        );
        g.put(&v, None, t);
        g.event(t, "transfer.created", &v, None);
    }
}
