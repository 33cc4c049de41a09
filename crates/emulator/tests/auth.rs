//! Keys: Bearer and Basic auth, Stripe's 401 messages, and 403 for a restricted key lacking a
//! permission.
#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use cls_emulator::Mode;
use common::*;

#[tokio::test]
async fn accepted_keys_bearer_and_basic() {
    let emu = start(20).await;
    for key in cls_emulator::keys_for(Mode::Test) {
        let (s, _) = get_with(&emu, "/v1/customers?limit=1", Some(key)).await;
        assert_eq!(s, 200, "{key}");
    }
    let basic = base64::engine::general_purpose::STANDARD.encode("rk_test_cls_emulator:");
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/customers", emu.base_url))
        .header("Authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn rejected_keys_get_stripes_401s() {
    let emu = start(20).await;
    let (s, v) = get_with(&emu, "/v1/customers", None).await;
    assert_eq!(s, 401);
    assert!(err(&v).2.starts_with("You did not provide an API key"));
    let (s, v) = get_with(&emu, "/v1/customers", Some("sk_live_cls_emulator")).await;
    assert_eq!(s, 401, "a live key against a test-mode emulator");
    assert_eq!(err(&v).2, "Invalid API Key provided: sk_live_********ator");
    let (s, v) = get_with(&emu, "/v1/customers", Some("sk_test_somebodyelse1234")).await;
    assert_eq!(s, 401);
    assert!(err(&v).2.ends_with("1234") && !err(&v).2.contains("somebody"));
    let (s, v) = get_with(&emu, "/v1/customers", Some("pk_test_cls_emulator")).await;
    assert_eq!(s, 401);
    assert!(err(&v).2.contains("publishable API key"));
    emu.shutdown().await;
    let live = cls_emulator::spawn(config(1, 20, Mode::Live), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (s, _) = get_with(&live, "/v1/customers", Some("sk_test_cls_emulator")).await;
    assert_eq!(s, 401);
    let (s, v) = get_with(&live, "/v1/customers?limit=1", Some("rk_live_cls_emulator")).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["livemode"], true);
    live.shutdown().await;
}

#[tokio::test]
async fn limited_key_lacks_charges_and_invoices() {
    let emu = start(60).await;
    let inv = ok(&emu, "/v1/invoices?limit=1").await;
    let inv_id = inv["data"][0]["id"].as_str().unwrap().to_string();
    for (path, perm) in [
        ("/v1/charges".to_string(), "rak_charge_read"),
        ("/v1/invoices".to_string(), "rak_invoice_read"),
        (format!("/v1/invoices/{inv_id}/lines"), "rak_invoice_read"),
        (format!("/v1/invoices/{inv_id}"), "rak_invoice_read"),
        ("/v1/invoiceitems".to_string(), "rak_invoice_read"),
    ] {
        let (s, v) = get_with(&emu, &path, Some("rk_test_cls_limited")).await;
        assert_eq!(s, 403, "{path}");
        let msg = err(&v).2;
        assert!(msg.starts_with("The provided key 'rk_test_*******ited' does not have the required permissions for this endpoint on account 'acct_"), "{msg}");
        assert!(
            msg.ends_with(&format!(
                "Having the '{perm}' permission would allow this request to continue."
            )),
            "{msg}"
        );
    }
    for path in [
        "/v1/customers",
        "/v1/subscriptions",
        "/v1/payment_intents",
        "/v1/events",
    ] {
        let (s, _) = get_with(&emu, path, Some("rk_test_cls_limited")).await;
        assert_eq!(s, 200, "{path}");
    }
    let (s, _) = get_with(&emu, "/_emulator/stats", None).await;
    assert_eq!(s, 200, "inspection needs no key");
    emu.shutdown().await;
}
