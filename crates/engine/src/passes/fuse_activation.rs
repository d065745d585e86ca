//! Fuses `Relu(Add(Conv(x), r))`, `Add(Conv(x), r)` and `Relu(Conv(x))` into one
//! [`FusedConv`], so the residual add and the activation run on each sample's output while it
//! is in cache, and the intermediate values are neither written nor kept for the backward pass.
//! A Conv output is fused only when nothing else reads it and it is not the graph output; the
//! fused node takes the place of the last operator it absorbs (so its inputs are all computed
//! by then) and keeps that operator's output name. Pre-activation values therefore cannot be
//! tapped by name.

use crate::graph::Graph;
use crate::ops::{Binary, BinaryKind, Conv, FusedConv, Op, Unary, UnaryKind};

pub(crate) fn fuse_activation(g: &mut Graph) {
    let mut uses = vec![0usize; g.names.len()];
    for node in &g.nodes {
        for &v in node.inputs.iter().flatten() {
            uses[v] += 1;
        }
    }
    let mut i = 0;
    while i < g.nodes.len() {
        let node = &g.nodes[i];
        let is_add = node
            .op
            .as_any()
            .downcast_ref::<Binary>()
            .is_some_and(|b| b.kind == BinaryKind::Add);
        let is_relu = node
            .op
            .as_any()
            .downcast_ref::<Unary>()
            .is_some_and(|u| u.kind == UnaryKind::Relu);
        let fused = if is_add && node.inputs.len() == 2 {
            // Either operand may be the convolution; the other (an activation) is the residual.
            (0..2).find_map(|k| {
                let (a, r) = (node.inputs[k]?, node.inputs[1 - k]?);
                if g.consts[r].is_some() {
                    return None;
                }
                let j = fusable(g, a, &uses, |f| !f.residual && !f.relu)?;
                let mut f = as_fused(g.nodes[j].op.as_ref())?;
                f.residual = true;
                let mut inputs = g.nodes[j].inputs.clone();
                inputs.resize(3, None);
                inputs.push(Some(r));
                Some((j, f, inputs))
            })
        } else if is_relu && node.inputs.len() == 1 {
            node.inputs[0].and_then(|a| {
                let j = fusable(g, a, &uses, |f| !f.relu)?;
                let mut f = as_fused(g.nodes[j].op.as_ref())?;
                f.relu = true;
                Some((j, f, g.nodes[j].inputs.clone()))
            })
        } else {
            None
        };
        match fused {
            Some((j, f, inputs)) => {
                g.nodes[i].op = Box::new(f);
                g.nodes[i].inputs = inputs;
                g.nodes.remove(j);
                // Node i moved to i − 1 (j < i); look at it again in case a Relu follows.
                i -= 1;
            }
            None => i += 1,
        }
    }
}

/// The index of the Conv or FusedConv (accepted by `ok`) producing `v`, if `v` can be fused
/// away: read once, not the output, weights constant.
fn fusable(g: &Graph, v: usize, uses: &[usize], ok: impl Fn(&FusedConv) -> bool) -> Option<usize> {
    if uses[v] != 1 || v == g.output || v == g.input {
        return None;
    }
    let j = g.nodes.iter().position(|n| n.output == v)?;
    let f = as_fused(g.nodes[j].op.as_ref())?;
    let w = g.nodes[j].inputs.get(1).copied().flatten()?;
    g.consts[w].as_ref()?;
    ok(&f).then_some(j)
}

/// The operator as a FusedConv (a plain Conv has an empty epilogue).
fn as_fused(op: &dyn Op) -> Option<FusedConv> {
    if let Some(c) = op.as_any().downcast_ref::<Conv>() {
        return Some(FusedConv {
            conv: c.clone(),
            residual: false,
            relu: false,
            grad_masked: false,
        });
    }
    op.as_any().downcast_ref::<FusedConv>().cloned()
}
