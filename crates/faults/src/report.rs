//! The report: every fault tried, how many times, and how the trials ended.

use std::collections::BTreeMap;

use crate::fault::Fault;
use crate::judge::{shorten, Verdict};
use crate::trial::Trial;

/// Counts for one fault.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    /// Trials made.
    pub trials: u64,
    /// Trials whose run succeeded and whose destination equals the export.
    pub equal: u64,
    /// Trials whose run failed or was partial naming the fault, and then recovered.
    pub failed_with_cause: u64,
    /// Trials whose run said "succeeded" with data missing or wrong. Must be 0.
    pub wrong_success: u64,
    /// Trials that failed without a cause, did not recover or broke a bound. Must be 0.
    pub unexplained: u64,
    /// `cls sync` runs made in all.
    pub runs: u64,
    /// Slowest trial, in seconds.
    pub max_seconds: f64,
    /// One cause seen, for the table.
    pub example_cause: Option<String>,
}

/// The report of many trials.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Counts per fault.
    pub rows: BTreeMap<Fault, Row>,
    /// Every trial that did not pass, with its seed and what happened.
    pub failures: Vec<Trial>,
    /// Seeds tried, in order of completion.
    pub seeds: Vec<u64>,
}

impl Report {
    /// Adds a trial's outcome.
    pub fn add(&mut self, trial: Trial) {
        let row = self.rows.entry(trial.fault).or_default();
        row.trials += 1;
        row.runs += trial.runs as u64;
        row.max_seconds = row.max_seconds.max(trial.seconds);
        match &trial.verdict {
            Verdict::EqualToExport => row.equal += 1,
            Verdict::FailedWithCause { cause } => {
                row.failed_with_cause += 1;
                row.example_cause.get_or_insert_with(|| shorten(cause, 90));
            }
            Verdict::WrongSuccess { .. } => row.wrong_success += 1,
            Verdict::Unexplained { .. } => row.unexplained += 1,
        }
        if !self.seeds.contains(&trial.seed) {
            self.seeds.push(trial.seed);
        }
        if !trial.verdict.passed() {
            self.failures.push(trial);
        }
    }

    /// Trials that said "succeeded" with data missing.
    pub fn wrong_success(&self) -> u64 {
        self.rows.values().map(|r| r.wrong_success).sum()
    }

    /// Trials that ended in neither of the two honest outcomes.
    pub fn unexplained(&self) -> u64 {
        self.rows.values().map(|r| r.unexplained).sum()
    }

    /// Whether every trial passed.
    pub fn passed(&self) -> bool {
        self.wrong_success() == 0 && self.unexplained() == 0
    }

    /// The table (Markdown), then each failing trial.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "| fault | trials | equal-to-export | failed/partial-with-cause | wrong-success | unexplained | runs | slowest s | a cause seen |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        let mut total = Row::default();
        for (fault, r) in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |\n",
                fault.name(),
                r.trials,
                r.equal,
                r.failed_with_cause,
                r.wrong_success,
                r.unexplained,
                r.runs,
                r.max_seconds,
                r.example_cause.as_deref().unwrap_or("").replace('|', "/"),
            ));
            total.trials += r.trials;
            total.equal += r.equal;
            total.failed_with_cause += r.failed_with_cause;
            total.wrong_success += r.wrong_success;
            total.unexplained += r.unexplained;
            total.runs += r.runs;
            total.max_seconds = total.max_seconds.max(r.max_seconds);
        }
        out.push_str(&format!(
            "| **all** | {} | {} | {} | {} | {} | {} | {:.0} | |\n",
            total.trials,
            total.equal,
            total.failed_with_cause,
            total.wrong_success,
            total.unexplained,
            total.runs,
            total.max_seconds
        ));
        out.push_str(
            "\n\"PG restart\" is emulated by pg_terminate_backend on the trial's database (the \
             shared server is never restarted); \"destination full\" by a trigger raising \
             SQLSTATE 53100 after 150 rows (no disk is filled). Payment methods of deleted customers \
             (the emulator keeps them attached; no Stripe list reaches them) are left out of the \
             comparison.\n",
        );
        for t in &self.failures {
            out.push_str(&format!(
                "\nFAILED: {} (seed {}): {:?}; notes: {}\n",
                t.fault.name(),
                t.seed,
                t.verdict,
                t.notes.join("; ")
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(verdict: Verdict) -> Trial {
        Trial {
            fault: Fault::Sigkill,
            seed: 7,
            verdict,
            runs: 2,
            seconds: 1.0,
            notes: vec![],
        }
    }

    #[test]
    fn a_wrong_success_fails_the_report_and_is_listed() {
        let mut r = Report::default();
        r.add(trial(Verdict::EqualToExport));
        assert!(r.passed());
        r.add(trial(Verdict::WrongSuccess {
            detail: "customers: 1 missing".into(),
        }));
        assert!(!r.passed());
        assert_eq!(r.wrong_success(), 1);
        let text = r.render();
        assert!(
            text.contains("| SIGKILL x3 at random, then rerun | 2 | 1 | 0 | 1 | 0 | 4 |"),
            "{text}"
        );
        assert!(text.contains("FAILED: SIGKILL"), "{text}");
    }
}
