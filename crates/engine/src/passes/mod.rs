//! Load-time graph passes: constant folding (shape arithmetic and anything else computable
//! without the input), folding BatchNormalization into a preceding Conv, and pruning nodes the
//! output does not need, fusing the elementwise spelling of GELU into one node, fusing the
//! attention chain MatMul → Softmax → MatMul into one node, fusing a Conv
//! with the residual Add and ReLU that follow it, moving a ReLU's gradient mask into the max
//! pooling after it, and rearranging constant convolution weights for the kernels.
//!
//! The passes read and rewrite a [`Graph`]; the graph module knows nothing of them. Their one
//! caller is [`crate::Model::prepare`], through [`optimise`].

mod fold_batch_norm;
mod fold_constants;
mod fuse_activation;
mod fuse_attention;
mod fuse_gelu;
mod mask_at_pool;
mod prepare_weights;
mod prune;

use crate::error::Result;
use crate::graph::{Graph, ValueId};

use fold_batch_norm::fold_batch_norm;
use fold_constants::fold_constants;
use fuse_activation::fuse_activation;
use fuse_attention::fuse_attention;
use fuse_gelu::fuse_gelu;
use mask_at_pool::mask_at_pool;
pub(crate) use prepare_weights::prepare_weights;
use prune::prune;

/// The passes a graph being trained takes ([`crate::train::TrainModel`]): constant folding,
/// pruning and the Conv epilogue fusion (whose operator has weight gradients too; a batch norm
/// between a Conv and its Add keeps them apart). Folding batch norms would bake in statistics
/// that training changes; weights are packed by the training step itself, after each update.
pub(crate) fn for_training(g: &mut Graph) -> Result<()> {
    fold_constants(g)?;
    fuse_gelu(g);
    prune(g);
    fuse_activation(g);
    Ok(())
}

/// Runs every load-time pass on a graph as [`crate::GraphBuilder::build`] returns it, in the
/// order they depend on each other: constants are folded first (so BatchNormalization
/// parameters and convolution weights computed from constants are constants), pruning drops
/// what folding left unread, fusion needs BatchNormalization already folded into its Conv, and
/// weights are packed last, once they are final. Meant to run once per graph: packing twice
/// would only cost time, but a failed constant fold leaves the graph incomplete.
pub(crate) fn optimise(g: &mut Graph) -> Result<()> {
    fold_constants(g)?;
    fold_batch_norm(g);
    fuse_gelu(g);
    fuse_attention(g);
    prune(g);
    fuse_activation(g);
    mask_at_pool(g);
    prepare_weights(g);
    Ok(())
}

/// For every value, the nodes that read it and the node that produces it (for the fusions).
fn readers_and_producers(g: &Graph) -> (Vec<Vec<usize>>, Vec<Option<usize>>) {
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); g.names.len()];
    let mut producer: Vec<Option<usize>> = vec![None; g.names.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        producer[node.output] = Some(i);
        for &v in node.inputs.iter().flatten() {
            readers[v].push(i);
        }
    }
    (readers, producer)
}

/// The value of `v` when it is a one-element float constant.
fn const_scalar(g: &Graph, v: Option<ValueId>) -> Option<f32> {
    let t = g.consts[v?].as_ref()?;
    (t.len() == 1 && t.is_f32()).then(|| t.as_f32().ok()?.first().copied())?
}
