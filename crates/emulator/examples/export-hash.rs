//! Prints the SHA-256 of the export of a generated account, to check generation stays
//! byte-identical across changes:
//! `cargo run --release -p cls-emulator --example export-hash -- [customers] [seed] [live]`.

use cls_emulator::{EmulatorConfig, Mode};
use sha2::{Digest, Sha256};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let customers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(42);
    let mut config = EmulatorConfig::new(seed, customers);
    config.anchor = 1_750_000_000;
    if args.get(3).is_some_and(|a| a == "live") {
        config.mode = Mode::Live;
    }
    let t0 = Instant::now();
    let store = cls_emulator::generate::generate(&config);
    let secs = t0.elapsed().as_secs_f64();
    let export = store.export_json();
    let hash = hex::encode(Sha256::digest(&export));
    println!(
        "customers={customers} seed={seed} mode={:?} objects={} bytes={} sha256={hash} ({secs:.2} s)",
        config.mode,
        store.len(),
        export.len()
    );
}
