//! End-to-end tests of `cls admin` and `cls rotate-master-key`: the real binary on a SQLite
//! state in a temp directory, checked through the control library.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use cls_control::secrets::KEY_FILE_NAME;
use cls_control::{MasterKey, NewProject, SecretsError, StateUrl, Store, StoreError};
use cls_destination::DatabaseUrl;

/// A password that must survive rotation and never be printed.
const DB_PASSWORD: &str = "pw-AdminCliSecret42";

/// Runs `cls` with `args`, none of the state's environment inherited but `env`.
async fn cls(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"));
    cmd.args(args)
        .env_remove("CLS_MASTER_KEY")
        .env_remove("CLS_STATE_URL")
        .env_remove("CLS_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output().await {
        Ok(out) => out,
        Err(e) => panic!("cannot run cls: {e}"),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn must<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

/// The state in `dir` opened with `key`.
async fn open(dir: &Path, key: MasterKey) -> Result<Arc<dyn Store>, StoreError> {
    cls_control::open(&must(StateUrl::default_in(dir)), key).await
}

fn read(path: &Path) -> String {
    must(std::fs::read_to_string(path))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    must(std::fs::metadata(path)).permissions().mode() & 0o777
}

#[tokio::test]
async fn api_keys_are_created_listed_and_revoked() {
    let dir = must(tempfile::tempdir());
    let data = dir.path().to_string_lossy().into_owned();

    let out = cls(
        &[
            "admin",
            "create-api-key",
            "--data-dir",
            &data,
            "--name",
            "ci",
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let token = printed
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        token.starts_with("cls_"),
        "the token is the last line: {printed}"
    );
    assert!(token.len() > 40, "{token}");
    assert!(!stderr(&out).contains(&token), "the token is printed once");
    assert!(stderr(&out).contains("shown once"), "{}", stderr(&out));

    let key = must(MasterKey::from_key_file(&dir.path().join(KEY_FILE_NAME)));
    let store = must(open(dir.path(), key).await);
    let who = must(store.authenticate_api_token(&token).await);
    assert_eq!(who.name, "ci");

    let out = cls(&["admin", "list-api-keys", "--data-dir", &data], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains(&who.prefix) && listed.contains("ci"),
        "{listed}"
    );
    assert!(
        !listed.contains(&token),
        "a listed token shows only its prefix"
    );

    let id = who.id.to_string();
    let out = cls(
        &["admin", "revoke-api-key", "--data-dir", &data, "--id", &id],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"), "{}", stdout(&out));
    let refused = store.authenticate_api_token(&token).await;
    assert!(
        matches!(refused, Err(StoreError::Unauthorized { .. })),
        "{refused:?}"
    );

    let out = cls(
        &[
            "admin",
            "revoke-api-key",
            "--data-dir",
            &data,
            "--id",
            "999",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

/// Key file: the new key replaces the file (0600), the old is kept as `.old`, the state
/// reads with the new key and fails clearly with the old; no key is printed.
#[tokio::test]
async fn rotating_a_key_file() {
    let dir = must(tempfile::tempdir());
    let data = dir.path().to_string_lossy().into_owned();
    let key_file = dir.path().join(KEY_FILE_NAME);
    let old = must(MasterKey::create_key_file(&key_file));
    let old_text = read(&key_file);
    let store = must(open(dir.path(), old.clone()).await);
    let url = format!("postgres://u:{DB_PASSWORD}@db.example.com/app");
    let p = must(
        store
            .create_project(NewProject {
                name: "p".into(),
                database_url: must(DatabaseUrl::parse(&url)),
                schema: None,
            })
            .await,
    );

    let out = cls(&["rotate-master-key", "--data-dir", &data], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let new_text = read(&key_file);
    assert_ne!(new_text, old_text, "the key file holds a new key");
    assert_eq!(read(&dir.path().join("master.key.old")), old_text);
    assert!(!dir.path().join("master.key.new").exists());
    #[cfg(unix)]
    assert_eq!(mode(&key_file), 0o600);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !printed.contains(new_text.trim()),
        "the new key was printed"
    );
    assert!(printed.contains("1 database URL"), "{printed}");

    let new = must(MasterKey::from_key_file(&key_file));
    let reopened = must(open(dir.path(), new).await);
    assert_eq!(
        must(reopened.project(p.id).await).database_url.expose(),
        url
    );
    let stale = open(dir.path(), old).await.err();
    assert!(
        matches!(
            stale,
            Some(StoreError::Secrets(SecretsError::KeyMismatch { .. }))
        ),
        "{stale:?}"
    );
}

/// `CLS_MASTER_KEY`: the new key goes to the file given (0600), the output says to set the
/// variable from it, and never shows the key.
#[tokio::test]
async fn rotating_an_environment_key() {
    let dir = must(tempfile::tempdir());
    let data_dir = dir.path().join("data");
    let data = data_dir.to_string_lossy().into_owned();
    // A key made elsewhere, handed over as the environment variable.
    let elsewhere = dir.path().join("elsewhere.key");
    let old = must(MasterKey::create_key_file(&elsewhere));
    let old_text = read(&elsewhere);
    let store = must(open(&data_dir, old).await);
    let url = format!("postgres://u:{DB_PASSWORD}@db.example.com/app");
    let p = must(
        store
            .create_project(NewProject {
                name: "p".into(),
                database_url: must(DatabaseUrl::parse(&url)),
                schema: None,
            })
            .await,
    );

    let new_file = dir.path().join("rotated.key");
    let new_path = new_file.to_string_lossy().into_owned();
    let env = [("CLS_MASTER_KEY", old_text.trim())];
    let out = cls(
        &[
            "rotate-master-key",
            "--data-dir",
            &data,
            "--new-key-file",
            &new_path,
        ],
        &env,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("CLS_MASTER_KEY"), "{}", stderr(&out));
    assert!(
        !data_dir.join(KEY_FILE_NAME).exists(),
        "no key file was made"
    );
    #[cfg(unix)]
    assert_eq!(mode(&new_file), 0o600);
    let new_text = read(&new_file);
    let printed = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !printed.contains(new_text.trim()),
        "the new key was printed"
    );
    assert!(!printed.contains(DB_PASSWORD));

    let new = must(MasterKey::from_key_file(&new_file));
    let reopened = must(open(&data_dir, new).await);
    assert_eq!(
        must(reopened.project(p.id).await)
            .database_url
            .expose()
            .to_string(),
        url
    );

    // Running it again with the old key fails and changes nothing.
    let again = cls(
        &[
            "rotate-master-key",
            "--data-dir",
            &data,
            "--new-key-file",
            &dir.path().join("third.key").to_string_lossy(),
        ],
        &env,
    )
    .await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains(
            "the master key in CLS_MASTER_KEY is not the one this state's secrets were sealed with"
        ),
        "{}",
        stderr(&again)
    );
    assert!(
        !stderr(&again).contains(old_text.trim()),
        "a key was printed"
    );
    assert!(!dir.path().join("third.key").exists());
    let still = must(reopened.project(p.id).await);
    assert_eq!(still.database_url.expose(), url);
}

/// A state with one project (a sealed database URL) made through the library in `dir`, its
/// key in `dir/master.key`; the key's text.
async fn sealed_state(dir: &Path) -> String {
    let key = must(MasterKey::create_key_file(&dir.join(KEY_FILE_NAME)));
    let store = must(open(dir, key).await);
    let url = format!("postgres://u:{DB_PASSWORD}@db.example.com/app");
    must(
        store
            .create_project(NewProject {
                name: "p".into(),
                database_url: must(DatabaseUrl::parse(&url)),
                schema: None,
            })
            .await,
    );
    read(&dir.join(KEY_FILE_NAME))
}

/// The key file deleted: every command that opens the state refuses, saying where the key
/// was expected, and no new key is made in its place.
#[tokio::test]
async fn a_deleted_key_file_is_reported_not_replaced() {
    let dir = must(tempfile::tempdir());
    let data = dir.path().to_string_lossy().into_owned();
    let key_text = sealed_state(dir.path()).await;
    let key_file = dir.path().join(KEY_FILE_NAME);
    must(std::fs::remove_file(&key_file));

    for args in [
        &[
            "admin",
            "create-api-key",
            "--data-dir",
            &data,
            "--name",
            "ci",
        ][..],
        &["admin", "list-api-keys", "--data-dir", &data][..],
        &["rotate-master-key", "--data-dir", &data][..],
    ] {
        let out = cls(args, &[]).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains(&key_file.display().to_string()),
            "{args:?}: {message}"
        );
        assert!(message.contains("no master key"), "{args:?}: {message}");
        assert!(stdout(&out).trim().is_empty(), "{args:?}: {}", stdout(&out));
        assert!(!key_file.exists(), "{args:?} made a new key file");
        assert!(!message.contains(key_text.trim()));
    }
    let out = cls(
        &[
            "admin",
            "create-api-key",
            "--data-dir",
            &data,
            "--name",
            "ci",
        ],
        &[],
    )
    .await;
    assert!(
        stderr(&out).contains("is already sealed under a master key"),
        "{}",
        stderr(&out)
    );
}

/// A wrong CLS_MASTER_KEY: refused at start, by `cls serve` before it listens as by every
/// command, naming the variable and never showing a key.
#[tokio::test]
async fn a_wrong_master_key_is_refused_at_start() {
    let dir = must(tempfile::tempdir());
    let data = dir.path().to_string_lossy().into_owned();
    let right = sealed_state(dir.path()).await;
    let wrong = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let env = [("CLS_MASTER_KEY", wrong)];

    let out = cls(&["admin", "list-api-keys", "--data-dir", &data], &env).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains(
            "the master key in CLS_MASTER_KEY is not the one this state's secrets were sealed with"
        ) && message.contains("set CLS_MASTER_KEY to the key this state was sealed with"),
        "{message}"
    );
    assert!(!message.contains(wrong) && !message.contains(right.trim()));

    // `cls serve` stops at once (a time limit, so a server that starts fails the test
    // instead of hanging it).
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cls"));
    cmd.args(["serve", "--data-dir", &data, "--port", "0"])
        .env_remove("CLS_STATE_URL")
        .env_remove("CLS_DATA_DIR")
        .env("CLS_MASTER_KEY", wrong)
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output()).await;
    let out = match out {
        Ok(out) => must(out),
        Err(_) => panic!("cls serve started with a wrong master key"),
    };
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not the one this state's secrets were sealed with"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("listening"), "{}", stdout(&out));

    // The right key still works.
    let out = cls(&["admin", "list-api-keys", "--data-dir", &data], &[]).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Two nodes sharing one PostgreSQL state, each with an empty data directory: the first
/// makes the key; the second refuses to start (instead of sealing secrets under a key of its
/// own that the first cannot read) and keeps no key file.
#[tokio::test]
async fn a_second_node_with_its_own_new_key_is_refused() {
    let state = cls_testkit::db::TestDb::new().await;
    let (a, b) = (must(tempfile::tempdir()), must(tempfile::tempdir()));
    let env = [("CLS_STATE_URL", state.url.as_str())];
    let create = |dir: &Path| {
        let data = dir.to_string_lossy().into_owned();
        async move {
            cls(
                &[
                    "admin",
                    "create-api-key",
                    "--data-dir",
                    &data,
                    "--name",
                    "node",
                ],
                &env,
            )
            .await
        }
    };
    let first = create(a.path()).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(a.path().join(KEY_FILE_NAME).exists());
    let second = create(b.path()).await;
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("is already sealed under a master key"),
        "{}",
        stderr(&second)
    );
    assert!(!b.path().join(KEY_FILE_NAME).exists());
    // With the first node's key, the second starts.
    must(std::fs::copy(
        a.path().join(KEY_FILE_NAME),
        b.path().join(KEY_FILE_NAME),
    ));
    let again = create(b.path()).await;
    assert!(again.status.success(), "{}", stderr(&again));
    state.drop_now().await;
}
