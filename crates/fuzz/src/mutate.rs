//! Byte-level mutations of valid seed files, and a seeded generator to drive them.
//!
//! Written by hand because the stable toolchain has no coverage-guided fuzzer in-process
//! (cargo-fuzz and libFuzzer need nightly; AFL needs its own compiler wrapper); the mutations
//! are the classic ones of AFL's havoc stage, plus overwrites with boundary integers of every
//! width and endianness, which is what reaches the length and shape fields of binary headers.

/// The project's seeded stream (SplitMix64), with a coin for rare mutations.
pub struct Rng(faultline_seed::Stream);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(faultline_seed::Stream::new(seed, 0, "fuzz"))
    }

    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Boundary values written over header fields.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    32,
    64,
    127,
    128,
    255,
    256,
    1023,
    1024,
    4096,
    32767,
    32768,
    65535,
    65536,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Applies 1–8 stacked mutations to `data`; `other` is another corpus entry to splice from.
pub fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut Rng, max_len: usize) {
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        if data.is_empty() {
            data.push(rng.next() as u8);
            continue;
        }
        let n = data.len();
        match rng.below(11) {
            // Flip one bit.
            0 => {
                let i = rng.below(n);
                data[i] ^= 1 << rng.below(8);
            }
            // A random byte.
            1 => {
                let i = rng.below(n);
                data[i] = rng.next() as u8;
            }
            // A boundary integer of 1, 2, 4 or 8 bytes, either endianness.
            2 => {
                let width = 1 << rng.below(4);
                if n >= width {
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    let v = if rng.chance(4) { v.wrapping_neg() } else { v };
                    let bytes = if rng.chance(2) {
                        v.to_le_bytes()
                    } else {
                        (v << (8 * (8 - width)) as u32).to_be_bytes()
                    };
                    let i = rng.below(n - width + 1);
                    data[i..i + width].copy_from_slice(&bytes[..width]);
                }
            }
            // Add or subtract a small amount from a byte (length fields off by a little).
            3 => {
                let i = rng.below(n);
                let d = (rng.below(35) as u8).wrapping_add(1);
                data[i] = if rng.chance(2) {
                    data[i].wrapping_add(d)
                } else {
                    data[i].wrapping_sub(d)
                };
            }
            // Delete a range.
            4 => {
                let i = rng.below(n);
                let len = 1 + rng.below((n - i).min(64));
                data.drain(i..i + len);
            }
            // Insert random bytes.
            5 => {
                if n < max_len {
                    let i = rng.below(n + 1);
                    let len = 1 + rng.below(32);
                    let fill: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    data.splice(i..i, fill);
                }
            }
            // Duplicate a range (repeated records, repeated protobuf fields).
            6 => {
                if n < max_len {
                    let i = rng.below(n);
                    let len = 1 + rng.below((n - i).min(256));
                    let copy = data[i..i + len].to_vec();
                    let at = rng.below(n + 1);
                    data.splice(at..at, copy);
                }
            }
            // Truncate.
            7 => {
                let keep = rng.below(n);
                data.truncate(keep);
            }
            // Splice a range of another input in.
            8 => {
                if !other.is_empty() {
                    let j = rng.below(other.len());
                    let len = 1 + rng.below((other.len() - j).min(256));
                    let i = rng.below(n);
                    let end = (i + len).min(n);
                    data.splice(i..end, other[j..j + len].iter().copied());
                }
            }
            // Overwrite a range with one byte value (zeroed or saturated blocks).
            9 => {
                let i = rng.below(n);
                let len = 1 + rng.below((n - i).min(128));
                let v = [0u8, 0xff, 0x80, rng.next() as u8][rng.below(4)];
                data[i..i + len].fill(v);
            }
            // Copy a range within the input.
            _ => {
                let i = rng.below(n);
                let j = rng.below(n);
                let len = 1 + rng.below((n - i.max(j)).min(64));
                data.copy_within(j..j + len, i);
            }
        }
        data.truncate(max_len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        let seed: Vec<u8> = (0..200u8).collect();
        let run = |s| {
            let mut rng = Rng::new(s);
            (0..50)
                .map(|_| {
                    let mut d = seed.clone();
                    mutate(&mut d, &seed, &mut rng, 1 << 16);
                    d
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn mutants_differ_and_respect_the_length_cap() {
        let seed = vec![7u8; 100];
        let mut rng = Rng::new(1);
        let mut changed = 0;
        for _ in 0..1000 {
            let mut d = seed.clone();
            mutate(&mut d, &seed, &mut rng, 150);
            assert!(d.len() <= 150);
            changed += (d != seed) as usize;
        }
        assert!(changed > 900, "{changed}");
    }
}
