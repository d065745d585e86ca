//! Range: `start, start + delta, …` below `limit` (above it for negative deltas), integer or
//! float. Shape arithmetic: no gradient.

use super::{impl_any, input, Op};
use crate::error::{checked_numel, shape_err, Result};
use crate::tensor::Tensor;

/// Range of inputs (start, limit, delta).
#[derive(Debug, Clone)]
pub struct Range;

impl Op for Range {
    fn name(&self) -> &'static str {
        "Range"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let t: Vec<&Tensor> = (0..3)
            .map(|i| input("Range", inputs, i))
            .collect::<Result<_>>()?;
        if t.iter().any(|x| x.len() != 1) {
            return Err(shape_err("Range", "start, limit and delta must be scalars"));
        }
        if t.iter().all(|x| !x.is_f32()) {
            let [s, l, d] = [0, 1, 2].map(|i| t[i].to_i64_vec()[0]);
            if d == 0 {
                return Err(shape_err("Range", "delta 0"));
            }
            let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as i64;
            checked_numel("Range", &[n])?;
            let v: Vec<i64> = (0..n).map(|i| s + i * d).collect();
            return Ok(Tensor::i64(vec![v.len()], v));
        }
        let [s, l, d] = [0, 1, 2].map(|i| t[i].cast(true).fs()[0]);
        if d == 0.0 {
            return Err(shape_err("Range", "delta 0"));
        }
        let n = ((l - s) / d).ceil().max(0.0) as i64;
        checked_numel("Range", &[n])?;
        let v: Vec<f32> = (0..n).map(|i| s + i as f32 * d).collect();
        Ok(Tensor::f32(vec![v.len()], v))
    }
    impl_any!();
}
