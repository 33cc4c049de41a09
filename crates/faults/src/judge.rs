//! Judging: is the destination exactly the emulator's export, and what is a run's verdict.
//!
//! The comparison is the one the end-to-end tests make: for every data type of the catalog,
//! the table's live rows are exactly the export's live objects of its type, each row's `data`
//! equal to the API's object.

use std::collections::BTreeMap;

use serde_json::Value;

/// How one run ended, as far as the judge cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// The exit status: 0 succeeded, 1 failed, 3 partial; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Every message the run gave about failures (stderr, failed data types' errors).
    pub messages: String,
    /// Seconds the run took.
    pub seconds: u64,
}

/// The verdict of one trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The run said it succeeded and the destination equals the export.
    EqualToExport,
    /// The run said it failed or was partial, naming the fault, and a rerun without the fault
    /// ended equal to the export.
    FailedWithCause {
        /// The message that named the fault.
        cause: String,
    },
    /// The run said it succeeded, but the destination differs from the export. Must never
    /// happen.
    WrongSuccess {
        /// What differs.
        detail: String,
    },
    /// Anything else: a failure that names no cause, a crash, a recovery that did not end
    /// equal, a bound exceeded. Must never happen either.
    Unexplained {
        /// What happened.
        detail: String,
    },
}

impl Verdict {
    /// Whether the trial passed (equal, or failed with its cause).
    pub fn passed(&self) -> bool {
        matches!(
            self,
            Verdict::EqualToExport | Verdict::FailedWithCause { .. }
        )
    }
}

/// The verdict of a run from its end and whether the destination equals the export
/// (`Err` says how it differs). Recovery is judged separately.
pub fn judge_run(end: &RunEnd, equal: &Result<(), String>, cause_words: &[&str]) -> Verdict {
    match end.code {
        Some(0) => match equal {
            Ok(()) => Verdict::EqualToExport,
            Err(diff) => Verdict::WrongSuccess {
                detail: diff.clone(),
            },
        },
        Some(1) | Some(3) => match find_cause(&end.messages, cause_words) {
            Some(cause) => Verdict::FailedWithCause { cause },
            None => Verdict::Unexplained {
                detail: format!(
                    "exit {} without naming the fault (looked for {cause_words:?}): {}",
                    end.code.unwrap_or(-1),
                    shorten(&end.messages, 400)
                ),
            },
        },
        Some(code) => Verdict::Unexplained {
            detail: format!("exit {code}: {}", shorten(&end.messages, 400)),
        },
        None => Verdict::Unexplained {
            detail: "the run was killed by a signal the suite did not send".into(),
        },
    }
}

/// The first line of `messages` containing one of `words` (case-insensitive).
pub fn find_cause(messages: &str, words: &[&str]) -> Option<String> {
    messages
        .lines()
        .find(|line| {
            let l = line.to_lowercase();
            words.iter().any(|w| l.contains(w))
        })
        .map(|line| shorten(line.trim(), 300))
}

/// At most `n` characters of `s`, on a character boundary.
pub fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n).collect();
        format!("{cut}…")
    }
}

/// The export: object type → id → object.
pub type Export = BTreeMap<String, BTreeMap<String, Value>>;

/// Reads `/_emulator/export`.
pub async fn export(base_url: &str) -> Result<Export, String> {
    let all: BTreeMap<String, Vec<Value>> = reqwest::get(format!("{base_url}/_emulator/export"))
        .await
        .map_err(|e| format!("the emulator's export did not answer: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the emulator's export is not JSON: {e}"))?;
    Ok(all
        .into_iter()
        .map(|(object, items)| {
            let by_id = items
                .into_iter()
                .filter_map(|o| Some((o.get("id")?.as_str()?.to_string(), o)))
                .collect();
            (object, by_id)
        })
        .collect())
}

fn is_deleted(o: &Value) -> bool {
    o.get("deleted").and_then(Value::as_bool) == Some(true)
}

/// Live rows of one table: id → data. `Err` when the table cannot be read.
/// The destination being judged: a PostgreSQL database or a SQLite file.
enum Live {
    Pg(sqlx::PgConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Live {
    async fn connect(db_url: &str) -> Result<Live, String> {
        use sqlx::Connection;
        let conn = if db_url.starts_with("sqlite:") {
            sqlx::SqliteConnection::connect(db_url)
                .await
                .map(Live::Sqlite)
        } else {
            crate::pg::connect(db_url).await.map(Live::Pg)
        };
        conn.map_err(|e| format!("cannot connect to compare: {e}"))
    }

    /// The live (not deleted) rows of one table, by id. SQLite has no schemas.
    async fn rows(&mut self, schema: &str, table: &str) -> Result<BTreeMap<String, Value>, String> {
        let pairs: Vec<(String, String)> = match self {
            Live::Pg(conn) => {
                sqlx::query_as(&format!(
                    "SELECT id, data::text AS data FROM \"{schema}\".\"{table}\" WHERE NOT deleted"
                ))
                .fetch_all(conn)
                .await
            }
            Live::Sqlite(conn) => {
                sqlx::query_as(&format!(
                    "SELECT id, data FROM \"{table}\" WHERE NOT deleted"
                ))
                .fetch_all(conn)
                .await
            }
        }
        .map_err(|e| format!("table {table} cannot be read: {e}"))?;
        let mut out = BTreeMap::new();
        for (id, data) in pairs {
            let v = serde_json::from_str(&data)
                .map_err(|e| format!("{table}.{id}: data is not JSON: {e}"))?;
            out.insert(id, v);
        }
        Ok(out)
    }

    async fn close(self) {
        use sqlx::Connection;
        let _ = match self {
            Live::Pg(c) => c.close().await,
            Live::Sqlite(c) => c.close().await,
        };
    }
}

/// Payment methods the export holds live but no Stripe list can reach: their customer is
/// deleted (the emulator leaves them attached to it) or absent, and payment methods are only
/// listed per customer. A sync cannot read them, so the comparison leaves them out — on both
/// sides — and the report says how many there were.
pub fn unreachable(export: &Export) -> std::collections::BTreeSet<String> {
    let deleted_customers: std::collections::BTreeSet<&String> = export
        .get("customer")
        .into_iter()
        .flatten()
        .filter(|(_, o)| is_deleted(o))
        .map(|(id, _)| id)
        .collect();
    export
        .get("payment_method")
        .into_iter()
        .flatten()
        .filter(|(_, o)| match o.get("customer").and_then(Value::as_str) {
            None => true,
            Some(c) => deleted_customers.contains(&c.to_string()),
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// `Ok` when every catalog table in `schema` holds exactly the export's live objects of its
/// type (but the [`unreachable`] ones); otherwise how many rows are missing, extra or
/// different, with an example.
pub async fn compare(db_url: &str, schema: &str, export: &Export) -> Result<(), String> {
    let skip = unreachable(export);
    let mut conn = Live::connect(db_url).await?;
    let mut problems = Vec::new();
    for t in cls_catalog::CATALOG {
        let want: BTreeMap<&String, &Value> = export
            .get(t.object)
            .into_iter()
            .flatten()
            .filter(|(id, o)| !is_deleted(o) && !skip.contains(*id))
            .collect();
        let got = match conn.rows(schema, t.name).await {
            Ok(mut g) => {
                g.retain(|id, _| !skip.contains(id));
                g
            }
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let missing: Vec<_> = want.keys().filter(|id| !got.contains_key(**id)).collect();
        let extra: Vec<_> = got.keys().filter(|id| !want.contains_key(id)).collect();
        let differ: Vec<_> = want
            .iter()
            .filter(|(id, v)| got.get(**id).is_some_and(|g| g != **v))
            .map(|(id, _)| id)
            .collect();
        if !missing.is_empty() || !extra.is_empty() || !differ.is_empty() {
            problems.push(format!(
                "{}: {} missing (e.g. {:?}), {} extra (e.g. {:?}), {} different (e.g. {:?})",
                t.name,
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first(),
                differ.len(),
                differ.first()
            ));
        }
    }
    conn.close().await;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: Option<i32>, messages: &str) -> RunEnd {
        RunEnd {
            code,
            messages: messages.into(),
            seconds: 1,
        }
    }

    #[test]
    fn success_with_data_missing_is_a_wrong_success() {
        let v = judge_run(&end(Some(0), ""), &Err("customers: 1 missing".into()), &[]);
        assert!(matches!(v, Verdict::WrongSuccess { .. }));
        assert!(!v.passed());
        let v = judge_run(&end(Some(0), ""), &Ok(()), &[]);
        assert_eq!(v, Verdict::EqualToExport);
    }

    #[test]
    fn a_failure_must_name_the_fault() {
        let words = ["disk space"];
        let named = end(
            Some(1),
            "progress\nerror: the database ran out of Disk Space while x",
        );
        assert!(matches!(
            judge_run(&named, &Err("missing".into()), &words),
            Verdict::FailedWithCause { cause } if cause.starts_with("error: the database ran out")
        ));
        let partial = end(Some(3), "invoices: the database ran out of disk space");
        assert!(judge_run(&partial, &Ok(()), &words).passed());
        let silent = end(Some(1), "error: something happened");
        assert!(matches!(
            judge_run(&silent, &Err("missing".into()), &words),
            Verdict::Unexplained { .. }
        ));
    }

    #[test]
    fn odd_exits_are_unexplained() {
        for code in [Some(2), Some(101), None] {
            assert!(!judge_run(&end(code, "boom"), &Ok(()), &["boom"]).passed());
        }
    }

    #[test]
    fn shorten_keeps_character_boundaries() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
