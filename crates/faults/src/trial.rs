//! One trial: a fresh emulator and database, the fault injected into a run, the run judged,
//! and — when the run failed — a rerun without the fault that must end equal to the export.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cls_emulator::{EmulatorConfig, RunningEmulator};
use cls_engine::RequestedMode;
use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator_with;
use futures::StreamExt;
use rand::{Rng, SeedableRng};

use crate::fault::{Fault, ALL_FAIL_BOUND_SECS};
use crate::judge::{compare, export, judge_run, shorten, RunEnd, Verdict};
use crate::pg::{self, TrialRole};
use crate::report::Report;
use crate::sync::{run_cls, run_in_process, spawn_cls, Child, InProcess};

/// The schema `cls sync` writes to by default.
const SCHEMA: &str = "stripe";

/// What every trial needs.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The `cls` binary under test.
    pub cls_bin: PathBuf,
    /// Customers of each trial's account (about 10–20 objects each).
    pub customers: usize,
}

/// One fault tried once.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The fault.
    pub fault: Fault,
    /// The seed of the account, the emulator's fault draws and the kill points.
    pub seed: u64,
    /// The outcome.
    pub verdict: Verdict,
    /// `cls sync` runs made (killed ones and the recovery run included).
    pub runs: usize,
    /// Wall-clock seconds of the whole trial.
    pub seconds: f64,
    /// What was injected and observed (faults served, backends ended, kills, notes).
    pub notes: Vec<String>,
}

/// Runs the given (fault, seed) trials, `concurrency` at a time, into one report.
pub async fn run_matrix(h: &Harness, trials: &[(Fault, u64)], concurrency: usize) -> Report {
    let mut report = Report::default();
    let mut done = futures::stream::iter(trials.iter().copied())
        .map(|(fault, seed)| run_trial(h, fault, seed))
        .buffer_unordered(concurrency.max(1));
    while let Some(trial) = done.next().await {
        eprintln!(
            "cls-faults: {} (seed {}): {:?} in {:.0} s [{}]",
            trial.fault.name(),
            trial.seed,
            trial.verdict,
            trial.seconds,
            trial.notes.join("; ")
        );
        report.add(trial);
    }
    report
}

/// Runs one trial.
pub async fn run_trial(h: &Harness, fault: Fault, seed: u64) -> Trial {
    let started = Instant::now();
    let mut t = Trial {
        fault,
        seed,
        verdict: Verdict::EqualToExport,
        runs: 0,
        seconds: 0.0,
        notes: Vec::new(),
    };
    let outcome = match fault {
        Fault::PostgresRestarted => pg_restart(h, &mut t).await,
        Fault::PrivilegesRevoked => privileges_revoked(h, &mut t).await,
        Fault::DestinationFull => destination_full(h, &mut t).await,
        Fault::Sigkill => {
            let db = TestDb::new().await;
            let v = sigkill(h, &mut t, &db.url).await;
            db.drop_now().await;
            v
        }
        Fault::SigkillSqlite => {
            let dir = cls_testkit::db::temp_dir("cls_faults_sqlite");
            let v = sigkill(h, &mut t, &cls_testkit::db::sqlite_url(&dir)).await;
            let _ = std::fs::remove_dir_all(&dir);
            v
        }
        Fault::ClockJump => clock_jump(h, &mut t).await,
        Fault::IncrementalUnderFaults => incremental_under_faults(h, &mut t).await,
        _ => emulator_fault(h, &mut t).await,
    };
    t.verdict = match outcome {
        Ok(v) => v,
        Err(e) => Verdict::Unexplained {
            detail: format!("the suite itself failed: {e}"),
        },
    };
    t.seconds = started.elapsed().as_secs_f64();
    t
}

type Outcome = Result<Verdict, String>;

/// The start of today (UTC): every emulator of a trial uses it, so a twin holds the same data.
fn anchor() -> i64 {
    let now = chrono::Utc::now().timestamp();
    now - now.rem_euclid(86_400)
}

fn emulator_config(h: &Harness, seed: u64, anchor: i64) -> EmulatorConfig {
    let mut c = EmulatorConfig::new(seed, h.customers);
    c.anchor = anchor;
    c
}

/// Fast client rates for trials that do not need a long run (the emulator does not limit).
const FAST: &[&str] = &["--global-rps", "200", "--endpoint-rps", "100"];

/// Judges a run against an emulator's export.
async fn judge(end: &RunEnd, emu: &RunningEmulator, db_url: &str, fault: Fault) -> Outcome {
    let want = export(&emu.base_url).await?;
    let equal = compare(db_url, SCHEMA, &want).await;
    Ok(judge_run(end, &equal, fault.cause_words()))
}

/// After a failed run: the run again without the fault must end equal to the export.
async fn recovered(
    first: Verdict,
    end: &RunEnd,
    emu: &RunningEmulator,
    db_url: &str,
    t: &mut Trial,
) -> Outcome {
    t.runs += 1;
    let again = match judge(end, emu, db_url, t.fault).await? {
        Verdict::EqualToExport => return Ok(first),
        other => other,
    };
    Ok(Verdict::Unexplained {
        detail: format!(
            "the run failed with its cause, but once the fault was gone the rerun did not end equal to the export: {again:?}"
        ),
    })
}

async fn faults_served(emu: &RunningEmulator) -> String {
    let stats = emu.state.stats.to_json();
    format!(
        "emulator served {} requests, {} faulted, {} rate-limited",
        stats["requests_total"], stats["faults_total"], stats["rate_limited_total"]
    )
}

/// Faults the emulator injects (5xx, 429, resets, truncation, slow pages, all failing).
async fn emulator_fault(h: &Harness, t: &mut Trial) -> Outcome {
    let anchor = anchor();
    let mut cfg = emulator_config(h, t.seed, anchor);
    let (rate, kinds) = t.fault.emulator_faults();
    cfg.fault_rate = rate;
    cfg.fault_kinds = kinds;
    let mut args: Vec<&str> = FAST.to_vec();
    let in_process = t.fault == Fault::SlowPages;
    match t.fault {
        Fault::RateLimitOverdrive => {
            cfg.rate_limits = true;
            args = vec!["--global-rps", "200", "--endpoint-rps", "200"];
        }
        Fault::SlowPages => cfg.slow_response_ms = 1_500,
        _ => {}
    }
    let knobs = InProcess {
        request_timeout: Duration::from_secs(1),
        ..InProcess::default()
    };
    let emu = spawn_emulator_with(cfg).await;
    let db = TestDb::new().await;
    let result = async {
        t.runs += 1;
        let end = if in_process {
            run_in_process(&emu.base_url, &db.url, knobs).await
        } else {
            run_cls(&h.cls_bin, &emu.base_url, &db.url, &args)
                .await
                .map_err(|e| format!("cannot run cls: {e}"))?
        };
        t.notes.push(faults_served(&emu).await);
        if std::env::var_os("CLS_FAULTS_DEBUG").is_some() {
            eprintln!("DEBUG first run: {end:?}");
        }
        let verdict = judge(&end, &emu, &db.url, t.fault).await?;
        if t.fault == Fault::AllRequestsFail {
            t.notes.push(format!("gave up after {} s", end.seconds));
            if end.code == Some(0) {
                return Ok(Verdict::WrongSuccess {
                    detail: "every request failed, yet the run said it succeeded".into(),
                });
            }
            if end.seconds as f64 > ALL_FAIL_BOUND_SECS {
                return Ok(Verdict::Unexplained {
                    detail: format!(
                        "every request failing took {} s to give up (bound {ALL_FAIL_BOUND_SECS} s)",
                        end.seconds
                    ),
                });
            }
        }
        let Verdict::FailedWithCause { .. } = verdict else {
            return Ok(verdict);
        };
        // A running emulator's faults cannot be switched off: its clean twin (same seed,
        // same anchor) holds the same account.
        let twin = spawn_emulator_with(emulator_config(h, t.seed, anchor)).await;
        let end = if in_process {
            run_in_process(&twin.base_url, &db.url, knobs).await
        } else {
            run_cls(&h.cls_bin, &twin.base_url, &db.url, FAST)
                .await
                .map_err(|e| format!("cannot run cls: {e}"))?
        };
        if std::env::var_os("CLS_FAULTS_DEBUG").is_some() {
            eprintln!("DEBUG recovery run: {end:?}");
        }
        let v = recovered(verdict, &end, &twin, &db.url, t).await;
        twin.shutdown().await;
        v
    }
    .await;
    db.drop_now().await;
    emu.shutdown().await;
    result
}

/// Waits until the run has written rows (or ended, or `limit` passed); true when it has rows
/// and is still running, i.e. a fault injected now lands mid-run.
async fn wait_for_rows(child: &mut Child, db_url: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !child.running() {
            return false;
        }
        if pg::rows_written(db_url, SCHEMA).await > 0 {
            return child.running();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// An emulator whose pages take a little while, so a run lasts a few seconds.
async fn slow_emulator(h: &Harness, seed: u64) -> RunningEmulator {
    let mut cfg = emulator_config(h, seed, anchor());
    cfg.latency_ms = 25;
    spawn_emulator_with(cfg).await
}

/// "PostgreSQL restarted": the run's backends are terminated mid-run, three times.
async fn pg_restart(h: &Harness, t: &mut Trial) -> Outcome {
    let emu = slow_emulator(h, t.seed).await;
    let db = TestDb::new().await;
    let result = async {
        t.runs += 1;
        let mut child = spawn_cls(&h.cls_bin, &emu.base_url, &db.url, &[])
            .map_err(|e| format!("cannot run cls: {e}"))?;
        let mut ended = 0;
        if wait_for_rows(&mut child, &db.url, Duration::from_secs(60)).await {
            for _ in 0..3 {
                ended += pg::terminate_backends(&db.admin_url, &db.name)
                    .await
                    .map_err(|e| format!("pg_terminate_backend: {e}"))?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        t.notes
            .push(format!("{ended} backend connections terminated mid-run"));
        let end = child.finish().await.map_err(|e| e.to_string())?;
        let verdict = judge(&end, &emu, &db.url, t.fault).await?;
        let Verdict::FailedWithCause { .. } = verdict else {
            return Ok(verdict);
        };
        let end = run_cls(&h.cls_bin, &emu.base_url, &db.url, FAST)
            .await
            .map_err(|e| e.to_string())?;
        recovered(verdict, &end, &emu, &db.url, t).await
    }
    .await;
    db.drop_now().await;
    emu.shutdown().await;
    result
}

/// The run's own login role loses its privileges mid-run.
async fn privileges_revoked(h: &Harness, t: &mut Trial) -> Outcome {
    let emu = slow_emulator(h, t.seed).await;
    let db = TestDb::new().await;
    let admin = db.admin_url.clone();
    let role = match TrialRole::create(&db).await {
        Ok(r) => r,
        Err(e) => {
            db.drop_now().await;
            return Err(format!("cannot create the trial's role: {e}"));
        }
    };
    let result = async {
        t.runs += 1;
        let mut child = spawn_cls(&h.cls_bin, &emu.base_url, role.url(), &[])
            .map_err(|e| format!("cannot run cls: {e}"))?;
        if wait_for_rows(&mut child, &db.url, Duration::from_secs(60)).await {
            role.revoke(&db.url, SCHEMA)
                .await
                .map_err(|e| format!("REVOKE: {e}"))?;
            t.notes.push("privileges revoked mid-run".into());
        } else {
            t.notes.push("the run ended before the revoke".into());
        }
        let end = child.finish().await.map_err(|e| e.to_string())?;
        if role.leaks_password(&end.messages) {
            return Ok(Verdict::Unexplained {
                detail: "the run printed the database password".into(),
            });
        }
        let verdict = judge(&end, &emu, &db.url, t.fault).await?;
        let Verdict::FailedWithCause { .. } = verdict else {
            return Ok(verdict);
        };
        role.grant(&db.url, SCHEMA)
            .await
            .map_err(|e| format!("GRANT: {e}"))?;
        let end = run_cls(&h.cls_bin, &emu.base_url, role.url(), FAST)
            .await
            .map_err(|e| e.to_string())?;
        recovered(verdict, &end, &emu, &db.url, t).await
    }
    .await;
    db.drop_now().await;
    if let Err(e) = role.drop_role(&admin).await {
        eprintln!("warning: could not drop the trial's role: {e}");
    }
    emu.shutdown().await;
    result
}

/// The destination fills up after 150 rows.
async fn destination_full(h: &Harness, t: &mut Trial) -> Outcome {
    let emu = slow_emulator(h, t.seed).await;
    let db = TestDb::new().await;
    let result = async {
        // The tables must exist to carry the triggers: create them as `cls` would.
        let url = cls_destination::DatabaseUrl::parse(&db.url).map_err(|e| e.to_string())?;
        let dest = cls_destination::connect(&url, SCHEMA)
            .await
            .map_err(|e| e.to_string())?;
        let all: Vec<_> = cls_catalog::CATALOG.iter().collect();
        dest.prepare(&all).await.map_err(|e| e.to_string())?;
        drop(dest);
        pg::fill_up_after(&db.url, SCHEMA, 150)
            .await
            .map_err(|e| format!("installing the disk-full trigger: {e}"))?;
        t.runs += 1;
        let end = run_cls(&h.cls_bin, &emu.base_url, &db.url, &[])
            .await
            .map_err(|e| e.to_string())?;
        let verdict = judge(&end, &emu, &db.url, t.fault).await?;
        let Verdict::FailedWithCause { .. } = verdict else {
            return Ok(verdict);
        };
        pg::free_space(&db.url)
            .await
            .map_err(|e| format!("dropping the disk-full trigger: {e}"))?;
        let end = run_cls(&h.cls_bin, &emu.base_url, &db.url, FAST)
            .await
            .map_err(|e| e.to_string())?;
        recovered(verdict, &end, &emu, &db.url, t).await
    }
    .await;
    db.drop_now().await;
    emu.shutdown().await;
    result
}

/// SIGKILL at up to three random points (seeded), then a run to the end, into `db_url`.
async fn sigkill(h: &Harness, t: &mut Trial, db_url: &str) -> Outcome {
    let emu = slow_emulator(h, t.seed).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(t.seed);
    let result = async {
        let mut kills = Vec::new();
        for _ in 0..3 {
            let after = Duration::from_millis(rng.gen_range(150..3_000));
            t.runs += 1;
            let mut child = spawn_cls(&h.cls_bin, &emu.base_url, db_url, &[])
                .map_err(|e| format!("cannot run cls: {e}"))?;
            tokio::time::sleep(after).await;
            if child.running() {
                child.sigkill().await.map_err(|e| e.to_string())?;
                kills.push(after.as_millis());
            } else {
                // It finished first: it must have said the truth about what it did.
                let end = child.finish().await.map_err(|e| e.to_string())?;
                let v = judge(&end, &emu, db_url, t.fault).await?;
                if v != Verdict::EqualToExport {
                    return Ok(v);
                }
            }
        }
        t.notes.push(format!("killed after {kills:?} ms"));
        t.runs += 1;
        let end = run_cls(&h.cls_bin, &emu.base_url, db_url, &[])
            .await
            .map_err(|e| e.to_string())?;
        if let Some(n) = end.messages.lines().find(|l| l.starts_with("note:")) {
            t.notes.push(shorten(n, 160));
        }
        judge(&end, &emu, db_url, t.fault).await
    }
    .await;
    emu.shutdown().await;
    result
}

async fn mutate(emu: &RunningEmulator, count: usize, seed: u64) -> Result<(), String> {
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/_emulator/mutate", emu.base_url))
        .json(&serde_json::json!({"count": count, "seed": seed}))
        .send()
        .await
        .map_err(|e| format!("mutate: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("mutate answered {}", resp.status()))
    }
}

/// The sync's clock jumps between runs: forward past the events' 30 days, then back three
/// days, for changes-only and full runs, with changes in between.
async fn clock_jump(h: &Harness, t: &mut Trial) -> Outcome {
    let emu = spawn_emulator_with(emulator_config(h, t.seed, anchor())).await;
    let db = TestDb::new().await;
    let result = async {
        let real = chrono::Utc::now().timestamp();
        let steps: [(&str, Option<i64>, RequestedMode, usize); 4] = [
            ("real clock, first run", None, RequestedMode::Auto, 0),
            (
                "clock +40 days",
                Some(real + 40 * 86_400),
                RequestedMode::Auto,
                25,
            ),
            (
                "clock -3 days",
                Some(real - 3 * 86_400),
                RequestedMode::Auto,
                25,
            ),
            (
                "clock -3 days, full run",
                Some(real - 3 * 86_400),
                RequestedMode::Full,
                25,
            ),
        ];
        for (i, (what, now, mode, changes)) in steps.into_iter().enumerate() {
            if changes > 0 {
                mutate(&emu, changes, t.seed + i as u64).await?;
            }
            t.runs += 1;
            let end = run_in_process(
                &emu.base_url,
                &db.url,
                InProcess {
                    now,
                    mode,
                    ..InProcess::default()
                },
            )
            .await;
            let v = judge(&end, &emu, &db.url, t.fault).await?;
            if v != Verdict::EqualToExport {
                t.notes.push(format!("at step: {what}"));
                return Ok(v);
            }
        }
        t.notes.push("every step ended equal".into());
        Ok(Verdict::EqualToExport)
    }
    .await;
    db.drop_now().await;
    emu.shutdown().await;
    result
}

/// A clean full run, changes in the account, then an incremental run while the emulator
/// faults 20% of requests; a failed run must recover once the faults stop (the same emulator,
/// faults switched off: the changes stay).
async fn incremental_under_faults(h: &Harness, t: &mut Trial) -> Outcome {
    let mut cfg = emulator_config(h, t.seed, anchor());
    let (rate, kinds) = t.fault.emulator_faults();
    cfg.fault_rate = rate;
    cfg.fault_kinds = kinds;
    let emu = spawn_emulator_with(cfg).await;
    emu.state.set_faults(false);
    let db = TestDb::new().await;
    let result = async {
        t.runs += 1;
        let end = run_cls(&h.cls_bin, &emu.base_url, &db.url, FAST)
            .await
            .map_err(|e| format!("cannot run cls: {e}"))?;
        let v = judge(&end, &emu, &db.url, t.fault).await?;
        if v != Verdict::EqualToExport {
            t.notes.push("the clean full run".into());
            return Ok(v);
        }
        // Enough changes for several pages of events.
        mutate(&emu, 800, t.seed).await?;
        let before = emu.state.stats.to_json();
        emu.state.set_faults(true);
        t.runs += 1;
        let incremental: Vec<&str> = FAST
            .iter()
            .copied()
            .chain(["--mode", "incremental"])
            .collect();
        let end = run_cls(&h.cls_bin, &emu.base_url, &db.url, &incremental)
            .await
            .map_err(|e| format!("cannot run cls: {e}"))?;
        emu.state.set_faults(false);
        let after = emu.state.stats.to_json();
        let delta = |k: &str| {
            after[k]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before[k].as_u64().unwrap_or(0))
        };
        t.notes.push(format!(
            "the incremental run made {} requests, {} faulted",
            delta("requests_total"),
            delta("faults_total")
        ));
        let verdict = judge(&end, &emu, &db.url, t.fault).await?;
        let Verdict::FailedWithCause { .. } = verdict else {
            return Ok(verdict);
        };
        let end = run_cls(&h.cls_bin, &emu.base_url, &db.url, FAST)
            .await
            .map_err(|e| format!("cannot run cls: {e}"))?;
        recovered(verdict, &end, &emu, &db.url, t).await
    }
    .await;
    db.drop_now().await;
    emu.shutdown().await;
    result
}
