//! Pad in constant, reflect, edge and wrap modes (negative pads crop). Each output coordinate
//! maps to an input coordinate per axis, or to the constant; the gradient scatters back along
//! the same map.

use super::{impl_any, input, Op};
use crate::error::{checked_numel, shape_err, Result};
use crate::tensor::{norm_axis, strides, Tensor};

/// How padded positions are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PadMode {
    /// A constant value.
    #[default]
    Constant,
    /// Mirror without repeating the edge.
    Reflect,
    /// Repeat the edge value.
    Edge,
    /// Wrap around.
    Wrap,
}

/// Pads a tensor. Pads come from the attribute (opset < 11) or from input 1.
#[derive(Debug, Clone, Default)]
pub struct Pad {
    /// Fill mode.
    pub mode: PadMode,
    /// `(pads, value)` from attributes for old opsets.
    pub attrs: Option<(Vec<i64>, f32)>,
}

impl Pad {
    /// Per-axis maps from output coordinate to input coordinate, the output shape and the fill.
    #[allow(clippy::type_complexity)]
    fn plan(
        &self,
        inputs: &[Option<&Tensor>],
        shape: &[usize],
    ) -> Result<(Vec<Vec<Option<usize>>>, Vec<usize>, f32)> {
        let r = shape.len();
        let (pads, value) = match &self.attrs {
            Some((p, v)) => (p.clone(), *v),
            None => {
                let p = input("Pad", inputs, 1)?.to_i64_vec();
                let v = match inputs.get(2).copied().flatten() {
                    Some(t) if t.is_f32() => t.fs().first().copied().unwrap_or(0.0),
                    Some(t) => t.to_i64_vec().first().copied().unwrap_or(0) as f32,
                    None => 0.0,
                };
                (p, v)
            }
        };
        // Optional `axes` (opset 18): pads then cover only those axes.
        let axes: Vec<usize> = match inputs.get(3).copied().flatten() {
            Some(t) => t
                .to_i64_vec()
                .iter()
                .map(|&a| norm_axis("Pad", a, r))
                .collect::<Result<_>>()?,
            None => (0..r).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(shape_err(
                "Pad",
                format!("{} pads for {} axes", pads.len(), axes.len()),
            ));
        }
        let mut begin = vec![0i64; r];
        let mut end = vec![0i64; r];
        for (k, &a) in axes.iter().enumerate() {
            begin[a] = pads[k];
            end[a] = pads[k + axes.len()];
        }
        let lens: Vec<i64> = (0..r)
            .map(|d| {
                (shape[d] as i64)
                    .saturating_add(begin[d])
                    .saturating_add(end[d])
            })
            .collect();
        checked_numel("Pad", &lens)?;
        let mut maps = Vec::with_capacity(r);
        let mut out = Vec::with_capacity(r);
        for d in 0..r {
            let n = shape[d] as i64;
            let len = lens[d];
            if len < 0 {
                return Err(shape_err(
                    "Pad",
                    format!("pads crop axis {d} of {shape:?} below zero"),
                ));
            }
            if n == 0 && len > 0 && self.mode != PadMode::Constant {
                return Err(shape_err("Pad", "cannot reflect or repeat an empty axis"));
            }
            let map: Vec<Option<usize>> = (0..len)
                .map(|o| {
                    let i = o - begin[d];
                    if (0..n).contains(&i) {
                        return Some(i as usize);
                    }
                    match self.mode {
                        PadMode::Constant => None,
                        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
                        PadMode::Wrap => Some(i.rem_euclid(n) as usize),
                        PadMode::Reflect => {
                            if n == 1 {
                                return Some(0);
                            }
                            let p = 2 * (n - 1);
                            let m = i.rem_euclid(p);
                            Some(if m < n { m } else { p - m } as usize)
                        }
                    }
                })
                .collect();
            out.push(len as usize);
            maps.push(map);
        }
        Ok((maps, out, value))
    }
}

/// Visits every output row (all axes but the last fixed) with the input offset of its row, or
/// None when the row lies in the padding of an outer axis; the caller maps the row's elements
/// through the last axis' map. Per-row rather than per-element bookkeeping keeps Pad cheap on
/// activations (ResNet shortcuts pad channels).
fn walk_rows(
    maps: &[Vec<Option<usize>>],
    in_shape: &[usize],
    mut f: impl FnMut(usize, Option<usize>),
) {
    let st = strides(in_shape);
    let out: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    let r = out.len();
    let inner = out.last().copied().unwrap_or(1);
    let n: usize = out.iter().product();
    if n == 0 {
        return;
    }
    if r == 0 {
        f(0, Some(0));
        return;
    }
    let mut idx = vec![0usize; r - 1];
    for row in 0..n / inner {
        let mut off = Some(0usize);
        for d in 0..r - 1 {
            off = match (off, maps[d][idx[d]]) {
                (Some(a), Some(i)) => Some(a + i * st[d]),
                _ => None,
            };
        }
        f(row * inner, off);
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// The last axis' map (a single position for rank 0).
fn last_map(maps: &[Vec<Option<usize>>]) -> &[Option<usize>] {
    maps.last().map_or(&[Some(0)], |m| m.as_slice())
}

impl Op for Pad {
    fn name(&self) -> &'static str {
        "Pad"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let x = input("Pad", inputs, 0)?;
        let (maps, shape, value) = self.plan(inputs, x.shape())?;
        if x.is_f32() {
            let xs = x.fs();
            let mut out = vec![value; shape.iter().product()];
            // Trailing axes that are not padded copy as one block per position of the others
            // (a ResNet shortcut's channel padding: whole planes).
            let r = maps.len();
            let same = (0..r)
                .rev()
                .take_while(|&d| {
                    maps[d].len() == x.shape()[d]
                        && maps[d].iter().enumerate().all(|(i, &m)| m == Some(i))
                })
                .count();
            if same > 0 && same < r {
                let block: usize = x.shape()[r - same..].iter().product();
                let mut outer: Vec<Vec<Option<usize>>> = maps[..r - same].to_vec();
                outer.push((0..block).map(Some).collect());
                let mut in_shape = x.shape()[..r - same].to_vec();
                in_shape.push(block);
                walk_rows(&outer, &in_shape, |o, row| {
                    if let Some(row) = row {
                        out[o..o + block].copy_from_slice(&xs[row..row + block]);
                    }
                });
                return Ok(Tensor::f32(shape, out));
            }
            let last = last_map(&maps);
            walk_rows(&maps, x.shape(), |o, row| {
                if let Some(row) = row {
                    for (y, i) in out[o..o + last.len()].iter_mut().zip(last) {
                        if let Some(i) = i {
                            *y = xs[row + i];
                        }
                    }
                }
            });
            Ok(Tensor::f32(shape, out))
        } else {
            let xs = x.as_i64()?;
            let mut out = vec![value as i64; shape.iter().product()];
            let last = last_map(&maps);
            walk_rows(&maps, x.shape(), |o, row| {
                if let Some(row) = row {
                    for (y, i) in out[o..o + last.len()].iter_mut().zip(last) {
                        if let Some(i) = i {
                            *y = xs[row + i];
                        }
                    }
                }
            });
            Ok(Tensor::i64(shape, out))
        }
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
            let x = input("Pad", inputs, 0)?;
            let (maps, _, _) = self.plan(inputs, x.shape())?;
            let g = grad.fs();
            let mut dx = vec![0.0f32; x.len()];
            let last = last_map(&maps);
            walk_rows(&maps, x.shape(), |o, row| {
                if let Some(row) = row {
                    for (gv, i) in g[o..o + last.len()].iter().zip(last) {
                        if let Some(i) = i {
                            dx[row + i] += gv;
                        }
                    }
                }
            });
            res[0] = Some(Tensor::f32(x.shape().to_vec(), dx));
        }
        Ok(res)
    }
    impl_any!();
}
