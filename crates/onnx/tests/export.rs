//! `faultline_onnx::export` on the shared CIFAR ResNet-20s: byte-exact identity export, written
//! weights read back exactly, external data (written and, for the dynamo export, read from the
//! source), errors, and onnxruntime on the exported files as the reference.
//!
//! The ONNX Runtime check runs `tests/ort_logits.py` with `$FAULTLINE_PYTHON` (default
//! `python3`); without onnxruntime it is skipped with a line on stderr, unless
//! `FAULTLINE_REFERENCE_CHECKS=required`, which makes it fail.

use std::path::{Path, PathBuf};

use faultline_engine::{Model, Tensor};
use faultline_onnx::{export, Error, ExportOptions};

mod ort;

const RESNET20: &str = "models/cifar10/cifar10-resnet20.onnx";
const DYNAMO: &str = "models/cifar10/resnet20-dynamo/cifar10-resnet20-dynamo.onnx";
const DYNAMO_DATA: &str = "cifar10-resnet20-dynamo.onnx.data";
const INLINE: ExportOptions = ExportOptions {
    external_threshold: None,
};
const EXTERNAL: ExportOptions = ExportOptions {
    external_threshold: Some(1024),
};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

/// A fresh, empty folder for one test.
fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("export")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first `n` CIFAR-10 test images of the engine reference, NCHW in [0, 1].
fn images(n: usize) -> Vec<f32> {
    let bytes = std::fs::read(shared("reference/engine/cifar10-resnet20_inputs_u8.npy")).unwrap();
    let u8s = npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<u8>()
        .unwrap();
    u8s[..n * 3 * 32 * 32]
        .iter()
        .map(|&v| v as f32 / 255.0)
        .collect()
}

fn load(path: &Path) -> Model {
    faultline_onnx::load(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn logits(path: &Path, x: &[f32]) -> Vec<f32> {
    let mut m = load(path);
    m.prepare([3, 32, 32], None).unwrap();
    m.logits(x).unwrap()
}

/// The weights (second input) of every Conv node, by initializer name, read from the graph as
/// loaded.
fn conv_weights(m: &Model) -> Vec<(String, Tensor)> {
    let g = m.graph();
    let w: Vec<(String, Tensor)> = g
        .nodes()
        .iter()
        .filter(|n| n.op.name() == "Conv")
        .map(|n| {
            let v = n.inputs[1].expect("Conv without weights");
            let t = g.constant(v).expect("Conv weights are not a constant");
            (g.value_name(v).to_string(), t.clone())
        })
        .collect();
    assert!(!w.is_empty());
    w
}

/// `w · 0.9 + 0.01 · u`, u deterministic in [-1, 1).
fn perturbed(w: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    w.iter()
        .map(|(name, t)| {
            let v = t
                .as_f32()
                .unwrap()
                .iter()
                .map(|&x| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let u = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                    x * 0.9 + 0.01 * u
                })
                .collect();
            (
                name.clone(),
                Tensor::from_f32(t.shape().to_vec(), v).unwrap(),
            )
        })
        .collect()
}

fn refs(w: &[(String, Tensor)]) -> Vec<(&str, &Tensor)> {
    w.iter().map(|(n, t)| (n.as_str(), t)).collect()
}

fn sorted_names(w: &[(String, Tensor)]) -> Vec<String> {
    let mut n: Vec<String> = w.iter().map(|(n, _)| n.clone()).collect();
    n.sort();
    n
}

/// The initializer `name` of a loaded (unprepared) model.
fn initializer<'m>(m: &'m Model, name: &str) -> &'m [f32] {
    let g = m.graph();
    let v = g.find(name).unwrap_or_else(|| panic!("no value '{name}'"));
    g.constant(v)
        .unwrap_or_else(|| panic!("'{name}' is not a constant"))
        .as_f32()
        .unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn identity_export_reproduces_the_file_byte_for_byte() {
    let src = shared(RESNET20);
    let original = load(&src);
    let w = conv_weights(&original);
    assert_eq!(w.len(), 19);
    let out = tmp("identity").join("same.onnx");
    let mut names = export(&src, &refs(&w), &out, &INLINE).unwrap();
    names.sort();
    assert_eq!(names, sorted_names(&w));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&src).unwrap(),
        "identity export changed bytes"
    );
    let x = images(8);
    assert_eq!(bits(&logits(&out, &x)), bits(&logits(&src, &x)));
    assert!(!out.with_file_name("same.onnx.data").exists());
}

#[test]
fn new_weights_are_written_exactly_and_change_the_logits() {
    let src = shared(RESNET20);
    let original = load(&src);
    let new = perturbed(&conv_weights(&original));
    let dir = tmp("modified");
    let (a, b) = (dir.join("a.onnx"), dir.join("b.onnx"));
    export(&src, &refs(&new), &a, &INLINE).unwrap();
    export(&src, &refs(&new), &b, &INLINE).unwrap();
    let bytes = std::fs::read(&a).unwrap();
    assert!(
        bytes == std::fs::read(&b).unwrap(),
        "export is not deterministic"
    );
    // Same element counts, raw_data before and after: the file keeps its size.
    assert_eq!(bytes.len(), std::fs::read(&src).unwrap().len());

    let exported = load(&a);
    for (name, t) in &new {
        assert_eq!(
            bits(initializer(&exported, name)),
            bits(t.as_f32().unwrap()),
            "{name}"
        );
    }
    for kept in ["linear.weight", "linear.bias", "mean", "std"] {
        assert_eq!(
            bits(initializer(&exported, kept)),
            bits(initializer(&original, kept)),
            "{kept}"
        );
    }
    let x = images(8);
    let d = max_abs_diff(&logits(&a, &x), &logits(&src, &x));
    assert!(d > 1e-2, "logits moved by only {d}");
}

#[test]
fn external_data_export_matches_inline() {
    let src = shared(RESNET20);
    let new = perturbed(&conv_weights(&load(&src)));
    let dir = tmp("external");
    let (inline, external) = (dir.join("inline.onnx"), dir.join("external.onnx"));
    export(&src, &refs(&new), &inline, &INLINE).unwrap();
    export(&src, &refs(&new), &external, &EXTERNAL).unwrap();
    assert!(!dir.join("inline.onnx.data").exists());
    let model_len = std::fs::metadata(&external).unwrap().len();
    let data_len = std::fs::metadata(dir.join("external.onnx.data"))
        .unwrap()
        .len();
    let weight_bytes: usize = new.iter().map(|(_, t)| 4 * t.len()).sum();
    assert!(
        model_len < 100_000,
        "{model_len} bytes left in the model file"
    );
    assert!(data_len as usize >= weight_bytes);
    let ext = std::fs::read(&external).unwrap();
    assert!(contains(&ext, "external.onnx.data"));
    let x = images(8);
    assert_eq!(bits(&logits(&external, &x)), bits(&logits(&inline, &x)));
}

#[test]
fn external_data_of_the_source_is_carried_to_the_new_location() {
    let src = shared(DYNAMO);
    let original = load(&src);
    let x = images(4);
    let want = logits(&src, &x);
    let dir = tmp("relocated");

    // Nothing replaced, inline: one self-contained file, same logits, torch's metadata kept.
    let alone = dir.join("alone.onnx");
    assert!(export(&src, &[], &alone, &INLINE).unwrap().is_empty());
    let bytes = std::fs::read(&alone).unwrap();
    assert!(
        !contains(&bytes, DYNAMO_DATA),
        "still refers to the source data"
    );
    assert!(contains(
        &bytes,
        "pkg.torch.export.graph_signature.InputSpec.kind"
    ));
    assert!(bytes.len() > 1_000_000);
    assert_eq!(bits(&logits(&alone, &x)), bits(&want));

    // Conv weights replaced, into a new data file; the untouched external weights follow.
    let new = perturbed(&conv_weights(&original));
    let moved = dir.join("moved.onnx");
    export(&src, &refs(&new), &moved, &EXTERNAL).unwrap();
    assert!(dir.join("moved.onnx.data").exists());
    assert!(!contains(&std::fs::read(&moved).unwrap(), DYNAMO_DATA));
    let exported = load(&moved);
    for (name, t) in &new {
        assert_eq!(
            bits(initializer(&exported, name)),
            bits(t.as_f32().unwrap()),
            "{name}"
        );
    }
    // linear.weight is external in the source, linear.bias inline.
    for kept in ["linear.weight", "linear.bias"] {
        assert_eq!(
            bits(initializer(&exported, kept)),
            bits(initializer(&original, kept)),
            "{kept}"
        );
    }
}

#[test]
fn bad_replacements_are_errors_naming_file_and_initializer() {
    let src = shared(RESNET20);
    let w = conv_weights(&load(&src));
    let (name, t) = (&w[0].0, &w[0].1);
    let dir = tmp("errors");
    let out = dir.join("never.onnx");
    let fail = |replace: &[(&str, &Tensor)]| {
        let err = export(&src, replace, &out, &INLINE).unwrap_err();
        assert!(!out.exists(), "written despite {err}");
        let msg = err.to_string();
        assert!(msg.contains(&src.display().to_string()), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        (err, msg)
    };

    let (err, msg) = fail(&[("no.such.weight", t)]);
    assert!(matches!(err, Error::Initializer { .. }), "{msg}");
    assert!(
        msg.ends_with("initializer 'no.such.weight': not an initializer of the graph"),
        "{msg}"
    );

    let short = Tensor::from_f32(vec![t.len() - 1], vec![0.0; t.len() - 1]).unwrap();
    let (_, msg) = fail(&[(name, &short)]);
    assert!(
        msg.contains(&format!(
            "initializer '{name}': the new value has {} elements",
            t.len() - 1
        )),
        "{msg}"
    );

    let flat = Tensor::from_f32(vec![t.len()], vec![0.0; t.len()]).unwrap();
    let (_, msg) = fail(&[(name, &flat)]);
    assert!(msg.contains("the new value has shape"), "{msg}");

    let ints = Tensor::from_i64(t.shape().to_vec(), vec![0; t.len()]).unwrap();
    let (_, msg) = fail(&[(name, &ints)]);
    assert!(msg.contains("not float32"), "{msg}");

    let (_, msg) = fail(&[(name, t), (name, t)]);
    assert!(msg.contains("given twice"), "{msg}");

    // An int64 initializer of the dynamo export cannot be replaced.
    let dynamo = shared(DYNAMO);
    let one = Tensor::from_f32(vec![1], vec![0.0]).unwrap();
    let err = export(&dynamo, &[("val_105", &one)], &out, &INLINE)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("initializer 'val_105': has element type 7"),
        "{err}"
    );

    let err = export(&dir.join("missing.onnx"), &[], &out, &INLINE).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(!out.exists());
}

#[test]
fn corrupt_sources_are_errors_not_panics() {
    let bytes = std::fs::read(shared(RESNET20)).unwrap();
    let dir = tmp("corrupt");
    let (bad, out) = (dir.join("bad.onnx"), dir.join("out.onnx"));
    let run = |b: &[u8]| {
        std::fs::write(&bad, b).unwrap();
        export(&bad, &[], &out, &INLINE)
    };
    for cut in [0, 1, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = run(&bytes[..cut]).unwrap_err();
        assert!(
            err.to_string().starts_with(&bad.display().to_string()),
            "{err}"
        );
    }
    let err = run(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff").unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    let err = run(b"not an onnx file at all").unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(!out.exists());
    // Flipped bytes: an error or a file, never a panic.
    for i in (0..4000)
        .step_by(7)
        .chain((bytes.len() - 400..bytes.len()).step_by(3))
    {
        let mut b = bytes.clone();
        b[i] ^= 0xa5;
        let _ = run(&b);
    }

    // External data that is not there: the initializer and the file it needs are named.
    let lone = dir.join("lone.onnx");
    std::fs::copy(shared(DYNAMO), &lone).unwrap();
    let err = export(&lone, &[], &out, &INLINE).unwrap_err().to_string();
    assert!(
        err.contains("initializer 'conv1.weight': cannot read external data file")
            && err.contains(DYNAMO_DATA),
        "{err}"
    );
}

#[test]
fn exported_models_match_onnxruntime() {
    let dir = tmp("ort");
    let resnet = shared(RESNET20);
    let new = perturbed(&conv_weights(&load(&resnet)));
    let inline = dir.join("resnet20-inline.onnx");
    let external = dir.join("resnet20-external.onnx");
    export(&resnet, &refs(&new), &inline, &INLINE).unwrap();
    export(&resnet, &refs(&new), &external, &EXTERNAL).unwrap();
    let dynamo = shared(DYNAMO);
    let new = perturbed(&conv_weights(&load(&dynamo)));
    let moved = dir.join("dynamo-moved.onnx");
    export(&dynamo, &refs(&new), &moved, &EXTERNAL).unwrap();

    // The dynamo export declares a batch of 2.
    for (model, n) in [(inline, 16), (external, 16), (moved, 2)] {
        let x = images(n);
        let ours = logits(&model, &x);
        let Some(theirs) = ort::outputs(&model, &x, &[n, 3, 32, 32]) else {
            return;
        };
        let scale = theirs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let rel = max_abs_diff(&ours, &theirs) / scale;
        eprintln!(
            "{}: faultline vs onnxruntime, max |diff| / max |logit| = {rel:.2e} (scale {scale:.2})",
            model.file_name().unwrap().to_string_lossy()
        );
        assert!(
            rel <= 1e-4,
            "{}: relative difference {rel}",
            model.display()
        );
    }
}
