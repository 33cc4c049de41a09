//! Several `cls worker` processes sharing one PostgreSQL state, end to end: three real worker
//! processes on loopback, 24 configurations over four emulated Stripe accounts (with Stripe's
//! rate limits and some latency, so runs last long enough to be interrupted), and one worker
//! SIGKILLed while it holds runs. It checks that:
//! - every run ends `succeeded`, the killed worker's runs included (taken over, same run id,
//!   by a surviving worker once their lease expired);
//! - every destination schema equals its emulator's export for the configuration's types;
//! - no configuration ever ran in two processes at once — proved from outside the lease code:
//!   every Stripe request goes through a recording proxy in this test, which finds the
//!   process that sent it (the peer's socket, looked up in `/proc`), and for each
//!   configuration the spans of requests of different processes never overlap;
//! - the accounts' rate budgets held across processes: runs of one account saw each other
//!   through the state and divided its budget (the workers' logs say so), and the emulators
//!   answered next to no 429s (without the sharing, this test draws 14–21 and fails).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cls_control::{
    MasterKey, NewConfiguration, NewProject, NewRun, PageRequest, RunStatus, StateUrl, Store,
    SyncMode, SyncRun, Trigger,
};
use cls_destination::DatabaseUrl;
use cls_emulator::{EmulatorConfig, RunningEmulator};
use cls_stripe::ApiKey;
use cls_testkit::db::TestDb;
use cls_testkit::emulator::spawn_emulator_with;
use common::{assert_live_rows_equal_export, export, Table};
use sqlx::Row;

/// The restricted key the emulators accept with every read permission.
const KEY: &str = "rk_test_cls_emulator";
/// Emulated Stripe accounts.
const ACCOUNTS: usize = 4;
/// Configurations, spread over the accounts.
const CONFIGURATIONS: usize = 24;
/// Data types of the configurations, in turn: configurations of one account differ by type.
/// Payment methods cost one request per customer, so those runs are long enough to share
/// their account with others for a while.
const TYPE_SETS: &[&[&str]] = &[
    &["customers", "payment_methods"],
    &["prices", "invoices"],
    &["payment_methods", "charges"],
    &["customers", "invoices"],
    &["products", "payment_methods"],
    &["payment_intents", "refunds"],
];
/// The account (emulator) of configuration `i`: two in a row share one, so runs claimed
/// together share an account's rate budget (and each account's configurations have
/// different data types).
fn account_of(i: usize) -> usize {
    (i / 2) % ACCOUNTS
}

/// The lease the workers hold runs under, and their heartbeat.
const LEASE_SECONDS: &str = "4";
const HEARTBEAT_SECONDS: &str = "1";

#[tokio::test]
async fn a_worker_refuses_a_sqlite_state() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let out = common::cls(
        &["worker", "--data-dir", &dir.path().display().to_string()],
        &[],
    )
    .await;
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("needs a PostgreSQL state"), "{text}");
    assert!(text.contains("--state-url postgres://"), "{text}");
}

/// One Stripe request seen by the proxy.
#[derive(Debug, Clone)]
struct Seen {
    /// The configuration (index) whose API base it went to.
    configuration: usize,
    /// The process that sent it (`None` when it could not be found: it died meanwhile).
    pid: Option<u32>,
    /// When it arrived and when its answer was ready.
    start: Instant,
    end: Instant,
}

/// The recording proxy: `/c{i}/v1/…` is forwarded to configuration i's emulator.
struct Proxy {
    upstream: Vec<String>,
    port: u16,
    workers: Mutex<Vec<u32>>,
    seen: Mutex<Vec<Seen>>,
    http: reqwest::Client,
}

/// The process among `pids` owning the loopback TCP socket whose local port is `peer_port`
/// and remote port `server_port` (from `/proc/net/tcp` and each process's file descriptors).
fn pid_of_peer(peer_port: u16, server_port: u16, pids: &[u32]) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let inode = table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local = port_of(cols.get(1)?)?;
        let remote = port_of(cols.get(2)?)?;
        (local == peer_port && remote == server_port).then(|| cols.get(9).map(|s| s.to_string()))?
    })?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path())
                    .map(|target| target.to_string_lossy() == wanted)
                    .unwrap_or(false)
            })
    })
}

async fn forward(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((configuration, rest)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let start = Instant::now();
    let workers = proxy.workers.lock().expect("workers").clone();
    let pid = pid_of_peer(peer.port(), proxy.port, &workers);
    let Some(index) = configuration
        .strip_prefix('c')
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| *i < proxy.upstream.len())
    else {
        return (StatusCode::NOT_FOUND, "unknown configuration").into_response();
    };
    let mut url = format!("{}/{rest}", proxy.upstream[index]);
    if let Some(q) = query {
        url = format!("{url}?{q}");
    }
    let mut request = proxy.http.get(url);
    for name in ["authorization", "stripe-version", "stripe-account"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v);
        }
    }
    let response = match request.send().await {
        Ok(r) => {
            let status = r.status();
            let mut out = HeaderMap::new();
            for name in [
                "content-type",
                "retry-after",
                "stripe-should-retry",
                "request-id",
            ] {
                if let Some(v) = r.headers().get(name) {
                    out.insert(name, v.clone());
                }
            }
            let body = r.bytes().await.unwrap_or_default();
            (status, out, body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    proxy.seen.lock().expect("seen").push(Seen {
        configuration: index,
        pid,
        start,
        end: Instant::now(),
    });
    response
}

async fn start_proxy(upstream: Vec<String>) -> Arc<Proxy> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the proxy binds");
    let port = listener.local_addr().expect("an address").port();
    let proxy = Arc::new(Proxy {
        upstream,
        port,
        workers: Mutex::new(Vec::new()),
        seen: Mutex::new(Vec::new()),
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client"),
    });
    let app = axum::Router::new()
        .route("/{configuration}/{*rest}", axum::routing::get(forward))
        .with_state(proxy.clone());
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    proxy
}

/// A `cls worker` process, its stderr in a file.
struct Worker {
    child: tokio::process::Child,
    pid: u32,
    log: std::path::PathBuf,
}

impl Worker {
    fn start(state_url: &str, data_dir: &Path, n: usize) -> Worker {
        let log = data_dir.join(format!("worker-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("a log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"))
            .args([
                "--log-format",
                "json",
                "worker",
                "--workers",
                "2",
                "--data-dir",
                &data_dir.display().to_string(),
                "--grace-seconds",
                "20",
            ])
            .env("CLS_STATE_URL", state_url)
            .env("CLS_LEASE_SECONDS", LEASE_SECONDS)
            .env("CLS_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)
            .env("RUST_LOG", "info")
            .env_remove("CLS_MASTER_KEY")
            .env_remove("CLS_STRIPE_API_BASE")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("cls worker starts");
        let pid = child.id().expect("a pid");
        Worker { child, pid, log }
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Whether `worker_id` (`host-pid-suffix`) is this process's.
    fn owns(&self, worker_id: Option<&str>) -> bool {
        worker_id.is_some_and(|w| w.contains(&format!("-{}-", self.pid)))
    }

    /// SIGTERM, then a clean exit within a minute.
    async fn stop(mut self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the worker stops within a minute of SIGTERM")
            .expect("wait works");
        assert!(status.success(), "exited with {status}:\n{}", self.log());
    }
}

/// Every run of every configuration.
async fn all_runs(
    store: &dyn Store,
    configurations: &[cls_control::Configuration],
) -> Vec<SyncRun> {
    let mut runs = Vec::new();
    for c in configurations {
        let page = store
            .list_runs(c.id, PageRequest::default())
            .await
            .expect("runs listed");
        runs.extend(page.items);
    }
    runs
}

/// Every row of `schema.table`.
async fn table(pool: &sqlx::PgPool, schema: &str, table: &str) -> Option<Table> {
    let sql = format!("SELECT id, data::text AS data, deleted FROM \"{schema}\".\"{table}\"");
    let rows = sqlx::query(&sql).fetch_all(pool).await.ok()?;
    Some(
        rows.into_iter()
            .map(|r| {
                let data: String = r.get("data");
                let id: String = r.get("id");
                let deleted: bool = r.get("deleted");
                (id, (serde_json::from_str(&data).expect("JSON"), deleted))
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_one_killed_every_run_completes_once() {
    let started = Instant::now();
    let state = TestDb::new().await;
    let dest = TestDb::new().await;
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let key =
        MasterKey::create_key_file(&data_dir.path().join(cls_control::secrets::KEY_FILE_NAME))
            .expect("a master key file");
    let store = cls_control::open(&StateUrl::parse(&state.url).expect("state URL"), key)
        .await
        .expect("the state opens");

    let mut emulators: Vec<RunningEmulator> = Vec::new();
    for a in 0..ACCOUNTS {
        let mut config = EmulatorConfig::new(100 + a as u64, 120);
        config.rate_limits = true;
        config.latency_ms = 20;
        emulators.push(spawn_emulator_with(config).await);
    }
    let upstream: Vec<String> = (0..CONFIGURATIONS)
        .map(|i| emulators[account_of(i)].base_url.clone())
        .collect();
    let proxy = start_proxy(upstream).await;

    let dest_url = DatabaseUrl::parse(&dest.url).expect("destination URL");
    let mut configurations = Vec::new();
    for i in 0..CONFIGURATIONS {
        let project = store
            .create_project(NewProject {
                name: format!("warehouse {i}"),
                database_url: dest_url.clone(),
                schema: Some(format!("c{i:02}")),
            })
            .await
            .expect("a project");
        let types = TYPE_SETS[i % TYPE_SETS.len()]
            .iter()
            .map(|t| cls_catalog::find(t).expect("a catalog type"))
            .collect();
        let base = format!("http://127.0.0.1:{}/c{i}", proxy.port);
        let c = store
            .create_configuration(NewConfiguration {
                name: format!("account {} #{i}", account_of(i)),
                project_id: project.id,
                key: ApiKey::parse(KEY).expect("a key"),
                data_types: types,
                stripe_api_base: Some(url::Url::parse(&base).expect("a URL")),
                webhook_secret: None,
            })
            .await
            .expect("a configuration");
        store
            .queue_run(NewRun {
                configuration_id: c.id,
                trigger: Trigger::Manual,
                mode: SyncMode::Full,
            })
            .await
            .expect("a queued run");
        configurations.push(c);
    }

    let mut workers: Vec<Worker> = (0..3)
        .map(|n| Worker::start(&state.url, data_dir.path(), n))
        .collect();
    *proxy.workers.lock().expect("workers") = workers.iter().map(|w| w.pid).collect();

    // Kill worker 0 once it holds a run that has copied something (its heartbeat says so).
    let victim = workers.remove(0);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let runs = all_runs(store.as_ref(), &configurations).await;
        let held: Vec<&SyncRun> = runs
            .iter()
            .filter(|r| r.status == RunStatus::Running && victim.owns(r.worker_id.as_deref()))
            .collect();
        if held.iter().any(|r| r.stats.values().any(|s| s.objects > 0)) {
            break;
        }
        let left = runs
            .iter()
            .filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
            .count();
        assert!(
            Instant::now() < deadline && left > 0,
            "worker 0 never held a run in progress ({left} runs unfinished):\n{}",
            victim.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut victim = victim;
    victim.child.start_kill().expect("SIGKILL is sent");
    let _ = victim.child.wait().await;
    let killed_at = Instant::now();
    // What it held when it died (a run it finished just before is its own, recorded).
    let held: Vec<SyncRun> = all_runs(store.as_ref(), &configurations)
        .await
        .into_iter()
        .filter(|r| r.status == RunStatus::Running && victim.owns(r.worker_id.as_deref()))
        .collect();
    eprintln!(
        "killed worker 0 (pid {}) holding runs {:?} at {:.1} s",
        victim.pid,
        held.iter().map(|r| r.id.0).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );

    // The survivors finish everything, the killed worker's runs included.
    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        let runs = all_runs(store.as_ref(), &configurations).await;
        if runs
            .iter()
            .all(|r| !matches!(r.status, RunStatus::Queued | RunStatus::Running))
        {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "runs still unfinished after two minutes: {:?}\n{}\n{}",
            runs.iter()
                .filter(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
                .map(|r| (r.id.0, r.status, r.worker_id.clone()))
                .collect::<Vec<_>>(),
            workers[0].log(),
            workers[1].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    let mut logs = victim.log();
    for w in workers {
        logs.push_str(&w.log());
        w.stop().await;
    }

    // Every run once, and succeeded; the killed worker's runs were taken over, same ids.
    assert_eq!(runs.len(), CONFIGURATIONS, "one run per configuration");
    for r in &runs {
        assert_eq!(
            r.status,
            RunStatus::Succeeded,
            "run {}: {:?}",
            r.id,
            r.errors
        );
    }
    let held_ids: BTreeSet<i64> = held.iter().map(|r| r.id.0).collect();
    assert!(!held_ids.is_empty(), "the killed worker held no run");
    for r in runs.iter().filter(|r| held_ids.contains(&r.id.0)) {
        assert!(
            !victim.owns(r.worker_id.as_deref()) && r.worker_id.is_some(),
            "run {} was not taken over: {:?}",
            r.id,
            r.worker_id
        );
    }

    // Each destination equals its emulator's export.
    let pool = sqlx::PgPool::connect(&dest.url).await.expect("destination");
    let exports = {
        let mut all = Vec::new();
        for e in &emulators {
            all.push(export(&e.base_url).await);
        }
        all
    };
    for (i, c) in configurations.iter().enumerate() {
        for name in &c.data_types {
            let t = cls_catalog::find(name).expect("a catalog type");
            let rows = table(&pool, &format!("c{i:02}"), t.table()).await;
            assert_live_rows_equal_export(t, rows.as_ref(), &exports[account_of(i)]);
        }
    }
    pool.close().await;

    // No configuration ever ran in two processes at once, from the proxy's record.
    let seen = proxy.seen.lock().expect("seen").clone();
    let unknown = seen.iter().filter(|s| s.pid.is_none()).count();
    let mut spans: BTreeMap<usize, BTreeMap<u32, (Instant, Instant)>> = BTreeMap::new();
    for s in seen.iter() {
        let Some(pid) = s.pid else { continue };
        let span = spans
            .entry(s.configuration)
            .or_default()
            .entry(pid)
            .or_insert((s.start, s.end));
        span.0 = span.0.min(s.start);
        span.1 = span.1.max(s.end);
    }
    let mut moved = 0;
    for (configuration, by_pid) in &spans {
        let mut ordered: Vec<(u32, (Instant, Instant))> =
            by_pid.iter().map(|(p, s)| (*p, *s)).collect();
        ordered.sort_by_key(|(_, (start, _))| *start);
        for pair in ordered.windows(2) {
            let ((first, (_, first_end)), (second, (second_start, _))) = (pair[0], pair[1]);
            assert!(
                first_end <= second_start,
                "configuration {configuration} ran in processes {first} and {second} at once"
            );
        }
        if ordered.len() > 1 {
            moved += 1;
            assert_eq!(
                ordered[0].0, victim.pid,
                "configuration {configuration} moved between live workers"
            );
            assert!(ordered[0].1 .1 <= killed_at);
        }
    }
    assert!(
        moved >= 1,
        "no configuration was seen moving from the killed worker: the evidence would be vacuous"
    );
    assert!(
        unknown <= 4,
        "{unknown} requests came from processes the proxy could not identify"
    );
    assert_eq!(
        spans.len(),
        CONFIGURATIONS,
        "every configuration made its requests through the proxy"
    );

    // The accounts' budgets held across processes: runs of one account saw each other in
    // the state (the workers log each change of share)…
    let most_sharing = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("the account's rate budget is shared"))
        })
        .filter_map(|v| v["fields"]["runs"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        most_sharing >= 2,
        "no run ever shared its account's budget with another (most: {most_sharing})"
    );
    // …and the emulators answered few 429s.
    let mut requests = 0;
    let mut limited = 0;
    for e in &emulators {
        let stats: serde_json::Value = reqwest::get(format!("{}/_emulator/stats", e.base_url))
            .await
            .expect("stats")
            .json()
            .await
            .expect("JSON stats");
        requests += stats["requests_total"].as_u64().unwrap_or(0);
        limited += stats["rate_limited_total"].as_u64().unwrap_or(0);
    }
    eprintln!(
        "{CONFIGURATIONS} runs in {:.1} s ({} taken over from the killed worker, {moved} seen moving); {requests} Stripe requests, {limited} answered 429; {unknown} requests unattributed; at most {most_sharing} runs shared one account's budget",
        elapsed.as_secs_f64(),
        held_ids.len(),
    );
    // Without sharing, two runs of one account at once each take its whole budget: this test
    // then drew 14–21 429s in ~1,600 requests. Sharing only from each peer's next heartbeat
    // drew 0–5 (17 once, on a loaded machine). Now a run waits for its peers to take their
    // share before its first request: 0 seen in every run. The bound (0.2%, ~3) leaves room
    // for timing on a loaded machine only.
    assert!(
        limited * 1000 <= requests * 2,
        "{limited} of {requests} requests were rate limited: the accounts' budgets did not hold across workers"
    );

    for e in emulators {
        e.shutdown().await;
    }
    drop(store);
    state.drop_now().await;
    dest.drop_now().await;
}
