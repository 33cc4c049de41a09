//! `cls demo`: the product offline, in one command. It starts the built-in Stripe emulator with a
//! seeded account and runs a first full sync into SQLite under `./cls-data/`, then tells the
//! person where the data is and how to query it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use cls_destination::DatabaseUrl;
use cls_emulator::EmulatorConfig;
use cls_engine::{run_full_sync, RunStatus, SyncOptions};
use cls_stripe::{ApiKey, ClientConfig, StripeClient};

use super::Outcome;
use crate::output::{print_summary, ProgressView};

/// Arguments of `cls demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's SQLite database.
    #[arg(long, default_value = "cls-data")]
    pub data_dir: PathBuf,
    /// Customers in the generated Stripe account (about 10–20 objects each in all).
    #[arg(long, default_value_t = 200)]
    pub customers: usize,
    /// Seed of the generated account.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The restricted key with every read permission that the emulator accepts in test mode.
const DEMO_KEY: &str = "rk_test_cls_emulator";

/// Runs `cls demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}: choose another with --data-dir",
            args.data_dir.display()
        )
    })?;
    let db_path = args.data_dir.join("stripe.db");
    let url = DatabaseUrl::parse(&format!("sqlite://{}", db_path.display()))?;

    eprintln!(
        "starting the Stripe emulator with a seeded account of {} customers…",
        args.customers
    );
    let mut config = EmulatorConfig::new(args.seed, args.customers);
    // Stripe's own test-mode limits, so the demo shows a sync as it runs against Stripe.
    config.rate_limits = true;
    let emulator = cls_emulator::spawn(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("cannot start the emulator on 127.0.0.1")?;

    let key = ApiKey::parse(DEMO_KEY)?;
    let client = StripeClient::new(
        key,
        ClientConfig {
            api_base: url::Url::parse(&emulator.base_url)?,
            ..ClientConfig::default()
        },
    )?;
    let types: Vec<_> = cls_catalog::CATALOG.iter().collect();
    let dest = cls_destination::connect(&url, "stripe").await?;
    let view = Arc::new(ProgressView::new(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        &types,
    ));
    let progress_view = view.clone();
    let report = run_full_sync(
        &client,
        Arc::from(dest),
        &SyncOptions {
            types,
            now: None,
            sequential: false,
        },
        Arc::new(move |p| progress_view.update(p)),
    )
    .await;
    view.finish();
    let report = report?;
    print_summary(&report);
    println!();
    println!(
        "Your Stripe data (from the emulator) is in {}",
        db_path.display()
    );
    println!(
        "Query it:  sqlite3 {} \"select id, email, name from customers limit 5\"",
        db_path.display()
    );
    emulator.shutdown().await;
    Ok(match report.status {
        RunStatus::Succeeded => Outcome::Success,
        RunStatus::Partial => Outcome::Partial,
        RunStatus::Failed => Outcome::Failed,
    })
}
