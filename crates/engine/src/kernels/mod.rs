//! Compute kernels behind the operators. Nothing here is part of the public API: the engine's
//! interface (`Model`) exposes tensors and gradients, never how they are computed, so that a
//! different backend can later sit behind it.

pub(crate) mod channel_lanes;
pub(crate) mod direct;
pub(crate) mod im2col;
pub(crate) mod rowshift;
pub(crate) mod winograd;
