//! Stripe Connect: a run of a platform's key that also copies each connected account.
//!
//! The platform account is synced first, then every connected account `/v1/accounts` lists,
//! one after the other, each through the same client acting on it (`Stripe-Account`, see
//! [`StripeClient::with_account`]): its rows carry its own `account_id`, and everything a run
//! keeps — backfill checkpoints, the events cursor, the mode guard, the interrupted-run marker —
//! is stored under that account id, so each account resumes and follows its own events feed.
//!
//! All accounts share the client's one rate budget: Stripe documents its per-second limits
//! per account without saying which account a `Stripe-Account` request counts against, so
//! the conservative reading is that they count against the platform's (see
//! [`cls_stripe::limiter::gate_key`]). Syncing accounts one at a time costs nothing under that
//! budget: one account's walk already fills it. Stripe does document a separate monthly read
//! allocation for a platform's requests on behalf of its connected accounts; what a run drew
//! from it is [`ConnectReport::connected_account_requests`].
//!
//! Reporting: one [`SyncReport`] per account ([`ConnectReport::accounts`], the platform
//! first), and [`ConnectReport::aggregate`] folding them into one report for places that
//! store one per run (counts summed per data type; a data type failed in any account is failed,
//! its error naming the account; notes prefixed with the account id). A connected account that
//! cannot be synced at all (access revoked, the other mode's data already stored) is reported
//! failed without stopping the others; a destination failure stops the run.

use std::sync::Arc;

use cls_destination::Destination;
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use serde::Serialize;
use serde_json::Value;

use crate::incremental::{run_sync, RequestedMode};
use crate::report::{RunStatus, SyncMode, SyncReport, TypeReport, TypeStatus};
use crate::run::{EngineError, ProgressFn, SyncOptions};

/// Page size of the `/v1/accounts` walk (Stripe's maximum).
const ACCOUNTS_PAGE: usize = 100;

/// One connected account the key can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectedAccount {
    /// Its id (`acct_…`).
    pub id: String,
    /// Its business name, when Stripe shares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Lists every connected account of the key's platform, walking `/v1/accounts` to the end
/// (newest first, as Stripe lists them). A key of an account that is not a platform lists none.
pub async fn list_connected_accounts(
    client: &StripeClient,
    counters: &RequestCounters,
) -> Result<Vec<ConnectedAccount>, StripeError> {
    let platform = client.with_account(None);
    let mut out: Vec<ConnectedAccount> = Vec::new();
    loop {
        let mut query = vec![("limit".to_string(), ACCOUNTS_PAGE.to_string())];
        if let Some(last) = out.last() {
            query.push(("starting_after".to_string(), last.id.clone()));
        }
        let page = platform.list("/v1/accounts", &query, counters).await?;
        let before = out.len();
        for account in &page.data {
            let Some(id) = account.get("id").and_then(Value::as_str) else {
                return Err(StripeError::Decode {
                    message: "an account in /v1/accounts has no id".into(),
                });
            };
            out.push(ConnectedAccount {
                id: id.to_string(),
                name: account
                    .pointer("/business_profile/name")
                    .or_else(|| account.pointer("/settings/dashboard/display_name"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
        }
        // An empty page that claims more would loop forever on the same cursor.
        if !page.has_more || out.len() == before {
            return Ok(out);
        }
    }
}

/// The outcome of a run over a platform and its connected accounts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectReport {
    /// One report per account: the platform's first, then each connected account's in the
    /// order `/v1/accounts` listed them.
    pub accounts: Vec<SyncReport>,
    /// Why the connected accounts could not be listed, if they could not (the platform's data
    /// was copied; none of the connected accounts' was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing_error: Option<String>,
}

impl ConnectReport {
    /// Requests made for the connected accounts (every account but the platform). Stripe
    /// counts a platform's reads on behalf of its connected accounts against a separate read
    /// allocation (<https://docs.stripe.com/rate-limits>, "API read request allocations":
    /// 500 read requests per transaction, over the connected accounts' transactions of a
    /// rolling 30 days, at least 10,000 a month), so this is what a run drew from it.
    pub fn connected_account_requests(&self) -> u64 {
        self.accounts.iter().skip(1).map(SyncReport::requests).sum()
    }

    /// Succeeded when every account succeeded (and the accounts were listed), failed when no
    /// account copied anything completely, partial otherwise.
    pub fn status(&self) -> RunStatus {
        let ok = self
            .accounts
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count();
        let failed = self
            .accounts
            .iter()
            .filter(|r| r.status == RunStatus::Failed)
            .count();
        if ok == self.accounts.len() && self.listing_error.is_none() {
            RunStatus::Succeeded
        } else if failed == self.accounts.len() {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        }
    }

    /// The accounts folded into one report (see the module doc): the platform's account id,
    /// per data type the sums of every account's counts, the status of [`Self::status`].
    pub fn aggregate(&self) -> SyncReport {
        let platform = self.accounts.first();
        let account_id = platform.map_or_else(String::new, |r| r.account_id.clone());
        let mut types: Vec<TypeReport> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let mut seconds = 0.0;
        let mut events: Option<crate::report::EventsSummary> = None;
        for r in &self.accounts {
            seconds += r.seconds;
            notes.extend(r.notes.iter().map(|n| format!("{}: {n}", r.account_id)));
            if let Some(e) = &r.events {
                let sum = events.get_or_insert_with(Default::default);
                sum.read += e.read;
                sum.applied += e.applied;
                sum.skipped_not_chosen += e.skipped_not_chosen;
                sum.skipped_unknown += e.skipped_unknown;
                sum.skipped_malformed += e.skipped_malformed;
                sum.requests += e.requests;
                if r.account_id == account_id {
                    sum.cursor = e.cursor.clone();
                }
            }
            for t in &r.types {
                let i = match types.iter().position(|x| x.data_type == t.data_type) {
                    Some(i) => i,
                    None => {
                        types.push(TypeReport::new(t.data_type));
                        types.len() - 1
                    }
                };
                let sum = &mut types[i];
                sum.objects += t.objects;
                sum.inserted += t.inserted;
                sum.updated += t.updated;
                sum.deleted += t.deleted;
                sum.requests += t.requests;
                sum.retries += t.retries;
                sum.rate_limited += t.rate_limited;
                sum.seconds += t.seconds;
                sum.windows += t.windows;
                if let TypeStatus::Failed {
                    error,
                    missing_permission,
                } = &t.status
                {
                    let named = format!("{}: {error}", r.account_id);
                    sum.status = match &sum.status {
                        TypeStatus::Succeeded => TypeStatus::Failed {
                            error: named,
                            missing_permission: missing_permission.clone(),
                        },
                        TypeStatus::Failed {
                            error: earlier,
                            missing_permission: first,
                        } => TypeStatus::Failed {
                            error: format!("{earlier}; {named}"),
                            missing_permission: first.clone().or(missing_permission.clone()),
                        },
                    };
                }
            }
        }
        if let Some(e) = &self.listing_error {
            notes.push(format!(
                "the connected accounts could not be listed, so only the platform's data was copied: {e}"
            ));
        }
        let mut report = SyncReport::new(account_id, types, seconds);
        report.status = self.status();
        report.notes = notes;
        report.events = events;
        report.mode = if self
            .accounts
            .iter()
            .all(|r| r.mode == SyncMode::Incremental)
            && !self.accounts.is_empty()
        {
            SyncMode::Incremental
        } else {
            SyncMode::Full
        };
        report
    }
}

/// The report of a connected account that could not be synced at all: every chosen data type
/// failed with `error`.
fn failed_account(account_id: &str, options: &SyncOptions, error: &str) -> SyncReport {
    let types = options
        .types
        .iter()
        .map(|t| TypeReport {
            status: TypeStatus::Failed {
                error: format!("connected account {account_id}: {error}"),
                missing_permission: None,
            },
            ..TypeReport::new(t.name)
        })
        .collect();
    SyncReport::new(account_id.to_string(), types, 0.0)
}

/// Syncs the key's own account, then each of its connected accounts (see the module doc).
/// The platform's run failing stops everything (its key or its database is unusable); a
/// connected account's Stripe failure is reported for that account and the others go on.
pub async fn run_sync_with_connected(
    client: &StripeClient,
    dest: Arc<dyn Destination>,
    options: &SyncOptions,
    mode: RequestedMode,
    progress: ProgressFn,
) -> Result<ConnectReport, EngineError> {
    let platform_client = client.with_account(None);
    let platform = run_sync(
        &platform_client,
        dest.clone(),
        options,
        mode,
        progress.clone(),
    )
    .await?;
    let mut report = ConnectReport {
        accounts: vec![platform],
        listing_error: None,
    };
    let counters = RequestCounters::default();
    let connected = match list_connected_accounts(client, &counters).await {
        Ok(accounts) => accounts,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the connected accounts");
            report.listing_error = Some(e.to_string());
            return Ok(report);
        }
    };
    for account in connected {
        let acting = client.with_account(Some(account.id.clone()));
        tracing::info!(account = %account.id, "syncing a connected account");
        match run_sync(&acting, dest.clone(), options, mode, progress.clone()).await {
            Ok(r) => report.accounts.push(r),
            Err(EngineError::Destination(e)) => return Err(EngineError::Destination(e)),
            Err(e) => {
                tracing::warn!(account = %account.id, error = %e, "a connected account could not be synced");
                report
                    .accounts
                    .push(failed_account(&account.id, options, &e.to_string()));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(account: &str, types: Vec<TypeReport>) -> SyncReport {
        SyncReport::new(account.into(), types, 1.0)
    }

    fn counted(name: &'static str, objects: u64) -> TypeReport {
        TypeReport {
            objects,
            inserted: objects,
            requests: 1,
            ..TypeReport::new(name)
        }
    }

    #[test]
    fn the_aggregate_sums_accounts_and_names_failures() {
        let failed = TypeReport {
            status: TypeStatus::Failed {
                error: "HTTP 403".into(),
                missing_permission: Some("rak_charge_read".into()),
            },
            ..TypeReport::new("charges")
        };
        let r = ConnectReport {
            accounts: vec![
                report(
                    "acct_p",
                    vec![counted("customers", 10), counted("charges", 5)],
                ),
                report("acct_c", vec![counted("customers", 3), failed]),
            ],
            listing_error: None,
        };
        assert_eq!(r.status(), RunStatus::Partial);
        let a = r.aggregate();
        assert_eq!(a.account_id, "acct_p");
        assert_eq!(a.status, RunStatus::Partial);
        assert_eq!(a.types[0].objects, 13);
        assert_eq!(a.types[0].requests, 2);
        assert!(a.types[0].succeeded());
        match &a.types[1].status {
            TypeStatus::Failed {
                error,
                missing_permission,
            } => {
                assert!(error.starts_with("acct_c: "), "{error}");
                assert_eq!(missing_permission.as_deref(), Some("rak_charge_read"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.types[1].objects, 5);
    }

    #[test]
    fn a_listing_failure_is_never_a_success() {
        let r = ConnectReport {
            accounts: vec![report("acct_p", vec![counted("customers", 1)])],
            listing_error: Some("HTTP 403".into()),
        };
        assert_eq!(r.status(), RunStatus::Partial);
        assert_eq!(r.aggregate().status, RunStatus::Partial);
        assert!(r.aggregate().notes[0].contains("could not be listed"));
        let all_ok = ConnectReport {
            accounts: vec![report("acct_p", vec![counted("customers", 1)])],
            listing_error: None,
        };
        assert_eq!(all_ok.status(), RunStatus::Succeeded);
    }
}
