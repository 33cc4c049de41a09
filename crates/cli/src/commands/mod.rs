//! One module per subcommand, plus what they share: the Stripe and database arguments and how
//! they are parsed at the boundary into the library's types.

pub mod admin;
pub mod bench;
pub mod check;
pub mod demo;
pub mod emulator;
pub mod listen;
pub mod serve;
pub mod sync;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use cls_catalog::DataType;
use cls_control::runner::RunnerConfig;
use cls_control::{KeySource, MasterKey, StateUrl, Store};
use cls_destination::DatabaseUrl;
use cls_stripe::{ApiKey, ClientConfig, StripeClient};
use secrecy::{ExposeSecret, SecretString};

/// How a command ended, as a process exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done.
    Success,
    /// Nothing usable was done.
    Failed,
    /// Some data types were done, others failed.
    Partial,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failed => ExitCode::from(1),
            Outcome::Partial => ExitCode::from(3),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Starts logging on stderr; `RUST_LOG` picks the level (default: warnings).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Where Stripe is and how to talk to it.
#[derive(Debug, Args)]
pub struct StripeArgs {
    /// Stripe API key: a restricted key (rk_…) with Read permissions is recommended; a secret
    /// key (sk_…) works with a warning. Prefer the environment variable over the flag, so the
    /// key does not show in the process list.
    #[arg(long, env = "STRIPE_API_KEY", hide_env_values = true)]
    pub stripe_key: SecretString,
    /// Base URL of the Stripe API (or of a Stripe-compatible emulator or proxy).
    #[arg(long, env = "CLS_STRIPE_API_BASE", default_value = cls_stripe::DEFAULT_API_BASE)]
    pub api_base: String,
    /// Stripe API version pinned on every request.
    #[arg(long, env = "CLS_STRIPE_VERSION", default_value = cls_stripe::DEFAULT_STRIPE_VERSION)]
    pub stripe_version: String,
    /// Requests per second for the whole account (default: 25 with a test key, 100 with a live
    /// key — Stripe's limits).
    #[arg(long, env = "CLS_GLOBAL_RPS")]
    pub global_rps: Option<u32>,
    /// Requests per second for any one endpoint (Stripe's limit is 25).
    #[arg(long, env = "CLS_ENDPOINT_RPS", default_value_t = 25)]
    pub endpoint_rps: u32,
}

impl StripeArgs {
    /// Parses the key and builds the client. The error never repeats the key.
    pub fn client(&self) -> anyhow::Result<StripeClient> {
        let key = ApiKey::parse(self.stripe_key.expose_secret())
            .map_err(|e| anyhow::anyhow!("--stripe-key / STRIPE_API_KEY: {e}"))?;
        if let Some(w) = key.warning() {
            eprintln!("warning: {w}");
        }
        let api_base = url::Url::parse(&self.api_base).with_context(|| {
            format!(
                "--api-base `{}` is not a URL: use e.g. https://api.stripe.com or http://127.0.0.1:12111",
                self.api_base
            )
        })?;
        if !matches!(api_base.scheme(), "http" | "https") {
            anyhow::bail!(
                "--api-base `{}` must start with https:// (or http:// for a local emulator)",
                self.api_base
            );
        }
        let config = ClientConfig {
            api_base,
            stripe_version: self.stripe_version.clone(),
            global_rps: self.global_rps,
            per_endpoint_rps: self.endpoint_rps,
            ..ClientConfig::default()
        };
        Ok(StripeClient::new(key, config)?)
    }
}

/// Parses `--types` (all of the catalog when absent).
pub fn parse_types(list: Option<&str>) -> anyhow::Result<Vec<&'static DataType>> {
    match list {
        None => Ok(cls_catalog::CATALOG.iter().collect()),
        Some(l) => cls_catalog::parse_list(l).map_err(|e| anyhow::anyhow!("--types: {e}")),
    }
}

/// Parses a database URL at the boundary; the error never repeats a password.
pub fn parse_database_url(raw: &SecretString) -> anyhow::Result<DatabaseUrl> {
    DatabaseUrl::parse(raw.expose_secret())
        .map_err(|e| anyhow::anyhow!("--database-url / DATABASE_URL: {e}"))
}

/// Where the state and the master key are.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// Folder holding the default state database (`state.db`) and master key file
    /// (`master.key`, used when CLS_MASTER_KEY is not set).
    #[arg(long, env = "CLS_DATA_DIR", default_value = "cls-data")]
    pub data_dir: PathBuf,
    /// The state database: `sqlite://PATH` or `postgres://user:password@host/db`
    /// (default: `sqlite://<data-dir>/state.db`).
    #[arg(long, env = "CLS_STATE_URL", hide_env_values = true)]
    pub state_url: Option<SecretString>,
}

impl StateArgs {
    /// The parsed state URL (the default one in the data directory when none is given).
    pub fn url(&self) -> anyhow::Result<StateUrl> {
        Ok(match &self.state_url {
            Some(raw) => StateUrl::parse(raw.expose_secret())
                .map_err(|e| anyhow::anyhow!("--state-url / CLS_STATE_URL: {e}"))?,
            None => StateUrl::default_in(&self.data_dir)?,
        })
    }

    /// Opens the state with the product's master key (`CLS_MASTER_KEY`, else the key file),
    /// refusing a key that is not the state's, and a missing one when the state holds
    /// sealed secrets.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(self.open_with_source().await?.0)
    }

    /// [`StateArgs::open`], also saying where the master key came from (for the dashboard's
    /// settings page; never the key itself). Creates the data folder when missing.
    pub async fn open_with_source(&self) -> anyhow::Result<(Arc<dyn Store>, KeySource)> {
        std::fs::create_dir_all(&self.data_dir).with_context(|| {
            format!(
                "cannot create the data folder {}: choose another with --data-dir",
                self.data_dir.display()
            )
        })?;
        // Found, not made: the store makes a key file only for a state with nothing sealed.
        let key = MasterKey::find(&self.data_dir)?;
        let source = key.source();
        Ok((cls_control::open(&self.url()?, key).await?, source))
    }
}

/// Run leases: how long a run's heartbeat stays valid and how often it is renewed. Hidden:
/// the defaults suit production, and tests shorten them. Keep them the same on every node
/// sharing a state: each run records the lease it is held under, so a node with a shorter
/// lease does not take over a live run of a node with a longer one, but a node beating
/// rarely re-reads its share of an account's rate budget rarely too.
#[derive(Debug, Clone, Copy, Args)]
pub struct LeaseArgs {
    /// Seconds a running run's heartbeat stays valid; a run silent for longer is taken over
    /// by another node.
    #[arg(long, env = "CLS_LEASE_SECONDS", default_value_t = 60, hide = true)]
    pub lease_seconds: u64,
    /// Seconds between a running run's heartbeats (well under the lease).
    #[arg(long, env = "CLS_HEARTBEAT_SECONDS", default_value_t = 5, hide = true)]
    pub heartbeat_seconds: u64,
}

impl Default for LeaseArgs {
    fn default() -> Self {
        LeaseArgs {
            lease_seconds: 60,
            heartbeat_seconds: 5,
        }
    }
}

impl LeaseArgs {
    /// The runner's configuration with these leases (and a fresh worker id).
    pub fn runner_config(&self, stripe_api_base: Option<url::Url>) -> anyhow::Result<RunnerConfig> {
        if self.heartbeat_seconds == 0
            || self.lease_seconds < self.heartbeat_seconds.saturating_mul(2)
        {
            anyhow::bail!(
                "--lease-seconds ({}) must be at least twice --heartbeat-seconds ({}), which must be at least 1: a run whose heartbeat is late once would otherwise be taken over while alive",
                self.lease_seconds,
                self.heartbeat_seconds
            );
        }
        let lease = i64::try_from(self.lease_seconds)
            .ok()
            .and_then(chrono::Duration::try_seconds)
            .ok_or_else(|| {
                anyhow::anyhow!("--lease-seconds {} is too large", self.lease_seconds)
            })?;
        Ok(RunnerConfig {
            stripe_api_base,
            lease,
            heartbeat_every: std::time::Duration::from_secs(self.heartbeat_seconds),
            ..RunnerConfig::default()
        })
    }
}
