//! `c (+)= a · b` for products of few rows (`m ≤ MAX_ROWS`) on AVX-512, without packing: a
//! classifier's fully connected layers in an attack (8–16 rows forward, 9 class seeds × 8
//! rows backward on FAB's LeNet-5) and a few-channel convolution's `Wᵀ·dY`.
//!
//! Why it is hand-written: the gemm crate packs its operands into panels and runs a microkernel
//! shaped for large products; with 8–72 rows it ran LeNet-5's 3136 → 200 layer at 22 GMAC/s
//! forward (8 × 200 × 3136) and 37–42 GMAC/s backward (72 × 3136 × 200), one thread, Zen 4
//! (`cargo bench -p faultline-matmul --bench skinny`), about half of what the engine's direct
//! convolution kernel reaches with the same register tile. Here `a`'s elements are broadcast
//! straight from memory (any strides) and `b`'s rows are read as vectors where they lie, so
//! nothing is copied.
//!
//! What it computes: every output is one chain of fused multiply-adds in `k` order, starting
//! from `c` (accumulating) or zero, whatever the split over threads or the blocking, so the
//! result does not depend on `n`, on column blocks or on the thread count.

use crate::View;

/// Rows per register tile, and vectors of 16 columns: 8 × 3 = 24 accumulators of the 32
/// registers, the rest for the 3 row vectors of `b` and a broadcast.
const MR: usize = 8;
const NV: usize = 3;
const L: usize = 16;
/// Rows of `b` per block: a tile's `KC × 48` floats of `b` (48 KiB) stay in L1/L2 while every
/// row tile of `a` passes over them.
const KC: usize = 256;

/// The most rows this kernel takes (above, the gemm crate's packing pays for itself).
pub const MAX_ROWS: usize = 96;

/// Whether the kernel runs here and takes this product: few rows, `b` row-major (unit column
/// stride). It depends neither on `n` nor on the operands' values, so a product split into
/// column blocks takes the same route in every block.
pub(crate) fn applies(m: usize, b: &View) -> bool {
    m <= MAX_ROWS && b.cs == 1 && available()
}

/// Whether this CPU has AVX-512 (F).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `c` as a pointer shared by the column-block tasks (each writes its own columns).
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the tasks that share it write disjoint columns.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `c[m × n] (+)= a[m × k] · b[k × n]` (`b.cs == 1`, bounds checked by the caller, `k > 0`).
/// `parallel` splits the column tiles over the current rayon pool.
///
/// # Safety
/// The views and `c` (row stride `c_rs ≥ n`) must hold every element the product reaches,
/// `c` must not alias `a` or `b`, and [`available`] must be true.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    parallel: bool,
) {
    let tiles = n.div_ceil(NV * L);
    let out = Out(c);
    let run = |t: usize| {
        let j0 = t * NV * L;
        let w = (n - j0).min(NV * L);
        // SAFETY: as for the call; tile `t` writes columns `j0..j0 + w` only.
        unsafe { column_tile(m, w, k, out.get().add(j0), c_rs, accumulate, a, b, j0) };
    };
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && tiles > 1 && m * n * k >= 1 << 20 {
        use rayon::prelude::*;
        (0..tiles).into_par_iter().for_each(run);
    } else {
        (0..tiles).for_each(run);
    }
}

/// Columns `j0..j0 + w` (`w ≤ 48`) of the product, `c` pointing at column `j0` of row 0.
#[allow(clippy::too_many_arguments)]
unsafe fn column_tile(
    m: usize,
    w: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    j0: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        const { assert!(NV == 3) };
        let nv = w.div_ceil(L);
        let tail = w - (nv - 1) * L;
        let mask = ((1u32 << tail) - 1) as u16;
        let bp = b.data.as_ptr().add(j0);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let first = k0 == 0 && !accumulate;
            for i0 in (0..m).step_by(MR) {
                let t = Tile {
                    a: a.data.as_ptr().add(i0 * a.rs + k0 * a.cs),
                    a_rs: a.rs,
                    a_cs: a.cs,
                    b: bp.add(k0 * b.rs),
                    b_rs: b.rs,
                    c: c.add(i0 * c_rs),
                    c_rs,
                    kc,
                    mask,
                    first,
                };
                macro_rules! rows {
                    ($nv:literal) => {
                        match m - i0 {
                            1 => avx512::tile::<1, $nv>(&t),
                            2 => avx512::tile::<2, $nv>(&t),
                            3 => avx512::tile::<3, $nv>(&t),
                            4 => avx512::tile::<4, $nv>(&t),
                            5 => avx512::tile::<5, $nv>(&t),
                            6 => avx512::tile::<6, $nv>(&t),
                            7 => avx512::tile::<7, $nv>(&t),
                            _ => avx512::tile::<MR, $nv>(&t),
                        }
                    };
                }
                match nv {
                    1 => rows!(1),
                    2 => rows!(2),
                    _ => rows!(3),
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, w, k, c, c_rs, accumulate, a, b, j0);
        unreachable!("the skinny kernel runs only where `available`");
    }
}

/// One register tile's operands: rows of `a` from `a`, `kc` rows of `b` from `b` (its columns
/// start there; the last vector takes the lanes of `mask`), outputs at `c`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile {
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    c_rs: usize,
    kc: usize,
    mask: u16,
    /// The accumulators start at zero (the first block of a product that overwrites `c`),
    /// else at `c`.
    first: bool,
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Tile, L};

    /// Rows of `b` ahead that a tile prefetches.
    const PF: usize = 8;
    use std::arch::x86_64::*;

    /// `MK` rows × `NV` vectors: `acc = c (or 0); acc += a[r][kk] · b[kk][..]` for `kk` in
    /// order; `c = acc`. Indexed loops over constant bounds keep the accumulators in registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const MK: usize, const NV: usize>(t: &Tile) {
        let full = u16::MAX;
        let lanes = |p: usize| if p + 1 == NV { t.mask } else { full };
        let mut acc = [[_mm512_setzero_ps(); NV]; MK];
        if !t.first {
            for r in 0..MK {
                for p in 0..NV {
                    acc[r][p] = _mm512_maskz_loadu_ps(lanes(p), t.c.add(r * t.c_rs + p * L));
                }
            }
        }
        let mut ar = [std::ptr::null::<f32>(); MK];
        for r in 0..MK {
            ar[r] = t.a.add(r * t.a_rs);
        }
        let mut bk = t.b;
        for kk in 0..t.kc {
            let mut v = [_mm512_setzero_ps(); NV];
            for p in 0..NV {
                v[p] = _mm512_maskz_loadu_ps(lanes(p), bk.add(p * L));
                _mm_prefetch::<_MM_HINT_T0>(bk.wrapping_add(PF * t.b_rs + p * L) as *const i8);
            }
            for r in 0..MK {
                let x = _mm512_set1_ps(*ar[r].add(kk * t.a_cs));
                for p in 0..NV {
                    acc[r][p] = _mm512_fmadd_ps(x, v[p], acc[r][p]);
                }
            }
            bk = bk.add(t.b_rs);
        }
        for r in 0..MK {
            for p in 0..NV {
                _mm512_mask_storeu_ps(t.c.add(r * t.c_rs + p * L), lanes(p), acc[r][p]);
            }
        }
    }
}
