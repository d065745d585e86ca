//! Seeded random streams. Every use of randomness (weight init, epoch shuffles, the
//! validation split) draws from its own ChaCha8 stream derived from the user's seed and a tag,
//! so changing one use (say, more epochs) never shifts the numbers another use sees.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The stream for `tag` under `seed`: faultline's one seed derivation
/// ([`faultline_seed::derive`], index 0: these streams are not per sample).
pub(crate) fn stream(seed: u64, tag: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(faultline_seed::derive(seed, 0, tag))
}

/// Uniform in [0, 1) with 24 random bits (every value exactly representable in f32).
pub(crate) fn uniform(rng: &mut ChaCha8Rng) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// Uniform integer in `0..bound` by the multiply-high method (bias below bound / 2^64).
fn below(rng: &mut ChaCha8Rng, bound: usize) -> usize {
    ((rng.next_u64() as u128 * bound as u128) >> 64) as usize
}

/// Fisher–Yates shuffle.
pub(crate) fn shuffle(rng: &mut ChaCha8Rng, items: &mut [usize]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// A seeded permutation of `0..n`.
pub(crate) fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    shuffle(rng, &mut p);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_depends_on_tag() {
        let a = permutation(&mut stream(3, "x"), 100);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_eq!(a, permutation(&mut stream(3, "x"), 100));
        assert_ne!(a, permutation(&mut stream(3, "y"), 100));
        assert_ne!(a, permutation(&mut stream(4, "x"), 100));
    }

    #[test]
    fn uniform_stays_in_unit_interval() {
        let mut r = stream(0, "u");
        let v: Vec<f32> = (0..10_000).map(|_| uniform(&mut r)).collect();
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
