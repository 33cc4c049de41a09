//! Destinations: where copied Stripe objects are written — PostgreSQL or SQLite — behind one
//! trait, [`Destination`].
//!
//! Layout:
//! - [`url`]: [`DatabaseUrl`], the parsed, password-masking database URL.
//! - [`error`]: [`DestinationError`], variants a caller acts on, messages that say the fix.
//! - [`ident`]: identifier quoting and schema-name rules.
//! - [`layout`]: what every table holds (common columns, indexes, batch de-duplication),
//!   shared by both backends.
//! - [`postgres`] and [`sqlite`]: one implementation each, owning its SQL.
//! - `copy_text`: the PostgreSQL `COPY … FROM STDIN` text-format encoder.
//!
//! Words used here:
//! - *row*: one Stripe object as stored: its `id`, the whole object (`data`), its *version* and
//!   whether it is deleted.
//! - *version*: the ordering key of a row (event time or fetch time, chosen by the engine). A
//!   write never replaces a row with an older or equal version: older snapshots arriving late
//!   (webhooks out of order, a backfill page fetched before an event) change nothing.
//! - *checkpoint*: how far a data type's backfill got in one `created` window (the list cursor,
//!   or done), committed in the same transaction as the rows it covers.
//! - *state*: small per-account key/value pairs (the events cursor).

pub mod error;
pub mod ident;
pub mod layout;
pub mod postgres;
pub mod sqlite;
pub mod url;

mod copy_text;

pub use error::DestinationError;
pub use url::{DatabaseKind, DatabaseUrl};

use cls_catalog::DataType;

/// One object to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Stripe id (`cus_…`); with the batch's account, the table's primary key (`(account_id, id)`:
    /// a platform and its connected accounts share one table).
    pub id: String,
    /// The whole object exactly as Stripe returned it; stored in `data`, typed columns are
    /// extracted from it.
    pub object: serde_json::Value,
    /// Ordering key: a row already stored with a version greater than or equal to this one is
    /// left alone.
    pub version: i64,
    /// Whether the object is deleted in Stripe (a `*.deleted` event's snapshot); sets
    /// `deleted_at` the first time.
    pub deleted: bool,
}

impl Row {
    /// The row made ready for `data_type`'s table: see [`PreparedRow`].
    pub fn prepare(self, data_type: &DataType) -> PreparedRow {
        PreparedRow {
            columns: data_type
                .columns
                .iter()
                .map(|c| c.extract(&self.object))
                .collect(),
            data: self.object.to_string(),
            id: self.id,
            version: self.version,
            deleted: self.deleted,
        }
    }
}

/// A [`Row`] made ready for its table: the object as JSON text and its typed column values.
///
/// Rows are prepared where they are made (by the walk that fetched the page, on any of the
/// runtime's threads), so what waits in queues and write sets is compact text — a parsed
/// object takes several times its JSON's size — and the one writer only streams it out.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRow {
    /// Stripe id.
    pub id: String,
    /// The whole object as compact JSON, stored in `data`.
    pub data: String,
    /// The data type's typed columns, in catalog order.
    pub columns: Vec<cls_catalog::ColumnValue>,
    /// Ordering key (see [`Row::version`]).
    pub version: i64,
    /// Whether the object is deleted in Stripe (see [`Row::deleted`]).
    pub deleted: bool,
}

/// Prepares every row for `data_type`'s table.
pub fn prepare_rows(data_type: &DataType, rows: Vec<Row>) -> Vec<PreparedRow> {
    rows.into_iter().map(|r| r.prepare(data_type)).collect()
}

/// Progress of one data type's backfill in one `created` window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The data type the window belongs to (`customers`).
    pub data_type: String,
    /// The window, as the engine names it (`1600000000..1600864000`).
    pub window: String,
    /// The list cursor (`starting_after`) to continue from, if any.
    pub cursor: Option<String>,
    /// Whether the window is complete.
    pub done: bool,
}

/// Rows of one data type and one account, written in one transaction together with an
/// optional checkpoint.
#[derive(Debug, Clone)]
pub struct Batch<'a> {
    /// The data type (and so the table) of every row.
    pub data_type: &'static DataType,
    /// The Stripe account the rows belong to.
    pub account_id: &'a str,
    /// The rows; the same id may appear more than once (the highest version wins).
    pub rows: Vec<Row>,
    /// Saved in the same transaction as the rows, so a crash never records progress for rows
    /// that were not stored (nor stores rows whose progress is lost, beyond re-fetching them).
    pub checkpoint: Option<Checkpoint>,
}

/// A change to the checkpoints, applied inside a [`WriteSet`]'s transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOp {
    /// Upserts one checkpoint (what [`Batch::checkpoint`] does).
    Save(Checkpoint),
    /// Removes the checkpoint of window `retired` (a missing one is fine) and saves the
    /// replacements (what [`Destination::replace_checkpoint`] does).
    Replace {
        /// The data type (checkpoint key) of the windows.
        data_type: String,
        /// Window text of the checkpoint to remove.
        retired: String,
        /// The checkpoints that take its place.
        replacements: Vec<Checkpoint>,
    },
}

/// Rows of several data types and checkpoint changes of one account, written in ONE
/// transaction: either all of it is stored or none of it.
///
/// A single writer receiving many small pages uses it to pay one transaction for many of
/// them; applying the set gives the same final state as applying its parts one by one in
/// order (rows first, then the checkpoint operations in order), because a checkpoint only
/// ever covers rows that came before it.
#[derive(Debug, Clone)]
pub struct WriteSet<'a> {
    /// The Stripe account every row and checkpoint belongs to.
    pub account_id: &'a str,
    /// Rows per data type, prepared for its table. A data type should appear at most once;
    /// if it appears again its rows are appended to the first entry's (so de-duplication sees
    /// them all).
    pub tables: Vec<(&'static DataType, Vec<PreparedRow>)>,
    /// Checkpoint changes, applied in order after every row is written.
    pub checkpoints: Vec<CheckpointOp>,
    /// Every row is new to its table: a first backfill into tables that were empty when it
    /// began. PostgreSQL then copies straight into the tables instead of through a staging
    /// table and an upsert; should a row exist after all, the set is written again the usual
    /// way, so the flag only ever changes speed.
    pub insert_only: bool,
}

impl WriteSet<'_> {
    /// Whether there is nothing to write (no row, no checkpoint change).
    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty() && self.tables.iter().all(|(_, rows)| rows.is_empty())
    }

    /// The tables with each data type once, rows of repeated entries appended in order.
    pub(crate) fn merged_tables(&self) -> Vec<(&'static DataType, Vec<&PreparedRow>)> {
        let mut out: Vec<(&'static DataType, Vec<&PreparedRow>)> =
            Vec::with_capacity(self.tables.len());
        for (data_type, rows) in &self.tables {
            match out.iter_mut().find(|(t, _)| t.name == data_type.name) {
                Some((_, existing)) => existing.extend(rows),
                None => out.push((data_type, rows.iter().collect())),
            }
        }
        out
    }
}

/// What one write did.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStats {
    /// Rows that were new.
    pub inserted: u64,
    /// Rows that replaced an older version.
    pub updated: u64,
    /// Rows left alone because an equal or newer version was already stored (or a newer one
    /// came in the same batch).
    pub skipped: u64,
}

impl std::ops::AddAssign for WriteStats {
    fn add_assign(&mut self, other: WriteStats) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.skipped += other.skipped;
    }
}

/// What `check` found out about the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// Engine.
    pub kind: DatabaseKind,
    /// Server version (`15.4 (Debian …)`, or SQLite's library version).
    pub server_version: String,
    /// Whether this connection is encrypted (always false for SQLite, a local file).
    pub tls: bool,
    /// Whether the user may create the schema (when missing) and tables in it.
    pub can_create: bool,
    /// Whether every table of the data types asked about exists and this user may read and
    /// write it ([`Destination::tables_ready`]): a sync works without `can_create`. `check`
    /// asks about no data type, so it leaves this false; Test Connection asks when the user
    /// may not create.
    pub tables_ready: bool,
    /// The schema tables go to (`main` for SQLite, which has no schemas).
    pub schema: String,
}

/// A row as stored, for reconciliation and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// Stripe id.
    pub id: String,
    /// The stored object (`data`).
    pub object: serde_json::Value,
    /// The stored version.
    pub version: i64,
    /// Soft-delete flag.
    pub deleted: bool,
    /// When the row was first marked deleted.
    pub deleted_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the row was last written.
    pub synced_at: chrono::DateTime<chrono::Utc>,
}

/// A database Codeless Sync writes to.
#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// Engine.
    fn kind(&self) -> DatabaseKind;

    /// The schema tables go to (`main` for SQLite).
    fn schema(&self) -> &str;

    /// The exact DDL `prepare` would run on an empty database (what a user can run by hand).
    fn create_tables_sql(&self, types: &[&'static DataType]) -> String;

    /// Reachable, version, TLS in use, and whether the schema and tables can be created
    /// (tried inside a transaction that is rolled back).
    async fn check(&self) -> Result<DatabaseInfo, DestinationError>;

    /// Whether a sync of `types` can run here without creating anything: every table
    /// `prepare` needs for them (the internal tables included) exists as it would make it
    /// (keyed by `(account_id, id)`, every catalog column), and this user may read and write
    /// each. True for tables made by hand from [`Destination::create_tables_sql`] by a user
    /// who may create them, with reading and writing granted to this one.
    async fn tables_ready(&self, types: &[&'static DataType]) -> Result<bool, DestinationError>;

    /// Creates the schema, the tables of `types` and the internal tables when missing, and
    /// adds catalog columns missing from existing tables. Never drops or retypes anything.
    async fn prepare(&self, types: &[&'static DataType]) -> Result<(), DestinationError>;

    /// Upserts the batch's rows and saves its checkpoint, in one transaction. A row whose
    /// stored version is greater than or equal to the new one is left alone. A write set of one
    /// table, so both backends share it.
    async fn write(&self, batch: Batch<'_>) -> Result<WriteStats, DestinationError> {
        let stats = self
            .write_set(&WriteSet {
                account_id: batch.account_id,
                tables: vec![(batch.data_type, prepare_rows(batch.data_type, batch.rows))],
                insert_only: false,
                checkpoints: batch
                    .checkpoint
                    .map(CheckpointOp::Save)
                    .into_iter()
                    .collect(),
            })
            .await?;
        Ok(stats.first().map(|(_, s)| *s).unwrap_or_default())
    }

    /// Writes a whole [`WriteSet`] in one transaction: every table's rows (each upserted as
    /// [`Destination::write`] does, with the same version guard and de-duplication), then the
    /// checkpoint operations in order. Any failure rolls back all of it. Returns the stats of
    /// each data type of the set, in the set's order (one entry per data type). An empty set
    /// opens no transaction.
    async fn write_set(
        &self,
        set: &WriteSet<'_>,
    ) -> Result<Vec<(&'static str, WriteStats)>, DestinationError>;

    /// Saved checkpoints of one data type, ordered by window.
    async fn checkpoints(
        &self,
        account_id: &str,
        data_type: &str,
    ) -> Result<Vec<Checkpoint>, DestinationError>;

    /// Replaces one checkpoint by others in one transaction: a window split in two, or a
    /// window handed over to smaller ones. `retired` is the window text of the checkpoint to
    /// remove (a missing one is fine).
    async fn replace_checkpoint(
        &self,
        account_id: &str,
        data_type: &str,
        retired: &str,
        replacements: &[Checkpoint],
    ) -> Result<(), DestinationError> {
        self.write_set(&WriteSet {
            account_id,
            tables: Vec::new(),
            insert_only: false,
            checkpoints: vec![CheckpointOp::Replace {
                data_type: data_type.to_string(),
                retired: retired.to_string(),
                replacements: replacements.to_vec(),
            }],
        })
        .await
        .map(|_| ())
    }

    /// Forgets the checkpoints of one data type (before a fresh full sync).
    async fn clear_checkpoints(
        &self,
        account_id: &str,
        data_type: &str,
    ) -> Result<(), DestinationError>;

    /// Whether the table of `data_type` holds any row (of any account).
    async fn has_rows(&self, data_type: &'static DataType) -> Result<bool, DestinationError>;

    /// Ids of the rows of `account_id` that are not deleted, sorted.
    async fn live_ids(
        &self,
        data_type: &'static DataType,
        account_id: &str,
    ) -> Result<Vec<String>, DestinationError>;

    /// Soft-deletes rows (`deleted = true`, `deleted_at = now`, version raised to `version`)
    /// unless they are already deleted or hold a newer version. Ids not stored are ignored.
    /// Returns how many rows were marked.
    async fn mark_deleted(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        ids: &[String],
        version: i64,
    ) -> Result<u64, DestinationError>;

    /// Soft-deletes every live row of `account_id` whose version is below `seen_since`: after
    /// a complete walk that wrote every object it saw with a version of at least `seen_since`,
    /// those rows are objects Stripe no longer lists (deleted longer ago than events are kept).
    /// The rows get `version`. Returns how many rows were marked.
    async fn mark_unseen_deleted(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        seen_since: i64,
        version: i64,
    ) -> Result<u64, DestinationError>;

    /// Every stored row of `account_id` in one table, sorted by id. Loads them all: meant for
    /// tests and small tables.
    async fn rows(
        &self,
        data_type: &'static DataType,
        account_id: &str,
    ) -> Result<Vec<StoredRow>, DestinationError>;

    /// A small per-account value (`events_cursor`).
    async fn get_state(
        &self,
        account_id: &str,
        key: &str,
    ) -> Result<Option<String>, DestinationError>;

    /// Sets a small per-account value.
    async fn set_state(
        &self,
        account_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), DestinationError>;

    /// Ids of the rows of a child data type (`invoice_line_items`) that belong to one parent
    /// (`parent_column` = `invoice` holds `parent_id`) and are not deleted, sorted. An
    /// incremental run compares them with the parent's current children to soft-delete the
    /// ones that were removed.
    async fn live_child_ids(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        parent_column: &str,
        parent_id: &str,
    ) -> Result<Vec<String>, DestinationError>;
}

/// Connects to the database the URL names. PostgreSQL: validates the schema name and opens
/// one connection first so a wrong host, password or database fails here with a precise
/// error; SQLite: opens (creating if missing) the file. Nothing is created in the database
/// until [`Destination::prepare`].
pub async fn connect(
    url: &DatabaseUrl,
    schema: &str,
) -> Result<Box<dyn Destination>, DestinationError> {
    match url.kind() {
        DatabaseKind::Postgres => Ok(Box::new(
            postgres::PgDestination::connect(url, schema).await?,
        )),
        DatabaseKind::Sqlite => Ok(Box::new(
            sqlite::SqliteDestination::connect(url, schema).await?,
        )),
    }
}
