//! Image-processing kernels shared by the corruption families, each a transcription of the library
//! routine the reference generator calls (SciPy, scikit-image, OpenCV, Pillow, ImageMagick, libjpeg),
//! written so that results agree with those routines to the last bit where practical.

pub mod border;
pub mod cv;
pub mod filter;
pub mod hsv;
pub mod jpeg;
pub mod motion;
pub mod resample;
pub mod simd;
pub mod zoom;
