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
