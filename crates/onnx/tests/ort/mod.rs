//! ONNX Runtime as a reference, for tests of several crates (`#[path]`-included): runs
//! `ort_logits.py` (embedded here, so every crate finds it) with `$FAULTLINE_PYTHON` (default
//! `python3`). Without onnxruntime the check is skipped, unless
//! `FAULTLINE_REFERENCE_CHECKS=required`, when that fails the test.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

const SCRIPT: &str = include_str!("../ort_logits.py");

/// A float32 `.npy` file (format 1.0).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}{}), }}",
        dims.join(", "),
        if shape.len() == 1 { "," } else { "" }
    );
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// The first output of `model` on `x` (float32 NCHW of `shape`) from ONNX Runtime (after the
/// onnx checker, when the `onnx` package is there), or None when onnxruntime is missing and
/// not required. Scratch files go beside the model.
pub fn outputs(model: &Path, x: &[f32], shape: &[usize]) -> Option<Vec<f32>> {
    let required = std::env::var("FAULTLINE_REFERENCE_CHECKS").as_deref() == Ok("required");
    let python = std::env::var("FAULTLINE_PYTHON").unwrap_or_else(|_| "python3".into());
    let (script, input, output) = (
        model.with_extension("ort_logits.py"),
        model.with_extension("input.npy"),
        model.with_extension("ort.npy"),
    );
    std::fs::write(&script, SCRIPT).unwrap();
    write_npy(&input, shape, x);
    let missing = |why: String| {
        assert!(
            !required,
            "FAULTLINE_REFERENCE_CHECKS=required but onnxruntime is unavailable: {why}"
        );
        eprintln!("skipped: onnxruntime not installed ({why})");
        None
    };
    let run = match Command::new(&python)
        .arg(&script)
        .args([model, &input, &output])
        .output()
    {
        Ok(r) => r,
        Err(e) => return missing(format!("cannot run {python}: {e}")),
    };
    let stderr = String::from_utf8_lossy(&run.stderr);
    if run.status.code() == Some(3) {
        return missing(format!("{python}: {}", stderr.trim()));
    }
    assert!(
        run.status.success(),
        "{python} ort_logits.py failed: {stderr}"
    );
    let bytes = std::fs::read(&output).unwrap();
    Some(
        npyz::NpyFile::new(&bytes[..])
            .unwrap()
            .into_vec::<f32>()
            .unwrap(),
    )
}
