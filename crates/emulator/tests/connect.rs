//! Stripe Connect in the emulator: `/v1/accounts`, the `Stripe-Account` header routing a request
//! to a connected account's own data, Stripe's 403 for an account the key cannot reach, the
//! export of one connected account, and rate limits charged to both accounts.
#![allow(clippy::unwrap_used)]

mod common;

use cls_emulator::{Mode, RunningEmulator};
use common::{config, KEY};
use serde_json::Value;

async fn start(connected: usize, rate_limits: bool) -> RunningEmulator {
    let mut c = config(11, 40, Mode::Test);
    c.connected_accounts = connected;
    c.rate_limits = rate_limits;
    cls_emulator::spawn(c, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn get_as(emu: &RunningEmulator, path: &str, account: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .get(format!("{}{path}", emu.base_url))
        .bearer_auth(KEY);
    if let Some(a) = account {
        req = req.header("Stripe-Account", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn export_of(emu: &RunningEmulator, account: Option<&str>) -> (u16, Value) {
    let url = match account {
        Some(a) => format!("{}/_emulator/export?account={a}", emu.base_url),
        None => format!("{}/_emulator/export", emu.base_url),
    };
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn connected_accounts_are_listed_and_hold_their_own_data() {
    let emu = start(3, false).await;
    let (s, list) = get_as(&emu, "/v1/accounts?limit=100", None).await;
    assert_eq!(s, 200, "{list}");
    let accounts = ids(&list);
    assert_eq!(accounts.len(), 3);
    assert_eq!(list["has_more"], false);
    assert_eq!(list["url"], "/v1/accounts");
    let (_, platform) = get_as(&emu, "/v1/account", None).await;
    let platform_id = platform["id"].as_str().unwrap().to_string();
    assert!(!accounts.contains(&platform_id));

    // Paging: two, then the rest after the second.
    let (_, first) = get_as(&emu, "/v1/accounts?limit=2", None).await;
    assert_eq!(first["has_more"], true);
    let (_, rest) = get_as(
        &emu,
        &format!("/v1/accounts?limit=2&starting_after={}", ids(&first)[1]),
        None,
    )
    .await;
    assert_eq!([ids(&first), ids(&rest)].concat(), accounts);

    let (_, platform_export) = export_of(&emu, None).await;
    let platform_customers = platform_export["customer"].as_array().unwrap().len();
    for id in &accounts {
        // `/v1/account` answers the connected account itself.
        let (s, me) = get_as(&emu, "/v1/account", Some(id)).await;
        assert_eq!(s, 200);
        assert_eq!(me["id"], id.as_str());
        let (s, one) = get_as(&emu, &format!("/v1/accounts/{id}"), None).await;
        assert_eq!((s, &one["id"]), (200, &Value::from(id.as_str())));

        // Its customers are its own: exactly its export's, fewer than the platform's.
        let (s, export) = export_of(&emu, Some(id)).await;
        assert_eq!(s, 200);
        assert_eq!(export["account"][0]["id"], id.as_str());
        let mut want: Vec<String> = export["customer"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c.get("deleted").is_none())
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        assert!(!want.is_empty() && want.len() < platform_customers);
        let (s, page) = get_as(&emu, "/v1/customers?limit=100", Some(id)).await;
        assert_eq!(s, 200);
        let mut got = ids(&page);
        got.sort();
        want.sort();
        assert_eq!(got, want);

        // Acting as a connected account, there are no connected accounts to list.
        let (_, none) = get_as(&emu, "/v1/accounts", Some(id)).await;
        assert!(ids(&none).is_empty());
    }
    // The platform's own id in the header is the platform.
    let (_, me) = get_as(&emu, "/v1/account", Some(&platform_id)).await;
    assert_eq!(me["id"], platform_id.as_str());
}

#[tokio::test]
async fn an_account_the_key_cannot_reach_is_stripes_403() {
    let emu = start(1, false).await;
    let (s, body) = get_as(&emu, "/v1/customers", Some("acct_1NotConnected")).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "account_invalid");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "does not have access to account 'acct_1NotConnected' (or that account does not exist)"
        ),
        "{message}"
    );
    assert!(!message.contains(KEY), "the key is masked: {message}");
    let (s, _) = export_of(&emu, Some("acct_1NotConnected")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_platform_without_connected_accounts_lists_none() {
    let emu = start(0, false).await;
    let (s, list) = get_as(&emu, "/v1/accounts", None).await;
    assert_eq!(s, 200);
    assert!(ids(&list).is_empty());
}

/// The statuses of `n` requests to `/v1/customers` sent at once (0: no answer).
async fn burst(emu: &RunningEmulator, n: usize, account: Option<&str>) -> Vec<u16> {
    let client = reqwest::Client::new();
    let requests = (0..n).map(|_| {
        let mut r = client
            .get(format!("{}/v1/customers", emu.base_url))
            .bearer_auth(KEY);
        if let Some(a) = account {
            r = r.header("Stripe-Account", a);
        }
        r.send()
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.map(|r| r.status().as_u16()).unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn connected_account_requests_spend_the_platforms_budget_too() {
    let emu = start(2, true).await;
    let (_, list) = get_as(&emu, "/v1/accounts", None).await;
    let accounts = ids(&list);
    // A burst on one endpoint for the first connected account empties that endpoint's
    // buckets — its own and the platform's. A platform burst right after then gets fewer
    // requests through than a full bucket holds (12 in test mode). Refills are 25 a second,
    // so that is conclusive only when the platform's burst ends well within half a second;
    // on a machine too busy for that, try again.
    for _ in 0..10 {
        let statuses = burst(&emu, 40, Some(accounts[0].as_str())).await;
        assert!(statuses.contains(&429), "{statuses:?}");
        let after = std::time::Instant::now();
        let platform = burst(&emu, 20, None).await;
        let admitted = platform.iter().filter(|s| **s == 200).count();
        if admitted < 12 {
            assert!(platform.contains(&429), "{platform:?}");
            let (s, body) = get_as(&emu, "/v1/customers", None).await;
            if s == 429 {
                assert_eq!(body["error"]["code"], "rate_limit");
            }
            return;
        }
        assert!(
            after.elapsed() >= std::time::Duration::from_millis(400),
            "the platform got {admitted} requests through right after its connected account emptied the endpoint: {platform:?}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("the machine was too busy to tell in 10 tries");
}
