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
use cls_destination::{Batch, Checkpoint, Destination, DestinationError, Row, WriteStats};
use cls_source::Window;
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::backfill::{backfill_stream, Pacer};
use crate::cursor::{latest_events_cursor, store_cursor};
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
    /// Rows of one data type, with the checkpoint they complete.
    Rows {
        data_type: &'static DataType,
        rows: Vec<Row>,
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
}

/// The errors of the data types that failed, by data type.
pub(crate) type StreamErrors = HashMap<&'static str, StripeError>;

/// What a stream's backfill remembers across a crash, beside its checkpoints (which hold its
/// windows): the version its rows are at least, for reconciling deletions at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BackfillState {
    /// Rows written by this backfill (by any process of it) have at least this version.
    version: i64,
}

fn state_key(stream: &Stream) -> String {
    format!("backfill:{}", stream.checkpoint_key())
}

/// How one stream ended.
struct StreamOutcome {
    errors: StreamErrors,
    ended: Instant,
    deleted: HashMap<&'static str, u64>,
}

/// Plans (fresh or resumed), walks, reconciles and closes one stream.
async fn sync_stream(
    ctx: Arc<RunCtx>,
    dest: Arc<dyn Destination>,
    account: AccountInfo,
    stream: Stream,
    now: i64,
    tx: mpsc::Sender<WriteJob>,
) -> Result<StreamOutcome, DestinationError> {
    let key = stream.checkpoint_key();
    let saved: Option<BackfillState> = dest
        .get_state(&account.id, &state_key(&stream))
        .await?
        .and_then(|raw| serde_json::from_str(&raw).ok());
    let checkpoints = dest.checkpoints(&account.id, &key).await?;
    let (state, start) = match (saved, backfill_start(&checkpoints)) {
        (Some(state), BackfillStart::Resume(windows)) => {
            tracing::info!(stream = %key, windows = windows.len(), "resuming an interrupted backfill");
            (state, windows)
        }
        _ => {
            let state = BackfillState {
                version: ctx.version,
            };
            let whole = Window::everything_before(now);
            dest.clear_checkpoints(&account.id, &key).await?;
            dest.set_state(
                &account.id,
                &state_key(&stream),
                &serde_json::to_string(&state).unwrap_or_default(),
            )
            .await?;
            (state, vec![(whole, None)])
        }
    };
    for t in stream.stored_types() {
        (ctx.progress)(Progress::Started { data_type: t.name });
    }
    let errors = backfill_stream(
        ctx.clone(),
        stream.clone(),
        start,
        tx.clone(),
        account.created,
    )
    .await;
    // Wait until this stream's rows are written before reconciling or reporting.
    let (done_tx, done_rx) = oneshot::channel();
    if tx.send(WriteJob::Flush(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
    let mut deleted = HashMap::new();
    if errors.is_empty() {
        // Every object of the range was written with a version of at least `state.version`:
        // live rows below it are objects Stripe no longer lists. Only data types whose objects
        // Stripe deletes are reconciled (events, for one, expire instead).
        for t in stream.stored_types().into_iter().filter(|t| t.deletable) {
            let n = dest
                .mark_unseen_deleted(t, &account.id, state.version, ctx.version)
                .await?;
            deleted.insert(t.name, n);
        }
        dest.clear_checkpoints(&account.id, &key).await?;
        dest.set_state(&account.id, &state_key(&stream), "").await?;
    }
    Ok(StreamOutcome {
        errors,
        ended: Instant::now(),
        deleted,
    })
}

/// Writes jobs one at a time in arrival order. Order matters: a page's checkpoint must not be
/// committed before the rows of earlier pages, nor a split before the page it follows.
async fn write_loop(
    dest: Arc<dyn Destination>,
    account_id: String,
    mut rx: mpsc::Receiver<WriteJob>,
    stats: Arc<Mutex<HashMap<&'static str, WriteStats>>>,
) -> Result<(), DestinationError> {
    while let Some(job) = rx.recv().await {
        match job {
            WriteJob::Flush(done) => {
                let _ = done.send(());
            }
            WriteJob::Split {
                key,
                retire,
                replacements,
            } => {
                dest.replace_checkpoint(&account_id, &key, &retire, &replacements)
                    .await?;
            }
            WriteJob::Rows {
                data_type,
                rows,
                checkpoint,
            } => {
                if rows.is_empty() && checkpoint.is_none() {
                    continue;
                }
                let got = dest
                    .write(Batch {
                        data_type,
                        account_id: &account_id,
                        rows,
                        checkpoint,
                    })
                    .await?;
                let mut m = stats.lock().unwrap_or_else(|p| p.into_inner());
                let s = m.entry(data_type.name).or_default();
                s.inserted += got.inserted;
                s.updated += got.updated;
                s.skipped += got.skipped;
            }
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
    let account = account_info(client, &account_counters).await?;
    dest.prepare(&options.types).await?;

    let now_ms = chrono::Utc::now().timestamp_millis();
    // Objects created in the current second may still be arriving: the range ends at it and
    // they are left to the next run.
    let now = options.now.unwrap_or(now_ms / 1000);
    // Taken before any list is walked, so changes made during the backfill are replayed by the
    // next incremental run. Without it (no permission to read events) runs stay full.
    let type_names = options.types.iter().map(|t| t.name.to_string()).collect();
    let cursor = match latest_events_cursor(client, &account_counters, now, type_names).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the events feed; the next run will be a full sync again");
            None
        }
    };

    let counters: HashMap<&'static str, Arc<RequestCounters>> = options
        .types
        .iter()
        .map(|t| (t.name, Arc::new(RequestCounters::default())))
        .collect();
    let ctx = Arc::new(RunCtx {
        client: client.clone(),
        // On Stripe's clock (the cursor's second), so the events after the cursor outrank
        // what this backfill read: see `crate::events` for why.
        version: crate::events::backfill_version(cursor.as_ref().map(|c| c.created), now_ms),
        counters,
        objects: Mutex::new(HashMap::new()),
        progress: progress.clone(),
        pacer: Pacer::new(client.rates()),
    });

    let stats = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_loop(
        dest.clone(),
        account.id.clone(),
        rx,
        stats.clone(),
    ));

    let mut starts: HashMap<&'static str, Instant> = HashMap::new();
    let mut tasks = Vec::new();
    for stream in plan_streams(&options.types) {
        let types = stream.stored_types();
        for t in &types {
            starts.insert(t.name, Instant::now());
        }
        let handle = tokio::spawn(sync_stream(
            ctx.clone(),
            dest.clone(),
            account.clone(),
            stream,
            now,
            tx.clone(),
        ));
        tasks.push((types, handle));
    }
    drop(tx);

    let mut errors: StreamErrors = HashMap::new();
    let mut ends: HashMap<&'static str, Instant> = HashMap::new();
    let mut deleted: HashMap<&'static str, u64> = HashMap::new();
    let mut failure: Option<EngineError> = None;
    for (types, handle) in tasks {
        match handle.await {
            Ok(Ok(outcome)) => {
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
    let report = SyncReport::new(account.id, types, started.elapsed().as_secs_f64());
    if let (RunStatus::Succeeded, Some(cursor)) = (report.status, cursor) {
        store_cursor(dest.as_ref(), &report.account_id, &cursor).await?;
    }
    Ok(report)
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
    fn backfill_state_round_trips() {
        let s = BackfillState {
            version: 1_700_000_000_123,
        };
        let raw = serde_json::to_string(&s).expect("serializes");
        assert_eq!(serde_json::from_str::<BackfillState>(&raw).ok(), Some(s));
    }
}
