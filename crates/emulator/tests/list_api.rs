//! Stripe list semantics over HTTP: paging, filters, errors, child lists, retrieve, expand.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

fn created(v: &Value) -> i64 {
    v["created"].as_i64().unwrap()
}

#[tokio::test]
async fn pagination_walks_each_list_once_newest_first() {
    let emu = start(250).await;
    let export = export(&emu).await;
    for (path, object) in [
        ("/v1/customers", "customer"),
        ("/v1/invoices", "invoice"),
        ("/v1/charges", "charge"),
        ("/v1/products", "product"),
        ("/v1/checkout/sessions", "checkout.session"),
        (
            "/v1/radar/early_fraud_warnings",
            "radar.early_fraud_warning",
        ),
        ("/v1/balance_transactions", "balance_transaction"),
        ("/v1/events", "event"),
    ] {
        let all = walk(&emu, path, 37).await;
        let mut expected: Vec<&Value> = arr(&export, object)
            .iter()
            .filter(|o| o["deleted"] != true)
            .collect();
        expected.reverse();
        let got: Vec<&str> = all.iter().map(|o| o["id"].as_str().unwrap()).collect();
        let want: Vec<&str> = expected.iter().map(|o| o["id"].as_str().unwrap()).collect();
        assert_eq!(got, want, "{path}");
        assert!(
            all.windows(2).all(|w| created(&w[0]) >= created(&w[1])),
            "{path} not newest first"
        );
    }
    // Walking back with ending_before from the oldest gives the newest page just before it.
    let all = walk(&emu, "/v1/customers", 100).await;
    let oldest = all.last().unwrap()["id"].as_str().unwrap();
    let page = ok(
        &emu,
        &format!("/v1/customers?limit=3&ending_before={oldest}"),
    )
    .await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    let n = all.len();
    let want: Vec<&str> = all[n - 4..n - 1]
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, want);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["url"], "/v1/customers");
    assert_eq!(page["object"], "list");
    emu.shutdown().await;
}

#[tokio::test]
async fn created_filters_and_limits() {
    let emu = start(200).await;
    let all = walk(&emu, "/v1/customers", 100).await;
    let mid = created(&all[all.len() / 2]);
    let count = |f: &dyn Fn(i64) -> bool| all.iter().filter(|o| f(created(o))).count();
    for (q, f) in [
        (
            format!("created[gte]={mid}"),
            Box::new(move |t| t >= mid) as Box<dyn Fn(i64) -> bool>,
        ),
        (format!("created[gt]={mid}"), Box::new(move |t| t > mid)),
        (format!("created[lt]={mid}"), Box::new(move |t| t < mid)),
        (format!("created[lte]={mid}"), Box::new(move |t| t <= mid)),
        (format!("created={mid}"), Box::new(move |t| t == mid)),
        (
            format!("created[gte]={}&created[lt]={}", mid - 86_400 * 90, mid),
            Box::new(move |t| t >= mid - 86_400 * 90 && t < mid),
        ),
    ] {
        let got = walk(&emu, &format!("/v1/customers?{q}"), 100).await;
        assert_eq!(got.len(), count(&f), "{q}");
    }
    assert_eq!(
        ok(&emu, "/v1/customers").await["data"]
            .as_array()
            .unwrap()
            .len(),
        10,
        "default limit"
    );
    for bad in ["limit=0", "limit=101", "limit=ten", "created[gte]=soon"] {
        let (s, v) = get(&emu, &format!("/v1/customers?{bad}")).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(err(&v).0, "invalid_request_error");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn cursor_and_parameter_errors() {
    let emu = start(60).await;
    let first = ok(&emu, "/v1/customers?limit=1").await;
    let id = first["data"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = get(
        &emu,
        &format!("/v1/customers?starting_after={id}&ending_before={id}"),
    )
    .await;
    assert_eq!(s, 400);
    assert!(err(&v).2.contains("starting_after, ending_before"));
    let (s, v) = get(&emu, "/v1/customers?starting_after=cus_nope").await;
    assert_eq!(s, 400);
    assert_eq!(
        err(&v),
        (
            "invalid_request_error",
            "resource_missing",
            "No such customer: 'cus_nope'",
            "starting_after"
        )
    );
    let (s, v) = get(&emu, "/v1/customers?colour=blue").await;
    assert_eq!(s, 400);
    assert_eq!(
        err(&v),
        (
            "invalid_request_error",
            "parameter_unknown",
            "Received unknown parameter: colour",
            "colour"
        )
    );
    let (s, v) = get(&emu, "/v1/customers?created[after]=1").await;
    assert_eq!((s, err(&v).1), (400, "parameter_unknown"));
    let (s, v) = get(&emu, "/v1/subscription_items").await;
    assert_eq!(s, 400);
    assert_eq!(
        err(&v),
        (
            "invalid_request_error",
            "parameter_missing",
            "Missing required param: subscription.",
            "subscription"
        )
    );
    let (s, v) = get(
        &emu,
        "/v1/subscription_items?subscription=sub_1&created[gte]=1",
    )
    .await;
    assert_eq!(
        (s, err(&v).1),
        (400, "parameter_unknown"),
        "subscription items take no created filter"
    );
    let (s, v) = get(&emu, "/v1/nothing_here").await;
    assert_eq!(s, 404);
    assert!(err(&v)
        .2
        .starts_with("Unrecognized request URL (GET: /v1/nothing_here)"));
    emu.shutdown().await;
}

#[tokio::test]
async fn subscriptions_hide_ended_ones_unless_status_all() {
    let emu = start(300).await;
    let all = walk(&emu, "/v1/subscriptions?status=all", 100).await;
    let default = walk(&emu, "/v1/subscriptions", 100).await;
    let ended = |s: &Value| {
        matches!(
            s["status"].as_str(),
            Some("canceled" | "incomplete_expired")
        )
    };
    assert!(all.iter().any(ended));
    assert!(!default.iter().any(ended));
    assert_eq!(default.len(), all.iter().filter(|s| !ended(s)).count());
    let canceled = walk(&emu, "/v1/subscriptions?status=canceled", 100).await;
    assert!(!canceled.is_empty() && canceled.iter().all(|s| s["status"] == "canceled"));
    let (s, v) = get(&emu, "/v1/subscriptions?status=sleeping").await;
    assert_eq!((s, err(&v).3), (400, "status"));
    // An equality filter.
    let cust = all[0]["customer"].as_str().unwrap();
    let mine = walk(
        &emu,
        &format!("/v1/subscriptions?status=all&customer={cust}"),
        10,
    )
    .await;
    assert_eq!(
        mine.len(),
        all.iter().filter(|s| s["customer"] == cust).count()
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn child_lists_and_embedded_first_pages() {
    let emu = start(400).await;
    let export = export(&emu).await;
    let big = arr(&export, "invoice")
        .iter()
        .find(|i| i["lines"]["has_more"] == true)
        .expect("an invoice with >10 lines");
    let id = big["id"].as_str().unwrap();
    assert_eq!(big["lines"]["data"].as_array().unwrap().len(), 10);
    let lines = walk(&emu, &format!("/v1/invoices/{id}/lines"), 4).await;
    let want: Vec<&Value> = arr(&export, "line_item")
        .iter()
        .filter(|l| l["invoice"] == id)
        .collect();
    assert_eq!(lines.len(), want.len());
    assert!(lines.len() > 10);
    assert_eq!(
        &lines[..10],
        big["lines"]["data"].as_array().unwrap().as_slice(),
        "embedded page = first page"
    );
    let sub = arr(&export, "subscription")
        .iter()
        .find(|s| s["items"]["has_more"] == true)
        .expect("a subscription with >10 items");
    let sid = sub["id"].as_str().unwrap();
    let items = walk(
        &emu,
        &format!("/v1/subscription_items?subscription={sid}"),
        5,
    )
    .await;
    assert!(items.len() > 10 && items.iter().all(|i| i["subscription"] == sid));
    let page = ok(
        &emu,
        &format!("/v1/subscription_items?subscription={sid}&limit=2"),
    )
    .await;
    assert_eq!(
        page["url"],
        format!("/v1/subscription_items?subscription={sid}")
    );
    // Payment methods of a customer, both ways.
    let pm = &arr(&export, "payment_method")[0];
    let cust = pm["customer"].as_str().unwrap();
    let a = walk(&emu, &format!("/v1/customers/{cust}/payment_methods"), 10).await;
    let b = walk(&emu, &format!("/v1/payment_methods?customer={cust}"), 10).await;
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert!(a.iter().all(|p| p["customer"] == cust));
    // Credit note lines and checkout line items.
    let cn = &arr(&export, "credit_note")[0];
    let cn_lines = walk(
        &emu,
        &format!("/v1/credit_notes/{}/lines", cn["id"].as_str().unwrap()),
        10,
    )
    .await;
    assert_eq!(
        cn_lines.as_slice(),
        cn["lines"]["data"].as_array().unwrap().as_slice()
    );
    let cs = &arr(&export, "checkout.session")[0];
    let items = walk(
        &emu,
        &format!(
            "/v1/checkout/sessions/{}/line_items",
            cs["id"].as_str().unwrap()
        ),
        10,
    )
    .await;
    assert!(!items.is_empty() && items.iter().all(|i| i["object"] == "item"));
    let (s, v) = get(&emu, "/v1/invoices/in_missing/lines").await;
    assert_eq!((s, err(&v).1), (404, "resource_missing"));
    emu.shutdown().await;
}

#[tokio::test]
async fn retrieve_deleted_stubs_and_404() {
    let emu = start(300).await;
    let export = export(&emu).await;
    let live = arr(&export, "customer")
        .iter()
        .find(|c| c["deleted"] != true)
        .unwrap();
    let got = ok(
        &emu,
        &format!("/v1/customers/{}", live["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(&got, live);
    let dead = arr(&export, "customer")
        .iter()
        .find(|c| c["deleted"] == true)
        .unwrap();
    let got = ok(
        &emu,
        &format!("/v1/customers/{}", dead["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        got,
        serde_json::json!({"deleted": true, "id": dead["id"], "object": "customer"})
    );
    let session = &arr(&export, "checkout.session")[0];
    assert_eq!(
        &ok(
            &emu,
            &format!("/v1/checkout/sessions/{}", session["id"].as_str().unwrap())
        )
        .await,
        session
    );
    let (s, v) = get(&emu, "/v1/customers/cus_doesnotexist").await;
    assert_eq!(s, 404);
    assert_eq!(
        err(&v),
        (
            "invalid_request_error",
            "resource_missing",
            "No such customer: 'cus_doesnotexist'",
            "id"
        )
    );
    let (s, v) = get(
        &emu,
        &format!("/v1/customers/{}?limit=3", live["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!((s, err(&v).1), (400, "parameter_unknown"));
    emu.shutdown().await;
}

#[tokio::test]
async fn expand_replaces_ids_with_objects() {
    let emu = start(150).await;
    let page = ok(&emu, "/v1/invoices?limit=5&expand[]=data.customer").await;
    for inv in page["data"].as_array().unwrap() {
        assert_eq!(inv["customer"]["object"], "customer");
    }
    let page = ok(
        &emu,
        "/v1/charges?limit=5&expand%5B%5D=data.payment_method&expand[]=data.customer",
    )
    .await;
    for ch in page["data"].as_array().unwrap() {
        assert_eq!(ch["payment_method"]["object"], "payment_method");
        assert_eq!(ch["customer"]["object"], "customer");
    }
    let page = ok(
        &emu,
        "/v1/charges?limit=3&expand[]=data.payment_intent.customer",
    )
    .await;
    assert_eq!(
        page["data"][0]["payment_intent"]["customer"]["object"],
        "customer"
    );
    let id = page["data"][0]["id"].as_str().unwrap();
    let one = ok(
        &emu,
        &format!("/v1/charges/{id}?expand[]=balance_transaction"),
    )
    .await;
    assert!(one["balance_transaction"].is_object() || one["balance_transaction"].is_null());
    let (s, v) = get(&emu, "/v1/invoices?expand[]=data.nonsense").await;
    assert_eq!((s, err(&v).3), (400, "expand"));
    let (s, _) = get(&emu, "/v1/invoices?expand[]=customer").await;
    assert_eq!(s, 400, "list expansions start with data.");
    emu.shutdown().await;
}

#[tokio::test]
async fn events_filter_by_type_wildcard_and_types() {
    let emu = start(300).await;
    let all = walk(&emu, "/v1/events", 100).await;
    assert!(!all.is_empty());
    let customers = walk(&emu, "/v1/events?type=customer.*", 100).await;
    assert_eq!(
        customers.len(),
        all.iter()
            .filter(|e| e["type"].as_str().unwrap().starts_with("customer."))
            .count()
    );
    assert!(customers
        .iter()
        .any(|e| e["type"] == "customer.subscription.created"));
    let paid = walk(&emu, "/v1/events?type=invoice.paid", 100).await;
    assert!(!paid.is_empty() && paid.iter().all(|e| e["type"] == "invoice.paid"));
    assert!(paid[0]["data"]["previous_attributes"].is_object());
    let two = walk(
        &emu,
        "/v1/events?types[]=invoice.paid&types[]=charge.succeeded",
        100,
    )
    .await;
    assert_eq!(
        two.len(),
        all.iter()
            .filter(|e| e["type"] == "invoice.paid" || e["type"] == "charge.succeeded")
            .count()
    );
    let (s, _) = get(
        &emu,
        "/v1/events?type=invoice.paid&types[]=charge.succeeded",
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = get(
        &emu,
        &format!("/v1/events?created[lt]={}", ANCHOR - 31 * 86_400),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        v["data"].as_array().unwrap().is_empty(),
        "nothing older than 30 days is listed"
    );
    let e = &all[0];
    assert_eq!(
        &ok(&emu, &format!("/v1/events/{}", e["id"].as_str().unwrap())).await,
        e
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn account_balance_stats_and_export() {
    let emu = start(40).await;
    let acct = ok(&emu, "/v1/account").await;
    assert!(acct["id"].as_str().unwrap().starts_with("acct_"));
    let bal = ok(&emu, "/v1/balance").await;
    assert_eq!(bal["object"], "balance");
    let _ = get(&emu, "/v1/customers/cus_missing").await;
    let _ = get_with(&emu, "/v1/customers", None).await;
    let stats: Value = reqwest::get(format!("{}/_emulator/stats", emu.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests_total"], 4);
    assert_eq!(
        stats["endpoints"]["GET /v1/customers/{id}"]["status"]["404"],
        1
    );
    assert_eq!(stats["endpoints"]["GET /v1/customers"]["status"]["401"], 1);
    assert_eq!(stats["endpoints"]["GET /v1/account"]["status"]["200"], 1);
    assert_eq!(stats["rate_limited_total"], 0);
    assert_eq!(stats["faults_total"], 0);
    let export = export(&emu).await;
    for object in [
        "customer",
        "line_item",
        "subscription_item",
        "payment_method",
        "credit_note_line_item",
        "item",
        "checkout.session",
        "event",
        "account",
        "balance",
    ] {
        assert!(
            export.get(object).is_some_and(Value::is_array),
            "export lacks {object}"
        );
    }
    emu.shutdown().await;
}
