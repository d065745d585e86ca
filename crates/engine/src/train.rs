//! Training: the gradients of a loss with respect to a model's learnable constants, behind
//! the same graph and operators that run inference.
//!
//! [`TrainModel`] takes a [`Model`] as loaded (before [`Model::prepare`]) and finds its
//! parameters: the float constants that are Conv weights and biases, Gemm and MatMul weights
//! (the constant operand), bias adds after those, and the scales and shifts of Batch-, Layer-,
//! Group- and InstanceNormalization.
//! Everything else (shape constants, an in-graph normalization) stays constant. Of the
//! load-time passes it runs constant folding, pruning and the Conv epilogue fusion; folding
//! BatchNormalization into its Conv would tie the graph to statistics that training changes,
//! and weights are packed again at each step.
//! Batch norms either run in training mode ([`BatchNormMode::Train`]: batch statistics, and
//! the running statistics updated from each batch as PyTorch does) or stay frozen at their
//! running statistics with a learnable affine part ([`BatchNormMode::Frozen`]).
//!
//! [`TrainModel::step`] runs one forward pass over the whole batch (batch statistics need it
//! whole), evaluates a caller's loss on the logits, and one backward pass that asks each
//! operator only for the gradients that lead to a parameter. [`TrainModel::inference`] turns
//! the current weights into an ordinary prepared [`Model`] (batch norms folded, weights
//! packed) for attacks and evaluation.

use std::collections::HashSet;
use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::exec::Values;
use crate::graph::{Graph, ValueId};
use crate::model::{chunks, Model, Normalization};
use crate::ops::batch_norm::batch_stats;
use crate::ops::{BatchNorm, BatchNormTrain, Conv, FusedConv};
use crate::passes;
use crate::tensor::Tensor;

/// What batch normalization does while training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BatchNormMode {
    /// Normalize with each batch's own statistics and update the running ones:
    /// `running ← (1 − momentum)·running + momentum·batch`, with the unbiased batch variance
    /// (PyTorch's convention; its default momentum is 0.1).
    Train {
        /// Weight of the batch in the running statistics.
        momentum: f32,
    },
    /// Keep the running statistics; the scale γ and shift β still learn.
    Frozen,
}

/// What a parameter is to its operator (weight decay usually applies to weights only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// A Conv, Gemm or MatMul weight.
    Weight,
    /// A Conv or Gemm bias, or a bias added after a Conv, Gemm or MatMul.
    Bias,
    /// A normalization's scale γ (batch, layer, group or instance norm).
    Scale,
    /// A normalization's shift β.
    Shift,
}

/// One learnable tensor: a named constant of the graph.
#[derive(Debug, Clone)]
pub struct Param {
    /// The constant's name (the ONNX initializer's).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its role.
    pub role: ParamRole,
    /// The operator that reads it ("Conv", "Gemm", …).
    pub op: &'static str,
    /// Position of that operator among the graph's operators with parameters (0 = nearest
    /// the input): "the last k layers" are the parameters whose `layer` is among the k largest.
    pub layer: usize,
    value: ValueId,
}

/// A batch norm in training mode: where its input and running statistics are.
#[derive(Debug, Clone)]
struct Running {
    input: ValueId,
    mean: ValueId,
    var: ValueId,
}

/// The result of [`TrainModel::step`].
#[derive(Debug, Clone)]
pub struct Step {
    /// Logits, N·K row-major.
    pub logits: Vec<f32>,
    /// The per-sample values the loss returned.
    pub loss: Vec<f32>,
    /// The gradient of the loss with respect to each parameter, in [`TrainModel::params`]
    /// order (zeros for a parameter the output does not depend on).
    pub grads: Vec<Vec<f32>>,
}

/// A model being trained. See the module documentation.
#[derive(Debug, Clone)]
pub struct TrainModel {
    graph: Graph,
    declared: Vec<Option<usize>>,
    image: [usize; 3],
    norm: Option<Normalization>,
    /// Operators put in front of the graph (normalization, layout), and the value they feed.
    prefix_len: usize,
    base_input: ValueId,
    classes: usize,
    params: Vec<Param>,
    /// Values whose gradient the backward pass computes: parameters, and activations that
    /// depend on one.
    wanted: Vec<bool>,
    running: Vec<Running>,
    bn: BatchNormMode,
}

impl TrainModel {
    /// Prepares `model` (as loaded, not yet prepared) for training on `image`-shaped NCHW
    /// images in [0, 1], with `norm` applied in front as [`Model::prepare`] would. Only
    /// constants whose name `learnable` accepts become parameters (the ONNX importer's
    /// initializers, so that the trained values can be written back by name).
    pub fn new(
        model: Model,
        image: [usize; 3],
        norm: Option<Normalization>,
        bn: BatchNormMode,
        learnable: &dyn Fn(&str) -> bool,
    ) -> Result<Self> {
        if let BatchNormMode::Train { momentum } = bn {
            if !(0.0..=1.0).contains(&momentum) {
                return Err(Error::Input(format!(
                    "batch-norm momentum {momentum} is outside [0, 1]"
                )));
            }
        }
        let (prefix, _) = model.input_prefix(image, norm.clone())?;
        let (mut graph, declared) = model.into_graph()?;
        passes::for_training(&mut graph)?;
        let mut running = Vec::new();
        for node in &mut graph.nodes {
            if let Some(b) = node.op.as_any().downcast_ref::<BatchNorm>() {
                if let BatchNormMode::Train { .. } = bn {
                    let (Some(Some(input)), Some(Some(mean)), Some(Some(var))) =
                        (node.inputs.first(), node.inputs.get(3), node.inputs.get(4))
                    else {
                        return Err(Error::Graph(format!(
                            "batch norm '{}' lacks an input or its running statistics",
                            node.name
                        )));
                    };
                    running.push(Running {
                        input: *input,
                        mean: *mean,
                        var: *var,
                    });
                    node.op = Box::new(BatchNormTrain { epsilon: b.epsilon });
                }
            }
        }
        let base_input = graph.input;
        let prefix_len = prefix.len();
        graph.prepend(prefix);
        let params = find_params(&graph, learnable);
        for r in &running {
            for v in [r.mean, r.var] {
                if !graph.consts[v].as_ref().is_some_and(|t| t.is_f32()) {
                    return Err(Error::Graph(format!(
                        "running statistic '{}' is not a float constant",
                        graph.names[v]
                    )));
                }
            }
        }
        let mut wanted = vec![false; graph.names.len()];
        for p in &params {
            wanted[p.value] = true;
        }
        for node in &graph.nodes {
            if node.inputs.iter().flatten().any(|&v| wanted[v]) {
                wanted[node.output] = true;
            }
        }
        let mut m = TrainModel {
            graph,
            declared,
            image,
            norm,
            prefix_len,
            base_input,
            classes: 0,
            params,
            wanted,
            running,
            bn,
        };
        let [c, h, w] = image;
        let vals = m.graph.run(Tensor::zeros(vec![1, c, h, w]), false, &[])?;
        let out = vals[m.graph.output]
            .as_ref()
            .ok_or_else(|| Error::Graph("no output".into()))?;
        if !out.is_f32() || out.shape().first() != Some(&1) {
            return Err(Error::Input(format!(
                "model output has shape {:?} for one image; expected [1, classes]",
                out.shape()
            )));
        }
        m.classes = out.len();
        Ok(m)
    }

    /// The parameters, in a fixed order (the graph's).
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// The image shape `[c, h, w]`.
    pub fn image_shape(&self) -> [usize; 3] {
        self.image
    }

    /// The batch-norm mode.
    pub fn batch_norm_mode(&self) -> BatchNormMode {
        self.bn
    }

    /// The current value of each parameter, in [`TrainModel::params`] order.
    pub fn values(&self) -> Vec<&[f32]> {
        self.params
            .iter()
            .map(|p| {
                self.graph.consts[p.value]
                    .as_ref()
                    .map_or(&[][..], |t| t.fs())
            })
            .collect()
    }

    /// Mutable parameter values, in [`TrainModel::params`] order, for an optimiser.
    pub fn values_mut(&mut self) -> Vec<&mut [f32]> {
        let ids: HashSet<ValueId> = self.params.iter().map(|p| p.value).collect();
        let mut by_id: Vec<(ValueId, &mut [f32])> = self
            .graph
            .consts
            .iter_mut()
            .enumerate()
            .filter(|(v, _)| ids.contains(v))
            .filter_map(|(v, t)| t.as_mut().map(|t| (v, t.f32_mut())))
            .collect();
        let mut out = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let i = by_id
                .iter()
                .position(|(v, _)| *v == p.value)
                .expect("every parameter is a float constant");
            out.push(by_id.swap_remove(i).1);
        }
        out
    }

    /// Every tensor training changes, by name: the parameters, then the running statistics of
    /// batch norms in training mode. What an exporter writes back and a checkpoint keeps.
    pub fn state(&self) -> Vec<(&str, &Tensor)> {
        let mut ids: Vec<ValueId> = self.params.iter().map(|p| p.value).collect();
        for r in &self.running {
            for v in [r.mean, r.var] {
                if !ids.contains(&v) {
                    ids.push(v);
                }
            }
        }
        ids.into_iter()
            .filter_map(|v| {
                self.graph.consts[v]
                    .as_ref()
                    .map(|t| (self.graph.names[v].as_str(), t))
            })
            .collect()
    }

    /// Sets the tensor `name` of [`TrainModel::state`] (a checkpoint being restored); its
    /// element count must match.
    pub fn set_state(&mut self, name: &str, values: &[f32]) -> Result<()> {
        let known = self.state().iter().any(|(n, _)| *n == name);
        let v = self
            .graph
            .find(name)
            .filter(|_| known)
            .ok_or_else(|| Error::Input(format!("the model has no trained tensor '{name}'")))?;
        let t = self.graph.consts[v]
            .as_mut()
            .ok_or_else(|| Error::Input(format!("'{name}' is not a constant")))?;
        if t.len() != values.len() {
            return Err(Error::Input(format!(
                "'{name}' holds {} values, the checkpoint {}",
                t.len(),
                values.len()
            )));
        }
        t.f32_mut().copy_from_slice(values);
        Ok(())
    }

    /// One forward and backward pass over `images` (N NCHW images in [0, 1]). `loss(logits,
    /// k)` returns the per-sample loss values (reported back, not differentiated) and the
    /// gradient of the objective with respect to the N·K logits (for a mean loss, each
    /// sample's gradient divided by N). In [`BatchNormMode::Train`] the running statistics
    /// move toward this batch's.
    pub fn step(
        &mut self,
        images: &[f32],
        loss: impl FnOnce(&[f32], usize) -> Result<(Vec<f32>, Vec<f32>)>,
    ) -> Result<Step> {
        let [c, h, w] = self.image;
        let per = c * h * w;
        if images.is_empty() || !images.len().is_multiple_of(per) {
            return Err(Error::Input(format!(
                "{} values do not form whole {c}x{h}x{w} images",
                images.len()
            )));
        }
        let n = images.len() / per;
        if matches!(self.bn, BatchNormMode::Train { .. }) && n < 2 && !self.running.is_empty() {
            return Err(Error::Input(
                "training batch norms need at least 2 images per batch".into(),
            ));
        }
        // The weights may have changed since the last step: pack them again for the kernels
        // (milliseconds, against a step's forward and backward passes).
        passes::prepare_weights(&mut self.graph);
        let k = self.classes;
        // Without batch statistics the samples are independent, and the batch runs as chunks
        // in parallel like inference does (`Model::loss_grad`); the chunks' parameter gradients
        // are added in chunk order, so results do not depend on scheduling.
        let parts: Vec<Range<usize>> = if self.running.is_empty() {
            chunks(n)
        } else {
            std::iter::once(0..n).collect()
        };
        let graph = &self.graph;
        let runs = parts
            .par_iter()
            .map(|r| {
                let x = Tensor::f32(
                    vec![r.len(), c, h, w],
                    images[r.start * per..r.end * per].to_vec(),
                );
                let vals = graph.run(x, true, &[])?;
                let out = vals[graph.output]
                    .as_ref()
                    .ok_or_else(|| Error::Graph("no output".into()))?;
                if out.len() != r.len() * k {
                    return Err(Error::Input(format!(
                        "model produced {:?} for a batch of {}; expected {}x{k} logits",
                        out.shape(),
                        r.len(),
                        r.len()
                    )));
                }
                Ok(vals)
            })
            .collect::<Result<Vec<Values>>>()?;
        let mut logits = Vec::with_capacity(n * k);
        for vals in &runs {
            logits.extend_from_slice(vals[graph.output].as_ref().map_or(&[][..], |t| t.fs()));
        }
        let (values, seed) = loss(&logits, k)?;
        if seed.len() != logits.len() {
            return Err(Error::Input(format!(
                "the loss gave {} logit gradients for {} logits",
                seed.len(),
                logits.len()
            )));
        }
        let wanted = &self.wanted;
        let per_part = parts
            .par_iter()
            .zip(&runs)
            .map(|(r, vals)| {
                let mut shape = vals[graph.output]
                    .as_ref()
                    .map_or(vec![], |t| t.shape().to_vec());
                if let Some(b) = shape.first_mut() {
                    *b = r.len();
                }
                let s = Tensor::f32(shape, seed[r.start * k..r.end * k].to_vec());
                graph.backward_values(vals, s, wanted)
            })
            .collect::<Result<Vec<_>>>()?;
        if let [vals] = runs.as_slice() {
            self.update_running(vals)?;
        }
        let mut grads = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let mut acc: Option<Vec<f32>> = None;
            for part in &per_part {
                if let Some(g) = part[p.value].as_ref() {
                    match &mut acc {
                        Some(a) => a.iter_mut().zip(g.fs()).for_each(|(a, b)| *a += b),
                        None => acc = Some(g.fs().to_vec()),
                    }
                }
            }
            grads.push(acc.unwrap_or_else(|| vec![0.0; p.shape.iter().product()]));
        }
        Ok(Step {
            logits,
            loss: values,
            grads,
        })
    }

    /// Moves the running statistics of training-mode batch norms toward the batch's.
    fn update_running(&mut self, vals: &Values) -> Result<()> {
        let BatchNormMode::Train { momentum } = self.bn else {
            return Ok(());
        };
        for r in &self.running {
            let x = vals[r.input]
                .as_ref()
                .or(self.graph.consts[r.input].as_ref())
                .ok_or_else(|| Error::Graph("batch-norm input was not kept".into()))?;
            let c = self.graph.consts[r.mean].as_ref().map_or(0, Tensor::len);
            let (mean, var) = batch_stats(x, c)?;
            let count = (x.len() / c.max(1)) as f32;
            let unbias = if count > 1.0 {
                count / (count - 1.0)
            } else {
                1.0
            };
            for (v, batch, scale) in [(r.mean, mean, 1.0), (r.var, var, unbias)] {
                let t = self.graph.consts[v]
                    .as_mut()
                    .ok_or_else(|| Error::Graph("running statistic vanished".into()))?;
                for (run, b) in t.f32_mut().iter_mut().zip(batch) {
                    *run = (1.0 - momentum) * *run + momentum * b * scale;
                }
            }
        }
        Ok(())
    }

    /// The current weights as an inference model, prepared like any loaded model (batch norms
    /// at their running statistics and folded, weights packed): for attacks and evaluation.
    pub fn inference(&self) -> Result<Model> {
        let mut g = self.graph.clone();
        g.nodes.drain(..self.prefix_len);
        g.input = self.base_input;
        for node in &mut g.nodes {
            if let Some(b) = node.op.as_any().downcast_ref::<BatchNormTrain>() {
                node.op = Box::new(BatchNorm { epsilon: b.epsilon });
            } else if let Some(c) = node.op.as_any().downcast_ref::<Conv>() {
                // Drop the packing of the training weights: preparing folds batch norms into
                // them, and packs them again afterwards.
                node.op = Box::new(Conv::new(c.window.clone(), c.group));
            } else if let Some(f) = node.op.as_any().downcast_ref::<FusedConv>() {
                node.op = Box::new(FusedConv {
                    conv: Conv::new(f.conv.window.clone(), f.conv.group),
                    ..f.clone()
                });
            }
        }
        let mut m = Model::new(g, self.declared.clone());
        m.prepare(self.image, self.norm.clone())?;
        Ok(m)
    }
}

/// Whether the output of node `v` comes from an operator whose bias may follow it.
fn is_affine(g: &Graph, v: ValueId) -> bool {
    g.nodes
        .iter()
        .find(|n| n.output == v)
        .is_some_and(|n| matches!(n.op.name(), "Conv" | "Gemm" | "MatMul"))
}

/// The learnable constants of `g` (see the module documentation), each once, in node order.
fn find_params(g: &Graph, learnable: &dyn Fn(&str) -> bool) -> Vec<Param> {
    let konst =
        |v: Option<ValueId>| v.filter(|&v| g.consts[v].as_ref().is_some_and(|t| t.is_f32()));
    let mut slots: Vec<(ValueId, ParamRole, &'static str, usize)> = Vec::new();
    let mut layers = 0;
    let mut frozen: HashSet<ValueId> = HashSet::new();
    for node in &g.nodes {
        let ins = &node.inputs;
        let at = |i: usize| konst(ins.get(i).copied().flatten());
        let mut mine: Vec<(ValueId, ParamRole)> = Vec::new();
        match node.op.name() {
            "Conv" | "Gemm" => {
                mine.extend(at(1).map(|v| (v, ParamRole::Weight)));
                mine.extend(at(2).map(|v| (v, ParamRole::Bias)));
                // A fused Conv's added operand, when it is a constant: a bias add.
                if node.op.as_any().is::<FusedConv>() {
                    mine.extend(at(3).map(|v| (v, ParamRole::Bias)));
                }
            }
            "MatMul" => match (at(0), at(1)) {
                (None, Some(v)) | (Some(v), None) => mine.push((v, ParamRole::Weight)),
                _ => {}
            },
            "BatchNormalization"
            | "LayerNormalization"
            | "GroupNormalization"
            | "InstanceNormalization" => {
                mine.extend(at(1).map(|v| (v, ParamRole::Scale)));
                mine.extend(at(2).map(|v| (v, ParamRole::Shift)));
            }
            "Add" => match (
                at(0),
                at(1),
                ins.first().copied().flatten(),
                ins.get(1).copied().flatten(),
            ) {
                (None, Some(b), Some(a), _) | (Some(b), None, _, Some(a)) if is_affine(g, a) => {
                    mine.push((b, ParamRole::Bias))
                }
                _ => {}
            },
            _ => {}
        }
        let name = node.op.name();
        for &v in ins.iter().flatten() {
            if g.consts[v].is_some() && !mine.iter().any(|(m, _)| *m == v) {
                frozen.insert(v);
            }
        }
        if !mine.is_empty() {
            layers += 1;
        }
        for (v, role) in mine {
            if !slots.iter().any(|(s, ..)| *s == v) {
                slots.push((v, role, name, layers - 1));
            }
        }
    }
    slots
        .into_iter()
        .filter(|(v, ..)| {
            let n = &g.names[*v];
            !frozen.contains(v) && !n.starts_with("faultline:") && learnable(n)
        })
        .map(|(v, role, op, layer)| Param {
            name: g.names[v].clone(),
            shape: g.consts[v].as_ref().map_or(vec![], |t| t.shape().to_vec()),
            role,
            op,
            layer,
            value: v,
        })
        .collect()
}
