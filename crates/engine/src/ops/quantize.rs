//! Quantization operators: QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul,
//! MatMulInteger and ConvInteger, as ONNX defines them and ONNX Runtime computes them.
//!
//! # Forward (ONNX Runtime's integer semantics)
//! - QuantizeLinear: `q = saturate(round_half_even(x / s) + zp)` (MLAS `MlasQuantizeLinear`:
//!   float division, `nearbyint`, then the zero point, then clamping to the type's range).
//! - DequantizeLinear: `x = (q − zp)·s`.
//! - MatMulInteger / ConvInteger: the integer accumulation `Σ (a − a_zp)(b − b_zp)`.
//! - QLinearMatMul / QLinearConv: the same accumulation (plus QLinearConv's int32 bias), then
//!   `y = saturate(round_half_even(acc·(s_a·s_b / s_y)) + y_zp)` with the multiplier computed in
//!   f32 as ORT's `MlasRequantizeOutput` does.
//!
//! Scales and zero points are per tensor (one value) or per axis (one per index of `axis`;
//! QLinearConv's weights along the output channels, QLinearMatMul's B along its columns).
//! Integer values travel as float32 tensors holding whole numbers (the engine's two element
//! types are f32 and i64, and gradients flow through f32); integer constants (int8 weights)
//! arrive as i64 and are read either way.
//!
//! Accumulation runs through the engine's f32 GEMM (MatMul; Conv with the im2col kernel, not
//! Winograd, whose transforms are inexact): products of integers are exact in f32 and so is
//! every partial sum below 2²⁴ in magnitude. An int8 × uint8 product is at most 2¹⁶, so that
//! holds for any reduction of at most 256 terms and, in practice, far beyond (partial sums of
//! centred activations and weights stay well below the bound); there is no hand-written
//! integer GEMM for the rare case above it.
//!
//! # Gradients: straight-through estimation
//! Rounding is treated as the identity inside the clip range and the gradient is zero where the
//! value saturated (Bengio et al. 2013, *Estimating or propagating gradients through stochastic
//! neurons*, arXiv 1308.3432): QuantizeLinear passes `g/s` where `lo ≤ round(x/s) + zp ≤ hi`,
//! DequantizeLinear `g·s`, and the QLinear operators `g·m` (m the requantization multiplier)
//! where the output did not saturate, then the product's own gradient on the centred operands.
//! A Q → DQ pair is thus the identity inside its range, so attacks run on quantized models.
//! Scales and zero points get no gradient.

use super::conv::{Conv, Kernel};
use super::{impl_any, input, MatMul, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{Data, Tensor};

/// The integer range of a quantized element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QRange {
    /// Smallest value.
    pub lo: i64,
    /// Largest value.
    pub hi: i64,
}

impl QRange {
    /// int8: [−128, 127].
    pub const INT8: QRange = QRange { lo: -128, hi: 127 };
    /// uint8: [0, 255] (ONNX's default when no zero point is given).
    pub const UINT8: QRange = QRange { lo: 0, hi: 255 };
    /// int16.
    pub const INT16: QRange = QRange {
        lo: -32768,
        hi: 32767,
    };
    /// uint16.
    pub const UINT16: QRange = QRange { lo: 0, hi: 65535 };
    /// int4: [−8, 7].
    pub const INT4: QRange = QRange { lo: -8, hi: 7 };
    /// uint4: [0, 15].
    pub const UINT4: QRange = QRange { lo: 0, hi: 15 };
    /// int32 (accumulators: no saturation in practice).
    pub const INT32: QRange = QRange {
        lo: i32::MIN as i64,
        hi: i32::MAX as i64,
    };
    fn clamp(self, v: f32) -> f32 {
        v.clamp(self.lo as f32, self.hi as f32)
    }
    fn holds(self, v: f32) -> bool {
        v >= self.lo as f32 && v <= self.hi as f32
    }
}

/// `q = saturate(round_half_even(x / s) + zp)` for one value.
pub fn quantize(x: f32, s: f32, zp: f32, r: QRange) -> f32 {
    r.clamp((x / s).round_ties_even() + zp)
}

/// `x = (q − zp)·s` for one value.
pub fn dequantize(q: f32, s: f32, zp: f32) -> f32 {
    (q - zp) * s
}

/// The elements of an integer-valued tensor (f32 or i64) as floats.
fn values(op: &'static str, t: &Tensor) -> Result<Vec<f32>> {
    match t.data() {
        Data::F32(v) => Ok(v.clone()),
        Data::I64(v) => {
            if let Some(x) = v.iter().find(|x| x.unsigned_abs() > 1 << 24) {
                return Err(shape_err(
                    op,
                    format!("integer {x} is beyond f32's exact range"),
                ));
            }
            Ok(v.iter().map(|&x| x as f32).collect())
        }
    }
}

/// Scales and zero points broadcast over a tensor of `shape`: per tensor (one value) or per
/// axis (one per index along `axis`). Returns them per index of the axis (length 1 per
/// tensor), and the stride of the axis (elements per index, within one outer slice).
struct Params {
    scale: Vec<f32>,
    zp: Vec<f32>,
    inner: usize,
}

impl Params {
    fn new(
        op: &'static str,
        shape: &[usize],
        axis: i64,
        scale: &Tensor,
        zp: Option<&Tensor>,
    ) -> Result<Params> {
        let scale = values(op, scale)?;
        let zp = match zp {
            Some(z) => values(op, z)?,
            None => vec![0.0; scale.len()],
        };
        if zp.len() != scale.len() {
            return Err(shape_err(
                op,
                format!("{} scales but {} zero points", scale.len(), zp.len()),
            ));
        }
        if scale.len() == 1 {
            return Ok(Params {
                scale,
                zp,
                inner: shape.iter().product::<usize>().max(1),
            });
        }
        let r = shape.len() as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if !(0..r).contains(&a) || shape[a as usize] != scale.len() {
            return Err(shape_err(
                op,
                format!(
                    "{} scales do not fit axis {axis} of shape {shape:?} (blocked quantization \
                     is not supported)",
                    scale.len()
                ),
            ));
        }
        Ok(Params {
            scale,
            zp,
            inner: shape[a as usize + 1..].iter().product(),
        })
    }
    /// The (scale, zero point) of element `e`.
    fn at(&self, e: usize) -> (f32, f32) {
        let c = if self.scale.len() == 1 {
            0
        } else {
            (e / self.inner) % self.scale.len()
        };
        (self.scale[c], self.zp[c])
    }
}

/// ONNX QuantizeLinear (per tensor or per axis) into the integer range `range` (the type of the
/// zero point, uint8 by default).
#[derive(Debug, Clone)]
pub struct QuantizeLinear {
    /// The axis of per-axis scales (default 1).
    pub axis: i64,
    /// The output type's range.
    pub range: QRange,
}

impl Op for QuantizeLinear {
    fn name(&self) -> &'static str {
        "QuantizeLinear"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("QuantizeLinear", inputs, 0)?;
        let p = Params::new(
            "QuantizeLinear",
            x.shape(),
            self.axis,
            input("QuantizeLinear", inputs, 1)?,
            inputs.get(2).copied().flatten(),
        )?;
        let xs = values("QuantizeLinear", x)?;
        let q = xs
            .iter()
            .enumerate()
            .map(|(e, &v)| {
                let (s, z) = p.at(e);
                quantize(v, s, z, self.range)
            })
            .collect();
        Ok(Tensor::f32(x.shape().to_vec(), q))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] {
            let x = input("QuantizeLinear", inputs, 0)?;
            let p = Params::new(
                "QuantizeLinear",
                x.shape(),
                self.axis,
                input("QuantizeLinear", inputs, 1)?,
                inputs.get(2).copied().flatten(),
            )?;
            let xs = values("QuantizeLinear", x)?;
            let g = grad
                .fs()
                .iter()
                .zip(&xs)
                .enumerate()
                .map(|(e, (&g, &v))| {
                    let (s, z) = p.at(e);
                    if self.range.holds((v / s).round_ties_even() + z) {
                        g / s
                    } else {
                        0.0
                    }
                })
                .collect();
            res[0] = Some(Tensor::f32(x.shape().to_vec(), g));
        }
        Ok(res)
    }
    impl_any!();
}

/// ONNX DequantizeLinear (per tensor or per axis).
#[derive(Debug, Clone)]
pub struct DequantizeLinear {
    /// The axis of per-axis scales (default 1).
    pub axis: i64,
}

impl DequantizeLinear {
    fn params(&self, inputs: &[Option<&Tensor>]) -> Result<(Vec<f32>, Params, Vec<usize>)> {
        let q = input("DequantizeLinear", inputs, 0)?;
        let p = Params::new(
            "DequantizeLinear",
            q.shape(),
            self.axis,
            input("DequantizeLinear", inputs, 1)?,
            inputs.get(2).copied().flatten(),
        )?;
        Ok((values("DequantizeLinear", q)?, p, q.shape().to_vec()))
    }
}

impl Op for DequantizeLinear {
    fn name(&self) -> &'static str {
        "DequantizeLinear"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let (q, p, shape) = self.params(inputs)?;
        let x = q
            .iter()
            .enumerate()
            .map(|(e, &v)| {
                let (s, z) = p.at(e);
                dequantize(v, s, z)
            })
            .collect();
        Ok(Tensor::f32(shape, x))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] {
            let (_, p, shape) = self.params(inputs)?;
            let g = grad
                .fs()
                .iter()
                .enumerate()
                .map(|(e, &g)| g * p.at(e).0)
                .collect();
            res[0] = Some(Tensor::f32(shape, g));
        }
        Ok(res)
    }
    impl_any!();
}

/// `t − zp`, the zero point per tensor or per index of `axis`.
fn centred(op: &'static str, t: &Tensor, zp: Option<&Tensor>, axis: i64) -> Result<Tensor> {
    let v = values(op, t)?;
    let Some(zp) = zp else {
        return Ok(Tensor::f32(t.shape().to_vec(), v));
    };
    let z = values(op, zp)?;
    let p = Params::new(
        op,
        t.shape(),
        axis,
        &Tensor::f32(vec![z.len()], z.clone()),
        Some(zp),
    )?;
    let c = v.iter().enumerate().map(|(e, &x)| x - p.at(e).1).collect();
    Ok(Tensor::f32(t.shape().to_vec(), c))
}

/// The integer product of the centred operands: a MatMul or an im2col convolution.
#[derive(Debug, Clone)]
enum Product {
    MatMul,
    Conv(Conv),
}

impl Product {
    fn forward(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Product::MatMul => MatMul.forward(&[Some(a), Some(b)]),
            Product::Conv(c) => c.forward_with(a, b, None, None, false, Kernel::Im2col),
        }
    }
    fn backward(
        &self,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        g: &Tensor,
        need: [bool; 2],
    ) -> Result<Vec<Option<Tensor>>> {
        match self {
            Product::MatMul => MatMul.backward(&[Some(a), Some(b)], out, g, &need),
            Product::Conv(c) => c.backward(&[Some(a), Some(b)], out, g, &need),
        }
    }
    /// Elements per output channel slice and the channel count of output shape `s` (conv: axis
    /// 1; matmul: the last axis).
    fn channels(&self, s: &[usize]) -> (usize, usize) {
        match self {
            Product::Conv(_) => (s[2..].iter().product(), s[1]),
            Product::MatMul => (1, *s.last().unwrap_or(&1)),
        }
    }
    fn weight_axis(&self, b: &Tensor) -> i64 {
        match self {
            Product::Conv(_) => 0,
            Product::MatMul => b.shape().len() as i64 - 1,
        }
    }
}

/// Where the operands of an integer product sit among the node's inputs.
#[derive(Debug, Clone, Copy)]
struct Layout {
    a: usize,
    a_zp: Option<usize>,
    b: usize,
    b_zp: Option<usize>,
}

/// MatMulInteger / ConvInteger (`A, B, a_zp, b_zp`) and QLinearMatMul / QLinearConv
/// (`A, a_s, a_zp, B, b_s, b_zp, y_s, y_zp[, bias]`): an integer product, requantized for the
/// QLinear forms.
#[derive(Debug, Clone)]
pub struct IntegerProduct {
    name: &'static str,
    product: Product,
    /// QLinear forms: the output range (type of `y_zp`).
    requantize: Option<QRange>,
}

impl IntegerProduct {
    /// ONNX MatMulInteger.
    pub fn matmul_integer() -> Self {
        IntegerProduct {
            name: "MatMulInteger",
            product: Product::MatMul,
            requantize: None,
        }
    }
    /// ONNX ConvInteger over `conv`'s window and groups.
    pub fn conv_integer(conv: Conv) -> Self {
        IntegerProduct {
            name: "ConvInteger",
            product: Product::Conv(conv),
            requantize: None,
        }
    }
    /// ONNX QLinearMatMul into `range`.
    pub fn qlinear_matmul(range: QRange) -> Self {
        IntegerProduct {
            name: "QLinearMatMul",
            product: Product::MatMul,
            requantize: Some(range),
        }
    }
    /// ONNX QLinearConv over `conv`'s window and groups, into `range`.
    pub fn qlinear_conv(conv: Conv, range: QRange) -> Self {
        IntegerProduct {
            name: "QLinearConv",
            product: Product::Conv(conv),
            requantize: Some(range),
        }
    }
    fn layout(&self) -> Layout {
        match self.requantize {
            None => Layout {
                a: 0,
                a_zp: Some(2),
                b: 1,
                b_zp: Some(3),
            },
            Some(_) => Layout {
                a: 0,
                a_zp: Some(2),
                b: 3,
                b_zp: Some(5),
            },
        }
    }
    /// The centred operands and their integer product.
    fn accumulate(&self, inputs: &[Option<&Tensor>]) -> Result<(Tensor, Tensor, Tensor)> {
        let l = self.layout();
        let get = |i: Option<usize>| i.and_then(|i| inputs.get(i).copied().flatten());
        let a = input(self.name, inputs, l.a)?;
        let b = input(self.name, inputs, l.b)?;
        let ac = centred(self.name, a, get(l.a_zp), 0)?;
        let bc = centred(self.name, b, get(l.b_zp), self.product.weight_axis(b))?;
        let mut acc = self.product.forward(&ac, &bc)?;
        if let (Some(_), Some(bias)) = (self.requantize, inputs.get(8).copied().flatten()) {
            let bias = values(self.name, bias)?;
            let (inner, ch) = self.product.channels(acc.shape());
            if bias.len() != ch {
                return Err(shape_err(
                    self.name,
                    format!("{} bias values for {ch} output channels", bias.len()),
                ));
            }
            for (e, v) in acc.f32_mut().iter_mut().enumerate() {
                *v += bias[(e / inner) % ch];
            }
        }
        Ok((ac, bc, acc))
    }
    /// The requantization multiplier per output channel, `(s_a·s_b)/s_y` in f32, and `y_zp`.
    fn multipliers(&self, inputs: &[Option<&Tensor>], ch: usize) -> Result<(Vec<f32>, f32)> {
        let sa = values(self.name, input(self.name, inputs, 1)?)?;
        let sb = values(self.name, input(self.name, inputs, 4)?)?;
        let sy = values(self.name, input(self.name, inputs, 6)?)?;
        let zy = match inputs.get(7).copied().flatten() {
            Some(z) => values(self.name, z)?,
            None => vec![0.0],
        };
        if sa.len() != 1 || sy.len() != 1 || zy.len() != 1 || !(sb.len() == 1 || sb.len() == ch) {
            return Err(shape_err(
                self.name,
                "scales must be per tensor (the weights' may be per output channel)",
            ));
        }
        let m = (0..ch)
            .map(|c| sa[0] * sb[if sb.len() == 1 { 0 } else { c }] / sy[0])
            .collect();
        Ok((m, zy[0]))
    }
}

impl Op for IntegerProduct {
    fn name(&self) -> &'static str {
        self.name
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let (_, _, mut acc) = self.accumulate(inputs)?;
        if let Some(r) = self.requantize {
            let (inner, ch) = self.product.channels(acc.shape());
            let (m, zy) = self.multipliers(inputs, ch)?;
            for (e, v) in acc.f32_mut().iter_mut().enumerate() {
                *v = r.clamp((*v * m[(e / inner) % ch]).round_ties_even() + zy);
            }
        }
        Ok(acc)
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let l = self.layout();
        let mut res = vec![None; need.len()];
        let (na, nb) = (
            need.get(l.a).copied().unwrap_or(false),
            need.get(l.b).copied().unwrap_or(false),
        );
        if !(na || nb) {
            return Ok(res);
        }
        let (ac, bc, acc) = self.accumulate(inputs)?;
        let g = match self.requantize {
            None => grad.clone(),
            Some(r) => {
                let (inner, ch) = self.product.channels(acc.shape());
                let (m, zy) = self.multipliers(inputs, ch)?;
                let g = grad
                    .fs()
                    .iter()
                    .zip(acc.fs())
                    .enumerate()
                    .map(|(e, (&g, &a))| {
                        let mc = m[(e / inner) % ch];
                        if r.holds((a * mc).round_ties_even() + zy) {
                            g * mc
                        } else {
                            0.0
                        }
                    })
                    .collect();
                Tensor::f32(acc.shape().to_vec(), g)
            }
        };
        let mut gs = self.product.backward(&ac, &bc, &acc, &g, [na, nb])?;
        res[l.b] = gs.pop().flatten();
        res[l.a] = gs.pop().flatten();
        Ok(res)
    }
    impl_any!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let r = QRange::INT8;
        assert_eq!(quantize(0.5, 1.0, 0.0, r), 0.0);
        assert_eq!(quantize(1.5, 1.0, 0.0, r), 2.0);
        assert_eq!(quantize(2.5, 1.0, 0.0, r), 2.0);
        assert_eq!(quantize(-2.5, 1.0, 0.0, r), -2.0);
        assert_eq!(quantize(1000.0, 1.0, 0.0, r), 127.0);
        assert_eq!(quantize(-1000.0, 1.0, 3.0, r), -128.0);
        assert_eq!(quantize(-1.0, 0.1, 0.0, QRange::UINT8), 0.0);
        assert_eq!(quantize(7.4, 1.0, 0.0, QRange::INT4), 7.0);
        assert_eq!(quantize(9.0, 1.0, 0.0, QRange::INT4), 7.0);
    }

    #[test]
    fn grid_values_round_trip_exactly_per_tensor_and_per_axis() {
        // Every representable value q of each range dequantizes to x = (q − zp)·s, which
        // quantizes back to q exactly (per tensor, and per axis with a scale per channel).
        for (r, zp) in [
            (QRange::INT8, 0.0f32),
            (QRange::INT8, -5.0),
            (QRange::UINT8, 128.0),
            (QRange::UINT8, 17.0),
            (QRange::INT4, 0.0),
            (QRange::UINT4, 8.0),
        ] {
            for s in [0.0123f32, 0.5, 1.0 / 255.0, 3.7] {
                for q in r.lo..=r.hi {
                    let x = dequantize(q as f32, s, zp);
                    assert_eq!(quantize(x, s, zp, r), q as f32, "{r:?} s {s} zp {zp} q {q}");
                }
            }
        }
        let q = Tensor::f32(vec![2, 3], vec![-128.0, 0.0, 127.0, 5.0, -7.0, 100.0]);
        let s = Tensor::f32(vec![2], vec![0.02, 0.3]);
        let z = Tensor::i64(vec![2], vec![1, -3]);
        let x = DequantizeLinear { axis: 0 }
            .forward(&[Some(&q), Some(&s), Some(&z)])
            .unwrap();
        assert_eq!(x.fs()[3], (5.0 + 3.0) * 0.3);
        let back = QuantizeLinear {
            axis: 0,
            range: QRange::INT8,
        }
        .forward(&[Some(&x), Some(&s), Some(&z)])
        .unwrap();
        assert_eq!(back.fs(), q.fs());
    }

    #[test]
    fn a_quantize_dequantize_pair_passes_gradients_straight_through_inside_its_range() {
        let x = Tensor::f32(vec![1, 4], vec![0.1, -0.2, 5.0, -5.0]);
        let s = Tensor::scalar(0.01);
        let z = Tensor::i64(vec![], vec![0]);
        let qop = QuantizeLinear {
            axis: 1,
            range: QRange::INT8,
        };
        let q = qop.forward(&[Some(&x), Some(&s), Some(&z)]).unwrap();
        let d = DequantizeLinear { axis: 1 };
        let y = d.forward(&[Some(&q), Some(&s), Some(&z)]).unwrap();
        let g = Tensor::f32(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let gq = d.backward(
            &[Some(&q), Some(&s), Some(&z)],
            &y,
            &g,
            &[true, false, false],
        );
        let gq = gq.unwrap()[0].clone().unwrap();
        let gx = qop
            .backward(
                &[Some(&x), Some(&s), Some(&z)],
                &q,
                &gq,
                &[true, false, false],
            )
            .unwrap()[0]
            .clone()
            .unwrap();
        // 0.1 and −0.2 are inside [−1.28, 1.27]: identity; ±5 saturate: zero.
        assert!((gx.fs()[0] - 1.0).abs() < 1e-5 && (gx.fs()[1] - 2.0).abs() < 1e-5);
        assert_eq!(&gx.fs()[2..], &[0.0, 0.0]);
    }

    #[test]
    fn qlinear_matmul_matches_the_integer_definition() {
        // A 2×3 uint8 · 3×2 int8 with zero points, checked against i64 arithmetic.
        let a = [10i64, 200, 37, 255, 0, 128];
        let b = [-128i64, 5, 17, 127, -60, 33];
        let (za, zb, zy) = (128i64, 2i64, 5i64);
        let (sa, sb, sy) = (0.02f32, 0.01f32, 0.3f32);
        let t = |s: Vec<usize>, v: &[i64]| Tensor::i64(s, v.to_vec());
        let ins = [
            t(vec![2, 3], &a),
            Tensor::scalar(sa),
            t(vec![], &[za]),
            t(vec![3, 2], &b),
            Tensor::scalar(sb),
            t(vec![], &[zb]),
            Tensor::scalar(sy),
            t(vec![], &[zy]),
        ];
        let refs: Vec<Option<&Tensor>> = ins.iter().map(Some).collect();
        let y = IntegerProduct::qlinear_matmul(QRange::UINT8)
            .forward(&refs)
            .unwrap();
        let m = sa * sb / sy;
        for i in 0..2 {
            for j in 0..2 {
                let acc: i64 = (0..3)
                    .map(|k| (a[i * 3 + k] - za) * (b[k * 2 + j] - zb))
                    .sum();
                let want = ((acc as f32 * m).round_ties_even() + zy as f32).clamp(0.0, 255.0);
                assert_eq!(y.fs()[i * 2 + j], want, "({i},{j}) acc {acc}");
            }
        }
        let mm = IntegerProduct::matmul_integer()
            .forward(&[Some(&ins[0]), Some(&ins[3]), Some(&ins[2]), Some(&ins[5])])
            .unwrap();
        let acc00: i64 = (0..3).map(|k| (a[k] - za) * (b[k * 2] - zb)).sum();
        assert_eq!(mm.fs()[0], acc00 as f32);
    }
}
