//! Executing a full sync: walk every planned stream concurrently under the client's shared
//! rate budget (each stream itself by several windows, see [`crate::backfill`]), turn pages into
//! rows, and hand them to one writer through a bounded channel so fetching and writing overlap
//! while memory stays bounded (a full channel pauses the walks).
//!
//! A run is resumable: checkpoints saved with the rows let a rerun after a crash continue each
//! stream's unfinished windows. A stream that completes reconciles deletions (rows the walk did
//! not see are objects Stripe no longer has) and forgets its checkpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cls_catalog::DataType;
use cls_destination::{
    Checkpoint, CheckpointOp, Destination, DestinationError, PreparedRow, WriteSet, WriteStats,
};
use cls_source::Window;
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::backfill::{backfill_stream, Pacer};
use crate::cursor::{latest_events_cursor, load_cursor, store_cursor, EventsCursor};
use crate::plan::{backfill_start, plan_streams, BackfillStart, Stream};
use crate::report::{Progress, RunStatus, SyncReport, TypeReport, TypeStatus};

/// Pages waiting to be written before the walks pause.
const WRITE_QUEUE: usize = 16;

/// What a run should do.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The chosen data types.
    pub types: Vec<&'static DataType>,
    /// Unix seconds treated as "now": objects created from this second on are left to the next
    /// run. `None` uses the clock.
    pub now: Option<i64>,
    /// Walk the way the peers do — one cursor per data type, one data type at a time, one
    /// child list at a time — instead of in parallel windows. Only the benchmark's baseline
    /// wants this.
    pub sequential: bool,
}

/// Errors that stop a whole run (as opposed to one data type failing).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Stripe refused the run before anything was read (invalid key, unreachable API).
    #[error("{0}")]
    Stripe(#[from] StripeError),
    /// The destination database failed; the run stops so nothing is reported as copied that
    /// was not written.
    #[error("{0}")]
    Destination(#[from] DestinationError),
    /// The database already holds the other mode's data of this account: test and live
    /// objects of one account would share its checkpoints, events cursor and reconciliation.
    #[error("this database already holds {stored}-mode data of Stripe account {account_id}, and this key is a {key}-mode key: sync each mode into its own schema (e.g. --schema stripe_{key}) or database")]
    ModeMismatch {
        /// The Stripe account.
        account_id: String,
        /// The mode the database holds.
        stored: String,
        /// The mode of the key used now.
        key: String,
    },
}

/// State key of the mode (test or live) whose data the database holds for an account.
const MODE_KEY: &str = "mode";

/// What every run does first: read the account (so an invalid key fails before the
/// destination is touched), create or evolve the tables, and check the key's mode against the
/// data already there.
pub(crate) async fn open_run(
    client: &StripeClient,
    dest: &dyn Destination,
    types: &[&'static DataType],
    counters: &RequestCounters,
) -> Result<AccountInfo, EngineError> {
    let account = account_info(client, counters).await?;
    dest.prepare(types).await?;
    guard_mode(client, dest, &account.id).await?;
    Ok(account)
}

/// Refuses a key of the other mode than the data the database holds for this account, and
/// records the mode on first use. Stripe ids differ between modes, but the account id does
/// not: mixing them would share one events cursor and let one mode's reconciliation mark the
/// other's rows deleted.
pub async fn guard_mode(
    client: &StripeClient,
    dest: &dyn Destination,
    account_id: &str,
) -> Result<(), EngineError> {
    let key = client.key().mode().to_string();
    match dest.get_state(account_id, MODE_KEY).await? {
        Some(stored) if !stored.is_empty() && stored != key => Err(EngineError::ModeMismatch {
            account_id: account_id.to_string(),
            stored,
            key,
        }),
        Some(stored) if stored == key => Ok(()),
        _ => Ok(dest.set_state(account_id, MODE_KEY, &key).await?),
    }
}

/// Callback receiving progress events.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// What a run needs to know about the Stripe account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// The account id (`acct_…`).
    pub id: String,
    /// When the account was created (unix seconds), when Stripe tells this key.
    pub created: Option<i64>,
}

/// Finds the Stripe account of the key. A restricted key without account access still names
/// the account in Stripe's 403 message, which is enough to key the data by account.
pub async fn account_info(
    client: &StripeClient,
    counters: &RequestCounters,
) -> Result<AccountInfo, StripeError> {
    match client.get("/v1/account", &[], counters).await {
        Ok(v) => Ok(AccountInfo {
            id: v
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("acct_unknown")
                .to_string(),
            created: v.get("created").and_then(Value::as_i64),
        }),
        Err(StripeError::PermissionDenied { message, .. }) => Ok(AccountInfo {
            id: account_in_message(&message).unwrap_or_else(|| "acct_unknown".to_string()),
            created: None,
        }),
        Err(e) => Err(e),
    }
}

/// The Stripe account id of the key (see [`account_info`]).
pub async fn resolve_account(
    client: &StripeClient,
    counters: &RequestCounters,
) -> Result<String, StripeError> {
    Ok(account_info(client, counters).await?.id)
}

/// The `acct_…` id quoted in a Stripe permission message, if any.
fn account_in_message(message: &str) -> Option<String> {
    let start = message.find("acct_")?;
    let id: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (id.len() > "acct_".len()).then_some(id)
}

/// One unit of work for the writer.
pub(crate) enum WriteJob {
    /// Rows of one data type (prepared by the walk, see [`PreparedRow`]), with the checkpoint
    /// they complete.
    Rows {
        data_type: &'static DataType,
        rows: Vec<PreparedRow>,
        checkpoint: Option<Checkpoint>,
    },
    /// A window's checkpoint replaced by its parts (a split).
    Split {
        key: String,
        retire: String,
        replacements: Vec<Checkpoint>,
    },
    /// Answered once every job sent before it is written (or the writer failed).
    Flush(oneshot::Sender<()>),
}

/// State shared by the walks of one run.
pub(crate) struct RunCtx {
    pub(crate) client: StripeClient,
    /// Version of every row read in this run: the fetch time in milliseconds.
    pub(crate) version: i64,
    pub(crate) counters: HashMap<&'static str, Arc<RequestCounters>>,
    objects: Mutex<HashMap<&'static str, u64>>,
    /// Windows walked per data type.
    windows: Mutex<HashMap<&'static str, u64>>,
    pub(crate) progress: ProgressFn,
    pub(crate) pacer: Pacer,
}

impl RunCtx {
    pub(crate) fn counters(&self, t: &DataType) -> Arc<RequestCounters> {
        self.counters.get(t.name).cloned().unwrap_or_default()
    }

    /// Adds `n` objects read of `t`; returns the total so far.
    pub(crate) fn count(&self, t: &'static DataType, n: u64) -> u64 {
        let mut m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let c = m.entry(t.name).or_default();
        *c += n;
        *c
    }

    /// Counts one more window walked for each of `types`.
    pub(crate) fn count_window(&self, types: &[&'static DataType]) {
        let mut m = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        for t in types {
            *m.entry(t.name).or_default() += 1;
        }
    }
}

/// The errors of the data types that failed, by data type.
pub(crate) type StreamErrors = HashMap<&'static str, StripeError>;

/// A full sync that has started and not yet completed: what a rerun after a crash needs to
/// continue it rather than start over (the windows themselves are in the checkpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RunState {
    /// Rows written by this run (by any of its attempts) have at least this version.
    version: i64,
    /// The `created` range walked ends here (exclusive).
    end: i64,
    /// The events cursor taken when the run began, stored when it completes.
    cursor: Option<EventsCursor>,
    /// Checkpoint keys of the streams the run walks: saved checkpoints of any other stream
    /// were left by another run and are not this run's to resume.
    #[serde(default)]
    streams: Vec<String>,
}

/// State key of the full sync in progress.
const RUN_STATE_KEY: &str = "full_sync_in_progress";

/// How one stream ended.
struct StreamOutcome {
    errors: StreamErrors,
    ended: Instant,
    deleted: HashMap<&'static str, u64>,
    /// Whether an interrupted attempt of this run had finished it already.
    already_done: bool,
}

/// Plans (fresh or resumed), walks and reconciles one stream.
async fn sync_stream(
    ctx: Arc<RunCtx>,
    dest: Arc<dyn Destination>,
    account: AccountInfo,
    stream: Stream,
    run: Arc<RunState>,
    resuming: bool,
    tx: mpsc::Sender<WriteJob>,
) -> Result<StreamOutcome, DestinationError> {
    let key = stream.checkpoint_key();
    let whole = vec![(Window::everything_before(run.end), None)];
    let ours = resuming && run.streams.contains(&key);
    let start = if ours {
        match backfill_start(&dest.checkpoints(&account.id, &key).await?, run.end) {
            BackfillStart::Done => {
                // Finished before the interruption; reconciling again is harmless and covers
                // an interruption between the last page and the reconciliation.
                let deleted = reconcile(dest.as_ref(), &account.id, &stream, &run).await?;
                return Ok(StreamOutcome {
                    errors: StreamErrors::new(),
                    ended: Instant::now(),
                    deleted,
                    already_done: true,
                });
            }
            BackfillStart::Resume(windows) => {
                tracing::info!(stream = %key, windows = windows.len(), "resuming an interrupted backfill");
                windows
            }
            BackfillStart::Fresh => {
                dest.clear_checkpoints(&account.id, &key).await?;
                whole
            }
        }
    } else {
        dest.clear_checkpoints(&account.id, &key).await?;
        whole
    };
    for t in stream.stored_types() {
        (ctx.progress)(Progress::Started { data_type: t.name });
    }
    // Where objects can start: the account's creation, and for events 30 days back (Stripe
    // keeps no older ones). Splits cut there first and estimates count from there.
    let hint = if stream.walk.name == "events" {
        let kept_from = run.end - crate::incremental::EVENT_RETENTION_SECS;
        Some(account.created.map_or(kept_from, |c| c.max(kept_from)))
    } else {
        account.created
    };
    let errors = backfill_stream(ctx.clone(), stream.clone(), start, tx.clone(), hint).await;
    // Wait until this stream's rows are written before reconciling or reporting. Without an
    // answer the writer has failed: nothing may be reconciled against rows it never wrote.
    let (done_tx, done_rx) = oneshot::channel();
    let flushed = tx.send(WriteJob::Flush(done_tx)).await.is_ok() && done_rx.await.is_ok();
    let deleted = if errors.is_empty() && flushed {
        reconcile(dest.as_ref(), &account.id, &stream, &run).await?
    } else {
        HashMap::new()
    };
    Ok(StreamOutcome {
        errors,
        ended: Instant::now(),
        deleted,
        already_done: false,
    })
}

/// A write set gathers at most this many rows: enough to spread a transaction's fixed cost
/// (BEGIN, staging tables, COMMIT's WAL flush) over many pages, small enough to keep memory
/// and the time one set holds its row locks modest.
const SET_MAX_ROWS: usize = 5_000;

/// A write set gathers at most this many jobs (pages, empty last pages, splits): each
/// checkpoint operation is one statement of the set's transaction.
const SET_MAX_JOBS: usize = 64;

/// Jobs received together, to be written as one [`WriteSet`].
#[derive(Default)]
struct PendingSet {
    /// Rows per data type, data types in order of first arrival, rows in arrival order.
    tables: Vec<(&'static DataType, Vec<PreparedRow>)>,
    /// Checkpoint saves and splits in arrival order.
    checkpoints: Vec<CheckpointOp>,
    /// Flushes to answer once the set is committed.
    flushes: Vec<oneshot::Sender<()>>,
    jobs: usize,
    rows: usize,
}

impl PendingSet {
    /// Adds one job. Rows go to their data type's list and checkpoints after every row: the
    /// whole set commits at once, so a checkpoint still commits with the rows it covers, and
    /// the checkpoint operations keep their order, so the final state is the one applying
    /// the jobs one by one would give.
    fn add(&mut self, job: WriteJob) {
        self.jobs += 1;
        match job {
            WriteJob::Flush(done) => self.flushes.push(done),
            WriteJob::Split {
                key,
                retire,
                replacements,
            } => self.checkpoints.push(CheckpointOp::Replace {
                data_type: key,
                retired: retire,
                replacements,
            }),
            WriteJob::Rows {
                data_type,
                rows,
                checkpoint,
            } => {
                self.rows += rows.len();
                if !rows.is_empty() {
                    match self
                        .tables
                        .iter_mut()
                        .find(|(t, _)| t.name == data_type.name)
                    {
                        Some((_, existing)) => existing.extend(rows),
                        None => self.tables.push((data_type, rows)),
                    }
                }
                if let Some(cp) = checkpoint {
                    self.checkpoints.push(CheckpointOp::Save(cp));
                }
            }
        }
    }

    fn full(&self) -> bool {
        self.jobs >= SET_MAX_JOBS || self.rows >= SET_MAX_ROWS
    }
}

/// After a complete walk of a stream, marks deleted the live rows the walk did not see: every
/// object of the range was written with a version of at least `run.version`, so live rows
/// below it are objects Stripe no longer lists. Only data types whose objects Stripe deletes
/// are reconciled (events, for one, expire instead). The mark's version sits just below the
/// run's, so should a row be marked wrongly, any later walk that sees the object restores it.
async fn reconcile(
    dest: &dyn Destination,
    account_id: &str,
    stream: &Stream,
    run: &RunState,
) -> Result<HashMap<&'static str, u64>, DestinationError> {
    let mut deleted = HashMap::new();
    for t in stream.stored_types().into_iter().filter(|t| t.deletable) {
        let n = dest
            .mark_unseen_deleted(t, account_id, run.version, run.version - 1)
            .await?;
        deleted.insert(t.name, n);
    }
    Ok(deleted)
}

/// Attempts of one write set when the database fails in a way that may pass by itself (a
/// restart, a dropped connection, too many connections: [`DestinationError::is_retriable`]).
/// A set is one transaction, so a failed attempt left nothing behind and writing it again is
/// safe (an insert-only set whose commit did land falls back to upserting, see
/// [`WriteSet::insert_only`]).
const WRITE_ATTEMPTS: u32 = 5;

/// Wait before the second attempt of a write set, doubled before each next one: 7.5 s in all,
/// about what a PostgreSQL restart or a failover takes.
const WRITE_RETRY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `op` until it succeeds, fails in a way `retriable` refuses, or has been tried
/// `attempts` times, waiting `first_wait` (doubled each time) between attempts.
async fn retry_while<T, E, F, Fut>(
    attempts: u32,
    first_wait: std::time::Duration,
    retriable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut wait = first_wait;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if retriable(&e) && attempt < attempts => {
                tracing::warn!(error = %e, attempt, "writing to the database failed; trying again");
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Writes the jobs in arrival order, many per transaction: after one job arrives, whatever
/// else is already queued (up to [`SET_MAX_ROWS`] rows or [`SET_MAX_JOBS`] jobs) joins it in
/// one [`WriteSet`], without waiting for more. Order matters and is kept: a page's checkpoint
/// is never committed before the rows of earlier pages (they are in the same or an earlier
/// transaction), nor a split before the page it follows (checkpoint operations keep their
/// order). A flush is answered once the set holding every job sent before it is committed.
///
/// Rows of one id arriving twice in one set are de-duplicated before the upsert, so such a
/// repeat counts as skipped where writing the jobs one by one would have counted an update.
///
/// `insert_only` says every row is new to its table (a first backfill into empty tables), so
/// the destination may copy rows straight in (see [`WriteSet::insert_only`]).
async fn write_loop(
    dest: Arc<dyn Destination>,
    account_id: String,
    mut rx: mpsc::Receiver<WriteJob>,
    stats: Arc<Mutex<HashMap<&'static str, WriteStats>>>,
    insert_only: bool,
) -> Result<(), DestinationError> {
    while let Some(job) = rx.recv().await {
        let mut set = PendingSet::default();
        set.add(job);
        while !set.full() {
            match rx.try_recv() {
                Ok(job) => set.add(job),
                // Empty (nothing queued right now) or closed (the next recv ends the loop).
                Err(_) => break,
            }
        }
        let (jobs, rows) = (set.jobs, set.rows);
        let began = Instant::now();
        let PendingSet {
            tables,
            checkpoints,
            flushes,
            ..
        } = set;
        let written = WriteSet {
            account_id: &account_id,
            tables,
            checkpoints,
            insert_only,
        };
        if !written.is_empty() {
            let got = retry_while(
                WRITE_ATTEMPTS,
                WRITE_RETRY_WAIT,
                DestinationError::is_retriable,
                || dest.write_set(&written),
            )
            .await?;
            let mut m = stats.lock().unwrap_or_else(|p| p.into_inner());
            for (name, s) in got {
                *m.entry(name).or_default() += s;
            }
        }
        tracing::debug!(
            jobs,
            rows,
            ms = began.elapsed().as_millis() as u64,
            "wrote a set"
        );
        for done in flushes {
            let _ = done.send(());
        }
    }
    Ok(())
}

/// Runs a full sync of the chosen data types into `dest`, resuming an interrupted one.
///
/// The key is checked (by reading the account) before the destination is touched, so an
/// invalid key writes nothing. A data type that fails (a missing permission, retries
/// exhausted) is reported failed while the others go on; a destination failure stops the run.
pub async fn run_full_sync(
    client: &StripeClient,
    dest: Arc<dyn Destination>,
    options: &SyncOptions,
    progress: ProgressFn,
) -> Result<SyncReport, EngineError> {
    let started = Instant::now();
    let account_counters = RequestCounters::default();
    let now_ms = chrono::Utc::now().timestamp_millis();
    // The events cursor is read alongside the account (one round trip instead of two before
    // the first page); a resumed run keeps its own and drops this one.
    let names = options.types.iter().map(|t| t.name.to_string()).collect();
    let (account, latest_cursor) = tokio::join!(
        open_run(client, dest.as_ref(), &options.types, &account_counters),
        latest_events_cursor(client, &account_counters, now_ms / 1000, names),
    );
    let account = account?;

    // A run that was interrupted (killed, crashed) is continued: same range, same version
    // floor, same events cursor — changes since its first attempt must replay.
    let in_progress = dest
        .get_state(&account.id, RUN_STATE_KEY)
        .await?
        .and_then(|raw| serde_json::from_str::<RunState>(&raw).ok());
    let resuming = in_progress.is_some();
    let run = match in_progress {
        Some(run) => run,
        None => {
            // Taken before any list is walked, so changes made during the backfill are
            // replayed by the next incremental run. Without it (no permission to read events)
            // runs stay full.
            let cursor = match latest_cursor {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the events feed; the next run will be a full sync again");
                    None
                }
            };
            let end = range_end(
                options.now,
                chrono::Utc::now().timestamp(),
                cursor.as_ref().map(|c| c.created),
            );
            let stored = load_cursor(dest.as_ref(), &account.id).await?;
            let (version, cursor) = backfill_position(cursor, stored.as_ref(), now_ms);
            let run = RunState {
                version,
                end,
                cursor,
                streams: plan_streams(&options.types)
                    .iter()
                    .map(Stream::checkpoint_key)
                    .collect(),
            };
            dest.set_state(
                &account.id,
                RUN_STATE_KEY,
                &serde_json::to_string(&run).unwrap_or_default(),
            )
            .await?;
            run
        }
    };
    let run = Arc::new(run);

    let counters: HashMap<&'static str, Arc<RequestCounters>> = options
        .types
        .iter()
        .map(|t| (t.name, Arc::new(RequestCounters::default())))
        .collect();
    let ctx = Arc::new(RunCtx {
        client: client.clone(),
        // Every attempt of a run writes with the version its first attempt chose, which
        // depends on the run's events cursor only (see `crate::events::backfill_version`).
        version: run.version,
        counters,
        objects: Mutex::new(HashMap::new()),
        windows: Mutex::new(HashMap::new()),
        progress: progress.clone(),
        pacer: Pacer::new(client.rates(), options.sequential),
    });

    let stats = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    // A first backfill into empty tables can copy rows straight in: no window is walked
    // twice, so every row is new. A resumed run re-reads the pages that were in flight, and a
    // table with rows (another account, an earlier sync) may hold any id: both upsert.
    let mut insert_only = !resuming;
    for t in &options.types {
        if !insert_only {
            break;
        }
        insert_only = !dest.has_rows(t).await?;
    }
    let writer = tokio::spawn(write_loop(
        dest.clone(),
        account.id.clone(),
        rx,
        stats.clone(),
        insert_only,
    ));

    let mut starts: HashMap<&'static str, Instant> = HashMap::new();
    let mut tasks = Vec::new();
    for stream in plan_streams(&options.types) {
        let types = stream.stored_types();
        for t in &types {
            starts.insert(t.name, Instant::now());
        }
        let task = sync_stream(
            ctx.clone(),
            dest.clone(),
            account.clone(),
            stream,
            run.clone(),
            resuming,
            tx.clone(),
        );
        let handle = if options.sequential {
            // One data type at a time: this one ends before the next starts.
            let result = task.await;
            tokio::spawn(async move { result })
        } else {
            tokio::spawn(task)
        };
        tasks.push((types, handle));
    }
    drop(tx);

    let mut errors: StreamErrors = HashMap::new();
    let mut ends: HashMap<&'static str, Instant> = HashMap::new();
    let mut deleted: HashMap<&'static str, u64> = HashMap::new();
    let mut failure: Option<EngineError> = None;
    let mut already_done = Vec::new();
    for (types, handle) in tasks {
        match handle.await {
            Ok(Ok(outcome)) => {
                if outcome.already_done {
                    already_done.extend(types.iter().map(|t| t.name));
                }
                errors.extend(outcome.errors);
                deleted.extend(outcome.deleted);
                for t in &types {
                    ends.insert(t.name, outcome.ended);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(EngineError::Destination(e));
            }
            Err(join) => {
                for t in &types {
                    errors.insert(
                        t.name,
                        StripeError::Network {
                            message: format!("the sync task stopped unexpectedly: {join}"),
                        },
                    );
                }
            }
        }
        for t in types {
            let span = (starts.get(t.name), ends.get(t.name));
            let report = type_report(&ctx, t, &stats, &errors, &deleted, span);
            (progress)(Progress::Finished(report));
        }
    }
    match writer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(EngineError::Destination(e)),
        Err(join) => {
            return Err(EngineError::Stripe(StripeError::Network {
                message: format!("the database writer stopped unexpectedly: {join}"),
            }))
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let types = options
        .types
        .iter()
        .map(|t| {
            let span = (starts.get(t.name), ends.get(t.name));
            type_report(&ctx, t, &stats, &errors, &deleted, span)
        })
        .collect();
    let mut report = SyncReport::new(account.id, types, started.elapsed().as_secs_f64());
    if resuming {
        let mut note = format!(
            "continued a full sync interrupted before it finished (started {})",
            cls_catalog::rfc3339(run.end).unwrap_or_default()
        );
        if !already_done.is_empty() {
            note.push_str(&format!(
                "; already copied by then: {}",
                already_done.join(", ")
            ));
        }
        report.notes.push(note);
    }
    // The run is over (complete or not): the next one starts afresh. A partial run's cursor is
    // not stored, so the next run is full again for the types that failed.
    dest.set_state(&report.account_id, RUN_STATE_KEY, "")
        .await?;
    if let (RunStatus::Succeeded, Some(cursor)) = (report.status, run.cursor.clone()) {
        let mut cursor = cursor;
        cursor.types = options.types.iter().map(|t| t.name.to_string()).collect();
        store_cursor(dest.as_ref(), &report.account_id, &cursor).await?;
    }
    Ok(report)
}

/// The version a fresh full sync's rows carry, and the cursor it stores when it completes.
///
/// On Stripe's clock (the cursor's second `S`), so the events after the cursor outrank what
/// this backfill reads: see `crate::events` for why. Usually that is `S * 1_000_000 - 1`. But
/// when an earlier run already applied events of that very second (the stored cursor is in
/// second `S`, at rank `r`), its rows carry versions up to `S * 1_000_000 + r`: a backfill
/// below them could neither update those rows nor mark deleted the objects deleted since, and
/// would still say it succeeded. The backfill then takes rank `r + 1` of second `S`, and so does
/// its cursor, so the events the next run replays after it (ranks from `r + 2`) still win.
fn backfill_position(
    cursor: Option<EventsCursor>,
    stored: Option<&EventsCursor>,
    now_ms: i64,
) -> (i64, Option<EventsCursor>) {
    match cursor {
        Some(mut c) => match stored.filter(|s| s.created == c.created) {
            Some(s) => {
                c.rank = s.rank.saturating_add(1).min(crate::events::MAX_RANK);
                (crate::events::event_version(c.created, c.rank), Some(c))
            }
            None => (
                crate::events::backfill_version(Some(c.created), now_ms),
                Some(c),
            ),
        },
        None => (crate::events::backfill_version(None, now_ms), None),
    }
}

/// Where a fresh full sync's `created` range ends (exclusive): after the second the events
/// cursor was read in, on either clock. Every object created before the cursor's event is in
/// the range; later ones are also replayed from the events, which is harmless. A `now` (the
/// caller's clock) behind Stripe's never ends the range before the cursor: the objects in
/// between would be neither walked now nor replayed later (their events precede the cursor),
/// and the reconciliation would mark rows of them deleted — a "succeeded" run with data
/// missing.
fn range_end(now: Option<i64>, read_at: i64, cursor_created: Option<i64>) -> i64 {
    let clock = now.unwrap_or(read_at + 1);
    cursor_created.map_or(clock, |c| clock.max(c + 1))
}

fn type_report(
    ctx: &RunCtx,
    t: &'static DataType,
    stats: &Mutex<HashMap<&'static str, WriteStats>>,
    errors: &StreamErrors,
    deleted: &HashMap<&'static str, u64>,
    (started, ended): (Option<&Instant>, Option<&Instant>),
) -> TypeReport {
    let written = stats
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(t.name)
        .copied()
        .unwrap_or_default();
    let objects = ctx
        .objects
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(t.name)
        .copied()
        .unwrap_or(0);
    let c = ctx.counters(t).snapshot();
    let status = match errors.get(t.name) {
        None => TypeStatus::Succeeded,
        Some(e) => TypeStatus::Failed {
            error: e.to_string(),
            missing_permission: match e {
                StripeError::PermissionDenied { permission, .. } => permission.clone(),
                _ => None,
            },
        },
    };
    TypeReport {
        data_type: t.name,
        status,
        objects,
        inserted: written.inserted,
        updated: written.updated,
        deleted: deleted.get(t.name).copied().unwrap_or(0),
        requests: c.requests,
        retries: c.retries,
        rate_limited: c.rate_limited,
        seconds: match (started, ended) {
            (Some(s), Some(e)) => e.duration_since(*s).as_secs_f64(),
            _ => 0.0,
        },
        windows: ctx
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(t.name)
            .copied()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_is_read_from_a_permission_message() {
        let m = "The provided key 'rk_test_***abcd' does not have the required permissions for this endpoint on account 'acct_1Nuz9'. Having the 'rak_account_read' permission would allow this request to continue.";
        assert_eq!(account_in_message(m).as_deref(), Some("acct_1Nuz9"));
        assert_eq!(account_in_message("no account here"), None);
        assert_eq!(account_in_message("account 'acct_'"), None);
    }

    #[test]
    fn the_range_reaches_the_events_cursor_whatever_the_clock() {
        // The real clock: after the later of the read and the cursor.
        assert_eq!(range_end(None, 1_000, Some(900)), 1_001);
        assert_eq!(range_end(None, 1_000, Some(1_200)), 1_201);
        assert_eq!(range_end(None, 1_000, None), 1_001);
        // A caller's clock ahead of Stripe's is kept as given.
        assert_eq!(range_end(Some(5_000), 1_000, Some(1_200)), 5_000);
        // Behind Stripe's (jumped back): the range still reaches the cursor.
        assert_eq!(range_end(Some(700), 1_000, Some(1_200)), 1_201);
        assert_eq!(range_end(Some(700), 1_000, None), 700);
    }

    #[test]
    fn a_backfill_outranks_the_events_already_applied_in_its_cursor_second() {
        let at = |created: i64, rank: u32| EventsCursor {
            event_id: Some("evt_1".into()),
            created,
            types: vec![],
            rank,
        };
        // Usually just below the cursor's second.
        let (v, c) = backfill_position(Some(at(100, 0)), Some(&at(90, 7)), 5);
        assert_eq!(v, 100 * 1_000_000 - 1);
        assert_eq!(c.map(|c| c.rank), Some(0));
        let (v, _) = backfill_position(Some(at(100, 0)), None, 5);
        assert_eq!(v, 100 * 1_000_000 - 1);
        // An earlier run applied second 100 up to rank 7: the backfill's rows outrank them,
        // and the events after its cursor outrank the backfill.
        let (v, c) = backfill_position(Some(at(100, 0)), Some(&at(100, 7)), 5);
        assert_eq!(v, crate::events::event_version(100, 8));
        assert!(v > crate::events::event_version(100, 7));
        let c = c.expect("a cursor");
        let next = crate::events::Sequencer::after(c.created, c.rank).next(100);
        assert!(crate::events::event_version(100, next) > v);
        // No events permission: the local clock.
        assert_eq!(backfill_position(None, Some(&at(100, 7)), 5).0, 5_000);
    }

    #[tokio::test]
    async fn a_write_is_retried_while_the_database_is_restarting_and_no_longer() {
        use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
        // "busy" stands for a restarting database, "full" for a full disk.
        let retriable = |e: &&str| *e == "busy";
        let wait = std::time::Duration::from_millis(1);
        let calls = AtomicU32::new(0);
        let got = retry_while(5, wait, retriable, || {
            let n = calls.fetch_add(1, Relaxed);
            async move {
                if n < 2 {
                    Err("busy")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Ok(2), "two failures, then the write lands");

        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry_while(3, wait, retriable, || {
            calls.fetch_add(1, Relaxed);
            async { Err("busy") }
        })
        .await;
        assert_eq!(got, Err("busy"));
        assert_eq!(
            calls.into_inner(),
            3,
            "bounded: gives up after the attempts"
        );

        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry_while(5, wait, retriable, || {
            calls.fetch_add(1, Relaxed);
            async { Err("full") }
        })
        .await;
        assert_eq!(got, Err("full"));
        assert_eq!(
            calls.into_inner(),
            1,
            "a full disk needs a person: no retry"
        );
    }

    #[test]
    fn run_state_round_trips() {
        let s = RunState {
            version: 1_700_000_000_123,
            end: 1_700_000_000,
            cursor: None,
            streams: vec!["customers+payment_methods".into()],
        };
        let raw = serde_json::to_string(&s).expect("serializes");
        assert_eq!(serde_json::from_str::<RunState>(&raw).ok(), Some(s));
    }
}
