//! Epochs per second of the margin-consistency pseudo-margin net (methods.md §5.5) on
//! 5000 × 10 synthetic logit vectors, full batch, MSE, Adam — the notebook's recipe.
//!
//! `cargo run --release -p faultline-train --example bench_pseudo_margin -- [EPOCHS] [THREADS,…]`
//! (defaults: 20 epochs, threads 1,2). Prints one line per thread count, and a JSON line.
//! Besides wall-clock epochs/s it prints the process CPU seconds per epoch: on a shared,
//! loaded machine the wall figure understates the speed, while the 1-thread CPU figure
//! does not depend on the other load (compare `bench/peer_torch.py`, which prints the same).

use faultline_train::{fit, Mlp, MlpSpec, TrainParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let threads: Vec<usize> = args
        .next()
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let (n, d) = (5000, 10);
    // Logit-like inputs (a larger "predicted class" entry) and a target in [0, 1):
    // sqrt of a margin-like quantity, as the notebook's sqrt(d_in).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut x = vec![0f32; n * d];
    let mut t = vec![0f32; n];
    for i in 0..n {
        for j in 0..d {
            x[i * d + j] = 4.0 * next() - 2.0;
        }
        x[i * d + i % d] += 5.0;
        let mut row = x[i * d..(i + 1) * d].to_vec();
        row.sort_by(|a, b| b.total_cmp(a));
        t[i] = ((row[0] - row[1]) / 20.0).sqrt();
    }
    let mut results = Vec::new();
    for &th in &threads {
        let mut model = Mlp::new(MlpSpec::pseudo_margin(d), 0)?;
        let params = TrainParams {
            epochs,
            threads: th,
            ..TrainParams::default()
        };
        // One untimed warm-up epoch, as in the peer script.
        fit(
            &mut model,
            &x,
            &t,
            n,
            &TrainParams {
                epochs: 1,
                ..params.clone()
            },
        )?;
        let cpu0 = cpu_seconds();
        let r = fit(&mut model, &x, &t, n, &params)?;
        let cpu_per_epoch = (cpu_seconds() - cpu0) / epochs as f64;
        let eps = r.epochs_per_s();
        println!(
            "pseudo-margin net {} params, {n}x{d} full batch, {epochs} epochs, {th} thread(s): \
             {eps:.2} epochs/s ({:.1} ms/epoch wall, {:.1} ms/epoch CPU; 500 epochs ≈ {:.0} s); \
             loss {:.4e} → {:.4e}",
            model.num_parameters(),
            1e3 / eps,
            1e3 * cpu_per_epoch,
            500.0 / eps,
            r.train_loss[0],
            r.train_loss.last().unwrap()
        );
        results.push(format!(
            "{{\"threads\": {th}, \"epochs_per_s\": {eps:.3}, \"cpu_s_per_epoch\": {cpu_per_epoch:.4}}}"
        ));
    }
    println!(
        "{{\"n\": {n}, \"d\": {d}, \"epochs\": {epochs}, \"results\": [{}]}}",
        results.join(", ")
    );
    Ok(())
}

/// CPU seconds used by this process so far (all threads).
fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
