//! The `fast` preset (A3-style `a3-ce` → `a3-t`) on a small linear classifier, where the exact
//! minimal L∞ perturbation of every sample is known (`common::exact`):
//! * it never reports robust a sample that one of its stages broke: its stages are replayed by
//!   hand with one shared memory, and the ensemble's verdicts equal theirs;
//! * every sample it reports broken is re-verified: the returned image lies in the ε-ball and
//!   [0, 1], and a fresh forward pass misclassifies it; samples whose exact distance exceeds ε
//!   are reported robust, and those well inside ε broken;
//! * per-stage passes add up to the totals;
//! * the discarding rule's cost is exact: samples stopped at the checkpoint spend the clean
//!   pass, the start, the checkpoint's iterations and the final check, nothing more.

mod common;

use common::{exact, linear_image};

use faultline_attacks::a3::Memory;
use faultline_attacks::attack::argmax;
use faultline_attacks::registry::Settings;
use faultline_attacks::{A3Params, ApgdParams, BatchRef, BoundedAttack, Ensemble, Goal, Norm};

const SHAPE: [usize; 3] = [3, 8, 8];
const D: usize = 3 * 8 * 8;
const K: usize = 10;
const N: usize = 24;

fn images(seed: u64) -> Vec<f32> {
    common::images(N, D, seed, 0.6)
}

#[test]
fn fast_reports_broken_every_sample_a_stage_broke_and_verifies_each() {
    let (m, w, b) = linear_image(SHAPE, K, 11);
    let x = images(3);
    let (dist, labels) = exact(&w, &b, &x, D, K, Norm::Linf);
    let z = m.logits(&x).unwrap();
    assert_eq!(
        labels,
        (0..N)
            .map(|i| argmax(&z[i * K..(i + 1) * K]))
            .collect::<Vec<_>>()
    );
    // ε at the median exact distance: about half the samples can be broken.
    let mut sorted = dist.clone();
    sorted.sort_by(f64::total_cmp);
    let eps = sorted[N / 2] as f32;
    let idx: Vec<usize> = (100..100 + N).collect();
    let goal = Goal {
        labels: &labels,
        targets: None,
    };
    let fast = Ensemble::preset("fast", &Settings::default()).unwrap();
    let out = fast
        .run_staged(
            &m,
            BatchRef::new(&x, &idx),
            goal,
            eps,
            &mut |_| {},
            &mut |_| {},
        )
        .unwrap();

    // The stages replayed by hand, sharing one memory as the ensemble does.
    let mut memory = Memory::new();
    let mut broken_by = vec![None; N];
    let mut alive: Vec<usize> = (0..N).collect();
    for (s, st) in fast.stages.iter().enumerate() {
        let sel = BatchRef::new(&x, &idx).select(goal, &alive);
        let (bb, g) = sel.parts();
        let o = st
            .attack
            .run_learning(&m, bb, g, eps, &mut memory, &mut |_| {})
            .unwrap();
        let mut still = Vec::new();
        for (j, &i) in alive.iter().enumerate() {
            if o.results[j].success {
                broken_by[i] = Some(s);
            } else {
                still.push(i);
            }
        }
        alive = still;
    }

    let zadv = m.logits(&out.adv).unwrap();
    let mut broken = 0;
    for i in 0..N {
        let r = &out.results[i];
        assert_eq!(r.success, broken_by[i].is_some(), "sample {i}: {r:?}");
        assert_eq!(r.stage, broken_by[i], "sample {i}");
        let a = &out.adv[i * D..(i + 1) * D];
        let x0 = &x[i * D..(i + 1) * D];
        assert!(Norm::Linf.dist(a, x0) <= eps * (1.0 + 1e-5), "sample {i}");
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        let pred = argmax(&zadv[i * K..(i + 1) * K]);
        assert_eq!(r.success, pred != labels[i], "sample {i}: re-prediction");
        if dist[i] > eps as f64 * 1.0001 {
            assert!(!r.success, "sample {i} beyond its exact distance");
        }
        if dist[i] < eps as f64 * 0.9 {
            assert!(
                r.success,
                "sample {i} at {} of ε left robust",
                dist[i] / eps as f64
            );
        }
        assert_eq!(r.stage_passes.len(), 2);
        let f: u32 = r.stage_passes.iter().map(|p| p[0]).sum();
        let bk: u32 = r.stage_passes.iter().map(|p| p[1]).sum();
        assert_eq!((f, bk), (r.forward, r.backward), "sample {i}");
        if r.stage == Some(0) {
            assert_eq!(r.stage_passes[1], [0, 0], "sample {i}");
        }
        broken += usize::from(r.success);
    }
    assert!(broken > 0 && broken < N, "{broken} of {N} broken");
}

#[test]
fn discarded_samples_stop_at_the_checkpoint() {
    let (m, _, _) = linear_image(SHAPE, K, 11);
    let x = images(3);
    let z = m.logits(&x).unwrap();
    let labels: Vec<usize> = (0..N).map(|i| argmax(&z[i * K..(i + 1) * K])).collect();
    let idx: Vec<usize> = (0..N).collect();
    // A radius far too small to break anything; keep nothing but the best sample past the
    // checkpoint of a 10-step run (⌊0.22·10⌋ = 2 iterations).
    let p = A3Params {
        osd_keep: 0.0,
        ..A3Params::around(ApgdParams {
            steps: 10,
            ..ApgdParams::default()
        })
    };
    let goal = Goal {
        labels: &labels,
        targets: None,
    };
    let out = p.run(&m, BatchRef::new(&x, &idx), goal, 1e-6).unwrap();
    let mut full = 0;
    for r in &out.results {
        assert!(!r.success);
        // Clean prediction, start, iterations, final check.
        match (r.forward, r.backward) {
            (5, 3) => {}
            (13, 11) => full += 1,
            other => panic!("unexpected passes {other:?}"),
        }
    }
    assert_eq!(full, 1, "exactly one sample runs all 10 iterations");
}

#[test]
fn preset_params_reach_every_stage_that_has_them() {
    let s = Settings {
        params: vec![
            ("osd_keep".into(), 0.25.into()),
            ("adi_weight".into(), 0.0.into()),
        ],
        ..Settings::default()
    };
    let fast = Ensemble::preset("fast", &s).unwrap();
    for st in &fast.stages {
        let p = st.attack.params();
        assert_eq!(p["osd_keep"], 0.25, "{}", st.name);
        assert_eq!(p["adi_weight"], 0.0, "{}", st.name);
    }
    // A key only some stages have goes to those; one no stage has is refused.
    let s = Settings {
        params: vec![("queries".into(), 50.into())],
        ..Settings::default()
    };
    let standard = Ensemble::preset("standard", &s).unwrap();
    let square = standard
        .stages
        .iter()
        .find(|st| st.name == "square")
        .unwrap();
    assert_eq!(square.attack.params()["queries"], 50);
    let Err(e) = Ensemble::preset("fast", &s) else {
        panic!("a key no stage of fast has is accepted");
    };
    let e = e.to_string();
    assert!(e.contains("queries") && e.contains("a3-ce"), "{e}");
}
