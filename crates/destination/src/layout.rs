//! What every destination table holds, independent of the SQL dialect.
//!
//! A data type's table has `id`, the catalog's typed columns, then the common columns below.
//! Both backends build their DDL and their writes from these lists, so a column added here or
//! in the catalog reaches PostgreSQL and SQLite alike.

use std::collections::HashMap;

use cls_catalog::DataType;

use crate::PreparedRow;

/// Columns every table has after the typed ones, in table order. Names only; each backend
/// gives them its own types.
pub const COMMON_COLUMNS: &[&str] = &[
    "data",
    "account_id",
    "deleted",
    "deleted_at",
    "synced_at",
    "version",
];

/// Internal table holding backfill checkpoints.
pub const CHECKPOINTS_TABLE: &str = "_cls_checkpoints";

/// Internal table holding per-account key/value state.
pub const STATE_TABLE: &str = "_cls_state";

/// Columns worth an index: the ones reconciliation filters on (`account_id`), the ones people
/// join on (`customer`, a child's parent column) and `created` for time ranges.
pub fn indexed_columns(data_type: &DataType) -> Vec<&'static str> {
    let mut cols = vec!["account_id"];
    let parent_col = data_type.parent.map(|p| p.parent_column);
    for c in data_type.columns {
        if c.name == "customer" || c.name == "created" || Some(c.name) == parent_col {
            cols.push(c.name);
        }
    }
    cols
}

/// Name of the index on `table(column)`; kept under PostgreSQL's 63-byte limit.
pub fn index_name(table: &str, column: &str) -> String {
    let name = format!("{table}_{column}_idx");
    if name.len() <= crate::ident::MAX_IDENT_BYTES {
        name
    } else {
        // Not reached with today's catalog (a test checks); keeps names unique if it grows.
        let mut short: String = name.chars().take(50).collect();
        short.push_str(&format!("_{:x}", fnv(&name) & 0xfff_ffff));
        short
    }
}

/// Tiny stable hash for index names (std's hasher is randomly seeded per process).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Keeps one row per id: the highest version, the earliest of equal ones (the database keeps
/// the first of equal versions too). Order of first appearance is kept. Returns the rows and
/// how many were dropped.
pub fn dedupe(rows: Vec<&PreparedRow>) -> (Vec<&PreparedRow>, u64) {
    let total = rows.len();
    let mut best: HashMap<&str, usize> = HashMap::with_capacity(total);
    let mut kept: Vec<Option<&PreparedRow>> = Vec::with_capacity(total);
    for row in rows {
        match best.get(row.id.as_str()) {
            Some(&i) => {
                let newer = kept[i]
                    .as_ref()
                    .is_some_and(|old| row.version > old.version);
                if newer {
                    kept[i] = Some(row);
                }
            }
            None => {
                best.insert(row.id.as_str(), kept.len());
                kept.push(Some(row));
            }
        }
    }
    let kept: Vec<&PreparedRow> = kept.into_iter().flatten().collect();
    let dropped = (total - kept.len()) as u64;
    (kept, dropped)
}

/// Bounds of the timestamps stored in typed columns: 0001-01-01 to 9999-12-31 UTC. Outside,
/// RFC 3339 text needs a sign and PostgreSQL may refuse the value, so the column is NULL (the
/// raw number is still in `data`).
pub fn timestamp_in_range(unix: i64) -> bool {
    (-62_135_596_800..=253_402_300_799).contains(&unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, version: i64, tag: &str) -> PreparedRow {
        PreparedRow {
            id: id.into(),
            data: json!({"id": id, "tag": tag}).to_string(),
            columns: Vec::new(),
            version,
            deleted: false,
        }
    }

    #[test]
    fn dedupe_keeps_highest_then_first_version() {
        let all = [
            row("a", 1, "a1"),
            row("b", 5, "b5"),
            row("a", 3, "a3"),
            row("a", 3, "a3-second"),
            row("b", 4, "b4"),
        ];
        let (rows, dropped) = dedupe(all.iter().collect());
        assert_eq!(dropped, 3);
        assert_eq!(rows, vec![&row("a", 3, "a3"), &row("b", 5, "b5")]);
    }

    #[test]
    fn index_names_fit_postgres() {
        for t in cls_catalog::CATALOG {
            for c in indexed_columns(t) {
                assert!(index_name(t.table(), c).len() <= 63);
                assert_eq!(index_name(t.table(), c), format!("{}_{c}_idx", t.table()));
            }
        }
        assert!(index_name(&"t".repeat(60), "column").len() <= 63);
    }

    #[test]
    fn timestamp_range() {
        assert!(timestamp_in_range(0));
        assert!(timestamp_in_range(253_402_300_799));
        assert!(!timestamp_in_range(253_402_300_800));
        assert_eq!(
            cls_catalog::rfc3339(-62_135_596_800).as_deref(),
            Some("0001-01-01T00:00:00Z")
        );
    }
}
