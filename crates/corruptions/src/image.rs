//! The image type corruptions read and write: 8-bit, height × width × channels (HWC), 1 or 3 channels.

use crate::error::{Error, Result};

/// An 8-bit image stored row-major as height × width × channels (HWC), like a NumPy `uint8` array of
/// shape `[H, W, C]`. Corruptions accept 1 (grayscale) or 3 (RGB) channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageU8 {
    height: usize,
    width: usize,
    channels: usize,
    data: Vec<u8>,
}

impl ImageU8 {
    /// Wraps an HWC buffer, checking that its length is `height * width * channels` and that the
    /// image is not empty. The channel count is checked later, by the corruption.
    pub fn new(height: usize, width: usize, channels: usize, data: Vec<u8>) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(Error::EmptyImage { height, width });
        }
        let expected = height * width * channels;
        if data.len() != expected {
            return Err(Error::BufferSize {
                height,
                width,
                channels,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            height,
            width,
            channels,
            data,
        })
    }

    /// An image of the given shape filled with `value`.
    pub fn filled(height: usize, width: usize, channels: usize, value: u8) -> Self {
        Self {
            height,
            width,
            channels,
            data: vec![value; height * width * channels],
        }
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Channels per pixel (1 or 3 for images corruptions accept).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The HWC pixel buffer.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the image and returns its HWC buffer.
    pub fn into_vec(self) -> Vec<u8> {
        self.data
    }

    /// Value at row `y`, column `x`, channel `c` (panics when out of bounds, like slice indexing).
    pub fn get(&self, y: usize, x: usize, c: usize) -> u8 {
        self.data[(y * self.width + x) * self.channels + c]
    }

    /// Builds an image from a shape and buffer known to be consistent (internal use).
    pub(crate) fn from_parts(height: usize, width: usize, channels: usize, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), height * width * channels);
        Self {
            height,
            width,
            channels,
            data,
        }
    }
}

/// `np.uint8(v)` for a float in `[0, 255]`: truncation toward zero (the reference generator's final
/// conversion). NaN maps to 0, like NumPy on x86.
#[inline]
pub(crate) fn trunc_u8(v: f64) -> u8 {
    v as u8
}

/// `np.uint8(v)` for an `f32` value.
#[inline]
pub(crate) fn trunc_u8_f32(v: f32) -> u8 {
    v as u8
}

/// `np.clip(v, 0, 1) * 255` followed by `np.uint8` (truncation), the reference's output step.
#[inline]
pub(crate) fn unit_to_u8(v: f64) -> u8 {
    trunc_u8(v.clamp(0.0, 1.0) * 255.0)
}

/// Pixel values divided by 255 in `f64` (`np.array(x) / 255.`).
pub(crate) fn to_unit_f64(img: &ImageU8) -> Vec<f64> {
    img.data.iter().map(|&v| v as f64 / 255.0).collect()
}

/// Splits an HWC buffer into one plane per channel.
pub(crate) fn split_planes<T: Copy>(data: &[T], channels: usize) -> Vec<Vec<T>> {
    (0..channels)
        .map(|c| data.iter().skip(c).step_by(channels).copied().collect())
        .collect()
}

/// Interleaves planes back into an HWC buffer.
pub(crate) fn merge_planes<T: Copy + Default>(planes: &[Vec<T>]) -> Vec<T> {
    let channels = planes.len();
    let n = planes[0].len();
    let mut out = vec![T::default(); n * channels];
    for (c, plane) in planes.iter().enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * channels + c] = v;
        }
    }
    out
}

/// ITU-R BT.601 luma weights used to map RGB constants of colour corruptions onto grayscale images.
pub(crate) const LUMA: [f64; 3] = [0.299, 0.587, 0.114];
