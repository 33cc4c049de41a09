//! Stripe Connect: the emulated account is a platform with connected accounts, each holding its
//! own data, reached with the `Stripe-Account: acct_…` header.
//!
//! - `/v1/accounts` lists the connected accounts (newest first, `limit`/`starting_after`/
//!   `ending_before` paging); `/v1/accounts/{id}` retrieves one. Acting as a connected account
//!   (header set), the list is empty: connected accounts here are not platforms themselves.
//! - A request with `Stripe-Account` naming a connected account reads (and writes) that
//!   account's own store; `/v1/account` then answers the connected account. Any other value is
//!   Stripe's 403 `account_invalid` ("The provided key '…' does not have access to account
//!   '…' (or that account does not exist). Application access may have been revoked.").
//! - Each connected account's data set is generated like the platform's, from a seed derived
//!   from the platform's seed and its index, around a fifth of the platform's customers (at
//!   least one): deterministic, and smaller than the platform's.
//! - Rate limits ([`crate::traffic`]): a request made for a connected account takes tokens from
//!   that account's buckets *and* the platform's. Stripe documents limits "per Stripe account"
//!   (<https://docs.stripe.com/rate-limits>) without saying, in the pages we found, whether a
//!   request the platform makes with `Stripe-Account` counts against the platform, the
//!   connected account or both; the emulator takes the strictest reading (both), so a client
//!   that passes here stays within Stripe's limits under any of them.
//! - Not emulated: Connect webhooks (events of connected accounts are not delivered) and
//!   `/_emulator/mutate` on connected accounts (it changes the platform's data).
//! - `/_emulator/export?account=acct_…` exports a connected account's data.

use std::sync::RwLock;

use axum::http::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::query::Params;
use crate::store::Store;
use crate::EmulatorConfig;

/// The header that makes a request act on a connected account.
pub const STRIPE_ACCOUNT_HEADER: &str = "stripe-account";

/// One connected account of the platform.
#[derive(Debug)]
pub struct ConnectedAccount {
    /// Its id (`acct_…`), as `/v1/accounts` lists it.
    pub id: String,
    /// When it was created (unix seconds): the list's order.
    pub created: i64,
    /// Its data, like the platform's store.
    pub store: RwLock<Store>,
}

/// Customers of connected account number `index`'s data set: a fifth of the platform's, at
/// least one.
pub fn connected_customers(platform_customers: usize) -> usize {
    (platform_customers / 5).max(1)
}

/// The generator settings of connected account number `index` (0-based): a seed derived from
/// the platform's, fewer customers, the same mode and anchor.
pub fn connected_config(platform: &EmulatorConfig, index: usize) -> EmulatorConfig {
    let mut cfg = platform.clone();
    cfg.seed = platform
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64 + 1)
        .rotate_left(17);
    cfg.customers = connected_customers(platform.customers);
    cfg.connected_accounts = 0;
    cfg
}

/// Generates connected account number `index`: its store, with an account object that reads as
/// an Express account of the platform (`type: express`, a name of its own).
pub fn generate_connected(platform: &EmulatorConfig, index: usize) -> ConnectedAccount {
    let cfg = connected_config(platform, index);
    let mut store = crate::generate::generate(&cfg);
    let id = store.account_id.clone();
    let mut account: Value = serde_json::from_slice(&store.account).unwrap_or(Value::Null);
    let name = format!("Connected Shop {}", index + 1);
    if let Some(obj) = account.as_object_mut() {
        obj.insert("type".into(), Value::String("express".into()));
        obj.insert(
            "controller".into(),
            serde_json::json!({"type": "application", "is_controller": true}),
        );
        obj.insert(
            "email".into(),
            Value::String(format!("shop{}@example.com", index + 1)),
        );
        if let Some(bp) = obj
            .get_mut("business_profile")
            .and_then(Value::as_object_mut)
        {
            bp.insert("name".into(), Value::String(name.clone()));
        }
        if let Some(d) = obj
            .get_mut("settings")
            .and_then(|s| s.get_mut("dashboard"))
            .and_then(Value::as_object_mut)
        {
            d.insert("display_name".into(), Value::String(name));
        }
    }
    let created = account.get("created").and_then(Value::as_i64).unwrap_or(0)
        // Connected later than the platform's own account, one day apart, so the list's
        // order (newest first) is the reverse of the index.
        + 86_400 * (index as i64 + 1);
    if let Some(obj) = account.as_object_mut() {
        obj.insert("created".into(), Value::from(created));
    }
    if let Ok(bytes) = serde_json::to_vec(&account) {
        store.account = Bytes::from(bytes);
    }
    ConnectedAccount {
        id,
        created,
        store: RwLock::new(store),
    }
}

/// The `Stripe-Account` header's value, if the request has one (empty counts as none).
pub fn requested_account(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(STRIPE_ACCOUNT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The connected account a request acts on: `Ok(None)` for the platform itself (no header, or
/// the platform's own id), `Ok(Some(..))` for a connected account, else Stripe's 403
/// `account_invalid`.
pub fn resolve<'a>(
    connected: &'a [ConnectedAccount],
    platform_id: &str,
    headers: &HeaderMap,
    caller: &Caller,
) -> Result<Option<&'a ConnectedAccount>, ApiError> {
    let Some(requested) = requested_account(headers) else {
        return Ok(None);
    };
    if requested == platform_id {
        return Ok(None);
    }
    connected
        .iter()
        .find(|a| a.id == requested)
        .map(Some)
        .ok_or_else(|| ApiError::account_invalid(&caller.masked_key(), requested))
}

/// `GET /v1/accounts`: the connected accounts' objects, newest first, paged like every list.
pub fn list_accounts(
    connected: &[ConnectedAccount],
    acting_as_connected: bool,
    params: &Params,
) -> Result<Vec<u8>, ApiError> {
    params.check_known(&[
        "limit",
        "starting_after",
        "ending_before",
        "expand",
        "created",
    ])?;
    let limit = params.limit()?;
    if params.has("starting_after") && params.has("ending_before") {
        return Err(ApiError::only_one("starting_after", "ending_before"));
    }
    let (lo, hi) = params.created()?;
    let mut all: Vec<&ConnectedAccount> = if acting_as_connected {
        Vec::new()
    } else {
        connected
            .iter()
            .filter(|a| lo.contains_lo(a.created) && hi.contains_hi(a.created))
            .collect()
    };
    all.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let position = |id: &str, param: &str| {
        all.iter()
            .position(|a| a.id == id)
            .ok_or_else(|| ApiError::no_such(400, "account", id, param))
    };
    let (page, has_more): (Vec<&ConnectedAccount>, bool) =
        if let Some(after) = params.get("starting_after") {
            let i = position(after, "starting_after")?;
            let rest = &all[i + 1..];
            (
                rest.iter().take(limit).copied().collect(),
                rest.len() > limit,
            )
        } else if let Some(before) = params.get("ending_before") {
            let i = position(before, "ending_before")?;
            let start = i.saturating_sub(limit);
            (all[start..i].to_vec(), start > 0)
        } else {
            (all.iter().take(limit).copied().collect(), all.len() > limit)
        };
    let mut out = Vec::with_capacity(1024 * page.len().max(1));
    out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    for (i, a) in page.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let store = a.store.read().map_err(|_| {
            ApiError::invalid("store", "The emulator's store is unavailable.".into())
        })?;
        out.extend_from_slice(&store.account);
    }
    out.extend_from_slice(
        format!("],\"has_more\":{has_more},\"url\":\"/v1/accounts\"}}").as_bytes(),
    );
    Ok(out)
}

/// `GET /v1/accounts/{id}`: one connected account's object (404 `resource_missing` for others).
pub fn retrieve_account(
    connected: &[ConnectedAccount],
    id: &str,
    params: &Params,
) -> Result<Vec<u8>, ApiError> {
    params.check_known(&["expand"])?;
    let account = connected
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(|| ApiError::no_such(404, "account", id, "account"))?;
    let store = account
        .store
        .read()
        .map_err(|_| ApiError::invalid("store", "The emulator's store is unavailable.".into()))?;
    Ok(store.account.to_vec())
}

/// Bound checks for `created` filters.
trait BoundExt {
    fn contains_lo(&self, t: i64) -> bool;
    fn contains_hi(&self, t: i64) -> bool;
}

impl BoundExt for std::ops::Bound<i64> {
    fn contains_lo(&self, t: i64) -> bool {
        match self {
            std::ops::Bound::Included(x) => t >= *x,
            std::ops::Bound::Excluded(x) => t > *x,
            std::ops::Bound::Unbounded => true,
        }
    }

    fn contains_hi(&self, t: i64) -> bool {
        match self {
            std::ops::Bound::Included(x) => t <= *x,
            std::ops::Bound::Excluded(x) => t < *x,
            std::ops::Bound::Unbounded => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_accounts_are_smaller_distinct_and_deterministic() {
        let mut platform = EmulatorConfig::new(7, 50);
        platform.anchor = 1_700_000_000;
        platform.connected_accounts = 2;
        let a = generate_connected(&platform, 0);
        let b = generate_connected(&platform, 1);
        let again = generate_connected(&platform, 0);
        assert_eq!(a.id, again.id);
        assert_ne!(a.id, b.id);
        let pid = crate::generate::generate(&platform).account_id;
        assert!(a.id != pid && b.id != pid);
        let count = |c: &ConnectedAccount| {
            c.store
                .read()
                .map(|s| s.table("customer").map_or(0, |t| t.len()))
                .unwrap_or(0)
        };
        assert_eq!(count(&a), 10);
        assert!(b.created > a.created);
        let export = |c: &ConnectedAccount| c.store.read().map(|s| s.export_json()).ok();
        assert_eq!(export(&a), export(&again), "same seed, same bytes");
    }
}
