//! What the suite does to a PostgreSQL destination. Everything is confined to the trial's own
//! database and role: the shared server is never restarted, filled or reconfigured, because
//! other tests run against it at the same time.
//!
//! - *Restart*: the trial database's other backends are ended with `pg_terminate_backend`,
//!   which is what a client sees of a restart (SQLSTATE 57P01 on the open connections, then new
//!   connections succeed).
//! - *Privileges lost*: a dedicated login role owns the schema and tables; `REVOKE` takes its
//!   privileges mid-run and `GRANT` gives them back for the recovery run.
//! - *Disk full*: a row trigger on every table of the schema raises SQLSTATE 53100 `disk_full`
//!   ("could not extend file: No space left on device", PostgreSQL's own wording) once a
//!   counter passes a threshold, so inserts and updates fail exactly as on a full volume while
//!   reads and transactions still work.

use cls_testkit::db::TestDb;
use rand::Rng;
use sqlx::{Connection, Executor, PgConnection};

/// Errors of the suite's own database operations (not of the sync under test).
pub type PgResult<T> = Result<T, sqlx::Error>;

/// Connects to a URL (the trial database as the superuser, usually).
pub async fn connect(url: &str) -> PgResult<PgConnection> {
    PgConnection::connect(url).await
}

/// Ends every other backend connected to `database`; returns how many were ended.
pub async fn terminate_backends(admin_url: &str, database: &str) -> PgResult<i64> {
    let mut conn = connect(admin_url).await?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(database)
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(n)
}

/// Rows in the tables of the catalog in `schema`, 0 while the tables do not exist yet.
pub async fn rows_written(url: &str, schema: &str) -> i64 {
    let parts: Vec<String> = cls_catalog::CATALOG
        .iter()
        .map(|t| format!("(SELECT count(*) FROM \"{schema}\".\"{}\")", t.name))
        .collect();
    let sql = format!("SELECT ({})::bigint", parts.join(" + "));
    let Ok(mut conn) = connect(url).await else {
        return 0;
    };
    let n = sqlx::query_scalar::<_, i64>(&sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    let _ = conn.close().await;
    n
}

/// A login role made for one trial, dropped by [`TrialRole::drop_role`].
pub struct TrialRole {
    /// The role's name (`cls_faults_<random>`).
    pub name: String,
    /// The trial database's URL as this role, password included: never printed.
    url: String,
}

impl std::fmt::Debug for TrialRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrialRole")
            .field("name", &self.name)
            .field("url", &"postgres://****")
            .finish()
    }
}

impl TrialRole {
    /// Creates a role with LOGIN and a random password, allowed to connect to `db` and to
    /// create schemas in it (so `cls` creates, and owns, the schema and tables).
    pub async fn create(db: &TestDb) -> PgResult<TrialRole> {
        let mut rng = rand::thread_rng();
        let name = format!("cls_faults_{:08x}", rng.gen::<u32>());
        let password: String = (0..24)
            .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
            .collect();
        let mut conn = connect(&db.admin_url).await?;
        conn.execute(format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'").as_str())
            .await?;
        conn.execute(
            format!(
                "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE \"{}\" TO \"{name}\"",
                db.name
            )
            .as_str(),
        )
        .await?;
        let _ = conn.close().await;
        let mut url = url::Url::parse(&db.url).map_err(|e| sqlx::Error::Configuration(e.into()))?;
        let _ = url.set_username(&name);
        let _ = url.set_password(Some(&password));
        Ok(TrialRole {
            name,
            url: url.to_string(),
        })
    }

    /// The URL `cls` connects with (a secret: holds the password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether `text` gives the role's password away (a run must never print it).
    pub fn leaks_password(&self, text: &str) -> bool {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.password().map(|p| text.contains(p)))
            .unwrap_or(false)
    }

    /// Takes the role's privileges on the schema and every table in it.
    pub async fn revoke(&self, db_url: &str, schema: &str) -> PgResult<()> {
        self.grant_or_revoke(db_url, schema, false).await
    }

    /// Gives them back.
    pub async fn grant(&self, db_url: &str, schema: &str) -> PgResult<()> {
        self.grant_or_revoke(db_url, schema, true).await
    }

    async fn grant_or_revoke(&self, db_url: &str, schema: &str, grant: bool) -> PgResult<()> {
        let (verb, dir) = if grant {
            ("GRANT", "TO")
        } else {
            ("REVOKE", "FROM")
        };
        let name = &self.name;
        let mut conn = connect(db_url).await?;
        for sql in [
            format!("{verb} ALL ON ALL TABLES IN SCHEMA \"{schema}\" {dir} \"{name}\""),
            format!("{verb} ALL ON ALL SEQUENCES IN SCHEMA \"{schema}\" {dir} \"{name}\""),
            format!("{verb} ALL ON SCHEMA \"{schema}\" {dir} \"{name}\""),
        ] {
            conn.execute(sql.as_str()).await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Drops the role; the trial database must be dropped first (it holds the role's objects).
    pub async fn drop_role(self, admin_url: &str) -> PgResult<()> {
        let mut conn = connect(admin_url).await?;
        conn.execute(format!("DROP ROLE IF EXISTS \"{}\"", self.name).as_str())
            .await?;
        let _ = conn.close().await;
        Ok(())
    }
}

/// Makes every table of `schema` refuse inserts and updates with SQLSTATE 53100 once more than
/// `after_rows` rows were inserted or updated in all (counted across transactions, as a disk
/// fills whether or not a transaction commits).
pub async fn fill_up_after(db_url: &str, schema: &str, after_rows: i64) -> PgResult<()> {
    let mut conn = connect(db_url).await?;
    conn.execute("CREATE SEQUENCE IF NOT EXISTS public.cls_faults_rows")
        .await?;
    conn.execute(
        format!(
            "CREATE OR REPLACE FUNCTION public.cls_faults_disk_full() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN \
               IF nextval('public.cls_faults_rows') > {after_rows} THEN \
                 RAISE EXCEPTION 'could not extend file \"base/16384/16385\": No space left on device' \
                   USING ERRCODE = 'disk_full', HINT = 'Check free disk space.'; \
               END IF; RETURN NEW; END $$"
        )
        .as_str(),
    )
    .await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
            .bind(schema)
            .fetch_all(&mut conn)
            .await?;
    for t in tables {
        conn.execute(
            format!(
                "CREATE TRIGGER cls_faults_disk_full BEFORE INSERT OR UPDATE ON \"{schema}\".\"{t}\" \
                 FOR EACH ROW EXECUTE FUNCTION public.cls_faults_disk_full()"
            )
            .as_str(),
        )
        .await?;
    }
    let _ = conn.close().await;
    Ok(())
}

/// Frees the space again: drops the triggers [`fill_up_after`] made.
pub async fn free_space(db_url: &str) -> PgResult<()> {
    let mut conn = connect(db_url).await?;
    conn.execute("DROP FUNCTION IF EXISTS public.cls_faults_disk_full() CASCADE")
        .await?;
    let _ = conn.close().await;
    Ok(())
}
