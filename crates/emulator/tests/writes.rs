//! Writes: form-encoded bodies, Stripe's events with snapshots and previous_attributes, deleted
//! stubs, errors and permissions.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn customer_create_update_delete_with_events() {
    let emu = start(40).await;
    let (s, c) = post(
        &emu,
        "/v1/customers",
        "email=new%40example.com&name=New+Person&metadata[plan]=pro&address[city]=Lyon&address[country]=FR",
    )
    .await;
    assert_eq!(s, 200, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cus_"));
    assert_eq!(c["metadata"], json!({"plan": "pro"}));
    assert_eq!(c["address"]["city"], "Lyon");
    assert_eq!(c["address"]["line1"], Value::Null);
    assert!(c["created"].as_i64().unwrap() >= ANCHOR);
    // Newest first: the new customer heads the list and is retrievable.
    let list = ok(&emu, "/v1/customers?limit=1").await;
    assert_eq!(list["data"][0], c);
    assert_eq!(ok(&emu, &format!("/v1/customers/{id}")).await, c);
    let e = newest_event(&emu, "customer.created").await;
    assert_eq!(e["data"]["object"], c);
    assert!(e["id"].as_str().unwrap().starts_with("evt_"));
    assert!(e["request"]["id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(e["request"]["idempotency_key"], "test-key-1");
    assert!(e["data"].get("previous_attributes").is_none());

    // Update: only the changed top-level keys, with their old values.
    let (s, u) = post(
        &emu,
        &format!("/v1/customers/{id}"),
        "email=changed%40example.com&metadata[plan]=&metadata[seats]=3&name=New+Person",
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["email"], "changed@example.com");
    assert_eq!(u["metadata"], json!({"seats": "3"}));
    let e = newest_event(&emu, "customer.updated").await;
    assert_eq!(e["data"]["object"], u);
    assert_eq!(
        e["data"]["previous_attributes"],
        json!({"email": "new@example.com", "metadata": {"plan": "pro"}})
    );
    // A write that changes nothing records no event.
    let before = ok(&emu, "/v1/events?limit=1").await["data"][0]["id"].clone();
    let (s, _) = post(&emu, &format!("/v1/customers/{id}"), "name=New+Person").await;
    assert_eq!(s, 200);
    assert_eq!(
        ok(&emu, "/v1/events?limit=1").await["data"][0]["id"],
        before
    );

    // Delete: the deleted stub from then on, out of lists, `customer.deleted` with the object.
    let (s, d) = delete(&emu, &format!("/v1/customers/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(d, json!({"deleted": true, "id": id, "object": "customer"}));
    assert_eq!(ok(&emu, &format!("/v1/customers/{id}")).await, d);
    assert_ne!(
        ok(&emu, "/v1/customers?limit=1").await["data"][0]["id"],
        id.as_str()
    );
    let e = newest_event(&emu, "customer.deleted").await;
    assert_eq!(e["data"]["object"], u);
    let (s, v) = post(&emu, &format!("/v1/customers/{id}"), "name=x").await;
    assert_eq!((s, err(&v).1), (404, "resource_missing"));
    check_export_shapes(&export(&emu).await);
}

#[tokio::test]
async fn deleting_a_customer_cancels_its_subscriptions() {
    let emu = start(60).await;
    let sub = ok(&emu, "/v1/subscriptions?status=active&limit=1").await["data"][0].clone();
    let cus = sub["customer"].as_str().unwrap();
    let (s, _) = delete(&emu, &format!("/v1/customers/{cus}")).await;
    assert_eq!(s, 200);
    let after = ok(
        &emu,
        &format!("/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(after["status"], "canceled");
    let e = newest_event(&emu, "customer.subscription.deleted").await;
    assert_eq!(e["data"]["object"], after);
}

#[tokio::test]
async fn products_and_prices() {
    let emu = start(40).await;
    let (s, p) = post(&emu, "/v1/products", "name=Widget&metadata[tier]=gold").await;
    assert_eq!(s, 200, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    assert_eq!(
        newest_event(&emu, "product.created").await["data"]["object"],
        p
    );
    let (s, v) = post(&emu, "/v1/products", "description=no+name").await;
    assert_eq!(
        (s, err(&v).1, err(&v).3),
        (400, "parameter_missing", "name")
    );

    let (s, price) = post(
        &emu,
        "/v1/prices",
        &format!("currency=usd&unit_amount=1500&product={pid}&recurring[interval]=month"),
    )
    .await;
    assert_eq!(s, 200, "{price}");
    let price_id = price["id"].as_str().unwrap().to_string();
    assert_eq!(price["type"], "recurring");
    assert_eq!(price["recurring"]["interval"], "month");
    // A recurring price is served as a plan of the same id too.
    let plan = ok(&emu, &format!("/v1/plans/{price_id}")).await;
    assert_eq!(plan["amount"], 1500);

    // Archive: `active=false`, with the old value in previous_attributes; the plan follows.
    let (s, archived) = post(&emu, &format!("/v1/prices/{price_id}"), "active=false").await;
    assert_eq!(s, 200);
    assert_eq!(archived["active"], false);
    let e = newest_event(&emu, "price.updated").await;
    assert_eq!(e["data"]["previous_attributes"], json!({"active": true}));
    assert_eq!(e["data"]["object"], archived);
    assert_eq!(
        ok(&emu, &format!("/v1/plans/{price_id}")).await["active"],
        false
    );
    // Prices cannot be deleted; a product with prices cannot be deleted either.
    let (s, _) = delete(&emu, &format!("/v1/prices/{price_id}")).await;
    assert_eq!(s, 404);
    let (s, v) = delete(&emu, &format!("/v1/products/{pid}")).await;
    assert_eq!(s, 400, "{v}");

    let (s, u) = post(&emu, &format!("/v1/products/{pid}"), "name=Widget+2").await;
    assert_eq!(s, 200);
    let e = newest_event(&emu, "product.updated").await;
    assert_eq!(e["data"]["previous_attributes"]["name"], "Widget");
    assert_eq!(e["data"]["object"], u);

    let (_, lone) = post(&emu, "/v1/products", "name=Lonely").await;
    let lone_id = lone["id"].as_str().unwrap();
    let (s, d) = delete(&emu, &format!("/v1/products/{lone_id}")).await;
    assert_eq!((s, d["deleted"].clone()), (200, json!(true)));
    assert_eq!(
        newest_event(&emu, "product.deleted").await["data"]["object"],
        lone
    );
    check_export_shapes(&export(&emu).await);
}

#[tokio::test]
async fn subscriptions_update_and_cancel() {
    let emu = start(60).await;
    let sub = ok(&emu, "/v1/subscriptions?status=active&limit=1").await["data"][0].clone();
    let id = sub["id"].as_str().unwrap();
    let items_before = walk(
        &emu,
        &format!("/v1/subscription_items?subscription={id}"),
        100,
    )
    .await;

    let (s, u) = post(
        &emu,
        &format!("/v1/subscriptions/{id}"),
        "metadata[seats]=5&cancel_at_period_end=true",
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["cancel_at_period_end"], true);
    assert!(u["cancel_at"].is_i64());
    let e = newest_event(&emu, "customer.subscription.updated").await;
    assert_eq!(e["data"]["object"], u);
    let prev = e["data"]["previous_attributes"].as_object().unwrap();
    assert_eq!(prev["cancel_at_period_end"], false);
    assert_eq!(prev["metadata"], sub["metadata"]);
    assert!(!prev.contains_key("status"));

    let (s, c) = delete(&emu, &format!("/v1/subscriptions/{id}")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["status"], "canceled");
    assert!(c["canceled_at"].is_i64() && c["ended_at"].is_i64());
    assert_eq!(
        newest_event(&emu, "customer.subscription.deleted").await["data"]["object"],
        c
    );
    // The subscription stays (listed with status=all) and keeps its items.
    assert_eq!(ok(&emu, &format!("/v1/subscriptions/{id}")).await, c);
    let items_after = walk(
        &emu,
        &format!("/v1/subscription_items?subscription={id}"),
        100,
    )
    .await;
    assert_eq!(items_before, items_after);
    let (s, v) = delete(&emu, &format!("/v1/subscriptions/{id}")).await;
    assert_eq!((s, err(&v).1), (404, "resource_missing"));
    let (s, v) = post(&emu, &format!("/v1/subscriptions/{id}"), "description=x").await;
    assert_eq!(s, 400);
    assert!(err(&v)
        .2
        .starts_with("A canceled subscription can only update"));
    let (s, _) = post(
        &emu,
        &format!("/v1/subscriptions/{id}"),
        "metadata[note]=late",
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn invoices_pay_and_void() {
    let emu = start(150).await;
    let open = ok(&emu, "/v1/invoices?status=open&limit=2").await["data"].clone();
    let (a, b) = (
        open[0]["id"].as_str().unwrap(),
        open[1]["id"].as_str().unwrap(),
    );
    let (s, paid) = post(&emu, &format!("/v1/invoices/{a}/pay"), "").await;
    assert_eq!(s, 200, "{paid}");
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["amount_paid"], paid["amount_due"]);
    assert_eq!(paid["amount_remaining"], 0);
    assert!(paid["status_transitions"]["paid_at"].is_i64());
    let e = newest_event(&emu, "invoice.paid").await;
    assert_eq!(e["data"]["object"], paid);
    assert_eq!(e["data"]["previous_attributes"]["status"], "open");
    let (s, v) = post(&emu, &format!("/v1/invoices/{a}/pay"), "").await;
    assert_eq!((s, err(&v).2), (400, "Invoice is already paid"));

    let (s, void) = post(&emu, &format!("/v1/invoices/{b}/void"), "").await;
    assert_eq!(s, 200, "{void}");
    assert_eq!(void["status"], "void");
    let e = newest_event(&emu, "invoice.voided").await;
    assert_eq!(e["data"]["object"], void);
    let (s, _) = post(&emu, &format!("/v1/invoices/{b}/void"), "").await;
    assert_eq!(s, 400);
    let (s, u) = post(&emu, &format!("/v1/invoices/{b}"), "metadata[ref]=42").await;
    assert_eq!(s, 200);
    assert_eq!(
        newest_event(&emu, "invoice.updated").await["data"]["object"],
        u
    );
}

#[tokio::test]
async fn bad_input_and_permissions() {
    let emu = start(20).await;
    let (s, v) = post(&emu, "/v1/customers/cus_nope", "name=x").await;
    assert_eq!(s, 404);
    assert_eq!(
        err(&v),
        (
            "invalid_request_error",
            "resource_missing",
            "No such customer: 'cus_nope'",
            "id"
        )
    );
    let (s, v) = post(&emu, "/v1/customers", "colour=blue").await;
    assert_eq!(
        (s, err(&v).1, err(&v).3),
        (400, "parameter_unknown", "colour")
    );
    let (s, v) = post(&emu, "/v1/customers", "address[planet]=Mars").await;
    assert_eq!((s, err(&v).1), (400, "parameter_unknown"));
    let (s, v) = post(&emu, "/v1/customers", "balance=lots").await;
    assert_eq!(
        (s, err(&v).2, err(&v).3),
        (400, "Invalid integer: lots", "balance")
    );
    let (s, v) = post(&emu, "/v1/products", "name=x&active=maybe").await;
    assert_eq!((s, err(&v).2), (400, "Invalid boolean: maybe"));
    let (s, _) = post(&emu, "/v1/charges/ch_1/nothing", "").await;
    assert_eq!(s, 404);

    // Restricted keys only read: a write is a 403 naming the write permission.
    for key in ["rk_test_cls_emulator", "rk_test_cls_limited"] {
        let (s, v) = write_with(&emu, false, "/v1/customers", "name=x", key).await;
        assert_eq!(s, 403, "{v}");
        let msg = err(&v).2;
        assert!(msg.contains("'rak_customer_write'"), "{msg}");
        assert!(msg.starts_with("The provided key 'rk_test_"), "{msg}");
        let (s, v) = write_with(&emu, false, "/v1/invoices/in_x/pay", "", key).await;
        assert_eq!(s, 403);
        assert!(err(&v).2.contains("'rak_invoice_write'"));
    }
    let (s, _) = write_with(&emu, false, "/v1/customers", "name=x", "sk_test_wrong").await;
    assert_eq!(s, 401);
    let stats = reqwest::get(format!("{}/_emulator/stats", emu.base_url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(stats["endpoints"]["POST /v1/customers"]["status"]["403"], 2);
}
