//! Severity tables: one [`Table`] of per-family parameters for CIFAR (32×32) and one for ImageNet
//! (224×224), transcribed from the reference generators `make_cifar_c.py` and `make_imagenet_c.py`
//! (hendrycks/robustness). Entry `i` of each array is severity `i + 1`.
//!
//! Parameters given in pixels are used unchanged at other image sizes; everything the reference
//! derives from the image size (crop sizes, pixel-shuffle loops, fractal map size, frost texture scale)
//! follows the actual size. See [`crate::ParamTable::for_size`].

pub mod cifar;
pub mod imagenet;

/// Disk-kernel parameters of `defocus_blur`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DefocusParams {
    /// Disk radius in pixels.
    pub radius: f64,
    /// σ of the 3×3 (or 5×5) Gaussian that anti-aliases the disk.
    pub alias_blur: f64,
}

/// Parameters of `glass_blur`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlassParams {
    /// σ of the Gaussian blur applied before and after shuffling, in pixels.
    pub sigma: f64,
    /// Maximum displacement of a shuffled pixel (offsets are drawn from `[-d, d)`).
    pub max_delta: i64,
    /// Number of shuffling sweeps.
    pub iterations: usize,
}

/// Parameters of ImageMagick's motion blur (`motion_blur`, and the streaks of `snow`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionParams {
    /// Kernel radius in pixels (kernel width `2·ceil(radius) + 1`).
    pub radius: f64,
    /// σ of the one-sided Gaussian kernel, in pixels.
    pub sigma: f64,
}

/// Zoom factors of `zoom_blur`: `np.arange(1, stop, step)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZoomParams {
    /// Exclusive end of the range of zoom factors.
    pub stop: f64,
    /// Step between zoom factors.
    pub step: f64,
}

/// Parameters of `snow`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnowParams {
    /// Mean of the Gaussian snow layer.
    pub loc: f64,
    /// Standard deviation of the snow layer.
    pub scale: f64,
    /// Zoom factor applied to the snow layer (flake size).
    pub zoom: f64,
    /// Snow-layer values below this become 0.
    pub threshold: f64,
    /// Motion-blur radius of the flakes, pixels.
    pub blur_radius: f64,
    /// Motion-blur σ of the flakes, pixels.
    pub blur_sigma: f64,
    /// Weight of the original image against its whitened version.
    pub blend: f64,
}

/// Parameters of `frost`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrostParams {
    /// Weight of the image.
    pub image_weight: f64,
    /// Weight of the frost texture.
    pub frost_weight: f64,
}

/// Parameters of `fog`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FogParams {
    /// Strength of the plasma fractal added to the image.
    pub strength: f64,
    /// Decay of the fractal's random perturbation per octave.
    pub wibble_decay: f64,
}

/// Parameters of `elastic_transform` (all in pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElasticParams {
    /// Amplitude of the displacement field.
    pub alpha: f64,
    /// σ of the Gaussian smoothing the random displacement field.
    pub sigma: f64,
    /// Maximum random displacement of the three affine control points.
    pub affine: f64,
}

/// Parameters of `spatter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatterParams {
    /// Mean of the Gaussian liquid layer.
    pub loc: f64,
    /// Standard deviation of the liquid layer.
    pub scale: f64,
    /// σ of the Gaussian smoothing the liquid layer.
    pub sigma: f64,
    /// Liquid-layer values below this become 0.
    pub threshold: f64,
    /// Intensity (water) or σ of the mask blur (mud).
    pub intensity: f64,
    /// `false`: water (pale turquoise), `true`: mud (brown).
    pub mud: bool,
}

/// Saturation change `S ← clip(S·scale + shift, 0, 1)` of `saturate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaturateParams {
    /// Multiplier of the HSV saturation.
    pub scale: f64,
    /// Offset added to the HSV saturation.
    pub shift: f64,
}

/// One complete severity table (all 19 families × 5 severities).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// σ of the additive Gaussian noise on `[0, 1]` pixels.
    pub gaussian_noise: [f64; 5],
    /// Photon count λ of the Poisson noise (`Poisson(x·λ)/λ`).
    pub shot_noise: [f64; 5],
    /// Fraction of values replaced by salt or pepper.
    pub impulse_noise: [f64; 5],
    /// σ of the multiplicative Gaussian noise.
    pub speckle_noise: [f64; 5],
    /// σ of the Gaussian blur, pixels.
    pub gaussian_blur: [f64; 5],
    /// Glass-blur parameters.
    pub glass_blur: [GlassParams; 5],
    /// Defocus-blur parameters.
    pub defocus_blur: [DefocusParams; 5],
    /// Motion-blur parameters.
    pub motion_blur: [MotionParams; 5],
    /// Zoom-blur factor ranges.
    pub zoom_blur: [ZoomParams; 5],
    /// Snow parameters.
    pub snow: [SnowParams; 5],
    /// Frost weights.
    pub frost: [FrostParams; 5],
    /// Scale applied to the frost textures before cropping (0.2 for CIFAR, 1 for ImageNet).
    pub frost_texture_scale: f64,
    /// Image side the frost texture scale is meant for (32 or 224).
    pub frost_reference_size: f64,
    /// Fog parameters.
    pub fog: [FogParams; 5],
    /// Value added to the HSV value channel.
    pub brightness: [f64; 5],
    /// Factor applied to the deviation from the per-channel mean.
    pub contrast: [f64; 5],
    /// Elastic-transform parameters (pixels).
    pub elastic_transform: [ElasticParams; 5],
    /// Down-scaling factor of `pixelate`.
    pub pixelate: [f64; 5],
    /// JPEG quality.
    pub jpeg_compression: [u8; 5],
    /// Spatter parameters.
    pub spatter: [SpatterParams; 5],
    /// Saturation parameters.
    pub saturate: [SaturateParams; 5],
}
