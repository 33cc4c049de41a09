//! `cls-faults`: runs the fault matrix once (quick) or over and over with random seeds and
//! kill points for a while (`--soak`), and prints the report. Exits 1 when any trial said
//! "succeeded" with data missing or ended without an honest cause.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use cls_faults::{run_matrix, Fault, Harness, Report};
use rand::Rng;

/// Fault-injection suite for `cls sync`.
#[derive(Debug, Parser)]
#[command(name = "cls-faults", about, long_about = None)]
struct Args {
    /// Repeat the matrix with random seeds (and so random kill points) until --minutes pass.
    #[arg(long)]
    soak: bool,
    /// Seed of the first round (random when absent); every trial's seed derives from it.
    #[arg(long)]
    seed: Option<u64>,
    /// How long a soak runs, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Customers in each trial's account.
    #[arg(long, default_value_t = 40)]
    customers: usize,
    /// Trials run at once.
    #[arg(long, default_value_t = 3)]
    concurrency: usize,
    /// Only the faults whose report name contains this text (case-insensitive).
    #[arg(long)]
    only: Option<String>,
    /// The `cls` binary under test (default: `cls` beside this binary, as cargo builds them).
    #[arg(long, env = "CLS_BIN")]
    cls: Option<PathBuf>,
}

fn cls_beside_me() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot tell where cls-faults is")?;
    let cls = me.with_file_name("cls");
    anyhow::ensure!(
        cls.exists(),
        "no `cls` binary beside {} : build it (`cargo build -p cls`) or pass --cls PATH",
        me.display()
    );
    Ok(cls)
}

fn trials(seed: u64, only: Option<&str>) -> Vec<(Fault, u64)> {
    Fault::quick_matrix()
        .into_iter()
        .enumerate()
        .map(|(i, f)| (f, seed.wrapping_add(i as u64)))
        .filter(|(f, _)| only.is_none_or(|o| f.name().to_lowercase().contains(&o.to_lowercase())))
        .collect()
}

/// Runs the matrix (once, or in rounds until the deadline); the report and each round's first
/// seed (trial `i` of a round uses that seed + `i`).
async fn run(args: Args) -> anyhow::Result<(Report, Vec<u64>)> {
    let harness = Harness {
        cls_bin: match args.cls {
            Some(p) => p,
            None => cls_beside_me()?,
        },
        customers: args.customers,
    };
    let first = args.seed.unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("cls-faults: first seed {first}");
    if !args.soak {
        let trials = trials(first, args.only.as_deref());
        let report = run_matrix(&harness, &trials, args.concurrency).await;
        return Ok((report, vec![first]));
    }
    let deadline = Instant::now() + Duration::from_secs(args.minutes * 60);
    let mut report = Report::default();
    let mut seed = first;
    let mut rounds = Vec::new();
    while Instant::now() < deadline {
        rounds.push(seed);
        eprintln!("cls-faults: round {} with first seed {seed}", rounds.len());
        let round = run_matrix(
            &harness,
            &trials(seed, args.only.as_deref()),
            args.concurrency,
        )
        .await;
        for t in round.failures.iter() {
            eprintln!("cls-faults: FAILED {} seed {}", t.fault.name(), t.seed);
        }
        merge(&mut report, round);
        seed = rand::thread_rng().gen();
    }
    Ok((report, rounds))
}

fn merge(into: &mut Report, round: Report) {
    for (fault, r) in round.rows {
        let row = into.rows.entry(fault).or_default();
        row.trials += r.trials;
        row.equal += r.equal;
        row.failed_with_cause += r.failed_with_cause;
        row.wrong_success += r.wrong_success;
        row.unexplained += r.unexplained;
        row.runs += r.runs;
        row.max_seconds = row.max_seconds.max(r.max_seconds);
        if row.example_cause.is_none() {
            row.example_cause = r.example_cause;
        }
    }
    into.failures.extend(round.failures);
    into.seeds.extend(round.seeds);
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok((report, rounds)) => {
            println!("{}", report.render());
            println!("rounds: {}; first seed of each: {rounds:?}", rounds.len());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
