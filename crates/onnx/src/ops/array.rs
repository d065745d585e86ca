//! Shape and data-movement operators: Reshape, Flatten, Transpose, Concat, Slice, Pad, Shape,
//! Gather, GatherND, Squeeze/Unsqueeze, ConstantOfShape, Cast, Expand, Where, Range, Tile, ScatterND,
//! CumSum, Trilu, and the multi-output Split and TopK (one engine node per output).

use faultline_engine::ops::{
    Cast, Concat, ConstantOfShape, CumSum, Expand, Flatten, Gather, GatherNd, Op, Pad, PadMode,
    Range, Reshape, ScatterNd, Shape, Slice, SplitPart, Squeeze, Tile, TopK, Transpose, Trilu,
    Unsqueeze, Where,
};
use faultline_engine::Tensor;

use crate::attrs::{BuildResult, Ctx};
use crate::proto::data_type as dt;

pub(crate) fn reshape(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Reshape {
        shape_attr: if c.opset < 5 { c.ints("shape") } else { None },
        allowzero: c.int_or("allowzero", 0) != 0,
        fixed_batch: c.fixed_batch,
    }))
}

pub(crate) fn flatten(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Flatten {
        axis: c.int_or("axis", 1),
    }))
}

pub(crate) fn transpose(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let perm = match c.ints("perm") {
        None => None,
        Some(p) => Some(
            p.iter()
                .map(|&v| usize::try_from(v).map_err(|_| format!("negative perm entry {v}")))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Box::new(Transpose { perm }))
}

pub(crate) fn concat(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Concat {
        axis: c.int("axis").ok_or("Concat needs an 'axis'")?,
    }))
}

pub(crate) fn slice(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let attrs = if c.opset < 10 {
        Some((
            c.ints("starts").ok_or("Slice needs 'starts'")?,
            c.ints("ends").ok_or("Slice needs 'ends'")?,
            c.ints("axes"),
        ))
    } else {
        None
    };
    Ok(Box::new(Slice { attrs }))
}

pub(crate) fn pad(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let mode = match c.string("mode").as_deref() {
        None | Some("constant") => PadMode::Constant,
        Some("reflect") => PadMode::Reflect,
        Some("edge") => PadMode::Edge,
        Some("wrap") => PadMode::Wrap,
        Some(o) => return Err(format!("unknown pad mode '{o}'")),
    };
    let attrs = if c.opset < 11 {
        Some((
            c.ints("pads")
                .or_else(|| c.ints("paddings"))
                .ok_or("Pad needs 'pads'")?,
            c.float_or("value", 0.0),
        ))
    } else {
        None
    };
    Ok(Box::new(Pad { mode, attrs }))
}

pub(crate) fn shape(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Shape {
        start: c.int_or("start", 0),
        end: c.int("end"),
    }))
}

pub(crate) fn gather(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Gather {
        axis: c.int_or("axis", 0),
    }))
}

pub(crate) fn squeeze(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Squeeze {
        axes: if c.opset < 13 { c.ints("axes") } else { None },
    }))
}

pub(crate) fn unsqueeze(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Unsqueeze {
        axes: if c.opset < 13 {
            Some(c.ints("axes").ok_or("Unsqueeze needs 'axes'")?)
        } else {
            None
        },
    }))
}

pub(crate) fn constant_of_shape(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let value = c.tensor("value")?.unwrap_or_else(|| Tensor::scalar(0.0));
    Ok(Box::new(ConstantOfShape { value }))
}

pub(crate) fn cast(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let to = c.int("to").ok_or("Cast needs 'to'")? as i32;
    let to_float = match to {
        dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16 => true,
        dt::INT64
        | dt::INT32
        | dt::INT16
        | dt::INT8
        | dt::UINT8
        | dt::UINT16
        | dt::UINT32
        | dt::UINT64
        | dt::BOOL => false,
        other => return Err(format!("Cast to element type {other} is not supported")),
    };
    Ok(Box::new(Cast { to_float }))
}

pub(crate) fn expand(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Expand))
}

pub(crate) fn where_(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Where))
}

pub(crate) fn range(_: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Range))
}

pub(crate) fn tile(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    if c.opset < 6 {
        return Err("Tile before opset 6 is not supported".into());
    }
    Ok(Box::new(Tile))
}

pub(crate) fn scatter_nd(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let add = match c.string("reduction").as_deref() {
        None | Some("none") => false,
        Some("add") => true,
        Some(o) => return Err(format!("ScatterND reduction '{o}' is not supported")),
    };
    Ok(Box::new(ScatterNd { add }))
}

pub(crate) fn cum_sum(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(CumSum {
        exclusive: c.int_or("exclusive", 0) != 0,
        reverse: c.int_or("reverse", 0) != 0,
    }))
}

pub(crate) fn trilu(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    Ok(Box::new(Trilu {
        upper: c.int_or("upper", 1) != 0,
    }))
}

/// Output `index` of a Split.
pub(crate) fn split(c: &Ctx, index: usize) -> BuildResult<Box<dyn Op>> {
    let parts = c.node.output.len();
    let sizes = if c.opset < 13 { c.ints("split") } else { None };
    if c.opset >= 18 && !c.has_input(1) && c.int("num_outputs").is_none() && parts == 0 {
        return Err("Split needs 'split' sizes or 'num_outputs'".into());
    }
    Ok(Box::new(SplitPart {
        axis: c.int_or("axis", 0),
        sizes,
        parts: c.int("num_outputs").map_or(parts, |n| n.max(0) as usize),
        index,
    }))
}

/// Output `index` of a TopK (0: values, 1: indices).
pub(crate) fn top_k(c: &Ctx, index: usize) -> BuildResult<Box<dyn Op>> {
    if c.opset < 10 {
        return Err("TopK before opset 10 (k as an attribute) is not supported".into());
    }
    Ok(Box::new(TopK {
        axis: c.int_or("axis", -1),
        largest: c.int_or("largest", 1) != 0,
        indices: index == 1,
    }))
}

pub(crate) fn gather_nd(c: &Ctx) -> BuildResult<Box<dyn Op>> {
    let b = c.int_or("batch_dims", 0);
    Ok(Box::new(GatherNd {
        batch_dims: usize::try_from(b).map_err(|_| format!("negative batch_dims {b}"))?,
    }))
}
