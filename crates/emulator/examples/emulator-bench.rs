//! Measures the emulator against issue 2's targets: generation time for a large account, memory
//! held per object, list pages of 100 served per second to a local client, and the time of 10,000
//! mutations.
//!
//! `cargo run --release -p cls-emulator --example emulator-bench -- [customers] [seconds] [clients]`
//! (defaults: 100000 customers, 10 s, 8 concurrent clients).

use cls_emulator::{EmulatorConfig, RunningEmulator};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[derive(serde::Deserialize)]
struct Page {
    data: Vec<IdOnly>,
    has_more: bool,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let customers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);

    let mut config = EmulatorConfig::new(42, customers);
    config.anchor = 1_750_000_000;
    let rss_before = rss_bytes();
    let t0 = Instant::now();
    let emu: RunningEmulator = cls_emulator::spawn(config, "127.0.0.1:0".parse()?).await?;
    let gen_secs = t0.elapsed().as_secs_f64();
    let rss_after = rss_bytes();
    let (objects, json_bytes, by_type) = {
        let store = emu.state.store.read().map_err(|_| "store lock poisoned")?;
        let mut by_type = Vec::new();
        let mut bytes = 0usize;
        for k in cls_emulator::kinds::KINDS {
            if let Some(t) = store.table(k.object) {
                by_type.push((k.object, t.len()));
                bytes += t.iter().map(|r| r.json.len()).sum::<usize>();
            }
        }
        (store.len(), bytes, by_type)
    };
    let held = rss_after.saturating_sub(rss_before);
    println!(
        "generation: {customers} customers -> {objects} objects in {gen_secs:.2} s (spawn incl.)"
    );
    println!(
        "memory: RSS grew {:.2} GiB ({} bytes/object; JSON itself {:.2} GiB) -> 1,000,000 objects ≈ {:.2} GiB",
        held as f64 / f64::from(1u32 << 30),
        held / objects.max(1) as u64,
        json_bytes as f64 / f64::from(1u32 << 30),
        held as f64 / objects.max(1) as f64 * 1e6 / f64::from(1u32 << 30)
    );
    let per_type: Vec<String> = by_type.iter().map(|(t, n)| format!("{t}={n}")).collect();
    println!("objects by type: {}", per_type.join(" "));

    // Serving: each client walks a list with limit=100 from the start, over and over.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let pages = Arc::new(AtomicU64::new(0));
    let objs = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let lists = [
        "customers",
        "invoices",
        "charges",
        "payment_intents",
        "balance_transactions",
        "subscriptions?status=all",
        "events",
    ];
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let base = emu.base_url.clone();
        let (pages, objs, bytes) = (pages.clone(), objs.clone(), bytes.clone());
        let list = lists[c % lists.len()].to_string();
        tasks.push(tokio::spawn(async move {
            let mut after: Option<String> = None;
            while Instant::now() < deadline {
                let sep = if list.contains('?') { '&' } else { '?' };
                let mut url = format!("{base}/v1/{list}{sep}limit=100");
                if let Some(a) = &after {
                    url.push_str("&starting_after=");
                    url.push_str(a);
                }
                let Ok(resp) = http
                    .get(&url)
                    .bearer_auth("sk_test_cls_emulator")
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(body) = resp.bytes().await else { break };
                bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                // A real client reads the whole page; this one only keeps ids and has_more, so the
                // client's own JSON work does not hide the server's speed on a 2-core machine.
                let Ok(page) = serde_json::from_slice::<Page>(&body) else {
                    break;
                };
                pages.fetch_add(1, Ordering::Relaxed);
                objs.fetch_add(page.data.len() as u64, Ordering::Relaxed);
                after = if page.has_more {
                    page.data.last().map(|o| o.id.clone())
                } else {
                    None
                };
            }
        }));
    }
    let t1 = Instant::now();
    for t in tasks {
        t.await?;
    }
    let secs = t1.elapsed().as_secs_f64();
    let p = pages.load(Ordering::Relaxed) as f64;
    println!(
        "serving: {clients} clients, {:.0} pages/s of up to 100 objects, {:.0} objects/s, {:.0} MB/s (client reads ids and has_more)",
        p / secs,
        objs.load(Ordering::Relaxed) as f64 / secs,
        bytes.load(Ordering::Relaxed) as f64 / secs / 1e6
    );
    // Change over time: 10,000 seeded mutations through /_emulator/mutate.
    let t2 = Instant::now();
    let summary: serde_json::Value = http
        .post(format!("{}/_emulator/mutate", emu.base_url))
        .json(&serde_json::json!({"count": 10_000, "seed": 1}))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "mutate: 10000 mutations in {:.2} s ({} applied, {} events)",
        t2.elapsed().as_secs_f64(),
        summary["applied"],
        summary["events"]
    );
    emu.shutdown().await;
    Ok(())
}
