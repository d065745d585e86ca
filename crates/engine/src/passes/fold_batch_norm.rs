//! Folds `BatchNormalization(Conv(x, W, b))` into `Conv(x, W', b')` with
//! `W'[m] = s[m]·W[m]`, `b'[m] = s[m]·b[m] + t[m]`, where `s = γ/√(σ²+ε)`, `t = β − μ·s`.
//! Only when the Conv output feeds nothing else and all parameters are constants.

use crate::graph::Graph;
use crate::ops::{BatchNorm, Conv};
use crate::tensor::Tensor;

pub(crate) fn fold_batch_norm(g: &mut Graph) {
    let mut uses = vec![0usize; g.names.len()];
    for node in &g.nodes {
        for &v in node.inputs.iter().flatten() {
            uses[v] += 1;
        }
    }
    let mut i = 0;
    while i < g.nodes.len() {
        if let Some(j) = foldable(g, i, &uses) {
            let bn_inputs: Vec<Option<&Tensor>> = g.nodes[i]
                .inputs
                .iter()
                .map(|v| v.and_then(|v| g.consts[v].as_ref()))
                .collect();
            let bn = g.nodes[i]
                .op
                .as_any()
                .downcast_ref::<BatchNorm>()
                .expect("checked");
            let Ok((scale, shift)) = bn.affine(&bn_inputs) else {
                i += 1;
                continue;
            };
            let conv = &g.nodes[j];
            let w = g.consts[conv.inputs[1].expect("checked")]
                .as_ref()
                .expect("checked");
            let m = w.shape()[0];
            if scale.len() != m {
                i += 1;
                continue;
            }
            let per = w.len() / m.max(1);
            let mut nw = w.fs().to_vec();
            for (k, v) in nw.iter_mut().enumerate() {
                *v *= scale[k / per];
            }
            let old_b: Vec<f32> = match conv.inputs.get(2).copied().flatten() {
                Some(b) => g.consts[b]
                    .as_ref()
                    .map(|t| t.fs().to_vec())
                    .unwrap_or(vec![0.0; m]),
                None => vec![0.0; m],
            };
            let nb: Vec<f32> = (0..m).map(|k| old_b[k] * scale[k] + shift[k]).collect();
            let wshape = w.shape().to_vec();
            let name = g.nodes[j].name.clone();
            let wv = g.new_value(
                format!("{name}:folded_weight"),
                Some(Tensor::f32(wshape, nw)),
            );
            let bv = g.new_value(
                format!("{name}:folded_bias"),
                Some(Tensor::f32(vec![m], nb)),
            );
            let bn_out = g.nodes[i].output;
            let conv = &mut g.nodes[j];
            conv.inputs = vec![conv.inputs[0], Some(wv), Some(bv)];
            conv.output = bn_out;
            g.nodes.remove(i);
            continue;
        }
        i += 1;
    }
}

/// Index of the Conv feeding BatchNorm node `i`, if folding applies.
fn foldable(g: &Graph, i: usize, uses: &[usize]) -> Option<usize> {
    let bn = &g.nodes[i];
    bn.op.as_any().downcast_ref::<BatchNorm>()?;
    if bn.inputs.len() < 5
        || bn.inputs[1..5]
            .iter()
            .any(|v| v.is_none_or(|v| g.consts[v].is_none()))
    {
        return None;
    }
    let x = bn.inputs[0]?;
    if uses[x] != 1 || x == g.output {
        return None;
    }
    let j = g.nodes.iter().position(|n| n.output == x)?;
    let conv = &g.nodes[j];
    conv.op.as_any().downcast_ref::<Conv>()?;
    let w = conv.inputs.get(1).copied().flatten()?;
    g.consts[w].as_ref()?;
    if let Some(b) = conv.inputs.get(2).copied().flatten() {
        g.consts[b].as_ref()?;
    }
    Some(j)
}
