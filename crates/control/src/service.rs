//! The scheduler and workers as a long-running service: what `cls serve` runs next to the
//! HTTP server, and `cls worker` runs alone.
//!
//! [`Runner::step`] is one turn, for tests; [`run_service`] turns it into loops:
//! - one **scheduler** loop queues the runs schedules owe ([`Runner::queue_due`]) every
//!   [`ServiceConfig::schedule_every`];
//! - [`ServiceConfig::workers`] **worker** loops each claim and execute one run at a time
//!   ([`Runner::run_next`]), going straight to the next when there was one and waiting
//!   [`ServiceConfig::idle_wait`] when there was none.
//!
//! Shutdown is graceful: once the shutdown signal fires no new run is claimed, the runs in
//! flight get [`ServiceConfig::grace`] to finish, and any still running after that are
//! stopped at their last checkpoint and *released* ([`Runner::run_next_until`]): they stay
//! `running`, their lease ends at once, and the next node to claim runs takes them over and
//! resumes them from there, without waiting for the lease to expire. Stopping a run loses
//! nothing: every write the engine commits carries its checkpoint in the same transaction, so
//! the destination is always at a checkpoint. A run that does not stop within
//! [`RELEASE_WAIT`] is dropped unreleased, and is taken over once its lease expires.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::runner::Runner;

/// How long runs stopped after the grace period may take to stop and release their leases
/// (an engine's runtime takes up to 10 s to shut down) before they are dropped.
pub const RELEASE_WAIT: Duration = Duration::from_secs(15);

/// How the service loops behave.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Runs executed at once by this process (each a different configuration).
    pub workers: usize,
    /// How often the scheduler looks for schedules that came due.
    pub schedule_every: Duration,
    /// How long an idle worker waits before looking for a queued run again.
    pub idle_wait: Duration,
    /// How long runs in flight may take to finish after shutdown is asked.
    pub grace: Duration,
    /// How long a worker waits after the state store failed before trying again.
    pub error_backoff: Duration,
    /// How often the runner's clock is aligned to the state database's
    /// ([`Runner::align_clock`]).
    pub align_clock_every: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            workers: 4,
            schedule_every: Duration::from_secs(5),
            idle_wait: Duration::from_millis(500),
            grace: Duration::from_secs(30),
            error_backoff: Duration::from_secs(2),
            align_clock_every: Duration::from_secs(60),
        }
    }
}

/// Runs the scheduler and the workers until `shutdown` turns `true` (or its sender is
/// dropped), then shuts down as the module doc describes.
pub async fn run_service(runner: Runner, config: ServiceConfig, shutdown: watch::Receiver<bool>) {
    let (release, released) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Before anything reads the clock to judge a lease or a schedule.
    tokio::select! {
        aligned = runner.align_clock() => {
            if let Err(e) = aligned {
                tracing::warn!(error = %e, "could not read the state database's clock; using this machine's until the next try");
            }
        }
        () = wait_for(shutdown.clone()) => return,
    }
    tasks.spawn(clock_loop(runner.clone(), config.clone(), shutdown.clone()));
    tasks.spawn(scheduler_loop(
        runner.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    for worker in 0..config.workers.max(1) {
        tasks.spawn(worker_loop(
            runner.clone(),
            config.clone(),
            shutdown.clone(),
            released.clone(),
            worker,
        ));
    }
    wait_for(shutdown).await;
    tracing::info!(
        grace_seconds = config.grace.as_secs(),
        "shutting down: no new runs are claimed; runs in flight may finish"
    );
    let drained = tokio::time::timeout(config.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "runs still in flight after the grace period are being stopped at their last checkpoint and released; the next node resumes them at once"
        );
        let _ = release.send(true);
        let stopped = tokio::time::timeout(RELEASE_WAIT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(
                "runs that did not stop in time were dropped at their last checkpoint; the next node resumes them once their lease expires"
            );
            tasks.shutdown().await;
        }
    }
}

/// Resolves once shutdown is asked (the value turns `true` or the sender is gone).
async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    // `wait_for` errs only when the sender is dropped, which also means "stop".
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleeps for `d`, or less when shutdown is asked. Returns whether shutdown was asked.
async fn pause(d: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *shutdown.borrow(),
        () = wait_for(shutdown.clone()) => true,
    }
}

/// Keeps the runner's clock aligned to the state database's, every `align_clock_every`.
async fn clock_loop(runner: Runner, config: ServiceConfig, shutdown: watch::Receiver<bool>) {
    while !pause(config.align_clock_every, &shutdown).await {
        if let Err(e) = runner.align_clock().await {
            tracing::warn!(error = %e, "could not read the state database's clock; keeping the last offset");
        }
    }
}

/// Queues the runs that schedules owe, every `schedule_every`.
async fn scheduler_loop(runner: Runner, config: ServiceConfig, shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = match runner.queue_due().await {
            Ok(_) => config.schedule_every,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler could not read or queue due runs; retrying");
                config.error_backoff
            }
        };
        if pause(wait, &shutdown).await {
            return;
        }
    }
}

/// Claims and executes runs one at a time until shutdown. A run in flight is not interrupted
/// by the shutdown signal itself: [`run_service`] gives it the grace period, then `release`.
async fn worker_loop(
    runner: Runner,
    config: ServiceConfig,
    shutdown: watch::Receiver<bool>,
    release: watch::Receiver<bool>,
    worker: usize,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wait = match runner.run_next_until(release.clone()).await {
            Ok(Some(done)) if done.released => {
                tracing::info!(worker, run_id = %done.run.id, "run released on shutdown");
                continue;
            }
            Ok(Some(done)) => {
                tracing::info!(worker, run_id = %done.run.id, status = %done.run.status, "run ended");
                continue;
            }
            Ok(None) => config.idle_wait,
            Err(e) => {
                tracing::error!(worker, error = %e, "the worker could not claim or record a run; retrying");
                config.error_backoff
            }
        };
        if pause(wait, &shutdown).await {
            return;
        }
    }
}
