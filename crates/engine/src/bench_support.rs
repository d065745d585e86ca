//! What the benchmarks in `benches/` need from inside the engine: a convolution layer with its
//! weights packed as at load time, and a way to run it on one chosen kernel. The benchmarks
//! link the library as an outside crate, so they cannot reach the `pub(crate)` kernel
//! internals; this module exposes the minimum for them. It is not part of the engine's API:
//! hidden from the documentation and free to change with the kernels.

use crate::error::Result;
use crate::kernels::{channel_lanes, direct};
use crate::ops::conv::{self, AutoPad, Conv, Window};
use crate::tensor::Tensor;

/// `(channels, plane side)` of 3×3 layers from the three benchmark networks (ResNet-20,
/// WideResNet-16-4, ResNet-18 at 224×224).
pub const LAYERS: [(usize, usize); 12] = [
    (16, 32),
    (64, 32),
    (32, 16),
    (64, 8),
    (128, 8),
    (64, 16),
    (128, 16),
    (256, 8),
    (64, 56),
    (128, 28),
    (256, 14),
    (512, 7),
];

/// A convolution's shape: `c → m` channels, `hw × hw` input, `k × k` kernel, stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Input channels.
    pub c: usize,
    /// Output channels.
    pub m: usize,
    /// Input side.
    pub hw: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
}

/// The convolutions of ResNet-18/50 at 224 px other than their same-size 3×3 layers (which
/// [`LAYERS`] holds): the 7×7 stride-2 stem, the bottlenecks' 1×1 layers, and the strided
/// 3×3 and 1×1 layers where a stage halves the plane.
pub const IMAGENET_LAYERS: [Shape; 10] = [
    Shape {
        c: 3,
        m: 64,
        hw: 224,
        k: 7,
        stride: 2,
    },
    Shape {
        c: 64,
        m: 256,
        hw: 56,
        k: 1,
        stride: 1,
    },
    Shape {
        c: 256,
        m: 64,
        hw: 56,
        k: 1,
        stride: 1,
    },
    Shape {
        c: 128,
        m: 512,
        hw: 28,
        k: 1,
        stride: 1,
    },
    Shape {
        c: 1024,
        m: 256,
        hw: 14,
        k: 1,
        stride: 1,
    },
    Shape {
        c: 2048,
        m: 512,
        hw: 7,
        k: 1,
        stride: 1,
    },
    Shape {
        c: 256,
        m: 512,
        hw: 56,
        k: 1,
        stride: 2,
    },
    Shape {
        c: 128,
        m: 128,
        hw: 56,
        k: 3,
        stride: 2,
    },
    Shape {
        c: 256,
        m: 256,
        hw: 28,
        k: 3,
        stride: 2,
    },
    Shape {
        c: 512,
        m: 512,
        hw: 14,
        k: 3,
        stride: 2,
    },
];

/// A convolution kernel to run explicitly (the engine's own choice is [`Kernel::Auto`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Whatever the engine picks for the layer.
    Auto,
    /// The direct AVX-512 kernel.
    Direct,
    /// The channel-lanes AVX2 + FMA kernel.
    ChannelLanes,
    /// Winograd F(2×2, 3×3) where it fits, else as [`Kernel::ChannelLanes`].
    Winograd,
    /// im2col + one GEMM per sample and group.
    Im2col,
    /// The column-shift matrix + one GEMM per kernel row.
    RowShift,
    /// Input gradients: the sparse route for every sample (forward: as `Auto`).
    Sparse,
}

impl Kernel {
    /// Its name in printed results.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Auto => "auto",
            Kernel::Direct => "direct",
            Kernel::ChannelLanes => "channel lanes",
            Kernel::Winograd => "Winograd",
            Kernel::Im2col => "im2col",
            Kernel::RowShift => "column-shift",
            Kernel::Sparse => "sparse",
        }
    }

    fn inner(self) -> conv::Kernel {
        match self {
            Kernel::Auto => conv::Kernel::Auto,
            Kernel::Direct => conv::Kernel::Direct,
            Kernel::ChannelLanes => conv::Kernel::ChannelLanes,
            Kernel::Winograd => conv::Kernel::Winograd,
            Kernel::Im2col => conv::Kernel::Im2col,
            Kernel::RowShift => conv::Kernel::RowShift,
            Kernel::Sparse => conv::Kernel::Sparse,
        }
    }

    /// The SIMD convolution kernel this CPU runs: the direct kernel with AVX-512, else the
    /// channel-lanes kernel with AVX2 + FMA, else none.
    pub fn simd() -> Option<Kernel> {
        if direct::available() {
            Some(Kernel::Direct)
        } else if channel_lanes::available() {
            Some(Kernel::ChannelLanes)
        } else {
            None
        }
    }

    /// Whether the channel-lanes (and so the Winograd) kernel runs on this CPU.
    pub fn lanes_available() -> bool {
        channel_lanes::available()
    }
}

/// A 3×3 same-padded `c → c` convolution with its weights packed once (as a network's constant
/// weights are at load time) and an `n`-sample input of `hw × hw` planes.
#[derive(Debug)]
pub struct Layer {
    conv: Conv,
    x: Tensor,
    w: Tensor,
    /// Multiply-adds of one call (a direct convolution's count, whatever the kernel).
    pub macs: f64,
}

impl Layer {
    /// The layer with `c` channels on `hw × hw` planes, for `n` samples.
    pub fn same_3x3(n: usize, c: usize, hw: usize) -> Layer {
        Layer::new(
            n,
            Shape {
                c,
                m: c,
                hw,
                k: 3,
                stride: 1,
            },
        )
    }

    /// A `k × k` convolution of `shape` ("same" padding `k / 2`) for `n` samples, its
    /// weights packed as at load time.
    pub fn new(n: usize, shape: Shape) -> Layer {
        let Shape {
            c,
            m,
            hw,
            k,
            stride,
        } = shape;
        let win = Window {
            kernel: [k, k],
            strides: [stride, stride],
            dilations: [1, 1],
            pads: [k / 2; 4],
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        let xs: Vec<f32> = (0..n * c * hw * hw).map(|i| (i % 7) as f32 * 0.1).collect();
        let x = Tensor::f32(vec![n, c, hw, hw], xs);
        let ws: Vec<f32> = (0..m * c * k * k).map(|i| (i % 5) as f32 * 0.01).collect();
        let w = Tensor::f32(vec![m, c, k, k], ws);
        let conv = Conv::new(win, 1)
            .with_prepared(&w)
            .expect("a same-padded layer packs");
        let out = (hw + 2 * (k / 2) - k) / stride + 1;
        Layer {
            conv,
            x,
            w,
            macs: (n * m * c * k * k * out * out) as f64,
        }
    }

    /// `relu(conv(x, W))` on `kernel`.
    pub fn run(&self, kernel: Kernel) -> Result<Tensor> {
        self.conv
            .forward_with(&self.x, &self.w, None, None, true, kernel.inner())
    }

    /// The input gradient of the convolution for an output gradient of ones, its stride-1
    /// route (a convolution itself) on `kernel`.
    pub fn run_grad(&self, kernel: Kernel) -> Result<Tensor> {
        let out: usize = self.conv.output_shape(&self.x, &self.w)?.iter().product();
        let dy = vec![1.0f32; out];
        self.conv
            .input_grad_with(self.x.shape(), &self.w, &dy, 1, None, kernel.inner())
    }

    /// An output gradient shaped like one behind a ReLU and, when `pooled`, 2×2 max pooling,
    /// for `copies` seeds per sample (copy-major, as `Graph::backward_copies` makes them): a
    /// value is non-zero with probability `keep`, in one position of each 2×2 window when
    /// `pooled`; the copies share the pattern, not the values. Seeded by `seed`.
    pub fn masked_grad(
        &self,
        copies: usize,
        pooled: bool,
        keep: f64,
        seed: u64,
    ) -> Result<Vec<f32>> {
        let shape = self.conv.output_shape(&self.x, &self.w)?;
        let (n, per, side) = (shape[0], shape[1..].iter().product::<usize>(), shape[3]);
        let hash = |i: usize, salt: u64| {
            let mut z =
                (i as u64 ^ seed.rotate_left(17) ^ salt).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) as f64 / u64::MAX as f64
        };
        let live = |i: usize| {
            let j = i % per;
            let (y, x) = ((j / side) % side, j % side);
            let window = (i / per) * per
                + (j / (side * side)) * side * side
                + (y / 2) * 2 * side
                + x / 2 * 2;
            let chosen = (hash(window, 1) * 4.0) as usize;
            (!pooled || (y % 2) * 2 + x % 2 == chosen) && hash(i, 2) < keep
        };
        Ok((0..copies * n * per)
            .map(|k| {
                let i = k % (n * per);
                if live(i) {
                    hash(k, 3) as f32 - 0.5
                } else {
                    0.0
                }
            })
            .collect())
    }

    /// The input gradient of `dy` (`copies` seeds per sample, see [`Layer::masked_grad`]) on
    /// `kernel`.
    pub fn run_grad_of(&self, dy: &[f32], copies: usize, kernel: Kernel) -> Result<Tensor> {
        let mut xs = self.x.shape().to_vec();
        xs[0] *= copies;
        self.conv
            .input_grad_with(&xs, &self.w, dy, copies, None, kernel.inner())
    }
}
