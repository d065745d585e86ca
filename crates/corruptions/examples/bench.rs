//! Speed benchmark: milliseconds per image for every family at 32×32 (CIFAR table) and 224×224
//! (ImageNet table), single-threaded and with rayon over a batch, next to the reference generator's
//! times, plus the projected time of the 19 × 5 × 10,000-image CIFAR-10-C-sized job.
//!
//! Run: `cargo run --release -p faultline-corruptions --example bench [-- --quick]`
//!
//! Reference times (single thread, mean over severities 1–5):
//! * 32×32: median ms per call of `make_cifar_c.py` from `shared/reference/corruptions/README.md`
//!   (2-core x86-64 VM, NumPy 2.4, OpenCV 5, ImageMagick 6.9.11);
//! * 224×224: peers.md §6 "master @224×224" column (imagecorruptions master on a 2-vCPU EPYC,
//!   ±30 %); where the Hendrycks generator differs it is noted.

use std::time::Instant;

use faultline_corruptions::{corrupt, corrupt_batch, CorruptionKind, ImageU8, ParamTable};

/// Reference ms per image at 32×32 (README table, median, severities 1..5).
const REF_32: [(&str, [f64; 5]); 19] = [
    ("gaussian_noise", [0.214, 0.205, 0.238, 0.191, 0.226]),
    ("shot_noise", [0.319, 0.294, 0.372, 0.445, 0.476]),
    ("impulse_noise", [0.398, 0.429, 0.457, 0.412, 0.328]),
    ("defocus_blur", [0.277, 0.273, 0.271, 0.465, 0.480]),
    ("glass_blur", [10.514, 12.531, 11.958, 20.750, 36.464]),
    ("motion_blur", [2.286, 2.066, 2.003, 2.380, 2.570]),
    ("zoom_blur", [2.440, 3.146, 3.354, 7.961, 9.837]),
    ("snow", [1.523, 1.701, 1.785, 1.984, 2.366]),
    ("frost", [4.570, 4.516, 4.650, 4.772, 4.856]),
    ("fog", [0.985, 1.058, 0.979, 0.695, 0.660]),
    ("brightness", [0.624, 0.615, 0.566, 0.573, 0.621]),
    ("contrast", [0.107, 0.106, 0.106, 0.107, 0.105]),
    ("elastic_transform", [0.569, 0.859, 1.223, 1.100, 0.818]),
    ("pixelate", [0.055, 0.053, 0.053, 0.051, 0.050]),
    ("jpeg_compression", [0.249, 0.246, 0.258, 0.249, 0.254]),
    ("speckle_noise", [0.123, 0.122, 0.124, 0.122, 0.123]),
    ("gaussian_blur", [0.175, 0.237, 0.166, 0.165, 0.170]),
    ("spatter", [0.429, 0.415, 0.580, 0.463, 0.339]),
    ("saturate", [0.544, 0.540, 0.548, 0.549, 0.550]),
];

/// Reference ms per image at 224×224 (peers.md §6, imagecorruptions master, mean over severities).
const REF_224: [(&str, f64, &str); 19] = [
    ("gaussian_noise", 14.0, ""),
    ("shot_noise", 28.4, ""),
    ("impulse_noise", 12.4, ""),
    ("defocus_blur", 25.3, ""),
    (
        "glass_blur",
        1977.0,
        "pure-Python loop as in Hendrycks (numba: 34.7)",
    ),
    ("motion_blur", 20.7, "NumPy re-implementation"),
    ("zoom_blur", 204.4, ""),
    ("snow", 19.9, "NumPy motion blur"),
    ("frost", 10.8, ""),
    ("fog", 8.2, ""),
    ("brightness", 31.6, ""),
    ("contrast", 2.8, ""),
    ("elastic_transform", 27.6, "different algorithm"),
    ("pixelate", 0.6, ""),
    ("jpeg_compression", 0.9, ""),
    ("speckle_noise", 5.9, ""),
    ("gaussian_blur", 5.3, ""),
    ("spatter", 8.0, ""),
    ("saturate", 33.1, ""),
];

/// A textured image: smooth gradients, edges and some high-frequency detail.
fn synthetic(h: usize, w: usize, salt: usize) -> ImageU8 {
    let mut data = vec![0u8; h * w * 3];
    let mut state = 0x9e37_79b9u32.wrapping_add(salt as u32 * 7919);
    for y in 0..h {
        for x in 0..w {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state >> 28) as usize;
            let edge = match (x / 8 + y / 8 + salt) % 3 {
                0 => 60,
                _ => 0,
            };
            for c in 0..3 {
                let v = (x * 255 / w + y * (c + 1) * 40 / h + edge + noise * 3 + salt * 17) % 256;
                data[(y * w + x) * 3 + c] = v as u8;
            }
        }
    }
    ImageU8::new(h, w, 3, data).unwrap()
}

/// CIFAR-10 test images when the shared data is checked out beside the repository.
fn cifar_or_synthetic(n: usize) -> Vec<ImageU8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/cifar10/test_batch_first100.bin"
    );
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .chunks_exact(3073)
            .cycle()
            .take(n)
            .map(|rec| {
                let mut hwc = vec![0u8; 3072];
                for c in 0..3 {
                    for i in 0..1024 {
                        hwc[i * 3 + c] = rec[1 + c * 1024 + i];
                    }
                }
                ImageU8::new(32, 32, 3, hwc).unwrap()
            })
            .collect(),
        Err(_) => (0..n).map(|i| synthetic(32, 32, i)).collect(),
    }
}

/// CPU time of the calling thread in ns (`CLOCK_THREAD_CPUTIME_ID`), used for the single-threaded
/// figures so that other jobs on a shared machine do not inflate them.
fn thread_cpu_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Mean ms per image over `imgs`, single thread (thread CPU time where available, else wall time).
fn time_single(kind: CorruptionKind, sev: u8, table: ParamTable, imgs: &[ImageU8]) -> f64 {
    let c0 = thread_cpu_ns();
    let t = Instant::now();
    for (i, img) in imgs.iter().enumerate() {
        std::hint::black_box(corrupt(kind, sev, table, img, 0, i as u64).unwrap());
    }
    let wall = t.elapsed().as_secs_f64() * 1e3;
    let ms = match (c0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e6,
        _ => wall,
    };
    ms / imgs.len() as f64
}

/// Wall-clock ms per image with rayon over the batch.
fn time_parallel(kind: CorruptionKind, sev: u8, table: ParamTable, imgs: &[ImageU8]) -> f64 {
    let t = Instant::now();
    std::hint::black_box(corrupt_batch(kind, sev, table, imgs, 0, 0).unwrap());
    t.elapsed().as_secs_f64() * 1e3 / imgs.len() as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n32, n224) = if quick { (200, 4) } else { (1000, 24) };
    let threads = rayon::current_num_threads();
    let small = cifar_or_synthetic(n32);
    let large: Vec<ImageU8> = (0..n224).map(|i| synthetic(224, 224, i)).collect();
    // Warm-up: decodes the frost textures and touches every code path once.
    for kind in CorruptionKind::ALL {
        corrupt(kind, 1, ParamTable::Cifar, &small[0], 0, 0).unwrap();
        corrupt(kind, 1, ParamTable::ImageNet, &large[0], 0, 0).unwrap();
    }
    println!(
        "faultline-corruptions benchmark: {threads} rayon threads, {n32} images at 32x32 (CIFAR table), \
         {n224} at 224x224 (ImageNet table); ms per image, mean over severities 1-5.\n\
         1T = one thread, {} ; MT = wall clock with rayon over the batch.\n",
        if thread_cpu_ns().is_some() { "thread CPU time" } else { "wall clock" }
    );
    println!(
        "{:<18} | {:>8} {:>8} {:>8} {:>7} | {:>8} {:>8} {:>8} {:>7} | {:>9}",
        "family",
        "32 1T",
        "32 MT",
        "ref 32",
        "x ref",
        "224 1T",
        "224 MT",
        "ref 224",
        "x ref",
        "224 max"
    );
    let mut per_sev_224 = Vec::new();
    let mut job_ms_single = 0.0;
    let mut job_ms_parallel = 0.0;
    let mut worst_224: (f64, &str) = (0.0, "");
    for (i, kind) in CorruptionKind::ALL.iter().copied().enumerate() {
        let (mut s32, mut p32, mut s224, mut p224, mut max224) = (0.0, 0.0, 0.0, 0.0, 0.0f64);
        for sev in 1..=5u8 {
            let a = time_single(kind, sev, ParamTable::Cifar, &small);
            let b = time_parallel(kind, sev, ParamTable::Cifar, &small);
            let c = time_single(kind, sev, ParamTable::ImageNet, &large);
            let d = time_parallel(kind, sev, ParamTable::ImageNet, &large);
            s32 += a / 5.0;
            p32 += b / 5.0;
            s224 += c / 5.0;
            p224 += d / 5.0;
            max224 = max224.max(c);
            per_sev_224.push((kind.name(), sev, c));
            job_ms_single += a * 10_000.0;
            job_ms_parallel += b * 10_000.0;
        }
        if max224 > worst_224.0 {
            worst_224 = (max224, kind.name());
        }
        let ref32 = REF_32[i].1.iter().sum::<f64>() / 5.0;
        let (_, ref224, note) = REF_224[i];
        println!(
            "{:<18} | {:>8.4} {:>8.4} {:>8.3} {:>6.0}x | {:>8.3} {:>8.3} {:>8.1} {:>6.0}x | {:>9.3} {}",
            kind.name(),
            s32,
            p32,
            ref32,
            ref32 / s32,
            s224,
            p224,
            ref224,
            ref224 / s224,
            max224,
            note
        );
    }
    println!("\n224x224, ImageNet table, single thread, ms per image by severity:");
    for chunk in per_sev_224.chunks(5) {
        let v: Vec<String> = chunk.iter().map(|(_, _, t)| format!("{t:>7.2}")).collect();
        println!("{:<18} | {}", chunk[0].0, v.join(" "));
    }
    let ref_job_s: f64 = REF_32
        .iter()
        .map(|(_, t)| t.iter().sum::<f64>() * 10_000.0 / 1e3)
        .sum();
    println!(
        "\nProjected 19 x 5 x 10,000-image CIFAR job: {:.1} s single-threaded, {:.1} s with {threads} threads \
         (target: 60 s on 2 cores); reference functions, single thread: {:.0} s ({:.1} min).",
        job_ms_single / 1e3,
        job_ms_parallel / 1e3,
        ref_job_s,
        ref_job_s / 60.0
    );
    println!(
        "Slowest family at 224x224 (single thread, worst severity): {} at {:.2} ms (target: 20 ms).",
        worst_224.1, worst_224.0
    );
}
