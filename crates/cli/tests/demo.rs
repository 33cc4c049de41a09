//! `cls demo` as a newcomer runs it: the real binary, offline, on a free port. The first sync
//! ends on its own, the dashboard answers with its sign-in page, the printed password signs
//! in, and the data is in the SQLite file the output names. Running it again in the same
//! folder reuses the demo project and gives a new password.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// Reads stdout lines until one starts with `prefix`; returns every line read.
async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(180), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line starting `{prefix}` within 3 minutes: {seen:#?}"))
            .expect("stdout readable");
        let Some(line) = next else {
            panic!("cls demo exited before printing `{prefix}`: {seen:#?}");
        };
        let done = line.trim_start().starts_with(prefix);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// One `cls demo` run: returns its printed password, after checking the dashboard and data.
async fn demo_once(data_dir: &Path) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"))
        .args([
            "demo",
            "--port",
            "0",
            "--customers",
            "8",
            "--data-dir",
            &data_dir.display().to_string(),
        ])
        .env_remove("CLS_MASTER_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cls demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let printed = read_until(&mut lines, "first sync").await;
    let text = printed.join("\n");
    let base = printed[0]
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the first line gives the address: {text}"))
        .to_string();
    assert!(
        printed
            .last()
            .is_some_and(|l| l.starts_with("first sync succeeded")),
        "{text}"
    );
    let password = printed
        .iter()
        .find_map(|l| l.split("password `").nth(1))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("a password is printed: {text}"))
        .to_string();
    assert!(password.len() >= 12, "{text}");
    assert!(
        text.contains("sqlite3 "),
        "the output says how to query the data: {text}"
    );

    // Every page but sign-in asks to sign in; the printed password signs in.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let home = http
        .get(format!("{base}/"))
        .send()
        .await
        .expect("the dashboard answers");
    assert!(home.status().is_redirection(), "{}", home.status());
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("sign-in page");
    assert_eq!(login.status(), 200);
    let page = login.text().await.unwrap_or_default();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the sign-in form carries a CSRF token: {page}"))
        .to_string();
    let signed_in = http
        .post(format!("{base}/login"))
        .form(&[
            ("username", "admin"),
            ("password", &password),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .expect("sign-in answers");
    assert!(
        signed_in.status().is_redirection(),
        "{}",
        signed_in.status()
    );
    let home = http.get(format!("{base}/")).send().await.expect("home");
    assert_eq!(home.status(), 200, "signed in, the home page shows");

    let db = data_dir.join("stripe.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the demo's database opens");
    let customers: i64 = sqlx::query_scalar("select count(*) from customers")
        .fetch_one(&pool)
        .await
        .expect("a customers table");
    pool.close().await;
    assert!(customers > 0, "the first sync filled the customers table");

    let pid = child.id().expect("running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("cls demo stops on SIGTERM")
        .expect("wait works");
    assert!(status.success(), "{status}");
    password
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_dashboard_with_synced_data_and_runs_again() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data_dir = dir.path().join("cls-data");
    let first = demo_once(&data_dir).await;
    let second = demo_once(&data_dir).await;
    assert_ne!(first, second, "each run prints a new one-time password");

    // One demo project and one configuration, however many times it ran.
    let out = common::cls(
        &[
            "admin",
            "list-api-keys",
            "--data-dir",
            &data_dir.display().to_string(),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", common::text(&out));
    let pool =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", data_dir.join("state.db").display()))
            .await
            .expect("the state database opens");
    let projects: i64 = sqlx::query_scalar("select count(*) from projects")
        .fetch_one(&pool)
        .await
        .expect("projects");
    let configurations: i64 = sqlx::query_scalar("select count(*) from configurations")
        .fetch_one(&pool)
        .await
        .expect("configurations");
    let runs: i64 = sqlx::query_scalar("select count(*) from sync_runs where status = 'succeeded'")
        .fetch_one(&pool)
        .await
        .expect("runs");
    pool.close().await;
    assert_eq!((projects, configurations, runs), (1, 1, 2));
}
