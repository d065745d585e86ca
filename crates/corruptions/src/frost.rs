//! Frost: blend with a crop of a frost texture.
//!
//! # Paper
//! Hendrycks & Dietterich, ICLR 2019, arXiv:1903.12261.
//!
//! # Formula
//! `x ← clip(a·x + b·F, 0, 255)` on 0–255 values, `F` a random crop of one of the first five frost
//! textures (`randint(5)`: the reference never picks the sixth) after scaling the texture;
//! (a, b) = (1, 0.2) … (0.75, 0.45) (CIFAR), (1, 0.4) … (0.6, 0.75) (ImageNet).
//!
//! # Defaults
//! Textures are the reference's `frost1.png … frost6.jpg` (Apache-2.0, see `assets/frost/LICENSE`),
//! embedded in the library. CIFAR scales them by 0.2 with OpenCV's bilinear `resize` (which at this
//! factor picks pixels `5i + 2`); ImageNet crops them at full size. Other sizes: see
//! [`crate::ParamTable::for_size`]. Grayscale images blend with the texture's BT.601 luma.
//! Textures are decoded once and scaled textures are cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::image::{trunc_u8, ImageU8, LUMA};
use crate::ops::resample::cv_resize_linear;
use crate::params::Table;
use crate::rng::RandomSource;

const TEXTURES: [&[u8]; 5] = [
    include_bytes!("../assets/frost/frost1.png"),
    include_bytes!("../assets/frost/frost2.png"),
    include_bytes!("../assets/frost/frost3.png"),
    include_bytes!("../assets/frost/frost4.jpg"),
    include_bytes!("../assets/frost/frost5.jpg"),
];

/// A decoded RGB texture.
#[derive(Debug)]
struct Texture {
    h: usize,
    w: usize,
    rgb: Vec<u8>,
}

type Decoded = Vec<std::result::Result<Arc<Texture>, String>>;

fn decoded() -> &'static Decoded {
    static CELL: OnceLock<Decoded> = OnceLock::new();
    CELL.get_or_init(|| {
        TEXTURES
            .iter()
            .map(|bytes| {
                let img = ::image::load_from_memory(bytes).map_err(|e| e.to_string())?;
                let rgb = img.to_rgb8();
                Ok(Arc::new(Texture {
                    h: rgb.height() as usize,
                    w: rgb.width() as usize,
                    rgb: rgb.into_raw(),
                }))
            })
            .collect()
    })
}

/// Texture `index` scaled to `out_h × out_w`, cached.
fn scaled(index: usize, out_h: usize, out_w: usize) -> Result<Arc<Texture>> {
    type Cache = Mutex<HashMap<(usize, usize, usize), Arc<Texture>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (index, out_h, out_w);
    if let Some(t) = cache.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(t);
    }
    let base = decoded()[index]
        .clone()
        .map_err(|message| Error::Texture { index, message })?;
    let t = if (base.h, base.w) == (out_h, out_w) {
        base
    } else {
        Arc::new(Texture {
            h: out_h,
            w: out_w,
            rgb: cv_resize_linear(&base.rgb, base.h, base.w, 3, out_h, out_w),
        })
    };
    if let Ok(mut m) = cache.lock() {
        if m.len() > 64 {
            m.clear();
        }
        m.insert(key, t.clone());
    }
    Ok(t)
}

pub(crate) fn apply<R: RandomSource>(
    img: &ImageU8,
    t: &Table,
    s: usize,
    rng: &mut R,
) -> Result<ImageU8> {
    let p = t.frost[s];
    let (h, w, c) = (img.height(), img.width(), img.channels());
    let idx = rng.randint(0, 5) as usize;
    let base = decoded()[idx].clone().map_err(|message| Error::Texture {
        index: idx,
        message,
    })?;
    // Scale: the table's factor at its reference size, proportional to the longer image side, and
    // large enough for a crop of (h + 1) × (w + 1) (the reference's randint needs a strict excess).
    let mut scale = t.frost_texture_scale * h.max(w) as f64 / t.frost_reference_size;
    scale = scale
        .max((h + 1) as f64 / base.h as f64)
        .max((w + 1) as f64 / base.w as f64);
    let (th, tw) = if (scale - 1.0).abs() < 1e-12 {
        (base.h, base.w)
    } else {
        // cv2.resize(frost, (0, 0), fx=s, fy=s): dsize = round(size·s)
        (
            ((base.h as f64 * scale).round() as usize).max(h + 1),
            ((base.w as f64 * scale).round() as usize).max(w + 1),
        )
    };
    let tex = scaled(idx, th, tw)?;
    let y0 = rng.randint(0, (tex.h - h) as i64) as usize;
    let x0 = rng.randint(0, (tex.w - w) as i64) as usize;
    let src = img.as_slice();
    let mut out = vec![0u8; src.len()];
    for y in 0..h {
        for x in 0..w {
            let tp = ((y0 + y) * tex.w + x0 + x) * 3;
            let f = &tex.rgb[tp..tp + 3];
            for ch in 0..c {
                let fv = if c == 3 {
                    f[ch] as f64
                } else {
                    LUMA[0] * f[0] as f64 + LUMA[1] * f[1] as f64 + LUMA[2] * f[2] as f64
                };
                let i = (y * w + x) * c + ch;
                out[i] = trunc_u8(
                    (p.image_weight * src[i] as f64 + p.frost_weight * fv).clamp(0.0, 255.0),
                );
            }
        }
    }
    Ok(ImageU8::from_parts(h, w, c, out))
}
