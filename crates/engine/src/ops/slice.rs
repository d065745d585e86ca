//! Slice with starts, ends, axes and steps (negative steps included; opset < 10 takes them as
//! attributes). Gradient: scatter into zeros.

use super::strided::{gather, scatter_add};
use super::{impl_any, input, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, strides, Data, Tensor};

/// `starts`, `ends` and optional `axes` given as attributes (opset < 10).
pub type SliceAttrs = (Vec<i64>, Vec<i64>, Option<Vec<i64>>);

/// Slice parameters from attributes (opset < 10); otherwise inputs 1–4.
#[derive(Debug, Clone, Default)]
pub struct Slice {
    /// Attributes, for old opsets.
    pub attrs: Option<SliceAttrs>,
}

impl Slice {
    /// Output shape, base offset and strides of the view.
    fn plan(
        &self,
        inputs: &[Option<&Tensor>],
        shape: &[usize],
    ) -> Result<(Vec<usize>, isize, Vec<isize>)> {
        let (starts, ends, axes, steps) = match &self.attrs {
            Some((s, e, a)) => (s.clone(), e.clone(), a.clone(), None),
            None => (
                input("Slice", inputs, 1)?.to_i64_vec(),
                input("Slice", inputs, 2)?.to_i64_vec(),
                inputs.get(3).copied().flatten().map(|t| t.to_i64_vec()),
                inputs.get(4).copied().flatten().map(|t| t.to_i64_vec()),
            ),
        };
        let r = shape.len();
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(shape_err(
                "Slice",
                "starts, ends, axes and steps differ in length",
            ));
        }
        let st = strides(shape);
        let mut out = shape.to_vec();
        let mut ost: Vec<isize> = st.iter().map(|&s| s as isize).collect();
        let mut base = 0isize;
        for i in 0..starts.len() {
            let a = norm_axis("Slice", axes[i], r)?;
            let (dim, step) = (shape[a] as i64, steps[i]);
            if step == 0 {
                return Err(shape_err("Slice", "step 0"));
            }
            let fix = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (s, e) = (fix(starts[i]), fix(ends[i]));
            let (s, e) = if step > 0 {
                (s.clamp(0, dim), e.clamp(0, dim))
            } else {
                (s.clamp(-1, dim - 1), e.clamp(-1, dim - 1))
            };
            let len = if step > 0 {
                (e - s + step - 1).div_euclid(step).max(0)
            } else {
                (s - e + (-step) - 1).div_euclid(-step).max(0)
            };
            out[a] = len as usize;
            if len > 0 {
                base += s as isize * st[a] as isize;
            }
            ost[a] = step as isize * st[a] as isize;
        }
        Ok((out, base, ost))
    }
}

impl Op for Slice {
    fn name(&self) -> &'static str {
        "Slice"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Slice", inputs, 0)?;
        let (shape, base, st) = self.plan(inputs, x.shape())?;
        Ok(match x.data() {
            Data::F32(v) => Tensor::f32(shape.clone(), gather(v, base, &st, &shape)),
            Data::I64(v) => Tensor::i64(shape.clone(), gather(v, base, &st, &shape)),
        })
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _o: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let mut res = vec![None; need.len()];
        if need[0] {
            let x = input("Slice", inputs, 0)?;
            let (shape, base, st) = self.plan(inputs, x.shape())?;
            let mut dx = vec![0.0f32; x.len()];
            scatter_add(grad.fs(), &mut dx, base, &st, &shape);
            res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        Ok(res)
    }
    impl_any!();
}
