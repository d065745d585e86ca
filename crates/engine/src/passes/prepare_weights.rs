//! Rearranges the constant weights of every convolution and Gemm once, at load time, into the layouts
//! its kernels read (see `ops::conv::Prepared`, `ops::matmul::GemmPrepared`), so that no call repacks or flips them. Runs
//! last: the weights must be final (after BatchNormalization folding).

use crate::graph::Graph;
use crate::ops::{Conv, FusedConv, Gemm};

pub(crate) fn prepare_weights(g: &mut Graph) {
    let consts = &g.consts;
    for node in &mut g.nodes {
        let Some(w) = node
            .inputs
            .get(1)
            .copied()
            .flatten()
            .and_then(|v| consts[v].as_ref())
        else {
            continue;
        };
        if !w.is_f32() {
            continue;
        }
        let any = node.op.as_any();
        if let Some(c) = any.downcast_ref::<Conv>() {
            if let Ok(c) = c.with_prepared(w) {
                node.op = Box::new(c);
            }
        } else if let Some(f) = any.downcast_ref::<FusedConv>() {
            if let Ok(conv) = f.conv.with_prepared(w) {
                node.op = Box::new(FusedConv { conv, ..f.clone() });
            }
        } else if let Some(gemm) = any.downcast_ref::<Gemm>().and_then(|g| g.with_prepared(w)) {
            node.op = Box::new(gemm);
        }
    }
}
