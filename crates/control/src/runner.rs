//! The scheduler and runner: one [`Runner::step`] queues the runs that schedules owe and
//! executes one queued run through the engine, recording its outcome in the [`Store`].
//!
//! `cls serve` calls `step` in a loop; tests call it directly, with a [`ManualClock`], so
//! nothing waits on wall time. The rules it keeps:
//! - a schedule that came due while no node was up queues **one** run for the latest missed
//!   slot ([`crate::schedule::check`]) — and so does a schedule switched on again after a
//!   pause; a slot is recorded before its run is queued ([`Store::mark_schedule_due`]) so
//!   two nodes never queue it twice (a node stopping between the two loses that one slot's
//!   run, never duplicates it);
//! - a configuration never has two queued runs ([`Store::queue_run`]) nor two running ones
//!   ([`Store::claim_next_run`]): Sync Now during a run queues one run behind it, and says
//!   so ([`QueuedRun::message`]);
//! - a run whose key Stripe rejects (401), whose key lost the permission for every chosen
//!   data type (403), or whose database is unreachable pauses the configuration's schedules
//!   with the reason, so a broken configuration does not fail every hour; Test Connection
//!   switching the schedule on again resumes it;
//! - a running run is leased to one worker ([`RunnerConfig::worker_id`]), which sends a
//!   heartbeat with the live per-data-type counters every [`RunnerConfig::heartbeat_every`];
//!   a run whose worker went silent for [`RunnerConfig::lease`] is taken over by the next
//!   claim and resumed from the destination's checkpoints;
//! - a cancel request stops the run at its next heartbeat and records it `canceled`;
//!   stopping anywhere is safe, since every write the engine commits carries its checkpoint
//!   in the same transaction, and the next run resumes from there;
//! - a worker that lost its lease stops and records nothing: the new owner does; so does a
//!   worker none of whose heartbeats got through for a whole lease (the state database
//!   away or hung), since by then another worker may hold the run;
//! - a node shutting down stops its runs at a checkpoint and releases their leases
//!   ([`Runner::run_next_until`], [`Store::release_run`]), so another node takes them over
//!   at once instead of after the lease;
//! - runs of one Stripe account share its rate budget, whichever nodes they run on (below);
//! - nodes judge one another's leases on one clock: [`AlignedClock`], this machine's clock
//!   moved by its offset to the state database's ([`Runner::align_clock`], which the
//!   service repeats every minute).
//!
//! **An account's rate budget across workers.** Stripe limits each account (per mode), not
//! each client, so two runs of the same account — two configurations with different data
//! types or keys, on one node or on two — must not each spend the whole budget. At its start
//! a run resolves its account (`/v1/account`, through [`cls_engine::account_info`]: one extra
//! request per run) and registers `acct_…/mode` on its row in the state database
//! ([`Store::share_account`]); the store answers how many live runs (running, heartbeat
//! within the lease) have registered the same account, and the run's client divides its
//! global and per-endpoint rates by that number ([`cls_stripe::StripeClient::set_rate_share`]).
//! Each run records the share it applied, and asks again several times a second (a
//! twentieth of the heartbeat interval, at most 250 ms), so the share follows runs starting,
//! ending, dying and being taken over.
//! A run that finds a peer of its account still running at a larger share (one that has not
//! yet seen the newcomer) holds its first request back until every peer has applied the new
//! count — at most a heartbeat interval and a tick, after which a silent peer is taken for
//! dead — so the sum of the runs' rates stays within the account's limits from the start.
//! No lock, leader or token server of our own: the count is a plain query over the rows the
//! leases already keep alive.
//!
//! The engine of each run executes on a runtime of its own, on its own thread: the engine
//! spawns tasks (parallel windows, the writer), and only shutting their runtime down stops
//! them all when a run is canceled or its lease lost — dropping the run's future would not.
//!
//! Metrics (through the `metrics` facade; the server installs the exporter):
//! `cls_sync_runs_total{status}` and `cls_sync_run_duration_seconds` at each run's end;
//! `cls_sync_objects_total{type}`, `cls_sync_requests_total{type}`,
//! `cls_sync_retries_total{type}` and `cls_sync_rate_limited_total{type}` as each data type
//! finishes.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use cls_destination::DestinationError;
use cls_engine::{
    run_sync, run_sync_with_connected, EngineError, Progress, ProgressFn, RequestedMode,
    SyncOptions, SyncReport, TypeReport, TypeStatus,
};
use cls_stripe::{ClientConfig, RequestCounters, StripeClient, StripeError};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;
use url::Url;

use crate::model::{
    AccountShare, Configuration, NewRun, PageRequest, Project, RunError, RunStatus, RunUpdate,
    Schedule, ScheduleId, SyncMode, SyncRun, Trigger, TypeStats,
};
use crate::schedule;
use crate::store::{QueuedRun, Store, StoreError};

/// Where the runner reads the time. Real servers use [`AlignedClock`]; tests use
/// [`ManualClock`] and move time by hand.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// How far the state database's clock is ahead of this machine's, measured by
    /// [`Runner::align_clock`]. Clocks that follow the wall clock apply it; the others
    /// ignore it.
    fn set_offset(&self, _offset: chrono::Duration) {}
}

/// The wall clock, moved by the state database's offset: what `cls serve` and `cls worker`
/// run on. Every node sharing a PostgreSQL state writes lease heartbeats that other nodes
/// judge (a run silent past its lease is taken over), so they must read one clock: a node
/// whose clock ran a minute ahead would take over every live run. Aligned to the database's
/// clock, nodes agree within half a round trip to it, whatever their own clocks say.
#[derive(Debug, Default)]
pub struct AlignedClock {
    /// The database's clock minus this machine's, in microseconds.
    offset_micros: std::sync::atomic::AtomicI64,
}

impl AlignedClock {
    /// How far the database's clock is ahead of this machine's.
    pub fn offset(&self) -> chrono::Duration {
        chrono::Duration::microseconds(
            self.offset_micros
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

impl Clock for AlignedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    fn set_offset(&self, offset: chrono::Duration) {
        let micros = offset.num_microseconds().unwrap_or(0);
        self.offset_micros
            .store(micros, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The database's clock minus ours, from a reading `theirs` taken by a request sent at our
/// `sent` that took `round_trip`: the database read its clock, on average, half-way through.
pub fn clock_offset(
    sent: DateTime<Utc>,
    round_trip: std::time::Duration,
    theirs: DateTime<Utc>,
) -> chrono::Duration {
    let half = chrono::Duration::from_std(round_trip / 2).unwrap_or_default();
    theirs - (sent + half)
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    /// The instant it shows.
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How the runner reaches Stripe and holds its runs' leases.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The server's `--stripe-api-base`, used by configurations without their own; `None`
    /// means Stripe's.
    pub stripe_api_base: Option<Url>,
    /// This worker's name in run leases (default: host name, process id and a random
    /// suffix, unique per runner).
    pub worker_id: String,
    /// How long a running run's heartbeat stays valid; a run whose worker has been silent
    /// longer is taken over by another worker (default: 60 s).
    pub lease: chrono::Duration,
    /// How often a running run's worker sends a heartbeat, with live progress (default:
    /// 5 s; keep it well under `lease`).
    pub heartbeat_every: std::time::Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            stripe_api_base: None,
            worker_id: default_worker_id(),
            lease: chrono::Duration::seconds(60),
            heartbeat_every: std::time::Duration::from_secs(5),
        }
    }
}

/// `host-pid-random`: readable in the run history, unique across restarts and runners.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cls".to_string());
    let suffix: u32 = rand::random();
    format!("{host}-{}-{suffix:08x}", std::process::id())
}

/// What went wrong in a step. Failures of a run itself (Stripe, the destination) are not
/// errors of the step: they are recorded on the run.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The state store failed; the step can be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A run a schedule queued in a step.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledRun {
    /// The schedule that came due.
    pub schedule: ScheduleId,
    /// The slot it came due at (the latest one missed, however many were).
    pub slot: DateTime<Utc>,
    /// The run queued, or the one already waiting for the configuration.
    pub queued: QueuedRun,
}

/// The run a step executed.
#[derive(Debug, Clone)]
pub struct ExecutedRun {
    /// The run as recorded at its end (or, when the lease was lost, as it is now).
    pub run: SyncRun,
    /// Schedules paused because of how it ended, with the reason given.
    pub paused: Vec<Schedule>,
    /// Another worker took the run over (this one went silent for longer than the lease),
    /// or it ended elsewhere: this worker stopped and recorded nothing.
    pub lease_lost: bool,
    /// This node was shutting down: the run stopped at its last checkpoint and its lease was
    /// released, so another node resumes it at once (it is still `running`).
    pub released: bool,
}

/// What one [`Runner::step`] did.
#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    /// Runs queued for schedules that came due.
    pub scheduled: Vec<ScheduledRun>,
    /// The run executed, if one could start.
    pub executed: Option<ExecutedRun>,
}

impl StepOutcome {
    /// Whether the step did nothing (nothing was due, nothing could start).
    pub fn is_idle(&self) -> bool {
        self.scheduled.is_empty() && self.executed.is_none()
    }
}

/// The scheduler and runner over one [`Store`].
#[derive(Debug, Clone)]
pub struct Runner {
    /// The state.
    store: Arc<dyn Store>,
    /// Where "now" comes from.
    clock: Arc<dyn Clock>,
    /// How Stripe is reached.
    config: RunnerConfig,
}

impl Runner {
    /// A runner with the default [`RunnerConfig`] (Stripe's API).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Runner {
        Runner::with_config(store, clock, RunnerConfig::default())
    }

    /// A runner with an explicit configuration.
    pub fn with_config(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: RunnerConfig,
    ) -> Runner {
        Runner {
            store,
            clock,
            config,
        }
    }

    /// Measures how far the state database's clock is ahead of this machine's and gives the
    /// runner's clock the offset ([`Clock::set_offset`]; an [`AlignedClock`] applies it).
    /// Warns when this machine's clock is more than 2 s off: leases and schedules follow the
    /// database's clock, but the machine's own logs and Stripe requests do not.
    ///
    /// Three readings, keeping the one with the shortest round trip (a reading that waited
    /// for a pooled connection carries half that wait as error); each bounded by 5 s.
    pub async fn align_clock(&self) -> Result<chrono::Duration, StoreError> {
        let mut best: Option<(std::time::Duration, chrono::Duration)> = None;
        for _ in 0..3 {
            let sent = Utc::now();
            let started = std::time::Instant::now();
            let reading = self.store.database_time();
            let Ok(theirs) = tokio::time::timeout(std::time::Duration::from_secs(5), reading).await
            else {
                continue;
            };
            let trip = started.elapsed();
            let offset = clock_offset(sent, trip, theirs?);
            if best.is_none_or(|(shortest, _)| trip < shortest) {
                best = Some((trip, offset));
            }
        }
        let (_, offset) = best.ok_or(StoreError::Database(sqlx::Error::PoolTimedOut))?;
        if offset.num_milliseconds().abs() > 2_000 {
            tracing::warn!(
                offset_ms = offset.num_milliseconds(),
                "this machine's clock is off the state database's by this much: leases and schedules follow the database's clock; fix the machine's time sync (NTP)"
            );
        }
        self.clock.set_offset(offset);
        Ok(offset)
    }

    /// Queues a run of a configuration now (Sync Now). During a run, the new run waits for
    /// it; when one is already waiting, that one is returned and nothing more is queued —
    /// [`QueuedRun::message`] says which.
    pub async fn sync_now(
        &self,
        configuration: crate::model::ConfigurationId,
        mode: SyncMode,
    ) -> Result<QueuedRun, RunnerError> {
        Ok(self
            .store
            .queue_run(NewRun {
                configuration_id: configuration,
                trigger: Trigger::Manual,
                mode,
            })
            .await?)
    }

    /// One turn of the loop: queue what schedules owe ([`Runner::queue_due`]), then execute
    /// the oldest run that can start ([`Runner::run_next`]).
    #[tracing::instrument(name = "runner.step", skip_all)]
    pub async fn step(&self) -> Result<StepOutcome, RunnerError> {
        let scheduled = self.queue_due().await?;
        let executed = self.run_next().await?;
        Ok(StepOutcome {
            scheduled,
            executed,
        })
    }

    /// Queues one run for every active schedule (of an active configuration and project)
    /// that has a slot after its last one and at or before now.
    pub async fn queue_due(&self) -> Result<Vec<ScheduledRun>, RunnerError> {
        let now = self.clock.now();
        let mut queued = Vec::new();
        for s in self.all_schedules(None).await? {
            if s.paused().is_some() {
                continue;
            }
            let anchor = s.last_due_at.unwrap_or(s.created_at);
            let Some(slot) = schedule::check(&s.cadence, anchor, now).slot else {
                continue;
            };
            // Whoever records the slot queues its run; another node that read the same
            // anchor loses here and queues nothing.
            match self
                .store
                .mark_schedule_due(s.id, s.last_due_at, slot)
                .await
            {
                Ok(true) => {}
                // Another node took the slot, or the schedule was deleted meanwhile.
                Ok(false) | Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let new = NewRun {
                configuration_id: s.configuration_id,
                trigger: Trigger::Schedule,
                mode: s.mode,
            };
            let run = match self.store.queue_run(new).await {
                Ok(run) => run,
                // The configuration was deleted since the schedules were read.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            tracing::info!(schedule_id = %s.id, %slot, run_id = %run.run().id, "schedule came due");
            queued.push(ScheduledRun {
                schedule: s.id,
                slot,
                queued: run,
            });
        }
        Ok(queued)
    }

    /// Claims the oldest queued run whose configuration is not running, executes it and
    /// records how it ended. `None` when no run can start.
    pub async fn run_next(&self) -> Result<Option<ExecutedRun>, RunnerError> {
        self.claim_and_execute(None).await
    }

    /// [`Runner::run_next`], stopping the run when `release` turns `true` (a node shutting
    /// down after its grace period): the engine stops at its last checkpoint and the run's
    /// lease is released ([`Store::release_run`]), so the next claim on any node resumes it
    /// at once. [`ExecutedRun::released`] says so.
    pub async fn run_next_until(
        &self,
        release: watch::Receiver<bool>,
    ) -> Result<Option<ExecutedRun>, RunnerError> {
        self.claim_and_execute(Some(release)).await
    }

    /// Claims the next run and executes it, releasing it early when `release` fires.
    async fn claim_and_execute(
        &self,
        release: Option<watch::Receiver<bool>>,
    ) -> Result<Option<ExecutedRun>, RunnerError> {
        let Some(run) = self
            .store
            .claim_next_run(self.clock.now(), &self.config.worker_id, self.config.lease)
            .await?
        else {
            return Ok(None);
        };
        self.execute(run, release).await.map(Some)
    }

    /// Executes a claimed (running) run and records its outcome.
    #[tracing::instrument(name = "runner.run", skip_all, fields(run_id = %run.id, configuration_id = %run.configuration_id))]
    async fn execute(
        &self,
        run: SyncRun,
        release: Option<watch::Receiver<bool>>,
    ) -> Result<ExecutedRun, RunnerError> {
        let clock_started = std::time::Instant::now();
        let ended = match self.load(&run).await {
            Ok((configuration, project)) => {
                if let Some(paused) = configuration.paused() {
                    Ended::canceled(format!(
                        "the run did not start ({paused}): switch the project and configuration on, then sync again"
                    ))
                } else if run.cancel_requested {
                    // Taken over from a dead worker after someone asked to cancel it.
                    Ended::canceled(CANCELED_ON_REQUEST.to_string())
                } else {
                    match self.supervise(&run, configuration, project, release).await {
                        Supervised::Ended(ended) => ended,
                        Supervised::LeaseLost => return self.lost(run.id).await,
                        Supervised::Released => return self.released(run.id).await,
                    }
                }
            }
            // Unreadable here (a wrong master key on this node, a damaged row): record why,
            // or the run would stay running, taken over and failing again every lease.
            Err(e @ (StoreError::Secrets(_) | StoreError::Corrupt { .. })) => {
                Ended::failed(format!("the run could not read its configuration: {e}"))
            }
            // Deleted while queued: its runs went with it.
            Err(StoreError::NotFound { .. }) => {
                return Ok(ExecutedRun {
                    run,
                    paused: Vec::new(),
                    lease_lost: false,
                    released: false,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let update = RunUpdate {
            status: Some(ended.status),
            ended_at: Some(self.clock.now()),
            stats: Some(ended.stats),
            errors: Some(ended.errors),
            ..RunUpdate::default()
        };
        let recorded = match self
            .store
            .finish_run(run.id, &self.config.worker_id, update)
            .await
        {
            Ok(r) => r,
            // Taken over or ended by someone else meanwhile: theirs stands.
            Err(StoreError::LeaseLost { .. }) => return self.lost(run.id).await,
            Err(e) => return Err(e.into()),
        };
        metrics::counter!("cls_sync_runs_total", "status" => recorded.status.as_str()).increment(1);
        metrics::histogram!("cls_sync_run_duration_seconds")
            .record(clock_started.elapsed().as_secs_f64());
        let mut paused = Vec::new();
        if let Some(reason) = ended.pause {
            for s in self.all_schedules(Some(run.configuration_id)).await? {
                if s.active {
                    tracing::warn!(schedule_id = %s.id, %reason, "schedule paused");
                    paused.push(self.store.pause_schedule(s.id, &reason).await?);
                }
            }
        }
        Ok(ExecutedRun {
            run: recorded,
            paused,
            lease_lost: false,
            released: false,
        })
    }

    /// What a step returns for a run this worker no longer holds: the run as it is now.
    async fn lost(&self, id: crate::model::RunId) -> Result<ExecutedRun, RunnerError> {
        tracing::warn!(run_id = %id, "lost the run's lease (another worker took it over, or it ended): stopped without recording");
        Ok(ExecutedRun {
            run: self.store.run(id).await?,
            paused: Vec::new(),
            lease_lost: true,
            released: false,
        })
    }

    /// What a step returns for a run stopped and released on shutdown: the run as it is now.
    async fn released(&self, id: crate::model::RunId) -> Result<ExecutedRun, RunnerError> {
        match self.store.release_run(id, &self.config.worker_id).await {
            Ok(_) => {
                tracing::info!(run_id = %id, "stopped the run at its last checkpoint and released it: another node resumes it at once")
            }
            // Taken over meanwhile: the new owner has it already.
            Err(StoreError::LeaseLost { .. }) => return self.lost(id).await,
            Err(e) => return Err(e.into()),
        }
        Ok(ExecutedRun {
            run: self.store.run(id).await?,
            paused: Vec::new(),
            lease_lost: false,
            released: true,
        })
    }

    /// Registers the run's Stripe account and gives its client its share of the account's
    /// rate budget (module doc); `None` when the store did not answer in time.
    /// `Err(LeaseLost)` when the run is no longer this worker's. Bounded by a quarter
    /// heartbeat interval, so a slow or locked state database never holds up the heartbeats
    /// for long (the share stays as it was until the next try).
    async fn share_budget(
        &self,
        run: &SyncRun,
        budget: &Budget,
    ) -> Result<Option<AccountShare>, StoreError> {
        let asked = self.store.share_account(
            run.id,
            &self.config.worker_id,
            &budget.account,
            self.clock.now(),
            self.config.lease,
        );
        let Ok(answered) = tokio::time::timeout(self.config.heartbeat_every / 4, asked).await
        else {
            tracing::debug!(run_id = %run.id, "the state database did not say in time how many runs share the account; keeping the current share");
            return Ok(None);
        };
        let share = answered?;
        if budget.client.rate_share() != share.runs {
            tracing::info!(run_id = %run.id, account = %budget.account, runs = share.runs, "the account's rate budget is shared by this many runs");
        }
        budget
            .client
            .set_rate_share(NonZeroU32::new(share.runs).unwrap_or(NonZeroU32::MIN));
        Ok(Some(share))
    }

    /// Runs the engine on its own runtime while sending heartbeats with the live counters
    /// and keeping the run's share of its account's rate budget. Stops the engine when a
    /// cancel is requested (the run ends canceled), the lease is lost, or `release` fires.
    async fn supervise(
        &self,
        run: &SyncRun,
        configuration: Configuration,
        project: Project,
        mut release: Option<watch::Receiver<bool>>,
    ) -> Supervised {
        let live: Arc<Mutex<BTreeMap<String, TypeStats>>> = Arc::default();
        let progress: ProgressFn = {
            let live = live.clone();
            Arc::new(move |p| record_progress(&live, p))
        };
        let engine = EngineThread::start(
            run,
            configuration,
            project,
            self.config.stripe_api_base.clone(),
            progress,
        );
        let mut done = engine.done;
        let mut account = engine.account;
        let mut awaiting_account = true;
        let mut budget: Option<Budget> = None;
        let every = self.config.heartbeat_every;
        // How often the run's share of its account's budget is asked again, and, while the
        // engine waits to start, until when it waits for the account's other runs.
        let share_every = (every / 20).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(250),
        );
        let mut share_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + share_every, share_every);
        share_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut waiting: Option<(oneshot::Sender<()>, tokio::time::Instant)> = None;
        // When the last heartbeat that got through was sent: once a whole lease has passed
        // since, another node may have taken the run over, so this one stops (it fences
        // itself) instead of writing alongside the new owner until a heartbeat gets through
        // again — which, with a hung connection to the state database, might be never.
        let lease = self
            .config
            .lease
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(60));
        let mut beat_at = tokio::time::Instant::now();
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = loop {
            tokio::select! {
                // In this order when several are ready: the run's end, its account, a release,
                // a heartbeat (which carries cancels and proves the lease), then shares.
                biased;
                ended = &mut done => {
                    return Supervised::Ended(ended.ok().flatten().unwrap_or_else(|| Ended::failed(
                        "the sync stopped unexpectedly (its task panicked): sync again, and report this if it persists".to_string(),
                    )));
                }
                resolved = &mut account, if awaiting_account => {
                    awaiting_account = false;
                    // No account (its request failed): the engine reports the failure.
                    if let Ok(Resolved { budget: resolved, go }) = resolved {
                        match self.share_budget(run, &resolved).await {
                            Ok(Some(share)) if share.settled => {
                                let _ = go.send(());
                            }
                            // Peers to wait for, or no answer yet: the ticks ask again.
                            Ok(_) => {
                                tracing::debug!(run_id = %run.id, account = %resolved.account, "waiting for the account's other runs to take their share before the first request");
                                waiting = Some((go, tokio::time::Instant::now() + every + share_every));
                            }
                            Err(StoreError::LeaseLost { .. } | StoreError::NotFound { .. }) => {
                                break Stop::LeaseLost
                            }
                            Err(e) => {
                                tracing::warn!(run_id = %run.id, error = %e, "could not share the account's rate budget; keeping the current share");
                                let _ = go.send(());
                            }
                        }
                        budget = Some(resolved);
                    }
                }
                () = released(&mut release) => break Stop::Release,
                _ = beat.tick() => {
                    let stats = snapshot(&live);
                    let sent = tokio::time::Instant::now();
                    let left = lease.saturating_sub(sent.duration_since(beat_at));
                    let heartbeat = self.store.heartbeat(
                        run.id,
                        &self.config.worker_id,
                        self.clock.now(),
                        Some(stats),
                    );
                    let Ok(answered) = tokio::time::timeout(left, heartbeat).await else {
                        tracing::warn!(run_id = %run.id, "no heartbeat got through for a whole lease: another worker may have taken the run over; stopping it");
                        break Stop::LeaseLost;
                    };
                    match answered {
                        Ok(h) if h.cancel_requested => break Stop::Cancel,
                        Ok(_) => beat_at = sent,
                        Err(StoreError::LeaseLost { .. } | StoreError::NotFound { .. }) => {
                            break Stop::LeaseLost
                        }
                        // The state database is away for a moment: keep syncing, within the
                        // lease; past it, another worker may have taken over: stop.
                        Err(e) => {
                            tracing::warn!(run_id = %run.id, error = %e, "heartbeat failed");
                            if beat_at.elapsed() >= lease {
                                tracing::warn!(run_id = %run.id, "no heartbeat got through for a whole lease: another worker may have taken the run over; stopping it");
                                break Stop::LeaseLost;
                            }
                        }
                    }
                }
                _ = share_tick.tick(), if budget.is_some() => {
                    let Some(current) = &budget else { continue };
                    let share = match self.share_budget(run, current).await {
                        Ok(share) => share,
                        Err(StoreError::LeaseLost { .. } | StoreError::NotFound { .. }) => {
                            break Stop::LeaseLost
                        }
                        Err(e) => {
                            tracing::debug!(run_id = %run.id, error = %e, "could not share the account's rate budget; keeping the current share");
                            None
                        }
                    };
                    let settled = share.is_some_and(|s| s.settled);
                    if waiting.as_ref().is_some_and(|(_, until)| settled || tokio::time::Instant::now() >= *until) {
                        if !settled {
                            tracing::info!(run_id = %run.id, "a run of the same account did not take its share in time (its worker may have died); starting anyway");
                        }
                        if let Some((go, _)) = waiting.take() {
                            let _ = go.send(());
                        }
                    }
                }
            }
        };
        // Shut the engine's runtime down and wait until every task of it has stopped, so no
        // write of this run lands after it is recorded (or after another worker took it).
        drop(engine.stop);
        let _ = done.await;
        match stop {
            Stop::Cancel => Supervised::Ended(Ended {
                status: RunStatus::Canceled,
                stats: snapshot(&live),
                errors: vec![RunError {
                    data_type: None,
                    message: CANCELED_ON_REQUEST.to_string(),
                }],
                pause: None,
            }),
            Stop::LeaseLost => Supervised::LeaseLost,
            Stop::Release => Supervised::Released,
        }
    }

    /// The run's configuration and project.
    async fn load(&self, run: &SyncRun) -> Result<(Configuration, Project), StoreError> {
        let configuration = self.store.configuration(run.configuration_id).await?;
        let project = self.store.project(configuration.project_id).await?;
        Ok((configuration, project))
    }

    /// Every schedule (of one configuration when given), paging through the store.
    async fn all_schedules(
        &self,
        configuration: Option<crate::model::ConfigurationId>,
    ) -> Result<Vec<Schedule>, StoreError> {
        let mut all = Vec::new();
        let mut page = PageRequest {
            offset: 0,
            limit: 500,
        };
        loop {
            let got = self.store.list_schedules(configuration, page).await?;
            let n = got.items.len() as u64;
            all.extend(got.items);
            page.offset += n;
            if n == 0 || page.offset >= got.total {
                return Ok(all);
            }
        }
    }
}

/// What the store says when a running run is canceled.
const CANCELED_ON_REQUEST: &str = "canceled on request: the data already copied stays in the database, each data type up to its last checkpoint; the next run resumes from there";

/// Why a supervised run was stopped before the engine finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Someone asked to cancel it.
    Cancel,
    /// Another worker holds it now, or it ended.
    LeaseLost,
    /// This node is shutting down: the run is handed back.
    Release,
}

/// How supervising a run ended.
enum Supervised {
    /// The run ended (or was canceled): record this.
    Ended(Ended),
    /// Another worker holds it now, or it ended: record nothing.
    LeaseLost,
    /// Stopped on shutdown: release its lease, record nothing.
    Released,
}

/// A run's Stripe account, resolved by its engine, which waits for `go` before its first
/// request of the sync (the supervisor sends it once the run's share of the account's budget
/// is applied and the account's other runs applied theirs; dropping it lets the engine go).
struct Resolved {
    budget: Budget,
    go: oneshot::Sender<()>,
}

/// A run's share of its Stripe account's rate budget.
struct Budget {
    /// The budget's key: `acct_…/test` or `acct_…/live` (Stripe limits each mode apart).
    account: String,
    /// The run's client (every clone shares its budget).
    client: StripeClient,
}

/// Resolves once `release` turns `true`; never when there is none (or its sender is gone).
async fn released(release: &mut Option<watch::Receiver<bool>>) {
    if let Some(r) = release {
        if r.wait_for(|stop| *stop).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// One run's engine, executing on a runtime of its own on its own thread.
struct EngineThread {
    /// Dropping it shuts the engine's runtime down, every task it spawned included.
    stop: oneshot::Sender<()>,
    /// How the run ended (`None` when stopped), sent once the runtime is shut down.
    done: oneshot::Receiver<Option<Ended>>,
    /// The run's Stripe account and client, once resolved (dropped unsent when the account
    /// could not be read: the engine then fails the run and says why).
    account: oneshot::Receiver<Resolved>,
}

impl EngineThread {
    /// Starts the engine for `run` on a new thread and runtime.
    fn start(
        run: &SyncRun,
        configuration: Configuration,
        project: Project,
        default_api_base: Option<Url>,
        progress: ProgressFn,
    ) -> EngineThread {
        let (stop, stopped) = oneshot::channel::<()>();
        let (finished, done) = oneshot::channel();
        let (resolved, account) = oneshot::channel();
        let mode = run.mode;
        // The engine's logs belong to the run's span, though they come from another thread.
        let span = tracing::Span::current();
        let spawned = std::thread::Builder::new()
            .name(format!("cls-run-{}", run.id))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("cls-run-engine")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = finished.send(Some(Ended::failed(format!(
                            "cannot start the run's threads ({e}): the machine is short of resources; sync again later"
                        ))));
                        return;
                    }
                };
                let ended = runtime.block_on(
                    async move {
                        tokio::select! {
                            ended = sync(mode, &configuration, &project, default_api_base, progress, resolved) => Some(ended),
                            // Asked to stop, or the runner that started it is gone.
                            _ = stopped => None,
                        }
                    }
                    .instrument(span),
                );
                // Drops every task the engine spawned; one in the middle of a destination
                // transaction rolls back, leaving the destination at its last checkpoint.
                runtime.shutdown_timeout(std::time::Duration::from_secs(10));
                let _ = finished.send(ended);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a thread for the run");
        }
        EngineThread {
            stop,
            done,
            account,
        }
    }
}

/// Runs the engine for a configuration and turns its result into an [`Ended`].
async fn sync(
    mode: SyncMode,
    configuration: &Configuration,
    project: &Project,
    default_api_base: Option<Url>,
    progress: ProgressFn,
    resolved: oneshot::Sender<Resolved>,
) -> Ended {
    let mut types = Vec::new();
    for name in &configuration.data_types {
        match cls_catalog::find(name) {
            Some(t) => types.push(t),
            None => {
                return Ended::failed(format!(
                    "data type `{name}` is not in this version's catalog: recreate the configuration with known data types"
                ))
            }
        }
    }
    let client =
        match configuration.stripe_client(default_api_base.as_ref(), ClientConfig::default()) {
            Ok(c) => c,
            Err(e) => return Ended::engine_error(configuration, project, &EngineError::Stripe(e)),
        };
    // The account's budget key, for sharing its rate budget; the engine reads the account
    // again itself (and reports a failure to read it).
    if let Ok(info) = cls_engine::account_info(&client, &RequestCounters::default()).await {
        if info.id != "acct_unknown" {
            let (go, ready) = oneshot::channel();
            let budget = Budget {
                account: format!("{}/{}", info.id, client.key().mode()),
                client: client.clone(),
            };
            if resolved.send(Resolved { budget, go }).is_ok() {
                // Sent or dropped, either way the supervisor is done with the budget.
                let _ = ready.await;
            }
        }
    }
    let dest = match cls_destination::connect(&project.database_url, &project.schema).await {
        Ok(d) => d,
        Err(e) => return Ended::engine_error(configuration, project, &EngineError::Destination(e)),
    };
    let options = SyncOptions {
        types,
        now: None,
        sequential: false,
    };
    let mode = match mode {
        SyncMode::Full => RequestedMode::Full,
        SyncMode::Incremental => RequestedMode::Incremental,
    };
    if configuration.include_connected_accounts {
        // Stripe Connect: the platform, then each connected account; the run records the
        // accounts folded into one report (counts summed per data type, a data type failed
        // in any account failed with the account named), see `cls_engine::connect`.
        return match run_sync_with_connected(&client, Arc::from(dest), &options, mode, progress)
            .await
        {
            Ok(report) => Ended::from_report(configuration, &report.aggregate()),
            Err(e) => Ended::engine_error(configuration, project, &e),
        };
    }
    match run_sync(&client, Arc::from(dest), &options, mode, progress).await {
        Ok(report) => Ended::from_report(configuration, &report),
        Err(e) => Ended::engine_error(configuration, project, &e),
    }
}

/// Keeps the live counters up to date from the engine's progress, and counts each
/// finished data type in the metrics.
fn record_progress(live: &Mutex<BTreeMap<String, TypeStats>>, progress: Progress) {
    let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
    match progress {
        Progress::Started { data_type } => {
            live.entry(data_type.to_string()).or_default();
        }
        Progress::Advanced {
            data_type, objects, ..
        } => {
            live.entry(data_type.to_string()).or_default().objects = objects;
        }
        Progress::Finished(report) => {
            let t = report.data_type;
            metrics::counter!("cls_sync_objects_total", "type" => t).increment(report.objects);
            metrics::counter!("cls_sync_requests_total", "type" => t).increment(report.requests);
            metrics::counter!("cls_sync_retries_total", "type" => t).increment(report.retries);
            metrics::counter!("cls_sync_rate_limited_total", "type" => t)
                .increment(report.rate_limited);
            live.insert(t.to_string(), type_stats(&report));
        }
    }
}

/// A copy of the live counters.
fn snapshot(live: &Mutex<BTreeMap<String, TypeStats>>) -> BTreeMap<String, TypeStats> {
    live.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The stored counters of a finished data type.
fn type_stats(t: &TypeReport) -> TypeStats {
    TypeStats {
        objects: t.objects,
        inserted: t.inserted,
        updated: t.updated,
        deleted: t.deleted,
        requests: t.requests,
        retries: t.retries,
        rate_limited: t.rate_limited,
    }
}

/// How a run ended, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
struct Ended {
    /// Final status.
    status: RunStatus,
    /// Counters per data type.
    stats: BTreeMap<String, TypeStats>,
    /// Errors in words.
    errors: Vec<RunError>,
    /// Why the configuration's schedules must pause, if they must.
    pause: Option<String>,
}

impl Ended {
    fn failed(message: String) -> Ended {
        Ended {
            status: RunStatus::Failed,
            stats: BTreeMap::new(),
            errors: vec![RunError {
                data_type: None,
                message,
            }],
            pause: None,
        }
    }

    fn canceled(message: String) -> Ended {
        Ended {
            status: RunStatus::Canceled,
            ..Ended::failed(message)
        }
    }

    /// A run the engine refused or stopped; pauses on a rejected key, a missing permission
    /// or an unreachable database.
    fn engine_error(configuration: &Configuration, project: &Project, e: &EngineError) -> Ended {
        let pause = match e {
            EngineError::Stripe(StripeError::InvalidKey { .. }) => Some(format!(
                "Stripe rejected the key {} (revoked, expired or rolled): paste a current key, then Test Connection to resume",
                configuration.key_masked
            )),
            EngineError::Stripe(StripeError::PermissionDenied { permission, .. }) => {
                Some(lost_permissions(configuration, permission.iter().cloned(), ""))
            }
            EngineError::Destination(DestinationError::Unreachable { .. }) => Some(format!(
                "the database {} is unreachable: check that it is running and reachable, then Test Connection to resume",
                project.database_url.masked()
            )),
            // Refusals that stay until someone changes the database or its URL: every later
            // run would fail the same way.
            EngineError::Destination(
                d @ (DestinationError::AuthFailed { .. }
                | DestinationError::DatabaseMissing { .. }
                | DestinationError::PermissionDenied { .. }
                | DestinationError::TlsRefused { .. }
                | DestinationError::TlsRequired { .. }
                | DestinationError::TlsFailed { .. }
                | DestinationError::SqliteOpen { .. }),
            ) => Some(format!(
                "the database {} refused the run ({d}); then Test Connection to resume",
                project.database_url.masked()
            )),
            _ => None,
        };
        Ended {
            pause,
            ..Ended::failed(e.to_string())
        }
    }

    /// A run the engine finished: its status, counters and per-type errors. Pauses when the
    /// key lost the permission for every chosen data type (nothing can sync until fixed).
    fn from_report(configuration: &Configuration, report: &SyncReport) -> Ended {
        let mut stats = BTreeMap::new();
        let mut errors = Vec::new();
        let mut missing = Vec::new();
        let mut all_denied = !report.types.is_empty();
        for t in &report.types {
            stats.insert(t.data_type.to_string(), type_stats(t));
            match &t.status {
                TypeStatus::Succeeded => all_denied = false,
                TypeStatus::Failed {
                    error,
                    missing_permission,
                } => {
                    errors.push(RunError {
                        data_type: Some(t.data_type.to_string()),
                        message: error.clone(),
                    });
                    match missing_permission {
                        Some(p) => missing.push(p.clone()),
                        None => all_denied = false,
                    }
                }
            }
        }
        let status = match report.status {
            cls_engine::RunStatus::Succeeded => RunStatus::Succeeded,
            cls_engine::RunStatus::Partial => RunStatus::Partial,
            cls_engine::RunStatus::Failed => RunStatus::Failed,
        };
        Ended {
            status,
            stats,
            errors,
            pause: all_denied.then(|| {
                lost_permissions(
                    configuration,
                    missing.into_iter(),
                    " for every chosen data type",
                )
            }),
        }
    }
}

/// The pause reason for a key that lost its permissions.
fn lost_permissions(
    configuration: &Configuration,
    missing: impl Iterator<Item = String>,
    scope: &str,
) -> String {
    let mut names: Vec<String> = missing.collect();
    names.sort();
    names.dedup();
    let which = if names.is_empty() {
        String::from("the permissions it needs")
    } else {
        names.join(", ")
    };
    format!(
        "the Stripe key {} lacks {which}{scope}: grant them to the restricted key (or paste a new key), then Test Connection to resume",
        configuration.key_masked
    )
}
