//! `cls sync`: copy the chosen data types into a database — a full backfill, or only what
//! changed since the last run (the events feed).

use std::io::IsTerminal;
use std::sync::Arc;

use clap::Args;
use cls_engine::{run_sync, run_sync_with_connected, RequestedMode, RunStatus, SyncOptions};
use secrecy::SecretString;

use super::{parse_database_url, parse_types, Outcome, StripeArgs};
use crate::output::{print_summary, ProgressView};

/// Arguments of `cls sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Destination database: postgres://user:password@host:5432/db (PostgreSQL, incl. Supabase,
    /// Neon, …; add ?sslmode=require for TLS) or sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,
    /// Data types to copy, comma-separated (default: all of them). `cls check` lists them.
    #[arg(long)]
    pub types: Option<String>,
    /// Schema for the tables (PostgreSQL; SQLite has one schema).
    #[arg(long, default_value = "stripe")]
    pub schema: String,
    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// full: list every object; incremental: apply Stripe's events since the last run (falls
    /// back to full, and says why, when the last run is older than the 30 days Stripe keeps
    /// events or did not cover a data type); auto: incremental when a previous complete sync
    /// of this account into this database exists, else full.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto, env = "CLS_SYNC_MODE")]
    pub mode: ModeArg,
    /// Stripe Connect: after the key's own (platform) account, also copy every connected
    /// account it lists in /v1/accounts, read on its behalf (Stripe-Account), into the same
    /// tables; each row carries its account's account_id. The summary is printed per account.
    #[arg(long)]
    pub connected_accounts: bool,
}

/// `--mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// List every object of the chosen data types.
    Full,
    /// Apply the events since the last run.
    Incremental,
    /// Incremental when possible, else full.
    Auto,
}

impl From<ModeArg> for RequestedMode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Full => RequestedMode::Full,
            ModeArg::Incremental => RequestedMode::Incremental,
            ModeArg::Auto => RequestedMode::Auto,
        }
    }
}

/// Runs `cls sync`.
pub async fn run(args: SyncArgs) -> anyhow::Result<Outcome> {
    // Parse every input before touching Stripe or the database: bad input changes nothing.
    let types = parse_types(args.types.as_deref())?;
    let url = parse_database_url(&args.database_url)?;
    let client = args.stripe.client()?;

    let dest = cls_destination::connect(&url, &args.schema).await?;
    let view = Arc::new(ProgressView::new(std::io::stderr().is_terminal(), &types));
    let progress_view = view.clone();
    let options = SyncOptions {
        types,
        now: None,
        sequential: false,
    };
    if args.connected_accounts {
        let report = run_sync_with_connected(
            &client,
            Arc::from(dest),
            &options,
            args.mode.into(),
            Arc::new(move |p| progress_view.update(p)),
        )
        .await;
        view.finish();
        let report = report?;
        let status = report.status();
        if args.json {
            let mut out = serde_json::to_value(&report)?;
            if let Some(map) = out.as_object_mut() {
                map.insert("status".into(), serde_json::to_value(status)?);
                map.insert(
                    "connected_account_requests".into(),
                    report.connected_account_requests().into(),
                );
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            for (i, r) in report.accounts.iter().enumerate() {
                let role = if i == 0 {
                    "platform"
                } else {
                    "connected account"
                };
                println!("\n{role} {}", r.account_id);
                print_summary(r);
            }
            if let Some(e) = &report.listing_error {
                println!("\nThe connected accounts could not be listed, so only the platform was copied: {e}");
            }
            println!(
                "\n{} requests were made for connected accounts: Stripe counts them against the platform's read allocation for its connected accounts (500 reads per transaction of theirs over 30 days, at least 10,000 a month)",
                report.connected_account_requests()
            );
        }
        return Ok(outcome(status));
    }
    let report = run_sync(
        &client,
        Arc::from(dest),
        &options,
        args.mode.into(),
        Arc::new(move |p| progress_view.update(p)),
    )
    .await;
    view.finish();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(outcome(report.status))
}

fn outcome(status: RunStatus) -> Outcome {
    match status {
        RunStatus::Succeeded => Outcome::Success,
        RunStatus::Partial => Outcome::Partial,
        RunStatus::Failed => Outcome::Failed,
    }
}
