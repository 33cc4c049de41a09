//! `cls`, the Codeless Sync command line. A thin binary: it parses arguments, starts logging,
//! wires the library crates together and turns how they end into an exit status.
//!
//! Exit statuses: 0 everything chosen was done; 1 failed (bad input, invalid key, database
//! unreachable, every data type failed); 2 wrong usage; 3 partial (some data types failed).

mod commands;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc instead of glibc's allocator: glibc gives each thread that allocates its own arena
/// and keeps their freed memory, so a long-lived server's RSS stepped up with every burst
/// (argon2's 19 MiB per verification on a new thread, a backfill's pages across the runtime's
/// workers); jemalloc returns freed pages to the system after a few seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Codeless Sync: copy a Stripe account into your own database and keep it current.
#[derive(Debug, Parser)]
#[command(name = "cls", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = commands::LogFormat::Text, env = "CLS_LOG_FORMAT")]
    log_format: commands::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy the chosen Stripe data types into a database: in full the first time, then only
    /// what changed (from Stripe's events feed).
    Sync(commands::sync::SyncArgs),
    /// Test Connection: check the Stripe key, its permissions per data type, and the database.
    Check(commands::check::CheckArgs),
    /// Run the Stripe API emulator (seeded, offline) for tests, benchmarks and demos.
    Emulator(commands::emulator::EmulatorArgs),
    /// Receive Stripe webhooks and apply their events to a database as they happen.
    Listen(commands::listen::ListenArgs),
    /// Measure a backfill against Stripe's rate limits (emulated) and the database's ceiling.
    Bench(commands::bench::BenchArgs),
    /// Run the service: dashboard, REST API, scheduler, workers and metrics.
    Serve(commands::serve::ServeArgs),
    /// Run the scheduler and workers only, as one of several nodes sharing a PostgreSQL state.
    Worker(commands::worker::WorkerArgs),
    /// Try Codeless Sync offline: a seeded Stripe emulator synced into SQLite under ./cls-data.
    Demo(commands::demo::DemoArgs),
    /// Administer the state: REST API tokens.
    Admin(commands::admin::AdminArgs),
    /// Re-encrypt every stored secret under a new master key, and write the new key to a file.
    RotateMasterKey(commands::admin::RotateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_logging(cli.log_format);
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sync(args) => commands::sync::run(args).await,
            Command::Check(args) => commands::check::run(args).await,
            Command::Emulator(args) => commands::emulator::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Bench(args) => commands::bench::run(args).await,
            Command::Listen(args) => commands::listen::run(args).await,
            Command::Admin(args) => commands::admin::run(args).await,
            Command::RotateMasterKey(args) => commands::admin::rotate(args).await,
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Worker(args) => commands::worker::run(args).await,
        }
    });
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes in one line, each cause once: many of the library's errors already
/// quote their cause in their own message, and printing the chain again would say it twice.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("could not talk to Stripe ({0}): check the network")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::other("connection refused");
        let e = anyhow::Error::new(Quoting(io)).context("reading the account");
        assert_eq!(
            error_text(&e),
            "reading the account: could not talk to Stripe (connection refused): check the network"
        );
        let plain = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(error_text(&plain), "outer: root cause");
    }
}
