//! Compute kernels behind the operators. Nothing here is part of the public API: the engine's
//! interface (`Model`) exposes tensors and gradients, never how they are computed, so that a
//! different backend can later sit behind it.

pub(crate) mod channel_lanes;
pub(crate) mod direct;
pub(crate) mod im2col;
pub(crate) mod rowshift;
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
