//! `cls emulator`: the Stripe API emulator on its own, serving until stopped.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::{Args, ValueEnum};
use cls_emulator::{EmulatorConfig, Mode};

use super::Outcome;

/// Test or live mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Test mode: `*_test_*` keys, `livemode: false`, 25 req/s in all.
    Test,
    /// Live mode: `*_live_*` keys, `livemode: true`, 100 req/s in all.
    Live,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Arguments of `cls emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 12111)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Seed of the generated account: the same seed, customers and anchor give the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of customers the account is built around (about 10–20 objects each in all).
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Unix time the generated history ends at (default: the start of today, UTC).
    #[arg(long)]
    pub anchor: Option<i64>,
    /// Test or live mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Test)]
    pub mode: ModeArg,
    /// Stripe's rate limits (25 req/s in test mode, 100 in live, 25 per endpoint).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub rate_limits: Switch,
    /// Latency added around this many milliseconds to every Stripe request.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction (0.0–1.0) of Stripe requests that fail with server errors, resets, truncated
    /// bodies or slow responses.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// POST every new event (from writes and `/_emulator/mutate`) to this URL, signed as Stripe
    /// signs webhooks. Needs `--webhook-secret`.
    #[arg(long, requires = "webhook_secret")]
    pub webhook_url: Option<String>,
    /// The endpoint secret (`whsec_…`) webhooks are signed with. Needs `--webhook-url`; never
    /// printed.
    #[arg(long, requires = "webhook_url")]
    pub webhook_secret: Option<String>,
    /// Stripe Connect: make the account a platform with this many connected accounts, each
    /// with its own smaller data set; `/v1/accounts` lists them and `Stripe-Account: acct_…`
    /// reads one.
    #[arg(long, default_value_t = 0)]
    pub connected_accounts: usize,
}

/// Checks the webhook flags: both or neither, an http(s) URL, a `whsec_` secret.
fn webhook_target(args: &EmulatorArgs) -> anyhow::Result<Option<(String, String)>> {
    match (&args.webhook_url, &args.webhook_secret) {
        (None, None) => Ok(None),
        (Some(url), Some(secret)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                anyhow::bail!("--webhook-url {url} is not an http(s) URL: give e.g. http://127.0.0.1:8080/webhooks");
            }
            if !secret.starts_with("whsec_") || secret.len() <= "whsec_".len() {
                // The secret itself is never echoed.
                anyhow::bail!("--webhook-secret must be an endpoint secret starting with whsec_");
            }
            Ok(Some((url.clone(), secret.clone())))
        }
        _ => anyhow::bail!("--webhook-url and --webhook-secret go together: give both or neither"),
    }
}

/// Runs `cls emulator` until Ctrl-C.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<Outcome> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        anyhow::bail!(
            "--fault-rate {} is out of range: give a fraction between 0.0 and 1.0",
            args.fault_rate
        );
    }
    let webhooks = webhook_target(&args)?;
    let mode = match args.mode {
        ModeArg::Test => Mode::Test,
        ModeArg::Live => Mode::Live,
    };
    let mut config = EmulatorConfig::new(args.seed, args.customers);
    config.mode = mode;
    if let Some(anchor) = args.anchor {
        config.anchor = anchor;
    }
    config.rate_limits = args.rate_limits == Switch::On;
    config.latency_ms = args.latency_ms;
    config.fault_rate = args.fault_rate;
    config.connected_accounts = args.connected_accounts;
    let webhook_url = webhooks.as_ref().map(|(url, _)| url.clone());
    if let Some((url, secret)) = webhooks {
        config.webhook_url = Some(url);
        config.webhook_secret = Some(secret);
    }

    eprintln!(
        "generating an account of {} customers (seed {})…",
        args.customers, args.seed
    );
    let addr = SocketAddr::new(args.host, args.port);
    let running = cls_emulator::spawn(config, addr)
        .await
        .with_context(|| format!("cannot listen on {addr}: choose another --port"))?;
    println!("Stripe API emulator listening on {}", running.base_url);
    println!("mode: {}", mode.as_str());
    if !running.state.connected.is_empty() {
        println!("connected accounts (send Stripe-Account: <id>):");
        for account in &running.state.connected {
            println!("  {}", account.id);
        }
    }
    if let Some(url) = &webhook_url {
        println!("webhooks: every new event is POSTed to {url} (signed; secret not shown)");
    }
    println!("accepted API keys:");
    for key in cls_emulator::keys_for(mode) {
        println!("  {key}");
    }
    println!(
        "try: curl -u {}: {}/v1/customers?limit=3",
        cls_emulator::keys_for(mode).first().unwrap_or(&""),
        running.base_url
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    eprintln!("stopping");
    running.shutdown().await;
    Ok(Outcome::Success)
}
