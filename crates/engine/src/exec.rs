//! Running a graph: a forward pass that keeps what the backward pass or the caller needs, and
//! the reverse sweep that turns an output gradient into the gradients of the input (attacks)
//! or of learnable constants (training, `crate::train`).

use crate::error::{Error, Result};
use crate::graph::{Graph, ValueId};
use crate::ops::Copies;
use crate::tensor::Tensor;

/// Values computed by one forward pass (indexed by `ValueId`; constants are not copied).
pub(crate) type Values = Vec<Option<Tensor>>;

impl Graph {
    fn read<'a>(&'a self, vals: &'a Values, v: ValueId) -> Option<&'a Tensor> {
        self.consts[v].as_ref().or(vals[v].as_ref())
    }

    /// Runs the graph on `x`. With `keep_all`, every activation is kept (for a backward pass);
    /// otherwise activations are freed after their last use, except the output and `keep`.
    pub(crate) fn run(&self, x: Tensor, keep_all: bool, keep: &[ValueId]) -> Result<Values> {
        let mut vals: Values = vec![None; self.names.len()];
        vals[self.input] = Some(x);
        let mut last_use = vec![usize::MAX; self.names.len()];
        if !keep_all {
            for (i, node) in self.nodes.iter().enumerate() {
                for &v in node.inputs.iter().flatten() {
                    last_use[v] = i;
                }
            }
            last_use[self.output] = usize::MAX;
            for &k in keep {
                last_use[k] = usize::MAX;
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let ins: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| self.read(&vals, v)))
                .collect();
            let y =
                crate::profile::timed(&node.name, node.op.name(), false, || node.op.forward(&ins))
                    .map_err(|e| e.in_node(&node.name))?;
            vals[node.output] = Some(y);
            if !keep_all {
                for &v in node.inputs.iter().flatten() {
                    if last_use[v] == i {
                        vals[v] = None;
                    }
                }
            }
        }
        Ok(vals)
    }

    /// Gradient of `⟨seed, output⟩` with respect to the input, given a `keep_all` forward.
    pub(crate) fn backward(&self, vals: &Values, seed: Tensor) -> Result<Tensor> {
        let wanted = self.wanted(vals);
        let mut grads = self.backward_values(vals, seed, &wanted)?;
        let x = vals[self.input]
            .as_ref()
            .ok_or_else(|| Error::Graph("input was not kept".into()))?;
        Ok(grads[self.input]
            .take()
            .unwrap_or_else(|| Tensor::zeros(x.shape().to_vec())))
    }

    /// Gradients of `⟨seed, output⟩` with respect to every value flagged in `wanted` (indexed
    /// by `ValueId`), given a `keep_all` forward. The result holds the gradients of the graph
    /// input and of constants (an operator's output gives its gradient up to its inputs as the
    /// sweep passes it); a value flagged but not reached by the sweep gets `None`. Only the operands flagged in `wanted`
    /// are asked of each operator, so an activation whose gradient nobody needs (the image,
    /// while training) costs nothing.
    pub(crate) fn backward_values(
        &self,
        vals: &Values,
        seed: Tensor,
        wanted: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        self.sweep(vals, seed, wanted, None)
    }

    /// The input gradients of `copies` seeds of one `keep_all` forward pass at once: `seed` is
    /// the output gradient of the batch replicated `copies` times (copy-major), `batched[v]`
    /// says which values carry the batch on their first axis (the others are shared by every
    /// copy). Each operator runs once over all copies ([`crate::ops::Op::backward_copies`]),
    /// reading the activations as kept, never copied by the sweep; the result is the input
    /// gradient of the replicated batch, equal bit for bit to [`Graph::backward`] on the
    /// activations replicated.
    pub(crate) fn backward_copies(
        &self,
        vals: &Values,
        seed: Tensor,
        copies: usize,
        batched: &[bool],
    ) -> Result<Tensor> {
        let wanted = self.wanted(vals);
        let mut grads = self.sweep(vals, seed, &wanted, Some((copies, batched)))?;
        let x = vals[self.input]
            .as_ref()
            .ok_or_else(|| Error::Graph("input was not kept".into()))?;
        Ok(grads[self.input].take().unwrap_or_else(|| {
            let mut shape = x.shape().to_vec();
            shape[0] *= copies;
            Tensor::zeros(shape)
        }))
    }

    /// The float activations a gradient can flow through.
    fn wanted(&self, vals: &Values) -> Vec<bool> {
        (0..self.names.len())
            .map(|v| self.consts[v].is_none() && vals[v].as_ref().is_some_and(|t| t.is_f32()))
            .collect()
    }

    /// The reverse sweep of [`Graph::backward_values`], over `copies` seeds at once when given
    /// (see [`Graph::backward_copies`]).
    fn sweep(
        &self,
        vals: &Values,
        seed: Tensor,
        wanted: &[bool],
        copies: Option<(usize, &[bool])>,
    ) -> Result<Vec<Option<Tensor>>> {
        let mut grads: Vec<Option<Tensor>> = vec![None; self.names.len()];
        grads[self.output] = Some(seed);
        for node in self.nodes.iter().rev() {
            let Some(g) = grads[node.output].take() else {
                continue;
            };
            let ins: Vec<Option<&Tensor>> = node
                .inputs
                .iter()
                .map(|v| v.and_then(|v| self.read(vals, v)))
                .collect();
            let need: Vec<bool> = node
                .inputs
                .iter()
                .map(|v| v.is_some_and(|v| wanted[v]))
                .collect();
            if !need.iter().any(|&n| n) {
                continue;
            }
            let out = vals[node.output].as_ref().ok_or_else(|| {
                Error::Graph(format!("activation of '{}' was not kept", node.name))
            })?;
            let gi = crate::profile::timed(&node.name, node.op.name(), true, || match copies {
                None => node.op.backward(&ins, out, &g, &need),
                Some((copies, batched)) => {
                    let flags: Vec<bool> = node
                        .inputs
                        .iter()
                        .map(|v| v.is_some_and(|v| batched[v]))
                        .collect();
                    let c = Copies {
                        copies,
                        batched: &flags,
                        out_batched: batched[node.output],
                    };
                    node.op.backward_copies(&ins, out, &g, &need, c)
                }
            })
            .map_err(|e| e.in_node(&node.name))?;
            for (k, gk) in gi.into_iter().enumerate() {
                if let (Some(gk), Some(v)) = (gk, node.inputs[k]) {
                    if !need[k] {
                        continue;
                    }
                    match &mut grads[v] {
                        Some(acc) => acc.add_assign(&gk),
                        slot => *slot = Some(gk),
                    }
                }
            }
        }
        Ok(grads)
    }
}
