//! Add, Sub, Mul, Div, Pow, Mod, Max, Min, the comparisons Equal/Less/Greater/LessOrEqual/
//! GreaterOrEqual and the logical And/Or/Xor, with numpy broadcasting, on floats and (for shape
//! arithmetic) integers. Comparisons and logical operators give booleans as integers 0/1; their
//! gradient is zero.

use super::{impl_any, input, unbroadcast, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{strides, Data, Tensor};

/// Which arithmetic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b (integer division truncates, as ONNX specifies)
    Div,
    /// aᵇ; ∂a = b·aᵇ⁻¹, ∂b = ln a·aᵇ (0 where a ≤ 0).
    Pow,
    /// Remainder with the sign of the divisor (`fmod = false`, Python's %) or of the dividend
    /// (`fmod = true`, C's fmod); ∂a = 1, ∂b = −⌊a/b⌋ (truncated for fmod).
    Mod {
        /// C semantics.
        fmod: bool,
    },
    /// max(a, b); the gradient goes to the larger operand (to a on ties).
    Max,
    /// min(a, b); the gradient goes to the smaller operand (to a on ties).
    Min,
    /// a = b
    Equal,
    /// a < b
    Less,
    /// a > b
    Greater,
    /// a ≤ b
    LessOrEqual,
    /// a ≥ b
    GreaterOrEqual,
    /// a ∧ b (booleans)
    And,
    /// a ∨ b (booleans)
    Or,
    /// a ⊕ b (booleans)
    Xor,
}

impl BinaryKind {
    /// True for the operators whose result is a boolean (comparisons, logic).
    pub fn is_boolean(self) -> bool {
        matches!(
            self,
            BinaryKind::Equal
                | BinaryKind::Less
                | BinaryKind::Greater
                | BinaryKind::LessOrEqual
                | BinaryKind::GreaterOrEqual
                | BinaryKind::And
                | BinaryKind::Or
                | BinaryKind::Xor
        )
    }
}

/// Float result of `k` (booleans as 0/1).
#[inline]
fn apply_f32(k: BinaryKind, p: f32, q: f32) -> f32 {
    let b = |c: bool| c as u8 as f32;
    match k {
        BinaryKind::Add => p + q,
        BinaryKind::Sub => p - q,
        BinaryKind::Mul => p * q,
        BinaryKind::Div => p / q,
        BinaryKind::Pow => pow_f32(p, q),
        BinaryKind::Mod { fmod: true } => p % q,
        BinaryKind::Mod { fmod: false } => {
            let r = p % q;
            if r != 0.0 && (r < 0.0) != (q < 0.0) {
                r + q
            } else {
                r
            }
        }
        BinaryKind::Max => p.max(q),
        BinaryKind::Min => p.min(q),
        BinaryKind::Equal => b(p == q),
        BinaryKind::Less => b(p < q),
        BinaryKind::Greater => b(p > q),
        BinaryKind::LessOrEqual => b(p <= q),
        BinaryKind::GreaterOrEqual => b(p >= q),
        BinaryKind::And => b(p != 0.0 && q != 0.0),
        BinaryKind::Or => b(p != 0.0 || q != 0.0),
        BinaryKind::Xor => b((p != 0.0) != (q != 0.0)),
    }
}

/// aᵇ with the common exponents exact and fast (x², √x).
#[inline]
fn pow_f32(p: f32, q: f32) -> f32 {
    if q == 2.0 {
        p * p
    } else if q == 0.5 {
        p.sqrt()
    } else if q == 1.0 {
        p
    } else {
        p.powf(q)
    }
}

/// Integer result of `k`; None for division by zero.
#[inline]
fn apply_i64(k: BinaryKind, p: i64, q: i64) -> Option<i64> {
    let b = |c: bool| c as i64;
    Some(match k {
        BinaryKind::Add => p.wrapping_add(q),
        BinaryKind::Sub => p.wrapping_sub(q),
        BinaryKind::Mul => p.wrapping_mul(q),
        BinaryKind::Div => p.checked_div(q)?,
        BinaryKind::Pow => {
            if q < 0 {
                (p as f64).powf(q as f64) as i64
            } else {
                p.wrapping_pow(q.min(u32::MAX as i64) as u32)
            }
        }
        BinaryKind::Mod { fmod: true } => p.checked_rem(q)?,
        BinaryKind::Mod { fmod: false } => {
            let r = p.checked_rem(q)?;
            if r != 0 && (r < 0) != (q < 0) {
                r + q
            } else {
                r
            }
        }
        BinaryKind::Max => p.max(q),
        BinaryKind::Min => p.min(q),
        BinaryKind::Equal => b(p == q),
        BinaryKind::Less => b(p < q),
        BinaryKind::Greater => b(p > q),
        BinaryKind::LessOrEqual => b(p <= q),
        BinaryKind::GreaterOrEqual => b(p >= q),
        BinaryKind::And => b(p != 0 && q != 0),
        BinaryKind::Or => b(p != 0 || q != 0),
        BinaryKind::Xor => b((p != 0) != (q != 0)),
    })
}

/// An elementwise binary operator.
#[derive(Debug, Clone)]
pub struct Binary {
    /// The operation.
    pub kind: BinaryKind,
}

impl Binary {
    /// Wraps a kind.
    pub fn new(kind: BinaryKind) -> Self {
        Binary { kind }
    }
}

/// The broadcast shape of `a` and `b`.
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(shape_err(op, format!("cannot broadcast {a:?} with {b:?}")));
        };
    }
    Ok(out)
}

/// Strides of `shape` seen inside `out` (0 on broadcast dimensions).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let s = strides(shape);
    let pad = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < pad || shape[i - pad] == 1 {
                0
            } else {
                s[i - pad]
            }
        })
        .collect()
}

/// Applies `f` over the broadcast of `a` and `b` into `out_shape`.
pub(crate) fn zip_broadcast<T: Copy, U: Copy>(
    a: &[T],
    ash: &[usize],
    b: &[U],
    bsh: &[usize],
    out_shape: &[usize],
    f: impl Fn(T, U) -> T,
) -> Vec<T> {
    let n: usize = out_shape.iter().product();
    if ash == bsh {
        return a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect();
    }
    if b.len() == 1 && ash == out_shape {
        let y = b[0];
        return a.iter().map(|&x| f(x, y)).collect();
    }
    let sa = broadcast_strides(ash, out_shape);
    let sb = broadcast_strides(bsh, out_shape);
    let r = out_shape.len();
    let mut out = Vec::with_capacity(n);
    if r == 0 {
        out.push(f(a[0], b[0]));
        return out;
    }
    // `a` whole and `b` constant over the trailing axes (a per-channel mean or scale on NCHW
    // images): one value of `b` per run of `a`, a loop that vectorizes, where the odometer
    // below takes the run's last axis only (32 elements of a CIFAR image's row).
    let same = sb.iter().rev().take_while(|&&s| s == 0).count();
    let run: usize = out_shape[r - same..].iter().product();
    if ash == out_shape && same > 0 && same < r && run >= 8 {
        let (outer, sb) = (&out_shape[..r - same], &sb[..r - same]);
        let mut idx = vec![0usize; outer.len()];
        let mut ob = 0usize;
        for chunk in a.chunks_exact(run) {
            let y = b[ob];
            out.extend(chunk.iter().map(|&x| f(x, y)));
            for d in (0..outer.len()).rev() {
                idx[d] += 1;
                ob += sb[d];
                if idx[d] < outer[d] {
                    break;
                }
                ob -= sb[d] * idx[d];
                idx[d] = 0;
            }
        }
        return out;
    }
    // Innermost dimension in a tight loop, outer dimensions by an odometer.
    let inner = out_shape[r - 1];
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    let mut idx = vec![0usize; r];
    let (mut oa, mut ob) = (0usize, 0usize);
    if inner == 0 {
        return out;
    }
    for _ in 0..n / inner {
        for j in 0..inner {
            out.push(f(a[oa + j * ia], b[ob + j * ib]));
        }
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < out_shape[d] {
                break;
            }
            oa -= sa[d] * idx[d];
            ob -= sb[d] * idx[d];
            idx[d] = 0;
        }
    }
    out
}

impl Op for Binary {
    fn name(&self) -> &'static str {
        match self.kind {
            BinaryKind::Add => "Add",
            BinaryKind::Sub => "Sub",
            BinaryKind::Mul => "Mul",
            BinaryKind::Div => "Div",
            BinaryKind::Pow => "Pow",
            BinaryKind::Mod { .. } => "Mod",
            BinaryKind::Max => "Max",
            BinaryKind::Min => "Min",
            BinaryKind::Equal => "Equal",
            BinaryKind::Less => "Less",
            BinaryKind::Greater => "Greater",
            BinaryKind::LessOrEqual => "LessOrEqual",
            BinaryKind::GreaterOrEqual => "GreaterOrEqual",
            BinaryKind::And => "And",
            BinaryKind::Or => "Or",
            BinaryKind::Xor => "Xor",
        }
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let a = input(self.name(), inputs, 0)?;
        let b = input(self.name(), inputs, 1)?;
        let shape = broadcast_shape(self.name(), a.shape(), b.shape())?;
        let k = self.kind;
        // Pow may raise floats to integer exponents; comparisons may meet a float constant.
        let (ca, cb);
        let (a, b) = if a.is_f32() != b.is_f32() && (k == BinaryKind::Pow || k.is_boolean()) {
            ca = a.cast(true);
            cb = b.cast(true);
            (&ca, &cb)
        } else {
            (a, b)
        };
        match (a.data(), b.data()) {
            (Data::F32(x), Data::F32(y)) => {
                // One instantiation per hot kind, so the elementwise loops vectorize.
                let (ash, bsh) = (a.shape(), b.shape());
                let v = match k {
                    BinaryKind::Add => zip_broadcast(x, ash, y, bsh, &shape, |p, q| p + q),
                    BinaryKind::Sub => zip_broadcast(x, ash, y, bsh, &shape, |p, q| p - q),
                    BinaryKind::Mul => zip_broadcast(x, ash, y, bsh, &shape, |p, q| p * q),
                    BinaryKind::Div => zip_broadcast(x, ash, y, bsh, &shape, |p, q| p / q),
                    k => zip_broadcast(x, ash, y, bsh, &shape, |p, q| apply_f32(k, p, q)),
                };
                if k.is_boolean() {
                    Ok(Tensor::f32(shape, v).cast(false))
                } else {
                    Ok(Tensor::f32(shape, v))
                }
            }
            (Data::I64(x), Data::I64(y)) => {
                if matches!(k, BinaryKind::Div | BinaryKind::Mod { .. }) && y.contains(&0) {
                    return Err(shape_err(self.name(), "integer division by zero"));
                }
                let v = zip_broadcast(x, a.shape(), y, b.shape(), &shape, |p, q| {
                    apply_i64(k, p, q).unwrap_or(0)
                });
                Ok(Tensor::i64(shape, v))
            }
            _ => Err(shape_err(
                self.name(),
                format!("mixed element types {} and {}", a.dtype(), b.dtype()),
            )),
        }
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        if self.kind.is_boolean() {
            return Ok(vec![None; need.len()]);
        }
        let a = input(self.name(), inputs, 0)?;
        let b = input(self.name(), inputs, 1)?;
        // An integer operand (a Pow exponent) gets no gradient; work on a float copy of it.
        let (ca, cb);
        let a = if a.is_f32() {
            a
        } else {
            ca = a.cast(true);
            &ca
        };
        let b = if b.is_f32() {
            b
        } else {
            cb = b.cast(true);
            &cb
        };
        let os = grad.shape().to_vec();
        let g = grad.fs();
        let mut out = vec![None, None];
        // d/da and d/db as elementwise factors over the broadcast shape.
        let ga = |factor: Option<&dyn Fn(f32, f32) -> f32>| -> Tensor {
            match factor {
                None => unbroadcast(grad, a.shape()),
                Some(h) => {
                    let ab = zip_broadcast(a.fs(), a.shape(), b.fs(), b.shape(), &os, h);
                    let v: Vec<f32> = ab.iter().zip(g).map(|(x, y)| x * y).collect();
                    unbroadcast(&Tensor::f32(os.clone(), v), a.shape())
                }
            }
        };
        let gb = |factor: &dyn Fn(f32, f32) -> f32| -> Tensor {
            let ab = zip_broadcast(a.fs(), a.shape(), b.fs(), b.shape(), &os, factor);
            let v: Vec<f32> = ab.iter().zip(g).map(|(x, y)| x * y).collect();
            unbroadcast(&Tensor::f32(os.clone(), v), b.shape())
        };
        match self.kind {
            BinaryKind::Add => {
                if need[0] {
                    out[0] = Some(ga(None));
                }
                if need[1] {
                    out[1] = Some(unbroadcast(grad, b.shape()));
                }
            }
            BinaryKind::Sub => {
                if need[0] {
                    out[0] = Some(ga(None));
                }
                if need[1] {
                    out[1] = Some(unbroadcast(grad, b.shape()).map_f32(|v| -v));
                }
            }
            BinaryKind::Mul => {
                if need[0] {
                    out[0] = Some(ga(Some(&|_, y| y)));
                }
                if need[1] {
                    out[1] = Some(gb(&|x, _| x));
                }
            }
            BinaryKind::Div => {
                if need[0] {
                    out[0] = Some(ga(Some(&|_, y| 1.0 / y)));
                }
                if need[1] {
                    out[1] = Some(gb(&|x, y| -x / (y * y)));
                }
            }
            BinaryKind::Pow => {
                if need[0] {
                    out[0] = Some(ga(Some(&|x, y| {
                        if y == 0.0 {
                            0.0
                        } else {
                            y * pow_f32(x, y - 1.0)
                        }
                    })));
                }
                if need[1] {
                    out[1] = Some(gb(&|x, y| if x > 0.0 { x.ln() * x.powf(y) } else { 0.0 }));
                }
            }
            BinaryKind::Mod { fmod } => {
                if need[0] {
                    out[0] = Some(ga(None));
                }
                if need[1] {
                    out[1] = Some(gb(&|x, y| {
                        let q = x / y;
                        -(if fmod { q.trunc() } else { q.floor() })
                    }));
                }
            }
            BinaryKind::Max | BinaryKind::Min => {
                let first = |x: f32, y: f32| {
                    let take = if self.kind == BinaryKind::Max {
                        x >= y
                    } else {
                        x <= y
                    };
                    take as u8 as f32
                };
                if need[0] {
                    out[0] = Some(ga(Some(&first)));
                }
                if need[1] {
                    out[1] = Some(gb(&|x, y| 1.0 - first(x, y)));
                }
            }
            _ => {}
        }
        Ok(out)
    }
    impl_any!();
}
