//! API keys at the boundary: reads `Authorization` (Bearer, or Basic with the key as user), checks
//! the key against the ones the emulator accepts in its mode, and answers Stripe's 401 and 403
//! messages (keys masked: prefix kept, last four shown).

use crate::error::ApiError;
use crate::{keys_for, Mode};
use axum::http::{header, HeaderMap};
use base64::Engine;

/// Permissions the limited restricted key lacks (issue 2: charges and invoices).
pub const LIMITED_LACKS: &[&str] = &["rak_charge_read", "rak_invoice_read"];

/// What an accepted key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Secret key: everything.
    Secret,
    /// Restricted key with every read permission.
    RestrictedAll,
    /// Restricted key lacking [`LIMITED_LACKS`].
    RestrictedLimited,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    key: String,
    /// What the key may do.
    pub access: Access,
}

impl Caller {
    /// The key, masked for messages.
    pub fn masked_key(&self) -> String {
        mask(&self.key)
    }
}

/// Masks a key as Stripe does in messages: the `sk_test_`-style prefix stays, the rest becomes
/// `*` except the last four characters.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let prefix_len = [
        "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_",
    ]
    .iter()
    .find(|p| key.starts_with(**p))
    .map_or(0, |p| p.len());
    let tail = 4.min(chars.len().saturating_sub(prefix_len));
    let stars = chars.len() - prefix_len - tail;
    let mut out: String = chars[..prefix_len].iter().collect();
    out.extend(std::iter::repeat_n('*', stars));
    out.extend(&chars[chars.len() - tail..]);
    out
}

const NO_KEY: &str = "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.";

const PUBLISHABLE: &str = "This API call cannot be made with a publishable API key. Please use a secret API key. You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.";

/// Reads the key from the headers and checks it against the mode's accepted keys.
pub fn authenticate(headers: &HeaderMap, mode: Mode) -> Result<Caller, ApiError> {
    let key = read_key(headers).ok_or_else(|| ApiError::unauthorized(NO_KEY.to_string()))?;
    if key.is_empty() {
        return Err(ApiError::unauthorized(NO_KEY.to_string()));
    }
    if key.starts_with("pk_") {
        return Err(ApiError::unauthorized(PUBLISHABLE.to_string()));
    }
    if !keys_for(mode).contains(&key.as_str()) {
        // A key of the other mode is simply unknown to this account's environment.
        return Err(ApiError::unauthorized(format!(
            "Invalid API Key provided: {}",
            mask(&key)
        )));
    }
    let access = if key.starts_with("sk_") {
        Access::Secret
    } else if key.ends_with("_cls_limited") {
        Access::RestrictedLimited
    } else {
        Access::RestrictedAll
    };
    Ok(Caller { key, access })
}

/// Checks a read permission (`rak_customer_read`); 403 with Stripe's message when it is lacking.
pub fn authorize(caller: &Caller, permission: &str, account_id: &str) -> Result<(), ApiError> {
    if caller.access == Access::RestrictedLimited && LIMITED_LACKS.contains(&permission) {
        return Err(ApiError::forbidden(format!(
            "The provided key '{}' does not have the required permissions for this endpoint on account '{account_id}'. Having the '{permission}' permission would allow this request to continue.",
            caller.masked_key()
        )));
    }
    Ok(())
}

/// Checks a write permission (`rak_customer_write`). The emulator's restricted keys hold read
/// permissions only, so every write with one is a 403 naming the write permission it lacks.
pub fn authorize_write(
    caller: &Caller,
    permission: &str,
    account_id: &str,
) -> Result<(), ApiError> {
    if caller.access == Access::Secret {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "The provided key '{}' does not have the required permissions for this endpoint on account '{account_id}'. Having the '{permission}' permission would allow this request to continue.",
        caller.masked_key()
    )))
}

fn read_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        // Basic auth carries `key:` (the key as user, no password).
        return Some(text.split(':').next().unwrap_or("").to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_prefix_and_last_four() {
        assert_eq!(mask("sk_test_cls_emulator"), "sk_test_********ator");
        assert_eq!(mask("rk_live_abcdef"), "rk_live_**cdef");
        assert_eq!(mask("abc"), "abc");
        assert_eq!(mask("nonsense_key"), "********_key");
    }
}
