//! SciPy `ndimage.zoom(order=1)` and the reference's `clipped_zoom` (centre crop, zoom, trim).

/// Python's `round()` (half to even) as used by SciPy for the zoomed shape.
fn round_half_even(v: f64) -> usize {
    v.round_ties_even().max(0.0) as usize
}

/// Sampling of one axis: for each kept output index, the two source indices and their weights.
#[derive(Debug, Clone)]
pub struct AxisMap {
    /// `(i0, i1, w0, w1)` per output index: value = `w0·x[i0] + w1·x[i1]`.
    pub taps: Vec<(usize, usize, f64, f64)>,
}

/// Builds the axis map of `clipped_zoom` for an axis of length `n` and zoom factor `z`:
/// crop `ch = ceil(n/z)` centred samples (`top = (n-ch)//2`), zoom them to `round(ch·z)` samples with
/// SciPy's `grid_mode=False` mapping `in = out·(ch-1)/(out_len-1)` and linear weights, then keep the
/// `n` samples starting at `(out_len-n)//2`.
pub fn clipped_zoom_axis(n: usize, z: f64) -> AxisMap {
    let ch = ((n as f64 / z).ceil() as usize).clamp(1, n);
    let top = (n - ch) / 2;
    let out_len = round_half_even(ch as f64 * z).max(1);
    let step = if out_len > 1 {
        (ch as f64 - 1.0) / (out_len as f64 - 1.0)
    } else {
        1.0
    };
    let trim = out_len.saturating_sub(n) / 2;
    let taps = (0..n)
        .map(|k| {
            let o = (k + trim).min(out_len - 1);
            let cc = o as f64 * step;
            let f = cc.floor();
            let t = cc - f;
            let i0 = (f as usize).min(ch - 1);
            let i1 = (i0 + 1).min(ch - 1);
            (top + i0, top + i1, 1.0 - t, t)
        })
        .collect();
    AxisMap { taps }
}

/// `clipped_zoom` of an HWC image (given as `f64` copies of its `f32` values), accumulated into
/// `acc` (`out += clipped_zoom(x, z)`). Each sample is computed in `f64` as SciPy does
/// (`Σ x·w_y·w_x` in row-major tap order) and rounded to `f32` before accumulation.
pub fn add_clipped_zoom_f32(src: &[f64], h: usize, w: usize, c: usize, z: f64, acc: &mut [f32]) {
    if z == 1.0 {
        // SciPy's zoom by exactly 1 samples every pixel with weights (1, 0): an exact copy.
        for (a, &v) in acc.iter_mut().zip(src) {
            *a += v as f32;
        }
        return;
    }
    match c {
        3 => add_zoom_impl::<3>(src, h, w, z, acc),
        _ => add_zoom_impl::<1>(src, h, w, z, acc),
    }
}

fn add_zoom_impl<const C: usize>(src: &[f64], h: usize, w: usize, z: f64, acc: &mut [f32]) {
    let my = clipped_zoom_axis(h, z);
    let mx = clipped_zoom_axis(w, z);
    let row = w * C;
    for (y, &(y0, y1, wy0, wy1)) in my.taps.iter().enumerate() {
        let r0 = &src[y0 * row..(y0 + 1) * row];
        let r1 = &src[y1 * row..(y1 + 1) * row];
        let out = &mut acc[y * row..(y + 1) * row];
        for (o, &(x0, x1, wx0, wx1)) in out.chunks_exact_mut(C).zip(&mx.taps) {
            let a0: &[f64; C] = r0[x0 * C..x0 * C + C].try_into().unwrap();
            let a1: &[f64; C] = r0[x1 * C..x1 * C + C].try_into().unwrap();
            let b0: &[f64; C] = r1[x0 * C..x0 * C + C].try_into().unwrap();
            let b1: &[f64; C] = r1[x1 * C..x1 * C + C].try_into().unwrap();
            for ch in 0..C {
                let mut t = a0[ch] * wy0 * wx0;
                t += a1[ch] * wy0 * wx1;
                t += b0[ch] * wy1 * wx0;
                t += b1[ch] * wy1 * wx1;
                o[ch] += t as f32;
            }
        }
    }
}

/// `clipped_zoom` of one `f64` plane (the snow layer), returning a new plane.
pub fn clipped_zoom_f64(src: &[f64], h: usize, w: usize, z: f64) -> Vec<f64> {
    let my = clipped_zoom_axis(h, z);
    let mx = clipped_zoom_axis(w, z);
    let mut out = vec![0.0; h * w];
    for (y, &(y0, y1, wy0, wy1)) in my.taps.iter().enumerate() {
        for (x, &(x0, x1, wx0, wx1)) in mx.taps.iter().enumerate() {
            let mut t = src[y0 * w + x0] * wy0 * wx0;
            t += src[y0 * w + x1] * wy0 * wx1;
            t += src[y1 * w + x0] * wy1 * wx0;
            t += src[y1 * w + x1] * wy1 * wx1;
            out[y * w + x] = t;
        }
    }
    out
}

/// `np.arange(start, stop, step)` as NumPy computes it: `len = ceil((stop-start)/step)` and
/// `v_i = start + i·((start+step) - start)`.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil().max(0.0) as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| start + i as f64 * delta).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arange_lengths_match_numpy() {
        assert_eq!(np_arange(1.0, 1.06, 0.01).len(), 7);
        assert_eq!(np_arange(1.0, 1.16, 0.01).len(), 16);
        assert_eq!(np_arange(1.0, 1.26, 0.01).len(), 26);
        assert_eq!(np_arange(1.0, 1.21, 0.02).len(), 11);
        assert_eq!(np_arange(1.0, 1.31, 0.03).len(), 11);
    }

    #[test]
    fn zoom_one_is_identity() {
        let m = clipped_zoom_axis(32, 1.0);
        for (k, t) in m.taps.iter().enumerate() {
            assert_eq!((t.0, t.2), (k, 1.0));
        }
    }
}
