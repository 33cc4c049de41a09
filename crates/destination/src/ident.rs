//! SQL identifiers: quoting, and the rules a schema name must follow.
//!
//! Every identifier we put in SQL is double-quoted with embedded `"` doubled, so schema names
//! with spaces, quotes or upper case are safe and kept exactly. The few names PostgreSQL itself
//! would refuse are rejected up front with a clear message instead of a server error.

use crate::DestinationError;

/// Quotes an identifier for PostgreSQL and SQLite (`a"b` → `"a""b"`).
pub fn quote(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A string literal for SQL text shown to users (`it's` → `'it''s'`).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1), which
/// would silently create a schema with a different name than asked.
pub const MAX_IDENT_BYTES: usize = 63;

/// Checks a PostgreSQL schema name; returns it unchanged when usable.
pub fn validate_schema(name: &str) -> Result<String, DestinationError> {
    let reject = |reason: &'static str| DestinationError::InvalidSchemaName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(reject("it is empty"));
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(reject("PostgreSQL names are at most 63 bytes long"));
    }
    if name.contains('\0') {
        return Err(reject("it contains a NUL character"));
    }
    if name.trim() != name {
        return Err(reject("it starts or ends with whitespace"));
    }
    if name.to_ascii_lowercase().starts_with("pg_") {
        return Err(reject(
            "names starting with `pg_` are reserved by PostgreSQL",
        ));
    }
    if name == "information_schema" {
        return Err(reject("it is PostgreSQL's system catalog"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote("stripe"), "\"stripe\"");
        assert_eq!(quote("we\"ird name"), "\"we\"\"ird name\"");
        assert_eq!(literal("it's"), "'it''s'");
    }

    #[test]
    fn schema_names() {
        for good in ["stripe", "Stripe Data", "a\"b", "données", "x;drop table y"] {
            assert_eq!(validate_schema(good).expect(good), good);
        }
        for bad in [
            "",
            " stripe",
            "pg_stripe",
            "PG_x",
            "information_schema",
            "a\0b",
        ] {
            let err = validate_schema(bad).expect_err(bad).to_string();
            assert!(err.contains("--schema"), "{err}");
        }
        assert!(validate_schema(&"x".repeat(64)).is_err());
        assert!(validate_schema(&"x".repeat(63)).is_ok());
    }
}
