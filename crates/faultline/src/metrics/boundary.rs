//! Model structure: how far the decision boundary lies (Guo et al. / AISafety `EBD`, `EBD2`, `BD`
//! and `ENI`, methods.md §3.4).
//!
//! - **ebd** (empirical boundary distance): `m` mutually orthogonal random directions (Gaussian,
//!   Gram–Schmidt, each scaled to L2 norm √D so that a step of magnitude `t` moves the image by
//!   RMS `t`); magnitudes `t ∈ {2, 4, …, 126}/255`; per direction the first `t` whose image
//!   `clip(x + t·d, 0, 1)` changes the prediction, or 126/255 if none; per image the **minimum**
//!   over directions; mean over images. The reference draws 1000 directions; the default here is
//!   [`BoundaryParams::directions`] = 10 because each direction costs up to 63 forward passes
//!   per image [U: flag `--boundary-directions`].
//! - **wbd** (worst-case boundary distance): the same scan, per image the **maximum** over
//!   directions with 255/255 for a direction that never flips (the reference's 255 sentinel, on
//!   the [0, 1] scale like ebd), mean over images.
//! - **ebd2**: iterate `x ← clip(x + 0.0005·sign(∇_x CE(F(x), ŷ)), 0, 1)`, `ŷ` the clean
//!   prediction, until the prediction changes, at most 1000 steps; ebd2 = mean step count over
//!   the images that flipped within the cap (None when none did).
//! - **eni** (ε-empirical noise insensitivity): per sample
//!   `|CE(F(x), y) − CE(F(x^a), ŷ^a)| / ‖x − x^a‖_∞` with `ŷ^a = F(x^a)`, averaged over the samples
//!   with a non-zero perturbation (the reference takes one L∞ maximum over the whole batch; we
//!   use each sample's own, as methods.md asks). Lower = more insensitive.

use faultline_engine::{Loss, Model};
use faultline_seed::Stream;

use crate::error::Result;

/// Parameters of the boundary metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BoundaryParams {
    /// Random orthogonal directions per image (ebd, wbd).
    pub directions: usize,
    /// Largest magnitude, in 8-bit levels (126).
    pub max_level: u32,
    /// Magnitude step, in levels (2).
    pub level_step: u32,
    /// ebd2's step size on the [0, 1] scale (0.0005).
    pub ebd2_step: f32,
    /// ebd2's step cap (1000).
    pub ebd2_max_steps: usize,
    /// Seed of the directions.
    pub seed: u64,
}

impl Default for BoundaryParams {
    fn default() -> Self {
        BoundaryParams {
            directions: 10,
            max_level: 126,
            level_step: 2,
            ebd2_step: 0.0005,
            ebd2_max_steps: 1000,
            seed: 0,
        }
    }
}

/// `m` orthogonal directions in `d` dimensions (row-major `m × d`), each of L2 norm √d, drawn
/// from `seed` (modified Gram–Schmidt on Gaussian vectors; `m` is capped at `d`).
pub fn directions(d: usize, m: usize, seed: u64) -> Vec<f32> {
    let m = m.min(d);
    let mut rng = Stream::new(seed, 0, "ebd-directions");
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(m);
    while rows.len() < m {
        let mut v: Vec<f64> = (0..d).map(|_| rng.gauss() as f64).collect();
        for r in &rows {
            let dot: f64 = v.iter().zip(r).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(r).for_each(|(a, b)| *a -= dot * b);
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if norm > 1e-8 {
            v.iter_mut().for_each(|a| *a /= norm);
            rows.push(v);
        }
    }
    let scale = (d as f64).sqrt();
    rows.iter()
        .flat_map(|r| r.iter().map(move |a| (a * scale) as f32))
        .collect()
}

/// For each image (rows of `images`, `d` values each, clean predictions `preds`) and each
/// direction (rows of `dirs`), the first level (of `step, 2·step, …, max_level`) at which the
/// prediction changes, or None.
pub fn first_flips(
    model: &Model,
    images: &[f32],
    preds: &[usize],
    dirs: &[f32],
    max_level: u32,
    step: u32,
) -> Result<Vec<Vec<Option<u32>>>> {
    let n = preds.len();
    let d = images.len() / n.max(1);
    let m = dirs.len() / d.max(1);
    let k = model.num_classes();
    let mut out = vec![vec![None; m]; n];
    let mut active: Vec<(usize, usize)> =
        (0..n).flat_map(|i| (0..m).map(move |j| (i, j))).collect();
    let mut level = step.max(1);
    while level <= max_level && !active.is_empty() {
        let t = level as f32 / 255.0;
        let mut batch = Vec::with_capacity(active.len() * d);
        for &(i, j) in &active {
            let x = &images[i * d..(i + 1) * d];
            let u = &dirs[j * d..(j + 1) * d];
            batch.extend(x.iter().zip(u).map(|(a, b)| (a + t * b).clamp(0.0, 1.0)));
        }
        let z = model.logits(&batch)?;
        let mut keep = Vec::with_capacity(active.len());
        for (r, &(i, j)) in active.iter().enumerate() {
            if faultline_attacks::attack::argmax(&z[r * k..(r + 1) * k]) != preds[i] {
                out[i][j] = Some(level);
            } else {
                keep.push((i, j));
            }
        }
        active = keep;
        level += step.max(1);
    }
    Ok(out)
}

/// ebd of one image from its per-direction first flips: the minimum, 126/255 for no flip.
pub fn ebd_of(flips: &[Option<u32>], max_level: u32) -> f64 {
    flips
        .iter()
        .map(|f| f.unwrap_or(max_level) as f64 / 255.0)
        .fold(f64::INFINITY, f64::min)
}

/// wbd of one image: the maximum over directions, 255/255 for a direction that never flips.
pub fn wbd_of(flips: &[Option<u32>]) -> f64 {
    flips
        .iter()
        .map(|f| f.unwrap_or(255) as f64 / 255.0)
        .fold(0.0, f64::max)
}

/// ebd2's step count of each image (None: no flip within `max_steps`).
pub fn sign_steps(
    model: &Model,
    images: &[f32],
    preds: &[usize],
    alpha: f32,
    max_steps: usize,
) -> Result<Vec<Option<usize>>> {
    let n = preds.len();
    let d = images.len() / n.max(1);
    let k = model.num_classes();
    let mut out = vec![None; n];
    let mut x = images.to_vec();
    let mut active: Vec<usize> = (0..n).collect();
    for step in 0..=max_steps {
        if active.is_empty() {
            break;
        }
        let xs: Vec<f32> = active
            .iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect();
        let labels: Vec<usize> = active.iter().map(|&i| preds[i]).collect();
        let g = model.loss_grad(&xs, &Loss::CrossEntropy { labels: &labels })?;
        let mut keep = Vec::with_capacity(active.len());
        for (r, &i) in active.iter().enumerate() {
            if faultline_attacks::attack::argmax(&g.logits[r * k..(r + 1) * k]) != preds[i] {
                out[i] = Some(step);
                continue;
            }
            if step < max_steps {
                let gi = &g.grad[r * d..(r + 1) * d];
                for (v, &gv) in x[i * d..(i + 1) * d].iter_mut().zip(gi) {
                    let s = if gv > 0.0 {
                        1.0
                    } else if gv < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    *v = (*v + alpha * s).clamp(0.0, 1.0);
                }
                keep.push(i);
            }
        }
        active = keep;
    }
    Ok(out)
}

/// Cross-entropy `logsumexp(z) − z_y` of one logit row, in f64.
pub fn cross_entropy(z: &[f32], y: usize) -> f64 {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    lse - z[y] as f64
}

/// eni of one sample (None when the perturbation is zero).
pub fn eni_sample(z: &[f32], y: usize, za: &[f32], linf: f64) -> Option<f64> {
    if linf <= 0.0 {
        return None;
    }
    let ya = faultline_attacks::attack::argmax(za);
    Some((cross_entropy(z, y) - cross_entropy(za, ya)).abs() / linf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_engine::ops::{Flatten, Gemm};
    use faultline_engine::{GraphBuilder, Tensor};

    /// Two classes on 2-value images: z = (0, x₀ − 0.5), so the boundary is x₀ = 0.5.
    pub(crate) fn two_class() -> Model {
        let mut g = GraphBuilder::new();
        g.input("x");
        g.constant(
            "w",
            Tensor::from_f32(vec![2, 2], vec![0.0, 0.0, 1.0, 0.0]).unwrap(),
        );
        g.constant("b", Tensor::from_f32(vec![2], vec![0.0, -0.5]).unwrap());
        g.node("flat", Box::new(Flatten { axis: 1 }), &[Some("x")], "f");
        let gemm = Gemm {
            trans_b: true,
            ..Gemm::default()
        };
        g.node(
            "fc",
            Box::new(gemm),
            &[Some("f"), Some("w"), Some("b")],
            "z",
        );
        let mut m = Model::new(g.build("z").unwrap(), vec![]);
        m.prepare([1, 1, 2], None).unwrap();
        m
    }

    #[test]
    fn directions_are_orthogonal_with_norm_root_d() {
        let (d, m) = (50, 7);
        let u = directions(d, m, 3);
        for a in 0..m {
            for b in 0..m {
                let dot: f64 = (0..d)
                    .map(|i| u[a * d + i] as f64 * u[b * d + i] as f64)
                    .sum();
                let want = if a == b { d as f64 } else { 0.0 };
                assert!((dot - want).abs() < 1e-3, "{a} {b} {dot}");
            }
        }
        assert_eq!(directions(3, 10, 0).len(), 9);
    }

    #[test]
    fn boundary_scan_by_hand() {
        let m = two_class();
        // x = (0.4, 0.4): along (√2, 0) the boundary is reached at t·√2 > 0.1, t > 0.0707 →
        // level 20 (18 is 0.0706); along (0, √2) never.
        let dirs = [2f32.sqrt(), 0.0, 0.0, 2f32.sqrt()];
        let f = first_flips(&m, &[0.4, 0.4], &[0], &dirs, 126, 2).unwrap();
        assert_eq!(f[0], vec![Some(20), None]);
        assert!((ebd_of(&f[0], 126) - 20.0 / 255.0).abs() < 1e-12);
        assert_eq!(wbd_of(&f[0]), 1.0);
        assert!((ebd_of(&[None], 126) - 126.0 / 255.0).abs() < 1e-12);
    }

    #[test]
    fn sign_steps_by_hand() {
        let m = two_class();
        // x₀ = 0.4003 needs 0.0997/0.0005 = 199.4 → 200 steps; the second image cannot flip
        // within 10 steps.
        let s = sign_steps(&m, &[0.4003, 0.1, 0.4003, 0.1], &[0, 0], 0.0005, 1000).unwrap();
        assert_eq!(s[0], Some(200));
        let s = sign_steps(&m, &[0.4003, 0.1], &[0], 0.0005, 10).unwrap();
        assert_eq!(s[0], None);
    }

    #[test]
    fn eni_by_hand() {
        // Clean logits (2, 0), y = 0: CE = ln(1 + e⁻²). Adversarial (0, 1), ŷᵃ = 1: CE = ln(1 + e⁻¹).
        let want = ((1.0 + (-2f64).exp()).ln() - (1.0 + (-1f64).exp()).ln()).abs() / 0.1;
        assert!((eni_sample(&[2.0, 0.0], 0, &[0.0, 1.0], 0.1).unwrap() - want).abs() < 1e-9);
        assert_eq!(eni_sample(&[2.0, 0.0], 0, &[2.0, 0.0], 0.0), None);
    }
}
