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

    let store = must(open(dir.path(), must(MasterKey::load_from(None, dir.path()))).await);
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
    let old = must(MasterKey::load_from(None, dir.path()));
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

    let new = must(MasterKey::load_from(None, dir.path()));
    let reopened = must(open(dir.path(), new).await);
    assert_eq!(
        must(reopened.project(p.id).await).database_url.expose(),
        url
    );
    let stale = must(open(dir.path(), old).await).project(p.id).await;
    assert!(
        matches!(stale, Err(StoreError::Secrets(SecretsError::WrongKey))),
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
    let old = must(MasterKey::from_key_file(&elsewhere));
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
        stderr(&again).contains("nothing changed"),
        "{}",
        stderr(&again)
    );
    assert!(!dir.path().join("third.key").exists());
    let still = must(reopened.project(p.id).await);
    assert_eq!(still.database_url.expose(), url);
}
