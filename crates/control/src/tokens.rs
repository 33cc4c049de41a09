//! Credentials the server checks: REST API tokens, dashboard passwords and session tokens.
//! Both store backends use these rules; they only add the SQL.
//!
//! Words used here:
//! - **API token**: `cls_<prefix>_<secret>`, where the prefix is 8 lowercase hex characters
//!   (public: shown in lists as `cls_1a2b3c4d`, and how the token's row is found) and the
//!   secret 40 random alphanumeric characters from the operating system's CSPRNG. Only the
//!   prefix and an argon2id hash (PHC string) of the whole token are stored; the token is
//!   shown once.
//! - **verification cache**: argon2 takes tens of milliseconds by design, too slow for every
//!   API request. A successful verification is remembered in memory for [`CACHE_TTL`], keyed
//!   by the SHA-256 of the token (never the token itself). Revocation is still checked in the
//!   database on every request, so a revoke takes effect at once.
//! - **password**: a dashboard user's, at least [`MIN_PASSWORD_CHARS`] characters, stored as
//!   an argon2id hash. Unknown usernames are checked against a dummy hash, so a wrong
//!   username takes about as long as a wrong password.
//! - **session token**: the dashboard's cookie, 43 random characters; only its SHA-256 is
//!   stored, so a copy of the state database signs nobody in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, SubsecRound, Utc};
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use async_trait::async_trait;

use crate::model::{ApiToken, ApiTokenId, User};
use crate::store::StoreError;

/// How every API token starts.
pub const API_TOKEN_START: &str = "cls_";

/// Hex characters in a token's public prefix (after `cls_`).
const PREFIX_HEX_CHARS: usize = 8;

/// Random alphanumeric characters in a token's secret part (about 238 bits).
const SECRET_CHARS: usize = 40;

/// How long a successful token verification is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// Entries the verification cache holds at most before it drops expired ones (and, if that
/// is not enough, all of them): a bound on memory whatever the traffic.
const CACHE_MAX: usize = 4096;

/// `last_used_at` is written at most this often per token (one write per request would make
/// every API call a write).
pub const LAST_USED_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// Shortest dashboard password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Why a credential was refused; the text the API answers 401 with.
pub(crate) mod refused {
    /// The bearer token is not of the `cls_…` shape.
    pub const MALFORMED_TOKEN: &str = "the API token is malformed: send `Authorization: Bearer cls_…` with the whole token printed by `cls admin create-api-key`";
    /// No token has this prefix, or its secret part does not match.
    pub const UNKNOWN_TOKEN: &str = "the API token is not valid: check it was copied whole, or create a new one with `cls admin create-api-key`";
    /// The token was revoked.
    pub const REVOKED_TOKEN: &str =
        "the API token was revoked: create a new one with `cls admin create-api-key`";
    /// Username or password wrong (which one is not said).
    pub const BAD_LOGIN: &str =
        "wrong username or password: check both (passwords are case-sensitive) and sign in again";
    /// The session cookie is unknown or expired.
    pub const NO_SESSION: &str = "your session has expired or you were signed out: sign in again";
}

/// A new API token: what is stored and what is shown once.
pub(crate) struct NewApiToken {
    /// `cls_1a2b3c4d`.
    pub prefix: String,
    /// argon2id PHC string of the whole token.
    pub hash: String,
    /// The whole token, to show once.
    pub token: SecretString,
}

/// Makes a new API token and hashes it (on a blocking thread: argon2 is slow on purpose).
pub(crate) async fn new_api_token() -> Result<NewApiToken, StoreError> {
    let mut bytes = [0u8; PREFIX_HEX_CHARS / 2];
    OsRng.fill_bytes(&mut bytes);
    let prefix = format!("{API_TOKEN_START}{}", hex::encode(bytes));
    // Built in place inside the secret: no plain copy of the token outlives this function.
    let mut text = String::with_capacity(prefix.len() + 1 + SECRET_CHARS);
    text.push_str(&prefix);
    text.push('_');
    Alphanumeric.append_string(&mut OsRng, &mut text, SECRET_CHARS);
    let token = SecretString::from(text);
    let hash = hash_secret(token.clone()).await?;
    Ok(NewApiToken {
        prefix,
        hash,
        token,
    })
}

/// The public prefix of a well-formed token (`cls_1a2b3c4d`), or `Unauthorized`.
pub(crate) fn api_token_prefix(token: &str) -> Result<&str, StoreError> {
    let malformed = || StoreError::Unauthorized {
        reason: refused::MALFORMED_TOKEN,
    };
    let rest = token.strip_prefix(API_TOKEN_START).ok_or_else(malformed)?;
    let (hex_part, secret) = rest.split_once('_').ok_or_else(malformed)?;
    let ok = hex_part.len() == PREFIX_HEX_CHARS
        && hex_part
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && secret.len() >= 32
        && secret.chars().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(malformed());
    }
    Ok(&token[..API_TOKEN_START.len() + PREFIX_HEX_CHARS])
}

/// Remembers recent successful token verifications, keyed by the token's SHA-256.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    /// SHA-256 of a token → the token's id and when it was verified.
    verified: Mutex<HashMap<[u8; 32], (i64, Instant)>>,
    /// SHA-256 of a token → the turn to verify it. Requests with one token that all miss the
    /// cache at once (every [`CACHE_TTL`] for a busy client) wait for the first one's argon2
    /// run instead of each starting their own: argon2 takes ~19 MiB per run, and the load
    /// soak (`scripts/soak.sh`) saw eight at once every minute grow the server's memory by
    /// ~60 MiB a step, kept by the allocator's per-thread arenas.
    in_flight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
    /// argon2 verifications run, for tests.
    verifications: AtomicU64,
}

/// A turn to verify one token; leaving it forgets the turn when nobody else waits for it.
struct VerifyTurn<'a> {
    cache: &'a TokenCache,
    digest: [u8; 32],
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for VerifyTurn<'_> {
    fn drop(&mut self) {
        let mut map = self
            .cache
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Clones are made under this lock: two references (the map's and ours) mean no one
        // else waits for this turn. A request cancelled while waiting drops its clone, so the
        // entry never outlives its last user.
        if map
            .get(&self.digest)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate) && Arc::strong_count(g) == 2)
        {
            map.remove(&self.digest);
        }
    }
}

impl TokenCache {
    /// The turn to verify the token with SHA-256 `digest` (shared by concurrent callers).
    fn turn(&self, digest: [u8; 32]) -> VerifyTurn<'_> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let gate = map.entry(digest).or_default().clone();
        VerifyTurn {
            cache: self,
            digest,
            gate,
        }
    }

    fn hit(&self, digest: &[u8; 32], id: i64) -> bool {
        let map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        map.get(digest)
            .is_some_and(|(cached, at)| *cached == id && at.elapsed() < CACHE_TTL)
    }

    fn remember(&self, digest: [u8; 32], id: i64) {
        let mut map = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(digest, (id, Instant::now()));
    }

    fn forget(&self, digest: &[u8; 32]) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
    }
}

/// A stored token as the backends read it, with its hash.
pub(crate) struct StoredApiToken {
    /// The listable part.
    pub token: ApiToken,
    /// argon2id PHC string.
    pub hash: String,
}

/// The SQL each backend supplies for the credential rules here; nothing else.
#[async_trait]
pub(crate) trait CredentialRows: Send + Sync {
    /// The token whose public prefix is `prefix`, with its hash.
    async fn api_token_by_prefix(&self, prefix: &str)
        -> Result<Option<StoredApiToken>, StoreError>;
    /// Sets a token's `last_used_at` to `now` unless it was written after `written_after`
    /// (another node just did).
    async fn touch_api_token(
        &self,
        id: ApiTokenId,
        now: DateTime<Utc>,
        written_after: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The user named `username`, with their password hash.
    async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>, StoreError>;
}

/// The API token `token` names, or `Unauthorized`. Revocation is read from the database
/// every time; only the argon2 check is cached. `last_used_at` is written at most once per
/// [`LAST_USED_EVERY`].
pub(crate) async fn authenticate(
    rows: &dyn CredentialRows,
    cache: &TokenCache,
    token: &str,
) -> Result<ApiToken, StoreError> {
    let prefix = api_token_prefix(token)?;
    let stored = rows.api_token_by_prefix(prefix).await?;
    let mut found = check_api_token(cache, token, stored).await?;
    // Microseconds: what both databases keep, so the value returned is the one stored.
    let now = Utc::now().trunc_subsecs(6);
    if last_used_due(found.last_used_at, now) {
        rows.touch_api_token(found.id, now, now - LAST_USED_EVERY)
            .await?;
        found.last_used_at = Some(now);
    }
    Ok(found)
}

/// The user when `password` is theirs, or `Unauthorized` (an unknown username is checked
/// against a dummy hash, so it takes about as long as a wrong password).
pub(crate) async fn verify_user(
    rows: &dyn CredentialRows,
    username: &str,
    password: &SecretString,
) -> Result<User, StoreError> {
    let matches = match rows.user_by_name(username.trim()).await? {
        Some((user, hash)) => verify_secret(Some(hash), password.clone())
            .await?
            .then_some(user),
        None => {
            verify_secret(None, password.clone()).await?;
            None
        }
    };
    matches.ok_or(StoreError::Unauthorized {
        reason: refused::BAD_LOGIN,
    })
}

/// What a backend stores for a new user: the checked username and the password's hash.
pub(crate) async fn new_user(
    username: &str,
    password: &SecretString,
) -> Result<(String, String), StoreError> {
    let username = check_username(username)?;
    check_password(password)?;
    let hash = hash_secret(password.clone()).await?;
    Ok((username, hash))
}

/// The error for a username that names no user (changing the password of nobody).
pub(crate) fn unknown_user(username: &str) -> StoreError {
    StoreError::Invalid {
        field: "username",
        reason: format!("there is no user `{username}`: check the name, or create the user"),
    }
}

/// A new session's values: its token (for the cookie), what is stored for it, and times.
pub(crate) struct NewSession {
    /// The token, shown once (as the cookie).
    pub token: SecretString,
    /// Its SHA-256, hex: what is stored.
    pub token_hash: String,
    /// The CSRF token.
    pub csrf_token: String,
    /// Now.
    pub created_at: DateTime<Utc>,
    /// Now plus the time to live.
    pub expires_at: DateTime<Utc>,
}

/// Makes a session lasting `ttl` (which must be positive).
pub(crate) fn new_session(ttl: chrono::Duration) -> Result<NewSession, StoreError> {
    if ttl <= chrono::Duration::zero() {
        return Err(StoreError::Invalid {
            field: "ttl",
            reason: "a session must last longer than zero: give a positive time to live".into(),
        });
    }
    let (token, token_hash) = new_session_token();
    let created_at = Utc::now().trunc_subsecs(6);
    Ok(NewSession {
        token,
        token_hash,
        csrf_token: new_csrf_token(),
        created_at,
        expires_at: created_at + ttl,
    })
}

/// Checks `token` against the row its prefix found (`None`: no such prefix). Revocation is
/// read from the row every time; only the argon2 check is cached.
async fn check_api_token(
    cache: &TokenCache,
    token: &str,
    stored: Option<StoredApiToken>,
) -> Result<ApiToken, StoreError> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let Some(stored) = stored else {
        return Err(StoreError::Unauthorized {
            reason: refused::UNKNOWN_TOKEN,
        });
    };
    if stored.token.revoked_at.is_some() {
        cache.forget(&digest);
        return Err(StoreError::Unauthorized {
            reason: refused::REVOKED_TOKEN,
        });
    }
    let id = stored.token.id.0;
    if !cache.hit(&digest, id) {
        let turn = cache.turn(digest);
        let _held = turn.gate.lock().await;
        // Whoever held the turn before may have just verified this very token.
        if !cache.hit(&digest, id) {
            cache.verifications.fetch_add(1, Ordering::Relaxed);
            if !verify_secret(Some(stored.hash), SecretString::from(token)).await? {
                return Err(StoreError::Unauthorized {
                    reason: refused::UNKNOWN_TOKEN,
                });
            }
            cache.remember(digest, id);
        }
    }
    Ok(stored.token)
}

/// Whether `last_used_at` is old enough to be written again at `now`.
pub(crate) fn last_used_due(last_used: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_used.is_none_or(|t| now - t >= LAST_USED_EVERY)
}

/// Checks a new dashboard username: trimmed, 1–64 characters, no control characters.
pub(crate) fn check_username(username: &str) -> Result<String, StoreError> {
    let trimmed = username.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 64 || trimmed.chars().any(char::is_control) {
        return Err(StoreError::Invalid {
            field: "username",
            reason: "the username must be 1 to 64 characters, without control characters: choose another".into(),
        });
    }
    Ok(trimmed.to_string())
}

/// Checks a new dashboard password's length.
pub(crate) fn check_password(password: &SecretString) -> Result<(), StoreError> {
    if password.expose_secret().chars().count() < MIN_PASSWORD_CHARS {
        return Err(StoreError::Invalid {
            field: "password",
            reason: format!(
                "the password is shorter than {MIN_PASSWORD_CHARS} characters: choose a longer one (a passphrase of a few words works well)"
            ),
        });
    }
    Ok(())
}

/// argon2id PHC string of `secret` (on a blocking thread).
pub(crate) async fn hash_secret(secret: SecretString) -> Result<String, StoreError> {
    blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(secret.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(StoreError::Hash)
    })
    .await
}

/// Whether `secret` matches the PHC string `hash`. With no hash (unknown user) a dummy one
/// is checked, so the answer takes about as long, and is always `false`.
pub(crate) async fn verify_secret(
    hash: Option<String>,
    secret: SecretString,
) -> Result<bool, StoreError> {
    blocking(move || {
        let (phc, known) = match &hash {
            Some(h) => (h.as_str(), true),
            None => (dummy_hash(), false),
        };
        let parsed = PasswordHash::new(phc).map_err(|e| StoreError::Corrupt {
            what: "password or token hash",
            reason: e.to_string(),
        })?;
        let matches = Argon2::default()
            .verify_password(secret.expose_secret().as_bytes(), &parsed)
            .is_ok();
        Ok(known && matches)
    })
    .await
}

/// A hash of nothing anyone knows, made once per process.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let random = Alphanumeric.sample_string(&mut OsRng, 32);
        Argon2::default()
            .hash_password(random.as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// A new session token and the SHA-256 (hex) stored for it.
pub(crate) fn new_session_token() -> (SecretString, String) {
    let token = SecretString::from(Alphanumeric.sample_string(&mut OsRng, 43));
    let hash = session_token_hash(token.expose_secret());
    (token, hash)
}

/// The SHA-256 (hex) a session token is stored and looked up as.
pub(crate) fn session_token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new CSRF token (random, 32 characters).
pub(crate) fn new_csrf_token() -> String {
    Alphanumeric.sample_string(&mut OsRng, 32)
}

/// Runs slow hashing off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::Hash(argon2::password_hash::Error::Crypto)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The load soak's finding: eight requests with one token missing the cache at once ran
    /// argon2 eight times (and grew memory by ~60 MiB each minute); now they run it once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_of_one_token_verify_it_once() -> Result<(), StoreError> {
        let new = new_api_token().await?;
        let cache = Arc::new(TokenCache::default());
        let stored = |new: &NewApiToken| StoredApiToken {
            token: ApiToken {
                id: crate::model::ApiTokenId(7),
                name: "soak".into(),
                prefix: new.prefix.clone(),
                created_at: Utc::now(),
                last_used_at: None,
                revoked_at: None,
            },
            hash: new.hash.clone(),
        };
        let checks = (0..8).map(|_| {
            let cache = cache.clone();
            let token = new.token.expose_secret().to_string();
            let row = stored(&new);
            tokio::spawn(async move { check_api_token(&cache, &token, Some(row)).await })
        });
        for check in futures::future::join_all(checks).await {
            let found =
                check.map_err(|_| StoreError::Hash(argon2::password_hash::Error::Crypto))??;
            assert_eq!(found.id.0, 7);
        }
        assert_eq!(cache.verifications.load(Ordering::Relaxed), 1);
        assert!(cache
            .in_flight
            .lock()
            .map(|m| m.is_empty())
            .unwrap_or(false));
        // A wrong token with the same row is still refused, and leaves no turn behind.
        let wrong = format!("{}_{}", new.prefix, "x".repeat(SECRET_CHARS));
        assert!(check_api_token(&cache, &wrong, Some(stored(&new)))
            .await
            .is_err());
        assert!(cache
            .in_flight
            .lock()
            .map(|m| m.is_empty())
            .unwrap_or(false));
        Ok(())
    }

    #[tokio::test]
    async fn tokens_have_the_documented_shape() -> Result<(), StoreError> {
        let new = new_api_token().await?;
        let token = new.token.expose_secret();
        assert!(token.starts_with(&new.prefix));
        assert_eq!(new.prefix.len(), 12);
        assert_eq!(api_token_prefix(token)?, new.prefix);
        assert!(new.hash.starts_with("$argon2id$"));
        assert!(!new.hash.contains(token));
        assert!(verify_secret(Some(new.hash.clone()), new.token.clone()).await?);
        assert!(!verify_secret(Some(new.hash), SecretString::from("cls_x")).await?);
        let other = new_api_token().await?;
        assert_ne!(other.prefix, new.prefix);
        Ok(())
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let long = "a".repeat(40);
        for bad in [
            String::new(),
            "Bearer".into(),
            format!("cls_1a2b3c4d{long}"),
            format!("cls_1A2B3C4D_{long}"),
            format!("cls_1a2b3c_{long}"),
            "cls_1a2b3c4d_short".into(),
            format!("xyz_1a2b3c4d_{long}"),
            format!("cls_1a2b3c4d_{long}!"),
        ] {
            assert!(
                matches!(api_token_prefix(&bad), Err(StoreError::Unauthorized { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            api_token_prefix(&format!("cls_1a2b3c4d_{long}")).ok(),
            Some("cls_1a2b3c4d")
        );
    }

    #[tokio::test]
    async fn unknown_users_check_a_dummy_hash() -> Result<(), StoreError> {
        assert!(!verify_secret(None, SecretString::from("anything at all")).await?);
        Ok(())
    }

    #[test]
    fn passwords_and_usernames_are_checked() {
        assert!(check_password(&SecretString::from("short")).is_err());
        assert!(check_password(&SecretString::from("twelve chars")).is_ok());
        assert!(check_username("  ").is_err());
        assert_eq!(check_username(" admin ").ok().as_deref(), Some("admin"));
    }

    #[test]
    fn last_used_is_written_at_most_once_a_minute() {
        let now = Utc::now();
        assert!(last_used_due(None, now));
        assert!(!last_used_due(
            Some(now - chrono::Duration::seconds(59)),
            now
        ));
        assert!(last_used_due(
            Some(now - chrono::Duration::seconds(61)),
            now
        ));
    }
}
