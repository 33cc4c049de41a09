//! The `Stripe-Signature` header: parsing any header never panics; a delivery verifies only
//! when one of its `v1` values is the real HMAC of `t.body` and `t` is within the tolerance;
//! what `sign` produces verifies (at any `t`), and stops verifying when one byte of the body
//! changes.
#![no_main]

use cls_server::webhook::{parse_header, sign, verify, SignatureError, WebhookSecret};
use libfuzzer_sys::fuzz_target;

const TOLERANCE: i64 = 300;
/// A receiver's clock: 2026-03-11T03:30:00Z.
const RECEIVER_NOW: i64 = 1_773_199_800;

fuzz_target!(|input: (&str, &[u8], i64, i16)| {
    let (header, body, t, offset) = input;
    let Ok(secret) = WebhookSecret::parse("whsec_fuzzing_secret") else {
        panic!("the fixed secret parses");
    };

    // Any header: parsed or refused as malformed, never a panic; verified only when genuine.
    if let Ok(parsed) = parse_header(header) {
        assert!(!parsed.v1.is_empty(), "a parsed header has a v1 signature");
        assert!(header.contains("t="));
        let now = parsed.timestamp.saturating_add(i64::from(offset));
        match verify(body, Some(header), &secret, now, TOLERANCE) {
            Ok(v) => {
                // Only possible when the header carries the real signature.
                let real = sign(body, &secret, v.timestamp);
                assert!(
                    real.ends_with(&hex_of(&v.signature)),
                    "{header:?} verified without the secret"
                );
                assert!(i64::from(offset).abs() <= TOLERANCE);
            }
            Err(SignatureError::Missing | SignatureError::Replayed) => {
                panic!("a header was given and no replay guard is used")
            }
            Err(_) => {}
        }
    } else {
        assert!(matches!(
            verify(body, Some(header), &secret, t, TOLERANCE),
            Err(SignatureError::Malformed(_))
        ));
    }

    // Round trip: a signature made at any `t` verifies within the tolerance and only then.
    let signed = sign(body, &secret, t);
    let now = t.saturating_add(i64::from(offset));
    let within = (i128::from(now) - i128::from(t)).abs() <= i128::from(TOLERANCE);
    match verify(body, Some(&signed), &secret, now, TOLERANCE) {
        Ok(v) => {
            assert!(within, "t={t} now={now} accepted outside the tolerance");
            assert_eq!(v.timestamp, t);
        }
        Err(SignatureError::OutsideTolerance { .. }) => assert!(!within, "t={t} now={now}"),
        Err(e) => panic!("a fresh signature failed: {e}"),
    }
    // The receiver's clock is its own, whatever `t` a sender signs with: accepted only
    // within the tolerance, never an overflow.
    let clock = RECEIVER_NOW.saturating_add(i64::from(offset));
    let near = (i128::from(clock) - i128::from(t)).abs() <= i128::from(TOLERANCE);
    match verify(body, Some(&signed), &secret, clock, TOLERANCE) {
        Ok(_) => assert!(near, "t={t} accepted at {clock}"),
        Err(SignatureError::OutsideTolerance { .. }) => assert!(!near, "t={t} refused at {clock}"),
        Err(e) => panic!("a fresh signature failed: {e}"),
    }
    // Several v1 values (a secret being rolled): the genuine one still counts.
    let rolled = format!("{signed},v1={},v0=00", "ab".repeat(32));
    if within {
        assert!(verify(body, Some(&rolled), &secret, now, TOLERANCE).is_ok());
    }
    // One more byte of body: never verifies.
    let mut tampered = body.to_vec();
    tampered.push(b'x');
    assert_eq!(
        verify(&tampered, Some(&signed), &secret, t, TOLERANCE),
        Err(SignatureError::Mismatch)
    );
});

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
