//! Starting the in-process Stripe emulator for tests.

use cls_emulator::{EmulatorConfig, RunningEmulator};

/// Spawns the emulator on `127.0.0.1:0` with a seeded account of `customers` customers (test
/// mode, history ending at the start of today UTC, rate limits, latency and faults off).
///
/// # Panics
/// When the emulator cannot bind a local port: a broken test environment, not a test failure.
pub async fn spawn_emulator(seed: u64, customers: usize) -> RunningEmulator {
    spawn_emulator_with(EmulatorConfig::new(seed, customers)).await
}

/// Spawns the emulator on `127.0.0.1:0` with the given configuration.
///
/// # Panics
/// When the emulator cannot bind a local port: a broken test environment, not a test failure.
pub async fn spawn_emulator_with(config: EmulatorConfig) -> RunningEmulator {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    match cls_emulator::spawn(config, addr).await {
        Ok(emu) => emu,
        Err(e) => panic!("cannot start the Stripe emulator on 127.0.0.1:0: {e}"),
    }
}
