//! `cls admin …` (REST API tokens) and `cls rotate-master-key`: administration of the state
//! database from the command line. The store does the work; this module parses arguments,
//! picks the state and master key the way `cls serve` does, and prints.
//!
//! Secrets are printed only where asked for: an API token once, alone on stdout (so
//! `TOKEN=$(cls admin create-api-key --name ci)` works), and a rotated master key never —
//! it goes to a file with mode 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use cls_control::secrets::KEY_FILE_NAME;
use cls_control::{ApiTokenId, KeyLookup, KeySource, MasterKey, PageRequest};
use secrecy::{ExposeSecret, SecretString};

use super::{Outcome, StateArgs};

/// Arguments of `cls admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `cls admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a REST API token; it is printed once, alone on the last line of stdout.
    CreateApiKey {
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
        /// A name saying who uses it (e.g. `ci`, `grafana`).
        #[arg(long)]
        name: String,
    },
    /// Revoke a REST API token: requests using it are refused from now on.
    RevokeApiKey {
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
        /// The token's id, as `cls admin list-api-keys` shows it.
        #[arg(long)]
        id: i64,
    },
    /// List REST API tokens (their public prefix only; tokens are never shown again).
    ListApiKeys {
        /// Where the state is.
        #[command(flatten)]
        state: StateArgs,
    },
}

/// Arguments of `cls rotate-master-key`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
    /// Where to write the new key (mode 0600). Default: it replaces the key file in the data
    /// directory (the old one is kept as `master.key.old`); with CLS_MASTER_KEY set,
    /// `<data-dir>/master.key.new`, for you to move into CLS_MASTER_KEY.
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
}

/// Runs `cls admin …`.
pub async fn run(args: AdminArgs) -> anyhow::Result<Outcome> {
    match args.command {
        AdminCommand::CreateApiKey { state, name } => {
            let store = state.open().await?;
            let (token, secret) = store.create_api_token(&name).await?;
            eprintln!(
                "API token {} \"{}\" created ({}). It is shown once, on the next line: store it now (e.g. in your CI's secrets) and send it as `Authorization: Bearer <token>`. Revoke it with `cls admin revoke-api-key --id {}`.",
                token.id, token.name, token.prefix, token.id
            );
            println!("{}", secret.expose_secret());
        }
        AdminCommand::RevokeApiKey { state, id } => {
            let store = state.open().await?;
            let token = store.revoke_api_token(ApiTokenId(id)).await?;
            println!(
                "API token {} \"{}\" ({}) revoked: requests using it are refused from now on",
                token.id, token.name, token.prefix
            );
        }
        AdminCommand::ListApiKeys { state } => {
            let store = state.open().await?;
            let mut page = PageRequest {
                offset: 0,
                limit: 500,
            };
            println!(
                "{:>5}  {:<24}  {:<14}  {:<20}  {:<20}  REVOKED",
                "ID", "NAME", "PREFIX", "CREATED", "LAST USED"
            );
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "-".to_string(),
                    |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
                )
            };
            loop {
                let got = store.list_api_tokens(page).await?;
                let n = got.items.len() as u64;
                for t in got.items {
                    println!(
                        "{:>5}  {:<24}  {:<14}  {:<20}  {:<20}  {}",
                        t.id,
                        t.name,
                        t.prefix,
                        when(Some(t.created_at)),
                        when(t.last_used_at),
                        when(t.revoked_at)
                    );
                }
                page.offset += n;
                if n == 0 || page.offset >= got.total {
                    break;
                }
            }
        }
    }
    Ok(Outcome::Success)
}

/// Runs `cls rotate-master-key`.
///
/// The order keeps the state readable whatever fails: the new key is written (and synced)
/// to a new file first; the rotation is one transaction, so until it commits the old key
/// stays the valid one (and the new file is removed on failure); only after the commit is
/// the new key file moved over the old one, atomically, the old one kept as a copy.
pub async fn rotate(args: RotateArgs) -> anyhow::Result<Outcome> {
    let data_dir = &args.state.data_dir;
    let from_env = std::env::var(cls_control::MASTER_KEY_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let old = match MasterKey::find_from(from_env.map(SecretString::from), data_dir)? {
        KeyLookup::Found(key) => *key,
        KeyLookup::Missing { path } => anyhow::bail!(
            "no master key to rotate: {} is not set and there is no key file {}; check --data-dir",
            cls_control::MASTER_KEY_ENV,
            path.display()
        ),
    };
    let store = cls_control::open(&args.state.url()?, old.clone()).await?;

    // Where the new key goes, and which file it replaces once the state uses it.
    let (new_path, replaces) = match (&args.new_key_file, old.source()) {
        (Some(path), _) => (path.clone(), None),
        (None, KeySource::File(path)) => (sibling(path, ".new"), Some(path.clone())),
        (None, _) => (data_dir.join(format!("{KEY_FILE_NAME}.new")), None),
    };
    if new_path.exists() {
        anyhow::bail!(
            "{} already exists (left by an earlier rotation?): if cls cannot read its secrets with the current key, the state may be sealed under the key in that file — use it; otherwise delete it and run this again",
            new_path.display()
        );
    }
    let new = MasterKey::create_key_file(&new_path)?;
    let report = match store.rotate_master_key(new).await {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&new_path);
            return Err(anyhow::Error::new(e).context(
                "the master key was not rotated and nothing changed: the current key stays in use",
            ));
        }
    };
    eprintln!(
        "re-encrypted {} database URL(s), {} Stripe key(s) and {} webhook secret(s) under a new master key",
        report.projects, report.configurations, report.webhook_secrets
    );
    match replaces {
        Some(old_path) => {
            let backup = sibling(&old_path, ".old");
            std::fs::copy(&old_path, &backup).with_context(|| {
                format!(
                    "the state now uses the new key in {}, but the old key file could not be copied to {}: move {} to {} by hand before starting cls",
                    new_path.display(),
                    backup.display(),
                    new_path.display(),
                    old_path.display()
                )
            })?;
            std::fs::rename(&new_path, &old_path).with_context(|| {
                format!(
                    "the state now uses the new key in {}, but it could not replace {}: move it there by hand before starting cls",
                    new_path.display(),
                    old_path.display()
                )
            })?;
            eprintln!(
                "the new key is in {} (mode 0600); the old one is kept in {} for backups of the state taken before now: delete it when none is needed. Restart every cls process using this state.",
                old_path.display(),
                backup.display()
            );
        }
        None => {
            eprintln!(
                "the new key is in {} (mode 0600). Every cls process using this state needs it now: set {} to the file's contents (e.g. `export {}=\"$(cat {})\"`) and restart them, then delete the file.",
                new_path.display(),
                cls_control::MASTER_KEY_ENV,
                cls_control::MASTER_KEY_ENV,
                new_path.display()
            );
        }
    }
    Ok(Outcome::Success)
}

/// `path` with `suffix` appended to its file name (`master.key` → `master.key.new`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}
