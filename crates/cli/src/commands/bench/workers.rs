//! `cls bench --parts workers`: how run throughput grows with `cls worker` processes.
//!
//! For 1, 2 and 3 worker processes (each running `--workers-per-process` runs at once), the
//! same work is set up from scratch: in-process emulators — one per Stripe account, with
//! Stripe's rate limits and the benchmark's latency — a fresh PostgreSQL state database with
//! `--worker-configurations` configurations spread over the accounts (two in a row share an
//! account, with different data types), one queued full run each, and a fresh destination
//! database with a schema per configuration. Then the worker processes are started and the
//! clock runs until every run has ended. Printed: runs per minute for each count, the ratio to
//! one process, the Stripe requests made and how many the emulators answered 429 (few means
//! the accounts' budgets held across processes).
//!
//! Throughput grows with processes while runs wait on latency; it stops growing once the
//! accounts' rate limits bind (every account's budget is spent) — or, on a small machine,
//! once the CPU does.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cls_control::{
    MasterKey, NewConfiguration, NewProject, NewRun, PageRequest, RunStatus, StateUrl, Store,
    SyncMode, Trigger,
};
use cls_destination::DatabaseUrl;
use cls_emulator::{Mode, RunningEmulator};
use cls_stripe::ApiKey;
use serde::Serialize;

use super::{spawn_emulator, BenchArgs, Scratch};

/// The key the emulated accounts accept with every read permission.
const KEY: &str = "rk_test_cls_emulator";

/// Data types of the configurations, in turn. Payment methods cost a request per customer.
const TYPE_SETS: &[&[&str]] = &[
    &["customers", "payment_methods"],
    &["prices", "invoices"],
    &["payment_methods", "charges"],
    &["customers", "invoices"],
    &["products", "payment_methods"],
    &["payment_intents", "refunds"],
];

/// Worker process counts measured.
const PROCESSES: [usize; 3] = [1, 2, 3];

/// The figures of the workers part.
#[derive(Debug, Clone, Serialize)]
pub(super) struct WorkersFigures {
    /// Configurations (one run each) per measurement.
    pub configurations: usize,
    /// Emulated Stripe accounts they are spread over.
    pub accounts: usize,
    /// Customers per account.
    pub customers: usize,
    /// Runs each process executes at once.
    pub runs_per_process: usize,
    /// One measurement per process count.
    pub measurements: Vec<WorkersMeasurement>,
}

/// One process count's figures.
#[derive(Debug, Clone, Serialize)]
pub(super) struct WorkersMeasurement {
    /// `cls worker` processes.
    pub processes: usize,
    /// From starting the processes until every run had ended.
    pub seconds: f64,
    /// Runs that ended `succeeded`.
    pub succeeded: usize,
    /// Runs per minute.
    pub runs_per_minute: f64,
    /// Runs per minute relative to one process.
    pub ratio: f64,
    /// Stripe requests the emulators served.
    pub requests: u64,
    /// Of which answered 429.
    pub rate_limited: u64,
    /// The most runs per minute the accounts' limits allow for this work: the busiest
    /// account's requests at its 25 req/s, whatever the number of processes.
    pub limit_runs_per_minute: f64,
}

/// Account (emulator) of configuration `i`.
fn account_of(i: usize, accounts: usize) -> usize {
    (i / 2) % accounts
}

/// Measures 1, 2 and 3 worker processes.
pub(super) async fn measure(args: &BenchArgs) -> anyhow::Result<WorkersFigures> {
    if args.worker_configurations == 0 || args.worker_accounts == 0 {
        bail!("--worker-configurations and --worker-accounts must be at least 1");
    }
    let mut measurements: Vec<WorkersMeasurement> = Vec::new();
    for processes in PROCESSES {
        eprintln!(
            "[workers] {processes} process(es) × {} runs at once: {} configurations over {} accounts…",
            args.workers_per_process, args.worker_configurations, args.worker_accounts
        );
        let mut m = measure_one(args, processes).await?;
        let one = measurements
            .first()
            .map_or(m.runs_per_minute, |f| f.runs_per_minute);
        m.ratio = m.runs_per_minute / one;
        eprintln!(
            "[workers] {processes}: {:.1} runs/minute ({:.1} s)",
            m.runs_per_minute, m.seconds
        );
        measurements.push(m);
    }
    Ok(WorkersFigures {
        configurations: args.worker_configurations,
        accounts: args.worker_accounts,
        customers: args.worker_customers,
        runs_per_process: args.workers_per_process,
        measurements,
    })
}

/// Everything one measurement set up, torn down by [`Setup::finish`].
struct Setup {
    state: Scratch,
    dest: Scratch,
    emulators: Vec<RunningEmulator>,
    data_dir: PathBuf,
    store: Arc<dyn Store>,
    configurations: Vec<cls_control::Configuration>,
}

impl Setup {
    async fn new(args: &BenchArgs, processes: usize) -> anyhow::Result<Setup> {
        let admin = &args.database_url;
        let state = Scratch::new(admin, &format!("workers_state_{processes}")).await?;
        let dest = Scratch::new(admin, &format!("workers_dest_{processes}")).await?;
        let data_dir = std::env::temp_dir().join(format!(
            "cls-bench-workers-{}-{processes}",
            std::process::id()
        ));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let key = MasterKey::find(&data_dir)?;
        let store = cls_control::open(&StateUrl::parse(&state.url)?, key).await?;
        let mut emulators = Vec::new();
        for a in 0..args.worker_accounts {
            emulators.push(
                spawn_emulator(
                    args.seed + a as u64,
                    args.worker_customers,
                    Mode::Test,
                    true,
                    args.latency_ms,
                )
                .await?,
            );
        }
        let dest_url = DatabaseUrl::parse(&dest.url)?;
        let mut configurations = Vec::new();
        for i in 0..args.worker_configurations {
            let project = store
                .create_project(NewProject {
                    name: format!("bench {i}"),
                    database_url: dest_url.clone(),
                    schema: Some(format!("c{i:03}")),
                })
                .await?;
            let mut data_types = Vec::new();
            for name in TYPE_SETS[i % TYPE_SETS.len()] {
                data_types.push(
                    cls_catalog::find(name)
                        .with_context(|| format!("data type {name} is not in the catalog"))?,
                );
            }
            let base = &emulators[account_of(i, args.worker_accounts)].base_url;
            let c = store
                .create_configuration(NewConfiguration {
                    name: format!("bench {i}"),
                    project_id: project.id,
                    key: ApiKey::parse(KEY)?,
                    data_types,
                    stripe_api_base: Some(url::Url::parse(base)?),
                    webhook_secret: None,
                })
                .await?;
            store
                .queue_run(NewRun {
                    configuration_id: c.id,
                    trigger: Trigger::Manual,
                    mode: SyncMode::Full,
                })
                .await?;
            configurations.push(c);
        }
        Ok(Setup {
            state,
            dest,
            emulators,
            data_dir,
            store,
            configurations,
        })
    }

    /// Runs not yet ended, and runs succeeded.
    async fn progress(&self) -> anyhow::Result<(usize, usize)> {
        let (mut open, mut succeeded) = (0, 0);
        for c in &self.configurations {
            for r in self
                .store
                .list_runs(c.id, PageRequest::default())
                .await?
                .items
            {
                match r.status {
                    RunStatus::Queued | RunStatus::Running => open += 1,
                    RunStatus::Succeeded => succeeded += 1,
                    _ => {}
                }
            }
        }
        Ok((open, succeeded))
    }

    /// Requests and 429s the emulators served, and the most requests one account served
    /// (429s not counted).
    fn traffic(&self) -> (u64, u64, u64) {
        self.emulators.iter().fold((0, 0, 0), |(r, l, busiest), e| {
            let stats = e.state.stats.to_json();
            let requests = stats["requests_total"].as_u64().unwrap_or(0);
            let limited = stats["rate_limited_total"].as_u64().unwrap_or(0);
            (
                r + requests,
                l + limited,
                busiest.max(requests.saturating_sub(limited)),
            )
        })
    }

    async fn finish(self) -> anyhow::Result<()> {
        for e in self.emulators {
            e.shutdown().await;
        }
        drop(self.store);
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.state.drop_now().await?;
        self.dest.drop_now().await
    }
}

/// Starts `processes` workers over a fresh setup and times them until every run has ended.
async fn measure_one(args: &BenchArgs, processes: usize) -> anyhow::Result<WorkersMeasurement> {
    let setup = Setup::new(args, processes).await?;
    let exe = std::env::current_exe().context("cannot find the cls binary to run the workers")?;
    let started = Instant::now();
    let mut children = Vec::new();
    for _ in 0..processes {
        let child = tokio::process::Command::new(&exe)
            .args([
                "worker",
                "--workers",
                &args.workers_per_process.to_string(),
                "--data-dir",
                &setup.data_dir.display().to_string(),
            ])
            .env("CLS_STATE_URL", &setup.state.url)
            .env_remove("CLS_MASTER_KEY")
            .env_remove("CLS_STRIPE_API_BASE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start a cls worker process")?;
        children.push(child);
    }
    let deadline = started + Duration::from_secs(1800);
    let waited = loop {
        match setup.progress().await {
            Ok((0, succeeded)) => break Ok(succeeded),
            Ok(_) if Instant::now() > deadline => {
                break Err(anyhow::anyhow!(
                    "runs were still unfinished after 30 minutes: use fewer --worker-configurations"
                ))
            }
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        if let Some(exited) = children
            .iter_mut()
            .find_map(|c| c.try_wait().ok().flatten())
        {
            break Err(anyhow::anyhow!(
                "a cls worker process exited early ({exited}): run one by hand with the same state to see why"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    for child in &mut children {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let (requests, rate_limited, busiest) = setup.traffic();
    let limit_seconds = busiest as f64 / f64::from(cls_stripe::TEST_MODE_GLOBAL_RPS);
    setup.finish().await?;
    let succeeded = waited?;
    Ok(WorkersMeasurement {
        processes,
        seconds,
        succeeded,
        runs_per_minute: args.worker_configurations as f64 * 60.0 / seconds,
        ratio: 1.0,
        requests,
        rate_limited,
        limit_runs_per_minute: args.worker_configurations as f64 * 60.0 / limit_seconds.max(1.0),
    })
}

/// Prints the part's figures.
pub(super) fn print(w: &WorkersFigures) {
    println!();
    println!(
        "workers: {} configurations (one full run each) over {} test-mode accounts of {} customers, {} runs at once per process",
        w.configurations, w.accounts, w.customers, w.runs_per_process
    );
    println!(
        "  processes   runs/minute   vs 1 process   seconds   succeeded   Stripe requests   429s   limits allow"
    );
    for m in &w.measurements {
        println!(
            "  {:>9}   {:>11.1}   {:>11.2}×   {:>7.1}   {:>5}/{:<5}   {:>15}   {:>4}   {:>6.1} runs/minute",
            m.processes,
            m.runs_per_minute,
            m.ratio,
            m.seconds,
            m.succeeded,
            w.configurations,
            m.requests,
            m.rate_limited,
            m.limit_runs_per_minute
        );
    }
    println!(
        "  (limits allow: the busiest account's requests at 25 req/s, a ceiling no number of processes passes)"
    );
}
