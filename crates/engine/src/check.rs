//! Test Connection, Stripe side: is the key valid, whose account is it, which of the chosen
//! data types can it read, and which connected accounts (Stripe Connect) can it reach.
//!
//! Each data type is probed with the cheapest request that needs its permission: one object of
//! its list (`limit=1`). A child list needs a parent id, so it is probed on the first parent
//! found; with no parent to probe on, it shares its parent's answer.

use std::collections::HashMap;

use cls_catalog::DataType;
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use serde::Serialize;
use serde_json::Value;

/// Whether the key can read one data type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeAccess {
    /// Data type name.
    pub data_type: &'static str,
    /// Whether a list request succeeded.
    pub readable: bool,
    /// The missing restricted-key permission (`rak_charge_read`), when that is why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing_permission: Option<String>,
    /// What went wrong and how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The Stripe half of Test Connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StripeCheck {
    /// `restricted` or `secret`.
    pub key_kind: String,
    /// `test` or `live`.
    pub mode: String,
    /// The key, masked (`rk_test_…abcd`).
    pub key: String,
    /// A warning about the key (secret keys), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Stripe account id.
    pub account_id: String,
    /// Business name of the account, when Stripe shares it with this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    /// Per chosen data type, in catalog order.
    pub types: Vec<TypeAccess>,
    /// Stripe Connect: the connected accounts the key can reach (what a sync with connected
    /// accounts would copy besides the key's own account).
    pub connected: ConnectedAccess,
}

/// The connected accounts a key can reach, as Test Connection reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectedAccess {
    /// Every connected account `/v1/accounts` lists (none for an account that is not a
    /// platform).
    pub accounts: Vec<crate::connect::ConnectedAccount>,
    /// Why they could not be listed, when they could not, and what to do. Only matters when
    /// connected accounts are to be synced; the key's own account is unaffected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StripeCheck {
    /// Whether every chosen data type is readable.
    pub fn all_readable(&self) -> bool {
        self.types.iter().all(|t| t.readable)
    }
}

fn access(t: &'static DataType, result: &Result<Option<String>, StripeError>) -> TypeAccess {
    match result {
        Ok(_) => TypeAccess {
            data_type: t.name,
            readable: true,
            missing_permission: None,
            error: None,
        },
        Err(e) => TypeAccess {
            data_type: t.name,
            readable: false,
            missing_permission: match e {
                StripeError::PermissionDenied { permission, .. } => permission.clone(),
                _ => None,
            },
            error: Some(e.to_string()),
        },
    }
}

/// Probes one list with `limit=1`; returns the id of the first object, if any.
async fn probe(
    client: &StripeClient,
    path: &str,
    mut query: Vec<(String, String)>,
    counters: &RequestCounters,
) -> Result<Option<String>, StripeError> {
    query.push(("limit".to_string(), "1".to_string()));
    let page = client.list(path, &query, counters).await?;
    Ok(page
        .data
        .first()
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Runs the Stripe half of Test Connection. An invalid key is an error (nothing else can be
/// said); missing permissions are reported per data type.
pub async fn check_stripe(
    client: &StripeClient,
    types: &[&'static DataType],
) -> Result<StripeCheck, StripeError> {
    let counters = RequestCounters::default();
    let key = client.key();
    let (account_id, account_name) = match client.get("/v1/account", &[], &counters).await {
        Ok(v) => (
            v.get("id")
                .and_then(Value::as_str)
                .unwrap_or("acct_unknown")
                .to_string(),
            v.pointer("/business_profile/name")
                .or_else(|| v.pointer("/settings/dashboard/display_name"))
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        Err(StripeError::PermissionDenied { .. }) => {
            (crate::run::resolve_account(client, &counters).await?, None)
        }
        Err(e) => return Err(e),
    };

    // Probe every top-level list needed (chosen ones and parents of chosen children) once.
    let mut results: HashMap<&'static str, Result<Option<String>, StripeError>> = HashMap::new();
    for t in types {
        let top = match t.parent {
            Some(p) => match cls_catalog::find(p.data_type) {
                Some(parent) => parent,
                None => continue,
            },
            None => t,
        };
        if !results.contains_key(top.name) {
            let query = top
                .list_params
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            let r = probe(client, top.list_path, query, &counters).await;
            results.insert(top.name, r);
        }
    }
    let connected = match crate::connect::list_connected_accounts(client, &counters).await {
        Ok(accounts) => ConnectedAccess {
            accounts,
            error: None,
        },
        Err(e) => ConnectedAccess {
            accounts: Vec::new(),
            error: Some(format!(
                "the connected accounts could not be listed ({e}); to sync them, use a key of \
                 the Connect platform that may read connected accounts"
            )),
        },
    };
    let mut out = Vec::new();
    for t in types {
        let Some(p) = t.parent else {
            if let Some(r) = results.get(t.name) {
                out.push(access(t, r));
            }
            continue;
        };
        let parent_result = results.get(p.data_type);
        let r = match parent_result {
            Some(Ok(Some(parent_id))) => match cls_source::child_list(t, parent_id) {
                Some((path, query)) => probe(client, &path, query, &counters).await,
                None => Ok(None),
            },
            Some(Ok(None)) => Ok(None),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(None),
        };
        out.push(access(t, &r));
    }
    Ok(StripeCheck {
        key_kind: key.kind().to_string(),
        mode: key.mode().to_string(),
        key: key.masked(),
        warning: key.warning(),
        account_id,
        account_name,
        types: out,
        connected,
    })
}
