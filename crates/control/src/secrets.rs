//! Secrets at rest: AES-256-GCM under one master key.
//!
//! Words used here:
//! - **master key** ([`MasterKey`]): 32 random bytes, from `CLS_MASTER_KEY` (base64) or, when
//!   that is not set, from the key file `master.key` in the data directory ([`MasterKey::find`];
//!   the store creates the file, mode 0600, only for a state that holds nothing sealed yet).
//!   Losing it makes every stored secret unreadable, so errors say to restore it rather than
//!   to generate a new one.
//! - **key check** ([`MasterKey::key_check`]): a known text sealed under the key, kept by the
//!   state; opening it when the state is opened proves the key is the one its secrets were
//!   sealed with, before anything is read or written with a wrong one.
//! - **sealed secret** ([`Sealed`]): what the state database holds for a Stripe key or a
//!   database URL: `v1:` followed by base64(nonce ‖ ciphertext ‖ tag). Every encryption uses
//!   a fresh random 96-bit nonce, so sealing the same secret twice gives different texts.
//!
//! Plain text goes in and comes out as [`SecretString`]; the key bytes are zeroed on drop and
//! no `Debug` output here ever shows key material or plain text.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// Environment variable holding the master key as base64.
pub const MASTER_KEY_ENV: &str = "CLS_MASTER_KEY";

/// Name of the generated key file inside the data directory.
pub const KEY_FILE_NAME: &str = "master.key";

/// The text a key check seals (its content only needs to be known; AES-GCM's tag is what
/// tells a wrong key).
const KEY_CHECK_TEXT: &str = "cls master key check v1";

/// Prefix of the current sealed-secret format.
const SEALED_V1: &str = "v1:";

/// Bytes in an AES-256 key.
const KEY_LEN: usize = 32;

/// Bytes in an AES-GCM nonce (96 bits).
const NONCE_LEN: usize = 12;

/// Where the master key came from; named in errors so the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `CLS_MASTER_KEY` environment variable.
    Environment,
    /// A key file at this path.
    File(PathBuf),
    /// Generated in memory (tests, `MasterKey::generate`).
    Generated,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Environment => write!(f, "{MASTER_KEY_ENV}"),
            KeySource::File(path) => write!(f, "the key file {}", path.display()),
            KeySource::Generated => f.write_str("a generated key"),
        }
    }
}

/// Why a secret could not be sealed or opened, or the master key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key text is not base64 or not 32 bytes long.
    #[error("the master key from {source_name} is not usable ({reason}): it must be 32 random bytes in base64, e.g. the output of `openssl rand -base64 32`; if secrets were already stored, restore the original key instead of making a new one")]
    MalformedKey {
        /// Where the key came from.
        source_name: KeySource,
        /// What is wrong with it (never the key itself).
        reason: &'static str,
    },
    /// The key file could not be read or created.
    #[error("cannot {action} the master key file {path}: {source}: check the data directory's permissions, or set {MASTER_KEY_ENV}")]
    KeyFile {
        /// `read` or `create`.
        action: &'static str,
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The state's key check does not open with this key: the state was sealed under
    /// another one. Found when the state is opened, before anything is read or written.
    #[error("{}", key_mismatch_message(source_name))]
    KeyMismatch {
        /// Where the wrong key came from.
        source_name: KeySource,
    },
    /// There is no master key (no `CLS_MASTER_KEY`, no key file) but the state is already
    /// sealed under one (it holds its key check or sealed secrets), so a new key would not do.
    #[error("there is no master key: {MASTER_KEY_ENV} is not set and the key file {} does not exist, but this state is already sealed under a master key (made by an earlier start, or by another node sharing this state): restore {} from a backup of the data directory (or copy it from the node whose key this state uses), or set {MASTER_KEY_ENV} to the key this state was sealed with. No new key was made: it could not read what the state holds", .path.display(), .path.display())]
    KeyMissing {
        /// Where the key file was expected.
        path: PathBuf,
    },
    /// Authentication failed: another key, or the stored text was altered.
    #[error("the master key does not match the one these secrets were encrypted with: restore CLS_MASTER_KEY or the key file")]
    WrongKey,
    /// The stored text is not a sealed secret at all.
    #[error("a stored secret is damaged ({reason}): enter that secret (Stripe key or database URL) again")]
    Malformed {
        /// What is wrong with the stored text.
        reason: &'static str,
    },
    /// The opened plain text is not UTF-8 (only possible if it was sealed by something else).
    #[error("a stored secret does not decrypt to text: enter that secret (Stripe key or database URL) again")]
    NotText,
    /// The cipher refused to encrypt (not expected with valid inputs).
    #[error("encrypting a secret failed: retry, and report this if it persists")]
    Encrypt,
}

/// The message of [`SecretsError::KeyMismatch`]: what is wrong and how to fix it for the
/// place the key came from (never the key).
fn key_mismatch_message(source: &KeySource) -> String {
    let cause = "is not the one this state's secrets were sealed with, so cls cannot read them";
    match source {
        KeySource::Environment => format!(
            "the master key in {MASTER_KEY_ENV} {cause}: set {MASTER_KEY_ENV} to the key this state was sealed with (or unset it, if the key file {KEY_FILE_NAME} in the data directory holds that key)"
        ),
        KeySource::File(path) => format!(
            "the master key in the key file {} {cause}: restore {} from the backup that goes with this state (check --data-dir), or set {MASTER_KEY_ENV} to the key this state was sealed with",
            path.display(),
            path.display()
        ),
        KeySource::Generated => format!(
            "a newly generated master key {cause}: open this state with the key it was sealed with"
        ),
    }
}

/// The master key as found before the state is read: [`MasterKey::find`] never creates a
/// key file, because only the state can tell whether a new key is safe (it is not when the
/// state already holds sealed secrets). `From<MasterKey>` makes a known key one.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// From `CLS_MASTER_KEY`, an existing key file, or the caller (boxed: the cipher's key
    /// schedule is large, and a lookup is mostly moved around before it is used).
    Found(Box<MasterKey>),
    /// Neither `CLS_MASTER_KEY` nor the key file: the key file to create at `path` if the
    /// state holds nothing sealed yet.
    Missing {
        /// Where the key file was expected (`<data dir>/master.key`).
        path: PathBuf,
    },
}

impl From<MasterKey> for KeyLookup {
    fn from(key: MasterKey) -> KeyLookup {
        KeyLookup::Found(Box::new(key))
    }
}

impl KeyLookup {
    /// Where the key comes (or would come) from.
    pub fn source(&self) -> KeySource {
        match self {
            KeyLookup::Found(key) => key.source().clone(),
            KeyLookup::Missing { path } => KeySource::File(path.clone()),
        }
    }
}

/// The 32-byte key every secret is sealed with. `Debug` shows only where it came from.
#[derive(Clone)]
pub struct MasterKey {
    /// The AES-256-GCM cipher (zeroizes its key schedule on drop).
    cipher: Aes256Gcm,
    /// Where the key came from.
    source: KeySource,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A fresh random key (tests, or the first start).
    pub fn generate() -> MasterKey {
        let key = random_key();
        MasterKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..])),
            source: KeySource::Generated,
        }
    }

    /// Parses base64 text (surrounding whitespace ignored) holding 32 bytes.
    pub fn from_base64(text: &SecretString, source: KeySource) -> Result<MasterKey, SecretsError> {
        let trimmed = text.expose_secret().trim();
        if trimmed.is_empty() {
            return Err(SecretsError::MalformedKey {
                source_name: source,
                reason: "it is empty",
            });
        }
        let bytes =
            Zeroizing::new(
                BASE64
                    .decode(trimmed)
                    .map_err(|_| SecretsError::MalformedKey {
                        source_name: source.clone(),
                        reason: "it is not valid base64",
                    })?,
            );
        if bytes.len() != KEY_LEN {
            return Err(SecretsError::MalformedKey {
                source_name: source,
                reason: "it does not decode to exactly 32 bytes",
            });
        }
        let key = Key::<Aes256Gcm>::from_slice(&bytes);
        Ok(MasterKey {
            cipher: Aes256Gcm::new(key),
            source,
        })
    }

    /// Finds the key the product uses: `CLS_MASTER_KEY` if set, else the key file in
    /// `data_dir`. Never creates one: when neither is there, the store decides
    /// ([`KeyLookup::Missing`]).
    pub fn find(data_dir: &Path) -> Result<KeyLookup, SecretsError> {
        let env = std::env::var(MASTER_KEY_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(SecretString::from);
        MasterKey::find_from(env, data_dir)
    }

    /// [`MasterKey::find`] with the environment value passed in (so tests need not touch the
    /// process environment).
    pub fn find_from(
        env: Option<SecretString>,
        data_dir: &Path,
    ) -> Result<KeyLookup, SecretsError> {
        if let Some(text) = env {
            return MasterKey::from_base64(&text, KeySource::Environment).map(KeyLookup::from);
        }
        let path = data_dir.join(KEY_FILE_NAME);
        match read_key_file(&path) {
            Ok(text) => {
                warn_if_readable_by_others(&path);
                MasterKey::from_base64(&text, KeySource::File(path)).map(KeyLookup::from)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyLookup::Missing { path }),
            Err(source) => Err(SecretsError::KeyFile {
                action: "read",
                path,
                source,
            }),
        }
    }

    /// Reads the key file at `path` (an error when it does not exist: see
    /// [`MasterKey::create_key_file`]).
    pub fn from_key_file(path: &Path) -> Result<MasterKey, SecretsError> {
        let text = read_key_file(path).map_err(|source| SecretsError::KeyFile {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        warn_if_readable_by_others(path);
        MasterKey::from_base64(&text, KeySource::File(path.to_path_buf()))
    }

    /// A new key file at `path` for a state that holds nothing sealed yet; when another
    /// process created it first, its key. `true` when this call created it.
    pub(crate) fn create_or_read_key_file(path: &Path) -> Result<(MasterKey, bool), SecretsError> {
        create_key_file(path, true)
    }

    /// A new random key written to a new key file at `path` (mode 0600, synced to disk),
    /// for master key rotation: the key is on disk before anything is sealed with it. Fails
    /// when `path` exists, never overwriting a key.
    pub fn create_key_file(path: &Path) -> Result<MasterKey, SecretsError> {
        create_key_file(path, false).map(|(key, _)| key)
    }

    /// Where this key came from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// A key check for the state to keep: a known text sealed under this key.
    pub fn key_check(&self) -> Result<Sealed, SecretsError> {
        self.seal(&SecretString::from(KEY_CHECK_TEXT))
    }

    /// Whether `check` (a [`MasterKey::key_check`]) was made with this key:
    /// [`SecretsError::KeyMismatch`] naming where this key came from when not.
    pub fn verify_key_check(&self, check: &Sealed) -> Result<(), SecretsError> {
        match self.open(check) {
            Ok(text) if text.expose_secret() == KEY_CHECK_TEXT => Ok(()),
            Ok(_) => Err(SecretsError::Malformed {
                reason: "the master key check holds an unexpected text",
            }),
            Err(SecretsError::WrongKey) => Err(self.mismatch()),
            Err(e) => Err(e),
        }
    }

    /// [`SecretsError::KeyMismatch`] for this key.
    pub(crate) fn mismatch(&self) -> SecretsError {
        SecretsError::KeyMismatch {
            source_name: self.source.clone(),
        }
    }

    /// Encrypts `plain` under a fresh random nonce.
    pub fn seal(&self, plain: &SecretString) -> Result<Sealed, SecretsError> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plain.expose_secret().as_bytes())
            .map_err(|_| SecretsError::Encrypt)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(Sealed(format!("{SEALED_V1}{}", BASE64.encode(blob))))
    }

    /// Decrypts a sealed secret; [`SecretsError::WrongKey`] when the key differs or the text
    /// was altered (AES-GCM cannot tell the two apart).
    pub fn open(&self, sealed: &Sealed) -> Result<SecretString, SecretsError> {
        let body = sealed
            .0
            .strip_prefix(SEALED_V1)
            .ok_or(SecretsError::Malformed {
                reason: "unknown format version",
            })?;
        let blob = BASE64.decode(body).map_err(|_| SecretsError::Malformed {
            reason: "not base64",
        })?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(SecretsError::Malformed {
                reason: "too short",
            });
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), ciphertext)
                .map_err(|_| SecretsError::WrongKey)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| SecretsError::NotText)?;
        Ok(SecretString::from(text))
    }
}

/// 32 random bytes from the operating system, zeroed when dropped.
fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    OsRng.fill_bytes(&mut key[..]);
    key
}

/// Logs a warning when the key file can be read by other users (it is created 0600; a copy
/// or a restore may have widened it).
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the master key file can be read by other users: run `chmod 600` on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Reads the key file into a secret string (the buffer is zeroed afterwards).
fn read_key_file(path: &Path) -> std::io::Result<SecretString> {
    let mut file = std::fs::File::open(path)?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)?;
    Ok(SecretString::from(text.as_str()))
}

/// Creates the key file with a new random key (`true`: created). If it exists (another
/// process created it first), reads that one when `reuse` (`false`), else fails.
fn create_key_file(path: &Path, reuse: bool) -> Result<(MasterKey, bool), SecretsError> {
    let fail = |source| SecretsError::KeyFile {
        action: "create",
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if reuse && e.kind() == std::io::ErrorKind::AlreadyExists => {
            return MasterKey::from_key_file(path).map(|key| (key, false));
        }
        Err(e) => return Err(fail(e)),
    };
    let key = random_key();
    let text = Zeroizing::new(format!("{}\n", BASE64.encode(&key[..])));
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    Ok((
        MasterKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key[..])),
            source: KeySource::File(path.to_path_buf()),
        },
        true,
    ))
}

/// An encrypted secret as stored: `v1:` + base64(nonce ‖ ciphertext ‖ tag).
///
/// Holds no plain text, but `Debug` still shows only its length: there is no reason for
/// ciphertexts to end up in logs either.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl Sealed {
    /// Wraps text read from the state database (checked when opened).
    pub fn from_stored(text: String) -> Sealed {
        Sealed(text)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} chars)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[test]
    fn round_trip() -> Result<(), SecretsError> {
        let key = MasterKey::generate();
        let sealed = key.seal(&secret("rk_test_abcdefghijklmnop"))?;
        assert!(sealed.as_str().starts_with("v1:"));
        assert!(!sealed.as_str().contains("rk_test"));
        let opened = key.open(&sealed)?;
        assert_eq!(opened.expose_secret(), "rk_test_abcdefghijklmnop");
        Ok(())
    }

    #[test]
    fn wrong_key_fails_clearly() -> Result<(), SecretsError> {
        let sealed = MasterKey::generate().seal(&secret("postgres://u:pw@h/db"))?;
        let err = MasterKey::generate().open(&sealed).err();
        assert!(matches!(err, Some(SecretsError::WrongKey)), "{err:?}");
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "the master key does not match the one these secrets were encrypted with: restore CLS_MASTER_KEY or the key file"
        );
        Ok(())
    }

    #[test]
    fn tampered_ciphertext_fails() -> Result<(), SecretsError> {
        let key = MasterKey::generate();
        let sealed = key.seal(&secret("sk_live_0123456789abcdef"))?;
        let mut blob = BASE64
            .decode(&sealed.as_str()[3..])
            .map_err(|_| SecretsError::Malformed { reason: "test" })?;
        let last = blob.len() - 1;
        blob[last] ^= 0x01;
        let tampered = Sealed::from_stored(format!("v1:{}", BASE64.encode(&blob)));
        assert!(matches!(key.open(&tampered), Err(SecretsError::WrongKey)));
        let garbage = Sealed::from_stored("v2:abc".into());
        assert!(matches!(
            key.open(&garbage),
            Err(SecretsError::Malformed { .. })
        ));
        let short = Sealed::from_stored("v1:AAAA".into());
        assert!(matches!(
            key.open(&short),
            Err(SecretsError::Malformed { .. })
        ));
        Ok(())
    }

    #[test]
    fn same_secret_seals_differently() -> Result<(), SecretsError> {
        let key = MasterKey::generate();
        let a = key.seal(&secret("rk_test_same_secret_here"))?;
        let b = key.seal(&secret("rk_test_same_secret_here"))?;
        assert_ne!(a, b);
        assert_eq!(key.open(&a)?.expose_secret(), key.open(&b)?.expose_secret());
        Ok(())
    }

    #[test]
    fn malformed_keys_are_explained() {
        let not_base64 = MasterKey::from_base64(&secret("not base64 !!"), KeySource::Environment);
        match not_base64 {
            Err(e @ SecretsError::MalformedKey { .. }) => {
                let m = e.to_string();
                assert!(m.contains("CLS_MASTER_KEY") && m.contains("base64"), "{m}");
            }
            other => panic!("expected MalformedKey, got {other:?}"),
        }
        let short =
            MasterKey::from_base64(&secret(&BASE64.encode([7u8; 16])), KeySource::Environment);
        match short {
            Err(e @ SecretsError::MalformedKey { .. }) => {
                assert!(e.to_string().contains("32 bytes"), "{e}");
            }
            other => panic!("expected MalformedKey, got {other:?}"),
        }
        let good =
            MasterKey::from_base64(&secret(&BASE64.encode([7u8; 32])), KeySource::Environment);
        assert!(good.is_ok());
    }

    #[test]
    fn env_key_wins_and_is_used() -> Result<(), SecretsError> {
        let dir = tempfile::tempdir().map_err(|source| SecretsError::KeyFile {
            action: "create",
            path: PathBuf::new(),
            source,
        })?;
        let text = BASE64.encode([9u8; 32]);
        let KeyLookup::Found(a) = MasterKey::find_from(Some(secret(&text)), dir.path())? else {
            panic!("an environment key is always found");
        };
        let b = MasterKey::from_base64(&secret(&text), KeySource::Environment)?;
        assert_eq!(a.source(), &KeySource::Environment);
        assert!(!dir.path().join(KEY_FILE_NAME).exists());
        let sealed = a.seal(&secret("hello"))?;
        assert_eq!(b.open(&sealed)?.expose_secret(), "hello");
        Ok(())
    }

    #[test]
    fn a_key_file_is_found_never_made_by_find_and_created_private() -> Result<(), SecretsError> {
        let dir = tempfile::tempdir().map_err(|source| SecretsError::KeyFile {
            action: "create",
            path: PathBuf::new(),
            source,
        })?;
        let data_dir = dir.path().join("data");
        let path = data_dir.join(KEY_FILE_NAME);
        match MasterKey::find_from(None, &data_dir)? {
            KeyLookup::Missing { path: expected } => assert_eq!(expected, path),
            found => panic!("expected Missing, got {found:?}"),
        }
        assert!(!path.exists(), "find made a key file");
        let (first, created) = MasterKey::create_or_read_key_file(&path)?;
        assert!(created);
        assert_eq!(first.source(), &KeySource::File(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .map_err(|source| SecretsError::KeyFile {
                    action: "read",
                    path: path.clone(),
                    source,
                })?;
            assert_eq!(mode, 0o600);
        }
        let sealed = first.seal(&secret("kept"))?;
        let (again, created) = MasterKey::create_or_read_key_file(&path)?;
        assert!(!created, "an existing key file is read, not replaced");
        assert_eq!(again.open(&sealed)?.expose_secret(), "kept");
        let KeyLookup::Found(second) = MasterKey::find_from(None, &data_dir)? else {
            panic!("the key file was not found");
        };
        assert_eq!(second.open(&sealed)?.expose_secret(), "kept");
        Ok(())
    }

    #[test]
    fn key_checks_tell_the_key_and_name_its_source() -> Result<(), SecretsError> {
        let key = MasterKey::generate();
        let check = key.key_check()?;
        key.verify_key_check(&check)?;
        let path = PathBuf::from("/var/lib/cls/master.key");
        let text = BASE64.encode([5u8; 32]);
        let from_file = MasterKey::from_base64(&secret(&text), KeySource::File(path))?;
        let err = from_file.verify_key_check(&check).err();
        assert!(
            matches!(err, Some(SecretsError::KeyMismatch { .. })),
            "{err:?}"
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("/var/lib/cls/master.key") && message.contains("restore"),
            "{message}"
        );
        assert!(!message.contains(&text), "{message}");
        let from_env = MasterKey::from_base64(&secret(&text), KeySource::Environment)?;
        let message = from_env
            .verify_key_check(&check)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.starts_with("the master key in CLS_MASTER_KEY is not the one"),
            "{message}"
        );
        assert!(
            message.contains("set CLS_MASTER_KEY to the key"),
            "{message}"
        );
        // A sealed secret is not a key check.
        let other = key.seal(&secret("rk_test_not_a_check"))?;
        assert!(key.verify_key_check(&other).is_err());
        Ok(())
    }

    #[test]
    fn a_new_key_file_never_overwrites_one() -> Result<(), SecretsError> {
        let dir = tempfile::tempdir().map_err(|source| SecretsError::KeyFile {
            action: "create",
            path: PathBuf::new(),
            source,
        })?;
        let path = dir.path().join("new.key");
        let key = MasterKey::create_key_file(&path)?;
        let sealed = key.seal(&secret("kept"))?;
        assert_eq!(
            MasterKey::from_key_file(&path)?
                .open(&sealed)?
                .expose_secret(),
            "kept"
        );
        assert!(matches!(
            MasterKey::create_key_file(&path),
            Err(SecretsError::KeyFile { .. })
        ));
        assert_eq!(key.open(&sealed)?.expose_secret(), "kept");
        Ok(())
    }

    #[test]
    fn debug_never_shows_key_material() -> Result<(), SecretsError> {
        let text = BASE64.encode([42u8; 32]);
        let key = MasterKey::from_base64(&secret(&text), KeySource::Environment)?;
        let shown = format!("{key:?}");
        assert!(!shown.contains(&text), "{shown}");
        assert!(!shown.contains("42"), "{shown}");
        let sealed = key.seal(&secret("rk_test_visible_or_not"))?;
        let shown = format!("{sealed:?}");
        assert!(!shown.contains(sealed.as_str()), "{shown}");
        Ok(())
    }
}
