//! Load-time graph passes: constant folding (shape arithmetic and anything else computable
//! without the input), folding BatchNormalization into a preceding Conv, and pruning nodes the
//! output does not need, fusing a Conv with the residual Add and ReLU that follow it, and
//! rearranging constant convolution weights for the kernels.

mod fold_batch_norm;
mod fold_constants;
mod fuse_activation;
mod prepare_weights;
mod prune;

pub(crate) use fold_batch_norm::fold_batch_norm;
pub(crate) use fold_constants::fold_constants;
pub(crate) use fuse_activation::fuse_activation;
pub(crate) use prepare_weights::prepare_weights;
pub(crate) use prune::prune;
