//! `faultline list`: what faultline supports, from the registries (attacks, presets,
//! corruptions, ONNX operators, data formats), as text or as one JSON object.

use std::io::Write;

use anyhow::Result;
use clap::Args;
use faultline::attacks::registry::{Kind, ATTACKS};
use faultline::attacks::PRESETS;
use serde_json::json;

/// Arguments of `faultline list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print one JSON object (`attacks`, `presets`, `corruptions`, `operators`, `formats`)
    #[arg(long)]
    pub json: bool,
}

const FORMATS: &[(&str, &str)] = &[
    ("cifar10", "CIFAR-10 binary files or their folder"),
    ("cifar100", "CIFAR-100 binary files or their folder"),
    (
        "idx",
        "MNIST / Fashion-MNIST IDX files, gzipped or not, or their folder",
    ),
    ("folder", "one sub-folder per class of PNG/JPEG images"),
    ("npy", ".npy/.npz arrays, uint8 or float32, NHWC or NCHW"),
];

pub fn run(a: &ListArgs) -> Result<()> {
    let mut o = std::io::stdout().lock();
    let ops = faultline::onnx::supported_ops();
    let corruptions = faultline::corruptions::ALL;
    if a.json {
        let attacks: Vec<_> = ATTACKS
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "kind": e.kind,
                    "norms": e.norms,
                    "default_norm": e.default_norm(),
                    "settings": e.takes,
                    "about": e.about,
                    "parameters": e.defaults(),
                })
            })
            .collect();
        let presets: Vec<_> = PRESETS
            .iter()
            .map(|p| json!({ "name": p.name, "stages": p.stages, "about": p.about }))
            .collect();
        let v = json!({
            "attacks": attacks,
            "presets": presets,
            "corruptions": corruptions,
            "operators": ops,
            "opsets": [faultline::onnx::OPSETS.start(), faultline::onnx::OPSETS.end()],
            "formats": FORMATS.iter().map(|(n, d)| json!({ "name": n, "about": d })).collect::<Vec<_>>(),
        });
        writeln!(o, "{v}")?;
        return Ok(());
    }
    writeln!(o, "attacks:")?;
    for e in ATTACKS {
        let kind = match e.kind {
            Kind::Bounded => "bounded",
            Kind::MinNorm => "min-norm",
        };
        let norms: Vec<&str> = e.norms.iter().map(|n| n.name()).collect();
        writeln!(
            o,
            "  {:<9} {kind:<8} {:<12} {}",
            e.name,
            norms.join(","),
            e.about
        )?;
    }
    writeln!(o, "presets:")?;
    for p in PRESETS {
        writeln!(o, "  {:<9} {} ({})", p.name, p.about, p.stages.join(" → "))?;
    }
    writeln!(
        o,
        "corruptions (severities 1-5, cifar and imagenet tables): {}",
        corruptions.join(", ")
    )?;
    writeln!(o, "data formats:")?;
    for (n, d) in FORMATS {
        writeln!(o, "  {n:<9} {d}")?;
    }
    writeln!(
        o,
        "ONNX operators (default domain, opsets {}–{}):",
        faultline::onnx::OPSETS.start(),
        faultline::onnx::OPSETS.end()
    )?;
    for op in ops {
        writeln!(o, "  {op}")?;
    }
    Ok(())
}
