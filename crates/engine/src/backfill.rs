//! The parallel backfill of one stream: its `created` range is walked by several cursors at
//! once, each owning a disjoint window, so requests flow at the rate budget's ceiling.
//!
//! A walk starts with one window. While the run has spare capacity — fewer requests in flight
//! than the rate budget can serve at the measured latency — a walk that has more pages hands the
//! older, untouched part of its window to a new walk ([`Window::split_remaining`]). Splitting
//! only when capacity is idle keeps windows few, so almost every page is full. When the run's
//! walks are all busy, the stream that would finish last may still split (see
//! [`Pacer::has_room`]): the run ends with its longest stream, so that is where a walk counts.
//!
//! Every page's rows reach the writer with the window's checkpoint, and a split replaces the
//! window's checkpoint by its two parts in one transaction; the writer keeps that order, so the
//! saved checkpoints always partition the range and a killed run resumes where it stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cls_catalog::DataType;
use cls_destination::{prepare_rows, Checkpoint, Row};
use cls_source::{embedded_children, fetch_children, fetch_page, Window};
use cls_stripe::StripeError;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::plan::Stream;
use crate::report::Progress;
use crate::run::{RunCtx, StreamErrors, WriteJob};

/// How many child lists of one page are fetched at once (e.g. payment methods of 100
/// customers); the client's rate budget still governs the pace.
const CHILD_FETCH_CONCURRENCY: usize = 8;

/// Parents written per checkpoint when each costs a child request (payment methods).
const PARENTS_PER_CHECKPOINT: usize = 2 * CHILD_FETCH_CONCURRENCY;

/// A walk splits only when about this many objects are left in its window (three pages), and
/// only when it would otherwise outlast the run (see [`Pacer::run_seconds_left`]): each window
/// ends on a partial page, so a split that does not shorten the run only costs a request.
const MIN_OBJECTS_TO_SPLIT: f64 = 300.0;

/// Latency assumed before any request has been measured.
const DEFAULT_LATENCY: Duration = Duration::from_millis(300);

/// Walks in flight at most, whatever the rates and latency: each holds a page in memory while
/// the writer catches up, so this bounds memory when the database is the slower side (a
/// fast API, a slow disk). Stripe's 100 req/s at ~250 ms need about 32.
const MAX_WALKS: usize = 48;

/// Walks of one stream at most: Stripe's 25 req/s per endpoint at ~250 ms need about 9 walks
/// that read one page per round trip, twice that when each page also costs a round of child
/// lists (invoices and their lines).
const MAX_WALKS_PER_STREAM: usize = 24;

/// Headroom over `rate × latency` requests in flight, so the budget never waits on a walk.
const HEADROOM: f64 = 1.25;

/// Decides when the run has room for one more walk: it shares the count of walks in flight
/// across all streams of a run, and how long each stream still needs.
pub(crate) struct Pacer {
    global_rps: f64,
    endpoint_rps: f64,
    active: AtomicUsize,
    /// One cursor per stream and one child list at a time (the benchmark's baseline).
    sequential: bool,
    /// What each unfinished stream still needs, by checkpoint key.
    streams: Mutex<HashMap<String, StreamEstimate>>,
}

/// What one stream still needs, as its walks last estimated it.
#[derive(Debug, Clone, Copy)]
struct StreamEstimate {
    /// Seconds at its current walks.
    seconds: f64,
    /// Requests, child lists included.
    requests: f64,
    /// Requests on its busiest endpoint (its list, or its child list when that is busier).
    endpoint_requests: f64,
}

/// What a stream tells the pacer when one of its walks asks for room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLoad<'a> {
    /// The stream's checkpoint key.
    pub key: &'a str,
    /// Its walks in flight.
    pub active: usize,
    /// Mean request latency of the run.
    pub latency: Duration,
    /// Rounds of child lists per page (0 without children): each costs a round trip before
    /// the walk reads its next page.
    pub child_rounds_per_page: f64,
    /// Child-list requests per page (0 without children).
    pub child_requests_per_page: f64,
    /// Pages its walks are estimated still to read.
    pub pages_left: f64,
}

impl StreamLoad<'_> {
    /// Seconds one walk of the stream takes per page, rate budget aside: a round trip for the
    /// page and one per round of child lists.
    fn cycle(&self) -> f64 {
        self.latency.as_secs_f64() * (1.0 + self.child_rounds_per_page.max(0.0))
    }
}

impl Pacer {
    pub(crate) fn new((global_rps, endpoint_rps): (u32, u32), sequential: bool) -> Self {
        Pacer {
            global_rps: f64::from(global_rps),
            endpoint_rps: f64::from(endpoint_rps),
            active: AtomicUsize::new(0),
            sequential,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Child lists fetched at once for one page of parents.
    fn child_concurrency(&self) -> usize {
        if self.sequential {
            1
        } else {
            CHILD_FETCH_CONCURRENCY
        }
    }

    /// Whether a stream may start another walk.
    ///
    /// - A stream takes at most the walks that keep its endpoint at its rate: one walk reads
    ///   a page per cycle (a round trip, plus one per round of child lists).
    /// - The run takes the walks that keep the account's rate busy at the measured latency.
    /// - Beyond that (up to [`MAX_WALKS`]) only the stream that would finish last may split:
    ///   the run lasts as long as its longest stream, so a walk added there shortens the run,
    ///   and one added anywhere else only takes budget from it. Extra walks wait on the rate
    ///   budget, which they share with the rest.
    pub(crate) fn has_room(&self, load: StreamLoad<'_>) -> bool {
        if self.sequential {
            return false;
        }
        let l = load.latency.as_secs_f64();
        let cycle = load.cycle();
        let per_endpoint =
            ((self.endpoint_rps * cycle * HEADROOM).ceil() as usize + 1).min(MAX_WALKS_PER_STREAM);
        let children = load.child_requests_per_page.max(0.0);
        let estimate = StreamEstimate {
            seconds: (load.pages_left * cycle / load.active.max(1) as f64)
                .max(load.pages_left / self.endpoint_rps),
            requests: load.pages_left * (1.0 + children),
            endpoint_requests: load.pages_left * children.max(1.0),
        };
        // The longest of the other streams; `None` when no other competes for the budget
        // (extra walks would then only wait on it).
        let longest_other = {
            let mut m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            m.insert(load.key.to_string(), estimate);
            m.iter()
                .filter(|(k, _)| k.as_str() != load.key)
                .map(|(_, e)| e.seconds)
                .reduce(f64::max)
        };
        let seconds_left = estimate.seconds;
        if load.active >= per_endpoint {
            return false;
        }
        let total = ((self.global_rps * l * HEADROOM).ceil() as usize + 1).min(MAX_WALKS);
        let active = self.active.load(Ordering::Relaxed);
        active < total
            || (active < MAX_WALKS && longest_other.is_some_and(|other| seconds_left >= other))
    }

    /// A stream finished: it no longer competes for walks.
    pub(crate) fn finished(&self, key: &str) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The least time the run still needs, from what its streams last estimated: all their
    /// requests at the account's rate, or the busiest endpoint's at the endpoint rate. A walk
    /// that would end sooner than this is not on the run's critical path.
    pub(crate) fn run_seconds_left(&self) -> f64 {
        let m = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let all: f64 = m.values().map(|e| e.requests).sum();
        let busiest = m.values().map(|e| e.endpoint_requests).fold(0.0, f64::max);
        (all / self.global_rps).max(busiest / self.endpoint_rps)
    }
}

/// What the walks of one stream share.
struct StreamShared {
    stream: Stream,
    key: String,
    /// Walks of this stream in flight.
    active: AtomicUsize,
    /// Set when a walk failed: the others stop at their next page.
    failed: AtomicBool,
    /// Set when a child list failed: checkpoints stop advancing (see `fail_child`).
    children_incomplete: AtomicBool,
    errors: Mutex<StreamErrors>,
    /// What each walk has left, and the whole range's length: the progress fraction and the
    /// pages the stream still needs.
    remaining: Mutex<HashMap<u64, WalkLeft>>,
    total_seconds: i64,
    next_walk: AtomicUsize,
    /// Pages read, and rounds of child lists fetched for them.
    pages: AtomicUsize,
    child_rounds: AtomicUsize,
    child_requests: AtomicUsize,
    /// Where a split may cut first (the account's creation time).
    hint: Option<i64>,
}

/// What one walk has left of its window.
#[derive(Debug, Clone, Copy, Default)]
struct WalkLeft {
    /// Seconds of the window not walked yet.
    seconds: i64,
    /// Objects per second of `created` time on the walk's last page (0 before its first).
    density: f64,
    /// Objects estimated left: the density times the seconds left since the account exists.
    objects: f64,
}

impl StreamShared {
    /// Records what a walk has left; returns the stream's progress fraction.
    fn fraction(&self, walk: u64, left: WalkLeft) -> f64 {
        let mut m = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(
            walk,
            WalkLeft {
                seconds: left.seconds.max(0),
                ..left
            },
        );
        let left: i64 = m.values().map(|w| w.seconds).sum();
        (1.0 - left as f64 / self.total_seconds.max(1) as f64).clamp(0.0, 1.0)
    }

    /// The density a walk measured last (0 when it has not read a page yet).
    fn density(&self, walk: u64) -> f64 {
        let m = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&walk).map_or(0.0, |w| w.density)
    }

    /// What a walk has left of `[start, end)` at `density` objects per second; nothing is
    /// expected before the account was created.
    fn left_in(&self, start: i64, end: i64, density: f64) -> WalkLeft {
        let from = self.hint.map_or(start, |h| h.clamp(start, end));
        WalkLeft {
            seconds: end - start,
            density,
            objects: density * (end - from).max(0) as f64,
        }
    }

    /// Pages the stream's walks are estimated still to read: each unfinished window ends on a
    /// partial page.
    fn pages_left(&self) -> f64 {
        let m = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
        m.values()
            .filter(|w| w.seconds > 0)
            .map(|w| w.objects / f64::from(cls_source::PAGE_SIZE) + 1.0)
            .sum()
    }

    /// How many of `counter` per page read so far.
    fn per_page(&self, counter: &AtomicUsize) -> f64 {
        let pages = self.pages.load(Ordering::Relaxed);
        if pages == 0 {
            return 0.0;
        }
        counter.load(Ordering::Relaxed) as f64 / pages as f64
    }

    /// What the stream tells the pacer.
    fn load(&self, latency: Duration) -> StreamLoad<'_> {
        StreamLoad {
            key: &self.key,
            active: self.active.load(Ordering::Relaxed),
            latency,
            child_rounds_per_page: self.per_page(&self.child_rounds),
            child_requests_per_page: self.per_page(&self.child_requests),
            pages_left: self.pages_left(),
        }
    }

    fn fail(&self, types: &[&'static DataType], e: &StripeError) {
        self.failed.store(true, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        for t in types {
            errors.entry(t.name).or_insert_with(|| e.clone());
        }
    }

    /// A child list failed: that child type is incomplete, while the walk goes on for the
    /// parent and the other children. From now on the walk's checkpoints stop advancing, so a
    /// resumed run fetches the missing children again rather than skipping past them.
    fn fail_child(&self, child: &'static DataType, e: &StripeError) {
        self.children_incomplete.store(true, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.entry(child.name).or_insert_with(|| e.clone());
    }

    /// The writer stopped (the database failed): nothing this stream sends is stored any
    /// more, so every data type it feeds is incomplete.
    fn writer_gone(&self) {
        let e = StripeError::Network {
            message: "the database writer stopped before this data type was written".into(),
        };
        self.fail(&self.stream.stored_types(), &e);
    }

    fn child_failed(&self, child: &'static DataType) -> bool {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(child.name)
    }
}

/// A window to walk, and where in it to continue.
type WalkStart = (Window, Option<String>);

/// Walks every window of a stream until all are done; returns the data types that failed.
pub(crate) async fn backfill_stream(
    ctx: Arc<RunCtx>,
    stream: Stream,
    start: Vec<WalkStart>,
    tx: mpsc::Sender<WriteJob>,
    hint: Option<i64>,
) -> StreamErrors {
    let total_seconds = start.iter().map(|(w, _)| w.len()).sum();
    let shared = Arc::new(StreamShared {
        key: stream.checkpoint_key(),
        stream,
        active: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        children_incomplete: AtomicBool::new(false),
        errors: Mutex::new(StreamErrors::new()),
        remaining: Mutex::new(HashMap::new()),
        total_seconds,
        next_walk: AtomicUsize::new(0),
        pages: AtomicUsize::new(0),
        child_rounds: AtomicUsize::new(0),
        child_requests: AtomicUsize::new(0),
        hint,
    });
    let (spawn_tx, mut spawn_rx) = mpsc::unbounded_channel::<(u64, WalkStart)>();
    let mut walks = JoinSet::new();
    let stored = shared.stream.stored_types();
    let launch = |walks: &mut JoinSet<()>, (id, (w, cursor)): (u64, WalkStart)| {
        ctx.count_window(&stored);
        shared.active.fetch_add(1, Ordering::Relaxed);
        ctx.pacer.active.fetch_add(1, Ordering::Relaxed);
        walks.spawn(walk(
            ctx.clone(),
            shared.clone(),
            id,
            w,
            cursor,
            tx.clone(),
            spawn_tx.clone(),
        ));
    };
    for s in start {
        let id = shared.next_walk.fetch_add(1, Ordering::Relaxed) as u64;
        launch(&mut walks, (id, s));
    }
    loop {
        tokio::select! {
            Some(next) = spawn_rx.recv() => launch(&mut walks, next),
            joined = walks.join_next() => match joined {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    let err = StripeError::Network { message: format!("a sync task stopped unexpectedly: {e}") };
                    shared.fail(&shared.stream.stored_types(), &err);
                }
                None => match spawn_rx.try_recv() {
                    Ok(next) => launch(&mut walks, next),
                    Err(_) => break,
                },
            },
        }
    }
    ctx.pacer.finished(&shared.key);
    let errors = shared
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    errors
}

/// Mean request latency over the run so far.
fn mean_latency(ctx: &RunCtx) -> Duration {
    let (mut sum, mut n) = (Duration::ZERO, 0u32);
    for c in ctx.counters.values() {
        if let Some(l) = c.mean_latency() {
            sum += l;
            n += 1;
        }
    }
    if n == 0 {
        DEFAULT_LATENCY
    } else {
        sum / n
    }
}

/// Walks one window, newest first, splitting off older parts while the run has room.
async fn walk(
    ctx: Arc<RunCtx>,
    shared: Arc<StreamShared>,
    id: u64,
    mut window: Window,
    mut cursor: Option<String>,
    tx: mpsc::Sender<WriteJob>,
    spawn: mpsc::UnboundedSender<(u64, WalkStart)>,
) {
    // Counted out however the walk ends, a panic included, so the pacer never drifts.
    let _active = Active {
        ctx: ctx.clone(),
        shared: shared.clone(),
    };
    walk_pages(&ctx, &shared, id, &mut window, &mut cursor, &tx, &spawn).await;
}

/// One walk in flight, counted in its stream and in the run's pacer until dropped.
struct Active {
    ctx: Arc<RunCtx>,
    shared: Arc<StreamShared>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
        self.ctx.pacer.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn walk_pages(
    ctx: &RunCtx,
    shared: &StreamShared,
    id: u64,
    window: &mut Window,
    cursor: &mut Option<String>,
    tx: &mpsc::Sender<WriteJob>,
    spawn: &mpsc::UnboundedSender<(u64, WalkStart)>,
) {
    let stream = &shared.stream;
    let walk_counters = ctx.counters(stream.accounting_type());
    // Whether the window was walked again from its start once already (see below).
    let mut restarted = false;
    loop {
        if shared.failed.load(Ordering::Relaxed) {
            return;
        }
        let page = match fetch_page(
            &ctx.client,
            stream.walk,
            Some(*window),
            cursor.as_deref(),
            &walk_counters,
        )
        .await
        {
            Ok(p) => p,
            Err(e) if cursor.is_some() && !restarted && e.code() == Some("resource_missing") => {
                // The object the cursor names was deleted since (or, resuming, since the
                // checkpoint): walk the window again from its newest end. Rows already written
                // are written again with the same version, which changes nothing.
                tracing::info!(window = %window, "the cursor's object is gone; walking the window again");
                *cursor = None;
                restarted = true;
                continue;
            }
            Err(e) => {
                // The walk itself failed: every data type it feeds is incomplete.
                shared.fail(&stream.stored_types(), &e);
                return;
            }
        };
        let has_more = page.has_more;
        let next = last_id(&page.data);
        let created = |o: Option<&Value>| o.and_then(|o| stream.walk.created_of(o));
        let first_created = created(page.data.first());
        let last_created = created(page.data.last());
        let page_len = page.data.len();
        shared.pages.fetch_add(1, Ordering::Relaxed);
        let density = match (first_created, last_created) {
            (Some(first), Some(last)) => page_len as f64 / (first - last + 1).max(1) as f64,
            _ => shared.density(id),
        };
        let fraction = shared.fraction(
            id,
            match (has_more, last_created) {
                (true, Some(c)) => shared.left_in(window.start, c, density),
                (true, None) => shared.left_in(window.start, window.end, density),
                (false, _) => WalkLeft::default(),
            },
        );

        // Parents whose children each cost a request (a customer's payment methods) are
        // written, with a checkpoint, a few at a time: a crash then loses the child lists of a
        // few parents, not of a whole page.
        let per_parent = stream
            .children
            .iter()
            .any(|c| c.parent.is_some_and(|p| p.embedded_field.is_none()));
        let chunk = if per_parent {
            PARENTS_PER_CHECKPOINT
        } else {
            page.data.len().max(1)
        };
        let mut objects = page.data;
        let mut chunks = Vec::new();
        while objects.len() > chunk {
            let rest = objects.split_off(chunk);
            chunks.push(std::mem::replace(&mut objects, rest));
        }
        chunks.push(objects);
        let last_chunk = chunks.len() - 1;
        for (i, parents) in chunks.into_iter().enumerate() {
            if !write_chunk(
                ctx,
                shared,
                *window,
                cursor,
                parents,
                i == last_chunk && !has_more,
                fraction,
                tx,
            )
            .await
            {
                return;
            }
        }
        let next = match (has_more, next) {
            (false, _) => return,
            (true, Some(next)) => next,
            (true, None) => {
                // More pages but nothing to continue after: the walk cannot go on, and ending
                // here would report the data type complete.
                let e = StripeError::Decode {
                    message: format!(
                        "{} answered an empty page that says more follow",
                        stream.walk.list_path
                    ),
                };
                shared.fail(&stream.stored_types(), &e);
                return;
            }
        };
        *cursor = Some(next);

        // Room for another walk, and enough left for two: hand the older, untouched part of
        // this window to it. Each window ends on a partial page, so splitting a walk that is
        // nearly done would cost more requests than it saves time.
        let load = shared.load(mean_latency(ctx));
        let room = ctx.pacer.has_room(load);
        // Worth it when enough is left and this walk alone would outlast the run.
        let worth = match (first_created, last_created) {
            (Some(first), Some(last)) => {
                let objects = window.estimated_remaining(page_len, first, last, shared.hint);
                let walk_seconds = objects / f64::from(cls_source::PAGE_SIZE) * load.cycle();
                objects >= MIN_OBJECTS_TO_SPLIT && walk_seconds > ctx.pacer.run_seconds_left()
            }
            _ => false,
        };
        // A list that cannot filter by `created` cannot be split: each part would list all.
        // Nor is a walk whose checkpoints stopped advancing (a child list failed).
        // And no split while the writer lags (its queue mostly full): another walk would only
        // hold one more page in memory waiting for it.
        let splittable = stream.walk.created_filter()
            && !shared.children_incomplete.load(Ordering::Relaxed)
            && tx.capacity() * 4 >= tx.max_capacity();
        tracing::trace!(
            stream = %shared.key,
            walk = id,
            walks = load.active,
            run_walks = ctx.pacer.active.load(Ordering::Relaxed),
            pages_left = load.pages_left,
            run_seconds_left = ctx.pacer.run_seconds_left(),
            room,
            worth,
            splittable,
            queued = tx.max_capacity() - tx.capacity(),
            "page read"
        );
        if let (true, true, true, Some(last)) = (room, worth, splittable, last_created) {
            // A cut at the hint (the account's creation) hands off only the empty time
            // before it; the rest is cut again at once, so the first split already shares
            // the work.
            let mut keep = *window;
            let mut older = Vec::new();
            while let Some((k, o)) = keep.split_remaining(last, shared.hint) {
                keep = k;
                older.push(o);
                if Some(k.start) != shared.hint {
                    break;
                }
            }
            if !older.is_empty() {
                let checkpoint = |w: &Window, cursor: Option<String>| Checkpoint {
                    data_type: shared.key.clone(),
                    window: w.to_string(),
                    cursor,
                    done: false,
                };
                let mut replacements = vec![checkpoint(&keep, cursor.clone())];
                replacements.extend(older.iter().map(|w| checkpoint(w, None)));
                let job = WriteJob::Split {
                    key: shared.key.clone(),
                    retire: window.to_string(),
                    replacements,
                };
                if tx.send(job).await.is_err() {
                    shared.writer_gone();
                    return;
                }
                *window = keep;
                shared.fraction(id, shared.left_in(keep.start, last, density));
                for part in older {
                    // A new walk counts at this walk's density until it reads a page, so the
                    // stream's estimate does not dip while it starts.
                    let part_id = shared.next_walk.fetch_add(1, Ordering::Relaxed) as u64;
                    shared.fraction(part_id, shared.left_in(part.start, part.end, density));
                    tracing::debug!(stream = %shared.key, walk = id, keep = %keep, older = %part, "split a window");
                    let _ = spawn.send((part_id, (part, None)));
                }
            }
        }
    }
}

/// Reads the children of some parents of a page and sends them, then the parents with the
/// checkpoint that follows them. Returns false when the writer is gone.
#[allow(clippy::too_many_arguments)]
async fn write_chunk(
    ctx: &RunCtx,
    shared: &StreamShared,
    window: Window,
    cursor: &Option<String>,
    parents: Vec<Value>,
    done: bool,
    fraction: f64,
    tx: &mpsc::Sender<WriteJob>,
) -> bool {
    let stream = &shared.stream;
    for child in &stream.children {
        if shared.child_failed(child) {
            continue;
        }
        match read_children(ctx, shared, child, &parents).await {
            Ok(objs) => {
                let total = ctx.count(child, objs.len() as u64);
                let job = WriteJob::Rows {
                    data_type: child,
                    rows: prepare_rows(child, rows_from(child, objs, ctx.version)),
                    checkpoint: None,
                };
                if tx.send(job).await.is_err() {
                    shared.writer_gone();
                    return false;
                }
                (ctx.progress)(Progress::Advanced {
                    data_type: child.name,
                    objects: total,
                    fraction: Some(fraction),
                });
            }
            Err(e) => shared.fail_child(child, &e),
        }
    }
    let checkpoint = (!shared.children_incomplete.load(Ordering::Relaxed)).then(|| Checkpoint {
        data_type: shared.key.clone(),
        window: window.to_string(),
        // An empty last page leaves the cursor where it was.
        cursor: last_id(&parents).or_else(|| cursor.clone()),
        done,
    });
    let n = parents.len() as u64;
    let (data_type, rows) = if stream.store {
        let rows = rows_from(stream.walk, parents, ctx.version);
        (stream.walk, prepare_rows(stream.walk, rows))
    } else {
        (stream.accounting_type(), Vec::new())
    };
    let job = WriteJob::Rows {
        data_type,
        rows,
        checkpoint,
    };
    if tx.send(job).await.is_err() {
        shared.writer_gone();
        return false;
    }
    if stream.store {
        let total = ctx.count(stream.walk, n);
        (ctx.progress)(Progress::Advanced {
            data_type: stream.walk.name,
            objects: total,
            fraction: Some(fraction),
        });
    }
    true
}

/// Turns objects of `data_type`'s list into rows of one version. Objects without an id cannot
/// be stored; objects whose `object` names another type (a list never mixes types, so a
/// proxy or an API change is at work) would be stored as something they are not: both are
/// left out with a warning.
pub(crate) fn rows_from(data_type: &DataType, objects: Vec<Value>, version: i64) -> Vec<Row> {
    objects
        .into_iter()
        .filter_map(|object| {
            let Some(id) = object
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
            else {
                tracing::warn!(
                    data_type = data_type.name,
                    object = %object.get("object").unwrap_or(&serde_json::Value::Null),
                    "Stripe returned an object without an id; it cannot be stored"
                );
                return None;
            };
            if let Some(other) = object
                .get("object")
                .and_then(Value::as_str)
                .filter(|o| *o != data_type.object)
            {
                tracing::warn!(
                    data_type = data_type.name,
                    id,
                    object = other,
                    expected = data_type.object,
                    "Stripe's list returned an object of another type; it is not stored"
                );
                return None;
            }
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

/// The children of every parent on a page: embedded ones, plus the fetched rest where the
/// embedded page says `has_more`.
async fn read_children(
    ctx: &RunCtx,
    shared: &StreamShared,
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
    let concurrency = ctx.pacer.child_concurrency();
    shared
        .child_rounds
        .fetch_add(to_fetch.len().div_ceil(concurrency), Ordering::Relaxed);
    shared
        .child_requests
        .fetch_add(to_fetch.len(), Ordering::Relaxed);
    let fetched: Vec<Vec<Value>> = futures::stream::iter(to_fetch)
        .map(|(parent_id, after)| {
            let counters = counters.clone();
            async move { fetch_children(&ctx.client, child, &parent_id, after, &counters).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    out.extend(fetched.into_iter().flatten());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(key: &str, active: usize, latency_ms: u64, pages_left: f64) -> StreamLoad<'_> {
        StreamLoad {
            key,
            active,
            latency: Duration::from_millis(latency_ms),
            child_rounds_per_page: 0.0,
            child_requests_per_page: 0.0,
            pages_left,
        }
    }

    #[test]
    fn room_follows_rate_times_latency() {
        let p = Pacer::new((25, 25), false);
        // 25 req/s × 0.25 s × 1.25 ≈ 8 (+1): a ninth and tenth walk may start, not an eleventh.
        p.active.store(8, Ordering::Relaxed);
        assert!(p.has_room(load("a", 8, 250, 50.0)));
        p.active.store(10, Ordering::Relaxed);
        assert!(!p.has_room(load("a", 1, 250, 0.0)));
        // Live mode: the account has room, but one endpoint is capped at its own rate.
        let live = Pacer::new((100, 25), false);
        assert!(!Pacer::new((100, 25), true).has_room(load("a", 0, 1000, 50.0)));
        // Limits far above Stripe's (a database-bound run) still cap walks, and so memory.
        let unlimited = Pacer::new((1_000_000, 1_000_000), false);
        assert!(unlimited.has_room(load("a", MAX_WALKS_PER_STREAM - 1, 5, 50.0)));
        assert!(!unlimited.has_room(load("a", MAX_WALKS_PER_STREAM, 5, 50.0)));
        unlimited.active.store(MAX_WALKS, Ordering::Relaxed);
        assert!(!unlimited.has_room(load("b", 0, 5, 1e6)));
        live.active.store(12, Ordering::Relaxed);
        assert!(live.has_room(load("a", 5, 250, 50.0)));
        assert!(!live.has_room(load("a", 10, 250, 50.0)));
    }

    #[test]
    fn child_rounds_widen_a_streams_share_of_walks() {
        let live = Pacer::new((100, 25), false);
        // One page per round trip: 25 × 0.25 × 1.25 ≈ 8 (+1) walks keep the endpoint busy.
        assert!(!live.has_room(load("invoices", 10, 250, 100.0)));
        // A round of child lists per page halves each walk's pace: twice the walks.
        let with_children = StreamLoad {
            child_rounds_per_page: 1.0,
            ..load("invoices", 10, 250, 100.0)
        };
        assert!(live.has_room(with_children));
        assert!(!live.has_room(StreamLoad {
            active: 17,
            ..with_children
        }));
    }

    #[test]
    fn only_the_stream_that_finishes_last_splits_when_the_run_is_busy() {
        let live = Pacer::new((100, 25), false);
        // 100 × 0.25 × 1.25 ≈ 32 (+1) walks keep the account busy; all are taken.
        live.active.store(33, Ordering::Relaxed);
        // charges: 40 pages on 8 walks ≈ 1.25 s, alone so far: nothing to gain.
        assert!(!live.has_room(load("charges", 8, 250, 40.0)));
        // invoiceitems: 90 pages on 1 walk ≈ 22 s, the longest: it may split.
        assert!(live.has_room(load("invoiceitems", 1, 250, 90.0)));
        assert!(!live.has_room(load("charges", 8, 250, 40.0)));
        assert!(!live.has_room(load("refunds", 1, 250, 2.0)));
        // Once its walks bring it below another stream, it waits like the rest.
        assert!(!live.has_room(load("invoiceitems", 8, 250, 8.0)));
        assert!(live.has_room(load("charges", 8, 250, 40.0)));
        // A finished stream no longer competes.
        live.finished("invoiceitems");
        live.finished("refunds");
        assert!(!live.has_room(load("charges", 8, 250, 40.0)));
        // Never beyond the hard cap on walks, which bounds memory.
        live.active.store(MAX_WALKS, Ordering::Relaxed);
        assert!(!live.has_room(load("charges", 1, 250, 400.0)));
    }

    #[test]
    fn rows_keep_the_object_whole_and_skip_objects_without_id_or_of_another_type() {
        let objs = vec![
            serde_json::json!({"id": "cus_1", "object": "customer", "extra": {"kept": [1]}}),
            serde_json::json!({"object": "customer"}),
            serde_json::json!({"id": 7, "object": "customer"}),
            serde_json::json!({"id": "", "object": "customer"}),
            serde_json::json!({"id": "ch_1", "object": "charge"}),
            serde_json::json!({"id": "uni_1", "object": "unicorn"}),
        ];
        let customers = cls_catalog::find("customers").expect("in the catalog");
        let rows = rows_from(customers, objs, 42);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].object["extra"], serde_json::json!({"kept": [1]}));
        assert_eq!(rows[0].id, "cus_1");
        assert_eq!(rows[0].version, 42);
        assert_eq!(rows[0].object["object"], "customer");
    }
}
