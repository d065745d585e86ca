//! Loading a classifier for analysis: import, bind to the data's image shape (layout and an
//! optional outside-the-graph normalization), and describe it for the run record.

use std::path::{Path, PathBuf};

use faultline_engine::{Model, Normalization};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{io, Result};

/// What the run record says about the model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    /// The file.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes (hex).
    pub sha256: String,
    /// Opset of the default domain.
    pub opset: i64,
    /// Exporter, as written in the file.
    pub producer: String,
    /// Declared input dimensions (batch first; null where symbolic).
    pub declared_input: Vec<Option<usize>>,
    /// Number of classes (logits per sample).
    pub num_classes: usize,
    /// Layout rule applied to feed the images, if any.
    pub layout: Option<String>,
    /// Normalization applied outside the graph, if any.
    pub normalization: Option<NormalizationCard>,
    /// The value whose activations are the penultimate features.
    pub penultimate: Option<String>,
}

/// Serializable mean/std.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NormalizationCard {
    /// Per-channel means.
    pub mean: Vec<f32>,
    /// Per-channel standard deviations.
    pub std: Vec<f32>,
}

impl NormalizationCard {
    /// The engine's normalization these figures describe.
    pub fn to_normalization(&self) -> Normalization {
        Normalization {
            mean: self.mean.clone(),
            std: self.std.clone(),
        }
    }
}

/// A model ready for a batch of `[c, h, w]` images, and its description.
#[derive(Debug)]
pub struct LoadedModel {
    /// The engine model.
    pub model: Model,
    /// Its description for the run record.
    pub card: ModelCard,
}

/// Imports `path` and prepares it for `image` = `[c, h, w]`.
pub fn load_model(
    path: &Path,
    image: [usize; 3],
    norm: Option<Normalization>,
) -> Result<LoadedModel> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let (mut model, info) = faultline_onnx::load_bytes(&bytes, path, dir)?;
    let normalization = norm.as_ref().map(|n| NormalizationCard {
        mean: n.mean.clone(),
        std: n.std.clone(),
    });
    let layout = model
        .prepare(image, norm)
        .map_err(|error| faultline_onnx::Error::Engine {
            path: path.to_path_buf(),
            error,
        })?;
    let card = ModelCard {
        path: path.to_path_buf(),
        sha256,
        opset: info.opset,
        producer: info.producer,
        declared_input: model.declared_input().to_vec(),
        num_classes: model.num_classes(),
        layout,
        normalization,
        penultimate: model.penultimate_name().map(str::to_string),
    };
    Ok(LoadedModel { model, card })
}
