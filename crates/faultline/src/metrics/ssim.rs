//! Structural similarity as scikit-image computes it by default
//! (`skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=255)`): a 7×7 uniform
//! window, K1 = 0.01, K2 = 0.03, sample covariances (`N/(N−1)`), the SSIM map averaged over the
//! pixels whose window lies inside the image (skimage crops 3 pixels from each border), then
//! averaged over channels. Written out here because no maintained Rust crate reproduces
//! scikit-image's choices (window, sample covariance, crop); checked against values computed with
//! scikit-image 0.2x (`tests/fixtures/ssim.json`, generator beside it).

/// Window side.
pub const WIN: usize = 7;

/// Mean SSIM of two `c × h × w` (CHW) images on the 0–`data_range` scale; `None` when the
/// image is smaller than the 7×7 window.
pub fn ssim(a: &[f64], b: &[f64], c: usize, h: usize, w: usize, data_range: f64) -> Option<f64> {
    if h < WIN || w < WIN || a.len() != c * h * w || b.len() != a.len() {
        return None;
    }
    let (c1, c2) = ((0.01 * data_range).powi(2), (0.03 * data_range).powi(2));
    let np = (WIN * WIN) as f64;
    let cov_norm = np / (np - 1.0);
    let mut total = 0.0;
    for ch in 0..c {
        let pa = &a[ch * h * w..(ch + 1) * h * w];
        let pb = &b[ch * h * w..(ch + 1) * h * w];
        let mut sum = 0.0;
        for y in 0..=h - WIN {
            for x in 0..=w - WIN {
                let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for dy in 0..WIN {
                    let row = (y + dy) * w + x;
                    for i in row..row + WIN {
                        let (u, v) = (pa[i], pb[i]);
                        sa += u;
                        sb += v;
                        saa += u * u;
                        sbb += v * v;
                        sab += u * v;
                    }
                }
                let (ux, uy) = (sa / np, sb / np);
                let vx = cov_norm * (saa / np - ux * ux);
                let vy = cov_norm * (sbb / np - uy * uy);
                let vxy = cov_norm * (sab / np - ux * uy);
                sum += ((2.0 * ux * uy + c1) * (2.0 * vxy + c2))
                    / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
            }
        }
        total += sum / ((h - WIN + 1) * (w - WIN + 1)) as f64;
    }
    Some(total / c as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_score_one_and_a_shift_scores_less() {
        let a: Vec<f64> = (0..3 * 9 * 10).map(|i| ((i * 37) % 256) as f64).collect();
        assert!((ssim(&a, &a, 3, 9, 10, 255.0).unwrap() - 1.0).abs() < 1e-12);
        let b: Vec<f64> = a.iter().map(|v| (v + 40.0).min(255.0)).collect();
        assert!(ssim(&a, &b, 3, 9, 10, 255.0).unwrap() < 1.0);
        assert!(ssim(&a[..36], &a[..36], 1, 6, 6, 255.0).is_none());
    }

    #[test]
    fn one_window_by_hand() {
        // A single 7×7 window: constant a = 0 against constant b = 10, so μa = 0, μb = 10,
        // every variance 0: SSIM = C1 / (100 + C1) with C1 = (0.01·255)².
        let a = vec![0.0; 49];
        let b = vec![10.0; 49];
        let c1 = (0.01f64 * 255.0).powi(2);
        assert!((ssim(&a, &b, 1, 7, 7, 255.0).unwrap() - c1 / (100.0 + c1)).abs() < 1e-12);
    }
}
