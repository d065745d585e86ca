//! CIFAR-10-C parameters (32×32), from `ImageNet-C/create_c/make_cifar_c.py` of hendrycks/robustness
//! (also listed in docs/methods.md §6.3 and peers.md §5).

use super::*;

const fn glass(sigma: f64, max_delta: i64, iterations: usize) -> GlassParams {
    GlassParams {
        sigma,
        max_delta,
        iterations,
    }
}
const fn disk(radius: f64, alias_blur: f64) -> DefocusParams {
    DefocusParams { radius, alias_blur }
}
const fn motion(radius: f64, sigma: f64) -> MotionParams {
    MotionParams { radius, sigma }
}
const fn zoom(stop: f64, step: f64) -> ZoomParams {
    ZoomParams { stop, step }
}
const fn snow(
    loc: f64,
    scale: f64,
    zoom: f64,
    threshold: f64,
    blur_radius: f64,
    blur_sigma: f64,
    blend: f64,
) -> SnowParams {
    SnowParams {
        loc,
        scale,
        zoom,
        threshold,
        blur_radius,
        blur_sigma,
        blend,
    }
}
const fn frost(image_weight: f64, frost_weight: f64) -> FrostParams {
    FrostParams {
        image_weight,
        frost_weight,
    }
}
const fn fog(strength: f64, wibble_decay: f64) -> FogParams {
    FogParams {
        strength,
        wibble_decay,
    }
}
/// The reference writes elastic parameters as fractions of `IMSIZE = 32`.
const fn elastic(alpha: f64, sigma: f64, affine: f64) -> ElasticParams {
    ElasticParams {
        alpha: 32.0 * alpha,
        sigma: 32.0 * sigma,
        affine: 32.0 * affine,
    }
}
const fn spatter(
    loc: f64,
    scale: f64,
    sigma: f64,
    threshold: f64,
    intensity: f64,
    mud: bool,
) -> SpatterParams {
    SpatterParams {
        loc,
        scale,
        sigma,
        threshold,
        intensity,
        mud,
    }
}
const fn sat(scale: f64, shift: f64) -> SaturateParams {
    SaturateParams { scale, shift }
}

/// The CIFAR-10-C table.
pub const CIFAR: Table = Table {
    gaussian_noise: [0.04, 0.06, 0.08, 0.09, 0.10],
    shot_noise: [500.0, 250.0, 100.0, 75.0, 50.0],
    impulse_noise: [0.01, 0.02, 0.03, 0.05, 0.07],
    speckle_noise: [0.06, 0.1, 0.12, 0.16, 0.2],
    gaussian_blur: [0.4, 0.6, 0.7, 0.8, 1.0],
    glass_blur: [
        glass(0.05, 1, 1),
        glass(0.25, 1, 1),
        glass(0.4, 1, 1),
        glass(0.25, 1, 2),
        glass(0.4, 1, 2),
    ],
    defocus_blur: [
        disk(0.3, 0.4),
        disk(0.4, 0.5),
        disk(0.5, 0.6),
        disk(1.0, 0.2),
        disk(1.5, 0.1),
    ],
    motion_blur: [
        motion(6.0, 1.0),
        motion(6.0, 1.5),
        motion(6.0, 2.0),
        motion(8.0, 2.0),
        motion(9.0, 2.5),
    ],
    zoom_blur: [
        zoom(1.06, 0.01),
        zoom(1.11, 0.01),
        zoom(1.16, 0.01),
        zoom(1.21, 0.01),
        zoom(1.26, 0.01),
    ],
    snow: [
        snow(0.1, 0.2, 1.0, 0.6, 8.0, 3.0, 0.95),
        snow(0.1, 0.2, 1.0, 0.5, 10.0, 4.0, 0.9),
        snow(0.15, 0.3, 1.75, 0.55, 10.0, 4.0, 0.9),
        snow(0.25, 0.3, 2.25, 0.6, 12.0, 6.0, 0.85),
        snow(0.3, 0.3, 1.25, 0.65, 14.0, 12.0, 0.8),
    ],
    frost: [
        frost(1.0, 0.2),
        frost(1.0, 0.3),
        frost(0.9, 0.4),
        frost(0.85, 0.4),
        frost(0.75, 0.45),
    ],
    frost_texture_scale: 0.2,
    frost_reference_size: 32.0,
    fog: [
        fog(0.2, 3.0),
        fog(0.5, 3.0),
        fog(0.75, 2.5),
        fog(1.0, 2.0),
        fog(1.5, 1.75),
    ],
    brightness: [0.05, 0.1, 0.15, 0.2, 0.3],
    contrast: [0.75, 0.5, 0.4, 0.3, 0.15],
    elastic_transform: [
        elastic(0.0, 0.0, 0.08),
        elastic(0.05, 0.2, 0.07),
        elastic(0.08, 0.06, 0.06),
        elastic(0.1, 0.04, 0.05),
        elastic(0.1, 0.03, 0.03),
    ],
    pixelate: [0.95, 0.9, 0.85, 0.75, 0.65],
    jpeg_compression: [80, 65, 58, 50, 40],
    spatter: [
        spatter(0.62, 0.1, 0.7, 0.7, 0.5, false),
        spatter(0.65, 0.1, 0.8, 0.7, 0.5, false),
        spatter(0.65, 0.3, 1.0, 0.69, 0.5, false),
        spatter(0.65, 0.1, 0.7, 0.69, 0.6, true),
        spatter(0.65, 0.1, 0.5, 0.68, 0.6, true),
    ],
    saturate: [
        sat(0.3, 0.0),
        sat(0.1, 0.0),
        sat(1.5, 0.0),
        sat(2.0, 0.1),
        sat(2.5, 0.2),
    ],
};
