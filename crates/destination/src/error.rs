//! [`DestinationError`]: what went wrong with the database, as variants a caller acts on.
//!
//! Every message says what happened and what to do about it. Messages name the database by its
//! masked URL (`postgres://app:***@host/db`), never with the password; the driver's own text is
//! kept as the error's `source` for logs, but is only shown for errors that cannot contain
//! connection parameters (server messages and I/O errors).

use std::fmt;

/// An error from a destination database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DestinationError {
    /// The URL is not one we can use.
    #[error("invalid database URL: {reason}; {examples}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
        /// What to paste instead.
        examples: &'static str,
    },

    /// The schema name cannot be used.
    #[error(
        "invalid schema name {name:?}: {reason}; choose another name with --schema (default `stripe`)"
    )]
    InvalidSchemaName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The server could not be reached (refused, timed out, DNS, connection dropped).
    #[error(
        "cannot reach the database at {target}: {cause}; check that the server is running, \
         that host and port are right and that no firewall blocks the connection"
    )]
    Unreachable {
        /// The masked URL.
        target: String,
        /// Short, password-free description of the cause.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The user name or password was rejected.
    #[error(
        "the database at {target} rejected the user name or password: fix the credentials in \
         the database URL (for Supabase, use the database password, not the API key)"
    )]
    AuthFailed {
        /// The masked URL.
        target: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The database named in the URL does not exist.
    #[error(
        "the database named in {target} does not exist: create it (`CREATE DATABASE …`) or fix \
         the name at the end of the URL"
    )]
    DatabaseMissing {
        /// The masked URL.
        target: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The database user lacks a privilege.
    #[error("the database user {user:?} cannot {action}: {fix}")]
    PermissionDenied {
        /// The user we connected as.
        user: String,
        /// What we tried (`create schema "stripe"`).
        action: String,
        /// How to grant it, as SQL to run or an option to change.
        fix: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The URL asks for TLS (`sslmode=require`) but the server does not offer it.
    #[error(
        "the server at {target} refused TLS, but the URL requires it (sslmode=require/verify-*): \
         enable TLS on the server, or use `sslmode=prefer` or `sslmode=disable` only if the \
         network path is private"
    )]
    TlsRefused {
        /// The masked URL.
        target: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The server only accepts TLS connections and the URL disabled it.
    #[error(
        "the server at {target} only accepts TLS connections: add `?sslmode=require` to the \
         database URL"
    )]
    TlsRequired {
        /// The masked URL.
        target: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The TLS handshake failed (certificate not trusted, name mismatch, …).
    #[error(
        "the TLS handshake with {target} failed ({cause}): with sslmode=verify-ca/verify-full \
         pass the server's CA with `sslrootcert=…`, or use sslmode=require"
    )]
    TlsFailed {
        /// The masked URL.
        target: String,
        /// Short description of the cause.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The database's disk (or quota) is full; the batch was rolled back.
    #[error(
        "the database ran out of disk space while {context}; nothing from this batch was \
         kept: free space or grow the volume, then run again (the run resumes from its last \
         checkpoint)"
    )]
    DiskFull {
        /// What we were doing.
        context: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The database is busy, overloaded or restarting; retrying later may succeed.
    #[error("the database is busy while {context} ({cause}); it will be retried")]
    Busy {
        /// What we were doing.
        context: String,
        /// Short description of the cause.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// The SQLite file cannot be opened or created.
    #[error(
        "cannot open the SQLite database {path:?}: {cause}; check that its directory exists and \
         is writable"
    )]
    SqliteOpen {
        /// The file path from the URL.
        path: String,
        /// Short description of the cause.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },

    /// Any other SQL error.
    #[error("database error while {context}: {cause}")]
    Sql {
        /// What we were doing.
        context: String,
        /// Short, password-free description of the cause.
        cause: String,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
}

impl DestinationError {
    /// Whether a row that was to be new exists already (a unique violation).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DestinationError::Sql {
                source: sqlx::Error::Database(db),
                ..
            } => db.is_unique_violation(),
            _ => false,
        }
    }

    /// Whether trying the same operation again later may succeed without anyone changing
    /// anything (network blips, a busy or restarting server). Configuration and privilege
    /// problems are not retriable; a full disk needs a person.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            DestinationError::Unreachable { .. } | DestinationError::Busy { .. }
        )
    }
}

/// A short description of a driver error that cannot leak connection parameters: server
/// messages, I/O errors and protocol problems are shown; configuration errors (which may quote
/// the URL) are replaced by a fixed text.
pub(crate) fn safe_cause(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(tls) => tls.to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection".into(),
        sqlx::Error::PoolClosed => "the connection pool was closed".into(),
        sqlx::Error::Protocol(p) => format!("protocol error: {p}"),
        sqlx::Error::Configuration(_) => "invalid connection settings in the URL".into(),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::Decode(e) => format!("cannot decode a value: {e}"),
        sqlx::Error::RowNotFound => "no row found".into(),
        sqlx::Error::WorkerCrashed => "the database worker thread crashed".into(),
        other => other.to_string(),
    }
}

/// Where an error happened, so it can become the right variant with the right fix.
pub(crate) struct ErrorContext<'a> {
    /// The masked URL.
    pub target: &'a str,
    /// The user we connect as (PostgreSQL), for permission messages.
    pub user: &'a str,
    /// The database name (PostgreSQL), for `GRANT … ON DATABASE`.
    pub database: &'a str,
    /// The schema we write to.
    pub schema: &'a str,
}

/// What we were doing when an error happened; decides the wording and the fix of a
/// permission error.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Opening a connection.
    Connect,
    /// `CREATE SCHEMA`.
    CreateSchema,
    /// `CREATE TABLE`/`ALTER TABLE`/`CREATE INDEX` in the schema.
    CreateTable(String),
    /// Reading or writing rows of a table.
    Write(String),
    /// Reading.
    Read(String),
    /// Creating the per-transaction staging table for COPY.
    CreateTemp,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Connect => f.write_str("connecting"),
            Action::CreateSchema => f.write_str("creating the schema"),
            Action::CreateTable(t) => write!(f, "creating or altering table {t}"),
            Action::Write(t) => write!(f, "writing to {t}"),
            Action::Read(t) => write!(f, "reading {t}"),
            Action::CreateTemp => f.write_str("creating the temporary staging table"),
        }
    }
}

/// Quotes an identifier for the fix text a user copies into psql.
fn q(ident: &str) -> String {
    crate::ident::quote(ident)
}

/// Turns a PostgreSQL driver error into the variant a caller acts on.
pub(crate) fn classify_pg(
    err: sqlx::Error,
    ctx: &ErrorContext<'_>,
    action: Action,
) -> DestinationError {
    let target = ctx.target.to_string();
    if let sqlx::Error::Database(db) = &err {
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let message = db.message().to_string();
        match code.as_str() {
            "28P01" => {
                return DestinationError::AuthFailed {
                    target,
                    source: err,
                }
            }
            // 28000 covers pg_hba.conf refusals; "SSL off" means the server wants TLS.
            "28000" if message.contains("SSL off") || message.contains("no encryption") => {
                return DestinationError::TlsRequired {
                    target,
                    source: err,
                }
            }
            "28000" => {
                return DestinationError::AuthFailed {
                    target,
                    source: err,
                }
            }
            "3D000" => {
                return DestinationError::DatabaseMissing {
                    target,
                    source: err,
                }
            }
            "42501" => {
                let (action_text, fix) = permission_fix(ctx, &action);
                return DestinationError::PermissionDenied {
                    user: ctx.user.to_string(),
                    action: action_text,
                    fix,
                    source: err,
                };
            }
            // Read-only transaction (a replica, or default_transaction_read_only).
            "25006" => {
                return DestinationError::PermissionDenied {
                    user: ctx.user.to_string(),
                    action: action.to_string(),
                    fix: "the connection is read-only (a replica or \
                          default_transaction_read_only): point the URL at the primary"
                        .into(),
                    source: err,
                }
            }
            "53100" => {
                return DestinationError::DiskFull {
                    context: action.to_string(),
                    source: err,
                }
            }
            // Too many connections, out of memory, admin shutdown, cannot connect now,
            // serialization failure, deadlock: all transient.
            "53300" | "53200" | "57P01" | "57P02" | "57P03" | "40001" | "40P01" => {
                return DestinationError::Busy {
                    context: action.to_string(),
                    cause: message,
                    source: err,
                }
            }
            _ => {}
        }
    }
    match &err {
        sqlx::Error::Tls(_) => {
            let cause = safe_cause(&err);
            if cause.contains("does not support TLS") {
                DestinationError::TlsRefused {
                    target,
                    source: err,
                }
            } else {
                DestinationError::TlsFailed {
                    target,
                    cause,
                    source: err,
                }
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => DestinationError::Unreachable {
            target,
            cause: safe_cause(&err),
            source: err,
        },
        _ => DestinationError::Sql {
            context: action.to_string(),
            cause: safe_cause(&err),
            source: err,
        },
    }
}

/// The action text and the SQL that grants what is missing.
fn permission_fix(ctx: &ErrorContext<'_>, action: &Action) -> (String, String) {
    let user = q(ctx.user);
    let schema = q(ctx.schema);
    match action {
        Action::CreateSchema => (
            format!("create schema {schema}"),
            format!(
                "run `GRANT CREATE ON DATABASE {} TO {user};` as the database owner, or create \
                 the schema yourself (`CREATE SCHEMA {schema} AUTHORIZATION {user};`), or choose \
                 an existing schema the user may create tables in with --schema",
                q(ctx.database)
            ),
        ),
        Action::CreateTable(t) => (
            format!("create or alter table {schema}.{}", q(t)),
            format!(
                "run `GRANT USAGE, CREATE ON SCHEMA {schema} TO {user};` as the schema owner (an \
                 existing table must also be owned by {user}: `ALTER TABLE {schema}.{} OWNER TO \
                 {user};`), or create the tables yourself with the SQL from `cls check`",
                q(t)
            ),
        ),
        Action::Write(t) | Action::Read(t) => (
            format!("read and write {schema}.{}", q(t)),
            format!(
                "run `GRANT USAGE ON SCHEMA {schema} TO {user}; GRANT SELECT, INSERT, UPDATE, \
                 DELETE ON ALL TABLES IN SCHEMA {schema} TO {user};` as the schema owner"
            ),
        ),
        Action::CreateTemp => (
            "create temporary tables (needed to stage rows for COPY)".to_string(),
            format!(
                "run `GRANT TEMPORARY ON DATABASE {} TO {user};` as the database owner",
                q(ctx.database)
            ),
        ),
        Action::Connect => (
            format!("connect to database {}", q(ctx.database)),
            format!(
                "run `GRANT CONNECT ON DATABASE {} TO {user};` as the database owner",
                q(ctx.database)
            ),
        ),
    }
}

/// Turns a SQLite driver error into the variant a caller acts on.
pub(crate) fn classify_sqlite(err: sqlx::Error, path: &str, action: Action) -> DestinationError {
    if let sqlx::Error::Database(db) = &err {
        // Primary result code = low byte of the (extended) code sqlx reports.
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        match primary {
            // SQLITE_FULL
            Some(13) => {
                return DestinationError::DiskFull {
                    context: action.to_string(),
                    source: err,
                }
            }
            // SQLITE_BUSY, SQLITE_LOCKED
            Some(5) | Some(6) => {
                return DestinationError::Busy {
                    context: action.to_string(),
                    cause: safe_cause(&err),
                    source: err,
                }
            }
            // SQLITE_CANTOPEN
            Some(14) => {
                return DestinationError::SqliteOpen {
                    path: path.to_string(),
                    cause: safe_cause(&err),
                    source: err,
                }
            }
            // SQLITE_READONLY, SQLITE_PERM, SQLITE_AUTH
            Some(8) | Some(3) | Some(23) => {
                return DestinationError::PermissionDenied {
                    user: "(SQLite)".into(),
                    action: action.to_string(),
                    fix: format!(
                        "the file {path:?} is read-only for this process: make it and its \
                         directory writable (SQLite also writes `-wal` and `-shm` files beside it)"
                    ),
                    source: err,
                };
            }
            _ => {}
        }
    }
    if let sqlx::Error::Io(_) = &err {
        return DestinationError::SqliteOpen {
            path: path.to_string(),
            cause: safe_cause(&err),
            source: err,
        };
    }
    DestinationError::Sql {
        context: action.to_string(),
        cause: safe_cause(&err),
        source: err,
    }
}
