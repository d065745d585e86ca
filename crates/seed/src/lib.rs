//! The one way faultline derives the seed of a random stream from the user's seed: attacks
//! (random starts, Square's draws), corruptions (per-sample noise) and training (weight init,
//! shuffles) all call [`derive`], so a stream depends only on the user's seed, the sample's
//! index in the data set and what the stream is for — never on threads, batches or the order in
//! which samples are processed, and changing one use never shifts the numbers another sees.
//!
//! Written out here (FNV-1a and the SplitMix64 finaliser, Steele et al. 2014) so that the
//! numbers a seed produces never change with a dependency upgrade.
#![warn(missing_docs)]

/// FNV-1a (64-bit) of a tag.
pub fn fnv1a(tag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tag.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the stream for sample `index` and purpose `tag` under the user's `seed`:
/// `mix(seed ^ fnv1a(tag) ^ index·φ)` with φ = 0x9e37_79b9_7f4a_7c15 (the golden ratio in 64
/// bits). Streams that are not per sample use `index` 0.
pub fn derive(seed: u64, index: u64, tag: &str) -> u64 {
    mix64(seed ^ fnv1a(tag) ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A counter-based random stream: SplitMix64 (Steele et al. 2014) started at a [`derive`]d
/// seed. Small and fast; for the per-sample draws of training and weak-sample scoring.
#[derive(Debug, Clone)]
pub struct Stream(u64);

impl Stream {
    /// The stream of sample `index` for purpose `tag` under the user's `seed`.
    pub fn new(seed: u64, index: u64, tag: &str) -> Self {
        Stream(derive(seed, index, tag))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    /// Uniform in [0, 1) with 24 bits.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `0..n` (`0` when `n` is 0; modulo bias below 2⁻³² for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Standard normal (Box–Muller, one draw per two uniforms).
    pub fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit().max(1e-7), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_seed_index_and_tag_only() {
        let a = derive(1, 2, "pgd:0");
        assert_eq!(a, derive(1, 2, "pgd:0"));
        assert_ne!(a, derive(2, 2, "pgd:0"));
        assert_ne!(a, derive(1, 3, "pgd:0"));
        assert_ne!(a, derive(1, 2, "pgd:1"));
        // FNV-1a reference values (the empty string is the offset basis).
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn stream_is_splitmix64_from_the_derived_seed() {
        let mut s = Stream::new(1, 2, "t");
        let start = derive(1, 2, "t");
        // SplitMix64: the k-th output mixes start + k·φ.
        assert_eq!(
            s.next_u64(),
            mix64(start.wrapping_add(0x9e37_79b9_7f4a_7c15))
        );
        assert_eq!(
            s.next_u64(),
            mix64(start.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(2)))
        );
        let u: Vec<f32> = (0..1000).map(|_| s.unit()).collect();
        assert!(u.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = u.iter().sum::<f32>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
        assert!((0..100).all(|_| s.below(7) < 7));
    }
}
