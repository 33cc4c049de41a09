//! `ApiKey::parse`: whatever is pasted, it never panics, an accepted key is exactly what was
//! pasted and classified by its prefix, its masked forms never contain the key's body, and an
//! error never repeats what was pasted.
#![no_main]

use cls_stripe::{ApiKey, KeyError, KeyKind, Mode};
use libfuzzer_sys::fuzz_target;

/// Every message `KeyError` can show: a pasted text that is part of one of them may
/// legitimately appear in it.
fn all_messages() -> String {
    [
        KeyError::Empty,
        KeyError::WhitespacePadded,
        KeyError::ControlCharacters,
        KeyError::Publishable,
        KeyError::UnknownPrefix,
        KeyError::Truncated,
        KeyError::InvalidCharacter,
    ]
    .iter()
    .map(ToString::to_string)
    .collect::<Vec<_>>()
    .join("\n")
}

fuzz_target!(|raw: &str| {
    match ApiKey::parse(raw) {
        Ok(key) => {
            assert_eq!(
                key.expose_secret(),
                raw,
                "the key is kept exactly as pasted"
            );
            let prefix = match (key.kind(), key.mode()) {
                (KeyKind::Restricted, Mode::Test) => "rk_test_",
                (KeyKind::Restricted, Mode::Live) => "rk_live_",
                (KeyKind::Secret, Mode::Test) => "sk_test_",
                (KeyKind::Secret, Mode::Live) => "sk_live_",
            };
            assert_eq!(key.prefix(), prefix);
            let body = raw
                .strip_prefix(prefix)
                .expect("kind and mode come from the prefix");
            assert!(body.len() >= cls_stripe::key::MIN_BODY_LEN);
            assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            let masked = key.masked();
            assert_eq!(masked, format!("{prefix}…{}", &body[body.len() - 4..]));
            for shown in [
                masked,
                key.to_string(),
                format!("{key:?}"),
                format!("{key:#?}"),
                key.warning().unwrap_or_default(),
            ] {
                assert!(!shown.contains(body), "{shown:?} shows the key's body");
            }
            // Parsing what was accepted gives the same key again.
            let again = ApiKey::parse(key.expose_secret()).expect("an accepted key parses again");
            assert_eq!((again.kind(), again.mode()), (key.kind(), key.mode()));
        }
        Err(err) => {
            let msg = err.to_string();
            if raw.trim().len() >= 8 && !all_messages().contains(raw.trim()) {
                assert!(!msg.contains(raw.trim()), "{msg:?} repeats the pasted text");
            }
            assert!(
                msg.contains("paste") || msg.contains("copy"),
                "{msg:?} says what to do"
            );
            if raw.starts_with("pk_") && raw.trim() == raw && !raw.chars().any(char::is_control) {
                assert!(
                    matches!(err, KeyError::Publishable | KeyError::InvalidCharacter),
                    "{raw:?}: {err:?}"
                );
            }
        }
    }
});
