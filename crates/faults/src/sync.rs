//! Running one sync: the real `cls sync` binary as a child process (so it can be SIGKILLed and
//! its exit status read), or the engine in-process for the faults that need a knob the binary
//! does not expose (`SyncOptions.now` for the clock, the client's request timeout).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cls_engine::{run_sync, RequestedMode, RunStatus, SyncOptions};
use cls_stripe::{ApiKey, ClientConfig, StripeClient};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::judge::RunEnd;

/// The emulator's restricted test key.
pub const KEY: &str = "rk_test_cls_emulator";

/// A `cls sync` started as a child process.
pub struct Child {
    child: tokio::process::Child,
    started: Instant,
}

/// Starts `cls sync --json` against the emulator at `api_base`, into `db_url`.
pub fn spawn_cls(
    cls_bin: &Path,
    api_base: &str,
    db_url: &str,
    extra: &[&str],
) -> std::io::Result<Child> {
    let mut cmd = tokio::process::Command::new(cls_bin);
    cmd.arg("sync")
        .arg("--json")
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STRIPE_API_KEY", KEY)
        .env("DATABASE_URL", db_url)
        .env("CLS_STRIPE_API_BASE", api_base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(Child {
        child: cmd.spawn()?,
        started: Instant::now(),
    })
}

impl Child {
    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGKILL (no chance to clean up) and reaps the process.
    pub async fn sigkill(mut self) -> std::io::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Waits for the end of the run and reads what it said.
    pub async fn finish(mut self) -> std::io::Result<RunEnd> {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let (mut out, mut err) = (self.child.stdout.take(), self.child.stderr.take());
        let read_out = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut stdout).await;
            }
        };
        let read_err = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut stderr).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = self.child.wait().await?;
        Ok(RunEnd {
            code: status.code(),
            messages: messages(&stdout, &stderr),
            seconds: self.started.elapsed().as_secs(),
        })
    }
}

/// The failure messages of a run: the failed data types' errors from the JSON summary, then
/// stderr's lines (the progress lines and `error: …`).
fn messages(stdout: &str, stderr: &str) -> String {
    let mut out = String::new();
    if let Ok(report) = serde_json::from_str::<Value>(stdout) {
        for t in report["types"].as_array().into_iter().flatten() {
            if let Some(e) = t["error"].as_str() {
                out.push_str(&format!(
                    "{}: {e}\n",
                    t["data_type"].as_str().unwrap_or("?")
                ));
            }
        }
        for n in report["notes"].as_array().into_iter().flatten() {
            out.push_str(&format!("note: {}\n", n.as_str().unwrap_or_default()));
        }
    }
    // Log lines (timestamped, maybe coloured) are left out: a warning logged by a library on
    // the way is not the cause the run gives.
    for line in stderr.lines() {
        let log = line.contains('\u{1b}') || line.starts_with(|c: char| c.is_ascii_digit());
        if !log {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Runs `cls sync` to its end.
pub async fn run_cls(
    cls_bin: &Path,
    api_base: &str,
    db_url: &str,
    extra: &[&str],
) -> std::io::Result<RunEnd> {
    spawn_cls(cls_bin, api_base, db_url, extra)?.finish().await
}

/// Knobs of an in-process run.
#[derive(Debug, Clone, Copy)]
pub struct InProcess {
    /// `SyncOptions.now`: the sync's clock, `None` for the real one.
    pub now: Option<i64>,
    /// Time limit of one HTTP attempt.
    pub request_timeout: Duration,
    /// Full or changes-only (`Auto`, as `cls sync` defaults to).
    pub mode: RequestedMode,
}

impl Default for InProcess {
    fn default() -> Self {
        InProcess {
            now: None,
            request_timeout: ClientConfig::default().request_timeout,
            mode: RequestedMode::Auto,
        }
    }
}

/// Runs the engine as `cls sync` would (every data type, schema `stripe`), mapping its
/// outcome to the exit status the binary gives it.
pub async fn run_in_process(api_base: &str, db_url: &str, knobs: InProcess) -> RunEnd {
    let started = Instant::now();
    let outcome = in_process(api_base, db_url, knobs).await;
    let (code, messages) = match outcome {
        Ok((status, messages)) => (
            match status {
                RunStatus::Succeeded => 0,
                RunStatus::Partial => 3,
                RunStatus::Failed => 1,
            },
            messages,
        ),
        Err(e) => (1, format!("error: {e}")),
    };
    RunEnd {
        code: Some(code),
        messages,
        seconds: started.elapsed().as_secs(),
    }
}

async fn in_process(
    api_base: &str,
    db_url: &str,
    knobs: InProcess,
) -> Result<(RunStatus, String), String> {
    let key = ApiKey::parse(KEY).map_err(|e| e.to_string())?;
    let config = ClientConfig {
        api_base: url::Url::parse(api_base).map_err(|e| e.to_string())?,
        request_timeout: knobs.request_timeout,
        ..ClientConfig::default()
    };
    let client = StripeClient::new(key, config).map_err(|e| e.to_string())?;
    let url = cls_destination::DatabaseUrl::parse(db_url).map_err(|e| e.to_string())?;
    let dest = cls_destination::connect(&url, "stripe")
        .await
        .map_err(|e| e.to_string())?;
    let options = SyncOptions {
        types: cls_catalog::CATALOG.iter().collect(),
        now: knobs.now,
        sequential: false,
    };
    let report = run_sync(
        &client,
        Arc::from(dest),
        &options,
        knobs.mode,
        Arc::new(|_| {}),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut messages = String::new();
    for t in &report.types {
        if let cls_engine::TypeStatus::Failed { error, .. } = &t.status {
            messages.push_str(&format!("{}: {error}\n", t.data_type));
        }
    }
    for n in &report.notes {
        messages.push_str(&format!("note: {n}\n"));
    }
    Ok((report.status, messages))
}
