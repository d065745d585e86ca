//! Moves a ReLU's gradient mask into the max pooling that alone reads the ReLU's output
//! (`FusedConv` with its ReLU → MaxPool, as in LeNet-style networks): the pool sends each
//! window's gradient to one place and tests `x > 0` there (`Pool::relu_input`), and the
//! convolution's backward pass skips masking its whole output (`FusedConv::grad_masked`).
//! With FAB's nine seeds through LeNet-5's first layer that mask was a pass over 7 MB per
//! chunk of 8 images, 8 % of the run (`perf`, 100 images).
//!
//! Sound because every gradient reaching the ReLU's output comes through the pool, whose
//! input is that output: `x > 0` is the ReLU's own mask. Inference graphs only (`optimise`):
//! gradients start from the logits there, never from the pooled value itself.

use super::readers_and_producers;
use crate::graph::Graph;
use crate::ops::{FusedConv, Pool, PoolKind};

pub(crate) fn mask_at_pool(g: &mut Graph) {
    let (readers, producer) = readers_and_producers(g);
    for i in 0..g.nodes.len() {
        let Some(pool) = g.nodes[i].op.as_any().downcast_ref::<Pool>() else {
            continue;
        };
        let Some(v) = g.nodes[i].inputs.first().copied().flatten() else {
            continue;
        };
        if pool.kind != PoolKind::Max || readers[v].len() != 1 || v == g.output {
            continue;
        }
        let Some(j) = producer[v] else {
            continue;
        };
        let Some(conv) = g.nodes[j].op.as_any().downcast_ref::<FusedConv>() else {
            continue;
        };
        if !conv.relu {
            continue;
        }
        let conv = FusedConv {
            grad_masked: true,
            ..conv.clone()
        };
        let pool = Pool {
            relu_input: true,
            ..pool.clone()
        };
        g.nodes[j].op = Box::new(conv);
        g.nodes[i].op = Box::new(pool);
    }
}
