//! `cls listen`: receive Stripe webhooks and apply their events to a database as they happen.
//!
//! The receiver (`cls-server`) verifies each delivery's signature and applies the event through
//! the same path as `cls sync --mode incremental`, so deliveries that arrive late, twice or out
//! of order never put older data over newer. Polling stays the safety net: Stripe gives up on
//! an endpoint that stays down, and events of the same second cannot be ordered from webhooks
//! alone, so run `cls sync` on a schedule as well.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use cls_engine::resolve_account;
use cls_server::{router, WebhookSecret, WebhookState};
use cls_stripe::RequestCounters;
use secrecy::{ExposeSecret, SecretString};

use super::{parse_database_url, parse_types, Outcome, StripeArgs};

/// Arguments of `cls listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to bind (use 0.0.0.0 behind a reverse proxy that terminates TLS).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// The endpoint's signing secret (whsec_…), from Stripe Dashboard → Developers → Webhooks.
    /// Prefer the environment variable, so it does not show in the process list.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: SecretString,
    /// Destination database (same as `cls sync`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: SecretString,
    /// Stripe API key: names the account the rows belong to, and fetches child lists longer
    /// than a parent embeds (invoice lines, subscription items). Without it, give
    /// --account-id; long child lists then wait for the next `cls sync`.
    #[arg(long, env = "STRIPE_API_KEY", hide_env_values = true)]
    pub stripe_key: Option<SecretString>,
    /// Base URL of the Stripe API (or of the emulator).
    #[arg(long, env = "CLS_STRIPE_API_BASE", default_value = cls_stripe::DEFAULT_API_BASE)]
    pub api_base: String,
    /// The Stripe account (acct_…) the rows belong to, when no key is given.
    #[arg(long)]
    pub account_id: Option<String>,
    /// Data types to apply events to, comma-separated (default: all of them).
    #[arg(long)]
    pub types: Option<String>,
    /// Schema for the tables (PostgreSQL).
    #[arg(long, default_value = "stripe")]
    pub schema: String,
}

/// Runs `cls listen` until interrupted.
pub async fn run(args: ListenArgs) -> anyhow::Result<Outcome> {
    let types = parse_types(args.types.as_deref())?;
    let url = parse_database_url(&args.database_url)?;
    let secret = WebhookSecret::parse(args.webhook_secret.expose_secret())
        .map_err(|e| anyhow::anyhow!("--webhook-secret / STRIPE_WEBHOOK_SECRET: {e}"))?;
    let client = match &args.stripe_key {
        Some(key) => Some(
            StripeArgs {
                stripe_key: key.clone(),
                api_base: args.api_base.clone(),
                stripe_version: cls_stripe::DEFAULT_STRIPE_VERSION.to_string(),
                global_rps: None,
                endpoint_rps: 25,
            }
            .client()?,
        ),
        None => None,
    };
    let account_id = match (&client, &args.account_id) {
        (_, Some(id)) if id.starts_with("acct_") => id.clone(),
        (_, Some(id)) => anyhow::bail!("--account-id `{id}` is not a Stripe account id (acct_…)"),
        (Some(c), None) => resolve_account(c, &RequestCounters::default())
            .await
            .context("reading the Stripe account of the key")?,
        (None, None) => anyhow::bail!(
            "give --stripe-key (recommended) or --account-id: rows are stored per Stripe account"
        ),
    };

    let dest = cls_destination::connect(&url, &args.schema).await?;
    dest.prepare(&types).await?;
    let state = Arc::new(WebhookState::new(
        secret,
        Arc::from(dest),
        client,
        account_id.clone(),
        types,
    ));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    // One line on stdout that scripts (and tests) can wait for.
    println!("listening on http://{addr}/webhooks/stripe for account {account_id}");
    eprintln!(
        "point a Stripe webhook endpoint at https://<your host>/webhooks/stripe; Ctrl-C stops"
    );
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the webhook receiver stopped")?;
    Ok(Outcome::Success)
}
