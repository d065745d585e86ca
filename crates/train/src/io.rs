//! Weights as safetensors: one `F32` tensor per parameter, named like a PyTorch state dict
//! (`layers.{i}.weight` `[out, in]`, `layers.{i}.bias` `[out]`), the standardiser as
//! `standardizer.mean` / `standardizer.std`, and the [`MlpSpec`] as JSON in the header's
//! `__metadata__` (key `spec`), so a file alone rebuilds the model.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::mlp::{Mlp, MlpSpec};
use crate::standardize::Standardizer;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "faultline-train/mlp";
/// Value of the `format_version` metadata key.
pub const FORMAT_VERSION: &str = "1";

fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn fmt_err(e: impl std::fmt::Display) -> Error {
    Error::Format(e.to_string())
}

impl Mlp {
    /// The model as a safetensors byte buffer.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, l) in self.layers().iter().enumerate() {
            tensors.push((
                format!("layers.{i}.weight"),
                vec![l.output(), l.input()],
                to_bytes(l.weight()),
            ));
            tensors.push((
                format!("layers.{i}.bias"),
                vec![l.output()],
                to_bytes(l.bias()),
            ));
        }
        if let Some(s) = self.standardizer() {
            tensors.push((
                "standardizer.mean".into(),
                vec![s.features()],
                to_bytes(s.mean()),
            ));
            tensors.push((
                "standardizer.std".into(),
                vec![s.features()],
                to_bytes(s.std()),
            ));
        }
        let views = tensors
            .iter()
            .map(|(name, shape, data)| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fmt_err)?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        meta.insert(
            "spec".to_string(),
            serde_json::to_string(self.spec()).map_err(fmt_err)?,
        );
        safetensors::serialize(views, Some(meta)).map_err(fmt_err)
    }

    /// Rebuilds a model from [`Mlp::to_safetensors`]'s bytes; every tensor must be present
    /// with its exact shape and type `F32`, and nothing else may be in the file.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(fmt_err)?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(Error::Format(format!(
                "metadata key `format` is {:?}, expected {FORMAT:?}",
                meta.get("format")
            )));
        }
        if meta.get("format_version").map(String::as_str) != Some(FORMAT_VERSION) {
            return Err(Error::Format(format!(
                "unsupported format_version {:?}",
                meta.get("format_version")
            )));
        }
        let spec: MlpSpec = serde_json::from_str(
            meta.get("spec")
                .ok_or_else(|| Error::Format("metadata key `spec` is missing".into()))?,
        )
        .map_err(|e| Error::Format(format!("metadata `spec`: {e}")))?;
        spec.validate()?;
        let st = SafeTensors::deserialize(bytes).map_err(fmt_err)?;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let v = st
                .tensor(name)
                .map_err(|_| Error::Format(format!("tensor `{name}` is missing")))?;
            if v.dtype() != Dtype::F32 || v.shape() != shape {
                return Err(Error::Format(format!(
                    "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                    v.dtype(),
                    v.shape()
                )));
            }
            Ok(v.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let mut params = Vec::new();
        let mut expected = 0;
        for (i, (input, output, _)) in spec.layer_shapes().into_iter().enumerate() {
            params.push(read(&format!("layers.{i}.weight"), &[output, input])?);
            params.push(read(&format!("layers.{i}.bias"), &[output])?);
            expected += 2;
        }
        let standardizer = if st.names().contains(&"standardizer.mean") {
            expected += 2;
            let mean = read("standardizer.mean", &[spec.input])?;
            let std = read("standardizer.std", &[spec.input])?;
            Some(Standardizer::new(mean, std)?)
        } else {
            None
        };
        if st.len() != expected {
            let mut names = st.names();
            names.sort_unstable();
            return Err(Error::Format(format!(
                "{} tensors ({}) where the spec needs {expected}",
                st.len(),
                names.join(", ")
            )));
        }
        let mut mlp = Mlp::from_parameters(spec, params)?;
        mlp.set_standardizer(standardizer)?;
        Ok(mlp)
    }

    /// Writes the model to a `.safetensors` file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_safetensors()?).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a model written by [`Mlp::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_safetensors(&bytes)
            .map_err(|e| Error::Format(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;

    #[test]
    fn corrupted_and_foreign_buffers_are_errors() {
        let spec = MlpSpec::uniform(3, vec![4], Activation::Relu, 2, Activation::Sigmoid);
        let m = Mlp::new(spec, 0).unwrap();
        let bytes = m.to_safetensors().unwrap();
        assert!(Mlp::from_safetensors(&bytes[..bytes.len() - 4]).is_err());
        assert!(Mlp::from_safetensors(b"garbage").is_err());
        // A plain safetensors file without our metadata.
        let data = to_bytes(&[1.0, 2.0]);
        let v = safetensors::tensor::TensorView::new(Dtype::F32, vec![2], &data).unwrap();
        let foreign = safetensors::serialize([("w", v)], None).unwrap();
        let err = Mlp::from_safetensors(&foreign).unwrap_err().to_string();
        assert!(err.contains("format"), "{err}");
    }
}
