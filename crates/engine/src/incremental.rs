//! Incremental sync: follow Stripe's events feed from the stored cursor instead of listing
//! everything again, so a run costs about one request per 100 changes whatever the account's
//! size.
//!
//! A run is planned ([`plan_incremental`], pure) then executed ([`run_incremental`]):
//! - no cursor, or one older than Stripe keeps events (30 days) → a full sync, saying why;
//! - data types the cursor does not cover, or that events cannot follow (balance transactions
//!   have no events) → a full sync of those types first;
//! - then the events after the cursor, oldest first, page by page ([`apply_events`]), storing
//!   the new cursor after each page.
//!
//! [`apply_events`] is also the webhook receiver's path, so both sources share one ordering
//! guard (see [`crate::events`] for the version rules) and one notion of what an event does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use cls_catalog::DataType;
use cls_destination::{Batch, Destination, Row};
use cls_source::{embedded_children, fetch_children};
use cls_stripe::{RequestCounters, StripeClient, StripeError};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::cursor::{load_cursor, store_cursor, EventsCursor};
use crate::events::{
    effect_of, event_version, parent_id_of, parse_event, EventSource, Sequencer, SkipReason,
};
use crate::report::{EventsSummary, Progress, SyncMode, SyncReport, TypeReport, TypeStatus};
use crate::run::{open_run, run_full_sync, EngineError, ProgressFn, SyncOptions};

/// How long Stripe keeps events.
pub const EVENT_RETENTION_SECS: i64 = 30 * 86_400;

/// A cursor this close to the retention limit is treated as expired: the local clock and
/// Stripe's may disagree, and the run itself takes time while the oldest events expire.
pub const RETENTION_MARGIN_SECS: i64 = 3_600;

/// The largest page of events Stripe serves.
const EVENTS_PAGE: usize = 100;

/// How many child lists are fetched at once when parents say `has_more`.
const CHILD_FETCH_CONCURRENCY: usize = 8;

/// Which kind of run to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedMode {
    /// List everything (a backfill).
    Full,
    /// Follow the events feed; fall back to a full sync (and say so) when it cannot.
    Incremental,
    /// Incremental when this destination holds a usable cursor for the account, else full.
    Auto,
}

/// Whether events keep a data type current: it has events of its own, or it is a child whose
/// parent has events and embeds it (an invoice's lines), or it is the events themselves.
pub fn followed_by_events(t: &DataType) -> bool {
    if t.name == "events" || !t.event_types.is_empty() {
        return true;
    }
    t.parent.is_some_and(|p| {
        p.embedded_field.is_some()
            && cls_catalog::find(p.data_type).is_some_and(|parent| !parent.event_types.is_empty())
    })
}

/// What an incremental run will do.
#[derive(Debug, Clone, PartialEq)]
pub enum IncrementalPlan {
    /// Copy every chosen data type in full.
    Full {
        /// Why, for the run's summary.
        reason: String,
    },
    /// Follow the feed from `cursor` for `follow`; copy `full` in full first.
    Follow {
        /// The stored cursor.
        cursor: EventsCursor,
        /// Data types the cursor covers and events follow.
        follow: Vec<&'static DataType>,
        /// Data types copied in full first, each with the reason.
        full: Vec<(&'static DataType, String)>,
    },
}

/// Plans an incremental run from the stored cursor (pure). `now` is unix seconds.
pub fn plan_incremental(
    cursor: Option<&EventsCursor>,
    chosen: &[&'static DataType],
    now: i64,
) -> IncrementalPlan {
    let Some(cursor) = cursor else {
        return IncrementalPlan::Full {
            reason: "no events cursor yet: this database has had no complete sync of this \
                     account, so every chosen data type is copied in full"
                .to_string(),
        };
    };
    if cursor.created < now - (EVENT_RETENTION_SECS - RETENTION_MARGIN_SECS) {
        let when =
            cls_catalog::rfc3339(cursor.created).unwrap_or_else(|| cursor.created.to_string());
        return IncrementalPlan::Full {
            reason: format!(
                "the last sync's position in the events feed ({when}) is older than the 30 days \
                 Stripe keeps events: changes since then cannot be replayed, so every chosen data \
                 type is copied in full (rows of deleted objects are marked by the full sync)"
            ),
        };
    }
    let mut follow = Vec::new();
    let mut full = Vec::new();
    for t in chosen {
        if !followed_by_events(t) {
            full.push((
                *t,
                format!(
                    "{} has no Stripe events to follow, so it is copied in full",
                    t.name
                ),
            ));
        } else if !cursor.types.iter().any(|c| c == t.name) {
            full.push((
                *t,
                format!(
                    "{} was not part of the last complete sync, so it is copied in full",
                    t.name
                ),
            ));
        } else {
            follow.push(*t);
        }
    }
    if follow.is_empty() {
        return IncrementalPlan::Full {
            reason: "none of the chosen data types can follow the events feed from the last \
                     sync, so every one is copied in full"
                .to_string(),
        };
    }
    IncrementalPlan::Follow {
        cursor: cursor.clone(),
        follow,
        full,
    }
}

/// What applying one data type's share of events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TypeApplied {
    /// Snapshots handed to the destination (objects, children, events).
    pub objects: u64,
    /// Rows that were new.
    pub inserted: u64,
    /// Rows replaced by a newer version.
    pub updated: u64,
    /// Rows left alone because they already held this version or a newer one.
    pub unchanged: u64,
    /// Rows soft-deleted (deletion events, removed children).
    pub deleted: u64,
    /// Requests made for this data type (child lists fetched because a parent said
    /// `has_more`).
    pub requests: u64,
}

/// What [`apply_events`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApplyStats {
    /// Events given.
    pub read: u64,
    /// Events that touched at least one chosen table.
    pub applied: u64,
    /// Events skipped, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// Per data type.
    pub types: BTreeMap<&'static str, TypeApplied>,
    /// Feed position after the last event (feed sources only).
    pub position: Option<Sequencer>,
}

impl ApplyStats {
    fn add(&mut self, other: ApplyStats) {
        self.read += other.read;
        self.applied += other.applied;
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        for (k, v) in other.types {
            let t = self.types.entry(k).or_default();
            t.objects += v.objects;
            t.inserted += v.inserted;
            t.updated += v.updated;
            t.unchanged += v.unchanged;
            t.deleted += v.deleted;
            t.requests += v.requests;
        }
        if other.position.is_some() {
            self.position = other.position;
        }
    }

    /// Events skipped for one reason.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }
}

/// The newest event of a parent within one batch: its children are brought to that state.
struct ParentChange<'a> {
    version: i64,
    deleted: bool,
    snapshot: &'a Value,
}

/// Applies events, given oldest first, to the chosen data types of `account_id`.
///
/// Each event's snapshot is upserted into the table of its object type (deleted objects with
/// `deleted = true`), its chosen children follow it (embedded ones, plus the rest of the child
/// list fetched with `client` when the parent says `has_more`; children no longer present
/// are soft-deleted), and the event itself goes to the `events` table when that is chosen.
/// Every write carries the event's version, so events applied twice, late or out of order
/// never put an older snapshot over a newer one. Events of unknown object types or of data
/// types not chosen are counted and skipped. Without a `client` (a webhook receiver given no
/// key), children beyond the embedded page are left as they are.
pub async fn apply_events(
    client: Option<&StripeClient>,
    dest: &dyn Destination,
    account_id: &str,
    types: &[&'static DataType],
    events: &[Value],
    source: EventSource,
) -> Result<ApplyStats, EngineError> {
    let mut stats = ApplyStats {
        read: events.len() as u64,
        ..ApplyStats::default()
    };
    let events_type = types.iter().copied().find(|t| t.name == "events");
    let mut seq = match source {
        EventSource::Feed { after } => Some(after),
        EventSource::Webhook => None,
    };
    // Rows per data type, in the order the events came (the destination keeps the highest
    // version of an id within a batch).
    let mut rows: Vec<(&'static DataType, Vec<Row>)> = Vec::new();
    let mut push =
        |t: &'static DataType, row: Row| match rows.iter_mut().find(|(d, _)| d.name == t.name) {
            Some((_, r)) => r.push(row),
            None => rows.push((t, vec![row])),
        };
    // child type name → parent id → newest change of that parent in this batch.
    let mut parents: HashMap<&'static str, (&'static DataType, HashMap<&str, ParentChange<'_>>)> =
        HashMap::new();

    for raw in events {
        let Some(event) = parse_event(raw) else {
            tracing::warn!("an event without id, type, created or object was skipped");
            *stats.skipped.entry(SkipReason::Malformed).or_default() += 1;
            continue;
        };
        let rank = seq.as_mut().map_or(0, |s| s.next(event.created));
        let version = event_version(event.created, rank);
        if let Some(t) = events_type {
            push(
                t,
                Row {
                    id: event.id.to_string(),
                    object: raw.clone(),
                    version,
                    deleted: false,
                },
            );
        }
        let effect = match effect_of(&event, types) {
            Ok(e) => e,
            Err(reason) => {
                tracing::debug!(
                    event = event.id,
                    r#type = event.event_type,
                    reason = reason.as_str(),
                    "event skipped"
                );
                *stats.skipped.entry(reason).or_default() += 1;
                continue;
            }
        };
        stats.applied += 1;
        if let Some(t) = effect.target {
            push(
                t,
                Row {
                    id: event.object_id.to_string(),
                    object: event.object.clone(),
                    version,
                    deleted: effect.deleted,
                },
            );
        }
        for child in effect.children {
            // Children reached only through their own list (a customer's payment methods) have
            // events of their own; refreshing them on every parent event would cost a request
            // per change. They follow their parent only when it is deleted.
            let embedded = child.parent.is_some_and(|p| p.embedded_field.is_some());
            if !embedded && !effect.deleted {
                continue;
            }
            let entry = parents
                .entry(child.name)
                .or_insert_with(|| (child, HashMap::new()));
            let newer = entry
                .1
                .get(event.object_id)
                .is_none_or(|c| c.version < version);
            if newer {
                entry.1.insert(
                    event.object_id,
                    ParentChange {
                        version,
                        deleted: effect.deleted,
                        snapshot: event.object,
                    },
                );
            }
        }
    }
    stats.position = seq;

    for (t, batch) in rows {
        write_rows(dest, account_id, t, batch, &mut stats).await?;
    }
    for (_, (child, changes)) in parents {
        apply_children(client, dest, account_id, child, changes, &mut stats).await?;
    }
    Ok(stats)
}

async fn write_rows(
    dest: &dyn Destination,
    account_id: &str,
    t: &'static DataType,
    rows: Vec<Row>,
    stats: &mut ApplyStats,
) -> Result<(), EngineError> {
    if rows.is_empty() {
        return Ok(());
    }
    let objects = rows.len() as u64;
    let deleted = rows.iter().filter(|r| r.deleted).count() as u64;
    let got = dest
        .write(Batch {
            data_type: t,
            account_id,
            rows,
            checkpoint: None,
        })
        .await?;
    let s = stats.types.entry(t.name).or_default();
    s.objects += objects;
    s.inserted += got.inserted;
    s.updated += got.updated;
    s.unchanged += got.skipped;
    // A deletion that was stored (not skipped as older) counts as a deleted row.
    s.deleted += deleted.min(got.inserted + got.updated);
    Ok(())
}

/// Brings the children of changed parents to the parents' state.
async fn apply_children(
    client: Option<&StripeClient>,
    dest: &dyn Destination,
    account_id: &str,
    child: &'static DataType,
    changes: HashMap<&str, ParentChange<'_>>,
    stats: &mut ApplyStats,
) -> Result<(), EngineError> {
    let Some(parent) = child.parent else {
        return Ok(());
    };
    let counters = RequestCounters::default();
    // parent id → (version, children now, whether that list is complete)
    let mut current: Vec<(&str, i64, Vec<Value>, bool)> = Vec::new();
    let mut to_fetch = Vec::new();
    for (parent_id, change) in &changes {
        if change.deleted {
            current.push((parent_id, change.version, Vec::new(), true));
            continue;
        }
        let embedded = embedded_children(child, change.snapshot);
        let complete = !embedded.fetch_more || client.is_some();
        if embedded.fetch_more {
            to_fetch.push((
                current.len(),
                (*parent_id).to_string(),
                embedded.after.clone(),
            ));
        }
        current.push((parent_id, change.version, embedded.items, complete));
    }
    if let Some(client) = client {
        let fetched: Vec<(usize, Vec<Value>)> = futures::stream::iter(to_fetch)
            .map(|(i, parent_id, after)| {
                let counters = &counters;
                async move {
                    fetch_children(client, child, &parent_id, after, counters)
                        .await
                        .map(|items| (i, items))
                }
            })
            .buffer_unordered(CHILD_FETCH_CONCURRENCY)
            .try_collect()
            .await
            .map_err(EngineError::Stripe)?;
        for (i, items) in fetched {
            if let Some(entry) = current.get_mut(i) {
                entry.2.extend(items);
            }
        }
    } else if !to_fetch.is_empty() {
        tracing::warn!(
            data_type = child.name,
            parents = to_fetch.len(),
            "children beyond the embedded page cannot be fetched without a Stripe key; the next incremental run brings them"
        );
    }
    stats.types.entry(child.name).or_default().requests += counters.snapshot().requests;

    let mut rows = Vec::new();
    let mut removals: Vec<(String, i64, HashSet<String>)> = Vec::new();
    for (parent_id, version, items, complete) in current {
        let mut present = HashSet::new();
        for item in items {
            let Some(id) = item.get("id").and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            // A child names its parent; one that names another (or none) is not this
            // parent's, and would never be found again by `live_child_ids`.
            if parent_id_of(child, &item) != Some(parent_id) {
                tracing::debug!(
                    data_type = child.name,
                    id,
                    parent_id,
                    "child does not name its parent"
                );
            }
            present.insert(id.clone());
            rows.push(Row {
                id,
                object: item,
                version,
                deleted: false,
            });
        }
        if complete {
            removals.push((parent_id.to_string(), version, present));
        }
    }
    write_rows(dest, account_id, child, rows, stats).await?;
    for (parent_id, version, present) in removals {
        let live = dest
            .live_child_ids(child, account_id, parent.parent_column, &parent_id)
            .await?;
        let gone: Vec<String> = live
            .into_iter()
            .filter(|id| !present.contains(id))
            .collect();
        if gone.is_empty() {
            continue;
        }
        let n = dest.mark_deleted(child, account_id, &gone, version).await?;
        stats.types.entry(child.name).or_default().deleted += n;
    }
    Ok(())
}

/// Where the feed walk starts.
enum FeedStart<'a> {
    /// After this event (`ending_before` walks toward newer events).
    After(&'a str),
    /// From this second on (the account had no event when the cursor was taken).
    Since(i64),
}

/// How following the feed ended.
struct FeedOutcome {
    stats: ApplyStats,
    requests: u64,
    cursor: Option<EventsCursor>,
    /// A Stripe error that stopped the walk part-way (what was applied stays applied).
    error: Option<StripeError>,
    /// The cursor's event is gone from the feed: the run must be a full one.
    cursor_gone: bool,
}

fn is_missing(e: &StripeError) -> bool {
    matches!(e, StripeError::NotFound { .. }) || e.code() == Some("resource_missing")
}

/// Walks the events after `cursor` oldest first, applying each page and storing the cursor
/// after it, so an interrupted run re-applies at most one page.
async fn follow_feed(
    client: &StripeClient,
    dest: &dyn Destination,
    account_id: &str,
    types: &[&'static DataType],
    cursor: &EventsCursor,
) -> Result<FeedOutcome, EngineError> {
    let counters = RequestCounters::default();
    let mut out = FeedOutcome {
        stats: ApplyStats::default(),
        requests: 0,
        cursor: None,
        error: None,
        cursor_gone: false,
    };
    let type_names: Vec<String> = types.iter().map(|t| t.name.to_string()).collect();
    let mut position = Sequencer::after(cursor.created, cursor.rank);
    let start = match cursor.event_id.as_deref() {
        Some(id) => FeedStart::After(id),
        None => FeedStart::Since(cursor.created),
    };

    // Each item: the events of one page, oldest first.
    let pages: Vec<Vec<Value>> = match start {
        FeedStart::After(first) => {
            let mut before = first.to_string();
            let mut first_page = true;
            loop {
                let query = vec![
                    ("limit".to_string(), EVENTS_PAGE.to_string()),
                    ("ending_before".to_string(), before.clone()),
                ];
                let page = match client.list("/v1/events", &query, &counters).await {
                    Ok(p) => p,
                    Err(e) => {
                        out.cursor_gone = first_page && is_missing(&e);
                        if !out.cursor_gone {
                            out.error = Some(e);
                        }
                        break;
                    }
                };
                first_page = false;
                // `ending_before` pages hold the events just newer than the cursor, newest
                // first: the first one is where the next page starts.
                let Some(newest) = page
                    .data
                    .first()
                    .and_then(|e| e.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    break;
                };
                let mut data = page.data;
                data.reverse();
                apply_page(
                    client,
                    dest,
                    account_id,
                    types,
                    &type_names,
                    data,
                    &mut position,
                    &mut out,
                )
                .await?;
                if !page.has_more {
                    break;
                }
                before = newest;
            }
            Vec::new()
        }
        FeedStart::Since(second) => {
            // No event to stand on: list everything from that second, newest first, then
            // reverse. Happens once per account (its first events), so holding them is fine.
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut query = vec![
                    ("limit".to_string(), EVENTS_PAGE.to_string()),
                    ("created[gte]".to_string(), second.to_string()),
                ];
                if let Some(a) = &after {
                    query.push(("starting_after".to_string(), a.clone()));
                }
                match client.list("/v1/events", &query, &counters).await {
                    Ok(page) => {
                        after = page
                            .data
                            .last()
                            .and_then(|e| e.get("id"))
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        let more = page.has_more && after.is_some();
                        all.extend(page.data);
                        if !more {
                            break;
                        }
                    }
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                }
            }
            all.reverse();
            let mut pages = Vec::new();
            while !all.is_empty() {
                let rest = all.split_off(all.len().min(EVENTS_PAGE));
                pages.push(std::mem::replace(&mut all, rest));
            }
            pages
        }
    };
    if out.error.is_none() {
        for page in pages {
            apply_page(
                client,
                dest,
                account_id,
                types,
                &type_names,
                page,
                &mut position,
                &mut out,
            )
            .await?;
        }
    }
    out.requests = counters.snapshot().requests;
    Ok(out)
}

/// Applies one page (oldest first) and stores the cursor at its newest event.
#[allow(clippy::too_many_arguments)]
async fn apply_page(
    client: &StripeClient,
    dest: &dyn Destination,
    account_id: &str,
    types: &[&'static DataType],
    type_names: &[String],
    events: Vec<Value>,
    position: &mut Sequencer,
    out: &mut FeedOutcome,
) -> Result<(), EngineError> {
    let Some(newest) = events.last() else {
        return Ok(());
    };
    let newest_id = newest.get("id").and_then(Value::as_str).map(str::to_string);
    let stats = apply_events(
        Some(client),
        dest,
        account_id,
        types,
        &events,
        EventSource::Feed { after: *position },
    )
    .await?;
    if let Some(p) = stats.position {
        *position = p;
    }
    out.stats.add(stats);
    // Without an id the newest event cannot be a cursor; the next run re-applies the page,
    // which is harmless.
    if let Some(id) = newest_id {
        let cursor = EventsCursor {
            event_id: Some(id),
            created: position.second,
            types: type_names.to_vec(),
            rank: position.rank,
        };
        store_cursor(dest, account_id, &cursor).await?;
        out.cursor = Some(cursor);
    }
    Ok(())
}

/// Runs a sync in the requested mode.
pub async fn run_sync(
    client: &StripeClient,
    dest: Arc<dyn Destination>,
    options: &SyncOptions,
    mode: RequestedMode,
    progress: ProgressFn,
) -> Result<SyncReport, EngineError> {
    match mode {
        RequestedMode::Full => run_full_sync(client, dest, options, progress).await,
        RequestedMode::Incremental | RequestedMode::Auto => {
            run_incremental(client, dest, options, progress).await
        }
    }
}

/// Runs an incremental sync: the events since the stored cursor, applied oldest first; data
/// types events cannot follow from the cursor are copied in full first; without a usable
/// cursor (none, or older than the 30 days Stripe keeps events, or gone from the feed) the
/// whole run is a full sync. The summary's `notes` say which of these happened and why.
pub async fn run_incremental(
    client: &StripeClient,
    dest: Arc<dyn Destination>,
    options: &SyncOptions,
    progress: ProgressFn,
) -> Result<SyncReport, EngineError> {
    let started = Instant::now();
    let account_counters = RequestCounters::default();
    let account_id = open_run(client, dest.as_ref(), &options.types, &account_counters)
        .await?
        .id;
    let now = options
        .now
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    let stored = load_cursor(dest.as_ref(), &account_id).await?;

    let (cursor, follow, full) = match plan_incremental(stored.as_ref(), &options.types, now) {
        IncrementalPlan::Full { reason } => {
            return full_with_note(client, dest, options, progress, reason).await;
        }
        IncrementalPlan::Follow {
            cursor,
            follow,
            full,
        } => (cursor, follow, full),
    };

    let mut notes = Vec::new();
    let mut reports: HashMap<&'static str, TypeReport> = HashMap::new();
    let mut covered: Vec<&'static DataType> = follow.clone();
    if !full.is_empty() {
        let full_types: Vec<&'static DataType> = full.iter().map(|(t, _)| *t).collect();
        notes.extend(full.into_iter().map(|(_, reason)| reason));
        let report = run_full_sync(
            client,
            dest.clone(),
            &SyncOptions {
                types: full_types,
                ..options.clone()
            },
            progress.clone(),
        )
        .await?;
        for t in report.types {
            if t.succeeded() {
                if let Some(dt) = cls_catalog::find(t.data_type) {
                    covered.push(dt);
                }
            }
            reports.insert(t.data_type, t);
        }
        // The full sync stored its own cursor, covering only its types. The old cursor is a
        // valid position for them too (replaying older events is harmless), so it is put back
        // covering everything current: if this run stops now, the next one need not copy the
        // followed types in full.
        let mut back = cursor.clone();
        back.types = names_in_catalog_order(&covered);
        store_cursor(dest.as_ref(), &account_id, &back).await?;
    }
    let covered = in_catalog_order(&covered);

    for t in &follow {
        (progress)(Progress::Started { data_type: t.name });
    }
    let type_started = Instant::now();
    let outcome = follow_feed(client, dest.as_ref(), &account_id, &covered, &cursor).await?;
    if outcome.cursor_gone {
        let id = cursor.event_id.as_deref().unwrap_or("?");
        return full_with_note(
            client,
            dest,
            options,
            progress,
            format!(
                "the last sync's position in the events feed ({id}) is no longer in Stripe's \
                 events feed (events are kept 30 days), so every chosen data type is copied in full"
            ),
        )
        .await;
    }
    let seconds = type_started.elapsed().as_secs_f64();
    for t in &follow {
        let applied = outcome.stats.types.get(t.name).copied().unwrap_or_default();
        let status = match &outcome.error {
            None => TypeStatus::Succeeded,
            Some(e) => TypeStatus::Failed {
                error: format!("following the events feed stopped: {e}"),
                missing_permission: match e {
                    StripeError::PermissionDenied { permission, .. } => permission.clone(),
                    _ => None,
                },
            },
        };
        let report = TypeReport {
            status,
            objects: applied.objects,
            inserted: applied.inserted,
            updated: applied.updated,
            deleted: applied.deleted,
            requests: applied.requests,
            seconds,
            ..TypeReport::new(t.name)
        };
        (progress)(Progress::Finished(report.clone()));
        reports.insert(t.name, report);
    }
    // Types copied in full were also brought up to date by the feed: add what it did.
    for (name, applied) in &outcome.stats.types {
        if follow.iter().any(|t| t.name == *name) {
            continue;
        }
        if let Some(r) = reports.get_mut(name) {
            r.inserted += applied.inserted;
            r.updated += applied.updated;
            r.deleted += applied.deleted;
            r.requests += applied.requests;
        }
    }

    let types = options
        .types
        .iter()
        .filter_map(|t| reports.remove(t.name))
        .collect();
    let mut report = SyncReport::new(account_id, types, started.elapsed().as_secs_f64());
    report.mode = SyncMode::Incremental;
    let s = &outcome.stats;
    report.events = Some(EventsSummary {
        read: s.read,
        applied: s.applied,
        skipped_not_chosen: s.skipped(SkipReason::NotChosen),
        skipped_unknown: s.skipped(SkipReason::UnknownObject),
        skipped_malformed: s.skipped(SkipReason::Malformed),
        requests: outcome.requests + account_counters.snapshot().requests,
        cursor: outcome.cursor.and_then(|c| c.event_id).or(cursor.event_id),
    });
    report.notes = notes;
    Ok(report)
}

async fn full_with_note(
    client: &StripeClient,
    dest: Arc<dyn Destination>,
    options: &SyncOptions,
    progress: ProgressFn,
    reason: String,
) -> Result<SyncReport, EngineError> {
    tracing::info!(reason = %reason, "incremental sync falls back to a full sync");
    let mut report = run_full_sync(client, dest, options, progress).await?;
    report.notes.insert(0, reason);
    Ok(report)
}

fn in_catalog_order(types: &[&'static DataType]) -> Vec<&'static DataType> {
    cls_catalog::CATALOG
        .iter()
        .filter(|t| types.iter().any(|c| c.name == t.name))
        .collect()
}

fn names_in_catalog_order(types: &[&'static DataType]) -> Vec<String> {
    in_catalog_order(types)
        .iter()
        .map(|t| t.name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &str) -> Vec<&'static DataType> {
        cls_catalog::parse_list(list).expect("valid list")
    }

    fn cursor(created: i64, list: &str) -> EventsCursor {
        EventsCursor {
            event_id: Some("evt_1".into()),
            created,
            types: list.split(',').map(str::to_string).collect(),
            rank: 0,
        }
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn no_cursor_means_a_full_sync() {
        assert!(matches!(
            plan_incremental(None, &types("customers"), NOW),
            IncrementalPlan::Full { .. }
        ));
    }

    #[test]
    fn a_cursor_past_the_30_day_horizon_means_a_full_sync_that_says_why() {
        let old = cursor(NOW - 31 * 86_400, "customers");
        match plan_incremental(Some(&old), &types("customers"), NOW) {
            IncrementalPlan::Full { reason } => assert!(reason.contains("30 days"), "{reason}"),
            other => panic!("expected a full sync, got {other:?}"),
        }
        // Just inside the horizon but within the safety margin: full as well.
        let edge = cursor(NOW - EVENT_RETENTION_SECS + 60, "customers");
        assert!(matches!(
            plan_incremental(Some(&edge), &types("customers"), NOW),
            IncrementalPlan::Full { .. }
        ));
        let fresh = cursor(NOW - 29 * 86_400, "customers");
        assert!(matches!(
            plan_incremental(Some(&fresh), &types("customers"), NOW),
            IncrementalPlan::Follow { .. }
        ));
    }

    #[test]
    fn types_outside_the_cursor_or_without_events_are_copied_in_full() {
        let c = cursor(NOW - 60, "customers,invoices,invoice_line_items");
        let chosen = types("customers,invoices,invoice_line_items,charges,balance_transactions");
        match plan_incremental(Some(&c), &chosen, NOW) {
            IncrementalPlan::Follow { follow, full, .. } => {
                let f: Vec<_> = follow.iter().map(|t| t.name).collect();
                assert_eq!(f, vec!["customers", "invoices", "invoice_line_items"]);
                let full: Vec<_> = full.iter().map(|(t, _)| t.name).collect();
                assert_eq!(full, vec!["charges", "balance_transactions"]);
            }
            other => panic!("expected to follow, got {other:?}"),
        }
    }

    #[test]
    fn nothing_followable_means_a_full_sync() {
        let c = cursor(NOW - 60, "customers");
        assert!(matches!(
            plan_incremental(Some(&c), &types("balance_transactions,charges"), NOW),
            IncrementalPlan::Full { .. }
        ));
    }

    #[test]
    fn every_catalog_type_but_balance_transactions_is_followed_by_events() {
        let not: Vec<_> = cls_catalog::CATALOG
            .iter()
            .filter(|t| !followed_by_events(t))
            .map(|t| t.name)
            .collect();
        assert_eq!(not, vec!["balance_transactions"]);
    }
}
