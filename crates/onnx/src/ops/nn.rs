//! Neural-network operators: Conv, pools, BatchNormalization, activations, Softmax, Dropout.

use faultline_engine::ops::conv::{AutoPad, Window};
use faultline_engine::ops::{
    BatchNorm, Conv, GlobalAveragePool, Op, Pool, PoolKind, Softmax, Unary, UnaryKind,
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
    }))
}

pub(crate) fn global_average_pool(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(GlobalAveragePool))
}

pub(crate) fn batch_norm(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    if c.int_or("training_mode", 0) != 0 || c.node.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(
            "training-mode BatchNormalization is not supported (export the model in eval mode)"
                .into(),
        );
    }
    Ok(Box::new(BatchNorm {
        epsilon: c.float_or("epsilon", 1e-5),
    }))
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
