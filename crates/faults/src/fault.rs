//! The faults the suite injects, and the words a run's error must contain to count as naming
//! its cause.

use cls_emulator::traffic::Fault as EmulatorFault;

/// What a server error carries in `Stripe-Should-Retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetryHeader {
    /// `Stripe-Should-Retry: true`.
    True,
    /// `Stripe-Should-Retry: false`: Stripe says a retry will not help.
    False,
    /// No header: the client decides by status (5xx are retried).
    Absent,
}

/// One fault the suite knows how to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// This percentage of `/v1/` requests answer 500/502/503 with this `Stripe-Should-Retry`.
    ServerErrors {
        /// Share of requests faulted, in percent.
        percent: u8,
        /// The header the errors carry.
        header: RetryHeader,
    },
    /// 30% of requests answer 429 `rate_limit` whatever the request rate (a storm: another
    /// integration exhausting the account's limit).
    RateLimitStorm,
    /// The emulator enforces Stripe's real limits (25 req/s) while `cls` is told it may send
    /// 8× that: every 429 comes from the token buckets.
    RateLimitOverdrive,
    /// 10% of requests: the connection is dropped before any byte of the answer.
    ConnectionResets,
    /// 10% of requests: the body stops halfway under its full `Content-Length`.
    TruncatedBodies,
    /// 10% of pages answer after longer than the client's per-request timeout (engine driven
    /// in-process: the binary has no timeout flag).
    SlowPages,
    /// "PostgreSQL restarted": the run's backend connections are ended with
    /// `pg_terminate_backend` mid-run (the shared server itself is never restarted).
    PostgresRestarted,
    /// The run's database role loses its privileges on the schema and its tables mid-run.
    PrivilegesRevoked,
    /// The destination fills up: after some rows, every insert or update raises SQLSTATE
    /// 53100 `disk_full` (a trigger; the disk itself is never filled).
    DestinationFull,
    /// `cls sync` is SIGKILLed at random points, then run to the end: it must resume and end
    /// equal to the export.
    Sigkill,
    /// The same into a SQLite destination (the embedded default): a killed write must leave
    /// the file consistent, and the resumed run must end equal to the export.
    SigkillSqlite,
    /// The sync's clock ("now") jumps 40 days forward, then 3 days back, between runs with
    /// changes in between (engine driven in-process through `SyncOptions.now`).
    ClockJump,
    /// Every request fails: the run must exit non-zero, saying why, within a bounded time.
    AllRequestsFail,
    /// An incremental run (events since the last run) while 30% of requests fail in every
    /// way above — 5xx with and without `Stripe-Should-Retry`, 429s, resets, truncated
    /// bodies — after a clean full run and changes in the account.
    IncrementalUnderFaults,
}

/// Longest an every-request-fails run may take: the client gives up on one request after
/// `max_retry_elapsed` (120 s by default) plus one attempt's time; the first request (the
/// account) failing ends the run.
pub const ALL_FAIL_BOUND_SECS: f64 = 150.0;

impl Fault {
    /// Every fault, once each: the quick matrix.
    pub fn quick_matrix() -> Vec<Fault> {
        let mut all = Vec::new();
        for percent in [5, 20] {
            for header in [RetryHeader::True, RetryHeader::Absent, RetryHeader::False] {
                all.push(Fault::ServerErrors { percent, header });
            }
        }
        all.extend([
            Fault::RateLimitStorm,
            Fault::RateLimitOverdrive,
            Fault::ConnectionResets,
            Fault::TruncatedBodies,
            Fault::SlowPages,
            Fault::PostgresRestarted,
            Fault::PrivilegesRevoked,
            Fault::DestinationFull,
            Fault::Sigkill,
            Fault::SigkillSqlite,
            Fault::ClockJump,
            Fault::AllRequestsFail,
            Fault::IncrementalUnderFaults,
        ]);
        all
    }

    /// The name in the report.
    pub fn name(&self) -> String {
        match self {
            Fault::ServerErrors { percent, header } => {
                let h = match header {
                    RetryHeader::True => "Should-Retry: true",
                    RetryHeader::False => "Should-Retry: false",
                    RetryHeader::Absent => "no Should-Retry",
                };
                format!("5xx {percent}%, {h}")
            }
            Fault::RateLimitStorm => "429 storm (30% of requests)".into(),
            Fault::RateLimitOverdrive => "429 from real buckets (client at 8x)".into(),
            Fault::ConnectionResets => "connection resets 10%".into(),
            Fault::TruncatedBodies => "truncated bodies 10%".into(),
            Fault::SlowPages => "slow pages > timeout 10% (in-process)".into(),
            Fault::PostgresRestarted => "PG restart (pg_terminate_backend)".into(),
            Fault::PrivilegesRevoked => "privileges revoked mid-run".into(),
            Fault::DestinationFull => "destination full (53100 trigger)".into(),
            Fault::Sigkill => "SIGKILL x3 at random, then rerun".into(),
            Fault::SigkillSqlite => "SIGKILL x3 at random, then rerun (SQLite)".into(),
            Fault::ClockJump => "clock +40 d / -3 d (in-process)".into(),
            Fault::AllRequestsFail => "every request fails (retriably)".into(),
            Fault::IncrementalUnderFaults => "incremental run, mixed faults 30%".into(),
        }
    }

    /// The emulator's fault rate and kinds for this fault (0 and none for the others).
    pub fn emulator_faults(&self) -> (f64, Vec<EmulatorFault>) {
        match self {
            Fault::ServerErrors { percent, header } => {
                let h = match header {
                    RetryHeader::True => Some(true),
                    RetryHeader::False => Some(false),
                    RetryHeader::Absent => None,
                };
                (
                    f64::from(*percent) / 100.0,
                    vec![
                        EmulatorFault::Status(500, h),
                        EmulatorFault::Status(502, h),
                        EmulatorFault::Status(503, h),
                    ],
                )
            }
            Fault::RateLimitStorm => (0.3, vec![EmulatorFault::RateLimited]),
            Fault::ConnectionResets => (0.1, vec![EmulatorFault::Reset]),
            Fault::TruncatedBodies => (0.1, vec![EmulatorFault::Truncated]),
            Fault::SlowPages => (0.1, vec![EmulatorFault::Slow]),
            // Only failures a client retries, so the run spends its whole retry budget: the
            // bound asserted is that budget's, not a short cut through a `false` header.
            Fault::AllRequestsFail => (
                1.0,
                vec![
                    EmulatorFault::Status(500, None),
                    EmulatorFault::Status(503, Some(true)),
                    EmulatorFault::Reset,
                    EmulatorFault::Truncated,
                ],
            ),
            Fault::IncrementalUnderFaults => (
                0.3,
                vec![
                    EmulatorFault::Status(500, None),
                    EmulatorFault::Status(503, Some(true)),
                    EmulatorFault::Status(502, Some(false)),
                    EmulatorFault::RateLimited,
                    EmulatorFault::Reset,
                    EmulatorFault::Truncated,
                ],
            ),
            _ => (0.0, Vec::new()),
        }
    }

    /// Lowercase words one of which a failed run's message must contain to name this fault.
    pub fn cause_words(&self) -> &'static [&'static str] {
        match self {
            Fault::ServerErrors { .. } => &["stripe answered http 50"],
            Fault::RateLimitStorm | Fault::RateLimitOverdrive => &["429", "rate limit"],
            Fault::ConnectionResets | Fault::TruncatedBodies | Fault::SlowPages => &[
                "could not talk to stripe",
                "not the json expected",
                "timed out",
                "gave up after",
            ],
            Fault::PostgresRestarted => &[
                "terminating connection",
                "administrator command",
                "connection",
                "database is busy",
            ],
            Fault::PrivilegesRevoked => &["permission denied", "cannot"],
            Fault::DestinationFull => &["disk space", "no space left"],
            // A killed run has no message; the rerun must succeed.
            Fault::Sigkill | Fault::SigkillSqlite | Fault::ClockJump => &[],
            Fault::AllRequestsFail | Fault::IncrementalUnderFaults => &[
                "stripe answered http",
                "could not talk to stripe",
                "not the json expected",
                "gave up after",
                "429",
                "rate limit",
            ],
        }
    }

    /// Whether the fault is injected by the emulator (so a recovery run needs a clean twin of
    /// the emulator: a running emulator's faults cannot be switched off).
    pub fn in_emulator(&self) -> bool {
        self.emulator_faults().0 > 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_matrix_covers_every_fault_once_with_distinct_names() {
        let m = Fault::quick_matrix();
        assert_eq!(m.len(), 19);
        let names: std::collections::BTreeSet<_> = m.iter().map(Fault::name).collect();
        assert_eq!(names.len(), m.len());
        for f in &m {
            let (rate, kinds) = f.emulator_faults();
            assert!((0.0..=1.0).contains(&rate), "{f:?}");
            assert_eq!(rate > 0.0, !kinds.is_empty(), "{f:?}");
        }
    }
}
