//! Einsum in explicit (`ab,bc->ac`) or implicit form, with `...` for leading axes, over any
//! number of float operands. One loop over every combination of the equation's letters, so it
//! serves the small contractions exporters emit (relative-position terms, batched products);
//! plain batched matrix products are exported as MatMul, which has the fast kernels.
//! Gradient of operand i: the same loop, accumulating `g[out] · Π other operands` into it.

use super::{impl_any, input_f32, Op};
use crate::error::{checked_numel, shape_err, Result};
use crate::tensor::{strides, Tensor};

/// An einsum with its equation.
#[derive(Debug, Clone)]
pub struct Einsum {
    /// The equation as written in the model.
    pub equation: String,
}

/// The parsed equation against concrete shapes.
struct Plan {
    /// Size of each letter.
    dims: Vec<usize>,
    /// Per operand: stride of each letter (0 when the letter is absent).
    op_strides: Vec<Vec<usize>>,
    out_strides: Vec<usize>,
    out_shape: Vec<usize>,
}

fn parse_term(term: &str, rank: usize, ell: &mut Option<usize>) -> Result<Vec<char>> {
    let t = term.trim();
    let letters = t.replace("...", "").chars().count();
    if t.contains("...") {
        let n = rank
            .checked_sub(letters)
            .ok_or_else(|| shape_err("Einsum", format!("term '{t}' does not fit rank {rank}")))?;
        if ell.is_some_and(|e| e != n) {
            return Err(shape_err("Einsum", "ellipses of different ranks"));
        }
        *ell = Some(n);
    }
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            // Ellipsis axes get private letters from the Unicode private-use area.
            out.extend(
                (0..ell.unwrap_or(0)).map(|i| char::from_u32(0xE000 + i as u32).unwrap_or('?')),
            );
            rest = r;
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            if !c.is_ascii_alphabetic() {
                return Err(shape_err(
                    "Einsum",
                    format!("unexpected '{c}' in the equation"),
                ));
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(out)
}

impl Einsum {
    fn plan(&self, shapes: &[&[usize]]) -> Result<Plan> {
        let eq = self.equation.replace(' ', "");
        let (lhs, rhs) = match eq.split_once("->") {
            Some((l, r)) => (l.to_string(), Some(r.to_string())),
            None => (eq.clone(), None),
        };
        let terms: Vec<&str> = lhs.split(',').collect();
        if terms.len() != shapes.len() {
            return Err(shape_err(
                "Einsum",
                format!(
                    "equation has {} operands, node has {}",
                    terms.len(),
                    shapes.len()
                ),
            ));
        }
        let mut ell = None;
        let ops: Vec<Vec<char>> = terms
            .iter()
            .zip(shapes)
            .map(|(t, s)| parse_term(t, s.len(), &mut ell))
            .collect::<Result<_>>()?;
        let out: Vec<char> = match rhs {
            Some(r) => {
                let rank = r.replace("...", "").chars().count()
                    + if r.contains("...") {
                        ell.unwrap_or(0)
                    } else {
                        0
                    };
                let mut e = ell;
                parse_term(&r, rank, &mut e)?
            }
            None => {
                // Implicit form: ellipsis axes, then letters that appear once, alphabetically.
                let mut once: Vec<char> = ops
                    .iter()
                    .flatten()
                    .filter(|c| c.is_ascii_alphabetic())
                    .copied()
                    .filter(|c| ops.iter().flatten().filter(|d| *d == c).count() == 1)
                    .collect();
                once.sort_unstable();
                let mut v: Vec<char> = (0..ell.unwrap_or(0))
                    .map(|i| char::from_u32(0xE000 + i as u32).unwrap_or('?'))
                    .collect();
                v.extend(once);
                v
            }
        };
        let mut letters: Vec<char> = out.clone();
        for c in ops.iter().flatten() {
            if !letters.contains(c) {
                letters.push(*c);
            }
        }
        let mut dims = vec![0usize; letters.len()];
        let mut seen = vec![false; letters.len()];
        let mut op_strides = Vec::new();
        for (o, s) in ops.iter().zip(shapes) {
            if o.len() != s.len() {
                return Err(shape_err(
                    "Einsum",
                    format!("term of {} axes for an operand of shape {s:?}", o.len()),
                ));
            }
            let st = strides(s);
            let mut ls = vec![0usize; letters.len()];
            for (axis, c) in o.iter().enumerate() {
                let l = letters.iter().position(|x| x == c).unwrap_or(0);
                if ls[l] != 0 {
                    return Err(shape_err(
                        "Einsum",
                        "repeated letters within one operand (diagonals) are not supported",
                    ));
                }
                let d = s[axis];
                if seen[l] && dims[l] != d && d != 1 && dims[l] != 1 {
                    return Err(shape_err(
                        "Einsum",
                        format!("letter '{c}' has sizes {} and {d}", dims[l]),
                    ));
                }
                if !seen[l] || dims[l] == 1 {
                    dims[l] = d;
                }
                seen[l] = true;
                ls[l] = if d == 1 { 0 } else { st[axis] };
            }
            op_strides.push(ls);
        }
        let out_shape: Vec<usize> = out
            .iter()
            .map(|c| dims[letters.iter().position(|x| x == c).unwrap_or(0)])
            .collect();
        let ost = strides(&out_shape);
        // Output letters come first in `letters`; the others have stride 0 in the output.
        let mut out_strides = vec![0usize; letters.len()];
        out_strides[..ost.len()].copy_from_slice(&ost);
        checked_numel(
            "Einsum",
            &dims.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        )?;
        Ok(Plan {
            dims,
            op_strides,
            out_strides,
            out_shape,
        })
    }
}

/// Calls `f(out offset, operand offsets)` for every combination of letters.
fn each(p: &Plan, mut f: impl FnMut(usize, &[usize])) {
    let n: usize = p.dims.iter().product();
    if n == 0 {
        return;
    }
    let k = p.dims.len();
    let mut idx = vec![0usize; k];
    let mut offs = vec![0usize; p.op_strides.len()];
    let mut oo = 0usize;
    for _ in 0..n {
        f(oo, &offs);
        for d in (0..k).rev() {
            idx[d] += 1;
            oo += p.out_strides[d];
            for (o, s) in offs.iter_mut().zip(&p.op_strides) {
                *o += s[d];
            }
            if idx[d] < p.dims[d] {
                break;
            }
            oo -= p.out_strides[d] * idx[d];
            for (o, s) in offs.iter_mut().zip(&p.op_strides) {
                *o -= s[d] * idx[d];
            }
            idx[d] = 0;
        }
    }
}

impl Op for Einsum {
    fn name(&self) -> &'static str {
        "Einsum"
    }
    fn forward(&self, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
        let xs: Vec<&Tensor> = (0..inputs.len())
            .map(|i| input_f32("Einsum", inputs, i))
            .collect::<Result<_>>()?;
        let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
        let p = self.plan(&shapes)?;
        let mut out = vec![0.0f32; p.out_shape.iter().product()];
        let vals: Vec<&[f32]> = xs.iter().map(|t| t.fs()).collect();
        each(&p, |o, offs| {
            let mut prod = 1.0f32;
            for (v, &i) in vals.iter().zip(offs) {
                prod *= v[i];
            }
            out[o] += prod;
        });
        Ok(Tensor::f32(p.out_shape, out))
    }
    fn backward(
        &self,
        inputs: &[Option<&Tensor>],
        _output: &Tensor,
        grad: &Tensor,
        need: &[bool],
    ) -> Result<Vec<Option<Tensor>>> {
        let xs: Vec<&Tensor> = (0..inputs.len())
            .map(|i| input_f32("Einsum", inputs, i))
            .collect::<Result<_>>()?;
        let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
        let p = self.plan(&shapes)?;
        let vals: Vec<&[f32]> = xs.iter().map(|t| t.fs()).collect();
        let g = grad.fs();
        let mut out = vec![None; need.len()];
        for (k, x) in xs.iter().enumerate() {
            if !need[k] {
                continue;
            }
            let mut d = vec![0.0f32; x.len()];
            each(&p, |o, offs| {
                let mut prod = g[o];
                for (j, (v, &i)) in vals.iter().zip(offs).enumerate() {
                    if j != k {
                        prod *= v[i];
                    }
                }
                d[offs[k]] += prod;
            });
            out[k] = Some(Tensor::f32(x.shape().to_vec(), d));
        }
        Ok(out)
    }
    impl_any!();
}
