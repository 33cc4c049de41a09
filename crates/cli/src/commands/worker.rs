//! `cls worker`: the scheduler and workers without the dashboard or REST API — one node of a
//! group sharing one PostgreSQL state database (`--state-url postgres://…`) with other
//! `cls worker` and `cls serve` processes, on this machine or others.
//!
//! The nodes coordinate only through that database (module docs of
//! [`cls_control::runner`] and [`cls_control::store`]): a due run is claimed by one node under
//! a lease (`FOR UPDATE SKIP LOCKED`), kept alive by heartbeats, and taken over — resuming
//! from its checkpoints — when its node dies; a configuration never runs on two nodes at
//! once; runs of one Stripe account divide its rate budget wherever they run.
//!
//! Shutdown (Ctrl-C or SIGTERM) is graceful: no new run is claimed, runs in flight get
//! `--grace-seconds` to finish, and any still running after that stop at their last checkpoint
//! and are released, so another node resumes them at once.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cls_control::runner::{AlignedClock, Runner};
use cls_control::service::{run_service, ServiceConfig};
use cls_destination::DatabaseKind;
use tokio::sync::watch;

use super::serve::{parse_api_base, shutdown_signal};
use super::{LeaseArgs, Outcome, StateArgs};

/// Arguments of `cls worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Where the state database and the master key are. The state must be PostgreSQL
    /// (`--state-url postgres://…`), shared by every node; every node needs the same master
    /// key (`CLS_MASTER_KEY`).
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
    /// checkpoint and are handed to another node.
    #[arg(long, default_value_t = 30)]
    pub grace_seconds: u64,
    /// Run leases and heartbeats.
    #[command(flatten)]
    pub lease: LeaseArgs,
}

/// Runs `cls worker` until interrupted.
pub async fn run(args: WorkerArgs) -> anyhow::Result<Outcome> {
    let url = args.state.url()?;
    if url.kind() != DatabaseKind::Postgres {
        anyhow::bail!(
            "cls worker needs a PostgreSQL state shared by every node, and the state is {url}: pass --state-url postgres://user:password@host:5432/dbname (or CLS_STATE_URL); a SQLite state file serves one `cls serve` on one machine only"
        );
    }
    if args.workers == 0 {
        anyhow::bail!("--workers must be at least 1 (runs this node executes at once)");
    }
    let stripe_api_base = args
        .stripe_api_base
        .as_deref()
        .map(parse_api_base)
        .transpose()?;
    let config = args.lease.runner_config(stripe_api_base)?;
    let store = args.state.open().await?;
    let worker_id = config.worker_id.clone();
    let runner = Runner::with_config(store, Arc::new(AlignedClock::default()), config);
    println!(
        "worker {worker_id} started: up to {} runs at once, state {url}",
        args.workers
    );
    let (stop, stopped) = watch::channel(false);
    let service = tokio::spawn(run_service(
        runner,
        ServiceConfig {
            workers: args.workers,
            grace: Duration::from_secs(args.grace_seconds),
            ..ServiceConfig::default()
        },
        stopped,
    ));
    shutdown_signal().await;
    eprintln!("shutting down: finishing runs in flight…");
    let _ = stop.send(true);
    service
        .await
        .map_err(|e| anyhow::anyhow!("the scheduler and workers stopped abnormally: {e}"))?;
    eprintln!("stopped");
    Ok(Outcome::Success)
}
