//! Stripe webhook signatures, verified exactly as Stripe specifies (pure: no I/O, no clock).
//!
//! Stripe signs each delivery with the endpoint's secret (`whsec_…`):
//! `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where each `v1` is
//! `hex(HMAC-SHA256(key = secret, message = "<t>.<raw body>"))`. Several `v1` values appear
//! while a secret is being rolled (one per secret still valid); other schemes (`v0`) are
//! ignored. A delivery is genuine when one `v1` matches (compared in constant time) and `t` is
//! within the tolerance (300 s by default) of the receiver's clock, which bounds how long a
//! captured delivery can be replayed; [`ReplayGuard`] refuses the same signature twice within
//! that window.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Stripe's default tolerance between a signature's `t` and the receiver's clock.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// A webhook endpoint secret (`whsec_…`). Never shown: `Debug` masks it.
#[derive(Clone)]
pub struct WebhookSecret(SecretString);

/// Why a webhook secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Empty or not starting with `whsec_`.
    #[error("a webhook signing secret starts with `whsec_` (Stripe Dashboard → Developers → Webhooks → the endpoint → Signing secret)")]
    Malformed,
    /// Starts right but holds characters a signing secret never has.
    #[error("the webhook signing secret holds characters Stripe's secrets never have (spaces, control characters or non-ASCII): copy it again from Stripe Dashboard → Developers → Webhooks → the endpoint → Signing secret, as plain text")]
    Characters,
}

impl WebhookSecret {
    /// Parses a secret at the boundary.
    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        let raw = raw.trim();
        match raw.strip_prefix("whsec_") {
            Some(rest) if rest.chars().all(|c| c.is_ascii_graphic()) && !rest.is_empty() => {
                Ok(WebhookSecret(SecretString::from(raw.to_string())))
            }
            Some(rest) if !rest.is_empty() => Err(SecretError::Characters),
            _ => Err(SecretError::Malformed),
        }
    }

    /// The HMAC keyed with the secret. HMAC takes keys of any length, so this is always
    /// `Some`; a `None` is treated as "nothing verifies" rather than a panic.
    fn mac(&self) -> Option<Hmac<Sha256>> {
        Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes()).ok()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(whsec_****)")
    }
}

/// Why a delivery was refused. Messages say what was wrong, never the secret or a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("no Stripe-Signature header: deliveries must come from Stripe, signed")]
    Missing,
    /// The header is not `t=…,v1=…`.
    #[error("the Stripe-Signature header is malformed ({0})")]
    Malformed(&'static str),
    /// No `v1` value matches the body.
    #[error("no v1 signature matches this body and the configured webhook secret (wrong secret, or the body was altered)")]
    Mismatch,
    /// `t` is further from the receiver's clock than the tolerance.
    #[error("the signature's timestamp is {age} s away from this server's clock (tolerance {tolerance} s): a stale or replayed delivery, or a wrong clock")]
    OutsideTolerance {
        /// `now - t`, in seconds (negative: from the future).
        age: i64,
        /// The tolerance, in seconds.
        tolerance: i64,
    },
    /// The same signature was already accepted within the tolerance window.
    #[error("this exact signed delivery was already received: a replay")]
    Replayed,
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// `t`: unix seconds the signature was made.
    pub timestamp: i64,
    /// Every `v1` signature, decoded from hex (malformed ones are dropped).
    pub v1: Vec<Vec<u8>>,
}

/// Parses a `Stripe-Signature` header value.
pub fn parse_header(raw: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in raw.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => {
                timestamp = Some(
                    v.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a unix time"))?,
                )
            }
            "v1" => {
                if let Ok(bytes) = hex::decode(v) {
                    v1.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t="))?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    Ok(SignatureHeader { timestamp, v1 })
}

/// A delivery whose signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signature's `t`.
    pub timestamp: i64,
    /// The `v1` value that matched (for replay detection).
    pub signature: Vec<u8>,
}

/// Verifies a delivery: `header` is the `Stripe-Signature` value (`None` when absent), `body`
/// the raw request body (before any JSON parsing: one changed byte breaks the signature), `now`
/// the receiver's clock in unix seconds.
pub fn verify(
    body: &[u8],
    header: Option<&str>,
    secret: &WebhookSecret,
    now: i64,
    tolerance: i64,
) -> Result<Verified, SignatureError> {
    let header = parse_header(header.ok_or(SignatureError::Missing)?)?;
    let mut mac = secret.mac().ok_or(SignatureError::Mismatch)?;
    mac.update(header.timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let matched = header
        .v1
        .iter()
        // `verify_slice` compares in constant time.
        .find(|sig| mac.clone().verify_slice(sig).is_ok())
        .ok_or(SignatureError::Mismatch)?;
    // `t` is whatever the sender wrote: `now - t` can overflow i64 (a panic in debug builds;
    // in release it wrapped, and t = now + i64::MIN came out as an age of i64::MIN, whose
    // `abs()` stays negative: accepted). Found by fuzzing; computed in i128 instead.
    let age = i128::from(now) - i128::from(header.timestamp);
    if age.abs() > i128::from(tolerance) {
        let age = i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX });
        return Err(SignatureError::OutsideTolerance { age, tolerance });
    }
    Ok(Verified {
        timestamp: header.timestamp,
        signature: matched.clone(),
    })
}

/// Signs a body as Stripe does (for tests and tools): the full header value `t=…,v1=…`.
pub fn sign(body: &[u8], secret: &WebhookSecret, timestamp: i64) -> String {
    let signature = secret.mac().map(|mut mac| {
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    });
    format!("t={timestamp},v1={}", signature.unwrap_or_default())
}

/// Remembers accepted signatures for the tolerance window, to refuse exact replays. Stripe
/// signs every delivery attempt afresh (new `t`), so a genuine retry is never refused; it is
/// deduplicated by event id further on instead.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: HashMap<Vec<u8>, i64>,
}

impl ReplayGuard {
    /// Refuses `v` when it was already accepted; forgets signatures older than the window.
    pub fn check(&self, v: &Verified, now: i64, tolerance: i64) -> Result<(), SignatureError> {
        // Entries older than the window no longer count (the timestamp check refuses
        // their deliveries anyway); `accept` prunes them.
        if self
            .seen
            .get(&v.signature)
            .is_some_and(|t| now.saturating_sub(*t) <= tolerance)
        {
            return Err(SignatureError::Replayed);
        }
        Ok(())
    }

    /// Remembers `v` as accepted. Called once its event is stored: a delivery that failed
    /// (database down → 500) may be retried with the same signature.
    pub fn accept(&mut self, v: &Verified, now: i64, tolerance: i64) {
        self.seen.retain(|_, t| now.saturating_sub(*t) <= tolerance);
        self.seen.insert(v.signature.clone(), v.timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        WebhookSecret::parse("whsec_test_secret").expect("valid")
    }

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event"}"#;

    #[test]
    fn a_signature_made_as_stripe_does_verifies() {
        // Reference value computed independently: HMAC-SHA256("whsec_test_secret",
        // "1700000000.{\"id\":\"evt_1\",\"object\":\"event\"}").
        let header = sign(BODY, &secret(), NOW);
        assert!(header.starts_with("t=1700000000,v1="));
        let v = verify(BODY, Some(&header), &secret(), NOW + 10, 300).expect("genuine");
        assert_eq!(v.timestamp, NOW);
    }

    #[test]
    fn one_changed_byte_or_another_secret_is_a_mismatch() {
        let header = sign(BODY, &secret(), NOW);
        let mut body = BODY.to_vec();
        body[2] = b'X';
        assert_eq!(
            verify(&body, Some(&header), &secret(), NOW, 300),
            Err(SignatureError::Mismatch)
        );
        let other = WebhookSecret::parse("whsec_other").expect("valid");
        assert_eq!(
            verify(BODY, Some(&header), &other, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = sign(BODY, &secret(), NOW);
        assert!(matches!(
            verify(BODY, Some(&header), &secret(), NOW + 301, 300),
            Err(SignatureError::OutsideTolerance { age: 301, .. })
        ));
        assert!(matches!(
            verify(BODY, Some(&header), &secret(), NOW - 301, 300),
            Err(SignatureError::OutsideTolerance { age: -301, .. })
        ));
        assert!(verify(BODY, Some(&header), &secret(), NOW + 300, 300).is_ok());
    }

    /// Regression (found by fuzzing): a genuine signature with an extreme `t` overflowed
    /// `now - t`; one with t = now + i64::MIN was even accepted in release builds.
    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        for t in [
            i64::MIN,
            i64::MIN + 1,
            NOW.wrapping_add(i64::MIN),
            -1,
            i64::MAX,
        ] {
            let header = sign(BODY, &secret(), t);
            let got = verify(BODY, Some(&header), &secret(), NOW, 300);
            assert!(
                matches!(got, Err(SignatureError::OutsideTolerance { .. })),
                "t={t}: {got:?}"
            );
        }
        let header = sign(BODY, &secret(), i64::MIN);
        assert_eq!(
            verify(BODY, Some(&header), &secret(), i64::MAX, 300),
            Err(SignatureError::OutsideTolerance {
                age: i64::MAX,
                tolerance: 300
            })
        );
    }

    #[test]
    fn any_v1_of_a_rolling_secret_may_match() {
        let good = sign(BODY, &secret(), NOW);
        let sig = good.split("v1=").nth(1).expect("v1");
        let header = format!("t={NOW},v1={},v0=abc,v1={sig}", "00".repeat(32));
        assert!(verify(BODY, Some(&header), &secret(), NOW, 300).is_ok());
    }

    #[test]
    fn malformed_and_missing_headers_are_refused() {
        assert_eq!(
            verify(BODY, None, &secret(), NOW, 300),
            Err(SignatureError::Missing)
        );
        for bad in ["", "v1=00", "t=abc,v1=00", "t=1", "t=1,v1=zz", "garbage"] {
            assert!(
                matches!(
                    verify(BODY, Some(bad), &secret(), NOW, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_parsed_at_the_boundary_and_never_shown() {
        assert!(WebhookSecret::parse("sk_test_123").is_err());
        assert!(WebhookSecret::parse("whsec_").is_err());
        assert!(WebhookSecret::parse("whsec_a b").is_err());
        for bad in [
            "whsec_abc\u{1}",
            "whsec_abc\u{7f}",
            "whsec_ab\u{e9}c",
            "whsec_a\tb",
        ] {
            assert_eq!(
                WebhookSecret::parse(bad).err(),
                Some(SecretError::Characters),
                "{bad:?}"
            );
        }
        assert!(WebhookSecret::parse(" whsec_padded0123\n").is_ok());
        assert_eq!(format!("{:?}", secret()), "WebhookSecret(whsec_****)");
    }

    /// The secret is held in a type that zeroes it on drop (stops compiling otherwise).
    #[test]
    fn the_secret_is_held_where_it_is_zeroed_on_drop() {
        fn zeroed_on_drop<T: zeroize::ZeroizeOnDrop + ?Sized>(_: &T) {}
        zeroed_on_drop(&secret().0);
    }

    #[test]
    fn the_same_signed_delivery_is_refused_the_second_time() {
        let mut guard = ReplayGuard::default();
        let header = sign(BODY, &secret(), NOW);
        let v = verify(BODY, Some(&header), &secret(), NOW, 300).expect("genuine");
        assert_eq!(guard.check(&v, NOW, 300), Ok(()));
        assert_eq!(
            guard.check(&v, NOW, 300),
            Ok(()),
            "not accepted yet: may be retried"
        );
        guard.accept(&v, NOW, 300);
        assert_eq!(guard.check(&v, NOW + 1, 300), Err(SignatureError::Replayed));
        // A fresh attempt of the same event (new t) is not a replay.
        let again = verify(
            BODY,
            Some(&sign(BODY, &secret(), NOW + 5)),
            &secret(),
            NOW + 5,
            300,
        )
        .expect("genuine");
        assert_eq!(guard.check(&again, NOW + 5, 300), Ok(()));
        // Past the window, the old entry is forgotten (the timestamp check refuses it anyway).
        guard.check(&v, NOW + 1000, 300).expect("forgotten");
    }

    proptest::proptest! {
        #[test]
        fn verification_never_panics_on_arbitrary_headers(header in ".{0,200}", body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = verify(&body, Some(&header), &secret(), NOW, 300);
        }
    }
}
