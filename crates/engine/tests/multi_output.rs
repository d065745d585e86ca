//! The multi-output vector–Jacobian product `Forward::input_grads`: bit for bit the same as one
//! `Forward::input_grad` per combination, and the directional derivatives of central finite
//! differences, on a small LeNet-like network (conv → ReLU → max pool twice, the ONNX export's
//! Shape → Gather → Unsqueeze → Concat → Reshape flatten, Gemm → ReLU → Gemm), and on a variant
//! whose batch axis leaves the first position (a transpose), which runs one pass per combination.

mod common;
use common::*;
use faultline_engine::ops::*;
use faultline_engine::{GraphBuilder, Model, Tensor};

const CLASSES: usize = 5;

/// The network on 2×8×8 images; `transposed` swaps the batch and channel axes before the
/// first pool and back after it.
fn net(transposed: bool) -> Model {
    let mut r = Lcg(0x0123_4567);
    let mut b = GraphBuilder::new();
    b.input("x");
    let same = win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]);
    let pool = || Pool {
        kind: PoolKind::Max,
        window: win([2, 2], [2, 2], [1, 1], [0; 4]),
        relu_input: false,
    };
    let relu = || Box::new(Unary::new(UnaryKind::Relu));
    let w1 = konst(
        &mut b,
        "w1",
        Tensor::from_f32(vec![6, 2, 3, 3], r.vec(108)).unwrap(),
    );
    let b1 = konst(&mut b, "b1", Tensor::from_f32(vec![6], r.vec(6)).unwrap());
    b.node(
        "c1",
        Box::new(Conv::new(same.clone(), 1)),
        &[Some("x"), Some(&w1), Some(&b1)],
        "y1",
    );
    b.node("r1", relu(), &[Some("y1")], "a1");
    let into_pool = if transposed {
        let perm = || Transpose {
            perm: Some(vec![1, 0, 2, 3]),
        };
        b.node("t1", Box::new(perm()), &[Some("a1")], "a1t");
        b.node("p1t", Box::new(pool()), &[Some("a1t")], "q1t");
        b.node("t2", Box::new(perm()), &[Some("q1t")], "q1");
        "q1"
    } else {
        b.node("p1", Box::new(pool()), &[Some("a1")], "q1");
        "q1"
    };
    let w2 = konst(
        &mut b,
        "w2",
        Tensor::from_f32(vec![8, 6, 3, 3], r.vec(432)).unwrap(),
    );
    b.node(
        "c2",
        Box::new(Conv::new(same, 1)),
        &[Some(into_pool), Some(&w2)],
        "y2",
    );
    b.node("r2", relu(), &[Some("y2")], "a2");
    b.node("p2", Box::new(pool()), &[Some("a2")], "q2");
    // Flatten as PyTorch exports it: reshape to [N, -1] with N read from the shape.
    b.node(
        "shape",
        Box::new(Shape {
            start: 0,
            end: None,
        }),
        &[Some("q2")],
        "s",
    );
    konst(&mut b, "zero", Tensor::from_i64(vec![], vec![0]).unwrap());
    b.node(
        "n",
        Box::new(Gather { axis: 0 }),
        &[Some("s"), Some("zero")],
        "n",
    );
    konst(&mut b, "axes", Tensor::from_i64(vec![1], vec![0]).unwrap());
    b.node(
        "n1",
        Box::new(Unsqueeze { axes: None }),
        &[Some("n"), Some("axes")],
        "n1",
    );
    konst(&mut b, "rest", Tensor::from_i64(vec![1], vec![-1]).unwrap());
    b.node(
        "cat",
        Box::new(Concat { axis: 0 }),
        &[Some("n1"), Some("rest")],
        "target",
    );
    b.node(
        "flat",
        Box::new(Reshape::default()),
        &[Some("q2"), Some("target")],
        "f",
    );
    let fc = |b: &mut GraphBuilder, r: &mut Lcg, i: usize, o: usize, x: &str, y: &str| {
        let w = konst(
            b,
            &format!("{y}_w"),
            Tensor::from_f32(vec![o, i], r.vec(o * i)).unwrap(),
        );
        let bias = konst(
            b,
            &format!("{y}_b"),
            Tensor::from_f32(vec![o], r.vec(o)).unwrap(),
        );
        b.node(
            y,
            Box::new(Gemm {
                trans_b: true,
                ..Gemm::default()
            }),
            &[Some(x), Some(&w), Some(&bias)],
            y,
        );
    };
    fc(&mut b, &mut r, 32, 12, "f", "h");
    b.node("rh", relu(), &[Some("h")], "ha");
    fc(&mut b, &mut r, 12, CLASSES, "ha", "z");
    let mut m = Model::new(b.build("z").unwrap(), vec![]);
    m.prepare([2, 8, 8], None).unwrap();
    m
}

/// Images kept 0.05 away from 0.5 (see `common::check`) and random combination weights.
fn inputs(n: usize, m: usize) -> (Vec<f32>, Vec<f32>) {
    let mut r = Lcg(42);
    let x = r
        .vec(n * 128)
        .iter()
        .map(|v| 0.5 + v.signum() * (0.05 + 0.4 * v.abs()))
        .collect();
    (x, r.vec(n * m * CLASSES))
}

#[test]
fn multi_output_equals_separate_backward_passes() {
    // 19 samples: three chunks; 1 and 2 threads (units of chunk × combinations in parallel);
    // one combination (no replication) and four.
    let (n, per) = (19, 128);
    for (m, transposed) in [(1, false), (4, false), (4, true)] {
        let (x, w) = inputs(n, m);
        let model = net(transposed);
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let f = model.forward(&x).unwrap();
                let all = f.input_grads(&w, m).unwrap();
                assert_eq!(all.len(), n * m * per);
                for j in 0..m {
                    let wj: Vec<f32> = (0..n)
                        .flat_map(|i| w[(i * m + j) * CLASSES..(i * m + j + 1) * CLASSES].to_vec())
                        .collect();
                    let one = f.input_grad(&wj).unwrap();
                    for i in 0..n {
                        let got = &all[(i * m + j) * per..(i * m + j + 1) * per];
                        // Bit for bit: the kernels reduce in the same order at any batch size.
                        assert_eq!(
                            got,
                            &one[i * per..(i + 1) * per],
                            "transposed {transposed}, {threads} threads, sample {i}, combination {j}"
                        );
                    }
                }
                // Not one combination is all zeros (a gradient that never reached the input
                // would compare equal to itself above).
                assert!(all.chunks(per).all(|g| g.iter().any(|&v| v != 0.0)));
            });
        }
    }
}

#[test]
fn multi_output_matches_finite_differences() {
    let (n, m, per) = (3, 3, 128);
    let (x, w) = inputs(n, m);
    let model = net(false);
    let all = model.forward(&x).unwrap().input_grads(&w, m).unwrap();
    let mut r = Lcg(7);
    for i in 0..n {
        let xi = &x[i * per..(i + 1) * per];
        for j in 0..m {
            let wj = &w[(i * m + j) * CLASSES..(i * m + j + 1) * CLASSES];
            let f = |x: &[f32]| -> f64 {
                let z = model.logits(x).unwrap();
                z.iter().zip(wj).map(|(a, b)| *a as f64 * *b as f64).sum()
            };
            let g = &all[(i * m + j) * per..(i * m + j + 1) * per];
            let d = r.vec(per);
            let h = 1e-4f32;
            let xp: Vec<f32> = xi.iter().zip(&d).map(|(a, b)| a + h * b).collect();
            let xm: Vec<f32> = xi.iter().zip(&d).map(|(a, b)| a - h * b).collect();
            let fd = (f(&xp) - f(&xm)) / (2.0 * h as f64);
            let (err, an) = directional_error(fd, g, &d);
            assert!(
                err < 2e-3,
                "sample {i}, combination {j}: finite difference {fd} vs {an} (relative {err:.2e})"
            );
        }
    }
}

#[test]
fn multi_output_refuses_mismatched_weights() {
    let (x, w) = inputs(2, 3);
    let model = net(false);
    let f = model.forward(&x).unwrap();
    let err = f.input_grads(&w, 2).unwrap_err().to_string();
    assert!(
        err.contains("2 samples × 2 combinations × 5 logits"),
        "{err}"
    );
    assert!(f.input_grads(&[], 0).is_err());
}
