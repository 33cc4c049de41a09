//! The SQLite destination: the same tables as PostgreSQL, with SQLite types, in the `main`
//! schema (SQLite has no schemas, so `--schema` is ignored and `main` is reported).
//!
//! Types: text → TEXT, bigint → INTEGER, boolean → INTEGER 0/1, timestamp → TEXT in RFC 3339
//! UTC (`2024-05-01T12:00:00Z`, sorts and compares as time), double → REAL, JSON → TEXT
//! holding JSON (`data` is the object exactly as given, `json_extract` works on it).
//!
//! The file is opened in WAL mode (readers never block the writer), created if missing, with a
//! busy timeout so concurrent writers wait instead of failing. Each batch is one
//! `BEGIN IMMEDIATE` transaction: taking the write lock up front makes the "what is already
//! stored" read and the upsert one consistent step, so the inserted/updated/skipped counts are
//! exact. A write set is one such transaction for all its tables and checkpoint operations.

use std::str::FromStr;
use std::time::Duration;

use cls_catalog::{ColumnKind, ColumnValue, DataType};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Executor as _, Row as _, Sqlite, Transaction};

use crate::error::{classify_sqlite, Action};
use crate::ident::quote;
use crate::layout::{
    dedupe, index_name, indexed_columns, timestamp_in_range, CHECKPOINTS_TABLE, COMMON_COLUMNS,
    STATE_TABLE,
};
use crate::{
    Checkpoint, CheckpointOp, DatabaseInfo, DatabaseKind, DatabaseUrl, Destination,
    DestinationError, PreparedRow, StoredRow, WriteSet, WriteStats,
};

/// How long a writer waits for another one to finish before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite database file (or `:memory:`).
pub struct SqliteDestination {
    pool: SqlitePool,
    /// The URL (SQLite URLs hold no secret), for messages.
    path: String,
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

impl SqliteDestination {
    /// Opens (creating if missing) the database file. `schema` is ignored: SQLite tables go
    /// to `main`.
    #[tracing::instrument(skip_all, fields(url = %url))]
    pub async fn connect(
        url: &DatabaseUrl,
        schema: &str,
    ) -> Result<SqliteDestination, DestinationError> {
        if schema != "main" && schema != "stripe" {
            tracing::info!(schema, "SQLite has no schemas; tables go to `main`");
        }
        let raw = url.expose();
        let in_memory = raw.contains(":memory:") || raw.contains("mode=memory");
        let mut opts = SqliteConnectOptions::from_str(raw)
            .map_err(|e| DestinationError::InvalidUrl {
                reason: format!("the SQLite URL {url} is not valid ({e})"),
                examples: "paste `sqlite://path/to/file.db`, `sqlite:///absolute/path.db` or `sqlite::memory:`",
            })?
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool_opts = if in_memory {
            // One connection that never closes: an in-memory database lives only as long as
            // its connections, and several connections sharing its cache would hit table
            // locks that the busy timeout does not cover.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable in WAL mode except for the last commits on power loss,
                // which a resumed run re-fetches anyway.
                .synchronous(SqliteSynchronous::Normal);
            SqlitePoolOptions::new().max_connections(4)
        };
        let path = url.to_string();
        let pool = pool_opts
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(opts)
            .await
            .map_err(|e| classify_sqlite(e, &path, Action::Connect))?;
        Ok(SqliteDestination { pool, path })
    }

    /// Upserts one checkpoint inside the caller's transaction.
    async fn save_checkpoint(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        account_id: &str,
        cp: &Checkpoint,
        now: &str,
    ) -> Result<(), DestinationError> {
        sqlx::query(&format!(
            "INSERT INTO {} (\"account_id\", \"data_type\", \"window\", \"cursor\", \"done\", \"updated_at\") \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (\"account_id\", \"data_type\", \"window\") \
             DO UPDATE SET \"cursor\" = excluded.\"cursor\", \"done\" = excluded.\"done\", \
             \"updated_at\" = excluded.\"updated_at\"",
            quote(CHECKPOINTS_TABLE)
        ))
        .bind(account_id)
        .bind(&cp.data_type)
        .bind(&cp.window)
        .bind(cp.cursor.as_deref())
        .bind(cp.done)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.fail(Action::Write(CHECKPOINTS_TABLE.into()), e))?;
        Ok(())
    }

    /// Upserts one data type's rows inside the caller's `BEGIN IMMEDIATE` transaction: reads
    /// the stored versions first (exact counts), then one guarded upsert per row that is new
    /// or newer.
    async fn upsert_rows(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        account_id: &str,
        data_type: &'static DataType,
        rows: Vec<&PreparedRow>,
        now: &str,
    ) -> Result<WriteStats, DestinationError> {
        let table = data_type.table();
        let action = || Action::Write(table.to_string());
        let received = rows.len() as u64;
        let (rows, _) = dedupe(rows);
        let mut stats = WriteStats::default();
        if !rows.is_empty() {
            let ids =
                serde_json::Value::from(rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>());
            let existing: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT \"id\", \"version\" FROM {} WHERE \"account_id\" = ? \
                 AND \"id\" IN (SELECT value FROM json_each(?))",
                quote(table)
            ))
            .bind(account_id)
            .bind(ids.to_string())
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| self.fail(action(), e))?;
            let existing: std::collections::HashMap<String, i64> = existing.into_iter().collect();

            let mut cols = vec![quote("id")];
            cols.extend(data_type.columns.iter().map(|c| quote(c.name)));
            cols.extend(COMMON_COLUMNS.iter().map(|c| quote(c)));
            let placeholders = vec!["?"; cols.len()].join(", ");
            let t = quote(table);
            let mut set: Vec<String> = data_type
                .columns
                .iter()
                .map(|c| format!("{0} = excluded.{0}", quote(c.name)))
                .collect();
            set.extend([
                "\"data\" = excluded.\"data\"".to_string(),
                "\"deleted\" = excluded.\"deleted\"".to_string(),
                format!(
                    "\"deleted_at\" = CASE WHEN excluded.\"deleted\" THEN COALESCE({t}.\"deleted_at\", excluded.\"deleted_at\") END"
                ),
                "\"synced_at\" = excluded.\"synced_at\"".to_string(),
                "\"version\" = excluded.\"version\"".to_string(),
            ]);
            let sql = format!(
                "INSERT INTO {t} ({}) VALUES ({placeholders}) ON CONFLICT (\"account_id\", \"id\") DO UPDATE SET {} \
                 WHERE {t}.\"version\" < excluded.\"version\"",
                cols.join(", "),
                set.join(", ")
            );
            for row in &rows {
                match existing.get(&row.id) {
                    None => stats.inserted += 1,
                    Some(&v) if v < row.version => stats.updated += 1,
                    Some(_) => continue,
                }
                let mut q = sqlx::query(&sql).bind(row.id.as_str());
                for value in &row.columns {
                    q = bind_value(q, value.clone());
                }
                q.bind(row.data.as_str())
                    .bind(account_id)
                    .bind(i64::from(row.deleted))
                    .bind(row.deleted.then_some(now))
                    .bind(now)
                    .bind(row.version)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| self.fail(action(), e))?;
            }
        }
        stats.skipped = received - stats.inserted - stats.updated;
        Ok(stats)
    }

    /// Applies one checkpoint operation inside the caller's transaction.
    async fn apply_checkpoint_op(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        account_id: &str,
        op: &CheckpointOp,
        now: &str,
    ) -> Result<(), DestinationError> {
        match op {
            CheckpointOp::Save(cp) => self.save_checkpoint(tx, account_id, cp, now).await,
            CheckpointOp::Replace {
                data_type,
                retired,
                replacements,
            } => {
                sqlx::query(&format!(
                    "DELETE FROM {} WHERE \"account_id\" = ? AND \"data_type\" = ? AND \"window\" = ?",
                    quote(CHECKPOINTS_TABLE)
                ))
                .bind(account_id)
                .bind(data_type.as_str())
                .bind(retired.as_str())
                .execute(&mut **tx)
                .await
                .map_err(|e| self.fail(Action::Write(CHECKPOINTS_TABLE.into()), e))?;
                for cp in replacements {
                    self.save_checkpoint(tx, account_id, cp, now).await?;
                }
                Ok(())
            }
        }
    }

    /// Classifies a driver error that happened during `action`.
    fn fail(&self, action: Action, e: sqlx::Error) -> DestinationError {
        classify_sqlite(e, &self.path, action)
    }

    async fn begin(
        &self,
        action: Action,
    ) -> Result<Transaction<'static, Sqlite>, DestinationError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.fail(action, e))
    }

    async fn try_create(&self) -> Result<bool, DestinationError> {
        let mut tx = match self
            .begin(Action::CreateTable("_cls_check_probe".into()))
            .await
        {
            Ok(tx) => tx,
            Err(DestinationError::PermissionDenied { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let outcome = tx
            .execute(sqlx::raw_sql(
                "CREATE TABLE \"_cls_check_probe\" (x INTEGER)",
            ))
            .await;
        let _ = tx.rollback().await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) => match self.fail(Action::CreateTable("_cls_check_probe".into()), e) {
                DestinationError::PermissionDenied { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

/// SQLite type of a catalog column kind.
pub fn sqlite_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text | ColumnKind::Timestamp | ColumnKind::Json => "TEXT",
        ColumnKind::BigInt | ColumnKind::Boolean => "INTEGER",
        ColumnKind::Double => "REAL",
    }
}

fn create_table_sql(data_type: &DataType) -> String {
    create_table_named_sql(data_type.table(), data_type)
}

/// `CREATE TABLE` for a data type's table under the name `table`.
fn create_table_named_sql(table: &str, data_type: &DataType) -> String {
    let mut cols = vec!["    \"id\" TEXT NOT NULL".to_string()];
    for c in data_type.columns {
        cols.push(format!("    {} {}", quote(c.name), sqlite_type(c.kind)));
    }
    cols.extend([
        "    \"data\" TEXT NOT NULL".to_string(),
        "    \"account_id\" TEXT NOT NULL".to_string(),
        "    \"deleted\" INTEGER NOT NULL DEFAULT 0".to_string(),
        "    \"deleted_at\" TEXT".to_string(),
        "    \"synced_at\" TEXT NOT NULL".to_string(),
        "    \"version\" INTEGER NOT NULL".to_string(),
        // Several Stripe accounts (a platform and its connected accounts) share one table, and
        // an id is only unique within its account.
        "    PRIMARY KEY (\"account_id\", \"id\")".to_string(),
    ]);
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n);\n",
        quote(table),
        cols.join(",\n")
    )
}

/// One column of an existing table, from `pragma_table_info`.
struct ExistingColumn {
    name: String,
    declared: String,
    not_null: bool,
    default: Option<String>,
    /// Position in the primary key (1-based), 0 when not part of it.
    pk: i64,
}

/// The statements that re-key a data type's table made before Stripe Connect (primary key
/// `id` alone, or none) by `(account_id, id)`, or `None` when it is keyed otherwise already.
///
/// SQLite cannot change a table's primary key in place, so the table is rebuilt: a new table
/// with every column of the old one exactly as declared (type, NOT NULL, default: nothing is
/// retyped), the catalog columns it lacked, and the new key; every row copied over; the old
/// table dropped, the new one renamed and its indexes made. It runs inside `prepare`'s
/// transaction: a failure leaves the old table as it was. No row is lost or changed: ids
/// unique on their own are unique with their account too.
fn rekey_sql(data_type: &DataType, existing: &[ExistingColumn]) -> Option<String> {
    let mut key: Vec<&ExistingColumn> = existing.iter().filter(|c| c.pk > 0).collect();
    key.sort_by_key(|c| c.pk);
    let key: Vec<&str> = key.iter().map(|c| c.name.as_str()).collect();
    if !(key.is_empty() || key == ["id"]) {
        return None;
    }
    let table = data_type.table();
    let staging = format!("_cls_rekey_{table}");
    let mut cols: Vec<String> = existing
        .iter()
        .map(|c| {
            let mut col = format!("    {} {}", quote(&c.name), c.declared);
            if c.not_null || c.pk > 0 {
                col.push_str(" NOT NULL");
            }
            if let Some(d) = &c.default {
                col.push_str(&format!(" DEFAULT {d}"));
            }
            col
        })
        .collect();
    let has = |name: &str| existing.iter().any(|c| c.name == name);
    for c in data_type.columns.iter().filter(|c| !has(c.name)) {
        cols.push(format!("    {} {}", quote(c.name), sqlite_type(c.kind)));
    }
    cols.push("    PRIMARY KEY (\"account_id\", \"id\")".to_string());
    let copied: Vec<String> = existing.iter().map(|c| quote(&c.name)).collect();
    let mut sql = format!(
        "DROP TABLE IF EXISTS {s};\nCREATE TABLE {s} (\n{}\n);\n",
        cols.join(",\n"),
        s = quote(&staging)
    );
    sql.push_str(&format!(
        "INSERT INTO {s} ({cols}) SELECT {cols} FROM {t};\nDROP TABLE {t};\nALTER TABLE {s} RENAME TO {t};\n",
        s = quote(&staging),
        t = quote(table),
        cols = copied.join(", "),
    ));
    for c in indexed_columns(data_type) {
        sql.push_str(&create_index_sql(table, c));
    }
    Some(sql)
}

fn create_index_sql(table: &str, column: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} ({});\n",
        quote(&index_name(table, column)),
        quote(table),
        quote(column)
    )
}

fn create_internal_tables_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {cp} (\n    \"account_id\" TEXT NOT NULL,\n    \
         \"data_type\" TEXT NOT NULL,\n    \"window\" TEXT NOT NULL,\n    \"cursor\" TEXT,\n    \
         \"done\" INTEGER NOT NULL DEFAULT 0,\n    \"updated_at\" TEXT NOT NULL,\n    \
         PRIMARY KEY (\"account_id\", \"data_type\", \"window\")\n);\n\
         CREATE TABLE IF NOT EXISTS {st} (\n    \"account_id\" TEXT NOT NULL,\n    \
         \"key\" TEXT NOT NULL,\n    \"value\" TEXT NOT NULL,\n    \"updated_at\" TEXT NOT NULL,\n    \
         PRIMARY KEY (\"account_id\", \"key\")\n);\n",
        cp = quote(CHECKPOINTS_TABLE),
        st = quote(STATE_TABLE),
    )
}

/// The full DDL for an empty database file.
pub fn create_tables_sql(types: &[&'static DataType]) -> String {
    let mut sql = create_internal_tables_sql();
    for t in types {
        sql.push('\n');
        sql.push_str(&create_table_sql(t));
        for c in indexed_columns(t) {
            sql.push_str(&create_index_sql(t.table(), c));
        }
    }
    sql
}

/// Now, as the RFC 3339 text stored in `synced_at`/`deleted_at` (milliseconds, so rows written
/// within one second still order).
fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn bind_value(q: SqliteQuery<'_>, value: ColumnValue) -> SqliteQuery<'_> {
    match value {
        ColumnValue::Null => q.bind(None::<String>),
        ColumnValue::Text(s) => q.bind(s),
        ColumnValue::Int(i) => q.bind(i),
        ColumnValue::Float(f) if f.is_finite() => q.bind(f),
        ColumnValue::Float(_) => q.bind(None::<f64>),
        ColumnValue::Bool(b) => q.bind(i64::from(b)),
        ColumnValue::Timestamp(t) if timestamp_in_range(t) => q.bind(cls_catalog::rfc3339(t)),
        ColumnValue::Timestamp(_) => q.bind(None::<String>),
        ColumnValue::Json(v) => q.bind(v.to_string()),
    }
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

#[async_trait::async_trait]
impl Destination for SqliteDestination {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Sqlite
    }

    fn schema(&self) -> &str {
        "main"
    }

    fn create_tables_sql(&self, types: &[&'static DataType]) -> String {
        create_tables_sql(types)
    }

    /// SQLite has no grants: a file where a table cannot be created is read-only, so no
    /// table in it can be written either.
    async fn tables_ready(&self, _types: &[&'static DataType]) -> Result<bool, DestinationError> {
        Ok(false)
    }

    async fn check(&self) -> Result<DatabaseInfo, DestinationError> {
        let server_version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(Action::Connect, e))?;
        Ok(DatabaseInfo {
            kind: DatabaseKind::Sqlite,
            server_version,
            tls: false,
            can_create: self.try_create().await?,
            tables_ready: false,
            schema: "main".into(),
        })
    }

    async fn prepare(&self, types: &[&'static DataType]) -> Result<(), DestinationError> {
        let mut tx = self
            .begin(Action::CreateTable(CHECKPOINTS_TABLE.into()))
            .await?;
        #[allow(clippy::type_complexity)]
        let info: Vec<(String, String, String, bool, Option<String>, i64)> = sqlx::query_as(
            "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.fail(Action::Read("sqlite_master".into()), e))?;
        let columns: Vec<(String, String)> = info
            .iter()
            .map(|(t, c, _, _, _, _)| (t.clone(), c.clone()))
            .collect();
        let has_table = |t: &str| columns.iter().any(|(table, _)| table == t);
        let has_column =
            |t: &str, c: &str| columns.iter().any(|(table, col)| table == t && col == c);

        let mut steps: Vec<(String, Action)> = Vec::new();
        if !has_table(CHECKPOINTS_TABLE) || !has_table(STATE_TABLE) {
            steps.push((
                create_internal_tables_sql(),
                Action::CreateTable(CHECKPOINTS_TABLE.into()),
            ));
        }
        for t in types {
            let table = t.table();
            let action = Action::CreateTable(table.into());
            if !has_table(table) {
                let mut sql = create_table_sql(t);
                for c in indexed_columns(t) {
                    sql.push_str(&create_index_sql(table, c));
                }
                steps.push((sql, action));
                continue;
            }
            let existing: Vec<ExistingColumn> = info
                .iter()
                .filter(|(t, _, _, _, _, _)| t == table)
                .map(
                    |(_, name, declared, not_null, default, pk)| ExistingColumn {
                        name: name.clone(),
                        declared: declared.clone(),
                        not_null: *not_null,
                        default: default.clone(),
                        pk: *pk,
                    },
                )
                .collect();
            if let Some(sql) = rekey_sql(t, &existing) {
                // The rebuilt table has every catalog column already.
                tracing::info!(
                    table,
                    "keying the table by (account_id, id) so several Stripe accounts can share it"
                );
                steps.push((sql, action));
                continue;
            }
            for c in t.columns {
                if has_column(table, c.name) {
                    continue;
                }
                let mut sql = format!(
                    "ALTER TABLE {} ADD COLUMN {} {};\n",
                    quote(table),
                    quote(c.name),
                    sqlite_type(c.kind)
                );
                if indexed_columns(t).contains(&c.name) {
                    sql.push_str(&create_index_sql(table, c.name));
                }
                tracing::info!(table, column = c.name, "adding a new catalog column");
                steps.push((sql, action.clone()));
            }
        }
        for (sql, action) in steps {
            tx.execute(sqlx::raw_sql(&sql))
                .await
                .map_err(|e| self.fail(action, e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.fail(Action::CreateTable(CHECKPOINTS_TABLE.into()), e))
    }

    async fn write_set(
        &self,
        set: &WriteSet<'_>,
    ) -> Result<Vec<(&'static str, WriteStats)>, DestinationError> {
        let tables = set.merged_tables();
        let mut out: Vec<(&'static str, WriteStats)> = tables
            .iter()
            .map(|(t, _)| (t.name, WriteStats::default()))
            .collect();
        if set.checkpoints.is_empty() && tables.iter().all(|(_, rows)| rows.is_empty()) {
            return Ok(out);
        }
        // Errors outside one table's statements (BEGIN, COMMIT) name the first table written.
        let first = tables
            .first()
            .map_or(CHECKPOINTS_TABLE, |(t, _)| t.table())
            .to_string();
        let now = now_text();
        let mut tx = self.begin(Action::Write(first.clone())).await?;
        for (i, (data_type, rows)) in tables.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            out[i].1 = self
                .upsert_rows(&mut tx, set.account_id, data_type, rows, &now)
                .await?;
        }
        for op in &set.checkpoints {
            self.apply_checkpoint_op(&mut tx, set.account_id, op, &now)
                .await?;
        }
        tx.commit()
            .await
            .map_err(|e| self.fail(Action::Write(first), e))?;
        Ok(out)
    }

    async fn checkpoints(
        &self,
        account_id: &str,
        data_type: &str,
    ) -> Result<Vec<Checkpoint>, DestinationError> {
        let rows: Vec<(String, String, Option<String>, bool)> = sqlx::query_as(&format!(
            "SELECT \"data_type\", \"window\", \"cursor\", \"done\" FROM {} \
             WHERE \"account_id\" = ? AND \"data_type\" = ?",
            quote(CHECKPOINTS_TABLE)
        ))
        .bind(account_id)
        .bind(data_type)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Read(CHECKPOINTS_TABLE.into()), e))?;
        let mut out: Vec<Checkpoint> = rows
            .into_iter()
            .map(|(data_type, window, cursor, done)| Checkpoint {
                data_type,
                window,
                cursor,
                done,
            })
            .collect();
        out.sort_by(|a, b| a.window.cmp(&b.window));
        Ok(out)
    }

    async fn clear_checkpoints(
        &self,
        account_id: &str,
        data_type: &str,
    ) -> Result<(), DestinationError> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE \"account_id\" = ? AND \"data_type\" = ?",
            quote(CHECKPOINTS_TABLE)
        ))
        .bind(account_id)
        .bind(data_type)
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Write(CHECKPOINTS_TABLE.into()), e))?;
        Ok(())
    }

    async fn has_rows(&self, data_type: &'static DataType) -> Result<bool, DestinationError> {
        let any: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {})",
            quote(data_type.table())
        ))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Read(data_type.table().into()), e))?;
        Ok(any)
    }

    async fn live_ids(
        &self,
        data_type: &'static DataType,
        account_id: &str,
    ) -> Result<Vec<String>, DestinationError> {
        let mut ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT \"id\" FROM {} WHERE \"account_id\" = ? AND NOT \"deleted\"",
            quote(data_type.table())
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Read(data_type.table().into()), e))?;
        ids.sort();
        Ok(ids)
    }

    async fn mark_deleted(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        ids: &[String],
        version: i64,
    ) -> Result<u64, DestinationError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let now = now_text();
        // Same rule as PostgreSQL: a deletion at the same version as the stored snapshot wins.
        let done = sqlx::query(&format!(
            "UPDATE {} SET \"deleted\" = 1, \"deleted_at\" = ?1, \"synced_at\" = ?1, \"version\" = ?2 \
             WHERE \"account_id\" = ?3 AND \"id\" IN (SELECT value FROM json_each(?4)) \
             AND NOT \"deleted\" AND \"version\" <= ?2",
            quote(data_type.table())
        ))
        .bind(now)
        .bind(version)
        .bind(account_id)
        .bind(serde_json::Value::from(ids.to_vec()).to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Write(data_type.table().into()), e))?;
        Ok(done.rows_affected())
    }

    async fn mark_unseen_deleted(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        seen_since: i64,
        version: i64,
    ) -> Result<u64, DestinationError> {
        let now = now_text();
        let done = sqlx::query(&format!(
            "UPDATE {} SET \"deleted\" = 1, \"deleted_at\" = ?1, \"synced_at\" = ?1, \"version\" = ?2 \
             WHERE \"account_id\" = ?3 AND NOT \"deleted\" AND \"version\" < ?4",
            quote(data_type.table())
        ))
        .bind(now)
        .bind(version)
        .bind(account_id)
        .bind(seen_since)
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Write(data_type.table().into()), e))?;
        Ok(done.rows_affected())
    }

    async fn rows(
        &self,
        data_type: &'static DataType,
        account_id: &str,
    ) -> Result<Vec<StoredRow>, DestinationError> {
        let action = || Action::Read(data_type.table().into());
        let raw = sqlx::query(&format!(
            "SELECT \"id\", \"data\", \"version\", \"deleted\", \"deleted_at\", \"synced_at\" \
             FROM {} WHERE \"account_id\" = ?",
            quote(data_type.table())
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(action(), e))?;
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let decoded = (|| -> Result<StoredRow, sqlx::Error> {
                let data: String = r.try_get("data")?;
                let deleted_at: Option<String> = r.try_get("deleted_at")?;
                let synced_at: String = r.try_get("synced_at")?;
                Ok(StoredRow {
                    id: r.try_get("id")?,
                    object: serde_json::from_str(&data)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    version: r.try_get("version")?,
                    deleted: r.try_get("deleted")?,
                    deleted_at: deleted_at.as_deref().map(parse_time).transpose()?,
                    synced_at: parse_time(&synced_at)?,
                })
            })();
            out.push(decoded.map_err(|e| self.fail(action(), e))?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn get_state(
        &self,
        account_id: &str,
        key: &str,
    ) -> Result<Option<String>, DestinationError> {
        sqlx::query_scalar(&format!(
            "SELECT \"value\" FROM {} WHERE \"account_id\" = ? AND \"key\" = ?",
            quote(STATE_TABLE)
        ))
        .bind(account_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Read(STATE_TABLE.into()), e))
    }

    async fn set_state(
        &self,
        account_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), DestinationError> {
        sqlx::query(&format!(
            "INSERT INTO {} (\"account_id\", \"key\", \"value\", \"updated_at\") VALUES (?, ?, ?, ?) \
             ON CONFLICT (\"account_id\", \"key\") DO UPDATE SET \"value\" = excluded.\"value\", \
             \"updated_at\" = excluded.\"updated_at\"",
            quote(STATE_TABLE)
        ))
        .bind(account_id)
        .bind(key)
        .bind(value)
        .bind(now_text())
        .execute(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Write(STATE_TABLE.into()), e))?;
        Ok(())
    }

    async fn live_child_ids(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        parent_column: &str,
        parent_id: &str,
    ) -> Result<Vec<String>, DestinationError> {
        let mut ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT \"id\" FROM {} WHERE \"account_id\" = ? AND {} = ? AND NOT \"deleted\"",
            quote(data_type.table()),
            quote(parent_column)
        ))
        .bind(account_id)
        .bind(parent_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(Action::Read(data_type.table().into()), e))?;
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection as _;

    #[test]
    fn ddl_uses_sqlite_types() {
        let customers = cls_catalog::find("customers").expect("customers");
        let sql = create_tables_sql(&[customers]);
        assert!(sql.contains("\"created\" TEXT"), "{sql}");
        assert!(sql.contains("\"delinquent\" INTEGER"), "{sql}");
        assert!(sql.contains("\"data\" TEXT NOT NULL"), "{sql}");
        assert!(!sql.contains("CREATE SCHEMA"), "{sql}");
    }

    #[tokio::test]
    async fn a_full_database_is_reported_as_disk_full() {
        // max_page_count makes SQLite answer SQLITE_FULL exactly as a full disk does.
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("memory db");
        sqlx::raw_sql("PRAGMA max_page_count = 3; CREATE TABLE t (x TEXT);")
            .execute(&mut conn)
            .await
            .expect("setup");
        let big = "x".repeat(100_000);
        let err = sqlx::query("INSERT INTO t VALUES (?)")
            .bind(big)
            .execute(&mut conn)
            .await
            .expect_err("full");
        let err = classify_sqlite(err, "test.db", Action::Write("t".into()));
        assert!(matches!(err, DestinationError::DiskFull { .. }), "{err:?}");
        assert!(err.to_string().contains("free space"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_directory_is_reported_with_the_path() {
        let url = DatabaseUrl::parse("sqlite:///nonexistent_dir_cls/sub/cls.db").expect("url");
        let err = match SqliteDestination::connect(&url, "main").await {
            Ok(_) => panic!("should fail"),
            Err(e) => e,
        };
        assert!(
            matches!(err, DestinationError::SqliteOpen { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("directory exists"), "{err}");
    }
}
