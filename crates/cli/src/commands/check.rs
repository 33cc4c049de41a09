//! `cls check`: Test Connection from the command line.

use clap::Args;
use cls_destination::DatabaseInfo;
use cls_engine::{check_stripe, StripeCheck};
use secrecy::SecretString;
use serde::Serialize;

use super::{parse_database_url, parse_types, Outcome, StripeArgs};

/// Arguments of `cls check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub stripe: StripeArgs,
    /// Destination database to check as well (see `cls sync --help`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// Data types to check (default: all of them).
    #[arg(long)]
    pub types: Option<String>,
    /// Schema the tables would go in.
    #[arg(long, default_value = "stripe")]
    pub schema: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The whole answer, as printed with `--json`.
#[derive(Debug, Serialize)]
struct CheckResult {
    /// Whether everything checked passed.
    ok: bool,
    /// The Stripe half, when the key could be used at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    stripe: Option<StripeCheck>,
    /// Why the key could not be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    stripe_error: Option<String>,
    /// The database half, when a database was given and reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<DatabaseInfoView>,
    /// Why the database could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    database_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct DatabaseInfoView {
    kind: String,
    server_version: String,
    tls: bool,
    can_create: bool,
    schema: String,
}

impl From<DatabaseInfo> for DatabaseInfoView {
    fn from(i: DatabaseInfo) -> Self {
        DatabaseInfoView {
            kind: i.kind.to_string(),
            server_version: i.server_version,
            tls: i.tls,
            can_create: i.can_create,
            schema: i.schema,
        }
    }
}

/// Runs `cls check`.
pub async fn run(args: CheckArgs) -> anyhow::Result<Outcome> {
    let types = parse_types(args.types.as_deref())?;
    let url = args
        .database_url
        .as_ref()
        .map(parse_database_url)
        .transpose()?;
    let client = args.stripe.client()?;

    let stripe = check_stripe(&client, &types)
        .await
        .map_err(|e| e.to_string());
    let database = match url {
        None => None,
        Some(url) => Some(match cls_destination::connect(&url, &args.schema).await {
            Ok(dest) => dest
                .check()
                .await
                .map(DatabaseInfoView::from)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }),
    };
    let ok = matches!(&stripe, Ok(s) if s.all_readable())
        && match &database {
            None => true,
            Some(Ok(d)) => d.can_create,
            Some(Err(_)) => false,
        };
    let (stripe, stripe_error) = split(stripe);
    let (database, database_error) = match database {
        None => (None, None),
        Some(d) => split(d),
    };
    let result = CheckResult {
        ok,
        stripe,
        stripe_error,
        database,
        database_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print_human(&result);
    }
    Ok(if ok {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

fn split<T>(r: Result<T, String>) -> (Option<T>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e)),
    }
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "✓"
    } else {
        "✗"
    }
}

fn print_human(r: &CheckResult) {
    println!("Stripe");
    if let Some(e) = &r.stripe_error {
        println!("  {} {e}", mark(false));
    }
    if let Some(s) = &r.stripe {
        println!(
            "  {} key {} ({} key, {} mode)",
            mark(true),
            s.key,
            s.key_kind,
            s.mode
        );
        if let Some(w) = &s.warning {
            println!("  ! {w}");
        }
        match &s.account_name {
            Some(name) => println!("  {} account {} ({name})", mark(true), s.account_id),
            None => println!("  {} account {}", mark(true), s.account_id),
        }
        for t in &s.types {
            match &t.error {
                None => println!("  {} {}", mark(t.readable), t.data_type),
                Some(e) => println!("  {} {}: {e}", mark(t.readable), t.data_type),
            }
        }
        // Stripe Connect: informative only (the key's own account is what the test is about).
        match (&s.connected.error, s.connected.accounts.len()) {
            (Some(e), _) => println!("  ! connected accounts: {e}"),
            (None, 0) => println!("  - no connected accounts (not a Connect platform)"),
            (None, n) => {
                println!("  {} {n} connected account(s) reachable:", mark(true));
                for a in &s.connected.accounts {
                    match &a.name {
                        Some(name) => println!("      {} ({name})", a.id),
                        None => println!("      {}", a.id),
                    }
                }
            }
        }
    }
    if r.database.is_some() || r.database_error.is_some() {
        println!("Database");
    }
    if let Some(e) = &r.database_error {
        println!("  {} {e}", mark(false));
    }
    if let Some(d) = &r.database {
        println!(
            "  {} reachable: {} {}",
            mark(true),
            d.kind,
            d.server_version
        );
        let tls = if d.tls { "in use" } else { "not in use" };
        println!("  {} TLS {tls}", mark(true));
        println!(
            "  {} can create schema \"{}\" and its tables",
            mark(d.can_create),
            d.schema
        );
    }
    println!();
    println!(
        "{}",
        if r.ok {
            "Connection test passed."
        } else {
            "Connection test FAILED: fix the items marked ✗ above."
        }
    );
}
