//! The master key check: when a store is opened, proof that its master key is the one the
//! state's secrets were sealed with — before anything is read or sealed with a wrong key.
//!
//! The state keeps a key check ([`MasterKey::key_check`], a known text sealed under the key)
//! in its `state_meta` table, written the first time a key is used with the state (a state
//! from before the check existed proves the key by opening one of its sealed secrets first)
//! and replaced by [`crate::Store::rotate_master_key`] in the rotation's transaction. A key
//! file is created only for a state that holds nothing sealed yet: a missing key file is
//! never silently replaced by a new key.
//!
//! Two nodes sharing a new state, each creating its own key, race to store their check; the
//! stored one decides, so the second node fails at start instead of sealing secrets the
//! first cannot read.

use async_trait::async_trait;

use super::StoreError;
use crate::secrets::{KeyLookup, MasterKey, Sealed, SecretsError};

/// The `state_meta` row holding the key check.
pub(crate) const KEY_CHECK_NAME: &str = "master_key_check";

/// The SQL each backend supplies for the key check; nothing else.
#[async_trait]
pub(crate) trait KeyCheckRows: Send + Sync {
    /// The stored key check, if any.
    async fn key_check(&self) -> Result<Option<Sealed>, StoreError>;
    /// One sealed secret of the state (a database URL or a Stripe key), if it holds any.
    async fn some_sealed_secret(&self) -> Result<Option<Sealed>, StoreError>;
    /// Stores `check` unless a key check is stored already (another node's stays).
    async fn add_key_check(&self, check: &Sealed) -> Result<(), StoreError>;
}

/// The key a store opened on `rows` uses: the one found, once checked against the state, or
/// — when none was found and the state holds nothing sealed — a new key file.
///
/// Errors: [`SecretsError::KeyMismatch`] (the key found is not the state's),
/// [`SecretsError::KeyMissing`] (no key, and the state already holds secrets sealed under
/// one, or another node's key won the race for a new state).
pub(crate) async fn settle(
    rows: &dyn KeyCheckRows,
    lookup: KeyLookup,
) -> Result<MasterKey, StoreError> {
    let path = match lookup {
        KeyLookup::Found(key) => {
            verify(rows, &key).await?;
            return Ok(*key);
        }
        KeyLookup::Missing { path } => path,
    };
    if rows.key_check().await?.is_some() || rows.some_sealed_secret().await?.is_some() {
        return Err(SecretsError::KeyMissing { path }.into());
    }
    let (key, created) = MasterKey::create_or_read_key_file(&path)?;
    match verify(rows, &key).await {
        Ok(()) => {
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "created a new master key file for this new state: back it up along with the state, which cannot be read without it"
                );
            }
            Ok(key)
        }
        // Another node stored its key's check first: the key just made is of no use, and
        // leaving it would only hide that this node needs that node's key.
        Err(StoreError::Secrets(SecretsError::KeyMismatch { .. })) if created => {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the unused master key file: delete it before restoring the right one");
            }
            Err(SecretsError::KeyMissing { path }.into())
        }
        Err(e) => Err(e),
    }
}

/// Checks `key` against the state's key check, writing the check first when the state has
/// none (after proving the key on a sealed secret, when the state holds one).
async fn verify(rows: &dyn KeyCheckRows, key: &MasterKey) -> Result<(), StoreError> {
    if let Some(check) = rows.key_check().await? {
        return Ok(key.verify_key_check(&check)?);
    }
    if let Some(sealed) = rows.some_sealed_secret().await? {
        match key.open(&sealed) {
            Ok(_) => {}
            Err(SecretsError::WrongKey) => return Err(key.mismatch().into()),
            Err(e) => return Err(e.into()),
        }
    }
    rows.add_key_check(&key.key_check()?).await?;
    // Another node may have stored its check between the read and the write: the stored
    // one decides.
    let stored = rows.key_check().await?.ok_or_else(|| StoreError::Corrupt {
        what: "master key check",
        reason: "it is missing right after it was written".into(),
    })?;
    Ok(key.verify_key_check(&stored)?)
}
