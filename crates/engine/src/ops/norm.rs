//! LayerNormalization, GroupNormalization and InstanceNormalization: one kernel that
//! normalizes rows, `ŷ = (x − μ)/√(σ² + ε)`, then applies `γ·ŷ + β`, with the rows and the
//! index of γ/β each element uses depending on the kind. The single node is itself the fast
//! path: exporters below opset 17 spell LayerNorm as a ReduceMean/Sub/Pow/Sqrt/Div chain.
//!
//! Gradient (per row of n elements, `g' = g·γ`):
//! `∂x = (g' − mean(g') − ŷ·mean(g'·ŷ)) / √(σ² + ε)`, `∂γ = Σ g·ŷ`, `∂β = Σ g`.

use super::{impl_any, input_f32, Op};
use crate::error::{shape_err, Result};
use crate::tensor::{norm_axis, Tensor};

/// Which normalization.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// LayerNormalization: rows are the dimensions from `axis` on; γ and β have their shape.
    Layer {
        /// First normalized axis (negative counts from the end).
        axis: i64,
    },
    /// GroupNormalization over NC…: rows are (sample, group); γ and β are per channel (opset
    /// 21), or per group when they have one value per group (opset 18–20 as written in the
    /// specification).
    Group {
        /// Number of groups (divides C).
        groups: usize,
    },
    /// InstanceNormalization: rows are (sample, channel); γ and β per channel.
    Instance,
}

/// A normalization with inputs `(x, γ, β)`; γ and β optional for LayerNormalization.
#[derive(Debug, Clone)]
pub struct Normalize {
    /// Which rows, which affine parameters.
    pub kind: NormKind,
    /// Added to the variance.
    pub epsilon: f32,
}

/// Row geometry: `rows` rows of `n` elements; element `j` of row `r` uses affine index
/// `affine(r, j)`.
struct Plan {
    rows: usize,
    n: usize,
    /// (groups, channels per group, spatial size, per-group affine) for Group/Instance.
    group: Option<(usize, usize, usize, bool)>,
    affine_len: usize,
}

impl Plan {
    #[inline]
    fn affine(&self, r: usize, j: usize) -> usize {
        match self.group {
            None => j % self.affine_len.max(1),
            Some((g, _, _, true)) => r % g,
            Some((g, cpg, hw, false)) => (r % g) * cpg + j / hw,
        }
    }
}

impl Normalize {
    fn plan(&self, inputs: &[Option<&Tensor>], shape: &[usize]) -> Result<Plan> {
        let name = self.name_();
        let gamma_len = inputs.get(1).copied().flatten().map(Tensor::len);
        let total: usize = shape.iter().product();
        match self.kind {
            NormKind::Layer { axis } => {
                let a = norm_axis(name, axis, shape.len())?;
                let n: usize = shape[a..].iter().product();
                Ok(Plan {
                    rows: total.checked_div(n).unwrap_or(0),
                    n,
                    group: None,
                    affine_len: n,
                })
            }
            NormKind::Group { .. } | NormKind::Instance => {
                if shape.len() < 2 {
                    return Err(shape_err(name, format!("input {shape:?} has no channels")));
                }
                let c = shape[1];
                let groups = match self.kind {
                    NormKind::Group { groups } => groups,
                    _ => c,
                };
                let per_group = groups != c && gamma_len == Some(groups);
                if groups == 0 || !c.is_multiple_of(groups) {
                    return Err(shape_err(
                        name,
                        format!("{c} channels do not split into {groups} groups"),
                    ));
                }
                let hw: usize = shape[2..].iter().product();
                let cpg = c / groups;
                Ok(Plan {
                    rows: shape[0] * groups,
                    n: cpg * hw,
                    group: Some((groups, cpg, hw, per_group)),
                    affine_len: if per_group { groups } else { c },
                })
            }
        }
    }

    fn name_(&self) -> &'static str {
        match self.kind {
            NormKind::Layer { .. } => "LayerNormalization",
            NormKind::Group { .. } => "GroupNormalization",
            NormKind::Instance => "InstanceNormalization",
        }
    }

    /// γ or β (input `i`) as a flat vector of the plan's affine length, or `fill` when absent.
    fn affine_param(
        &self,
        inputs: &[Option<&Tensor>],
        i: usize,
        plan: &Plan,
        fill: f32,
    ) -> Result<Vec<f32>> {
        match inputs.get(i).copied().flatten() {
            None => Ok(vec![fill; plan.affine_len]),
            Some(t) => {
                let v = t
                    .as_f32()
                    .map_err(|_| shape_err(self.name_(), format!("input {i} must be float32")))?;
                if v.len() == plan.affine_len {
                    Ok(v.to_vec())
                } else if v.len() == 1 {
                    Ok(vec![v[0]; plan.affine_len])
                } else if plan.group.is_none()
                    && !v.is_empty()
                    && plan.affine_len.is_multiple_of(v.len())
                {
                    // γ broadcast over the leading normalized dimensions.
                    Ok((0..plan.affine_len).map(|j| v[j % v.len()]).collect())
                } else {
                    Err(shape_err(
                        self.name_(),
                        format!(
                            "input {i} has {} values, expected {} ({:?})",
                            v.len(),
                            plan.affine_len,
                            t.shape()
                        ),
                    ))
                }
            }
        }
    }
}

/// Mean and 1/√(var + ε) of one row (two passes, in f64 for the sums).
#[inline]
fn row_stats(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len().max(1) as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row
        .iter()
        .map(|&v| {
            let d = v as f64 - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

impl Op for Normalize {
    fn name(&self) -> &'static str {
        self.name_()
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input_f32(self.name_(), inputs, 0)?;
        let plan = self.plan(inputs, x.shape())?;
        let gamma = self.affine_param(inputs, 1, &plan, 1.0)?;
        let beta = self.affine_param(inputs, 2, &plan, 0.0)?;
        let xs = x.fs();
        let mut out = vec![0.0f32; xs.len()];
        let n = plan.n;
        for r in 0..plan.rows {
            let row = &xs[r * n..(r + 1) * n];
            let (mean, inv) = row_stats(row, self.epsilon);
            let o = &mut out[r * n..(r + 1) * n];
            if plan.group.is_none() {
                // LayerNorm: γ and β line up with the row, so this loop vectorizes.
                for ((o, &v), (&gm, &bt)) in o.iter_mut().zip(row).zip(gamma.iter().zip(&beta)) {
                    *o = (v - mean) * inv * gm + bt;
                }
            } else {
                for (j, (o, &v)) in o.iter_mut().zip(row).enumerate() {
                    let a = plan.affine(r, j);
                    *o = (v - mean) * inv * gamma[a] + beta[a];
                }
            }
        }
        Ok(Tensor::f32(x.shape().to_vec(), out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let x = input_f32(self.name_(), inputs, 0)?;
        let plan = self.plan(inputs, x.shape())?;
        let gamma = self.affine_param(inputs, 1, &plan, 1.0)?;
        let (xs, gs) = (x.fs(), grad.fs());
        let n = plan.n;
        let want = |i: usize| need.get(i).copied().unwrap_or(false);
        let mut dx = want(0).then(|| vec![0.0f32; xs.len()]);
        let mut dgamma = vec![0.0f32; plan.affine_len];
        let mut dbeta = vec![0.0f32; plan.affine_len];
        let mut xhat = vec![0.0f32; n];
        let mut gy = vec![0.0f32; n];
        for r in 0..plan.rows {
            let row = &xs[r * n..(r + 1) * n];
            let g = &gs[r * n..(r + 1) * n];
            let (mean, inv) = row_stats(row, self.epsilon);
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for j in 0..n {
                let a = plan.affine(r, j);
                xhat[j] = (row[j] - mean) * inv;
                gy[j] = g[j] * gamma[a];
                s1 += gy[j] as f64;
                s2 += (gy[j] * xhat[j]) as f64;
                dgamma[a] += g[j] * xhat[j];
                dbeta[a] += g[j];
            }
            if let Some(dx) = dx.as_mut() {
                let (m1, m2) = ((s1 / n as f64) as f32, (s2 / n as f64) as f32);
                for j in 0..n {
                    dx[r * n + j] = (gy[j] - m1 - xhat[j] * m2) * inv;
                }
            }
        }
        let mut out = vec![None; need.len()];
        if let Some(dx) = dx {
            out[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        // γ/β gradients come back in the parameter's own shape (possibly broadcast).
        for (i, d) in [(1, dgamma), (2, dbeta)] {
            if want(i) {
                if let Some(t) = inputs.get(i).copied().flatten() {
                    let len = t.len().max(1);
                    let mut v = vec![0.0f32; len];
                    for (j, d) in d.iter().enumerate() {
                        v[j % len] += d;
                    }
                    out[i] = Some(Tensor::f32(t.shape().to_vec(), v));
                }
            }
        }
        Ok(out)
    }
    impl_any!();
}
