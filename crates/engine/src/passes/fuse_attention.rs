//! Fuses the attention chain that ViT/DeiT/Swin exports spell out, `MatMul(Q, Kᵀ) → (Mul/Div
//! by a constant scalar) → Softmax(last axis) → MatMul(·, V)`, with constant scalar Muls on
//! `Q` and `Kᵀ` before the first product (the TorchScript exporter scales both by `√α`), into
//! one [`Attention`] node with the scalings multiplied into its `scale`. Every intermediate
//! value must have the chain's next node as its only reader and must not be the graph output;
//! the fused node replaces the second MatMul and keeps its output. The dead nodes are left for
//! `prune`.

use crate::graph::{Graph, ValueId};
use crate::ops::{Attention, Softmax};

pub(crate) fn fuse_attention(g: &mut Graph) {
    let (readers, producer) = super::readers_and_producers(g);
    let scalar = |v: Option<ValueId>| super::const_scalar(g, v);
    // The node producing `v` when `v` is read only by one node and is not the graph output.
    let sole_producer = |v: ValueId| {
        (readers[v].len() == 1 && v != g.output)
            .then_some(())
            .and(producer[v])
    };
    let named = |i: usize, n: &str| g.nodes[i].op.name() == n;
    let ins = |i: usize| -> Option<[ValueId; 2]> {
        match g.nodes[i].inputs.as_slice() {
            [Some(a), Some(b)] => Some([*a, *b]),
            _ => None,
        }
    };
    // `v` with a constant scalar Mul (or Div) in front of it peeled off: (value, factor).
    let peel = |v: ValueId, allow_div: bool| -> (ValueId, f32) {
        let Some(i) = sole_producer(v) else {
            return (v, 1.0);
        };
        let Some([a, b]) = ins(i) else {
            return (v, 1.0);
        };
        let found = if named(i, "Mul") {
            scalar(Some(b))
                .map(|c| (a, c))
                .or_else(|| scalar(Some(a)).map(|c| (b, c)))
        } else if allow_div && named(i, "Div") {
            scalar(Some(b)).map(|c| (a, 1.0 / c))
        } else {
            None
        };
        // A Mul of two constants is folded already; a scalar that is the chain's value is not.
        match found {
            Some((x, c)) if g.consts[x].is_none() && c.is_finite() => (x, c),
            _ => (v, 1.0),
        }
    };
    let mut rewrites: Vec<(usize, [ValueId; 3], f32)> = Vec::new();
    for (si, node) in g.nodes.iter().enumerate() {
        let Some(sm) = node.op.as_any().downcast_ref::<Softmax>() else {
            continue;
        };
        if sm.log || sm.coerce_2d || sm.axis != -1 {
            continue;
        }
        let found = (|| {
            let [Some(s_in)] = *node.inputs.as_slice() else {
                return None;
            };
            let (scores, a0) = peel(s_in, true);
            let mm1 = sole_producer(scores)?;
            if !named(mm1, "MatMul") {
                return None;
            }
            let [q0, k0] = ins(mm1)?;
            let (q, aq) = peel(q0, false);
            let (kt, ak) = peel(k0, false);
            let [r] = *readers[node.output].as_slice() else {
                return None;
            };
            if node.output == g.output || !named(r, "MatMul") || r == si {
                return None;
            }
            let [p, v] = ins(r)?;
            (p == node.output && v != node.output).then_some((r, [q, kt, v], a0 * aq * ak))
        })();
        rewrites.extend(found);
    }
    for (i, ins, scale) in rewrites {
        g.nodes[i].op = Box::new(Attention { scale });
        g.nodes[i].inputs = ins.iter().map(|&v| Some(v)).collect();
    }
}
