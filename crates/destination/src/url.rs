//! [`DatabaseUrl`]: the one place a database URL is parsed and its password kept secret.
//!
//! Accepted forms: `postgres://…` and `postgresql://…` (any query, e.g. `?sslmode=require`),
//! `sqlite://relative/path.db`, `sqlite:///absolute/path.db` and `sqlite::memory:`. Anything
//! else is rejected with a message that shows what to paste. The URL text is a
//! [`secrecy::SecretString`]; [`Display`](std::fmt::Display) and [`Debug`] print it with the
//! password replaced by `***`, and only [`DatabaseUrl::expose`] hands out the real text, for
//! building a connection.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::DestinationError;

/// Which database engine a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseKind {
    /// PostgreSQL (also through PgBouncer/Supabase poolers).
    Postgres,
    /// SQLite, a file or `:memory:`.
    Sqlite,
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatabaseKind::Postgres => "PostgreSQL",
            DatabaseKind::Sqlite => "SQLite",
        })
    }
}

/// A validated database URL whose password never shows up in logs or messages.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// The URL exactly as given (trimmed); secret because it may hold a password.
    secret: SecretString,
    /// The URL with any password replaced by `***`, computed once at parse time.
    masked: String,
    /// Engine the URL points at.
    kind: DatabaseKind,
}

/// What to paste, shown with every parse error.
const EXAMPLES: &str = "paste a URL like `postgres://user:password@host:5432/dbname` \
     (add `?sslmode=require` for TLS) or `sqlite://path/to/file.db` (`sqlite:///absolute/path.db`, \
     `sqlite::memory:`)";

impl DatabaseUrl {
    /// Parses a database URL; see the module doc for the accepted forms.
    pub fn parse(raw: &str) -> Result<DatabaseUrl, DestinationError> {
        let trimmed = raw.trim();
        let invalid = |reason: String| DestinationError::InvalidUrl {
            reason,
            examples: EXAMPLES,
        };
        if trimmed.is_empty() {
            return Err(invalid("the database URL is empty".into()));
        }
        let scheme = trimmed
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "postgres" | "postgresql" => {
                let parsed = url::Url::parse(trimmed).map_err(|e| {
                    // The url crate's messages never echo the input, so no password leaks.
                    invalid(format!("not a valid PostgreSQL URL ({e})"))
                })?;
                if parsed.host_str().is_none_or(str::is_empty)
                    && !parsed.query_pairs().any(|(k, _)| k == "host")
                {
                    return Err(invalid("the PostgreSQL URL has no host".into()));
                }
                Ok(DatabaseUrl {
                    masked: mask_postgres(&parsed),
                    secret: SecretString::from(trimmed.to_string()),
                    kind: DatabaseKind::Postgres,
                })
            }
            "sqlite" => {
                let path = trimmed
                    .strip_prefix("sqlite://")
                    .or_else(|| trimmed.strip_prefix("sqlite:"))
                    .unwrap_or_default();
                let path = path.split('?').next().unwrap_or_default();
                if path.is_empty() {
                    return Err(invalid("the SQLite URL has no file path".into()));
                }
                Ok(DatabaseUrl {
                    masked: trimmed.to_string(),
                    secret: SecretString::from(trimmed.to_string()),
                    kind: DatabaseKind::Sqlite,
                })
            }
            "" => Err(invalid("the database URL has no scheme".into())),
            "mysql" | "mariadb" | "mssql" | "sqlserver" => Err(invalid(format!(
                "{scheme} is not supported; Codeless Sync writes to PostgreSQL or SQLite"
            ))),
            other => Err(invalid(format!("unknown scheme `{other}:`"))),
        }
    }

    /// The engine this URL points at.
    pub fn kind(&self) -> DatabaseKind {
        self.kind
    }

    /// The real URL, password included. Only for building a connection.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The URL with the password replaced by `***` (same as `Display`).
    pub fn masked(&self) -> &str {
        &self.masked
    }
}

impl FromStr for DatabaseUrl {
    type Err = DestinationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatabaseUrl::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.masked).finish()
    }
}

/// Replaces the password (in the authority and in a `password=` query parameter) with `***`.
fn mask_postgres(parsed: &url::Url) -> String {
    let mut masked = parsed.clone();
    if masked.password().is_some() {
        // set_password only fails for URLs that cannot have one, which a parsed
        // postgres:// URL with a password can.
        let _ = masked.set_password(Some("***"));
    }
    if masked.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = masked
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        masked.query_pairs_mut().clear().extend_pairs(pairs);
    }
    masked.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> DatabaseUrl {
        DatabaseUrl::parse(raw).unwrap_or_else(|e| panic!("{raw} should parse: {e}"))
    }

    #[test]
    fn postgres_urls_parse_and_mask_the_password() {
        let u = ok("postgres://app:s3cr3t@db.example.com:6543/postgres?sslmode=require");
        assert_eq!(u.kind(), DatabaseKind::Postgres);
        assert_eq!(
            u.to_string(),
            "postgres://app:***@db.example.com:6543/postgres?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("s3cr3t"));
        assert!(u.expose().contains("s3cr3t"));
        let u = ok("postgresql://app@localhost/db");
        assert_eq!(u.to_string(), "postgresql://app@localhost/db");
        let u = ok("postgres://app@localhost/db?password=hunter2&sslmode=disable");
        assert!(!u.to_string().contains("hunter2"), "{u}");
        assert!(u.to_string().contains("sslmode=disable"));
    }

    #[test]
    fn sqlite_urls_parse() {
        for raw in [
            "sqlite://data/cls.db",
            "sqlite:///tmp/cls.db",
            "sqlite::memory:",
            "sqlite:cls.db",
        ] {
            assert_eq!(ok(raw).kind(), DatabaseKind::Sqlite, "{raw}");
            assert_eq!(ok(raw).to_string(), raw);
        }
    }

    #[test]
    fn other_urls_are_rejected_with_what_to_paste() {
        for raw in [
            "",
            "   ",
            "mysql://u:p@h/db",
            "http://example.com",
            "localhost:5432",
            "sqlite://",
            "postgres://",
            "/tmp/file.db",
        ] {
            let err = DatabaseUrl::parse(raw).expect_err(raw).to_string();
            assert!(
                err.contains("postgres://user:password@host"),
                "{raw}: {err}"
            );
            assert!(err.contains("sqlite://"), "{raw}: {err}");
        }
        let err = DatabaseUrl::parse("mysql://u:topsecret@h/db")
            .expect_err("mysql")
            .to_string();
        assert!(!err.contains("topsecret"), "{err}");
    }

    /// The URL (and so its password) is held in a type that zeroes it on drop (stops
    /// compiling otherwise).
    #[test]
    fn the_url_is_held_where_it_is_zeroed_on_drop() {
        fn zeroed_on_drop<T: zeroize::ZeroizeOnDrop + ?Sized>(_: &T) {}
        zeroed_on_drop(&ok("postgres://app:s3cr3t@db.example.com/x").secret);
    }
}
