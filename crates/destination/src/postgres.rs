//! The PostgreSQL destination.
//!
//! Writes go `COPY … FROM STDIN` (text format, see `copy_text`) into a temporary staging
//! table created `ON COMMIT DROP` inside the batch's transaction, then one
//! `INSERT … SELECT … ON CONFLICT (account_id, id) DO UPDATE … WHERE t.version < EXCLUDED.version`, then the
//! checkpoint upsert, then `COMMIT`. A write set does the same for each of its tables in one
//! transaction, each table through its own staging table (`_cls_stage_0`, `_cls_stage_1`, …),
//! then its checkpoint operations: the fixed cost of a transaction (BEGIN, COMMIT's WAL flush)
//! is paid once for many pages.
//!
//! Transaction poolers (PgBouncer in transaction mode, Supabase's pooler) hand each
//! *transaction* to whichever server connection is free, so nothing may outlive a
//! transaction. What that required here:
//! - No named prepared statements: the statement cache is off
//!   (`statement_cache_capacity(0)`) and every query is `persistent(false)`, so sqlx uses the
//!   unnamed statement. (With the cache off but `persistent(true)`, sqlx 0.8 still names its
//!   statements, which then collide or go missing on a pooler.)
//! - Every statement runs inside an explicit transaction, reads included: sqlx prepares and
//!   executes in separate round trips, and only an open transaction keeps both on the same
//!   server connection.
//! - No `SET`, no session advisory locks, no `LISTEN`; the staging table is dropped at commit;
//!   `prepare` serializes with a transaction-scoped advisory lock.
//! - The `extra_float_digits` startup parameter sqlx sends by default is not sent (PgBouncer
//!   refuses unknown startup parameters unless configured to ignore them; PostgreSQL 12+
//!   already returns exact floats, and we never read floats back as text).

use std::str::FromStr;
use std::time::Duration;

use cls_catalog::{ColumnKind, ColumnValue, DataType};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor as _, PgConnection, Postgres, Row as _, Transaction};

use crate::copy_text::{text_for_postgres, CopyText};
use crate::error::{classify_pg, Action, ErrorContext};
use crate::ident::{quote, validate_schema};
use crate::layout::{
    dedupe, index_name, indexed_columns, timestamp_in_range, CHECKPOINTS_TABLE, COMMON_COLUMNS,
    STATE_TABLE,
};
use crate::{
    Checkpoint, CheckpointOp, DatabaseInfo, DatabaseKind, DatabaseUrl, Destination,
    DestinationError, PreparedRow, StoredRow, WriteSet, WriteStats,
};

/// How long opening a connection may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per destination: enough to overlap writes of a few data types, small enough for
/// a Supabase free tier or a shared PgBouncer.
pub const MAX_CONNECTIONS: u32 = 6;

/// COPY data is sent in pieces of about this size, so a batch never sits in memory twice.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// A PostgreSQL database and the schema the tables live in.
pub struct PgDestination {
    pool: PgPool,
    schema: String,
    /// Masked URL, for messages.
    target: String,
    /// User we connect as, for permission messages.
    user: String,
    /// Database name, for permission messages.
    database: String,
}

impl PgDestination {
    /// Opens one connection to verify host, credentials and database, then keeps a lazy pool.
    #[tracing::instrument(skip_all, fields(url = %url, schema = schema))]
    pub async fn connect(
        url: &DatabaseUrl,
        schema: &str,
    ) -> Result<PgDestination, DestinationError> {
        let schema = validate_schema(schema)?;
        let opts = PgConnectOptions::from_str(url.expose())
            .map_err(|_| DestinationError::InvalidUrl {
                // sqlx's message may quote the URL, so it is not shown.
                reason: format!(
                    "the connection settings in {url} are not valid (check the query parameters, \
                     e.g. sslmode=disable|prefer|require|verify-ca|verify-full)"
                ),
                examples: "see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING",
            })?
            .statement_cache_capacity(0)
            .extra_float_digits(None)
            .application_name("codeless-sync");
        let user = opts.get_username().to_string();
        let database = opts.get_database().unwrap_or(&user).to_string();
        let dest = PgDestination {
            pool: PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .min_connections(0)
                .acquire_timeout(CONNECT_TIMEOUT)
                .idle_timeout(Duration::from_secs(300))
                .connect_lazy_with(opts.clone()),
            schema,
            target: url.to_string(),
            user,
            database,
        };
        // The pool would retry I/O errors until its timeout and then report only "timed out";
        // one direct attempt gives the real cause (refused, bad password, no such database).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await;
        match probe {
            Ok(Ok(conn)) => {
                // Closing politely is best-effort: the server cleans up either way.
                let _ = conn.close().await;
                Ok(dest)
            }
            Ok(Err(e)) => Err(dest.fail(Action::Connect, e)),
            Err(_) => Err(DestinationError::Unreachable {
                target: dest.target.clone(),
                cause: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                source: sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            }),
        }
    }

    fn ctx(&self) -> ErrorContext<'_> {
        ErrorContext {
            target: &self.target,
            user: &self.user,
            database: &self.database,
            schema: &self.schema,
        }
    }

    /// Upserts one checkpoint inside the caller's transaction.
    async fn save_checkpoint(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        account_id: &str,
        cp: &Checkpoint,
    ) -> Result<(), DestinationError> {
        sqlx::query(&format!(
            "INSERT INTO {} (\"account_id\", \"data_type\", \"window\", \"cursor\", \"done\", \"updated_at\") \
             VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (\"account_id\", \"data_type\", \"window\") \
             DO UPDATE SET \"cursor\" = EXCLUDED.\"cursor\", \"done\" = EXCLUDED.\"done\", \"updated_at\" = now()",
            self.qualified(CHECKPOINTS_TABLE)
        ))
        .persistent(false)
        .bind(text_for_postgres(account_id).as_ref())
        .bind(text_for_postgres(&cp.data_type).as_ref())
        .bind(text_for_postgres(&cp.window).as_ref())
        .bind(cp.cursor.as_deref().map(text_for_postgres).as_deref())
        .bind(cp.done)
        .execute(&mut **tx)
        .await
        .map_err(|e| self.fail(Action::Write(CHECKPOINTS_TABLE.into()), e))?;
        Ok(())
    }

    /// Upserts one data type's rows inside the caller's transaction: `COPY` into the staging
    /// table `stage` (a temporary table dropped at commit, so nothing outlives the transaction
    /// on a pooler; each table of one transaction needs its own name), then one
    /// `INSERT … SELECT … ON CONFLICT` guarded by the version.
    async fn upsert_rows(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        account_id: &str,
        data_type: &'static DataType,
        rows: Vec<&PreparedRow>,
        stage: &str,
        insert_only: bool,
    ) -> Result<WriteStats, DestinationError> {
        let table = data_type.table();
        let action = || Action::Write(table.to_string());
        let received = rows.len() as u64;
        let (rows, _) = dedupe(rows);
        let mut stats = WriteStats::default();
        if insert_only && !rows.is_empty() {
            self.copy_into_table(tx, account_id, data_type, &rows)
                .await?;
            stats.inserted = rows.len() as u64;
        } else if !rows.is_empty() {
            let typed: Vec<String> = data_type.columns.iter().map(|c| quote(c.name)).collect();
            let mut stage_cols = vec!["\"id\" text".to_string()];
            stage_cols.extend(
                data_type
                    .columns
                    .iter()
                    .map(|c| format!("{} {}", quote(c.name), pg_type(c.kind))),
            );
            stage_cols.extend([
                "\"data\" jsonb".to_string(),
                "\"deleted\" boolean".to_string(),
                "\"version\" bigint".to_string(),
            ]);
            (&mut **tx)
                .execute(sqlx::raw_sql(&format!(
                    "CREATE TEMP TABLE {stage} ({}) ON COMMIT DROP",
                    stage_cols.join(", ")
                )))
                .await
                .map_err(|e| self.fail(Action::CreateTemp, e))?;

            let mut copy_cols = vec!["\"id\"".to_string()];
            copy_cols.extend(typed.iter().cloned());
            copy_cols.extend([
                "\"data\"".into(),
                "\"deleted\"".into(),
                "\"version\"".into(),
            ]);
            let mut copy = tx
                .copy_in_raw(&format!(
                    "COPY {stage} ({}) FROM STDIN",
                    copy_cols.join(", ")
                ))
                .await
                .map_err(|e| self.fail(action(), e))?;
            let mut out = CopyText::new();
            for row in &rows {
                out.text(&row.id);
                for value in &row.columns {
                    copy_value(&mut out, value);
                }
                out.json_text(&row.data);
                out.plain(if row.deleted { "t" } else { "f" });
                out.plain(&row.version.to_string());
                out.end_row();
                if out.len() >= COPY_CHUNK_BYTES {
                    copy.send(out.take())
                        .await
                        .map_err(|e| self.fail(action(), e))?;
                }
            }
            if out.len() > 0 {
                copy.send(out.take())
                    .await
                    .map_err(|e| self.fail(action(), e))?;
            }
            copy.finish().await.map_err(|e| self.fail(action(), e))?;

            let mut insert_cols = vec!["\"id\"".to_string()];
            insert_cols.extend(typed.iter().cloned());
            insert_cols.extend(COMMON_COLUMNS.iter().map(|c| quote(c)));
            let mut select_cols = vec!["\"id\"".to_string()];
            select_cols.extend(typed.iter().cloned());
            select_cols.extend([
                "\"data\"".to_string(),
                "$1".to_string(),
                "\"deleted\"".to_string(),
                "CASE WHEN \"deleted\" THEN now() END".to_string(),
                "now()".to_string(),
                "\"version\"".to_string(),
            ]);
            let mut set: Vec<String> = typed
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            set.extend([
            "\"data\" = EXCLUDED.\"data\"".to_string(),
            "\"deleted\" = EXCLUDED.\"deleted\"".to_string(),
            // Keep the first deletion time when a deleted object is seen again.
            "\"deleted_at\" = CASE WHEN EXCLUDED.\"deleted\" THEN COALESCE(t.\"deleted_at\", EXCLUDED.\"deleted_at\") END"
                .to_string(),
            "\"synced_at\" = EXCLUDED.\"synced_at\"".to_string(),
            "\"version\" = EXCLUDED.\"version\"".to_string(),
        ]);
            // xmax = 0 on the returned row means it was inserted, not updated; rows the
            // WHERE guard left alone are not returned at all.
            let sql = format!(
                "WITH up AS (INSERT INTO {target} AS t ({insert}) SELECT {select} FROM {stage} \
                 ON CONFLICT (\"account_id\", \"id\") DO UPDATE SET {set} WHERE t.\"version\" < EXCLUDED.\"version\" \
                 RETURNING (xmax = 0) AS inserted) \
                 SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up",
                target = self.qualified(table),
                insert = insert_cols.join(", "),
                select = select_cols.join(", "),
                set = set.join(", "),
            );
            let (inserted, updated): (i64, i64) = sqlx::query_as(&sql)
                .persistent(false)
                .bind(text_for_postgres(account_id).as_ref())
                .fetch_one(&mut **tx)
                .await
                .map_err(|e| self.fail(action(), e))?;
            stats.inserted = inserted.max(0) as u64;
            stats.updated = updated.max(0) as u64;
        }
        stats.skipped = received - stats.inserted - stats.updated;
        Ok(stats)
    }

    /// Copies rows straight into their table (no staging table, no upsert): for rows that are
    /// all new to it. A row that exists after all fails the COPY with a unique violation.
    async fn copy_into_table(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        account_id: &str,
        data_type: &'static DataType,
        rows: &[&PreparedRow],
    ) -> Result<(), DestinationError> {
        let action = || Action::Write(data_type.table().to_string());
        let mut cols = vec!["\"id\"".to_string()];
        cols.extend(data_type.columns.iter().map(|c| quote(c.name)));
        cols.extend(COMMON_COLUMNS.iter().map(|c| quote(c)));
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY {} ({}) FROM STDIN",
                self.qualified(data_type.table()),
                cols.join(", ")
            ))
            .await
            .map_err(|e| self.fail(action(), e))?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let account = text_for_postgres(account_id);
        let mut out = CopyText::new();
        for row in rows {
            out.text(&row.id);
            for value in &row.columns {
                copy_value(&mut out, value);
            }
            out.json_text(&row.data);
            out.text(&account);
            out.plain(if row.deleted { "t" } else { "f" });
            if row.deleted {
                out.plain(&now);
            } else {
                out.null();
            }
            out.plain(&now);
            out.plain(&row.version.to_string());
            out.end_row();
            if out.len() >= COPY_CHUNK_BYTES {
                copy.send(out.take())
                    .await
                    .map_err(|e| self.fail(action(), e))?;
            }
        }
        if out.len() > 0 {
            copy.send(out.take())
                .await
                .map_err(|e| self.fail(action(), e))?;
        }
        copy.finish().await.map_err(|e| self.fail(action(), e))?;
        Ok(())
    }

    /// Applies one checkpoint operation inside the caller's transaction.
    async fn apply_checkpoint_op(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        account_id: &str,
        op: &CheckpointOp,
    ) -> Result<(), DestinationError> {
        match op {
            CheckpointOp::Save(cp) => self.save_checkpoint(tx, account_id, cp).await,
            CheckpointOp::Replace {
                data_type,
                retired,
                replacements,
            } => {
                sqlx::query(&format!(
                    "DELETE FROM {} WHERE \"account_id\" = $1 AND \"data_type\" = $2 AND \"window\" = $3",
                    self.qualified(CHECKPOINTS_TABLE)
                ))
                .persistent(false)
                .bind(text_for_postgres(account_id).as_ref())
                .bind(text_for_postgres(data_type).as_ref())
                .bind(text_for_postgres(retired).as_ref())
                .execute(&mut **tx)
                .await
                .map_err(|e| self.fail(Action::Write(CHECKPOINTS_TABLE.into()), e))?;
                for cp in replacements {
                    self.save_checkpoint(tx, account_id, cp).await?;
                }
                Ok(())
            }
        }
    }

    /// One attempt at a write set, in one transaction.
    async fn write_set_once(
        &self,
        set: &WriteSet<'_>,
        insert_only: bool,
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
        let mut tx = self.begin(Action::Write(first.clone())).await?;
        for (i, (data_type, rows)) in tables.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let stage = format!("pg_temp.\"_cls_stage_{i}\"");
            out[i].1 = self
                .upsert_rows(
                    &mut tx,
                    set.account_id,
                    data_type,
                    rows,
                    &stage,
                    insert_only,
                )
                .await?;
        }
        for op in &set.checkpoints {
            self.apply_checkpoint_op(&mut tx, set.account_id, op)
                .await?;
        }
        tx.commit()
            .await
            .map_err(|e| self.fail(Action::Write(first), e))?;
        Ok(out)
    }

    /// Classifies a driver error that happened during `action`.
    fn fail(&self, action: Action, e: sqlx::Error) -> DestinationError {
        classify_pg(e, &self.ctx(), action)
    }

    /// `"schema"."table"`.
    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote(&self.schema), quote(table))
    }

    async fn begin(
        &self,
        action: Action,
    ) -> Result<Transaction<'static, Postgres>, DestinationError> {
        self.pool.begin().await.map_err(|e| self.fail(action, e))
    }

    /// Whether the user may create the schema (when missing) and a table in it; tried in a
    /// transaction that is rolled back.
    /// [`Destination::tables_ready`], read in `conn`: what `prepare` would find missing (it
    /// would have to create or alter something) or what a write would be refused.
    async fn tables_ready_in(
        &self,
        conn: &mut PgConnection,
        types: &[&'static DataType],
    ) -> Result<bool, DestinationError> {
        let read = |what: &str| Action::Read(what.into());
        if !schema_exists(conn, &self.schema)
            .await
            .map_err(|e| self.fail(read("pg_namespace"), e))?
        {
            return Ok(false);
        }
        // Writes stage rows in a temporary table, and every name needs USAGE on the schema.
        let (usage, temp): (bool, bool) = sqlx::query_as(
            "SELECT has_schema_privilege($1, 'USAGE'), \
             has_database_privilege(current_database(), 'TEMPORARY')",
        )
        .persistent(false)
        .bind(&self.schema)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| self.fail(read("pg_namespace"), e))?;
        if !usage || !temp {
            return Ok(false);
        }
        let columns = existing_columns(conn, &self.schema)
            .await
            .map_err(|e| self.fail(read("pg_attribute"), e))?;
        let keys = primary_keys(conn, &self.schema)
            .await
            .map_err(|e| self.fail(read("pg_constraint"), e))?;
        let has_column =
            |t: &str, c: &str| columns.iter().any(|(table, col)| table == t && col == c);
        let mut tables = vec![CHECKPOINTS_TABLE, STATE_TABLE];
        for t in types {
            let table = t.table();
            let complete = t.columns.iter().all(|c| has_column(table, c.name));
            if !complete || rekey_sql(&self.schema, table, &keys).is_some() {
                return Ok(false);
            }
            tables.push(table);
        }
        for table in tables {
            if !columns.iter().any(|(t, _)| t == table) {
                return Ok(false);
            }
            // has_table_privilege with a list is true when *any* is held: one at a time.
            for privilege in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
                let granted: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2)")
                    .persistent(false)
                    .bind(self.qualified(table))
                    .bind(privilege)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| self.fail(read(table), e))?;
                if !granted {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn try_create(&self) -> Result<bool, DestinationError> {
        let mut tx = self.begin(Action::Connect).await?;
        let exists = schema_exists(&mut tx, &self.schema)
            .await
            .map_err(|e| self.fail(Action::Read("pg_namespace".into()), e))?;
        let mut sql = String::new();
        if !exists {
            sql.push_str(&create_schema_sql(&self.schema));
        }
        sql.push_str(&format!(
            "CREATE TABLE {} (x integer);",
            self.qualified("_cls_check_probe")
        ));
        let outcome = tx.execute(sqlx::raw_sql(&sql)).await;
        // Rolling back is the point; a failure here only means the connection is gone, and
        // the pool discards it.
        let _ = tx.rollback().await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) => match self.fail(Action::CreateSchema, e) {
                DestinationError::PermissionDenied { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

/// PostgreSQL type of a catalog column kind.
pub fn pg_type(kind: ColumnKind) -> &'static str {
    match kind {
        ColumnKind::Text => "text",
        ColumnKind::BigInt => "bigint",
        ColumnKind::Boolean => "boolean",
        ColumnKind::Timestamp => "timestamptz",
        ColumnKind::Double => "double precision",
        ColumnKind::Json => "jsonb",
    }
}

fn create_schema_sql(schema: &str) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote(schema))
}

/// `CREATE TABLE` for a data type's table.
fn create_table_sql(schema: &str, data_type: &DataType) -> String {
    let mut cols = vec![format!("    {} text NOT NULL", quote("id"))];
    for c in data_type.columns {
        cols.push(format!("    {} {}", quote(c.name), pg_type(c.kind)));
    }
    cols.extend([
        "    \"data\" jsonb NOT NULL".to_string(),
        "    \"account_id\" text NOT NULL".to_string(),
        "    \"deleted\" boolean NOT NULL DEFAULT false".to_string(),
        "    \"deleted_at\" timestamptz".to_string(),
        "    \"synced_at\" timestamptz NOT NULL".to_string(),
        "    \"version\" bigint NOT NULL".to_string(),
        // Several Stripe accounts (a platform and its connected accounts) share one table, and
        // an id is only unique within its account.
        "    PRIMARY KEY (\"account_id\", \"id\")".to_string(),
    ]);
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (\n{}\n);\n",
        quote(schema),
        quote(data_type.table()),
        cols.join(",\n")
    )
}

fn create_index_sql(schema: &str, table: &str, column: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {}.{} ({});\n",
        quote(&index_name(table, column)),
        quote(schema),
        quote(table),
        quote(column)
    )
}

fn create_internal_tables_sql(schema: &str) -> String {
    let s = quote(schema);
    format!(
        "CREATE TABLE IF NOT EXISTS {s}.{cp} (\n    \"account_id\" text NOT NULL,\n    \
         \"data_type\" text NOT NULL,\n    \"window\" text NOT NULL,\n    \"cursor\" text,\n    \
         \"done\" boolean NOT NULL DEFAULT false,\n    \"updated_at\" timestamptz NOT NULL DEFAULT now(),\n    \
         PRIMARY KEY (\"account_id\", \"data_type\", \"window\")\n);\n\
         CREATE TABLE IF NOT EXISTS {s}.{st} (\n    \"account_id\" text NOT NULL,\n    \
         \"key\" text NOT NULL,\n    \"value\" text NOT NULL,\n    \
         \"updated_at\" timestamptz NOT NULL DEFAULT now(),\n    \
         PRIMARY KEY (\"account_id\", \"key\")\n);\n",
        cp = quote(CHECKPOINTS_TABLE),
        st = quote(STATE_TABLE),
    )
}

/// The full DDL for an empty database: schema, internal tables, then each table and its
/// indexes.
pub fn create_tables_sql(schema: &str, types: &[&'static DataType]) -> String {
    let mut sql = create_schema_sql(schema);
    sql.push('\n');
    sql.push_str(&create_internal_tables_sql(schema));
    for t in types {
        sql.push('\n');
        sql.push_str(&create_table_sql(schema, t));
        for c in indexed_columns(t) {
            sql.push_str(&create_index_sql(schema, t.table(), c));
        }
    }
    sql
}

async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .persistent(false)
        .bind(schema)
        .fetch_one(conn)
        .await
}

/// The primary key of every table in the schema that has one: (table, constraint name,
/// key columns in key order).
async fn primary_keys(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<(String, String, Vec<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.relname::text, con.conname::text, \
         ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.n) \
         FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
         JOIN pg_namespace ns ON ns.oid = c.relnamespace \
         WHERE ns.nspname = $1 AND con.contype = 'p'",
    )
    .persistent(false)
    .bind(schema)
    .fetch_all(conn)
    .await
}

/// The DDL that re-keys a data type's table made before Stripe Connect (primary key `id`
/// alone, or none) by `(account_id, id)`, or `None` when it is keyed so already (or by
/// something else the user chose, left alone).
///
/// No row is lost or changed: ids unique on their own are unique with their account too. The
/// old key's constraint is dropped and the new one added in one statement, inside `prepare`'s
/// transaction, so a failure (say an `account_id` that is NULL in a hand-made table) leaves
/// the table as it was and says why.
fn rekey_sql(schema: &str, table: &str, keys: &[(String, String, Vec<String>)]) -> Option<String> {
    let qualified = format!("{}.{}", quote(schema), quote(table));
    match keys.iter().find(|(t, _, _)| t == table) {
        Some((_, name, cols)) if cols.len() == 1 && cols[0] == "id" => Some(format!(
            "ALTER TABLE {qualified} DROP CONSTRAINT {}, ADD PRIMARY KEY (\"account_id\", \"id\");\n",
            quote(name)
        )),
        Some(_) => None,
        None => Some(format!(
            "ALTER TABLE {qualified} ADD PRIMARY KEY (\"account_id\", \"id\");\n"
        )),
    }
}

/// Existing columns of every table in the schema, as (table, column).
async fn existing_columns(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.relname::text, a.attname::text FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .persistent(false)
    .bind(schema)
    .fetch_all(conn)
    .await
}

/// Appends one typed value to the COPY buffer.
fn copy_value(out: &mut CopyText, value: &ColumnValue) {
    match value {
        ColumnValue::Null => out.null(),
        ColumnValue::Text(s) => out.text(s),
        ColumnValue::Int(i) => out.plain(&i.to_string()),
        ColumnValue::Float(f) if f.is_finite() => out.plain(&f.to_string()),
        ColumnValue::Float(_) => out.null(),
        ColumnValue::Bool(b) => out.plain(if *b { "t" } else { "f" }),
        ColumnValue::Timestamp(t) if timestamp_in_range(*t) => match cls_catalog::rfc3339(*t) {
            Some(s) => out.plain(&s),
            None => out.null(),
        },
        ColumnValue::Timestamp(_) => out.null(),
        ColumnValue::Json(v) => out.json(v),
    }
}

#[async_trait::async_trait]
impl Destination for PgDestination {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Postgres
    }

    fn schema(&self) -> &str {
        &self.schema
    }

    fn create_tables_sql(&self, types: &[&'static DataType]) -> String {
        create_tables_sql(&self.schema, types)
    }

    #[tracing::instrument(skip_all, fields(target = %self.target))]
    async fn check(&self) -> Result<DatabaseInfo, DestinationError> {
        let mut tx = self.begin(Action::Connect).await?;
        let (server_version, tls): (String, bool) = sqlx::query_as(
            "SELECT current_setting('server_version'), \
             COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
        )
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.fail(Action::Read("pg_stat_ssl".into()), e))?;
        let _ = tx.rollback().await;
        let can_create = self.try_create().await?;
        Ok(DatabaseInfo {
            kind: DatabaseKind::Postgres,
            server_version,
            tls,
            can_create,
            tables_ready: false,
            schema: self.schema.clone(),
        })
    }

    #[tracing::instrument(skip_all, fields(target = %self.target, schema = %self.schema))]
    async fn tables_ready(&self, types: &[&'static DataType]) -> Result<bool, DestinationError> {
        let mut tx = self.begin(Action::Connect).await?;
        let ready = self.tables_ready_in(&mut tx, types).await;
        let _ = tx.rollback().await;
        ready
    }

    #[tracing::instrument(skip_all, fields(target = %self.target, schema = %self.schema))]
    async fn prepare(&self, types: &[&'static DataType]) -> Result<(), DestinationError> {
        // All DDL in one transaction (PostgreSQL's DDL is transactional): a failure leaves
        // nothing half-made.
        let mut tx = self.begin(Action::Connect).await?;
        // Two runs preparing at once would race on CREATE TABLE IF NOT EXISTS (a unique
        // violation in pg_type); a transaction-scoped lock is safe through a pooler.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('cls_prepare'), hashtext($1))")
            .persistent(false)
            .bind(&self.schema)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.fail(Action::CreateSchema, e))?;

        let exists = schema_exists(&mut tx, &self.schema)
            .await
            .map_err(|e| self.fail(Action::Read("pg_namespace".into()), e))?;
        if !exists {
            tx.execute(sqlx::raw_sql(&create_schema_sql(&self.schema)))
                .await
                .map_err(|e| self.fail(Action::CreateSchema, e))?;
        }
        let columns = existing_columns(&mut tx, &self.schema)
            .await
            .map_err(|e| self.fail(Action::Read("pg_attribute".into()), e))?;
        let keys = primary_keys(&mut tx, &self.schema)
            .await
            .map_err(|e| self.fail(Action::Read("pg_constraint".into()), e))?;
        let has_table = |t: &str| columns.iter().any(|(table, _)| table == t);
        let has_column =
            |t: &str, c: &str| columns.iter().any(|(table, col)| table == t && col == c);

        // Only what is missing is created: an existing schema or table needs no CREATE
        // privilege, so tables made by hand from create_tables_sql work for a user without it.
        let mut steps: Vec<(String, Action)> = Vec::new();
        if !has_table(CHECKPOINTS_TABLE) || !has_table(STATE_TABLE) {
            steps.push((
                create_internal_tables_sql(&self.schema),
                Action::CreateTable(CHECKPOINTS_TABLE.into()),
            ));
        }
        for t in types {
            let table = t.table();
            let action = Action::CreateTable(table.into());
            if !has_table(table) {
                let mut sql = create_table_sql(&self.schema, t);
                for c in indexed_columns(t) {
                    sql.push_str(&create_index_sql(&self.schema, table, c));
                }
                steps.push((sql, action));
                continue;
            }
            if let Some(sql) = rekey_sql(&self.schema, table, &keys) {
                tracing::info!(
                    table,
                    "keying the table by (account_id, id) so several Stripe accounts can share it"
                );
                steps.push((sql, action.clone()));
            }
            for c in t.columns {
                if has_column(table, c.name) {
                    continue;
                }
                // New catalog column: add it (NULL for existing rows until they are synced
                // again); never drop or retype what is there.
                let mut sql = format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {};\n",
                    self.qualified(table),
                    quote(c.name),
                    pg_type(c.kind)
                );
                if indexed_columns(t).contains(&c.name) {
                    sql.push_str(&create_index_sql(&self.schema, table, c.name));
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
            .map_err(|e| self.fail(Action::CreateSchema, e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(tables = set.tables.len(), checkpoints = set.checkpoints.len()))]
    async fn write_set(
        &self,
        set: &WriteSet<'_>,
    ) -> Result<Vec<(&'static str, WriteStats)>, DestinationError> {
        if !set.insert_only {
            return self.write_set_once(set, false).await;
        }
        match self.write_set_once(set, true).await {
            Err(e) if e.is_unique_violation() => {
                // Should a row exist after all, the set is written again the usual way.
                tracing::info!(
                    "a row of an insert-only set existed already: writing it again with upserts"
                );
                self.write_set_once(set, false).await
            }
            other => other,
        }
    }

    async fn has_rows(&self, data_type: &'static DataType) -> Result<bool, DestinationError> {
        let action = || Action::Read(data_type.table().into());
        let mut tx = self.begin(action()).await?;
        let any: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {})",
            self.qualified(data_type.table())
        ))
        .persistent(false)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        Ok(any)
    }
    async fn checkpoints(
        &self,
        account_id: &str,
        data_type: &str,
    ) -> Result<Vec<Checkpoint>, DestinationError> {
        let action = || Action::Read(CHECKPOINTS_TABLE.into());
        let mut tx = self.begin(action()).await?;
        let rows: Vec<(String, String, Option<String>, bool)> = sqlx::query_as(&format!(
            "SELECT \"data_type\", \"window\", \"cursor\", \"done\" FROM {} \
             WHERE \"account_id\" = $1 AND \"data_type\" = $2",
            self.qualified(CHECKPOINTS_TABLE)
        ))
        .persistent(false)
        .bind(account_id)
        .bind(data_type)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        let mut out: Vec<Checkpoint> = rows
            .into_iter()
            .map(|(data_type, window, cursor, done)| Checkpoint {
                data_type,
                window,
                cursor,
                done,
            })
            .collect();
        // Sorted here rather than by ORDER BY, so both backends agree whatever the collation.
        out.sort_by(|a, b| a.window.cmp(&b.window));
        Ok(out)
    }

    async fn clear_checkpoints(
        &self,
        account_id: &str,
        data_type: &str,
    ) -> Result<(), DestinationError> {
        let action = || Action::Write(CHECKPOINTS_TABLE.into());
        let mut tx = self.begin(action()).await?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE \"account_id\" = $1 AND \"data_type\" = $2",
            self.qualified(CHECKPOINTS_TABLE)
        ))
        .persistent(false)
        .bind(account_id)
        .bind(data_type)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))
    }

    async fn live_ids(
        &self,
        data_type: &'static DataType,
        account_id: &str,
    ) -> Result<Vec<String>, DestinationError> {
        let action = || Action::Read(data_type.table().into());
        let mut tx = self.begin(action()).await?;
        let mut ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT \"id\" FROM {} WHERE \"account_id\" = $1 AND NOT \"deleted\"",
            self.qualified(data_type.table())
        ))
        .persistent(false)
        .bind(account_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
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
        let action = || Action::Write(data_type.table().into());
        let mut tx = self.begin(action()).await?;
        // `version <= $3`: a deletion decided at the same instant as the last snapshot wins,
        // because deletion is final in Stripe.
        let done = sqlx::query(&format!(
            "UPDATE {} SET \"deleted\" = true, \"deleted_at\" = now(), \"synced_at\" = now(), \
             \"version\" = $3 WHERE \"account_id\" = $1 AND \"id\" = ANY($2) AND NOT \"deleted\" \
             AND \"version\" <= $3",
            self.qualified(data_type.table())
        ))
        .persistent(false)
        .bind(account_id)
        .bind(ids)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        Ok(done.rows_affected())
    }

    async fn mark_unseen_deleted(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        seen_since: i64,
        version: i64,
    ) -> Result<u64, DestinationError> {
        let action = || Action::Write(data_type.table().into());
        let mut tx = self.begin(action()).await?;
        let done = sqlx::query(&format!(
            "UPDATE {} SET \"deleted\" = true, \"deleted_at\" = now(), \"synced_at\" = now(), \
             \"version\" = $3 WHERE \"account_id\" = $1 AND NOT \"deleted\" AND \"version\" < $2",
            self.qualified(data_type.table())
        ))
        .persistent(false)
        .bind(account_id)
        .bind(seen_since)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        Ok(done.rows_affected())
    }

    async fn rows(
        &self,
        data_type: &'static DataType,
        account_id: &str,
    ) -> Result<Vec<StoredRow>, DestinationError> {
        let action = || Action::Read(data_type.table().into());
        let mut tx = self.begin(action()).await?;
        let raw = sqlx::query(&format!(
            "SELECT \"id\", \"data\", \"version\", \"deleted\", \"deleted_at\", \"synced_at\" \
             FROM {} WHERE \"account_id\" = $1",
            self.qualified(data_type.table())
        ))
        .persistent(false)
        .bind(account_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let decoded = (|| -> Result<StoredRow, sqlx::Error> {
                Ok(StoredRow {
                    id: r.try_get("id")?,
                    object: r
                        .try_get::<sqlx::types::Json<serde_json::Value>, _>("data")?
                        .0,
                    version: r.try_get("version")?,
                    deleted: r.try_get("deleted")?,
                    deleted_at: r.try_get("deleted_at")?,
                    synced_at: r.try_get("synced_at")?,
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
        let action = || Action::Read(STATE_TABLE.into());
        let mut tx = self.begin(action()).await?;
        let value: Option<String> = sqlx::query_scalar(&format!(
            "SELECT \"value\" FROM {} WHERE \"account_id\" = $1 AND \"key\" = $2",
            self.qualified(STATE_TABLE)
        ))
        .persistent(false)
        .bind(account_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        Ok(value)
    }

    async fn set_state(
        &self,
        account_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), DestinationError> {
        let action = || Action::Write(STATE_TABLE.into());
        let mut tx = self.begin(action()).await?;
        sqlx::query(&format!(
            "INSERT INTO {} (\"account_id\", \"key\", \"value\", \"updated_at\") VALUES ($1, $2, $3, now()) \
             ON CONFLICT (\"account_id\", \"key\") DO UPDATE SET \"value\" = EXCLUDED.\"value\", \"updated_at\" = now()",
            self.qualified(STATE_TABLE)
        ))
        .persistent(false)
        .bind(account_id)
        .bind(key)
        .bind(text_for_postgres(value).as_ref())
        .execute(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))
    }

    async fn live_child_ids(
        &self,
        data_type: &'static DataType,
        account_id: &str,
        parent_column: &str,
        parent_id: &str,
    ) -> Result<Vec<String>, DestinationError> {
        let action = || Action::Read(data_type.table().into());
        let mut tx = self.begin(action()).await?;
        let mut ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT \"id\" FROM {} WHERE \"account_id\" = $1 AND {} = $2 AND NOT \"deleted\"",
            self.qualified(data_type.table()),
            quote(parent_column)
        ))
        .persistent(false)
        .bind(account_id)
        .bind(parent_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.fail(action(), e))?;
        tx.commit().await.map_err(|e| self.fail(action(), e))?;
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgSslMode;

    #[test]
    fn ddl_quotes_identifiers_and_uses_postgres_types() {
        let customers = cls_catalog::find("customers").expect("customers");
        let sql = create_tables_sql("my \"odd\" schema", &[customers]);
        assert!(
            sql.contains("CREATE SCHEMA IF NOT EXISTS \"my \"\"odd\"\" schema\";"),
            "{sql}"
        );
        assert!(sql.contains("\"created\" timestamptz"), "{sql}");
        assert!(sql.contains("\"metadata\" jsonb"), "{sql}");
        assert!(sql.contains("\"balance\" bigint"), "{sql}");
        assert!(sql.contains("\"window\" text NOT NULL"), "{sql}");
        assert!(
            sql.contains("CREATE INDEX IF NOT EXISTS \"customers_account_id_idx\""),
            "{sql}"
        );
    }

    #[test]
    fn copy_values_are_formatted_for_postgres() {
        let mut out = CopyText::new();
        copy_value(&mut out, &ColumnValue::Timestamp(1_700_000_000));
        copy_value(&mut out, &ColumnValue::Timestamp(i64::MAX / 1_000_000));
        copy_value(&mut out, &ColumnValue::Float(0.1));
        copy_value(&mut out, &ColumnValue::Bool(true));
        out.end_row();
        let line = String::from_utf8(out.take()).expect("utf8");
        assert_eq!(line, "2023-11-14T22:13:20Z\t\\N\t0.1\tt\n");
    }

    #[test]
    fn sslmode_require_is_understood() {
        let opts = PgConnectOptions::from_str("postgres://u@h/db?sslmode=require").expect("opts");
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::Require));
    }
}
