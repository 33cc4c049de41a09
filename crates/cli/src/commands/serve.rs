//! `cls serve`: the service — dashboard, REST API, scheduler, workers, webhook receiver and
//! metrics in one process, over one state store.
//!
//! The state store is SQLite under the data folder by default (`--state-url` for PostgreSQL,
//! to share it between nodes); secrets in it are sealed with the master key
//! (`CLS_MASTER_KEY`, or the key file generated in the data folder on first start).
//!
//! Shutdown (Ctrl-C or SIGTERM) is graceful: the listener stops accepting, requests in flight
//! finish, no new run is claimed, and runs in flight get `--grace-seconds` to finish; any
//! still running after that stop at their last checkpoint and are released, so another node
//! sharing the state (`cls worker`, another `cls serve`) resumes them at once — or this one on
//! its next start.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use cls_control::runner::{AlignedClock, Runner};
use cls_control::service::{run_service, ServiceConfig};
use cls_control::{Clock, KeySource, Store};
use cls_dashboard::DashboardState;
use cls_server::api::RateLimit;
use cls_server::AppState;
use secrecy::ExposeSecret;
use tokio::sync::watch;

use super::{LeaseArgs, Outcome, StateArgs};

/// Arguments of `cls serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long, env = "CLS_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Address to bind. Keep 127.0.0.1 unless a reverse proxy terminating TLS sits in front
    /// (then also pass --secure-cookies).
    #[arg(long, env = "CLS_HOST", default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Where the state database and the master key are.
    #[command(flatten)]
    pub state: StateArgs,
    /// Base URL of a Stripe-compatible API (an emulator, a proxy) for configurations that do
    /// not name their own; Stripe's API when absent.
    #[arg(long, env = "CLS_STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    /// Runs this node executes at once (each of a different configuration).
    #[arg(long, env = "CLS_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Seconds runs in flight may take to finish on shutdown before they stop at their last
    /// checkpoint.
    #[arg(long, default_value_t = 30)]
    pub grace_seconds: u64,
    /// API requests each client may make per minute.
    #[arg(long, env = "CLS_API_RATE_LIMIT", default_value_t = 600)]
    pub api_requests_per_minute: u32,
    /// Mark the session cookie `Secure`: set it when users reach the dashboard over HTTPS
    /// (through a reverse proxy).
    #[arg(long, env = "CLS_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Run leases and heartbeats (the same on every node sharing the state).
    #[command(flatten)]
    pub lease: LeaseArgs,
}

/// Runs `cls serve` until interrupted.
pub async fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    let stripe_api_base = args
        .stripe_api_base
        .as_deref()
        .map(parse_api_base)
        .transpose()?;
    let (store, key_source) = args.state.open_with_source().await?;
    let service = Service::assemble(
        store.clone(),
        &ServiceOptions {
            stripe_api_base,
            api_requests_per_minute: args.api_requests_per_minute,
            secure_cookies: args.secure_cookies,
            key_source,
            lease: args.lease,
        },
    )?;
    let listener = bind(args.host, args.port).await?;
    let addr = listener.local_addr()?;
    if let Some((username, password)) = cls_dashboard::ensure_admin(store.as_ref()).await? {
        eprintln!(
            "created the dashboard's admin account — sign in with user `{username}` and password `{}` (shown once; change it after signing in)",
            password.expose_secret()
        );
    }
    println!("listening on http://{addr}");
    eprintln!(
        "dashboard: http://{addr}/   REST API: http://{addr}/api   metrics: http://{addr}/metrics"
    );
    service
        .run_until_shutdown(
            listener,
            ServiceConfig {
                workers: args.workers,
                grace: Duration::from_secs(args.grace_seconds),
                ..ServiceConfig::default()
            },
        )
        .await?;
    Ok(Outcome::Success)
}

/// What assembling the service takes besides the state store.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Stripe-compatible API base for configurations without their own.
    pub stripe_api_base: Option<url::Url>,
    /// API requests each client may make per minute.
    pub api_requests_per_minute: u32,
    /// Whether the session cookie is marked `Secure`.
    pub secure_cookies: bool,
    /// Where the master key came from, for the dashboard's settings page.
    pub key_source: KeySource,
    /// Run leases and heartbeats.
    pub lease: LeaseArgs,
}

/// The service over one state store: the runner its workers step, and every HTTP route
/// (REST API, health, metrics, webhooks, dashboard). `cls serve` and `cls demo` both run it.
pub struct Service {
    /// The scheduler and runner (Sync Now queues through it).
    pub runner: Runner,
    /// Every route.
    router: axum::Router,
}

impl Service {
    /// Wires the runner, the API, the webhook receiver and the dashboard over `store`.
    pub fn assemble(store: Arc<dyn Store>, options: &ServiceOptions) -> anyhow::Result<Service> {
        let metrics =
            cls_server::install_metrics_recorder().context("cannot start the metrics recorder")?;
        let clock: Arc<dyn Clock> = Arc::new(AlignedClock::default());
        let runner = Runner::with_config(
            store.clone(),
            clock.clone(),
            options
                .lease
                .runner_config(options.stripe_api_base.clone())?,
        );
        let mut api = AppState::new(store.clone(), runner.clone(), clock, metrics);
        api.default_stripe_api_base = options.stripe_api_base.clone();
        api.rate_limit = RateLimit {
            per_minute: NonZeroU32::new(options.api_requests_per_minute)
                .context("--api-requests-per-minute must be at least 1")?,
        };
        let dashboard = DashboardState::new(
            store.clone(),
            runner.clone(),
            options.stripe_api_base.clone(),
            options.secure_cookies,
        )
        .with_master_key_source(options.key_source.clone());
        let router = cls_server::app(api)
            .merge(cls_server::configured_webhooks(
                store,
                options.stripe_api_base.clone(),
            ))
            .merge(cls_dashboard::router(dashboard));
        Ok(Service { runner, router })
    }

    /// Serves on `listener` with the scheduler and workers beside it, until Ctrl-C or
    /// SIGTERM; then shuts down gracefully (module doc).
    pub async fn run_until_shutdown(
        self,
        listener: tokio::net::TcpListener,
        config: ServiceConfig,
    ) -> anyhow::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let service = tokio::spawn(run_service(self.runner, config, stopped.clone()));
        let http = cls_server::serve(listener, self.router, async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        });
        tokio::pin!(http);
        tokio::select! {
            result = &mut http => {
                let _ = stop.send(true);
                result.context("the HTTP server stopped")?;
            }
            () = shutdown_signal() => {
                eprintln!("shutting down: finishing requests and runs in flight…");
                let _ = stop.send(true);
                http.await.context("the HTTP server failed while shutting down")?;
            }
        }
        service
            .await
            .context("the scheduler and workers stopped abnormally")?;
        eprintln!("stopped");
        Ok(())
    }
}

/// Binds the HTTP listener, saying what to do when the port is taken.
pub async fn bind(host: std::net::IpAddr, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(SocketAddr::from((host, port)))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {host}:{port}: the port may be in use; choose another with --port"
            )
        })
}

/// Parses `--stripe-api-base`.
pub(crate) fn parse_api_base(raw: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(raw).with_context(|| {
        format!("--stripe-api-base `{raw}` is not a URL: use e.g. http://127.0.0.1:12111 for a local emulator")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!(
            "--stripe-api-base `{raw}` must start with https:// (or http:// for a local emulator)"
        );
    }
    Ok(url)
}

/// Resolves on Ctrl-C, or on SIGTERM on Unix (what `docker stop` and systemd send).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
