//! What a run reports: progress while it runs, and a summary per data type at the end.

use serde::Serialize;

/// How one data type of a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TypeStatus {
    /// Every object was copied.
    Succeeded,
    /// The data type was not copied completely.
    Failed {
        /// What went wrong and what to do, in words a person can act on.
        error: String,
        /// The restricted-key permission that is missing, when that is the cause.
        #[serde(skip_serializing_if = "Option::is_none")]
        missing_permission: Option<String>,
    },
}

/// The summary of one data type in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeReport {
    /// Data type (table) name.
    pub data_type: &'static str,
    /// Outcome.
    #[serde(flatten)]
    pub status: TypeStatus,
    /// Objects read from Stripe.
    pub objects: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows marked deleted.
    pub deleted: u64,
    /// HTTP requests made to Stripe (every attempt).
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Responses that were HTTP 429 (rate limited).
    pub rate_limited: u64,
    /// Wall-clock seconds from the data type's first request to its last write.
    pub seconds: f64,
    /// `created` windows its list was walked in (several walk at once in a parallel backfill).
    pub windows: u64,
}

impl TypeReport {
    /// An empty report for a data type that is about to start.
    pub fn new(data_type: &'static str) -> Self {
        TypeReport {
            data_type,
            status: TypeStatus::Succeeded,
            objects: 0,
            inserted: 0,
            updated: 0,
            deleted: 0,
            requests: 0,
            retries: 0,
            rate_limited: 0,
            seconds: 0.0,
            windows: 0,
        }
    }

    /// Whether the data type was copied completely.
    pub fn succeeded(&self) -> bool {
        self.status == TypeStatus::Succeeded
    }
}

/// How a whole run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every chosen data type was copied completely.
    Succeeded,
    /// Some data types were copied, others failed.
    Partial,
    /// No data type was copied completely.
    Failed,
}

/// How a run got its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every chosen object was listed (a backfill).
    #[default]
    Full,
    /// The events feed since the last run was applied (some data types may still have been
    /// copied in full; the run's notes say which and why).
    Incremental,
}

/// What an incremental run read from the events feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventsSummary {
    /// Events read from the feed.
    pub read: u64,
    /// Events applied to at least one table.
    pub applied: u64,
    /// Events skipped because their data type was not chosen.
    pub skipped_not_chosen: u64,
    /// Events skipped because their object type is not in the catalog (`discount`, `tax_id`…).
    pub skipped_unknown: u64,
    /// Events skipped because they lacked an id, a type, a time or an object.
    pub skipped_malformed: u64,
    /// Requests made to the events feed.
    pub requests: u64,
    /// Id of the newest event applied (the new cursor), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The summary of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    /// The Stripe account synced.
    pub account_id: String,
    /// Outcome of the whole run.
    pub status: RunStatus,
    /// Per data type, in catalog order.
    pub types: Vec<TypeReport>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Full or incremental.
    pub mode: SyncMode,
    /// What the run decided by itself and why, in words for a person (a fall back to a full
    /// sync because the events cursor is older than Stripe keeps events, data types copied in
    /// full because events cannot follow them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The events feed, for incremental runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsSummary>,
}

impl SyncReport {
    /// Builds the report and derives the run's status from the data types'.
    pub fn new(account_id: String, types: Vec<TypeReport>, seconds: f64) -> Self {
        let ok = types.iter().filter(|t| t.succeeded()).count();
        let status = if ok == types.len() {
            RunStatus::Succeeded
        } else if ok == 0 {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        };
        SyncReport {
            account_id,
            status,
            types,
            seconds,
            mode: SyncMode::Full,
            notes: Vec::new(),
            events: None,
        }
    }

    /// Total objects read.
    pub fn objects(&self) -> u64 {
        self.types.iter().map(|t| t.objects).sum()
    }

    /// Total requests made (the events feed's included).
    pub fn requests(&self) -> u64 {
        self.types.iter().map(|t| t.requests).sum::<u64>()
            + self.events.as_ref().map_or(0, |e| e.requests)
    }
}

/// Progress while a run goes on, for progress bars and logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A data type's first request is about to go out.
    Started {
        /// Data type name.
        data_type: &'static str,
    },
    /// More objects of a data type were read and written.
    Advanced {
        /// Data type name.
        data_type: &'static str,
        /// Objects read so far.
        objects: u64,
        /// Share of the data type's `created` range walked so far (0..=1), when known.
        fraction: Option<f64>,
    },
    /// A data type is done.
    Finished(TypeReport),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(name: &'static str) -> TypeReport {
        TypeReport {
            status: TypeStatus::Failed {
                error: "x".into(),
                missing_permission: None,
            },
            ..TypeReport::new(name)
        }
    }

    #[test]
    fn run_status_follows_the_types() {
        let ok = || TypeReport::new("customers");
        assert_eq!(
            SyncReport::new("a".into(), vec![ok(), ok()], 0.0).status,
            RunStatus::Succeeded
        );
        assert_eq!(
            SyncReport::new("a".into(), vec![ok(), failed("charges")], 0.0).status,
            RunStatus::Partial
        );
        assert_eq!(
            SyncReport::new("a".into(), vec![failed("charges")], 0.0).status,
            RunStatus::Failed
        );
    }
}
