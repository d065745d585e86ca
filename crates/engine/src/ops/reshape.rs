//! Operators that only change the shape: Reshape, Flatten, Squeeze, Unsqueeze, and Shape,
//! which reads it. Their gradient is the output gradient viewed with the input's shape.

use super::{impl_any, input, Copies, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, Tensor};

/// A view's input gradient: the output gradient with the input's shape; with `copies`, for a
/// gradient of several copies of the batch (see `Op::backward_copies`), the batch multiplied.
fn view_grad(
    inputs: &[Option<&Tensor>],
    grad: &Tensor,
    need: &[bool],
    op: &'static str,
    copies: Option<Copies>,
) -> Result<Vec<Option<Tensor>>> {
    let mut res = vec![None; need.len()];
    if need[0] {
        let shape = input(op, inputs, 0)?.shape();
        let shape = match copies {
            Some(c) if c.batched(0) => c.times(shape),
            _ => shape.to_vec(),
        };
        res[0] = Some(grad.clone().reshaped(shape)?);
    }
    Ok(res)
}

/// A view's `backward` and `backward_copies` ([`view_grad`]), for operator `$op`.
macro_rules! view_grads {
    ($op:literal) => {
        fn backward(
            &self,
            inputs: &[Option<&Tensor>],
            _o: &Tensor,
            grad: &Tensor,
            need: &[bool],
        ) -> Result<Vec<Option<Tensor>>> {
            view_grad(inputs, grad, need, $op, None)
        }
        fn backward_copies(
            &self,
            inputs: &[Option<&Tensor>],
            _o: &Tensor,
            grad: &Tensor,
            need: &[bool],
            c: Copies,
        ) -> Result<Vec<Option<Tensor>>> {
            view_grad(inputs, grad, need, $op, Some(c))
        }
    };
}

/// Reshape to a target shape (0 copies a dimension unless `allowzero`, −1 is inferred).
#[derive(Debug, Clone, Default)]
pub struct Reshape {
    /// The target from the attribute (opset < 5); otherwise it is input 1.
    pub shape_attr: Option<Vec<i64>>,
    /// ONNX `allowzero`.
    pub allowzero: bool,
    /// The model was exported with this fixed batch size: a target starting with it is taken
    /// to mean "the batch" and follows the actual batch size (see `Model` docs).
    pub fixed_batch: Option<usize>,
}

/// Resolves an ONNX reshape target against the input shape.
pub(crate) fn resolve_target(
    op: &'static str,
    input: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or_else(|| {
                shape_err(
                    op,
                    format!(
                        "target {target:?} copies dimension {i} of {input:?}, which does not exist"
                    ),
                )
            })?),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(shape_err(op, format!("invalid target shape {target:?}"))),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(shape_err(
                op,
                format!("cannot reshape {input:?} to {target:?}"),
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(shape_err(
            op,
            format!("cannot reshape {input:?} ({total} elements) to {target:?}"),
        ));
    }
    Ok(out)
}

impl Op for Reshape {
    fn name(&self) -> &'static str {
        "Reshape"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Reshape", inputs, 0)?;
        let mut target = match &self.shape_attr {
            Some(s) => s.clone(),
            None => input("Reshape", inputs, 1)?.to_i64_vec(),
        };
        if let (Some(b), Some(&n)) = (self.fixed_batch, x.shape().first()) {
            if !target.is_empty() && target[0] == b as i64 && n != b {
                target[0] = n as i64;
            }
        }
        let shape = resolve_target("Reshape", x.shape(), &target, self.allowzero)?;
        x.clone().reshaped(shape)
    }
    view_grads!("Reshape");
    impl_any!();
}

/// Flatten to 2-D at `axis`: `[d0…d(a−1)] × [da…]`.
#[derive(Debug, Clone)]
pub struct Flatten {
    /// The split axis (default 1, may be negative).
    pub axis: i64,
}

impl Op for Flatten {
    fn name(&self) -> &'static str {
        "Flatten"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Flatten", inputs, 0)?;
        let s = x.shape();
        let a = if self.axis == s.len() as i64 {
            s.len()
        } else {
            norm_axis("Flatten", self.axis, s.len())?
        };
        let outer: usize = s[..a].iter().product();
        x.clone().reshaped(vec![outer, s[a..].iter().product()])
    }
    view_grads!("Flatten");
    impl_any!();
}

fn axes_of(attr: &Option<Vec<i64>>, inputs: &[Option<&Tensor>]) -> Option<Vec<i64>> {
    match (attr, inputs.get(1).copied().flatten()) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(t)) => Some(t.to_i64_vec()),
        (None, None) => None,
    }
}

/// Remove size-1 dimensions (the given axes, or all of them).
#[derive(Debug, Clone, Default)]
pub struct Squeeze {
    /// Axes from the attribute (opset < 13); otherwise input 1.
    pub axes: Option<Vec<i64>>,
}

impl Op for Squeeze {
    fn name(&self) -> &'static str {
        "Squeeze"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Squeeze", inputs, 0)?;
        let s = x.shape();
        let shape = match axes_of(&self.axes, inputs) {
            None => s.iter().copied().filter(|&d| d != 1).collect(),
            Some(axes) => {
                let mut drop = vec![false; s.len()];
                for a in axes {
                    let a = norm_axis("Squeeze", a, s.len())?;
                    if s[a] != 1 {
                        return Err(shape_err("Squeeze", format!("axis {a} of {s:?} is not 1")));
                    }
                    drop[a] = true;
                }
                s.iter()
                    .zip(&drop)
                    .filter(|(_, &d)| !d)
                    .map(|(&v, _)| v)
                    .collect()
            }
        };
        x.clone().reshaped(shape)
    }
    view_grads!("Squeeze");
    impl_any!();
}

/// Insert size-1 dimensions at the given output axes.
#[derive(Debug, Clone, Default)]
pub struct Unsqueeze {
    /// Axes from the attribute (opset < 13); otherwise input 1.
    pub axes: Option<Vec<i64>>,
}

impl Op for Unsqueeze {
    fn name(&self) -> &'static str {
        "Unsqueeze"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Unsqueeze", inputs, 0)?;
        let axes =
            axes_of(&self.axes, inputs).ok_or_else(|| shape_err("Unsqueeze", "no axes given"))?;
        let r = x.shape().len() + axes.len();
        let mut ins = vec![false; r];
        for a in axes {
            ins[norm_axis("Unsqueeze", a, r)?] = true;
        }
        let mut it = x.shape().iter();
        let shape = ins
            .iter()
            .map(|&i| if i { 1 } else { *it.next().unwrap_or(&1) })
            .collect();
        x.clone().reshaped(shape)
    }
    view_grads!("Unsqueeze");
    impl_any!();
}

/// The shape of the input as a 1-D int64 tensor (optionally the `start..end` slice of it).
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// First dimension to report (opset 15; may be negative).
    pub start: i64,
    /// One past the last dimension to report.
    pub end: Option<i64>,
}

impl Op for Shape {
    fn name(&self) -> &'static str {
        "Shape"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let s = input("Shape", inputs, 0)?.shape();
        let r = s.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (a, b) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        let v: Vec<i64> = s[a..b.max(a)].iter().map(|&d| d as i64).collect();
        Ok(Tensor::i64(vec![v.len()], v))
    }
    impl_any!();
}
