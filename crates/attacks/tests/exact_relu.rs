//! Exact cases on a small ReLU network over two inputs, `z = W2·relu(W1·x + b1) + b2` with
//! `x ∈ [0, 1]²` (images of shape 1×1×2), where the minimal L2 and L∞ perturbations that change
//! the prediction are computed exactly in f64, independently of the engine.
//!
//! The network is affine on each activation region, a convex polygon cut out of the unit box by
//! the hidden units' lines. The set of points not classified `y` is the union, over the regions
//! and the classes `k ≠ y`, of the convex polygons `{x ∈ region : z_k(x) ≥ z_y(x)}`
//! (Sutherland–Hodgman clipping), so the exact margin of `x0` is its distance to the nearest of
//! these polygons: the smallest distance to one of their edges (`x0` itself is strictly inside
//! its own class). For L2 that is the projection onto a segment; for L∞ the minimum of the
//! convex piecewise-linear `t ↦ ‖a + t(b − a) − x0‖∞`, reached at an end or a breakpoint.
//! The solver is first checked against a brute-force ray scan of the network itself.
//!
//! FAB (minimum-norm mode, untargeted, defaults) and DeepFool (defaults, with its refinement) must
//! return re-checked adversarial points whose norm is never below the exact margin. How far above
//! it they land is measured and bounded: see `attacks_never_beat_the_exact_relu_margin` for the
//! bounds and why DeepFool, a local method, gets a looser one than FAB, and
//! `attacks_stay_sound_where_they_miss_the_nearest_boundary` for nets where both land several
//! times above the exact margin.

use faultline_attacks::{BatchRef, DeepFoolParams, FabParams, Goal, MinNormAttack, Norm};
use faultline_engine::ops::{Flatten, Gemm, Unary, UnaryKind};
use faultline_engine::{GraphBuilder, Model, Tensor};

type P2 = [f64; 2];

/// A half-plane `{x : a·x + c ≥ 0}`.
#[derive(Clone, Copy)]
struct Half {
    a: P2,
    c: f64,
}

impl Half {
    fn at(&self, p: P2) -> f64 {
        self.a[0] * p[0] + self.a[1] * p[1] + self.c
    }
    fn flip(&self) -> Half {
        Half {
            a: [-self.a[0], -self.a[1]],
            c: -self.c,
        }
    }
}

/// Sutherland–Hodgman: the part of the convex polygon `poly` inside `h` (possibly degenerate:
/// a segment or a point when `h`'s line only touches it; empty when it misses).
fn clip(poly: &[P2], h: Half) -> Vec<P2> {
    let n = poly.len();
    let mut out = Vec::with_capacity(n + 1);
    for i in 0..n {
        let (p, q) = (poly[(i + n - 1) % n], poly[i]);
        let (fp, fq) = (h.at(p), h.at(q));
        let cross = |out: &mut Vec<P2>| {
            let t = fp / (fp - fq);
            out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
        };
        if fq >= 0.0 {
            if fp < 0.0 {
                cross(&mut out);
            }
            out.push(q);
        } else if fp >= 0.0 {
            cross(&mut out);
        }
    }
    out
}

fn area(poly: &[P2]) -> f64 {
    let n = poly.len();
    0.5 * (0..n)
        .map(|i| {
            let (p, q) = (poly[i], poly[(i + 1) % n]);
            p[0] * q[1] - q[0] * p[1]
        })
        .sum::<f64>()
        .abs()
}

/// Exact distance from `x0` to the segment `[a, b]`.
fn seg_dist(x0: P2, a: P2, b: P2, l2: bool) -> f64 {
    let (u0, v0) = (a[0] - x0[0], a[1] - x0[1]);
    let (du, dv) = (b[0] - a[0], b[1] - a[1]);
    let at = |t: f64| {
        let t = t.clamp(0.0, 1.0);
        let (u, v) = (u0 + t * du, v0 + t * dv);
        if l2 {
            u.hypot(v)
        } else {
            u.abs().max(v.abs())
        }
    };
    let len2 = du * du + dv * dv;
    if len2 == 0.0 {
        return at(0.0);
    }
    if l2 {
        return at(-(u0 * du + v0 * dv) / len2);
    }
    // max(|u(t)|, |v(t)|) is convex and piecewise linear: its minimum over [0, 1] lies at an end,
    // at a zero of u or v, or where |u| = |v| (u = v or u = −v).
    let mut cand = vec![0.0, 1.0];
    for (num, den) in [
        (-u0, du),
        (-v0, dv),
        (v0 - u0, du - dv),
        (-(u0 + v0), du + dv),
    ] {
        if den != 0.0 {
            cand.push(num / den);
        }
    }
    cand.into_iter().map(at).fold(f64::INFINITY, f64::min)
}

/// Distance from `x0` to a convex polygon that does not contain it: the nearest edge.
fn poly_dist(x0: P2, poly: &[P2], l2: bool) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| seg_dist(x0, poly[i], poly[(i + 1) % n], l2))
        .fold(f64::INFINITY, f64::min)
}

/// `z = W2·relu(W1·x + b1) + b2` with `h` hidden units and `k` classes. The weights are f32 (the
/// engine's) and the reference evaluates them in f64.
struct Net {
    h: usize,
    k: usize,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

struct Lcg(u64);

impl Lcg {
    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Net {
    /// Every hidden unit's line passes through a random point of [0.1, 0.9]², so all of them cut
    /// the box into activation regions.
    fn new(h: usize, k: usize, seed: u64) -> Net {
        let mut r = Lcg(seed);
        let (mut w1, mut b1) = (Vec::new(), Vec::new());
        for _ in 0..h {
            let ang = std::f64::consts::TAU * r.next();
            let scale = 1.0 + 3.0 * r.next();
            let (a, b) = ((scale * ang.cos()) as f32, (scale * ang.sin()) as f32);
            let (cx, cy) = (0.1 + 0.8 * r.next(), 0.1 + 0.8 * r.next());
            w1.extend([a, b]);
            b1.push((-(a as f64 * cx + b as f64 * cy)) as f32);
        }
        let w2 = (0..k * h).map(|_| (2.0 * r.next() - 1.0) as f32).collect();
        let b2 = (0..k).map(|_| (0.2 * r.next() - 0.1) as f32).collect();
        Net {
            h,
            k,
            w1,
            b1,
            w2,
            b2,
        }
    }

    fn model(&self) -> Model {
        let mut g = GraphBuilder::new();
        g.input("x");
        let t = |s: Vec<usize>, v: &Vec<f32>| Tensor::from_f32(s, v.clone()).unwrap();
        g.constant("w1", t(vec![self.h, 2], &self.w1));
        g.constant("b1", t(vec![self.h], &self.b1));
        g.constant("w2", t(vec![self.k, self.h], &self.w2));
        g.constant("b2", t(vec![self.k], &self.b2));
        let gemm = || {
            Box::new(Gemm {
                trans_b: true,
                ..Gemm::default()
            })
        };
        g.node("flat", Box::new(Flatten { axis: 1 }), &[Some("x")], "f");
        g.node("fc1", gemm(), &[Some("f"), Some("w1"), Some("b1")], "p");
        g.node(
            "relu",
            Box::new(Unary::new(UnaryKind::Relu)),
            &[Some("p")],
            "r",
        );
        g.node("fc2", gemm(), &[Some("r"), Some("w2"), Some("b2")], "z");
        let mut m = Model::new(g.build("z").unwrap(), vec![]);
        m.prepare([1, 1, 2], None).unwrap();
        m
    }

    /// Hidden unit `i`'s pre-activation as a half-plane (active side ≥ 0).
    fn unit(&self, i: usize) -> Half {
        Half {
            a: [self.w1[2 * i] as f64, self.w1[2 * i + 1] as f64],
            c: self.b1[i] as f64,
        }
    }

    fn logits(&self, x: P2) -> Vec<f64> {
        let hid: Vec<f64> = (0..self.h).map(|i| self.unit(i).at(x).max(0.0)).collect();
        (0..self.k)
            .map(|c| {
                self.b2[c] as f64
                    + (0..self.h)
                        .map(|i| self.w2[c * self.h + i] as f64 * hid[i])
                        .sum::<f64>()
            })
            .collect()
    }

    /// Whether `x` is classified other than `y` (as [`Net::logits`], without allocating).
    fn beaten(&self, x: P2, y: usize) -> bool {
        let mut z = [0.0f64; 8];
        z[..self.k]
            .iter_mut()
            .zip(&self.b2)
            .for_each(|(v, &b)| *v = b as f64);
        for i in 0..self.h {
            let a = self.unit(i).at(x);
            if a > 0.0 {
                for (c, v) in z[..self.k].iter_mut().enumerate() {
                    *v += self.w2[c * self.h + i] as f64 * a;
                }
            }
        }
        argmax(&z[..self.k]) != y
    }

    /// The logits on the region of activation pattern `act`: `z_c(x) = a_c·x + c_c`.
    fn affine(&self, act: &[bool]) -> Vec<Half> {
        (0..self.k)
            .map(|c| {
                let mut z = Half {
                    a: [0.0, 0.0],
                    c: self.b2[c] as f64,
                };
                for (i, _) in act.iter().enumerate().filter(|(_, &on)| on) {
                    let (w, u) = (self.w2[c * self.h + i] as f64, self.unit(i));
                    z.a[0] += w * u.a[0];
                    z.a[1] += w * u.a[1];
                    z.c += w * u.c;
                }
                z
            })
            .collect()
    }

    /// The activation regions of positive area that tile the box, with their affine logits.
    /// (Zero-area pieces lie in the closure of the others, on which the same maps hold.)
    fn regions(&self) -> Vec<(Vec<P2>, Vec<Half>)> {
        let unit_box = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let mut parts: Vec<(Vec<P2>, Vec<bool>)> = vec![(unit_box, vec![])];
        for i in 0..self.h {
            let u = self.unit(i);
            parts = parts
                .into_iter()
                .flat_map(|(poly, act)| {
                    [(u, true), (u.flip(), false)].map(|(side, on)| {
                        let mut a = act.clone();
                        a.push(on);
                        (clip(&poly, side), a)
                    })
                })
                .filter(|(poly, _)| poly.len() >= 3 && area(poly) > 1e-14)
                .collect();
        }
        parts
            .into_iter()
            .map(|(poly, act)| {
                let z = self.affine(&act);
                (poly, z)
            })
            .collect()
    }
}

fn argmax(z: &[f64]) -> usize {
    (0..z.len()).fold(0, |m, c| if z[c] > z[m] { c } else { m })
}

/// The exact smallest L2 (`l2`) or L∞ distance from `x0` (classified `y` with a positive logit
/// margin) to a point of the box classified otherwise; `+∞` when the whole box is `y`.
fn exact_margin(regions: &[(Vec<P2>, Vec<Half>)], x0: P2, y: usize, l2: bool) -> f64 {
    let mut best = f64::INFINITY;
    for (poly, z) in regions {
        for (_, zc) in z.iter().enumerate().filter(|&(c, _)| c != y) {
            // z_c − z_y ≥ 0 on this region.
            let h = Half {
                a: [zc.a[0] - z[y].a[0], zc.a[1] - z[y].a[1]],
                c: zc.c - z[y].c,
            };
            let piece = clip(poly, h);
            if !piece.is_empty() {
                best = best.min(poly_dist(x0, &piece, l2));
            }
        }
    }
    best
}

/// Brute force on the network itself: along `rays` directions on the unit sphere of the norm,
/// march out from `x0` in steps of `step` (inside the box, up to its edge, and only as far as the
/// best crossing so far) and bisect the first change of prediction. An upper bound on the margin
/// (each crossing is a real one) that converges to it as the scan gets finer.
fn scan_margin(net: &Net, x0: P2, y: usize, l2: bool, rays: usize, step: f64) -> f64 {
    let mut best = f64::INFINITY;
    let beaten = |r: f64, u: P2| net.beaten([x0[0] + r * u[0], x0[1] + r * u[1]], y);
    // A coarse pass first, so that the fine one marches only up to a good bound.
    for j in (0..rays).step_by(97).chain(0..rays) {
        let s = j as f64 / rays as f64;
        let u = if l2 {
            let a = std::f64::consts::TAU * s;
            [a.cos(), a.sin()]
        } else {
            // Around the square ‖u‖∞ = 1.
            let p = 8.0 * s;
            match p as usize {
                0 | 7 => [1.0, if p < 1.0 { p } else { p - 8.0 }],
                1 | 2 => [2.0 - p, 1.0],
                3 | 4 => [-1.0, 4.0 - p],
                _ => [p - 6.0, -1.0],
            }
        };
        // Where the ray leaves the box: the last point tested, so that a crossing within the
        // last step before the edge is not missed.
        let exit = (0..2)
            .map(|d| match u[d] {
                v if v > 0.0 => (1.0 - x0[d]) / v,
                v if v < 0.0 => -x0[d] / v,
                _ => f64::INFINITY,
            })
            .fold(f64::INFINITY, f64::min);
        let mut r = 0.0;
        while r < exit.min(best) {
            let next = (r + step).min(exit);
            if beaten(next, u) {
                let (mut lo, mut hi) = (r, next);
                for _ in 0..32 {
                    let mid = 0.5 * (lo + hi);
                    if beaten(mid, u) {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                best = best.min(hi);
                break;
            }
            r = next;
        }
    }
    best
}

/// Seeded points of the box with the network's prediction and both exact margins; points whose
/// margin is degenerate (below 1e-3, or none at all) or whose prediction the engine (f32) and the
/// reference (f64) do not agree on are left out.
struct Case {
    x: Vec<f32>,
    labels: Vec<usize>,
    l2: Vec<f64>,
    linf: Vec<f64>,
}

fn case(net: &Net, m: &Model, n: usize, seed: u64) -> Case {
    let regions = net.regions();
    let mut r = Lcg(seed);
    let pts: Vec<f32> = (0..2 * n)
        .map(|_| (0.02 + 0.96 * r.next()) as f32)
        .collect();
    let z = m.logits(&pts).unwrap();
    let k = net.k;
    let mut c = Case {
        x: vec![],
        labels: vec![],
        l2: vec![],
        linf: vec![],
    };
    for i in 0..n {
        let x0 = [pts[2 * i] as f64, pts[2 * i + 1] as f64];
        let zr = net.logits(x0);
        let y = argmax(&zr);
        let zf = &z[i * k..(i + 1) * k];
        let yf = (0..k).fold(0, |m, c| if zf[c] > zf[m] { c } else { m });
        let l2 = exact_margin(&regions, x0, y, true);
        let linf = exact_margin(&regions, x0, y, false);
        if y != yf || !(1e-3..1e9).contains(&linf) {
            continue;
        }
        c.x.extend([pts[2 * i], pts[2 * i + 1]]);
        c.labels.push(y);
        c.l2.push(l2);
        c.linf.push(linf);
    }
    c
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    (q(0.5), q(0.9), q(1.0))
}

/// The networks (hidden units, classes, seed), chosen among seeds for predictions spread over
/// the classes and many activation regions (24–36).
const NETS: [(usize, usize, u64); 3] = [(8, 4, 6), (8, 4, 8), (10, 4, 1)];

/// Brute-force check of the exact margin of `x0` (both norms): the scan must agree to 1e-3.
fn check_by_scan(net: &Net, x0: &[f32], y: usize, l2: f64, linf: f64) {
    let x0 = [x0[0] as f64, x0[1] as f64];
    for (is_l2, want) in [(true, l2), (false, linf)] {
        let got = scan_margin(net, x0, y, is_l2, 20_000, 2e-3);
        let norm = if is_l2 { "L2" } else { "Linf" };
        eprintln!("  scan {x0:.5?} (class {y}) {norm}: exact {want:.6}, scan {got:.6}");
        // The scan finds real crossings (never below the exact margin, up to its bisection)
        // and misses the nearest one only by its angular resolution.
        assert!(
            got >= want * (1.0 - 1e-9),
            "{norm}: scan {got} below the exact {want}"
        );
        assert!(
            got <= want * (1.0 + 1e-3),
            "{norm}: scan {got} above the exact {want}"
        );
    }
}

#[test]
fn exact_relu_margin_matches_a_brute_force_scan() {
    for (h, k, seed) in NETS {
        let net = Net::new(h, k, seed);
        let m = net.model();
        let regions = net.regions();
        assert!(regions.len() > 2 * h, "{} regions", regions.len());
        let c = case(&net, &m, 3, 7);
        assert_eq!(c.labels.len(), 3);
        for i in 0..3 {
            check_by_scan(
                &net,
                &c.x[2 * i..2 * i + 2],
                c.labels[i],
                c.l2[i],
                c.linf[i],
            );
        }
    }
}

/// One attack's results in one norm, over all nets: ratio of the norm found to the exact margin,
/// and where the largest one was (net, point).
struct Tally {
    ratios: Vec<f64>,
    worst: (usize, usize),
}

impl Tally {
    fn share_within(&self, f: f64) -> f64 {
        self.ratios.iter().filter(|&&q| q <= f).count() as f64 / self.ratios.len() as f64
    }
}

/// FAB and DeepFool with their defaults on 48 seeded points per net (labels = predictions), L2
/// and L∞. Every returned point must be adversarial (the re-checked flag) and never closer than
/// the exact margin. How far above it they land is bounded by what was measured (FAB 5 × 100,
/// DeepFool 50 steps + 12 bisections, 143 points; ratio median / p90 / max):
///
/// | | L2 | L∞ |
/// |---|---|---|
/// | FAB | 1.0052 / 1.0085 / 1.240 (132/143 within 1 %) | 1.0052 / 1.0087 / 1.664 (130/143) |
/// | DeepFool | 1.0032 / 1.377 / 2.617 (86/143) | 1.0006 / 1.290 / 2.598 (104/143) |
///
/// Both are local methods on a piecewise-linear function: DeepFool follows the linearisation of
/// the region it starts in and often crosses a farther boundary than the nearest one; FAB's
/// restarts and its pull towards `x0` find the nearest one on most points, but on about 8 % its
/// five runs all end at a farther boundary (with 20 restarts 96–99 %, with 50 about 99 % are
/// within 1 %). The 1 % of the linear case therefore holds here for FAB on the large majority
/// and for DeepFool at the median only; the bounds below leave some room over the measurement.
#[test]
fn attacks_never_beat_the_exact_relu_margin() {
    let nets: Vec<(Net, Model, Case)> = NETS
        .iter()
        .map(|&(h, k, seed)| {
            let net = Net::new(h, k, seed);
            let m = net.model();
            let c = case(&net, &m, 48, 5);
            (net, m, c)
        })
        .collect();
    let mut tallies: Vec<(&str, Norm, Tally)> = Vec::new();
    for norm in [Norm::L2, Norm::Linf] {
        let l2 = norm == Norm::L2;
        for name in ["FAB", "DeepFool"] {
            let mut t = Tally {
                ratios: vec![],
                worst: (0, 0),
            };
            let mut worst = 0.0;
            for (j, (_, m, c)) in nets.iter().enumerate() {
                let (n, id) = (c.labels.len(), NETS[j]);
                assert!(n >= 40, "net {id:?}: {n} points");
                let goal = Goal {
                    labels: &c.labels,
                    targets: None,
                };
                let idx: Vec<usize> = (0..n).collect();
                let batch = BatchRef::new(&c.x, &idx);
                let out = if name == "FAB" {
                    let p = FabParams {
                        norm,
                        ..Default::default()
                    };
                    MinNormAttack::run(&p, m, batch, goal).unwrap()
                } else {
                    let p = DeepFoolParams {
                        norm,
                        ..Default::default()
                    };
                    p.run(m, batch, goal).unwrap()
                };
                let want = if l2 { &c.l2 } else { &c.linf };
                for (i, r) in out.results.iter().enumerate() {
                    let x0 = &c.x[2 * i..2 * i + 2];
                    assert!(
                        r.success,
                        "{name} {norm:?} net {id:?} point {i} {x0:?}: not broken"
                    );
                    let got = if l2 { r.l2 } else { r.linf } as f64;
                    let ratio = got / want[i];
                    // Up to f32 rounding of the returned point and of the logits at the boundary.
                    assert!(
                        ratio >= 1.0 - 1e-5,
                        "{name} {norm:?} net {id:?} point {i} {x0:?}: {got} below the exact {}",
                        want[i]
                    );
                    if ratio > worst {
                        worst = ratio;
                        t.worst = (j, i);
                    }
                    t.ratios.push(ratio);
                }
            }
            tallies.push((name, norm, t));
        }
    }
    for (name, norm, t) in &tallies {
        let (med, p90, max) = quantiles(t.ratios.clone());
        let min = t.ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let (j, i) = t.worst;
        let (c, id) = (&nets[j].2, NETS[j]);
        let want = if *norm == Norm::L2 {
            c.l2[i]
        } else {
            c.linf[i]
        };
        eprintln!(
            "{name} {norm:?}: {} points, ratio to the exact margin min {min:.6}, median {med:.5}, \
             p90 {p90:.5}, max {max:.5}; within 1 %: {:.1} %; worst: net {id:?} point {i} {:?} \
             (class {}), exact {want:.5}, found {:.5}",
            t.ratios.len(),
            100.0 * t.share_within(1.01),
            &c.x[2 * i..2 * i + 2],
            c.labels[i],
            want * max,
        );
        // The worst case is a real excess, not an error of the reference.
        check_by_scan(
            &nets[j].0,
            &c.x[2 * i..2 * i + 2],
            c.labels[i],
            c.l2[i],
            c.linf[i],
        );
        let (share, p90_max, max_max) = match *name {
            "FAB" => (0.85, 1.01, 2.0),
            _ => (0.5, 1.5, 3.0),
        };
        assert!(med <= 1.01, "{name} {norm:?}: median ratio {med}");
        assert!(
            p90 <= p90_max,
            "{name} {norm:?}: 90th percentile ratio {p90}"
        );
        assert!(max <= max_max, "{name} {norm:?}: largest ratio {max}");
        assert!(
            t.share_within(1.01) >= share,
            "{name} {norm:?}: only {:.1} % within 1 %",
            100.0 * t.share_within(1.01)
        );
    }
}

/// Nets on which a sweep over 62 seeded nets (h ∈ {6, 8, 10}, k ∈ {3, 4}, seeds 1–11; 2966
/// points) found the attacks farthest off: points with a small exact margin where FAB and DeepFool
/// land 3–16 × above it or (DeepFool) find nothing. Over the whole sweep neither attack ever
/// returned a point closer than the exact margin, FAB missed only points whose exact margin was
/// at least 0.17 (a sixth of the box), DeepFool missed some at 0.024.
const HARD_NETS: [(usize, usize, u64); 6] = [
    (6, 3, 4),
    (6, 4, 4),
    (6, 4, 10),
    (10, 4, 2),
    (8, 3, 10),
    (8, 4, 10),
];

/// On the hard nets: every adversarial point returned is at least the exact margin away, and FAB
/// breaks every point whose exact margin is below 0.15; the misses and the largest excesses are
/// printed (they are the attacks' limits, not asserted).
#[test]
fn attacks_stay_sound_where_they_miss_the_nearest_boundary() {
    for (h, k, seed) in HARD_NETS {
        let net = Net::new(h, k, seed);
        let m = net.model();
        let c = case(&net, &m, 48, 5);
        let n = c.labels.len();
        let goal = Goal {
            labels: &c.labels,
            targets: None,
        };
        let idx: Vec<usize> = (0..n).collect();
        for norm in [Norm::L2, Norm::Linf] {
            let l2 = norm == Norm::L2;
            let want = if l2 { &c.l2 } else { &c.linf };
            let fab_p = FabParams {
                norm,
                ..Default::default()
            };
            let df_p = DeepFoolParams {
                norm,
                ..Default::default()
            };
            let batch = BatchRef::new(&c.x, &idx);
            let outs = [
                ("FAB", MinNormAttack::run(&fab_p, &m, batch, goal).unwrap()),
                ("DeepFool", df_p.run(&m, batch, goal).unwrap()),
            ];
            for (name, out) in &outs {
                let (mut missed, mut worst) = (Vec::new(), (1.0, 0));
                for (i, r) in out.results.iter().enumerate() {
                    let x0 = &c.x[2 * i..2 * i + 2];
                    if !r.success {
                        assert!(
                            *name != "FAB" || want[i] >= 0.15,
                            "FAB {norm:?} net {seed} point {i} {x0:?}: not broken, exact {}",
                            want[i]
                        );
                        missed.push(format!("{:.3}", want[i]));
                        continue;
                    }
                    let got = if l2 { r.l2 } else { r.linf } as f64;
                    assert!(
                        got >= want[i] * (1.0 - 1e-5),
                        "{name} {norm:?} net {seed} point {i} {x0:?}: {got} below the exact {}",
                        want[i]
                    );
                    if got / want[i] > worst.0 {
                        worst = (got / want[i], i);
                    }
                }
                let (q, i) = worst;
                eprintln!(
                    "net ({h}, {k}, {seed}) {name} {norm:?}: {n} points, missed {} (exact \
                     margins {missed:?}); largest ratio {q:.3} at point {i} {:?} (class {}, \
                     exact {:.4})",
                    missed.len(),
                    &c.x[2 * i..2 * i + 2],
                    c.labels[i],
                    want[i]
                );
            }
        }
    }
    // The largest excess of FAB in the sweep (8.5 × in L2) is confirmed by brute force.
    let net = Net::new(10, 4, 2);
    let c = case(&net, &net.model(), 48, 5);
    let i = 17;
    assert_eq!(&c.x[2 * i..2 * i + 2], &[0.021505844, 0.34109154]);
    check_by_scan(
        &net,
        &c.x[2 * i..2 * i + 2],
        c.labels[i],
        c.l2[i],
        c.linf[i],
    );
}
