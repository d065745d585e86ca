//! ImageNet-C parameters (224×224), from `ImageNet-C/create_c/make_imagenet_c.py` of hendrycks/robustness
//! (peers.md §5). Elastic constants are fractions of 244, as in the reference ("244 should have been 224").

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
/// The reference writes elastic parameters as fractions of `244 (sic)`.
const fn elastic(alpha: f64, sigma: f64, affine: f64) -> ElasticParams {
    ElasticParams {
        alpha: 244.0 * alpha,
        sigma: 244.0 * sigma,
        affine: 244.0 * affine,
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
/// The ImageNet-C table.
pub const IMAGENET: Table = Table {
    gaussian_noise: [0.08, 0.12, 0.18, 0.26, 0.38],
    shot_noise: [60.0, 25.0, 12.0, 5.0, 3.0],
    impulse_noise: [0.03, 0.06, 0.09, 0.17, 0.27],
    speckle_noise: [0.15, 0.2, 0.35, 0.45, 0.6],
    gaussian_blur: [1.0, 2.0, 3.0, 4.0, 6.0],
    glass_blur: [
        glass(0.7, 1, 2),
        glass(0.9, 2, 1),
        glass(1.0, 2, 3),
        glass(1.1, 3, 2),
        glass(1.5, 4, 2),
    ],
    defocus_blur: [
        disk(3.0, 0.1),
        disk(4.0, 0.5),
        disk(6.0, 0.5),
        disk(8.0, 0.5),
        disk(10.0, 0.5),
    ],
    motion_blur: [
        motion(10.0, 3.0),
        motion(15.0, 5.0),
        motion(15.0, 8.0),
        motion(15.0, 12.0),
        motion(20.0, 15.0),
    ],
    zoom_blur: [
        zoom(1.11, 0.01),
        zoom(1.16, 0.01),
        zoom(1.21, 0.02),
        zoom(1.26, 0.02),
        zoom(1.31, 0.03),
    ],
    snow: [
        snow(0.1, 0.3, 3.0, 0.5, 10.0, 4.0, 0.8),
        snow(0.2, 0.3, 2.0, 0.5, 12.0, 4.0, 0.7),
        snow(0.55, 0.3, 4.0, 0.9, 12.0, 8.0, 0.7),
        snow(0.55, 0.3, 4.5, 0.85, 12.0, 8.0, 0.65),
        snow(0.55, 0.3, 2.5, 0.85, 12.0, 12.0, 0.55),
    ],
    frost: [
        frost(1.0, 0.4),
        frost(0.8, 0.6),
        frost(0.7, 0.7),
        frost(0.65, 0.7),
        frost(0.6, 0.75),
    ],
    frost_texture_scale: 1.0,
    frost_reference_size: 224.0,
    fog: [
        fog(1.5, 2.0),
        fog(2.0, 2.0),
        fog(2.5, 1.7),
        fog(2.5, 1.5),
        fog(3.0, 1.4),
    ],
    brightness: [0.1, 0.2, 0.3, 0.4, 0.5],
    contrast: [0.4, 0.3, 0.2, 0.1, 0.05],
    elastic_transform: [
        elastic(2.0, 0.7, 0.1),
        elastic(2.0, 0.08, 0.2),
        elastic(0.05, 0.01, 0.02),
        elastic(0.07, 0.01, 0.02),
        elastic(0.12, 0.01, 0.02),
    ],
    pixelate: [0.6, 0.5, 0.4, 0.3, 0.25],
    jpeg_compression: [25, 18, 15, 10, 7],
    spatter: [
        spatter(0.65, 0.3, 4.0, 0.69, 0.6, false),
        spatter(0.65, 0.3, 3.0, 0.68, 0.6, false),
        spatter(0.65, 0.3, 2.0, 0.68, 0.5, false),
        spatter(0.65, 0.3, 1.0, 0.65, 1.5, true),
        spatter(0.67, 0.4, 1.0, 0.65, 1.5, true),
    ],
    saturate: [
        sat(0.3, 0.0),
        sat(0.1, 0.0),
        sat(2.0, 0.0),
        sat(5.0, 0.1),
        sat(20.0, 0.2),
    ],
};
