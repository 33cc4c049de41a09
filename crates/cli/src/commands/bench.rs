//! `cls bench`: how fast a backfill runs against Stripe's rate limits, measured end to end.
//!
//! For each mode (test: 25 req/s in all; live: 100 req/s in all), an in-process emulator with
//! Stripe's limits and ~250 ms latency serves a seeded account, and a real `cls sync` child
//! process copies it into a fresh PostgreSQL database. The figures printed:
//! - the ceiling: the least time Stripe's limits allow for this dataset, from the pages each
//!   endpoint must serve (`ceil(objects / 100)` per list, the child lists beyond embedded first
//!   pages) — `max(total / global rate, busiest endpoint / endpoint rate)` plus one round trip;
//! - efficiency = ceiling / actual time;
//! - peak RSS of the sync process (read from `/proc/<pid>/status`, VmHWM);
//! - a sequential baseline — one cursor per data type, one data type at a time, as the peers
//!   walk — measured in-process on a smaller account of the same shape (its throughput is bound
//!   by latency, not by size), for the speed-up ratio;
//! - a database-bound run (no limits, no latency) next to a plain `COPY` of the same JSON rows
//!   into the same PostgreSQL: the destination's own ceiling;
//! - with `--parts workers`, runs per minute for 1, 2 and 3 `cls worker` processes sharing a
//!   PostgreSQL state over several rate-limited accounts ([`workers`]).

mod workers;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use cls_catalog::DataType;
use cls_emulator::{EmulatorConfig, Mode, RunningEmulator};
use cls_engine::{run_full_sync, SyncOptions};
use cls_stripe::{ApiKey, ClientConfig, StripeClient};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

use super::Outcome;

/// Objects the generator builds per customer, on average (measured: ~17.6).
const OBJECTS_PER_CUSTOMER: f64 = 17.5;

/// The first page of an embedded child list (`invoice.lines`, `subscription.items`).
const EMBEDDED_PAGE: usize = 10;

/// Arguments of `cls bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Objects in the generated account (about; the generator works in whole customers).
    #[arg(long, default_value_t = 200_000)]
    pub objects: usize,
    /// PostgreSQL server to benchmark against; scratch databases are created there and dropped.
    #[arg(
        long,
        env = "CLS_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Mean latency the emulator adds to every request, in milliseconds (Stripe: ~200–400).
    #[arg(long, default_value_t = 250)]
    pub latency_ms: u64,
    /// Objects in the account the sequential baseline walks (default: objects / 20).
    #[arg(long)]
    pub baseline_objects: Option<usize>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seed of the generated accounts.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Which parts to run: `limits` (test and live mode under Stripe's limits), `baseline`
    /// (the sequential walk), `database` (database-bound ingest next to plain COPY),
    /// `workers` (runs per minute for 1, 2 and 3 `cls worker` processes; not in the default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "limits,baseline,database"
    )]
    pub parts: Vec<Part>,
    /// Workers part: configurations (one full run each) per measurement.
    #[arg(long, default_value_t = 24)]
    pub worker_configurations: usize,
    /// Workers part: emulated Stripe accounts (test mode, 25 req/s each) the configurations
    /// are spread over.
    #[arg(long, default_value_t = 4)]
    pub worker_accounts: usize,
    /// Workers part: customers in each account.
    #[arg(long, default_value_t = 120)]
    pub worker_customers: usize,
    /// Workers part: runs each `cls worker` process executes at once (`--workers`).
    #[arg(long, default_value_t = 2)]
    pub workers_per_process: usize,
}

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Test and live mode under Stripe's rate limits and latency.
    Limits,
    /// The sequential baseline.
    Baseline,
    /// Database-bound ingest next to plain COPY.
    Database,
    /// Runs per minute for 1, 2 and 3 `cls worker` processes.
    Workers,
}

/// The data types benchmarked: every list that is walked by pages. Payment methods are left
/// out: Stripe lists them per customer only, so they cost one request per customer whatever
/// the tool does, which measures the account's customer count rather than the backfill.
fn bench_types() -> Vec<&'static DataType> {
    cls_catalog::CATALOG
        .iter()
        .filter(|t| t.name != "payment_methods")
        .collect()
}

/// The least requests a dataset needs, per endpoint.
#[derive(Debug, Default, Clone, Serialize)]
struct Ceiling {
    requests: u64,
    busiest_endpoint: String,
    busiest_requests: u64,
    seconds: f64,
}

fn ceiling(
    emulator: &RunningEmulator,
    global_rps: f64,
    endpoint_rps: f64,
    latency: f64,
) -> Ceiling {
    let store = emulator
        .state
        .store
        .read()
        .unwrap_or_else(|p| p.into_inner());
    let now = emulator.state.now();
    // Two requests every run starts with: the account and the newest event.
    let mut per_endpoint: HashMap<String, u64> = HashMap::from([("setup".to_string(), 2)]);
    for t in bench_types() {
        let Some(table) = store.table(t.object) else {
            continue;
        };
        match t.parent {
            None => {
                let live = table
                    .unordered()
                    .filter(|r| !r.deleted)
                    // Stripe keeps 30 days of events.
                    .filter(|r| {
                        t.name != "events"
                            || r.created >= now - cls_engine::incremental::EVENT_RETENTION_SECS
                    })
                    .count();
                *per_endpoint.entry(t.list_path.to_string()).or_default() +=
                    live.div_ceil(100).max(1) as u64;
            }
            Some(p) => {
                let Some(parents) =
                    cls_catalog::find(p.data_type).and_then(|pt| store.table(pt.object))
                else {
                    continue;
                };
                let extra: u64 = parents
                    .unordered()
                    .filter(|r| !r.deleted)
                    .map(|r| {
                        let n = table.children(&r.id).filter(|c| !c.deleted).count();
                        n.saturating_sub(EMBEDDED_PAGE).div_ceil(100) as u64
                    })
                    .sum();
                *per_endpoint.entry(p.list_path.to_string()).or_default() += extra;
            }
        }
    }
    let requests: u64 = per_endpoint.values().sum();
    let (busiest_endpoint, busiest_requests) = per_endpoint
        .iter()
        .filter(|(e, _)| e.as_str() != "setup")
        .max_by_key(|(_, n)| **n)
        .map(|(e, n)| (e.clone(), *n))
        .unwrap_or_default();
    let seconds =
        (requests as f64 / global_rps).max(busiest_requests as f64 / endpoint_rps) + latency;
    Ceiling {
        requests,
        busiest_endpoint,
        busiest_requests,
        seconds,
    }
}

/// One measured sync.
#[derive(Debug, Default, Clone, Serialize)]
struct RunFigures {
    objects: u64,
    requests: u64,
    rate_limited: u64,
    retries: u64,
    failed_types: u64,
    seconds: f64,
    requests_per_second: f64,
    objects_per_second: f64,
    peak_rss_mb: f64,
}

/// Figures of one mode.
#[derive(Debug, Serialize)]
struct ModeFigures {
    mode: &'static str,
    global_rps: u32,
    run: RunFigures,
    ceiling: Ceiling,
    efficiency: f64,
}

#[derive(Debug, Serialize)]
struct Baseline {
    objects: u64,
    requests: u64,
    seconds: f64,
    objects_per_second: f64,
    /// Live-mode objects/s of the parallel backfill ÷ this.
    speedup_live: f64,
}

#[derive(Debug, Serialize)]
struct DatabaseBound {
    sync: RunFigures,
    copy_rows: u64,
    copy_seconds: f64,
    copy_rows_per_second: f64,
    /// Sync objects/s ÷ COPY rows/s.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    objects_requested: usize,
    customers: usize,
    latency_ms: u64,
    data_types: usize,
    modes: Vec<ModeFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<Baseline>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_bound: Option<DatabaseBound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workers: Option<workers::WorkersFigures>,
}

/// A scratch database on the benchmark server, dropped by [`Scratch::drop_now`].
struct Scratch {
    admin: String,
    name: String,
    url: String,
}

impl Scratch {
    async fn new(admin: &str, label: &str) -> anyhow::Result<Scratch> {
        let name = format!("cls_bench_{}_{label}", std::process::id());
        let mut conn = PgConnection::connect(admin)
            .await
            .context("cannot reach the benchmark's PostgreSQL: pass --database-url postgres://user@host:port/db of a server where the user may create databases")?;
        conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\"").as_str())
            .await?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .context("the benchmark creates scratch databases: give the user CREATEDB")?;
        let mut url = url::Url::parse(admin)?;
        url.set_path(&name);
        Ok(Scratch {
            admin: admin.to_string(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin).await?;
        conn.execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name).as_str())
            .await?;
        Ok(())
    }
}

async fn spawn_emulator(
    seed: u64,
    customers: usize,
    mode: Mode,
    limits: bool,
    latency_ms: u64,
) -> anyhow::Result<RunningEmulator> {
    let mut config = EmulatorConfig::new(seed, customers);
    config.mode = mode;
    config.rate_limits = limits;
    config.latency_ms = latency_ms;
    Ok(cls_emulator::spawn(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?)
}

/// Peak resident memory of a process so far, in MiB (Linux: VmHWM).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs `cls sync --json` as a child process and measures it.
async fn measured_sync(
    key: &str,
    api_base: &str,
    db_url: &str,
    extra: &[&str],
) -> anyhow::Result<RunFigures> {
    let exe = std::env::current_exe().context("cannot find the cls binary to run the sync")?;
    let types: Vec<&str> = bench_types().iter().map(|t| t.name).collect();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .args([
            "sync",
            "--json",
            "--mode",
            "full",
            "--types",
            &types.join(","),
        ])
        .args(extra)
        .env("STRIPE_API_KEY", key)
        .env("DATABASE_URL", db_url)
        .env("CLS_STRIPE_API_BASE", api_base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the sync process")?;
    let pid = child.id().unwrap_or(0);
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut buf)
            .await
            .map(|_| buf)
    });
    let mut peak = 0.0f64;
    let status = loop {
        if let Some(mb) = peak_rss_mb(pid) {
            peak = peak.max(mb);
        }
        match tokio::time::timeout(Duration::from_millis(50), child.wait()).await {
            Ok(status) => break status?,
            Err(_) => continue,
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let out = reader.await??;
    if !status.success() && status.code() != Some(3) {
        bail!("the benchmarked sync failed ({status})");
    }
    let report: Value = serde_json::from_slice(&out).context("the sync printed no JSON report")?;
    let types = report["types"].as_array().cloned().unwrap_or_default();
    let sum = |k: &str| types.iter().filter_map(|t| t[k].as_u64()).sum::<u64>();
    let requests = sum("requests");
    let objects = sum("objects");
    Ok(RunFigures {
        objects,
        requests,
        rate_limited: sum("rate_limited"),
        retries: sum("retries"),
        failed_types: types.iter().filter(|t| t["status"] != "succeeded").count() as u64,
        seconds,
        requests_per_second: requests as f64 / seconds,
        objects_per_second: objects as f64 / seconds,
        peak_rss_mb: peak,
    })
}

/// The baseline: sequential walk in-process (one cursor per data type, one type at a time).
async fn baseline(
    args: &BenchArgs,
    customers: usize,
    admin: &str,
) -> anyhow::Result<(u64, u64, f64)> {
    let emulator = spawn_emulator(args.seed, customers, Mode::Live, true, args.latency_ms).await?;
    let db = Scratch::new(admin, "baseline").await?;
    let client = StripeClient::new(
        ApiKey::parse("rk_live_cls_emulator")?,
        ClientConfig {
            api_base: url::Url::parse(&emulator.base_url)?,
            ..ClientConfig::default()
        },
    )?;
    let url = cls_destination::DatabaseUrl::parse(&db.url)?;
    let dest = cls_destination::connect(&url, "stripe").await?;
    let started = Instant::now();
    let report = run_full_sync(
        &client,
        Arc::from(dest),
        &SyncOptions {
            types: bench_types(),
            now: None,
            sequential: true,
        },
        Arc::new(|_| {}),
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    db.drop_now().await?;
    emulator.shutdown().await;
    Ok((report.objects(), report.requests(), seconds))
}

/// A plain `COPY` of the benchmark's JSON rows (id, data) into an unindexed table.
async fn plain_copy(emulator: &RunningEmulator, admin: &str) -> anyhow::Result<(u64, f64)> {
    let mut csv = Vec::new();
    let mut rows = 0u64;
    {
        let store = emulator
            .state
            .store
            .read()
            .unwrap_or_else(|p| p.into_inner());
        for t in bench_types() {
            let Some(table) = store.table(t.object) else {
                continue;
            };
            for r in table.unordered().filter(|r| !r.deleted) {
                csv.extend_from_slice(r.id.as_bytes());
                csv.extend_from_slice(b",\"");
                for &b in r.json.iter() {
                    if b == b'"' {
                        csv.push(b'"');
                    }
                    csv.push(b);
                }
                csv.extend_from_slice(b"\"\n");
                rows += 1;
            }
        }
    }
    let db = Scratch::new(admin, "copy").await?;
    let mut conn = PgConnection::connect(&db.url).await?;
    conn.execute("CREATE TABLE plain_copy (id text, data jsonb)")
        .await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY plain_copy (id, data) FROM STDIN WITH (FORMAT csv)")
        .await?;
    for chunk in csv.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    conn.close().await?;
    db.drop_now().await?;
    Ok((rows, seconds))
}

/// Runs `cls bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    if args.objects < 1_000 {
        bail!(
            "--objects {} is too small to measure: use at least 1000",
            args.objects
        );
    }
    let customers = ((args.objects as f64) / OBJECTS_PER_CUSTOMER).ceil() as usize;
    let latency = args.latency_ms as f64 / 1000.0;
    let admin = args.database_url.clone();
    let mut modes = Vec::new();
    let modes_to_run: &[(Mode, &'static str, &str, u32)] = if args.parts.contains(&Part::Limits) {
        &[
            (Mode::Test, "test", "rk_test_cls_emulator", 25),
            (Mode::Live, "live", "rk_live_cls_emulator", 100),
        ]
    } else {
        &[]
    };
    for &(mode, name, key, global_rps) in modes_to_run {
        eprintln!(
            "[{name} mode] generating ~{} objects ({customers} customers)…",
            args.objects
        );
        let emulator = spawn_emulator(args.seed, customers, mode, true, args.latency_ms).await?;
        let ceiling = ceiling(&emulator, f64::from(global_rps), 25.0, latency);
        eprintln!(
            "[{name} mode] syncing: ceiling {:.1} s for {} requests…",
            ceiling.seconds, ceiling.requests
        );
        let db = Scratch::new(&admin, name).await?;
        let run = measured_sync(key, &emulator.base_url, &db.url, &[]).await;
        db.drop_now().await?;
        emulator.shutdown().await;
        let run = run?;
        modes.push(ModeFigures {
            mode: name,
            global_rps,
            efficiency: ceiling.seconds / run.seconds,
            run,
            ceiling,
        });
    }

    let baseline = if args.parts.contains(&Part::Baseline) {
        let baseline_objects = args
            .baseline_objects
            .unwrap_or(args.objects / 20)
            .max(1_000);
        let baseline_customers = ((baseline_objects as f64) / OBJECTS_PER_CUSTOMER).ceil() as usize;
        eprintln!("[baseline] sequential walk of ~{baseline_objects} objects, live mode…");
        let (b_objects, b_requests, b_seconds) =
            baseline(&args, baseline_customers, &admin).await?;
        let live_ops = modes
            .iter()
            .find(|m| m.mode == "live")
            .map(|m| m.run.objects_per_second)
            .unwrap_or(0.0);
        Some(Baseline {
            objects: b_objects,
            requests: b_requests,
            seconds: b_seconds,
            objects_per_second: b_objects as f64 / b_seconds,
            speedup_live: live_ops / (b_objects as f64 / b_seconds),
        })
    } else {
        None
    };

    let database_bound = if args.parts.contains(&Part::Database) {
        eprintln!("[database-bound] no limits, no latency…");
        let emulator = spawn_emulator(args.seed, customers, Mode::Live, false, 0).await?;
        let db = Scratch::new(&admin, "dbbound").await?;
        let sync = measured_sync(
            "rk_live_cls_emulator",
            &emulator.base_url,
            &db.url,
            &["--global-rps", "1000000", "--endpoint-rps", "1000000"],
        )
        .await;
        db.drop_now().await?;
        let copy = plain_copy(&emulator, &admin).await;
        emulator.shutdown().await;
        let sync = sync?;
        let (copy_rows, copy_seconds) = copy?;
        let copy_rps = copy_rows as f64 / copy_seconds;
        Some(DatabaseBound {
            ratio: sync.objects_per_second / copy_rps,
            sync,
            copy_rows,
            copy_seconds,
            copy_rows_per_second: copy_rps,
        })
    } else {
        None
    };

    let workers = if args.parts.contains(&Part::Workers) {
        Some(workers::measure(&args).await?)
    } else {
        None
    };

    let report = BenchReport {
        objects_requested: args.objects,
        customers,
        latency_ms: args.latency_ms,
        data_types: bench_types().len(),
        modes,
        baseline,
        database_bound,
        workers,
    };
    let workers_only =
        report.modes.is_empty() && report.baseline.is_none() && report.database_bound.is_none();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if workers_only {
        if let Some(w) = &report.workers {
            workers::print(w);
        }
    } else {
        print_report(&report);
    }
    Ok(Outcome::Success)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn print_report(r: &BenchReport) {
    println!(
        "cls bench: {} data types, ~{} objects ({} customers), {} ms latency, Stripe's limits on",
        r.data_types, r.objects_requested, r.customers, r.latency_ms
    );
    println!();
    println!(
        "{:<6} {:>9} {:>8} {:>5} {:>8} {:>8} {:>9} {:>9} {:>10} {:>9}",
        "mode",
        "objects",
        "requests",
        "429s",
        "seconds",
        "req/s",
        "ceiling s",
        "efficiency",
        "objects/s",
        "peak RSS"
    );
    for m in &r.modes {
        println!(
            "{:<6} {:>9} {:>8} {:>5} {:>8.1} {:>8.1} {:>9.1} {:>9.2} {:>10.0} {:>6.0} MB",
            m.mode,
            m.run.objects,
            m.run.requests,
            m.run.rate_limited,
            m.run.seconds,
            m.run.requests_per_second,
            m.ceiling.seconds,
            m.efficiency,
            m.run.objects_per_second,
            m.run.peak_rss_mb
        );
    }
    for m in &r.modes {
        println!(
            "  {} mode: ceiling = max({} requests / {} req/s, {} requests on {} / 25 req/s) + one round trip",
            m.mode, m.ceiling.requests, m.global_rps, m.ceiling.busiest_requests, m.ceiling.busiest_endpoint
        );
    }
    println!();
    if let Some(b) = &r.baseline {
        println!(
            "sequential baseline (one cursor per data type, one type at a time), live mode, {} objects: {} requests in {:.1} s = {:.0} objects/s",
            b.objects, b.requests, b.seconds, b.objects_per_second
        );
    }
    if let Some(d) = &r.database_bound {
        println!(
            "database-bound (no limits, no latency): {:.0} objects/s; plain COPY of the same {} rows: {:.0} rows/s; ratio {:.2}; peak RSS {:.0} MB",
            d.sync.objects_per_second,
            d.copy_rows,
            d.copy_rows_per_second,
            d.ratio,
            d.sync.peak_rss_mb
        );
    }
    println!();
    println!("targets:");
    for m in &r.modes {
        let ok = m.efficiency >= 0.90 && m.run.failed_types == 0;
        println!(
            "  efficiency ≥ 0.90 in {} mode, no failed data type: {:.2} — {}",
            m.mode,
            m.efficiency,
            verdict(ok)
        );
    }
    if let Some(b) = &r.baseline {
        println!(
            "  ≥ 10× the sequential baseline in live mode: {:.1}× — {}",
            b.speedup_live,
            verdict(b.speedup_live >= 10.0)
        );
    }
    if let Some(d) = &r.database_bound {
        println!(
            "  database-bound ingest ≥ 50% of plain COPY: {:.0}% — {}",
            d.ratio * 100.0,
            verdict(d.ratio >= 0.5)
        );
    }
    let peak = r
        .modes
        .iter()
        .map(|m| m.run.peak_rss_mb)
        .chain(r.database_bound.as_ref().map(|d| d.sync.peak_rss_mb))
        .fold(0.0, f64::max);
    println!(
        "  peak RSS < 300 MB (target stated at 1,000,000 objects; this run: {} objects): {:.0} MB — {}",
        r.objects_requested,
        peak,
        verdict(peak < 300.0)
    );
    if let Some(w) = &r.workers {
        workers::print(w);
    }
}
