//! Stripe-looking object ids (`cus_` + 14 characters, `in_` + 24, …) drawn from the seeded RNG,
//! so the same seed yields the same ids.

use rand::Rng;

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` followed by `len` random alphanumeric characters.
pub fn make<R: Rng + ?Sized>(rng: &mut R, prefix: &str, len: usize) -> String {
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(ALNUM[rng.gen_range(0..ALNUM.len())] as char);
    }
    s
}

/// Length of the random part of an id with this prefix. Stripe uses 14 characters for a few
/// older object types (customers, products, subscription items) and 24 for most others.
pub fn random_len(prefix: &str) -> usize {
    match prefix {
        "cus_" | "prod_" | "si_" | "acct_" => 14,
        _ => 24,
    }
}

/// An id of the usual length for its prefix.
pub fn new_id<R: Rng + ?Sized>(rng: &mut R, prefix: &str) -> String {
    make(rng, prefix, random_len(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ids_have_the_prefix_and_length_and_repeat_with_the_seed() {
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        let id = new_id(&mut a, "cus_");
        assert_eq!(id.len(), 4 + 14);
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(id, new_id(&mut b, "cus_"));
        assert_eq!(new_id(&mut a, "in_").len(), 3 + 24);
    }
}
