//! Throwaway PostgreSQL databases for tests.
//!
//! [`TestDb::new`] creates a uniquely named database on the PostgreSQL at
//! `CLS_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) and
//! [`TestDb::drop_now`] drops it; if a test forgets (or panics), `Drop` drops it on a helper
//! thread. PostgreSQL being unreachable is a test failure with a message saying how to start
//! it, never a silent skip: these tests are the proof that the PostgreSQL path works.

use std::time::Duration;

use rand::Rng;
use sqlx::{Connection, Executor, PgConnection};

/// Environment variable naming the administrative URL tests create databases with.
pub const TEST_DATABASE_URL_ENV: &str = "CLS_TEST_DATABASE_URL";

/// Used when [`TEST_DATABASE_URL_ENV`] is not set: the local server with trust auth.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh PostgreSQL database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    /// URL of the test database (the admin URL with the database name replaced).
    pub url: String,
    /// Name of the test database (`cls_test_<pid>_<random>`).
    pub name: String,
    /// The administrative URL it was created with (for creating roles and the like).
    pub admin_url: String,
    /// Set once the database is dropped, so `Drop` does nothing more.
    dropped: bool,
}

/// The administrative URL tests use.
pub fn admin_url() -> String {
    std::env::var(TEST_DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// Connects to the administrative database, panicking with instructions when it is down.
pub async fn admin_connection() -> PgConnection {
    let admin = admin_url();
    let attempt =
        tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&admin)).await;
    match attempt {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL is not reachable at {} ({e}): start it with `pg_ctlcluster 15 main start` \
             (or `service postgresql start`), or point {TEST_DATABASE_URL_ENV} at a server; tests \
             need a real PostgreSQL",
            mask(&admin)
        ),
        Err(_) => panic!(
            "PostgreSQL at {} did not answer within 10 s: start it with `pg_ctlcluster 15 main \
             start`, or point {TEST_DATABASE_URL_ENV} at a server; tests need a real PostgreSQL",
            mask(&admin)
        ),
    }
}

/// The URL with any password hidden, for panic messages.
fn mask(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// A `sqlite://` URL for a database file in `dir`.
pub fn sqlite_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("cls.db").display())
}

/// A fresh, empty directory under the system temp dir (not removed automatically; the OS
/// temp cleaner handles it, and keeping it helps when a test fails).
pub fn temp_dir(prefix: &str) -> std::path::PathBuf {
    let n: u64 = rand::thread_rng().gen();
    let dir = std::env::temp_dir().join(format!("{prefix}_{}_{n:x}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create temp dir {}: {e}", dir.display());
    }
    dir
}

impl TestDb {
    /// Creates a fresh database; panics with instructions if PostgreSQL is not reachable.
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let n: u32 = rand::thread_rng().gen();
        let name = format!("cls_test_{}_{n:08x}", std::process::id());
        let mut conn = admin_connection().await;
        if let Err(e) = conn
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
        {
            panic!("cannot create test database {name}: {e}");
        }
        let _ = conn.close().await;
        let mut url = match url::Url::parse(&admin) {
            Ok(u) => u,
            Err(e) => panic!("{TEST_DATABASE_URL_ENV} is not a valid URL: {e}"),
        };
        url.set_path(&format!("/{name}"));
        TestDb {
            url: url.to_string(),
            name,
            admin_url: admin,
            dropped: false,
        }
    }

    /// Drops the database now (closing any connections still open to it).
    pub async fn drop_now(mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

async fn drop_database(name: &str) {
    let mut conn = admin_connection().await;
    if let Err(e) = conn
        .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
    {
        eprintln!("warning: could not drop test database {name}: {e}");
    }
    let _ = conn.close().await;
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop can run inside a runtime (which may not block) or outside one; a thread with
        // its own runtime works in both, and joining it makes sure the database is gone
        // before the test process exits.
        let name = self.name.clone();
        let handle =
            std::thread::spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(drop_database(&name)),
                    Err(e) => eprintln!("warning: could not drop test database {name}: {e}"),
                }
            });
        let _ = handle.join();
    }
}
