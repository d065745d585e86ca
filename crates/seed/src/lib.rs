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
}
