//! PostgreSQL failure modes a user meets first: wrong host, missing database, missing
//! privileges, TLS refused. Each must become the variant a caller acts on, with a message that
//! names the fix and never the password.

use cls_destination::{connect, DatabaseUrl, DestinationError};
use cls_testkit::db::{admin_connection, TestDb};
use sqlx::{Connection, Executor};

fn customers() -> &'static cls_catalog::DataType {
    cls_catalog::find("customers").expect("customers")
}

async fn connect_err(raw: &str, schema: &str) -> DestinationError {
    let url = DatabaseUrl::parse(raw).expect("valid url");
    match connect(&url, schema).await {
        Ok(_) => panic!("connecting to {url} should fail"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn unreachable_host_is_a_clear_retriable_error_without_the_password() {
    let err = connect_err("postgres://app:hunter2secret@127.0.0.1:1/db", "stripe").await;
    assert!(
        matches!(err, DestinationError::Unreachable { .. }),
        "{err:?}"
    );
    assert!(err.is_retriable());
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(msg.contains("server is running"), "{msg}");
    assert!(!msg.contains("hunter2secret"), "{msg}");
    assert!(!format!("{err:?}").contains("hunter2secret"), "{err:?}");
}

#[tokio::test]
async fn missing_database_is_named() {
    let err = connect_err(
        "postgres://postgres:pw_not_shown@127.0.0.1:5432/cls_no_such_database",
        "stripe",
    )
    .await;
    assert!(
        matches!(err, DestinationError::DatabaseMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("CREATE DATABASE"), "{err}");
    assert!(!err.to_string().contains("pw_not_shown"), "{err}");
}

#[tokio::test]
async fn bad_schema_names_are_refused_before_connecting() {
    let err = connect_err("postgres://postgres@127.0.0.1:1/db", "pg_stripe").await;
    assert!(
        matches!(err, DestinationError::InvalidSchemaName { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn tls_is_used_when_the_url_requires_it() {
    let db = TestDb::new().await;
    let server_has_tls: String = {
        let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let v = sqlx::query_scalar("SHOW ssl")
            .fetch_one(&mut c)
            .await
            .expect("show ssl");
        let _ = c.close().await;
        v
    };
    let url = DatabaseUrl::parse(&format!("{}?sslmode=require", db.url)).expect("url");
    if server_has_tls == "on" {
        let dest = connect(&url, "stripe").await.expect("connect with TLS");
        let info = dest.check().await.expect("check");
        assert!(
            info.tls,
            "sslmode=require must give an encrypted connection"
        );
        let plain = DatabaseUrl::parse(&format!("{}?sslmode=disable", db.url)).expect("url");
        let info = connect(&plain, "stripe")
            .await
            .expect("plain")
            .check()
            .await
            .expect("check");
        assert!(!info.tls);
    } else {
        let err = connect(&url, "stripe").await.err().expect("TLS refused");
        assert!(
            matches!(err, DestinationError::TlsRefused { .. }),
            "{err:?}"
        );
    }
    db.drop_now().await;
}

#[tokio::test]
async fn a_server_without_tls_is_reported_when_the_url_requires_it() {
    // A stand-in server that answers PostgreSQL's SSLRequest with 'N' (no TLS), as a server
    // without ssl=on does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok((mut sock, _)) = listener.accept().await {
            let mut req = [0u8; 8];
            let _ = sock.read_exact(&mut req).await;
            let _ = sock.write_all(b"N").await;
            let _ = sock.flush().await;
        }
    });
    let err = connect_err(
        &format!("postgres://app:tls_secret@127.0.0.1:{port}/db?sslmode=require"),
        "stripe",
    )
    .await;
    server.abort();
    assert!(
        matches!(err, DestinationError::TlsRefused { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sslmode"), "{err}");
    assert!(!err.to_string().contains("tls_secret"), "{err}");
}

#[tokio::test]
async fn a_user_without_create_privilege_gets_the_grant_to_run() {
    let db = TestDb::new().await;
    let role = format!("cls_role_{}", db.name.trim_start_matches("cls_test_"));
    let mut admin = admin_connection().await;
    admin
        .execute(format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'role_secret_pw'").as_str())
        .await
        .expect("create role");

    let (db_url, role_name) = (db.url.clone(), role.clone());
    let outcome = async move {
        let role = role_name;
        let mut role_url = url::Url::parse(&db_url).expect("url");
        role_url.set_username(&role).expect("user");
        role_url.set_password(Some("role_secret_pw")).expect("pw");
        let url = DatabaseUrl::parse(role_url.as_str()).expect("url");
        let dest = connect(&url, "stripe").await.expect("the role can connect");

        let info = dest.check().await.expect("check");
        assert!(!info.can_create, "the role may not create schemas");
        assert!(!info.tables_ready, "check asks about no data type");
        assert!(!dest.tables_ready(&[customers()]).await.expect("asked"));

        // No CREATE on the database: creating the schema fails with the GRANT to run.
        let err = dest.prepare(&[customers()]).await.expect_err("no CREATE");
        let msg = err.to_string();
        assert!(
            matches!(err, DestinationError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert!(msg.contains("GRANT CREATE ON DATABASE"), "{msg}");
        assert!(msg.contains("--schema"), "{msg}");
        assert!(!msg.contains("role_secret_pw"), "{msg}");

        // The schema exists (made by an admin) but the role may not create tables in it.
        let mut owner = sqlx::PgConnection::connect(&db_url).await.expect("owner");
        owner.execute("CREATE SCHEMA stripe").await.expect("schema");
        owner
            .execute(format!("GRANT USAGE ON SCHEMA stripe TO \"{role}\"").as_str())
            .await
            .expect("usage");
        let err = dest
            .prepare(&[customers()])
            .await
            .expect_err("no CREATE on schema");
        let msg = err.to_string();
        assert!(
            matches!(err, DestinationError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert!(
            msg.contains("GRANT USAGE, CREATE ON SCHEMA \"stripe\""),
            "{msg}"
        );

        // Tables made by hand from create_tables_sql plus plain DML grants are enough.
        owner
            .execute(sqlx::raw_sql(&dest.create_tables_sql(&[customers()])))
            .await
            .expect("hand-made tables");
        owner
            .execute(
                format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA stripe TO \"{role}\""
                )
                .as_str(),
            )
            .await
            .expect("grant dml");
        assert!(
            dest.tables_ready(&[customers()]).await.expect("asked"),
            "hand-made tables with DML grants are ready"
        );
        dest.prepare(&[customers()])
            .await
            .expect("prepare needs nothing more");
        let stats = dest
            .write(cls_destination::Batch {
                data_type: customers(),
                account_id: "acct_1",
                rows: vec![cls_destination::Row {
                    id: "cus_1".into(),
                    object: serde_json::json!({"id": "cus_1"}),
                    version: 1,
                    deleted: false,
                }],
                checkpoint: None,
            })
            .await
            .expect("write with DML grants only");
        assert_eq!(stats.inserted, 1);

        // Not ready: a table of another data type missing, a grant missing, a column missing.
        let charges = cls_catalog::find("charges").expect("charges");
        assert!(!dest
            .tables_ready(&[customers(), charges])
            .await
            .expect("asked"));
        owner
            .execute(format!("REVOKE UPDATE ON stripe.customers FROM \"{role}\"").as_str())
            .await
            .expect("revoke");
        assert!(!dest.tables_ready(&[customers()]).await.expect("asked"));
        owner
            .execute(format!("GRANT UPDATE ON stripe.customers TO \"{role}\"").as_str())
            .await
            .expect("grant");
        assert!(dest.tables_ready(&[customers()]).await.expect("asked"));
        owner
            .execute("ALTER TABLE stripe.customers DROP COLUMN email")
            .await
            .expect("drop column");
        assert!(
            !dest.tables_ready(&[customers()]).await.expect("asked"),
            "a column prepare would add needs ALTER, which the role may not"
        );
        let _ = owner.close().await;
    };
    // Clean up whatever happened: the database first (it holds the grants), then the role.
    let result = tokio::spawn(outcome).await;
    db.drop_now().await;
    let _ = admin
        .execute(format!("DROP ROLE IF EXISTS \"{role}\"").as_str())
        .await;
    let _ = admin.close().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
