//! scikit-image `rgb2hsv` / `hsv2rgb` on `f64` pixels in `[0, 1]`, with the same branch order.

/// `skimage.color.rgb2hsv` for one pixel. Ties between maxima resolve as in scikit-image, where later
/// assignments win: blue over green over red.
#[inline]
pub fn rgb2hsv(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
    let v = r.max(g).max(b);
    let delta = v - r.min(g).min(b);
    if delta == 0.0 {
        return (0.0, 0.0, v);
    }
    let s = delta / v;
    let h = if b == v {
        4.0 + (r - g) / delta
    } else if g == v {
        2.0 + (b - r) / delta
    } else {
        (g - b) / delta
    };
    // NumPy's float `% 1.0`: fmod, then shift negative remainders into [0, 1).
    let mut hh = (h / 6.0) % 1.0;
    if hh != 0.0 && hh < 0.0 {
        hh += 1.0;
    }
    (hh, s, v)
}

/// `skimage.color.hsv2rgb` for one pixel.
#[inline]
pub fn hsv2rgb(h: f64, s: f64, v: f64) -> (f64, f64, f64) {
    let hi = (h * 6.0).floor();
    let f = h * 6.0 - hi;
    let p = v * (1.0 - s);
    let q = v * (1.0 - f * s);
    let t = v * (1.0 - (1.0 - f) * s);
    // `.astype(np.uint8) % 6`; hi is in 0..=6 for h in [0, 1].
    match (hi as i64).rem_euclid(256) % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for &(r, g, b) in &[
            (0.2, 0.5, 0.9),
            (1.0, 0.0, 0.0),
            (0.3, 0.3, 0.3),
            (0.9, 0.1, 0.4),
        ] {
            let (h, s, v) = rgb2hsv(r, g, b);
            let (r2, g2, b2) = hsv2rgb(h, s, v);
            assert!((r - r2).abs() < 1e-12 && (g - g2).abs() < 1e-12 && (b - b2).abs() < 1e-12);
        }
    }
}
