//! Neural-network operators: Conv, pools, BatchNormalization, Layer/Group/Instance
//! normalization, activations, Softmax, Dropout, Resize.

use faultline_engine::ops::conv::{AutoPad, Window};
use faultline_engine::ops::{
    BatchNorm, BatchNormTrain, Conv, CoordMode, GlobalAveragePool, NearestMode, NormKind,
    Normalize, Op, Pool, PoolKind, Resize, Softmax, Unary, UnaryKind,
};

use crate::attrs::{BuildResult, Ctx};

fn auto_pad(c: &Ctx) -> BuildResult<AutoPad> {
    Ok(match c.string("auto_pad").as_deref() {
        None | Some("NOTSET") | Some("") => AutoPad::NotSet,
        Some("SAME_UPPER") => AutoPad::SameUpper,
        Some("SAME_LOWER") => AutoPad::SameLower,
        Some("VALID") => AutoPad::Valid,
        Some(o) => return Err(format!("unknown auto_pad '{o}'")),
    })
}

pub(crate) fn window(c: &Ctx, kernel: [usize; 2]) -> BuildResult<Window> {
    Ok(Window {
        kernel,
        strides: c.pair("strides", 1)?,
        dilations: c.pair("dilations", 1)?,
        pads: c.pads()?,
        auto_pad: auto_pad(c)?,
        ceil_mode: c.int_or("ceil_mode", 0) != 0,
    })
}

pub(crate) fn conv(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    // The kernel shape comes from the weight; the attribute, when present, must agree.
    Ok(Box::new(Conv::new(
        window(c, [0, 0])?,
        c.int_or("group", 1).max(1) as usize,
    )))
}

pub(crate) fn max_pool(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    if c.node.output.len() > 1 && !c.node.output[1].is_empty() {
        return Err("the Indices output of MaxPool is not supported".into());
    }
    let k = c.pair("kernel_shape", 1)?;
    Ok(Box::new(Pool {
        kind: PoolKind::Max,
        window: window(c, k)?,
        relu_input: false,
    }))
}

pub(crate) fn average_pool(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let k = c.pair("kernel_shape", 1)?;
    let mut w = window(c, k)?;
    w.dilations = [1, 1];
    Ok(Box::new(Pool {
        kind: PoolKind::Average {
            count_include_pad: c.int_or("count_include_pad", 0) != 0,
        },
        window: w,
        relu_input: false,
    }))
}

pub(crate) fn global_average_pool(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(GlobalAveragePool))
}

pub(crate) fn batch_norm(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let epsilon = c.float_or("epsilon", 1e-5);
    if c.int_or("training_mode", 0) != 0 {
        // Batch statistics: what timm's weight-standardised convolutions (StdConv2d) export
        // to, applied to a constant weight, so folded at load. The updated running statistics
        // (outputs 1 and 2) are not computed; a node that reads them fails the graph check
        // with its name.
        return Ok(Box::new(BatchNormTrain { epsilon }));
    }
    if c.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(
            "training-mode BatchNormalization is not supported (export the model in eval mode)"
                .into(),
        );
    }
    Ok(Box::new(BatchNorm { epsilon }))
}

fn unary(kind: UnaryKind) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unary::new(kind)))
}

pub(crate) fn relu(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Relu)
}
pub(crate) fn leaky_relu(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::LeakyRelu(c.float_or("alpha", 0.01)))
}
pub(crate) fn sigmoid(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Sigmoid)
}
pub(crate) fn tanh(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Tanh)
}
pub(crate) fn erf(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Erf)
}
pub(crate) fn gelu(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    match c.string("approximate").as_deref() {
        None | Some("none") => unary(UnaryKind::Gelu { tanh: false }),
        Some("tanh") => unary(UnaryKind::Gelu { tanh: true }),
        Some(o) => Err(format!("unknown Gelu approximation '{o}'")),
    }
}
pub(crate) fn identity(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    if c.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err("the mask output of Dropout is not supported".into());
    }
    unary(UnaryKind::Identity)
}

/// Clip: bounds are attributes before opset 11 and optional constant inputs from 11 on.
pub(crate) fn clip(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let (lo, hi) = if c.opset < 11 {
        (
            c.float_or("min", f32::NEG_INFINITY),
            c.float_or("max", f32::INFINITY),
        )
    } else {
        let bound = |i: usize, default: f32| -> BuildResult<f32> {
            if !c.has_input(i) {
                return Ok(default);
            }
            let t = c
                .const_input(i)
                .ok_or("Clip bounds computed at run time are not supported")?;
            Ok(match t.data() {
                faultline_engine::Data::F32(v) => v.first().copied().unwrap_or(default),
                faultline_engine::Data::I64(v) => v.first().map(|&x| x as f32).unwrap_or(default),
            })
        };
        (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?)
    };
    unary(UnaryKind::Clip(lo, hi))
}

fn softmax_like(c: &Ctx, log: bool) -> BuildResult<Box<dyn Op>> {
    let legacy = c.opset < 13;
    Ok(Box::new(Softmax {
        axis: c.int_or("axis", if legacy { 1 } else { -1 }),
        coerce_2d: legacy,
        log,
    }))
}
pub(crate) fn softmax(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    softmax_like(c, false)
}
pub(crate) fn log_softmax(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    softmax_like(c, true)
}

pub(crate) fn hard_sigmoid(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::HardSigmoid {
        alpha: c.float_or("alpha", 0.2),
        beta: c.float_or("beta", 0.5),
    })
}
pub(crate) fn hard_swish(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::HardSwish)
}
pub(crate) fn mish(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Mish)
}
pub(crate) fn softplus(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Softplus)
}
pub(crate) fn elu(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    unary(UnaryKind::Elu(c.float_or("alpha", 1.0)))
}

/// The optional statistics outputs of LayerNormalization are refused (inference never uses
/// them).
fn single_output(c: &Ctx, what: &str) -> BuildResult<()> {
    if c.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(format!("the {what} outputs are not supported"));
    }
    Ok(())
}

pub(crate) fn layer_norm(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    single_output(c, "Mean and InvStdDev")?;
    Ok(Box::new(Normalize {
        kind: NormKind::Layer {
            axis: c.int_or("axis", -1),
        },
        epsilon: c.float_or("epsilon", 1e-5),
    }))
}

pub(crate) fn group_norm(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let groups = c
        .int("num_groups")
        .ok_or("GroupNormalization needs 'num_groups'")?;
    Ok(Box::new(Normalize {
        kind: NormKind::Group {
            groups: usize::try_from(groups).map_err(|_| format!("num_groups {groups}"))?,
        },
        epsilon: c.float_or("epsilon", 1e-5),
    }))
}

pub(crate) fn instance_norm(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Normalize {
        kind: NormKind::Instance,
        epsilon: c.float_or("epsilon", 1e-5),
    }))
}

pub(crate) fn resize(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let linear = match c.string("mode").as_deref() {
        None | Some("nearest") => false,
        Some("linear") | Some("bilinear") => true,
        Some(o) => {
            return Err(format!(
                "Resize mode '{o}' is not supported (nearest, linear)"
            ))
        }
    };
    let coord = match c.string("coordinate_transformation_mode").as_deref() {
        // Opset 10 had no attribute and behaved as `asymmetric`.
        None if c.opset < 11 => CoordMode::Asymmetric,
        None | Some("half_pixel") => CoordMode::HalfPixel,
        Some("pytorch_half_pixel") => CoordMode::PytorchHalfPixel,
        Some("align_corners") => CoordMode::AlignCorners,
        Some("asymmetric") => CoordMode::Asymmetric,
        Some("tf_half_pixel_for_nn") => CoordMode::TfHalfPixelForNn,
        Some(o) => {
            return Err(format!(
                "coordinate_transformation_mode '{o}' is not supported"
            ))
        }
    };
    let nearest = match c.string("nearest_mode").as_deref() {
        None | Some("round_prefer_floor") => NearestMode::RoundPreferFloor,
        Some("round_prefer_ceil") => NearestMode::RoundPreferCeil,
        Some("floor") => NearestMode::Floor,
        Some("ceil") => NearestMode::Ceil,
        Some(o) => return Err(format!("nearest_mode '{o}' is not supported")),
    };
    if c.int_or("antialias", 0) != 0 || c.has("axes") {
        return Err("Resize with 'antialias' or 'axes' is not supported".into());
    }
    if c.string("keep_aspect_ratio_policy")
        .is_some_and(|p| p != "stretch")
    {
        return Err("Resize keep_aspect_ratio_policy other than 'stretch' is not supported".into());
    }
    Ok(Box::new(Resize {
        linear,
        coord,
        nearest,
        scales_input: if c.opset < 11 { 1 } else { 2 },
    }))
}
