//! Every registry entry (`faultline_attacks::ATTACKS`) builds in each of its norms and runs
//! through its trait on a 4-sample batch of a small linear classifier over 3 × 8 × 8 images
//! (10 classes, so that the 9-target attacks APGD-T and FAB-T fit): the returned images lie in
//! [0, 1], those of bounded attacks inside the ε-ball in their norm, and every success flag
//! agrees with re-predicting the returned image. Entries that take `--steps` run 3 of them,
//! to keep the test fast. A short ensemble of registered stages is checked the same way, with
//! its per-sample `stage`.

mod common;

use common::{exact, linear_image};

use faultline_attacks::attack::argmax;
use faultline_attacks::ensemble::Stage;
use faultline_attacks::registry::{Kind, Setting};
use faultline_attacks::{
    AttackOutput, BatchRef, BoundedAttack, Ensemble, Goal, Method, Norm, Settings, ATTACKS,
};
use faultline_engine::Model;

const SHAPE: [usize; 3] = [3, 8, 8];
const D: usize = 3 * 8 * 8;
const K: usize = 10;
const N: usize = 4;

/// `N` images with values in 0.5 ± 0.1 (pseudo-random, fixed).
fn images(seed: u64) -> Vec<f32> {
    common::images(N, D, seed, 0.2)
}

/// The model, the images, their predictions (used as labels), their data-set indices, and the
/// exact minimal perturbation of each sample in each norm (`common::exact`).
struct Case {
    m: Model,
    x: Vec<f32>,
    labels: Vec<usize>,
    idx: Vec<usize>,
    margins: [Vec<f64>; 3],
}

fn setup() -> Case {
    let (m, w, b) = linear_image(SHAPE, K, 7);
    let x = images(5);
    let z = m.logits(&x).unwrap();
    let labels: Vec<usize> = (0..N).map(|i| argmax(&z[i * K..(i + 1) * K])).collect();
    let margins = [Norm::Linf, Norm::L2, Norm::L1].map(|norm| {
        let (d, y) = exact(&w, &b, &x, D, K, norm);
        assert_eq!(y, labels, "engine and f64 predictions differ");
        d
    });
    Case {
        m,
        x,
        labels,
        idx: (20..20 + N).collect(),
        margins,
    }
}

impl Case {
    fn goal(&self) -> Goal<'_> {
        Goal {
            labels: &self.labels,
            targets: None,
        }
    }
    fn margins(&self, norm: Norm) -> &[f64] {
        &self.margins[match norm {
            Norm::Linf => 0,
            Norm::L2 => 1,
            Norm::L1 => 2,
        }]
    }
    /// The median exact margin in `norm`: about half the samples can be broken within it.
    fn radius(&self, norm: Norm) -> f32 {
        let mut s = self.margins(norm).to_vec();
        s.sort_by(f64::total_cmp);
        s[N / 2] as f32
    }
}

/// The checks every attack's output must pass; `eps` for bounded attacks, which must also never
/// break a sample whose exact margin lies beyond ε.
fn check(what: &str, c: &Case, goal: Goal, out: &AttackOutput, eps: Option<(Norm, f32)>) {
    let (m, x) = (&c.m, &c.x);
    assert_eq!(out.adv.len(), x.len(), "{what}: returned images");
    assert_eq!(out.results.len(), N, "{what}: results");
    assert!(
        out.adv
            .iter()
            .all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
        "{what}: returned image outside [0, 1]"
    );
    let z = m.logits(&out.adv).unwrap();
    for (i, r) in out.results.iter().enumerate() {
        let (a, x0) = (&out.adv[i * D..(i + 1) * D], &x[i * D..(i + 1) * D]);
        let p = argmax(&z[i * K..(i + 1) * K]);
        let reached = match goal.targets {
            Some(t) => p == t[i],
            None => p != goal.labels[i],
        };
        assert_eq!(
            r.success, reached,
            "{what} sample {i}: success flag disagrees with re-prediction"
        );
        assert_eq!(r.prediction, p, "{what} sample {i}: prediction");
        for (norm, got) in [(Norm::Linf, r.linf), (Norm::L2, r.l2), (Norm::L1, r.l1)] {
            let d = norm.dist(a, x0);
            assert!(
                (got - d).abs() <= 1e-5 * d.max(1.0),
                "{what} sample {i}: reported {norm:?} distance {got}, measured {d}"
            );
        }
        if let Some((norm, e)) = eps {
            let d = norm.dist(a, x0);
            assert!(
                d <= e * (1.0 + 1e-5) + 1e-7,
                "{what} sample {i}: {norm:?} distance {d} > ε = {e}"
            );
            let exact = c.margins(norm)[i];
            assert!(
                !r.success || exact <= e as f64 * 1.001,
                "{what} sample {i}: broken within ε = {e} beyond the exact margin {exact}"
            );
        }
    }
}

#[test]
fn every_registry_entry_runs_in_each_of_its_norms() {
    let c = setup();
    let (m, goal) = (&c.m, c.goal());
    let batch = BatchRef::new(&c.x, &c.idx);
    let mut runs = 0;
    for e in ATTACKS {
        for &norm in e.norms {
            let s = Settings {
                norm: Some(norm),
                steps: e.takes.contains(&Setting::Steps).then_some(3),
                ..Settings::default()
            };
            let a = e.build(&s).unwrap();
            assert_eq!(a.name, e.name);
            assert_eq!(a.norm(), norm, "{}", e.name);
            let what = format!("{} {norm:?}", e.name);
            let (out, eps) = match &a.method {
                Method::Bounded(b) => {
                    assert_eq!(e.kind, Kind::Bounded, "{what}");
                    let eps = c.radius(norm);
                    (b.run(m, batch, goal, eps).unwrap(), Some((norm, eps)))
                }
                Method::MinNorm(b) => {
                    assert_eq!(e.kind, Kind::MinNorm, "{what}");
                    (b.run(m, batch, goal).unwrap(), None)
                }
            };
            check(&what, &c, goal, &out, eps);
            assert!(
                out.results.iter().all(|r| r.stage.is_none()),
                "{what}: a single attack reports a stage"
            );
            let broken = out.results.iter().filter(|r| r.success).count();
            eprintln!("{what}: {broken}/{N} broken");
            runs += 1;
        }
    }
    assert!(runs >= ATTACKS.len());
}

#[test]
fn an_ensemble_of_registered_stages_runs_and_reports_the_breaking_stage() {
    let c = setup();
    let (m, goal) = (&c.m, c.goal());
    let batch = BatchRef::new(&c.x, &c.idx);
    for norm in [Norm::Linf, Norm::L2] {
        let s = Settings {
            norm: Some(norm),
            steps: Some(3),
            ..Settings::default()
        };
        let names = ["apgd-ce", "apgd-t", "fab-t", "square"];
        let stages = names
            .iter()
            .map(|&name| {
                let e = ATTACKS.iter().find(|e| e.name == name).unwrap();
                let s = Settings {
                    steps: s.steps.filter(|_| e.takes.contains(&Setting::Steps)),
                    ..s.clone()
                };
                match e.build(&s).unwrap().method {
                    Method::Bounded(attack) => Stage {
                        name: name.to_string(),
                        attack,
                    },
                    Method::MinNorm(_) => panic!("{name} is not bounded"),
                }
            })
            .collect();
        let ens = Ensemble { stages };
        let eps = c.radius(norm);
        let out = ens.run(m, batch, goal, eps).unwrap();
        let what = format!("ensemble {norm:?}");
        check(&what, &c, goal, &out, Some((norm, eps)));
        for (i, r) in out.results.iter().enumerate() {
            assert_eq!(
                r.stage.is_some(),
                r.success,
                "{what} sample {i}: stage {:?} but success {}",
                r.stage,
                r.success
            );
            assert!(
                r.stage.is_none_or(|st| st < names.len()),
                "{what} sample {i}"
            );
        }
        let broken = out.results.iter().filter(|r| r.success).count();
        eprintln!(
            "{what}: {broken}/{N} broken, stages {:?}",
            out.results.iter().map(|r| r.stage).collect::<Vec<_>>()
        );
    }
}
