//! `cls demo`: the product offline, in one command. It starts the built-in Stripe emulator with
//! a seeded account, then the whole service (`cls serve`: dashboard, REST API, scheduler,
//! workers) on http://127.0.0.1:8080 with its state and the destination in SQLite under
//! `./cls-data/`, a demo project and configuration, and a first sync started straight away —
//! so the sync history and the tables are filled by the time the person opens the page.
//!
//! Running it again reuses the same folder: the demo project and configuration are found by
//! name, the admin gets a fresh one-time password, and a new full sync runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use cls_control::service::ServiceConfig;
use cls_control::{
    ConfigurationId, NewConfiguration, NewProject, PageRequest, RunId, Store, SyncMode,
};
use cls_destination::DatabaseUrl;
use cls_emulator::EmulatorConfig;
use cls_stripe::ApiKey;
use secrecy::{ExposeSecret, SecretString};

use super::serve::{bind, Service, ServiceOptions};
use super::{Outcome, StateArgs};

/// Arguments of `cls demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo's state and its SQLite destination database.
    #[arg(long, default_value = "cls-data")]
    pub data_dir: PathBuf,
    /// Port of the dashboard (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Customers in the generated Stripe account (about 10–20 objects each in all).
    #[arg(long, default_value_t = 200)]
    pub customers: usize,
    /// Seed of the generated account.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The restricted key with every read permission that the emulator accepts in test mode.
const DEMO_KEY: &str = "rk_test_cls_emulator";
/// The demo project's name (found by it when the demo runs again).
const DEMO_PROJECT: &str = "Demo database (SQLite)";
/// The demo configuration's name.
const DEMO_CONFIGURATION: &str = "Demo Stripe account (emulator)";

/// Runs `cls demo` until interrupted.
pub async fn run(args: DemoArgs) -> anyhow::Result<Outcome> {
    let state = StateArgs {
        data_dir: args.data_dir.clone(),
        state_url: None,
    };
    let (store, key_source) = state.open_with_source().await?;
    // Stored as an absolute path, so the project still works from another folder.
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let db_path = data_dir.join("stripe.db");

    eprintln!(
        "starting the Stripe emulator with a seeded account of {} customers…",
        args.customers
    );
    let mut config = EmulatorConfig::new(args.seed, args.customers);
    // Stripe's own test-mode limits, so the demo syncs as it would against Stripe.
    config.rate_limits = true;
    let emulator = cls_emulator::spawn(
        config,
        std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .context("cannot start the emulator on 127.0.0.1")?;
    let emulator_url = url::Url::parse(&emulator.base_url)?;

    let configuration = demo_configuration(store.as_ref(), &db_path).await?;
    let service = Service::assemble(
        store.clone(),
        &ServiceOptions {
            // The demo configuration has no API base of its own: the emulator's port changes
            // on every run, so the service's default points at today's.
            stripe_api_base: Some(emulator_url),
            api_requests_per_minute: 600,
            secure_cookies: false,
            key_source,
            lease: super::LeaseArgs::default(),
        },
    )?;
    let listener = bind(args.host, args.port).await?;
    let addr = listener.local_addr()?;
    let (username, password) = cls_dashboard::reset_admin(store.as_ref()).await?;
    let queued = service
        .runner
        .sync_now(configuration, SyncMode::Full)
        .await?;
    let run_id = queued.run().id;

    println!("listening on http://{addr}");
    print_welcome(
        &addr.to_string(),
        &username,
        &password,
        &data_dir,
        &db_path,
        configuration,
    );
    tokio::spawn(report_first_sync(store.clone(), run_id, db_path.clone()));

    service
        .run_until_shutdown(listener, ServiceConfig::default())
        .await?;
    emulator.shutdown().await;
    Ok(Outcome::Success)
}

/// The demo project and configuration: found by name when the demo ran here before,
/// created otherwise.
async fn demo_configuration(store: &dyn Store, db_path: &Path) -> anyhow::Result<ConfigurationId> {
    let all = PageRequest {
        offset: 0,
        limit: 1000,
    };
    let project = match store
        .list_projects(all)
        .await?
        .items
        .into_iter()
        .find(|p| p.name == DEMO_PROJECT)
    {
        Some(p) => p,
        None => {
            store
                .create_project(NewProject {
                    name: DEMO_PROJECT.to_string(),
                    database_url: DatabaseUrl::parse(&format!("sqlite://{}", db_path.display()))?,
                    schema: None,
                })
                .await?
        }
    };
    let existing = store
        .list_configurations(Some(project.id), all)
        .await?
        .items
        .into_iter()
        .find(|c| c.name == DEMO_CONFIGURATION);
    if let Some(c) = existing {
        return Ok(c.id);
    }
    let created = store
        .create_configuration(NewConfiguration {
            name: DEMO_CONFIGURATION.to_string(),
            project_id: project.id,
            key: ApiKey::parse(DEMO_KEY)?,
            data_types: cls_catalog::CATALOG.iter().collect(),
            stripe_api_base: None,
            webhook_secret: None,
        })
        .await?;
    Ok(created.id)
}

/// What to open, how to sign in, and where the data is.
fn print_welcome(
    addr: &str,
    username: &str,
    password: &SecretString,
    data_dir: &Path,
    db_path: &Path,
    configuration: ConfigurationId,
) {
    println!();
    println!("Codeless Sync demo is running (Ctrl-C stops it).");
    println!();
    println!("  Open       http://{addr}/");
    println!(
        "  Sign in    user `{username}`, password `{}` (new on every `cls demo`)",
        password.expose_secret()
    );
    println!(
        "  Watch      http://{addr}/configurations/{configuration} — the first sync is running now"
    );
    println!("  State      {}", data_dir.join("state.db").display());
    println!("  Your data  {}", db_path.display());
    println!(
        "  Query it   sqlite3 {} \"select id, email, name from customers limit 5\"",
        db_path.display()
    );
    println!();
}

/// Waits for the first sync to end and says how it went (on stdout, after the welcome).
async fn report_first_sync(store: Arc<dyn Store>, run_id: RunId, db_path: PathBuf) {
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let run = match store.run(run_id).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cannot read the first sync's progress: {e}");
                return;
            }
        };
        if !run.status.is_finished() {
            continue;
        }
        let objects: u64 = run.stats.values().map(|s| s.objects).sum();
        let seconds = match (run.started_at, run.ended_at) {
            (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        };
        println!(
            "first sync {}: {objects} objects in {seconds:.1} s, into {}",
            run.status,
            db_path.display()
        );
        for e in &run.errors {
            println!(
                "  {}: {}",
                e.data_type.as_deref().unwrap_or("run"),
                e.message
            );
        }
        return;
    }
}
