//! The `Model` interface: input layouts, Jacobian rows from one forward pass, taps, and
//! determinism for a fixed thread count.

use faultline_engine::ops::*;
use faultline_engine::{GraphBuilder, Loss, Model, Tensor};

/// `x → Flatten → Gemm(W) → logits` with W [in, k] = i·0.01 − j·0.02.
fn linear(declared: Vec<Option<usize>>, inputs: usize, k: usize) -> Model {
    let mut b = GraphBuilder::new();
    b.input("x");
    let w: Vec<f32> = (0..inputs * k)
        .map(|i| (i / k) as f32 * 0.01 - (i % k) as f32 * 0.02)
        .collect();
    b.constant("w", Tensor::from_f32(vec![inputs, k], w).unwrap());
    b.node("flat", Box::new(Flatten { axis: 1 }), &[Some("x")], "f");
    b.node(
        "fc",
        Box::new(Gemm::default()),
        &[Some("f"), Some("w")],
        "z",
    );
    Model::new(b.build("z").unwrap(), declared)
}

#[test]
fn nhwc_and_flat_inputs_are_laid_out_to_fit() {
    let x: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| (i % 17) as f32 / 17.0).collect();
    // NHWC: the model sees x transposed, so its logits equal an NCHW model's on transposed x.
    let mut nhwc = linear(vec![None, Some(4), Some(5), Some(3)], 60, 4);
    let note = nhwc.prepare([3, 4, 5], None).unwrap().unwrap();
    assert!(note.contains("NHWC"), "{note}");
    let mut plain = linear(vec![None, Some(4), Some(5), Some(3)], 60, 4);
    plain.prepare([4, 5, 3], None).unwrap();
    let mut xt = vec![0.0; x.len()];
    for n in 0..2 {
        for c in 0..3 {
            for h in 0..4 {
                for w in 0..5 {
                    xt[((n * 4 + h) * 5 + w) * 3 + c] = x[((n * 3 + c) * 4 + h) * 5 + w];
                }
            }
        }
    }
    assert_eq!(nhwc.logits(&x).unwrap(), plain.logits(&xt).unwrap());
    // Gradients flow back through the layout change to the NCHW images.
    let g = nhwc
        .loss_grad(
            &x,
            &Loss::Weights(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
        )
        .unwrap()
        .grad;
    // d z0 / d x[n,c,h,w] = W[(h*5+w)*3+c, 0] = ((h*5+w)*3+c)·0.01
    assert!((g[(2 * 4 + 1) * 5 + 3] - ((5 + 3) * 3 + 2) as f32 * 0.01).abs() < 1e-6);
    // A flat [1, 60, 1] declaration (fixed batch 1) takes the same images as 60-vectors.
    let mut flat = linear(vec![Some(1), Some(60), Some(1)], 60, 4);
    let note = flat.prepare([3, 4, 5], None).unwrap().unwrap();
    assert!(note.contains("[1, 60, 1]"), "{note}");
    assert_eq!(flat.logits(&x).unwrap().len(), 8);
    // No layout fits: a clear error.
    let mut bad = linear(vec![None, Some(61)], 61, 4);
    let err = bad.prepare([3, 4, 5], None).unwrap_err().to_string();
    assert!(err.contains("[N, 61]") && err.contains("3x4x5"), "{err}");
}

#[test]
fn jacobian_rows_come_from_one_forward_pass() {
    let mut m = linear(vec![], 12, 3);
    m.prepare([3, 2, 2], None).unwrap();
    let x: Vec<f32> = (0..24).map(|i| i as f32 / 24.0).collect();
    let f = m.forward(&x).unwrap();
    // Row j of the Jacobian of sample i is column j of W, for every sample.
    for j in 0..3 {
        let mut w = vec![0.0; 6];
        w[j] = 1.0;
        w[3 + j] = 1.0;
        let g = f.input_grad(&w).unwrap();
        for (p, v) in g.iter().enumerate() {
            let want = (p % 12) as f32 * 0.01 - j as f32 * 0.02;
            assert!((v - want).abs() < 1e-6);
        }
    }
    // The same as a fresh loss_grad with that weight vector.
    let w = [0.5, -1.0, 2.0, 0.0, 1.0, -0.5];
    assert_eq!(
        f.input_grad(&w).unwrap(),
        m.loss_grad(&x, &Loss::Weights(&w)).unwrap().grad
    );
    // Taps: the flattened input and the penultimate features (the Gemm input) coincide here.
    assert_eq!(m.penultimate_name(), Some("f"));
    let (z, feats) = m.features(&x, &["penultimate", "f"]).unwrap();
    assert_eq!(z, f.logits());
    assert_eq!(feats[0].as_f32().unwrap(), &x[..]);
    assert_eq!(feats[0], feats[1]);
    assert!(m
        .features(&x, &["nope"])
        .unwrap_err()
        .to_string()
        .contains("no activation named 'nope'"));
}

#[test]
fn results_are_identical_across_runs_for_a_given_thread_count() {
    let mut b = GraphBuilder::new();
    b.input("x");
    let w: Vec<f32> = (0..8 * 3 * 9)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 30.0)
        .collect();
    b.constant("w", Tensor::from_f32(vec![8, 3, 3, 3], w).unwrap());
    let win = conv::Window {
        kernel: [3, 3],
        strides: [1, 1],
        dilations: [1, 1],
        pads: [1, 1, 1, 1],
        auto_pad: conv::AutoPad::NotSet,
        ceil_mode: false,
    };
    b.node(
        "c",
        Box::new(Conv::new(win, 1)),
        &[Some("x"), Some("w")],
        "y",
    );
    b.node(
        "r",
        Box::new(Unary::new(UnaryKind::Relu)),
        &[Some("y")],
        "r",
    );
    b.node("g", Box::new(GlobalAveragePool), &[Some("r")], "p");
    b.node("f", Box::new(Flatten { axis: 1 }), &[Some("p")], "z");
    let mut m = Model::new(b.build("z").unwrap(), vec![]);
    m.prepare([3, 16, 16], None).unwrap();
    let x: Vec<f32> = (0..5 * 3 * 256)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let labels = [0, 1, 2, 3, 4];
        let a = pool.install(|| {
            m.loss_grad(&x, &Loss::CrossEntropy { labels: &labels })
                .unwrap()
        });
        let b = pool.install(|| {
            m.loss_grad(&x, &Loss::CrossEntropy { labels: &labels })
                .unwrap()
        });
        assert_eq!(a.logits, b.logits, "{threads} threads");
        assert_eq!(a.grad, b.grad, "{threads} threads");
    }
}

#[test]
fn batches_split_into_chunks_give_each_sample_its_own_results() {
    // 19 samples run as three chunks; every per-sample result must match that sample run alone
    // (a chunk given another chunk's labels, seeds or rows would not).
    let mut m = linear(vec![], 12, 3);
    m.prepare([3, 2, 2], None).unwrap();
    let n = 19;
    let x: Vec<f32> = (0..n * 12).map(|i| ((i * 7) % 23) as f32 / 23.0).collect();
    let labels: Vec<usize> = (0..n).map(|i| (i / 2 + i / 5) % 3).collect();
    let w: Vec<f32> = (0..n * 3).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
    let all = m
        .loss_grad(&x, &Loss::CrossEntropy { labels: &labels })
        .unwrap();
    let f = m.forward(&x).unwrap();
    let jac = f.input_grad(&w).unwrap();
    let tap = f.tap("penultimate").unwrap();
    assert_eq!(tap.shape()[0], n);
    let close = |a: &[f32], b: &[f32]| {
        a.len() == b.len() && a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-5)
    };
    for i in 0..n {
        let xi = &x[i * 12..(i + 1) * 12];
        let one = m
            .loss_grad(
                xi,
                &Loss::CrossEntropy {
                    labels: &labels[i..i + 1],
                },
            )
            .unwrap();
        assert!(
            close(&all.logits[i * 3..(i + 1) * 3], &one.logits),
            "logits of {i}"
        );
        assert!(close(&all.loss[i..i + 1], &one.loss), "loss of {i}");
        assert!(
            close(&all.grad[i * 12..(i + 1) * 12], &one.grad),
            "gradient of {i}"
        );
        let wi = &w[i * 3..(i + 1) * 3];
        let gi = m.loss_grad(xi, &Loss::Weights(wi)).unwrap().grad;
        assert!(close(&jac[i * 12..(i + 1) * 12], &gi), "input_grad of {i}");
        assert!(
            close(&tap.as_f32().unwrap()[i * 12..(i + 1) * 12], xi),
            "tap of {i}"
        );
    }
    // A label out of range is reported with its index in the whole batch.
    let mut bad = labels.clone();
    bad[17] = 3;
    let err = m
        .loss_grad(&x, &Loss::CrossEntropy { labels: &bad })
        .unwrap_err()
        .to_string();
    assert!(err.contains("sample 17"), "{err}");
}

#[test]
fn prepare_runs_the_load_time_passes_once_and_is_required() {
    // `x → Flatten → Add(Flatten(Reshape(c, [6])), ·) → Gemm`: the constant branch is folded
    // by the passes, which Model::prepare runs, not by the builder.
    let build = |target: i64| {
        let mut b = GraphBuilder::new();
        b.input("x");
        b.constant("c", Tensor::from_f32(vec![2, 3], vec![0.5; 6]).unwrap());
        b.constant("t", Tensor::from_i64(vec![2], vec![1, target]).unwrap());
        b.constant("w", Tensor::from_f32(vec![6, 2], vec![0.25; 12]).unwrap());
        b.node(
            "r",
            Box::new(Reshape::default()),
            &[Some("c"), Some("t")],
            "cr",
        );
        b.node("flat", Box::new(Flatten { axis: 1 }), &[Some("x")], "f");
        b.node(
            "add",
            Box::new(Binary::new(BinaryKind::Add)),
            &[Some("f"), Some("cr")],
            "h",
        );
        b.node(
            "fc",
            Box::new(Gemm::default()),
            &[Some("h"), Some("w")],
            "z",
        );
        Model::new(b.build("z").unwrap(), vec![])
    };
    let mut m = build(6);
    assert_eq!(m.graph().nodes().len(), 4, "the builder keeps every node");
    let x = [0.0f32; 6];
    let err = m.logits(&x).unwrap_err().to_string();
    assert!(err.contains("call Model::prepare"), "{err}");
    m.prepare([1, 2, 3], None).unwrap();
    assert_eq!(m.graph().nodes().len(), 3, "the constant Reshape is folded");
    assert_eq!(m.logits(&x).unwrap(), vec![0.75, 0.75]);
    let err = m.prepare([1, 2, 3], None).unwrap_err().to_string();
    assert!(err.contains("already prepared"), "{err}");

    // A constant subgraph that cannot be evaluated fails prepare (it used to fail the build),
    // naming the node; the graph has changed by then, so a second prepare refuses to run.
    let mut bad = build(7);
    let err = bad.prepare([1, 2, 3], None).unwrap_err().to_string();
    assert!(err.contains("'r'"), "{err}");
    let err = bad.prepare([1, 2, 3], None).unwrap_err().to_string();
    assert!(err.contains("earlier Model::prepare failed"), "{err}");
    assert!(bad.logits(&x).is_err());
}

/// A 3×3 convolution of `m` output channels over `c` input channels, stride `s`, "same" pads.
fn conv3(b: &mut GraphBuilder, name: &str, c: usize, m: usize, s: usize, x: &str, y: &str) {
    let w: Vec<f32> = (0..m * c * 9)
        .map(|i| ((i * 37 + name.len()) % 23) as f32 / 23.0 - 0.5)
        .collect();
    let wn = format!("{name}.w");
    b.constant(&wn, Tensor::from_f32(vec![m, c, 3, 3], w).unwrap());
    let win = conv::Window {
        kernel: [3, 3],
        strides: [s, s],
        dilations: [1, 1],
        pads: [1, 1, 1, 1],
        auto_pad: conv::AutoPad::NotSet,
        ceil_mode: false,
    };
    b.node(name, Box::new(Conv::new(win, 1)), &[Some(x), Some(&wn)], y);
}

#[test]
fn small_batches_give_the_same_results_on_any_number_of_threads() {
    // Batches of 1 to 8 run as one chunk whose layers the threads share (a team, in `team`):
    // a stride-1 convolution read in place, a stride-2 one on padded copies (and its col2im
    // input gradient, a GEMM), a residual block, a pool and a Gemm. Every output must be the
    // one-thread output bit for bit, since the threads only split which outputs they write.
    let mut b = GraphBuilder::new();
    b.input("x");
    conv3(&mut b, "c1", 3, 16, 1, "x", "y1");
    relu(&mut b, "r1", "y1", "a1");
    conv3(&mut b, "c2", 16, 24, 2, "a1", "y2");
    relu(&mut b, "r2", "y2", "a2");
    conv3(&mut b, "c3", 24, 24, 1, "a2", "y3");
    add_relu(&mut b, "y3", "a2", "a3");
    let k = 5;
    pooled_head(&mut b, "a3", 24, k);
    let mut m = Model::new(b.build("z").unwrap(), vec![]);
    m.prepare([3, 20, 20], None).unwrap();
    let per = 3 * 20 * 20;
    let run = |threads: usize, n: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let x: Vec<f32> = (0..n * per)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
        let seeds: Vec<f32> = (0..n * 3 * k).map(|i| (i % 5) as f32 - 2.0).collect();
        pool.install(|| {
            let lg = m
                .loss_grad(&x, &Loss::CrossEntropy { labels: &labels })
                .unwrap();
            let f = m.forward(&x).unwrap();
            let (z, taps) = m.features(&x, &["a2"]).unwrap();
            (
                m.logits(&x).unwrap(),
                lg.grad,
                f.input_grads(&seeds, 3).unwrap(),
                z,
                taps[0].as_f32().unwrap().to_vec(),
            )
        })
    };
    let alone = run(1, 1);
    for n in 1..=8 {
        let one = run(1, n);
        // One GEMM per sample: sample 0's logits are those of a batch of one.
        assert!(one.0[..k] == alone.0[..], "logits of sample 0, batch {n}");
        for threads in [2, 3] {
            assert!(one == run(threads, n), "batch {n}, {threads} threads");
        }
    }
}

/// `y = relu(x)`.
fn relu(b: &mut GraphBuilder, name: &str, x: &str, y: &str) {
    b.node(name, Box::new(Unary::new(UnaryKind::Relu)), &[Some(x)], y);
}

/// `s = x + y`, then `a = relu(s)`: a residual block's end.
fn add_relu(b: &mut GraphBuilder, x: &str, y: &str, a: &str) {
    b.node(
        "add",
        Box::new(Binary::new(BinaryKind::Add)),
        &[Some(x), Some(y)],
        "s",
    );
    relu(b, "r_add", "s", a);
}

/// Global average pool of `c` channels, Flatten, and a Gemm to `k` logits named "z".
fn pooled_head(b: &mut GraphBuilder, x: &str, c: usize, k: usize) {
    b.node("g", Box::new(GlobalAveragePool), &[Some(x)], "p");
    b.node("f", Box::new(Flatten { axis: 1 }), &[Some("p")], "h");
    let wf: Vec<f32> = (0..c * k).map(|i| (i % 7) as f32 / 7.0 - 0.4).collect();
    b.constant("wf", Tensor::from_f32(vec![c, k], wf).unwrap());
    b.node(
        "fc",
        Box::new(Gemm::default()),
        &[Some("h"), Some("wf")],
        "z",
    );
}

/// A 1×1 convolution of `m` output channels over `c` input channels (the GEMM route).
fn conv1(b: &mut GraphBuilder, name: &str, c: usize, m: usize, x: &str, y: &str) {
    let w: Vec<f32> = (0..m * c)
        .map(|i| ((i * 29 + name.len()) % 19) as f32 / 19.0 - 0.5)
        .collect();
    let wn = format!("{name}.w");
    b.constant(&wn, Tensor::from_f32(vec![m, c, 1, 1], w).unwrap());
    let win = conv::Window {
        kernel: [1, 1],
        strides: [1, 1],
        dilations: [1, 1],
        pads: [0, 0, 0, 0],
        auto_pad: conv::AutoPad::NotSet,
        ceil_mode: false,
    };
    b.node(name, Box::new(Conv::new(win, 1)), &[Some(x), Some(&wn)], y);
}

#[test]
fn small_batch_gemm_routes_and_shortcuts_match_one_thread() {
    // What ResNet-20 and its kin run at batches 1 to 8 besides in-place 3×3 layers: per-channel
    // input normalisation (Sub, Div), a stride-2 3×3 layer down to an 8×8 plane, GEMM-route
    // layers whose products the team splits by columns (a 1×1 layer, and a 3×3 layer of 128
    // input channels, whose 1152-long sums the GEMM takes in several blocks, accumulating),
    // and an option-A shortcut (Slice with steps 2, channel Pad) added back. Every output must
    // be the one-thread output bit for bit, and sample 0's logits those of a batch of one.
    let mut b = GraphBuilder::new();
    b.input("x");
    let chan = |v: [f32; 3]| Tensor::from_f32(vec![1, 3, 1, 1], v.to_vec()).unwrap();
    b.constant("mean", chan([0.49, 0.48, 0.45]));
    b.constant("std", chan([0.25, 0.24, 0.26]));
    b.node(
        "sub",
        Box::new(Binary::new(BinaryKind::Sub)),
        &[Some("x"), Some("mean")],
        "xc",
    );
    b.node(
        "div",
        Box::new(Binary::new(BinaryKind::Div)),
        &[Some("xc"), Some("std")],
        "xn",
    );
    conv3(&mut b, "c1", 3, 16, 1, "xn", "y1");
    relu(&mut b, "r1", "y1", "a1");
    conv3(&mut b, "c2", 16, 32, 2, "a1", "y2");
    relu(&mut b, "r2", "y2", "a2");
    conv1(&mut b, "c3", 32, 128, "a2", "y3");
    relu(&mut b, "r3", "y3", "a3");
    conv3(&mut b, "c4", 128, 48, 1, "a3", "y4");
    let i64s = |v: &[i64]| Tensor::from_i64(vec![v.len()], v.to_vec()).unwrap();
    b.constant("starts", i64s(&[0, 0]));
    b.constant("ends", i64s(&[i64::MAX, i64::MAX]));
    b.constant("axes2", i64s(&[2]));
    b.constant("axes3", i64s(&[3]));
    b.constant("steps", i64s(&[2]));
    b.constant("start1", i64s(&[0]));
    b.constant("end1", i64s(&[i64::MAX]));
    b.node(
        "sh",
        Box::new(Slice::default()),
        &[
            Some("a1"),
            Some("start1"),
            Some("end1"),
            Some("axes2"),
            Some("steps"),
        ],
        "s1",
    );
    b.node(
        "sw",
        Box::new(Slice::default()),
        &[
            Some("s1"),
            Some("start1"),
            Some("end1"),
            Some("axes3"),
            Some("steps"),
        ],
        "s2",
    );
    b.node(
        "pad",
        Box::new(Pad {
            mode: PadMode::Constant,
            attrs: Some((vec![0, 16, 0, 0, 0, 16, 0, 0], 0.0)),
        }),
        &[Some("s2")],
        "sc",
    );
    add_relu(&mut b, "y4", "sc", "a4");
    let k = 7;
    pooled_head(&mut b, "a4", 48, k);
    let mut m = Model::new(b.build("z").unwrap(), vec![]);
    m.prepare([3, 16, 16], None).unwrap();
    let per = 3 * 16 * 16;
    let x: Vec<f32> = (0..8 * per)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let run = |threads: usize, n: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let x = &x[..n * per];
        let labels: Vec<usize> = (0..n).map(|i| i % k).collect();
        pool.install(|| {
            let lg = m
                .loss_grad(x, &Loss::CrossEntropy { labels: &labels })
                .unwrap();
            let (z, taps) = m.features(x, &["xn", "a1", "sc"]).unwrap();
            let taps: Vec<Vec<f32>> = taps.iter().map(|t| t.as_f32().unwrap().to_vec()).collect();
            (m.logits(x).unwrap(), lg.grad, z, taps)
        })
    };
    // The normalised input is (x − mean) / std per channel, and the shortcut is
    // a1[:, :, ::2, ::2] with 16 zero channels on either side.
    let (_, _, _, taps) = run(1, 1);
    let (xn, a1, sc) = (&taps[0], &taps[1], &taps[2]);
    let (mean, std) = ([0.49f32, 0.48, 0.45], [0.25f32, 0.24, 0.26]);
    for (i, (&v, &x)) in xn.iter().zip(&x[..per]).enumerate() {
        assert_eq!(
            v,
            (x - mean[i / 256]) / std[i / 256],
            "normalised input {i}"
        );
    }
    assert_eq!((a1.len(), sc.len()), (16 * 256, 48 * 64));
    for c in 0..48 {
        for (i, &v) in sc[c * 64..(c + 1) * 64].iter().enumerate() {
            let want = match c {
                16..32 => a1[(c - 16) * 256 + (i / 8) * 32 + (i % 8) * 2],
                _ => 0.0,
            };
            assert_eq!(v, want, "shortcut channel {c}, position {i}");
        }
    }
    let alone = run(1, 1);
    for n in 1..=8 {
        let one = run(1, n);
        // One GEMM per sample: sample 0's logits are those of a batch of one.
        assert!(one.0[..k] == alone.0[..], "logits of sample 0, batch {n}");
        for threads in [2, 3] {
            let o = run(threads, n);
            assert!(one.3 == o.3, "taps batch {n}, {threads} threads");
            assert!(one.0 == o.0, "logits batch {n}, {threads} threads");
            assert!(one.1 == o.1, "grad batch {n}, {threads} threads");
        }
    }
}
