//! Stripe API keys, parsed at the boundary.
//!
//! An [`ApiKey`] can only hold a well-formed restricted (`rk_…`) or secret (`sk_…`) key. Its kind
//! and mode (test/live) come from the prefix alone, the way Stripe itself tells them apart. The
//! key text lives in a [`SecretString`] (zeroed on drop) and leaves it only through
//! [`ApiKey::expose_secret`], which is called where a request is built or the key is encrypted;
//! everything else (`Debug`, `Display`, errors) sees [`ApiKey::masked`].
//!
//! Parse errors ([`KeyError`]) say what to paste instead and never quote the rejected text:
//! a near-miss is still very likely a real secret.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Fewest characters accepted after the `rk_test_`-style prefix.
///
/// Real keys carry ~100 characters after the prefix, but the project's emulator hands out short,
/// readable keys (`rk_test_cls_limited` has an 11-character body), so the floor only catches
/// obviously cut-off pastes such as `sk_live_` or `rk_test_51Hx`.
pub const MIN_BODY_LEN: usize = 10;

/// Where users find keys; repeated in every message that asks for another key.
const WHERE_KEYS_ARE: &str = "Stripe Dashboard → Developers → API keys";

/// Restricted or secret key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// `rk_…`: only the permissions chosen when the key was created. Recommended.
    Restricted,
    /// `sk_…`: full access to the account, writes included.
    Secret,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Restricted => "restricted",
            KeyKind::Secret => "secret",
        })
    }
}

/// Test mode (sandbox data) or live mode (real money).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `*_test_…` keys; objects carry `livemode: false`.
    Test,
    /// `*_live_…` keys; objects carry `livemode: true`.
    Live,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Test => "test",
            Mode::Live => "live",
        })
    }
}

/// Why a pasted text is not a usable Stripe API key. No variant holds the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing was given.
    #[error("no Stripe API key was given: paste a restricted key (rk_test_… or rk_live_…) from {WHERE_KEYS_ARE}")]
    Empty,
    /// Spaces, tabs or line breaks before or after the key (a common copy-paste accident).
    #[error("the Stripe API key has spaces or line breaks around it: paste the key alone, with nothing before or after it")]
    WhitespacePadded,
    /// Control characters inside the key (terminal escape codes, an embedded line break).
    #[error("the Stripe API key contains control characters (such as a line break or a terminal escape code): copy the key again from {WHERE_KEYS_ARE} and paste it as plain text")]
    ControlCharacters,
    /// A publishable key, which only works in browsers and apps.
    #[error("publishable keys cannot read account data; paste a restricted key (rk_…) with read permissions, or a secret key (sk_…), from {WHERE_KEYS_ARE}")]
    Publishable,
    /// A prefix other than `rk_test_`, `rk_live_`, `sk_test_`, `sk_live_`.
    #[error("this is not a Stripe API key (keys start with rk_test_, rk_live_, sk_test_ or sk_live_; webhook secrets (whsec_…) and account ids (acct_…) are something else): paste a restricted key (rk_…) from {WHERE_KEYS_ARE}")]
    UnknownPrefix,
    /// The part after the prefix is too short to be a whole key.
    #[error("the Stripe API key is too short and looks cut off: copy the whole key again from {WHERE_KEYS_ARE} (use the copy button; keys are about 100 characters long)")]
    Truncated,
    /// A character Stripe never uses in keys (quotes, spaces, punctuation, non-ASCII letters).
    #[error("the Stripe API key contains characters Stripe keys never have (only letters, digits and _ are used; quotes or spaces may have been copied along): paste the key alone from {WHERE_KEYS_ARE}")]
    InvalidCharacter,
}

/// A well-formed Stripe restricted or secret key.
///
/// `Debug` and `Display` print [`ApiKey::masked`]; the key text is zeroed when the last clone
/// is dropped.
#[derive(Clone)]
pub struct ApiKey {
    secret: SecretString,
    kind: KeyKind,
    mode: Mode,
}

impl ApiKey {
    /// Parses a pasted key. Nothing is trimmed silently: padding is reported so that a key
    /// stored with a trailing newline gets fixed at its source.
    pub fn parse(raw: &str) -> Result<ApiKey, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(KeyError::Empty);
        }
        if trimmed.len() != raw.len() {
            return Err(KeyError::WhitespacePadded);
        }
        if raw.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacters);
        }
        if raw.starts_with(['"', '\'', '`']) || raw.ends_with(['"', '\'', '`']) {
            // Copied out of a JSON or shell snippet along with its quotes.
            return Err(KeyError::InvalidCharacter);
        }
        if raw.starts_with("pk_") {
            return Err(KeyError::Publishable);
        }
        let (kind, rest) = if let Some(rest) = raw.strip_prefix("rk_") {
            (KeyKind::Restricted, rest)
        } else if let Some(rest) = raw.strip_prefix("sk_") {
            (KeyKind::Secret, rest)
        } else {
            return Err(KeyError::UnknownPrefix);
        };
        let (mode, body) = if let Some(body) = rest.strip_prefix("test_") {
            (Mode::Test, body)
        } else if let Some(body) = rest.strip_prefix("live_") {
            (Mode::Live, body)
        } else {
            return Err(KeyError::UnknownPrefix);
        };
        if !body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(KeyError::InvalidCharacter);
        }
        if body.len() < MIN_BODY_LEN {
            return Err(KeyError::Truncated);
        }
        Ok(ApiKey {
            secret: SecretString::from(raw),
            kind,
            mode,
        })
    }

    /// Restricted or secret.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Test or live.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The prefix, an ellipsis and the last four characters: `rk_test_…abcd`.
    ///
    /// Four characters is what Stripe's own Dashboard and error messages show, so users can
    /// match the two.
    pub fn masked(&self) -> String {
        let raw = self.secret.expose_secret();
        // The body is ASCII and at least MIN_BODY_LEN long (checked by `parse`), so byte
        // slicing is on character boundaries.
        let tail = &raw[raw.len().saturating_sub(4)..];
        format!("{}…{tail}", self.prefix())
    }

    /// `rk_test_`, `sk_live_`, …
    pub fn prefix(&self) -> &'static str {
        match (self.kind, self.mode) {
            (KeyKind::Restricted, Mode::Test) => "rk_test_",
            (KeyKind::Restricted, Mode::Live) => "rk_live_",
            (KeyKind::Secret, Mode::Test) => "sk_test_",
            (KeyKind::Secret, Mode::Live) => "sk_live_",
        }
    }

    /// A warning to show when the key grants more than Codeless Sync needs (secret keys);
    /// louder for live mode, where the key can move real money.
    pub fn warning(&self) -> Option<String> {
        match (self.kind, self.mode) {
            (KeyKind::Restricted, _) => None,
            (KeyKind::Secret, Mode::Test) => Some(format!(
                "{} is a secret key: it grants full read and write access to your test-mode data. \
                 Codeless Sync only reads, so a restricted key is enough: create one in \
                 {WHERE_KEYS_ARE} → Create restricted key, give it Read on the data types you sync, \
                 and use it instead.",
                self.masked()
            )),
            (KeyKind::Secret, Mode::Live) => Some(format!(
                "WARNING: {} is a LIVE secret key: it can move real money and change anything in your \
                 Stripe account. Codeless Sync only reads, so replace it with a restricted key: create \
                 one in {WHERE_KEYS_ARE} → Create restricted key, give it Read on the data types you \
                 sync, and keep this secret key out of configuration files.",
                self.masked()
            )),
        }
    }

    /// The key text. Call only where a request is built or the key is encrypted for storage.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &self.masked())
            .field("kind", &self.kind)
            .field("mode", &self.mode)
            .finish()
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl std::str::FromStr for ApiKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApiKey::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL_LOOKING: &str =
        "rk_test_51HxYzAbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefGHIJKLmnopQRSTuvwxYZ00abcd";

    fn parse(raw: &str) -> Result<ApiKey, KeyError> {
        ApiKey::parse(raw)
    }

    #[test]
    fn accepts_every_kind_and_mode() {
        let cases = [
            ("rk_test_cls_emulator", KeyKind::Restricted, Mode::Test),
            ("rk_test_cls_limited", KeyKind::Restricted, Mode::Test),
            ("sk_test_cls_emulator", KeyKind::Secret, Mode::Test),
            ("rk_live_cls_emulator", KeyKind::Restricted, Mode::Live),
            ("rk_live_cls_limited", KeyKind::Restricted, Mode::Live),
            ("sk_live_cls_emulator", KeyKind::Secret, Mode::Live),
            (REAL_LOOKING, KeyKind::Restricted, Mode::Test),
            ("sk_live_0123456789", KeyKind::Secret, Mode::Live),
        ];
        for (raw, kind, mode) in cases {
            let key = parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!((key.kind(), key.mode()), (kind, mode), "{raw}");
            assert_eq!(key.expose_secret(), raw);
        }
    }

    #[test]
    fn rejects_with_the_right_reason() {
        let cases: &[(&str, KeyError)] = &[
            ("", KeyError::Empty),
            ("   ", KeyError::Empty),
            ("\n", KeyError::Empty),
            (" rk_test_cls_emulator", KeyError::WhitespacePadded),
            ("rk_test_cls_emulator\n", KeyError::WhitespacePadded),
            ("rk_test_cls_emulator\r\n", KeyError::WhitespacePadded),
            ("\trk_test_cls_emulator", KeyError::WhitespacePadded),
            ("rk_test_cls\u{1b}emulator", KeyError::ControlCharacters),
            ("rk_test_cls\nemulator", KeyError::ControlCharacters),
            ("pk_test_cls_emulator", KeyError::Publishable),
            ("pk_live_51HxYzAbCdEf", KeyError::Publishable),
            ("whsec_0123456789abcdef", KeyError::UnknownPrefix),
            ("acct_0123456789", KeyError::UnknownPrefix),
            ("sk_0123456789abcdef", KeyError::UnknownPrefix),
            ("rk_prod_0123456789abcdef", KeyError::UnknownPrefix),
            ("RK_TEST_0123456789abcdef", KeyError::UnknownPrefix),
            ("\"rk_test_cls_emulator\"", KeyError::InvalidCharacter),
            ("'rk_test_cls_emulator'", KeyError::InvalidCharacter),
            ("Bearer rk_test_cls_emulator", KeyError::UnknownPrefix),
            ("rk_test_", KeyError::Truncated),
            ("sk_live_", KeyError::Truncated),
            ("rk_test_51Hx", KeyError::Truncated),
            ("sk_test_012345678", KeyError::Truncated),
            ("rk_test_cls emulator", KeyError::InvalidCharacter),
            ("rk_test_cls-emulator", KeyError::InvalidCharacter),
            ("rk_test_cls_emulator\"", KeyError::InvalidCharacter),
            ("rk_test_clś_emulator", KeyError::InvalidCharacter),
        ];
        for (raw, expected) in cases {
            match parse(raw) {
                Ok(key) => panic!("{raw:?} was accepted as {key}"),
                Err(err) => assert_eq!(&err, expected, "{raw:?}"),
            }
        }
    }

    #[test]
    fn error_messages_say_what_to_paste_and_never_quote_the_key() {
        let secretish = "sk_live_cls_secret_material_abcdefgh";
        let inputs = [
            String::new(),
            format!(" {secretish}"),
            format!("pk_live_{}", &secretish[8..]),
            format!("xx_live_{}", &secretish[8..]),
            "sk_live_short".to_string(),
            format!("{secretish}!"),
            format!("sk_live_cls\u{7}{}", &secretish[11..]),
        ];
        for raw in inputs {
            let err = match parse(&raw) {
                Ok(_) => panic!("{raw:?} accepted"),
                Err(err) => err,
            };
            let msg = err.to_string();
            assert!(!msg.contains("secret_material"), "{msg}");
            assert!(!msg.contains("abcdefgh"), "{msg}");
            assert!(msg.contains("paste") || msg.contains("copy"), "{msg}");
        }
        assert!(KeyError::Publishable.to_string().starts_with(
            "publishable keys cannot read account data; paste a restricted key (rk_…)"
        ));
    }

    #[test]
    fn masked_shows_prefix_and_last_four() {
        let key = parse("rk_test_cls_emulator").expect("valid");
        assert_eq!(key.masked(), "rk_test_…ator");
        let key = parse(REAL_LOOKING).expect("valid");
        assert_eq!(key.masked(), "rk_test_…abcd");
        let key = parse("sk_live_0123456789").expect("valid");
        assert_eq!(key.masked(), "sk_live_…6789");
    }

    #[test]
    fn debug_and_display_never_reveal_the_key() {
        let key = parse(REAL_LOOKING).expect("valid");
        for shown in [
            format!("{key}"),
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{:?}", Some(key.clone())),
        ] {
            assert!(!shown.contains(&REAL_LOOKING[8..20]), "{shown}");
            assert!(shown.contains("rk_test_…abcd"), "{shown}");
        }
    }

    #[test]
    fn secret_keys_get_a_warning_louder_in_live_mode() {
        let restricted = parse("rk_live_cls_emulator").expect("valid");
        assert_eq!(restricted.warning(), None);

        let test = parse("sk_test_cls_emulator").expect("valid");
        let warning = test.warning().expect("secret key warns");
        assert!(warning.contains("restricted key"), "{warning}");
        assert!(!warning.contains("cls_emulator"), "{warning}");

        let live = parse("sk_live_cls_emulator").expect("valid");
        let loud = live.warning().expect("secret key warns");
        assert!(loud.starts_with("WARNING"), "{loud}");
        assert!(loud.contains("LIVE"), "{loud}");
        assert!(loud.contains("restricted key"), "{loud}");
        assert!(!loud.contains("cls_emulator"), "{loud}");
    }

    #[test]
    fn displays_kind_and_mode_in_lowercase() {
        assert_eq!(KeyKind::Restricted.to_string(), "restricted");
        assert_eq!(KeyKind::Secret.to_string(), "secret");
        assert_eq!(Mode::Test.to_string(), "test");
        assert_eq!(Mode::Live.to_string(), "live");
    }

    /// Only types that zero their memory on drop may hold the key text: this stops compiling
    /// if the field becomes a plain `String`. (Reading freed memory to watch it being zeroed
    /// would take `unsafe`, which the workspace forbids; `secrecy` tests the zeroing itself.)
    #[test]
    fn the_key_text_is_held_where_it_is_zeroed_on_drop() {
        fn zeroed_on_drop<T: zeroize::ZeroizeOnDrop + ?Sized>(_: &T) {}
        let key = parse(REAL_LOOKING).expect("valid");
        zeroed_on_drop(&key.secret);
        let clone = key.clone();
        drop(key);
        assert_eq!(clone.expose_secret(), REAL_LOOKING, "clones own their copy");
    }
}
