//! Fidelity of APGD and FAB against AutoAttack (../shared/reference/attacks).

use std::path::{Path, PathBuf};
use std::time::Instant;

use faultline_attacks::{apgd, fab, ApgdParams, FabParams, Goal, Norm};
use faultline_data::{open, LoadOptions};
use faultline_engine::Model;

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(rel)
}

fn npy<T: npyz::Deserialize>(rel: &str) -> Vec<T> {
    let bytes = std::fs::read(shared(&format!("reference/attacks/{rel}"))).unwrap();
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<T>()
        .unwrap()
}

fn setup(model: &str, data: &str, n: usize) -> (Model, Vec<f32>, Vec<usize>) {
    let ds = open(&shared(data), &LoadOptions::default()).unwrap();
    let i = ds.info().clone();
    let (mut m, _) = faultline_onnx::load(&shared(model)).unwrap();
    m.prepare([i.channels, i.height, i.width], None).unwrap();
    let b = ds.batches(n, 0..n).unwrap().next().unwrap().unwrap();
    (m, b.images, b.labels)
}

#[test]
fn timing() {
    let (m, x, y) = setup(
        "models/mnist/mnist-lenet5-clean.onnx",
        "data/mnist/t10k-images-idx3-ubyte.gz",
        100,
    );
    let idx: Vec<usize> = (0..100).collect();
    for norm in [Norm::L2, Norm::Linf] {
        let t = Instant::now();
        let out = fab(
            &m,
            &x,
            Goal {
                labels: &y,
                targets: None,
            },
            &idx,
            &FabParams {
                norm,
                restarts: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let want: Vec<f64> = npy(&format!(
            "mnist-lenet5-clean_fab_{}_per_restart_dist.npy",
            if norm == Norm::L2 { "L2" } else { "Linf" }
        ));
        let mut r: Vec<f64> = (0..100)
            .filter(|&i| want[i * 5].is_finite() && want[i * 5] > 0.0 && out.results[i].success)
            .map(|i| {
                (if norm == Norm::L2 {
                    out.results[i].l2
                } else {
                    out.results[i].linf
                }) as f64
                    / want[i * 5]
            })
            .collect();
        r.sort_by(f64::total_cmp);
        eprintln!(
            "{norm:?}: {:.2}s median ratio {:.4} n {}",
            t.elapsed().as_secs_f64(),
            r[r.len() / 2],
            r.len()
        );
    }
    let _ = apgd;
    let _ = ApgdParams::default();
}
