//! The multi-layer perceptron: a stack of dense layers, each `y = f(x·Wᵀ + b)`, with the
//! forward pass on a mini-batch and the backward pass giving the gradient of every weight,
//! bias and (on request) of the input.
//!
//! Weights are stored as PyTorch stores `nn.Linear`'s (`weight` is `[out, in]` row-major), so
//! files map one-to-one onto a PyTorch state dict. Batches are row-major `[n, features]`.
//! All products go through the `gemm` crate; the backward pass keeps only the layer outputs
//! (each activation's derivative is written in terms of its output).

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::{check_len, Error, Result};
use crate::rng;
use crate::standardize::Standardizer;
use faultline_matmul::View;

/// Products smaller than this many multiply-adds run on one thread: below it, splitting over
/// rayon costs more than it saves (measured on the notebook net's shapes).
const PARALLEL_MIN_FLOPS: usize = 1 << 20;

/// `c[m×n] = a[m×k] · b[k×n]` (`accumulate`: `c += a · b`), `c` row-major and contiguous, split
/// over the current rayon pool when large enough (the result does not depend on the split).
fn matmul(m: usize, n: usize, k: usize, c: &mut [f32], accumulate: bool, a: View, b: View) {
    let parallel = m * n * k >= PARALLEL_MIN_FLOPS;
    faultline_matmul::matmul(m, n, k, c, n, accumulate, a, b, parallel);
}

/// Rows per chunk in [`Mlp::forward`], bounding the memory of inference on large sets.
pub const DEFAULT_FORWARD_CHUNK: usize = 8192;

/// Shape and activations of an [`Mlp`].
///
/// Layer `i < hidden.len()` maps to `hidden[i]` units followed by `hidden_activations[i]`;
/// the last layer maps to `output` units followed by `output_activation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpSpec {
    /// Number of input features.
    pub input: usize,
    /// Width of each hidden layer (may be empty: a single linear map).
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer (same length as `hidden`).
    pub hidden_activations: Vec<Activation>,
    /// Number of outputs.
    pub output: usize,
    /// Activation after the last layer.
    pub output_activation: Activation,
}

impl MlpSpec {
    /// The same activation after every hidden layer.
    pub fn uniform(
        input: usize,
        hidden: Vec<usize>,
        activation: Activation,
        output: usize,
        output_activation: Activation,
    ) -> Self {
        let hidden_activations = vec![activation; hidden.len()];
        MlpSpec {
            input,
            hidden,
            hidden_activations,
            output,
            output_activation,
        }
    }

    /// The learned pseudo-margin network of the margin-consistency notebook (methods.md §5.5,
    /// `CNET(in_features, 512, depth=4)`):
    /// `Linear(input, 512) → Linear(512, 512) → ReLU → Linear(512, 512) → ReLU →
    /// Linear(512, 1) → sigmoid`, with no non-linearity after the first layer, as released.
    pub fn pseudo_margin(input: usize) -> Self {
        MlpSpec {
            input,
            hidden: vec![512, 512, 512],
            hidden_activations: vec![Activation::Identity, Activation::Relu, Activation::Relu],
            output: 1,
            output_activation: Activation::Sigmoid,
        }
    }

    /// Checks that every width is positive and there is one activation per hidden layer.
    pub fn validate(&self) -> Result<()> {
        if self.input == 0 || self.output == 0 {
            return Err(Error::Spec(format!(
                "input ({}) and output ({}) must be positive",
                self.input, self.output
            )));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(Error::Spec(format!("hidden layer {i} has width 0")));
        }
        let mut total = 0usize;
        for (i, o, _) in self.layer_shapes() {
            total = i
                .checked_mul(o)
                .and_then(|w| w.checked_add(o))
                .and_then(|p| p.checked_add(total))
                .ok_or_else(|| Error::Spec("parameter count overflows".into()))?;
        }
        if self.hidden.len() != self.hidden_activations.len() {
            return Err(Error::Spec(format!(
                "{} hidden layers but {} hidden activations",
                self.hidden.len(),
                self.hidden_activations.len()
            )));
        }
        Ok(())
    }

    /// `(in, out, activation)` of every layer, first to last.
    pub fn layer_shapes(&self) -> Vec<(usize, usize, Activation)> {
        let mut shapes = Vec::with_capacity(self.hidden.len() + 1);
        let mut prev = self.input;
        for (&h, &a) in self.hidden.iter().zip(&self.hidden_activations) {
            shapes.push((prev, h, a));
            prev = h;
        }
        shapes.push((prev, self.output, self.output_activation));
        shapes
    }
}

/// One dense layer `y = f(x·Wᵀ + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    input: usize,
    output: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

impl Linear {
    /// Input width.
    pub fn input(&self) -> usize {
        self.input
    }
    /// Output width.
    pub fn output(&self) -> usize {
        self.output
    }
    /// The activation after the affine map.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Weight, `[output, input]` row-major (PyTorch's layout).
    pub fn weight(&self) -> &[f32] {
        &self.weight
    }
    /// Bias, `[output]`.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }
    /// Mutable weight (for loading or editing; the length is fixed).
    pub fn weight_mut(&mut self) -> &mut [f32] {
        &mut self.weight
    }
    /// Mutable bias.
    pub fn bias_mut(&mut self) -> &mut [f32] {
        &mut self.bias
    }

    /// `out[n×o] = f(x[n×i]·Wᵀ + b)`.
    fn forward(&self, x: &[f32], n: usize, out: &mut Vec<f32>) {
        out.clear();
        out.reserve(n * self.output);
        for _ in 0..n {
            out.extend_from_slice(&self.bias);
        }
        matmul(
            n,
            self.output,
            self.input,
            out,
            true,
            View::rows(x, self.input),
            View::rows_t(&self.weight, self.input),
        );
        self.activation.apply(out);
    }
}

/// What the forward pass keeps for the backward pass: the (standardised) input and every
/// layer's output. Reuse one `Trace` across steps to avoid reallocating.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    n: usize,
    activations: Vec<Vec<f32>>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Trace::default()
    }
    /// Number of rows in the traced batch.
    pub fn n(&self) -> usize {
        self.n
    }
    /// The network's output for the traced batch, `[n, output]`.
    pub fn output(&self) -> &[f32] {
        self.activations.last().map(|v| v.as_slice()).unwrap_or(&[])
    }
}

/// Gradients of a scalar loss with respect to every parameter (same layouts as the
/// parameters) and, when asked for, the raw (unstandardised) input `[n, input]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gradients {
    /// `dL/dW` per layer, `[out, in]`.
    pub weights: Vec<Vec<f32>>,
    /// `dL/db` per layer, `[out]`.
    pub biases: Vec<Vec<f32>>,
    /// `dL/dx`, `[n, input]`; empty unless requested.
    pub input: Vec<f32>,
}

impl Gradients {
    /// Parameter gradients in [`Mlp::parameters`] order: `W0, b0, W1, b1, …`.
    pub fn slices(&self) -> Vec<&[f32]> {
        self.weights
            .iter()
            .zip(&self.biases)
            .flat_map(|(w, b)| [w.as_slice(), b.as_slice()])
            .collect()
    }
}

/// A multi-layer perceptron built from an [`MlpSpec`], optionally with an input
/// [`Standardizer`] applied before the first layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    spec: MlpSpec,
    layers: Vec<Linear>,
    standardizer: Option<Standardizer>,
}

impl Mlp {
    /// Builds the network with PyTorch's default `nn.Linear` initialisation
    /// (`kaiming_uniform_(a = √5)`): weights and biases `~ U(−1/√fan_in, 1/√fan_in)`,
    /// drawn layer by layer (weight row-major, then bias) from a ChaCha8 stream of `seed`.
    pub fn new(spec: MlpSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let mut r = rng::stream(seed, "mlp-init");
        let layers = spec
            .layer_shapes()
            .into_iter()
            .map(|(input, output, activation)| {
                let bound = 1.0 / (input as f32).sqrt();
                let mut draw = |len: usize| -> Vec<f32> {
                    (0..len)
                        .map(|_| (2.0 * rng::uniform(&mut r) - 1.0) * bound)
                        .collect()
                };
                let weight = draw(output * input);
                let bias = draw(output);
                Linear {
                    input,
                    output,
                    weight,
                    bias,
                    activation,
                }
            })
            .collect();
        Ok(Mlp {
            spec,
            layers,
            standardizer: None,
        })
    }

    /// The specification it was built from.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }
    /// Number of input features.
    pub fn input(&self) -> usize {
        self.spec.input
    }
    /// Number of outputs.
    pub fn output(&self) -> usize {
        self.spec.output
    }
    /// The layers, first to last.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
    /// Mutable layers (weights can be edited in place; shapes cannot change).
    pub fn layers_mut(&mut self) -> &mut [Linear] {
        &mut self.layers
    }
    /// The input standardiser, if any.
    pub fn standardizer(&self) -> Option<&Standardizer> {
        self.standardizer.as_ref()
    }
    /// Sets or removes the input standardiser; its width must equal the input width.
    pub fn set_standardizer(&mut self, standardizer: Option<Standardizer>) -> Result<()> {
        if let Some(s) = &standardizer {
            if s.features() != self.input() {
                return Err(Error::Param {
                    name: "standardizer",
                    reason: format!(
                        "has {} features, the network takes {}",
                        s.features(),
                        self.input()
                    ),
                });
            }
        }
        self.standardizer = standardizer;
        Ok(())
    }

    /// Number of trainable values.
    pub fn num_parameters(&self) -> usize {
        self.parameter_sizes().iter().sum()
    }
    /// Lengths of the parameter tensors in `W0, b0, W1, b1, …` order.
    pub fn parameter_sizes(&self) -> Vec<usize> {
        self.layers
            .iter()
            .flat_map(|l| [l.weight.len(), l.bias.len()])
            .collect()
    }
    /// The parameter tensors in `W0, b0, W1, b1, …` order.
    pub fn parameters(&self) -> Vec<&[f32]> {
        self.layers
            .iter()
            .flat_map(|l| [l.weight.as_slice(), l.bias.as_slice()])
            .collect()
    }
    /// Mutable parameter tensors in `W0, b0, W1, b1, …` order (what an optimizer steps).
    pub fn parameters_mut(&mut self) -> Vec<&mut [f32]> {
        self.layers
            .iter_mut()
            .flat_map(|l| [l.weight.as_mut_slice(), l.bias.as_mut_slice()])
            .collect()
    }

    /// Outputs `[n, output]` for `n` rows of `x` (`[n, input]`), in chunks of
    /// [`DEFAULT_FORWARD_CHUNK`] rows.
    pub fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        check_len("input", x, n, self.input())?;
        let mut out = Vec::with_capacity(n * self.output());
        let mut trace = Trace::new();
        let mut start = 0;
        while start < n {
            let rows = DEFAULT_FORWARD_CHUNK.min(n - start);
            let chunk = &x[start * self.input()..(start + rows) * self.input()];
            self.forward_trace(chunk, rows, &mut trace)?;
            out.extend_from_slice(trace.output());
            start += rows;
        }
        Ok(out)
    }

    /// Forward pass on `n` rows that keeps what [`Mlp::backward`] needs in `trace`;
    /// the outputs are `trace.output()`.
    pub fn forward_trace(&self, x: &[f32], n: usize, trace: &mut Trace) -> Result<()> {
        check_len("input", x, n, self.input())?;
        let layers = self.layers.len();
        trace.n = n;
        trace.activations.resize_with(layers + 1, Vec::new);
        let (first, rest) = trace.activations.split_at_mut(1);
        let a0 = &mut first[0];
        a0.clear();
        a0.extend_from_slice(x);
        if let Some(s) = &self.standardizer {
            s.apply_into(x, a0);
        }
        let mut prev: &[f32] = a0;
        for (layer, out) in self.layers.iter().zip(rest.iter_mut()) {
            layer.forward(prev, n, out);
            prev = out;
        }
        Ok(())
    }

    /// Backward pass: gradients of a loss `L` whose gradient with respect to the outputs of
    /// the traced batch is `grad_output` (`[n, output]`). With `want_input`, also `dL/dx`
    /// with respect to the raw input (through the standardiser).
    pub fn backward(
        &self,
        trace: &Trace,
        grad_output: &[f32],
        want_input: bool,
    ) -> Result<Gradients> {
        let mut grads = Gradients::default();
        self.backward_into(trace, grad_output, &mut grads, want_input)?;
        Ok(grads)
    }

    /// [`Mlp::backward`] into existing buffers (resized as needed), for training loops.
    ///
    /// Per layer, with `dZ = dY ⊙ f'(Y)`: `dW = dZᵀ·X`, `db = Σ_rows dZ`, `dX = dZ·W`.
    pub fn backward_into(
        &self,
        trace: &Trace,
        grad_output: &[f32],
        grads: &mut Gradients,
        want_input: bool,
    ) -> Result<()> {
        let n = trace.n;
        if trace.activations.len() != self.layers.len() + 1
            || trace
                .activations
                .iter()
                .zip(self.widths())
                .any(|(a, w)| a.len() != n * w)
        {
            return Err(Error::Param {
                name: "trace",
                reason: "was not produced by forward_trace on this network".into(),
            });
        }
        check_len("output gradient", grad_output, n, self.output())?;
        let layers = self.layers.len();
        grads.weights.resize_with(layers, Vec::new);
        grads.biases.resize_with(layers, Vec::new);
        let mut g = grad_output.to_vec();
        let mut g_prev = Vec::new();
        for l in (0..layers).rev() {
            let layer = &self.layers[l];
            let (i, o) = (layer.input, layer.output);
            layer.activation.backward(&trace.activations[l + 1], &mut g);
            let dw = &mut grads.weights[l];
            dw.resize(o * i, 0.0);
            matmul(
                o,
                i,
                n,
                dw,
                false,
                View::rows_t(&g, o),
                View::rows(&trace.activations[l], i),
            );
            let db = &mut grads.biases[l];
            db.clear();
            db.resize(o, 0.0);
            for row in g.chunks_exact(o) {
                db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
            }
            if l > 0 || want_input {
                g_prev.resize(n * i, 0.0);
                matmul(
                    n,
                    i,
                    o,
                    &mut g_prev,
                    false,
                    View::rows(&g, o),
                    View::rows(&layer.weight, i),
                );
                std::mem::swap(&mut g, &mut g_prev);
            }
        }
        grads.input.clear();
        if want_input {
            if let Some(s) = &self.standardizer {
                for row in g.chunks_exact_mut(self.input()) {
                    row.iter_mut().zip(s.std()).for_each(|(v, &sd)| *v /= sd);
                }
            }
            grads.input = g;
        }
        Ok(())
    }

    /// Widths of the input and of every layer's output.
    fn widths(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.input()).chain(self.layers.iter().map(|l| l.output))
    }

    /// Rebuilds a network from a spec and its parameters in `W0, b0, W1, b1, …` order.
    pub fn from_parameters(spec: MlpSpec, parameters: Vec<Vec<f32>>) -> Result<Self> {
        spec.validate()?;
        let shapes = spec.layer_shapes();
        let sizes: Vec<usize> = shapes.iter().flat_map(|&(i, o, _)| [o * i, o]).collect();
        if parameters.len() != sizes.len() {
            return Err(Error::Param {
                name: "parameters",
                reason: format!(
                    "{} tensors, the spec needs {}",
                    parameters.len(),
                    sizes.len()
                ),
            });
        }
        for (k, (p, &s)) in parameters.iter().zip(&sizes).enumerate() {
            if p.len() != s {
                return Err(Error::Param {
                    name: "parameters",
                    reason: format!("tensor {k} has {} values, the spec needs {s}", p.len()),
                });
            }
        }
        let mut it = parameters.into_iter();
        let layers = shapes
            .into_iter()
            .map(|(input, output, activation)| Linear {
                input,
                output,
                weight: it.next().unwrap_or_default(),
                bias: it.next().unwrap_or_default(),
                activation,
            })
            .collect();
        Ok(Mlp {
            spec,
            layers,
            standardizer: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_margin_spec_matches_the_notebook_net() {
        let m = Mlp::new(MlpSpec::pseudo_margin(10), 0).unwrap();
        let shapes: Vec<_> = m
            .layers()
            .iter()
            .map(|l| (l.input(), l.output(), l.activation()))
            .collect();
        use Activation::*;
        assert_eq!(
            shapes,
            vec![
                (10, 512, Identity),
                (512, 512, Relu),
                (512, 512, Relu),
                (512, 1, Sigmoid)
            ]
        );
        // 10·512+512 + 2·(512·512+512) + 512+1
        assert_eq!(m.num_parameters(), 5632 + 2 * 262_656 + 513);
    }

    #[test]
    fn init_follows_pytorch_bounds_and_seed() {
        let spec = MlpSpec::uniform(16, vec![64], Activation::Relu, 4, Activation::Identity);
        let a = Mlp::new(spec.clone(), 7).unwrap();
        assert_eq!(a, Mlp::new(spec.clone(), 7).unwrap());
        assert_ne!(a, Mlp::new(spec, 8).unwrap());
        // fan_in 16 → bound 0.25; fan_in 64 → bound 0.125; the draws should fill the range.
        for (l, bound) in a.layers().iter().zip([0.25f32, 0.125]) {
            let max = l.weight().iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(max <= bound && max > 0.9 * bound, "{max} vs {bound}");
            assert!(l.bias().iter().all(|b| b.abs() <= bound));
        }
    }

    #[test]
    fn forward_matches_hand_computation() {
        // One hidden ReLU unit: h = relu(1·x0 − 2·x1 + 0.5), y = 3h − 1.
        let spec = MlpSpec::uniform(2, vec![1], Activation::Relu, 1, Activation::Identity);
        let m = Mlp::from_parameters(
            spec,
            vec![vec![1.0, -2.0], vec![0.5], vec![3.0], vec![-1.0]],
        )
        .unwrap();
        let y = m.forward(&[1.0, 0.0, 0.0, 1.0], 2).unwrap();
        assert_eq!(y, vec![3.0 * 1.5 - 1.0, -1.0]);
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let spec = MlpSpec::uniform(3, vec![4], Activation::Tanh, 2, Activation::Identity);
        let m = Mlp::new(spec, 0).unwrap();
        assert!(matches!(m.forward(&[0.0; 5], 2), Err(Error::Shape { .. })));
        let mut t = Trace::new();
        m.forward_trace(&[0.0; 6], 2, &mut t).unwrap();
        assert!(matches!(
            m.backward(&t, &[0.0; 3], false),
            Err(Error::Shape { .. })
        ));
        let other = Mlp::new(
            MlpSpec::uniform(3, vec![5], Activation::Tanh, 2, Activation::Identity),
            0,
        )
        .unwrap();
        assert!(other.backward(&t, &[0.0; 4], false).is_err());
        let bad = MlpSpec {
            hidden_activations: vec![],
            ..MlpSpec::uniform(3, vec![4], Activation::Tanh, 2, Activation::Identity)
        };
        assert!(matches!(Mlp::new(bad, 0), Err(Error::Spec(_))));
        assert!(Mlp::new(
            MlpSpec::uniform(3, vec![0], Activation::Relu, 1, Activation::Identity),
            0
        )
        .is_err());
    }

    #[test]
    fn oversized_specs_and_parameter_lists_are_errors() {
        let huge = MlpSpec::uniform(
            usize::MAX / 2,
            vec![4],
            Activation::Relu,
            1,
            Activation::Identity,
        );
        assert!(matches!(Mlp::new(huge, 0), Err(Error::Spec(_))));
        let spec = MlpSpec::uniform(2, vec![1], Activation::Relu, 1, Activation::Identity);
        assert!(Mlp::from_parameters(spec.clone(), vec![vec![0.0; 2], vec![0.0]]).is_err());
        let short = vec![vec![0.0; 2], vec![0.0], vec![0.0; 2], vec![0.0]];
        assert!(Mlp::from_parameters(spec, short).is_err());
    }

    #[test]
    fn forward_in_chunks_equals_one_trace() {
        let spec = MlpSpec::uniform(3, vec![8], Activation::Relu, 2, Activation::Sigmoid);
        let m = Mlp::new(spec, 1).unwrap();
        let n = DEFAULT_FORWARD_CHUNK + 5;
        let x: Vec<f32> = (0..n * 3)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let mut t = Trace::new();
        m.forward_trace(&x, n, &mut t).unwrap();
        // Chunks and one trace block their products differently: equal up to float rounding.
        let (a, b) = (m.forward(&x, n).unwrap(), t.output().to_vec());
        assert_eq!(a.len(), b.len());
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() <= 1e-6 * u.abs().max(1.0), "{u} vs {v}");
        }
    }
}
