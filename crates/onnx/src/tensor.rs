//! TensorProto → engine tensor. Floating types become float32, integer and bool types int64.
//! Raw little-endian bytes, typed fields and external data files are all handled here.

use std::path::Path;

use faultline_engine::Tensor;

use crate::proto::{data_type as dt, TensorProto};

/// Converts a tensor; `dir` is the model's directory, for external data. Errors are messages
/// that the caller prefixes with the file and tensor name.
pub(crate) fn to_tensor(t: &TensorProto, dir: &Path) -> Result<Tensor, String> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let ty = t.data_type.unwrap_or(0);
    let external;
    let raw: Option<&[u8]> = if t.data_location == Some(1) {
        external = read_external(t, dir)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    if ty == dt::INT4 || ty == dt::UINT4 {
        // Two values per byte, the first in the low nibble (ONNX's packing of 4-bit types), in
        // raw data or one packed byte per element of int32_data (as onnx.helper writes them).
        let packed: Vec<u8>;
        let raw = match raw {
            Some(r) => r,
            None => {
                packed = t.int32_data.iter().map(|&v| v as u8).collect();
                &packed
            }
        };
        if raw.len() != n.div_ceil(2) {
            return Err(format!(
                "holds {} bytes, expected {} for 4-bit shape {shape:?}",
                raw.len(),
                n.div_ceil(2)
            ));
        }
        let v = (0..n)
            .map(|e| {
                let nib = (raw[e / 2] >> (4 * (e % 2))) & 0xf;
                if ty == dt::INT4 && nib >= 8 {
                    nib as i64 - 16
                } else {
                    nib as i64
                }
            })
            .collect();
        return Tensor::from_i64(shape, v).map_err(|e| e.to_string());
    }
    let width = match ty {
        dt::FLOAT | dt::INT32 | dt::UINT32 => 4,
        dt::DOUBLE | dt::INT64 | dt::UINT64 => 8,
        dt::FLOAT16 | dt::BFLOAT16 | dt::INT16 | dt::UINT16 => 2,
        dt::UINT8 | dt::INT8 | dt::BOOL => 1,
        other => return Err(format!("unsupported tensor element type {other}")),
    };
    if let Some(raw) = raw {
        if raw.len() != n * width {
            return Err(format!(
                "holds {} bytes, expected {} for shape {shape:?}",
                raw.len(),
                n * width
            ));
        }
        let words = raw.chunks_exact(width);
        let f = |v: Vec<f32>| Tensor::from_f32(shape.clone(), v).map_err(|e| e.to_string());
        let i = |v: Vec<i64>| Tensor::from_i64(shape.clone(), v).map_err(|e| e.to_string());
        return match ty {
            dt::FLOAT => f(words
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()),
            dt::DOUBLE => f(words
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                .collect()),
            dt::FLOAT16 => f(words
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect()),
            dt::BFLOAT16 => f(words
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect()),
            dt::INT64 => i(words
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect()),
            dt::UINT64 => i(words
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect()),
            dt::INT32 => i(words
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect()),
            dt::UINT32 => i(words
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as i64)
                .collect()),
            dt::INT16 => i(words
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
                .collect()),
            dt::UINT16 => i(words
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as i64)
                .collect()),
            dt::INT8 => i(raw.iter().map(|&b| b as i8 as i64).collect()),
            _ => i(raw.iter().map(|&b| b as i64).collect()),
        };
    }
    // Typed fields (float16/bfloat16/int16/int8/uint8/bool travel in int32_data).
    let check = |len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(format!(
                "holds {len} values, expected {n} for shape {shape:?}"
            ))
        }
    };
    let r = match ty {
        dt::FLOAT => check(t.float_data.len()).and_then(|_| {
            Tensor::from_f32(shape.clone(), t.float_data.clone()).map_err(|e| e.to_string())
        }),
        dt::DOUBLE => check(t.double_data.len()).and_then(|_| {
            Tensor::from_f32(
                shape.clone(),
                t.double_data.iter().map(|&v| v as f32).collect(),
            )
            .map_err(|e| e.to_string())
        }),
        dt::FLOAT16 => check(t.int32_data.len()).and_then(|_| {
            Tensor::from_f32(
                shape.clone(),
                t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect(),
            )
            .map_err(|e| e.to_string())
        }),
        dt::INT64 => check(t.int64_data.len()).and_then(|_| {
            Tensor::from_i64(shape.clone(), t.int64_data.clone()).map_err(|e| e.to_string())
        }),
        dt::UINT64 | dt::UINT32 => check(t.uint64_data.len()).and_then(|_| {
            Tensor::from_i64(
                shape.clone(),
                t.uint64_data.iter().map(|&v| v as i64).collect(),
            )
            .map_err(|e| e.to_string())
        }),
        _ => check(t.int32_data.len()).and_then(|_| {
            Tensor::from_i64(
                shape.clone(),
                t.int32_data.iter().map(|&v| v as i64).collect(),
            )
            .map_err(|e| e.to_string())
        }),
    };
    r
}

/// Where an external-data tensor's bytes are: file, offset and length (`None`: to the end).
pub(crate) struct ExternalRef {
    pub path: std::path::PathBuf,
    pub offset: usize,
    pub length: Option<usize>,
}

impl ExternalRef {
    /// Reads the tensor's `location`, `offset` and `length` keys; `dir` is the model's folder.
    pub(crate) fn of(t: &TensorProto, dir: &Path) -> Result<Self, String> {
        let get = |k: &str| {
            t.external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(k))
                .and_then(|e| e.value.clone())
        };
        let loc = get("location").ok_or("external data without a location")?;
        let rel = Path::new(&loc);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "external data location '{loc}' must be a relative path inside the model's folder"
            ));
        }
        let offset: usize = get("offset")
            .map(|v| v.parse().map_err(|_| format!("bad offset '{v}'")))
            .transpose()?
            .unwrap_or(0);
        let length = get("length")
            .map(|v| v.parse().map_err(|_| format!("bad length '{v}'")))
            .transpose()?;
        Ok(ExternalRef {
            path: dir.join(rel),
            offset,
            length,
        })
    }

    /// The tensor's bytes within `file`, the contents of [`ExternalRef::path`].
    pub(crate) fn slice<'a>(&self, file: &'a [u8]) -> Result<&'a [u8], String> {
        let (off, len) = (
            self.offset,
            self.length
                .unwrap_or(file.len().saturating_sub(self.offset)),
        );
        file.get(off..off.saturating_add(len)).ok_or_else(|| {
            format!(
                "external data file {} has {} bytes; needs {off}+{len}",
                self.path.display(),
                file.len()
            )
        })
    }

    /// Reads [`ExternalRef::path`] whole.
    pub(crate) fn read_file(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.path).map_err(|e| {
            format!(
                "cannot read external data file {}: {e}",
                self.path.display()
            )
        })
    }
}

/// Reads the bytes of an external-data tensor (`location`, `offset`, `length` keys).
fn read_external(t: &TensorProto, dir: &Path) -> Result<Vec<u8>, String> {
    let r = ExternalRef::of(t, dir)?;
    let bytes = r.read_file()?;
    r.slice(&bytes).map(|b| b.to_vec())
}

/// IEEE half → single precision (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let shift = f.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((f << shift) & 0x3ff) << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_precision_values_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}
