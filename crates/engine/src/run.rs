//! Executing a full sync: walk every planned stream concurrently under the client's shared
//! rate budget, turn pages into rows, and hand them to one writer through a bounded channel so
//! fetching and writing overlap while memory stays bounded (a full channel pauses the walks).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cls_catalog::DataType;
use cls_destination::{Batch, Checkpoint, Destination, DestinationError, Row, WriteStats};
use cls_source::{embedded_children, fetch_children, fetch_page, Window};
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::cursor::{latest_events_cursor, store_cursor};
use crate::plan::{plan_streams, Stream};
use crate::report::{Progress, RunStatus, SyncReport, TypeReport, TypeStatus};

/// How many child lists of one page are fetched at once (e.g. payment methods of 100
/// customers); the client's rate budget still governs the pace.
const CHILD_FETCH_CONCURRENCY: usize = 8;

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

/// Finds the Stripe account id of the key. A restricted key without account access still names
/// the account in Stripe's 403 message, which is enough to key the data by account.
pub async fn resolve_account(
    client: &StripeClient,
    counters: &RequestCounters,
) -> Result<String, StripeError> {
    match client.get("/v1/account", &[], counters).await {
        Ok(v) => Ok(v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("acct_unknown")
            .to_string()),
        Err(StripeError::PermissionDenied { message, .. }) => {
            Ok(account_in_message(&message).unwrap_or_else(|| "acct_unknown".to_string()))
        }
        Err(e) => Err(e),
    }
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
enum WriteJob {
    Rows {
        data_type: &'static DataType,
        rows: Vec<Row>,
        checkpoint: Option<Checkpoint>,
    },
    /// Answered once every job sent before it is written (or the writer failed).
    Flush(oneshot::Sender<()>),
}

/// State shared by the walks of one run.
struct RunCtx {
    client: StripeClient,
    /// Version of every row read in this run: the fetch time in milliseconds.
    version: i64,
    window: Window,
    counters: HashMap<&'static str, Arc<RequestCounters>>,
    objects: Mutex<HashMap<&'static str, u64>>,
    progress: ProgressFn,
}

impl RunCtx {
    fn counters(&self, t: &DataType) -> Arc<RequestCounters> {
        self.counters.get(t.name).cloned().unwrap_or_default()
    }

    fn count(&self, t: &'static DataType, n: u64) -> u64 {
        let mut m = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let c = m.entry(t.name).or_default();
        *c += n;
        *c
    }
}

fn rows_from(objects: Vec<Value>, version: i64) -> Vec<Row> {
    objects
        .into_iter()
        .filter_map(|object| {
            let Some(id) = object.get("id").and_then(Value::as_str) else {
                tracing::warn!(object = %object.get("object").unwrap_or(&serde_json::Value::Null), "Stripe returned an object without an id; it cannot be stored");
                return None;
            };
            let id = id.to_string();
            Some(Row {
                id,
                object,
                version,
                deleted: false,
            })
        })
        .collect()
}

fn last_id(objects: &[Value]) -> Option<String> {
    objects
        .last()
        .and_then(|o| o.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The errors of the data types that failed, by data type.
type StreamErrors = HashMap<&'static str, StripeError>;

/// How one stream ended.
struct StreamOutcome {
    errors: StreamErrors,
    ended: Instant,
}

/// Walks one top-level list within the run's window, sending rows of the stored types to the
/// writer; returns which of its data types failed.
async fn walk(ctx: Arc<RunCtx>, stream: Stream, tx: mpsc::Sender<WriteJob>) -> StreamOutcome {
    let errors = walk_pages(&ctx, &stream, &tx).await;
    // Wait until this stream's rows are written, so its report counts only what is stored.
    let (done_tx, done_rx) = oneshot::channel();
    if tx.send(WriteJob::Flush(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
    StreamOutcome {
        errors,
        ended: Instant::now(),
    }
}

async fn walk_pages(ctx: &RunCtx, stream: &Stream, tx: &mpsc::Sender<WriteJob>) -> StreamErrors {
    let mut errors = StreamErrors::new();
    for t in stream.stored_types() {
        (ctx.progress)(Progress::Started { data_type: t.name });
    }
    let walk_counters = ctx.counters(stream.accounting_type());
    let mut cursor: Option<String> = None;
    loop {
        let page = match fetch_page(
            &ctx.client,
            stream.walk,
            Some(ctx.window),
            cursor.as_deref(),
            &walk_counters,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                // The walk itself failed: every data type it feeds is incomplete.
                for t in stream.stored_types() {
                    errors.entry(t.name).or_insert_with(|| e.clone());
                }
                break;
            }
        };
        let has_more = page.has_more;
        let next = last_id(&page.data);
        let fraction = page
            .data
            .last()
            .and_then(|o| o.get("created"))
            .and_then(Value::as_i64)
            .map(|c| ctx.window.walked_fraction(c));

        for child in &stream.children {
            if errors.contains_key(child.name) {
                continue;
            }
            match read_children(ctx, child, &page.data).await {
                Ok(objs) => {
                    let n = objs.len() as u64;
                    let total = ctx.count(child, n);
                    let rows = rows_from(objs, ctx.version);
                    if tx
                        .send(WriteJob::Rows {
                            data_type: child,
                            rows,
                            checkpoint: None,
                        })
                        .await
                        .is_err()
                    {
                        return errors;
                    }
                    (ctx.progress)(Progress::Advanced {
                        data_type: child.name,
                        objects: total,
                        fraction: if has_more { fraction } else { Some(1.0) },
                    });
                }
                Err(e) => {
                    errors.insert(child.name, e);
                }
            }
        }

        let checkpoint = Checkpoint {
            data_type: stream.walk.name.to_string(),
            window: ctx.window.to_string(),
            cursor: next.clone(),
            done: !has_more,
        };
        let n = page.data.len() as u64;
        let (data_type, rows) = if stream.store {
            (stream.walk, rows_from(page.data, ctx.version))
        } else {
            (stream.accounting_type(), Vec::new())
        };
        if tx
            .send(WriteJob::Rows {
                data_type,
                rows,
                checkpoint: Some(checkpoint),
            })
            .await
            .is_err()
        {
            return errors;
        }
        if stream.store {
            let total = ctx.count(stream.walk, n);
            (ctx.progress)(Progress::Advanced {
                data_type: stream.walk.name,
                objects: total,
                fraction: if has_more { fraction } else { Some(1.0) },
            });
        }
        match (has_more, next) {
            (true, Some(id)) => cursor = Some(id),
            _ => break,
        }
    }
    errors
}

/// The children of every parent on a page: embedded ones, plus fetched rest where the embedded
/// page says `has_more`.
async fn read_children(
    ctx: &RunCtx,
    child: &'static DataType,
    parents: &[Value],
) -> Result<Vec<Value>, StripeError> {
    let counters = ctx.counters(child);
    let mut out = Vec::new();
    let mut to_fetch = Vec::new();
    for parent in parents {
        let Some(parent_id) = parent.get("id").and_then(Value::as_str) else {
            continue;
        };
        let embedded = embedded_children(child, parent);
        out.extend(embedded.items);
        if embedded.fetch_more {
            to_fetch.push((parent_id.to_string(), embedded.after));
        }
    }
    let fetched: Vec<Vec<Value>> = futures::stream::iter(to_fetch)
        .map(|(parent_id, after)| {
            let counters = counters.clone();
            async move { fetch_children(&ctx.client, child, &parent_id, after, &counters).await }
        })
        .buffered(CHILD_FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    out.extend(fetched.into_iter().flatten());
    Ok(out)
}

/// Writes jobs one at a time in arrival order. Order matters: a page's checkpoint must not be
/// committed before the rows of earlier pages.
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

/// Runs a full sync of the chosen data types into `dest`.
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
    let account_id = resolve_account(client, &account_counters).await?;
    dest.prepare(&options.types).await?;

    let now_ms = chrono::Utc::now().timestamp_millis();
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
        version: now_ms,
        // Objects created in the current second may still be arriving: the window ends at it
        // and they are left to the next run.
        window: Window::everything_before(now),
        counters,
        objects: Mutex::new(HashMap::new()),
        progress: progress.clone(),
    });

    let stats = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let writer = tokio::spawn(write_loop(
        dest.clone(),
        account_id.clone(),
        rx,
        stats.clone(),
    ));

    let streams = plan_streams(&options.types);
    let mut starts: HashMap<&'static str, Instant> = HashMap::new();
    let mut tasks = Vec::new();
    for stream in streams {
        for t in stream.stored_types() {
            starts.insert(t.name, Instant::now());
        }
        let types = stream.stored_types();
        let handle = tokio::spawn(walk(ctx.clone(), stream, tx.clone()));
        tasks.push((types, handle));
    }
    drop(tx);

    let mut errors: StreamErrors = HashMap::new();
    let mut ends: HashMap<&'static str, Instant> = HashMap::new();
    for (types, handle) in tasks {
        match handle.await {
            Ok(outcome) => {
                errors.extend(outcome.errors);
                for t in &types {
                    ends.insert(t.name, outcome.ended);
                }
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
            (progress)(Progress::Finished(type_report(
                &ctx, t, &stats, &errors, span,
            )));
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
    let types = options
        .types
        .iter()
        .map(|t| {
            let span = (starts.get(t.name), ends.get(t.name));
            type_report(&ctx, t, &stats, &errors, span)
        })
        .collect();
    let report = SyncReport::new(account_id, types, started.elapsed().as_secs_f64());
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
        deleted: 0,
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
    fn rows_keep_the_object_whole_and_skip_objects_without_id() {
        let objs = vec![
            serde_json::json!({"id": "cus_1", "object": "customer"}),
            serde_json::json!({"object": "customer"}),
        ];
        let rows = rows_from(objs, 42);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].id, "cus_1");
        assert_eq!(rows[0].version, 42);
        assert_eq!(rows[0].object["object"], "customer");
    }
}
