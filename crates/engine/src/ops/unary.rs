//! Elementwise activations: Relu, LeakyRelu, Sigmoid, Tanh, Erf, Gelu, Clip, HardSigmoid,
//! HardSwish, Mish, Softplus, Elu, Neg, Exp, Log, Sqrt, Reciprocal, Abs, Sign, Floor, Ceil,
//! Round, Not, and the pass-through Identity/Dropout (inference). Neg, Abs, Sign, Floor, Ceil,
//! Round, Not and Identity also take integers (shape arithmetic). One struct with a kind keeps the
//! forward map and its derivative side by side.

use super::{backward_replicated, impl_any, input_f32, Copies, Op};
use crate::error::Result;
use crate::tensor::Tensor;

/// Which elementwise function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryKind {
    /// max(x, 0); derivative 0 at 0 (PyTorch's convention).
    Relu,
    /// x for x ≥ 0, αx otherwise.
    LeakyRelu(f32),
    /// 1 / (1 + e^{-x}).
    Sigmoid,
    /// tanh x.
    Tanh,
    /// The Gauss error function.
    Erf,
    /// x·Φ(x) (exact) or its tanh approximation.
    Gelu {
        /// Use the tanh approximation.
        tanh: bool,
    },
    /// min(max(x, lo), hi); gradient passes where lo ≤ x ≤ hi (as torch.clamp).
    Clip(f32, f32),
    /// −x.
    Neg,
    /// e^x.
    Exp,
    /// √x.
    Sqrt,
    /// |x|.
    Abs,
    /// x (Identity, Dropout in inference).
    Identity,
    /// max(0, min(1, αx + β)); gradient α inside (0, 1).
    HardSigmoid {
        /// Slope (ONNX default 0.2; PyTorch exports 1/6).
        alpha: f32,
        /// Offset (default 0.5).
        beta: f32,
    },
    /// x·max(0, min(1, x/6 + 1/2)).
    HardSwish,
    /// x·tanh(softplus(x)).
    Mish,
    /// ln(1 + eˣ), computed stably.
    Softplus,
    /// x for x > 0, α(eˣ − 1) otherwise.
    Elu(f32),
    /// ln x.
    Log,
    /// 1/x.
    Reciprocal,
    /// −1, 0 or 1; gradient 0.
    Sign,
    /// ⌊x⌋; gradient 0.
    Floor,
    /// ⌈x⌉; gradient 0.
    Ceil,
    /// Round half to even; gradient 0.
    Round,
    /// Logical not of a boolean (stored as integers 0/1).
    Not,
}

/// An elementwise operator.
#[derive(Debug, Clone)]
pub struct Unary {
    /// The function applied.
    pub kind: UnaryKind,
}

impl Unary {
    /// Wraps a kind.
    pub fn new(kind: UnaryKind) -> Self {
        Unary { kind }
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// erf with float64 internals: |error| < 1.2e-7 (Numerical Recipes' erfc Chebyshev fit).
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

fn f(kind: UnaryKind, x: f32) -> f32 {
    match kind {
        UnaryKind::Relu => x.max(0.0),
        UnaryKind::LeakyRelu(a) => {
            if x >= 0.0 {
                x
            } else {
                a * x
            }
        }
        UnaryKind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryKind::Tanh => x.tanh(),
        UnaryKind::Erf => erf(x),
        UnaryKind::Gelu { tanh: false } => 0.5 * x * (1.0 + erf(x * FRAC_1_SQRT_2)),
        UnaryKind::Gelu { tanh: true } => {
            0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryKind::Clip(lo, hi) => x.max(lo).min(hi),
        UnaryKind::Neg => -x,
        UnaryKind::Exp => x.exp(),
        UnaryKind::Sqrt => x.sqrt(),
        UnaryKind::Abs => x.abs(),
        UnaryKind::Identity => x,
        UnaryKind::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        UnaryKind::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        UnaryKind::Mish => x * softplus(x).tanh(),
        UnaryKind::Softplus => softplus(x),
        UnaryKind::Elu(a) => {
            if x > 0.0 {
                x
            } else {
                a * x.exp_m1()
            }
        }
        UnaryKind::Log => x.ln(),
        UnaryKind::Reciprocal => 1.0 / x,
        UnaryKind::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryKind::Floor => x.floor(),
        UnaryKind::Ceil => x.ceil(),
        UnaryKind::Round => x.round_ties_even(),
        UnaryKind::Not => (x == 0.0) as u8 as f32,
    }
}

/// ln(1 + eˣ) without overflow for large x.
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// The integer version, for the kinds that accept integers.
fn f_int(kind: UnaryKind, x: i64) -> Option<i64> {
    Some(match kind {
        UnaryKind::Neg => x.wrapping_neg(),
        UnaryKind::Abs => x.wrapping_abs(),
        UnaryKind::Sign => x.signum(),
        UnaryKind::Floor | UnaryKind::Ceil | UnaryKind::Round | UnaryKind::Identity => x,
        UnaryKind::Not => (x == 0) as i64,
        UnaryKind::Relu => x.max(0),
        _ => return None,
    })
}

/// Derivative at input `x` with output `y`.
fn df(kind: UnaryKind, x: f32, y: f32) -> f32 {
    match kind {
        UnaryKind::Relu => (x > 0.0) as u8 as f32,
        UnaryKind::LeakyRelu(a) => {
            if x > 0.0 {
                1.0
            } else {
                a
            }
        }
        UnaryKind::Sigmoid => y * (1.0 - y),
        UnaryKind::Tanh => 1.0 - y * y,
        UnaryKind::Erf => std::f32::consts::FRAC_2_SQRT_PI * (-x * x).exp(),
        UnaryKind::Gelu { tanh: false } => {
            let cdf = 0.5 * (1.0 + erf(x * FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
            cdf + x * pdf
        }
        UnaryKind::Gelu { tanh: true } => {
            let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            0.5 * (1.0 + t)
                + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
        }
        UnaryKind::Clip(lo, hi) => (x >= lo && x <= hi) as u8 as f32,
        UnaryKind::Neg => -1.0,
        UnaryKind::Exp => y,
        UnaryKind::Sqrt => 0.5 / y,
        UnaryKind::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryKind::Identity => 1.0,
        UnaryKind::HardSigmoid { alpha, beta } => {
            let u = alpha * x + beta;
            if u > 0.0 && u < 1.0 {
                alpha
            } else {
                0.0
            }
        }
        UnaryKind::HardSwish => {
            if x < -3.0 {
                0.0
            } else if x > 3.0 {
                1.0
            } else {
                x / 3.0 + 0.5
            }
        }
        UnaryKind::Mish => {
            let sp = softplus(x);
            let t = sp.tanh();
            let sig = 1.0 / (1.0 + (-x).exp());
            t + x * (1.0 - t * t) * sig
        }
        UnaryKind::Softplus => 1.0 / (1.0 + (-x).exp()),
        UnaryKind::Elu(a) => {
            if x > 0.0 {
                1.0
            } else {
                y + a
            }
        }
        UnaryKind::Log => 1.0 / x,
        UnaryKind::Reciprocal => -y * y,
        UnaryKind::Sign
        | UnaryKind::Floor
        | UnaryKind::Ceil
        | UnaryKind::Round
        | UnaryKind::Not => 0.0,
    }
}

impl Op for Unary {
    fn name(&self) -> &'static str {
        match self.kind {
            UnaryKind::Relu => "Relu",
            UnaryKind::LeakyRelu(_) => "LeakyRelu",
            UnaryKind::Sigmoid => "Sigmoid",
            UnaryKind::Tanh => "Tanh",
            UnaryKind::Erf => "Erf",
            UnaryKind::Gelu { .. } => "Gelu",
            UnaryKind::Clip(..) => "Clip",
            UnaryKind::Neg => "Neg",
            UnaryKind::Exp => "Exp",
            UnaryKind::Sqrt => "Sqrt",
            UnaryKind::Abs => "Abs",
            UnaryKind::Identity => "Identity",
            UnaryKind::HardSigmoid { .. } => "HardSigmoid",
            UnaryKind::HardSwish => "HardSwish",
            UnaryKind::Mish => "Mish",
            UnaryKind::Softplus => "Softplus",
            UnaryKind::Elu(_) => "Elu",
            UnaryKind::Log => "Log",
            UnaryKind::Reciprocal => "Reciprocal",
            UnaryKind::Sign => "Sign",
            UnaryKind::Floor => "Floor",
            UnaryKind::Ceil => "Ceil",
            UnaryKind::Round => "Round",
            UnaryKind::Not => "Not",
        }
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = super::input(self.name(), inputs, 0)?;
        if self.kind == UnaryKind::Identity {
            return Ok(x.clone());
        }
        if let crate::tensor::Data::I64(v) = x.data() {
            let k = self.kind;
            if let Some(out) = v.iter().map(|&a| f_int(k, a)).collect::<Option<Vec<_>>>() {
                return Ok(Tensor::i64(x.shape().to_vec(), out));
            }
        }
        let x = input_f32(self.name(), inputs, 0)?;
        // The hot activations get their own loop so the compiler can vectorize them.
        Ok(match self.kind {
            UnaryKind::Relu => x.map_f32(|v| v.max(0.0)),
            UnaryKind::Clip(lo, hi) => x.map_f32(|v| v.max(lo).min(hi)),
            k => x.map_f32(|v| f(k, v)),
        })
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut out = vec![None; need.len()];
        if need[0] {
            let x = input_f32(self.name(), inputs, 0)?.fs();
            let y = output.fs();
            let k = self.kind;
            let g: Vec<f32> = if k == UnaryKind::Relu {
                // The hot case gets a loop without the per-element dispatch, so it vectorizes.
                grad.fs()
                    .iter()
                    .zip(x)
                    .map(|(&g, &x)| g * (x > 0.0) as u8 as f32)
                    .collect()
            } else {
                grad.fs()
                    .iter()
                    .zip(x.iter().zip(y))
                    .map(|(&g, (&x, &y))| g * df(k, x, y))
                    .collect()
            };
            out[0] = Some(Tensor::f32(grad.shape().to_vec(), g));
        }
        Ok(out)
    }
    /// A ReLU's gradient reads the kept input once for every copy.
    fn backward_copies(
        &self,
        inputs: &[Option<&Tensor>],
        output: &Tensor,
        grad: &Tensor,
        need: &[bool],
        c: Copies,
    ) -> Result<Vec<Option<Tensor>>> {
        if self.kind != UnaryKind::Relu || !need[0] || !c.batched(0) {
            return backward_replicated(self, inputs, output, grad, need, c);
        }
        let x = input_f32(self.name(), inputs, 0)?.fs();
        let mut g = Vec::with_capacity(grad.len());
        for gc in grad.fs().chunks(x.len().max(1)) {
            g.extend(gc.iter().zip(x).map(|(&g, &x)| g * (x > 0.0) as u8 as f32));
        }
        Ok(vec![Some(Tensor::f32(grad.shape().to_vec(), g))])
    }
    impl_any!();
}
