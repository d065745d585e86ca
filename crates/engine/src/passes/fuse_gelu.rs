//! Fuses the exact GELU that both PyTorch exporters spell out elementwise,
//! `x/√2 → Erf → +1 → ·x → ·½` (TorchScript) or `… → +1 → ·½ → ·x` (dynamo), into one
//! [`Unary`] `Gelu` node: one pass over the activation instead of five, and one kept tensor
//! for the backward pass instead of five. The intermediate values must have no other reader
//! and must not be the graph output; the fused node replaces the chain's last node and keeps
//! its output. The dead nodes are left for `prune`.

use crate::graph::{Graph, ValueId};
use crate::ops::{Unary, UnaryKind};

const SQRT_2: f32 = std::f32::consts::SQRT_2;

pub(crate) fn fuse_gelu(g: &mut Graph) {
    let (readers, producer) = super::readers_and_producers(g);
    let scalar = |v: Option<ValueId>| super::const_scalar(g, v);
    let near = |v: Option<f32>, want: f32| v.is_some_and(|v| (v - want).abs() <= 1e-6 * want.abs());
    // The only reader of `v`, when it has exactly one and is not the graph output.
    let sole = |v: ValueId| (readers[v].len() == 1 && v != g.output).then(|| readers[v][0]);
    // For a binary node: (the operand other than `v`, as a value).
    let other = |i: usize, v: ValueId| -> Option<Option<ValueId>> {
        let ins = &g.nodes[i].inputs;
        (ins.len() == 2).then_some(())?;
        if ins[0] == Some(v) {
            Some(ins[1])
        } else if ins[1] == Some(v) {
            Some(ins[0])
        } else {
            None
        }
    };
    let named = |i: usize, n: &str| g.nodes[i].op.name() == n;
    let mut rewrites: Vec<(usize, ValueId)> = Vec::new();
    for node in &g.nodes {
        if node.op.name() != "Erf" {
            continue;
        }
        let found = (|| {
            let d_out = node.inputs.first().copied().flatten()?;
            let d = producer[d_out]?;
            sole(d_out)?;
            let dn = &g.nodes[d];
            let x = dn.inputs.first().copied().flatten()?;
            let scaled = (named(d, "Div") && near(scalar(dn.inputs[1]), SQRT_2))
                || (named(d, "Mul") && near(scalar(dn.inputs[1]), 1.0 / SQRT_2));
            if !scaled {
                return None;
            }
            let a = sole(node.output)?;
            if !(named(a, "Add") && near(scalar(other(a, node.output)?), 1.0)) {
                return None;
            }
            let m1 = sole(g.nodes[a].output)?;
            if !named(m1, "Mul") {
                return None;
            }
            let o1 = other(m1, g.nodes[a].output)?;
            let m2 = sole(g.nodes[m1].output)?;
            if !named(m2, "Mul") {
                return None;
            }
            let o2 = other(m2, g.nodes[m1].output)?;
            let ok = (o1 == Some(x) && near(scalar(o2), 0.5))
                || (near(scalar(o1), 0.5) && o2 == Some(x));
            ok.then_some((m2, x))
        })();
        if let Some(r) = found {
            rewrites.push(r);
        }
    }
    for (i, x) in rewrites {
        g.nodes[i].op = Box::new(Unary::new(UnaryKind::Gelu { tanh: false }));
        g.nodes[i].inputs = vec![Some(x)];
    }
}
