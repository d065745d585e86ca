//! Compute kernels behind the operators. Nothing here is part of the public API: the engine's
//! interface (`Model`) exposes tensors and gradients, never how they are computed, so that a
//! different backend can later sit behind it.

pub(crate) mod channel_lanes;
pub(crate) mod direct;
pub(crate) mod im2col;
pub(crate) mod rowshift;
pub(crate) mod sparse_grad;
pub(crate) mod winograd;

/// A raw output pointer shared by the threads of one kernel call; each writes disjoint
/// elements.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Appends `dy · [y > 0]` (the gradient through a ReLU given its output) to `out`; `grad` may
/// hold several copies of the batch (one after the other), all masked by the same `y`.
pub(crate) fn relu_mask_into(out: &mut Vec<f32>, grad: &[f32], y: &[f32]) {
    for g in grad.chunks(y.len().max(1)) {
        out.extend(g.iter().zip(y).map(|(&g, &y)| g * (y > 0.0) as u8 as f32));
    }
}

/// The weights `w[mg × c × taps]` in the order a register-blocked kernel reads them:
/// `[⌈mg/block⌉][⌈c/chunk⌉][taps][channels of the chunk][block]`, zero-padded to whole blocks
/// of output channels, so that one step reads `block` adjacent values.
pub(crate) fn pack_blocks(
    w: &[f32],
    (mg, c, taps): (usize, usize, usize),
    block: usize,
    chunk: usize,
) -> Vec<f32> {
    let blocks = mg.div_ceil(block);
    let mut out = Vec::with_capacity(blocks * c * taps * block);
    for b in 0..blocks {
        for c0 in (0..c).step_by(chunk) {
            for t in 0..taps {
                for ci in c0..(c0 + chunk).min(c) {
                    for m in b * block..(b + 1) * block {
                        out.push(if m < mg {
                            w[(m * c + ci) * taps + t]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
    }
    out
}

/// The definition of a convolution, for the kernels' tests.
#[cfg(test)]
pub(crate) mod reference {
    use super::im2col::Geometry;

    /// A reproducible stream of values in `[-0.5, 0.5)` (a 64-bit linear congruential
    /// generator's top 24 bits), for the kernels' tests.
    pub(crate) fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut st = seed;
        move || {
            st = st
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((st >> 40) as f32) / 16777216.0 - 0.5
        }
    }

    /// `y[s, m, oy, ox] = act(b[m] + r[s, m, oy, ox] + Σ_{c,i,j} W[m,c,i,j] · x[s, c, oy·sh +
    /// i·dh − pt, ox·sw + j·dw − pl])` in f64, reading zero outside the image, for `n` samples
    /// of `x[c × h × w]` and weights `w[mg × c × kh × kw]`; `act` is a ReLU when `relu`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv(
        g: &Geometry,
        n: usize,
        mg: usize,
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        residual: Option<&[f32]>,
        relu: bool,
    ) -> Vec<f64> {
        let (c, in_len, out_len) = (g.c, g.c * g.h * g.w, mg * g.oh * g.ow);
        let mut want = vec![0f64; n * out_len];
        for s in 0..n {
            let x = &x[s * in_len..];
            for m in 0..mg {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut acc = 0f64;
                        for ci in 0..c {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (oy * g.sh + i * g.dh) as isize - g.pt as isize;
                                    let ix = (ox * g.sw + j * g.dw) as isize - g.pl as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[(ci * g.h + iy as usize) * g.w + ix as usize];
                                    let wv = w[((m * c + ci) * g.kh + i) * g.kw + j];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        let at = s * out_len + (m * g.oh + oy) * g.ow + ox;
                        acc += bias.map_or(0.0, |b| b[m] as f64);
                        acc += residual.map_or(0.0, |r| r[at] as f64);
                        want[at] = if relu { acc.max(0.0) } else { acc };
                    }
                }
            }
        }
        want
    }
}
