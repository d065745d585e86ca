//! The registry of corruption families, the parameter-table choice and the single entry point
//! [`corrupt`]. The registry is one table, [`CorruptionKind::ALL`], in the order of the reference
//! generator (15 standard families, then the 4 extra ones); names are the reference function names.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::image::ImageU8;
use crate::params::{cifar::CIFAR, imagenet::IMAGENET, Table};
use crate::rng::{sample_seed, RandomSource, Rng};

macro_rules! registry {
    ($( $variant:ident => $name:literal, $module:ident, random: $random:literal, extra: $extra:literal; )*) => {
        /// One of the 19 corruption families of CIFAR-10-C / ImageNet-C.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum CorruptionKind {
            $(
                #[doc = concat!("`", $name, "` — see [`crate::", stringify!($module), "`].")]
                $variant,
            )*
        }

        impl CorruptionKind {
            /// All families in registry order: the 15 standard ones, then the 4 extra ones.
            pub const ALL: [CorruptionKind; 19] = [$(CorruptionKind::$variant),*];

            /// The canonical snake_case name (the reference function's name).
            pub const fn name(self) -> &'static str {
                match self { $(CorruptionKind::$variant => $name),* }
            }

            /// Whether the family draws random numbers (and so depends on the seed).
            pub const fn is_random(self) -> bool {
                match self { $(CorruptionKind::$variant => $random),* }
            }

            /// Whether the family is one of the 4 extra ("validation") corruptions.
            pub const fn is_extra(self) -> bool {
                match self { $(CorruptionKind::$variant => $extra),* }
            }

            fn apply<R: RandomSource>(self, img: &ImageU8, table: &Table, s: usize, rng: &mut R) -> Result<ImageU8> {
                match self { $(CorruptionKind::$variant => crate::$module::apply(img, table, s, rng)),* }
            }
        }

        /// The names of all 19 families, in registry order.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

registry! {
    GaussianNoise => "gaussian_noise", gaussian_noise, random: true, extra: false;
    ShotNoise => "shot_noise", shot_noise, random: true, extra: false;
    ImpulseNoise => "impulse_noise", impulse_noise, random: true, extra: false;
    DefocusBlur => "defocus_blur", defocus_blur, random: false, extra: false;
    GlassBlur => "glass_blur", glass_blur, random: true, extra: false;
    MotionBlur => "motion_blur", motion_blur, random: true, extra: false;
    ZoomBlur => "zoom_blur", zoom_blur, random: false, extra: false;
    Snow => "snow", snow, random: true, extra: false;
    Frost => "frost", frost, random: true, extra: false;
    Fog => "fog", fog, random: true, extra: false;
    Brightness => "brightness", brightness, random: false, extra: false;
    Contrast => "contrast", contrast, random: false, extra: false;
    ElasticTransform => "elastic_transform", elastic_transform, random: true, extra: false;
    Pixelate => "pixelate", pixelate, random: false, extra: false;
    JpegCompression => "jpeg_compression", jpeg_compression, random: false, extra: false;
    SpeckleNoise => "speckle_noise", speckle_noise, random: true, extra: true;
    GaussianBlur => "gaussian_blur", gaussian_blur, random: false, extra: true;
    Spatter => "spatter", spatter, random: true, extra: true;
    Saturate => "saturate", saturate, random: false, extra: true;
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CorruptionKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        CorruptionKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::UnknownName {
                what: "corruption",
                name: s.to_string(),
            })
    }
}

/// Which severity table to use: CIFAR-10-C (tuned for 32×32) or ImageNet-C (tuned for 224×224).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamTable {
    /// `make_cifar_c.py` constants.
    Cifar,
    /// `make_imagenet_c.py` constants.
    ImageNet,
}

impl ParamTable {
    /// Picks the table for an image size: CIFAR when the shorter side is at most 84 pixels, ImageNet
    /// otherwise. 84 ≈ √(32·224) is the geometric midpoint of the two reference sizes, so each image
    /// gets the table whose reference size is closer on a log scale (32×32, 64×64 → CIFAR;
    /// 96×96, 224×224, 512×384 → ImageNet).
    ///
    /// At any size, parameters expressed in pixels (blur radii, σ, elastic amplitudes) are used
    /// unchanged; what the reference ties to its fixed size follows the actual image: the
    /// pixel-shuffle loop of glass blur covers the whole image, the fog fractal map is the next
    /// power of two ≥ the longer side, the zoom crops are per axis, and frost textures are scaled by
    /// `table scale × longer side / reference side` (CIFAR: 0.2 at 32 px; ImageNet: 1 at 224 px),
    /// enlarged further if needed so that a crop of the image size fits.
    pub fn for_size(height: usize, width: usize) -> ParamTable {
        if height.min(width) <= 84 {
            ParamTable::Cifar
        } else {
            ParamTable::ImageNet
        }
    }

    /// The table's name: `cifar` or `imagenet`.
    pub const fn name(self) -> &'static str {
        match self {
            ParamTable::Cifar => "cifar",
            ParamTable::ImageNet => "imagenet",
        }
    }

    /// The parameter values.
    pub fn table(self) -> &'static Table {
        match self {
            ParamTable::Cifar => &CIFAR,
            ParamTable::ImageNet => &IMAGENET,
        }
    }
}

impl fmt::Display for ParamTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ParamTable {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cifar" => Ok(ParamTable::Cifar),
            "imagenet" => Ok(ParamTable::ImageNet),
            _ => Err(Error::UnknownName {
                what: "parameter table",
                name: s.to_string(),
            }),
        }
    }
}

/// Applies corruption `kind` at `severity` (1..=5) with parameters from `table` to an HWC `u8` image
/// with 1 or 3 channels, returning an image of the same shape.
///
/// The output is what the reference generator stores: its `[0, 1]` float result clipped, scaled by
/// 255 and truncated by `np.uint8`. Random families draw from a stream derived from
/// `(seed, sample_index, kind, severity)` only ([`crate::sample_seed`]), so a sample's bytes do not
/// depend on thread count, batch split or call order. Deterministic families ignore the seed.
pub fn corrupt(
    kind: CorruptionKind,
    severity: u8,
    table: ParamTable,
    image: &ImageU8,
    seed: u64,
    sample_index: u64,
) -> Result<ImageU8> {
    let mut rng = Rng::new(sample_seed(seed, sample_index, kind.name(), severity));
    corrupt_with_source(kind, severity, table, image, &mut rng)
}

/// [`corrupt`] with an explicit random source instead of the per-sample stream, e.g. an MT19937
/// generator seeded like `np.random.seed(0)` to replay the reference generator's draws (the order of
/// draws within each family follows the reference code).
pub fn corrupt_with_source<R: RandomSource>(
    kind: CorruptionKind,
    severity: u8,
    table: ParamTable,
    image: &ImageU8,
    rng: &mut R,
) -> Result<ImageU8> {
    if !(1..=5).contains(&severity) {
        return Err(Error::BadSeverity(severity));
    }
    if image.channels() != 1 && image.channels() != 3 {
        return Err(Error::UnsupportedChannels(image.channels()));
    }
    if image.height() == 0 || image.width() == 0 {
        return Err(Error::EmptyImage {
            height: image.height(),
            width: image.width(),
        });
    }
    kind.apply(image, table.table(), (severity - 1) as usize, rng)
}

/// [`corrupt`] over a batch in parallel (rayon); image `i` uses sample index `first_index + i`, so
/// the result equals calling [`corrupt`] on each image in turn.
pub fn corrupt_batch(
    kind: CorruptionKind,
    severity: u8,
    table: ParamTable,
    images: &[ImageU8],
    seed: u64,
    first_index: u64,
) -> Result<Vec<ImageU8>> {
    use rayon::prelude::*;
    images
        .par_iter()
        .enumerate()
        .map(|(i, img)| corrupt(kind, severity, table, img, seed, first_index + i as u64))
        .collect()
}
