//! What the CLI shows a person: progress bars on a terminal (plain lines otherwise) and the
//! summary table at the end of a run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cls_catalog::DataType;
use cls_engine::{Progress, RunStatus, SyncMode, SyncReport, TypeStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain progress lines are printed at most this often per data type.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Shows progress: one bar per data type on a terminal, throttled lines otherwise.
pub struct ProgressView {
    bars: Option<(MultiProgress, HashMap<&'static str, ProgressBar>)>,
    last_line: Mutex<HashMap<&'static str, Instant>>,
}

impl ProgressView {
    /// A view for the chosen data types; bars when `terminal`.
    pub fn new(terminal: bool, types: &[&'static DataType]) -> Self {
        let bars = terminal.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let mut map = HashMap::new();
            for t in types {
                let bar = multi.add(ProgressBar::new(100));
                bar.set_style(style.clone());
                bar.set_prefix(t.name);
                bar.set_message("waiting");
                map.insert(t.name, bar);
            }
            (multi, map)
        });
        ProgressView {
            bars,
            last_line: Mutex::new(HashMap::new()),
        }
    }

    /// Applies one progress event.
    pub fn update(&self, p: Progress) {
        match &self.bars {
            Some((_, bars)) => match p {
                Progress::Started { data_type } => {
                    if let Some(b) = bars.get(data_type) {
                        b.set_message("starting");
                    }
                }
                Progress::Advanced {
                    data_type,
                    objects,
                    fraction,
                } => {
                    if let Some(b) = bars.get(data_type) {
                        if let Some(f) = fraction {
                            b.set_position((f * 100.0).round() as u64);
                        }
                        b.set_message(format!("{objects} objects"));
                    }
                }
                Progress::Finished(r) => {
                    if let Some(b) = bars.get(r.data_type) {
                        match &r.status {
                            TypeStatus::Succeeded => {
                                b.set_position(100);
                                b.finish_with_message(format!("{} objects, done", r.objects));
                            }
                            TypeStatus::Failed { .. } => {
                                b.abandon_with_message(format!("{} objects, FAILED", r.objects))
                            }
                        }
                    }
                }
            },
            None => self.plain(p),
        }
    }

    fn plain(&self, p: Progress) {
        match p {
            Progress::Started { .. } => {}
            Progress::Advanced {
                data_type,
                objects,
                fraction,
            } => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let due = last
                    .get(data_type)
                    .is_none_or(|t| now.duration_since(*t) >= PLAIN_EVERY);
                if due {
                    last.insert(data_type, now);
                    match fraction {
                        Some(f) => eprintln!("{data_type}: {objects} objects ({:.0}%)", f * 100.0),
                        None => eprintln!("{data_type}: {objects} objects"),
                    }
                }
            }
            Progress::Finished(r) => match &r.status {
                TypeStatus::Succeeded => {
                    eprintln!("{}: done, {} objects", r.data_type, r.objects)
                }
                TypeStatus::Failed { .. } => {
                    eprintln!("{}: FAILED after {} objects", r.data_type, r.objects)
                }
            },
        }
    }

    /// Clears the bars before the summary is printed.
    pub fn finish(&self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

/// Prints the end-of-run summary: one line per data type, totals, and every failure's cause.
pub fn print_summary(report: &SyncReport) {
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>8}  status",
        "data type", "objects", "inserted", "updated", "requests", "retries", "429s", "seconds"
    );
    for t in &report.types {
        let status = match &t.status {
            TypeStatus::Succeeded => "ok",
            TypeStatus::Failed { .. } => "FAILED",
        };
        println!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>8} {:>6} {:>8.1}  {status}",
            t.data_type,
            t.objects,
            t.inserted,
            t.updated,
            t.requests,
            t.retries,
            t.rate_limited,
            t.seconds
        );
    }
    let failures: Vec<_> = report
        .types
        .iter()
        .filter_map(|t| match &t.status {
            TypeStatus::Failed { error, .. } => Some((t.data_type, error)),
            TypeStatus::Succeeded => None,
        })
        .collect();
    if !failures.is_empty() {
        println!();
        for (name, error) in &failures {
            println!("{name}: {error}");
        }
    }
    if let Some(e) = &report.events {
        println!();
        println!(
            "events: {} read, {} applied, {} skipped (data type not chosen: {}, unknown object: {}, malformed: {}), {} requests",
            e.read,
            e.applied,
            e.skipped_not_chosen + e.skipped_unknown + e.skipped_malformed,
            e.skipped_not_chosen,
            e.skipped_unknown,
            e.skipped_malformed,
            e.requests
        );
    }
    if !report.notes.is_empty() {
        println!();
        for note in &report.notes {
            println!("note: {note}");
        }
    }
    println!();
    let verdict = match report.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Partial => "PARTIAL: some data types were not copied (see above)",
        RunStatus::Failed => "FAILED: no data type was copied completely (see above)",
    };
    println!(
        "account {} ({} sync): {} objects, {} requests in {:.1} s — {verdict}",
        report.account_id,
        match report.mode {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        },
        report.objects(),
        report.requests(),
        report.seconds
    );
}
