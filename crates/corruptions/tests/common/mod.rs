//! Helpers shared by the integration tests: reference file loading and comparison statistics.
#![allow(dead_code)]

pub mod mt;

use faultline_corruptions::{corrupt, corrupt_with_source, CorruptionKind, ImageU8, ParamTable};

/// Path of a file in the shared reference directory (the repository is checked out with `../shared`
/// beside it).
pub fn reference_path(file: &str) -> String {
    format!(
        "{}/../../../shared/reference/corruptions/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Loads a `uint8` `.npy` array: (shape, data).
pub fn load_u8_npy(path: &str) -> (Vec<u64>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("valid npy");
    let shape = npy.shape().to_vec();
    let data: Vec<u8> = npy.into_vec().expect("uint8 data");
    (shape, data)
}

/// Splits an `[N, H, W, C]` array into images.
pub fn images(arr: &(Vec<u64>, Vec<u8>)) -> Vec<ImageU8> {
    let (shape, data) = arr;
    let (n, h, w, c) = (
        shape[0] as usize,
        shape[1] as usize,
        shape[2] as usize,
        shape[3] as usize,
    );
    (0..n)
        .map(|i| {
            let sz = h * w * c;
            ImageU8::new(h, w, c, data[i * sz..(i + 1) * sz].to_vec()).unwrap()
        })
        .collect()
}

/// The first 100 CIFAR-10 test images as HWC RGB (`record[1:].reshape(3,32,32).transpose(1,2,0)`).
pub fn cifar100() -> Vec<ImageU8> {
    let path = format!(
        "{}/../../../shared/data/cifar10/test_batch_first100.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    bytes
        .chunks_exact(3073)
        .map(|rec| {
            let chw = &rec[1..];
            let mut hwc = vec![0u8; 3072];
            for c in 0..3 {
                for i in 0..1024 {
                    hwc[i * 3 + c] = chw[c * 1024 + i];
                }
            }
            ImageU8::new(32, 32, 3, hwc).unwrap()
        })
        .collect()
}

/// Element-wise comparison of two `u8` buffers.
#[derive(Debug, Clone)]
pub struct ErrorStats {
    /// Largest absolute difference (grey levels).
    pub max: u8,
    /// Fraction of values that agree exactly.
    pub exact: f64,
    /// Fraction within one grey level.
    pub within1: f64,
    /// 99th percentile of the absolute difference.
    pub p99: u8,
}

impl ErrorStats {
    pub fn new(a: &[u8], b: &[u8]) -> Self {
        assert_eq!(a.len(), b.len());
        let mut hist = [0usize; 256];
        for (&x, &y) in a.iter().zip(b) {
            hist[(x as i32 - y as i32).unsigned_abs() as usize] += 1;
        }
        let n = a.len() as f64;
        let max = (0..256).rev().find(|&i| hist[i] > 0).unwrap_or(0) as u8;
        let mut acc = 0;
        let mut p99 = 0;
        for (i, &c) in hist.iter().enumerate() {
            acc += c;
            if acc as f64 >= 0.99 * n {
                p99 = i as u8;
                break;
            }
        }
        Self {
            max,
            exact: hist[0] as f64 / n,
            within1: (hist[0] + hist[1]) as f64 / n,
            p99,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "exact {:.2}%, within 1/255 {:.2}%, p99 {}/255, max {}/255",
            100.0 * self.exact,
            100.0 * self.within1,
            self.p99,
            self.max
        )
    }
}

/// Statistics of `d = corrupted − clean`, as in `summary.json`.
#[derive(Debug, Clone, Default)]
pub struct DiffStats {
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub mean_abs: f64,
}

pub fn diff_stats(clean: &[ImageU8], corrupted: &[ImageU8]) -> DiffStats {
    let mut s = [0.0f64; 3];
    let mut s2 = [0.0f64; 3];
    let mut sa = 0.0;
    let mut n = 0usize;
    for (a, b) in clean.iter().zip(corrupted) {
        for (i, (&x, &y)) in a.as_slice().iter().zip(b.as_slice()).enumerate() {
            let d = y as f64 - x as f64;
            s[i % 3] += d;
            s2[i % 3] += d * d;
            sa += d.abs();
        }
        n += a.as_slice().len() / 3;
    }
    let mut out = DiffStats::default();
    for c in 0..3 {
        out.mean[c] = s[c] / n as f64;
        out.std[c] = (s2[c] / n as f64 - out.mean[c] * out.mean[c])
            .max(0.0)
            .sqrt();
    }
    out.mean_abs = sa / (3 * n) as f64;
    out
}

/// Outcome of one (family, severity) check.
pub struct Report {
    pub name: String,
    pub severity: u8,
    pub pass: bool,
    pub detail: String,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "{:<18} s{} {} {}",
            self.name,
            self.severity,
            if self.pass { "PASS" } else { "FAIL" },
            self.detail
        )
    }
}

fn summary() -> serde_json::Value {
    let text = std::fs::read_to_string(reference_path("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("valid json")
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().expect("number")
}

/// Checks one (family, severity) pair against the reference; see the module docs of `reference.rs`.
pub fn check(name: &str, severity: u8) -> Report {
    let kind: CorruptionKind = name.parse().unwrap();
    if !kind.is_random() {
        let clean = load_u8_npy(&reference_path("clean_first20_u8.npy"));
        let reference = load_u8_npy(&reference_path(&format!("{name}_s{severity}.npy")));
        let ours: Vec<u8> = images(&clean)
            .iter()
            .enumerate()
            .flat_map(|(i, img)| {
                corrupt(kind, severity, ParamTable::Cifar, img, 0, i as u64)
                    .unwrap()
                    .into_vec()
            })
            .collect();
        let e = ErrorStats::new(&ours, &reference.1);
        return Report {
            name: name.into(),
            severity,
            pass: e.within1 >= 0.99 && e.max <= 3,
            detail: e.describe(),
        };
    }
    let sum = summary();
    let entry = &sum["corruptions"][name]["severities"][severity.to_string()]["stats_over_seeds"];
    let clean = cifar100();
    let seeds = 50u64;
    let mut acc = DiffStats::default();
    let mut per_seed = Vec::new();
    for seed in 0..seeds {
        let out: Vec<ImageU8> = clean
            .iter()
            .enumerate()
            .map(|(i, img)| {
                corrupt(kind, severity, ParamTable::Cifar, img, seed, i as u64).unwrap()
            })
            .collect();
        let st = diff_stats(&clean, &out);
        for c in 0..3 {
            acc.mean[c] += st.mean[c] / seeds as f64;
            acc.std[c] += st.std[c] / seeds as f64;
        }
        acc.mean_abs += st.mean_abs / seeds as f64;
        per_seed.push(st);
    }
    // Seed-to-seed spread of our 50 per-seed statistics (a better variance estimate than the
    // reference's 5 seeds; the larger of the two is used).
    let spread = |get: &dyn Fn(&DiffStats) -> f64| -> f64 {
        let m = per_seed.iter().map(get).sum::<f64>() / seeds as f64;
        (per_seed.iter().map(|s| (get(s) - m).powi(2)).sum::<f64>() / (seeds as f64 - 1.0)).sqrt()
    };
    let our_sd_mean: Vec<f64> = (0..3).map(|c| spread(&|s: &DiffStats| s.mean[c])).collect();
    let our_sd_std: Vec<f64> = (0..3).map(|c| spread(&|s: &DiffStats| s.std[c])).collect();
    let our_sd_abs = spread(&|s: &DiffStats| s.mean_abs);
    let mut pass = true;
    let mut parts = Vec::new();
    let mut worst_rel: f64 = 0.0;
    let mut cmp = |label: String, ours: f64, reference: f64, ref_sd: f64, our_sd: f64| {
        let seed_std = ref_sd.max(our_sd);
        let rel_tol = 0.05 * reference.abs();
        let stat_tol = 3.0 * seed_std * (1.0f64 / 5.0 + 1.0 / seeds as f64).sqrt();
        let tol = rel_tol.max(stat_tol);
        let dev = (ours - reference).abs();
        let ok = dev <= tol;
        pass &= ok;
        let rel = if reference != 0.0 {
            dev / reference.abs()
        } else {
            0.0
        };
        if rel_tol >= stat_tol {
            worst_rel = worst_rel.max(rel);
        }
        if !ok || rel_tol < stat_tol {
            parts.push(format!(
                "{label}: ours {ours:.3} ref {reference:.3} (dev {dev:.3}, {}tol {tol:.3}){}",
                if rel_tol >= stat_tol { "5% " } else { "3-SE " },
                if ok { "" } else { " !!" }
            ));
        }
    };
    for c in 0..3 {
        cmp(
            format!("mean[{c}]"),
            acc.mean[c],
            f(&entry["mean_diff_rgb_mean"][c]),
            f(&entry["mean_diff_rgb_std"][c]),
            our_sd_mean[c],
        );
        cmp(
            format!("std[{c}]"),
            acc.std[c],
            f(&entry["std_diff_rgb_mean"][c]),
            f(&entry["std_diff_rgb_std"][c]),
            our_sd_std[c],
        );
    }
    cmp(
        "mean_abs".into(),
        acc.mean_abs,
        f(&entry["mean_abs_diff_mean"]),
        f(&entry["mean_abs_diff_std"]),
        our_sd_abs,
    );
    // Replaying the reference's own draws must also reproduce its stored outputs ...
    let e = replay(name, severity);
    pass &= e.within1 >= 0.99 && e.max <= 3;
    // ... and its per-seed statistics under the protocol of summary.json.
    let mut protocol_dev: f64 = 0.0;
    for seed in 0..5 {
        let (o, r) = numpy_protocol_stats(name, severity, seed);
        for c in 0..3 {
            protocol_dev = protocol_dev
                .max((o.mean[c] - r.mean[c]).abs())
                .max((o.std[c] - r.std[c]).abs());
        }
        protocol_dev = protocol_dev.max((o.mean_abs - r.mean_abs).abs());
    }
    pass &= protocol_dev <= 0.15;
    Report {
        name: name.into(),
        severity,
        pass,
        detail: format!(
            "replay {} | protocol stats max dev {:.4} | own streams: mean_abs {:.3} vs ref {:.3}; worst rel dev (5%-checked stats) {:.2}%; {}",
            e.describe(),
            protocol_dev,
            acc.mean_abs,
            f(&entry["mean_abs_diff_mean"]),
            100.0 * worst_rel,
            parts.join("; ")
        ),
    }
}

/// Replays the reference's draws (MT19937 seeded with 0 before every image, as the stored outputs
/// were made) and compares with the stored outputs value by value.
pub fn replay(name: &str, severity: u8) -> ErrorStats {
    let kind: CorruptionKind = name.parse().unwrap();
    let clean = load_u8_npy(&reference_path("clean_first20_u8.npy"));
    let reference = load_u8_npy(&reference_path(&format!("{name}_s{severity}.npy")));
    let ours: Vec<u8> = images(&clean)
        .iter()
        .flat_map(|img| {
            let mut rng = mt::Mt19937::new(0);
            corrupt_with_source(kind, severity, ParamTable::Cifar, img, &mut rng)
                .unwrap()
                .into_vec()
        })
        .collect();
    ErrorStats::new(&ours, &reference.1)
}

/// Statistics of `d` with NumPy's stream as `summary.json` made them: `np.random.seed(seed)` once,
/// then images 0..99 in order; returns (ours, reference) per seed.
pub fn numpy_protocol_stats(name: &str, severity: u8, seed: u32) -> (DiffStats, DiffStats) {
    let kind: CorruptionKind = name.parse().unwrap();
    let clean = cifar100();
    let mut rng = mt::Mt19937::new(seed);
    let out: Vec<ImageU8> = clean
        .iter()
        .map(|img| corrupt_with_source(kind, severity, ParamTable::Cifar, img, &mut rng).unwrap())
        .collect();
    let ours = diff_stats(&clean, &out);
    let sum = summary();
    let per_seed = &sum["corruptions"][name]["severities"][severity.to_string()]["stats_per_seed"];
    let entry = per_seed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["seed"].as_u64() == Some(seed as u64))
        .expect("seed entry");
    let mut r = DiffStats::default();
    for c in 0..3 {
        r.mean[c] = f(&entry["mean_diff_rgb"][c]);
        r.std[c] = f(&entry["std_diff_rgb"][c]);
    }
    r.mean_abs = f(&entry["mean_abs_diff"]);
    (ours, r)
}
