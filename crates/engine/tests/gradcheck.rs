//! Every operator's input gradient against central finite differences: for a small graph
//! `x → (shift) → op → Flatten`, the directional derivative of `Σ w·y` along random directions
//! must match `⟨∇x, d⟩` from the engine's backward pass.

mod common;
use common::*;
use faultline_engine::ops::conv::Window;
use faultline_engine::ops::*;
use faultline_engine::{GraphBuilder, Loss, Model, Tensor};

#[test]
fn conv_plain_strided_dilated_grouped_same() {
    let cases = conv_cases();
    for (name, m, group, w) in cases {
        check(name, [4, 7, 6], |b, r, x| {
            let [kh, kw] = w.kernel;
            let wt = konst(
                b,
                "w",
                Tensor::from_f32(vec![m, 4 / group, kh, kw], r.vec(m * 4 / group * kh * kw))
                    .unwrap(),
            );
            let bias = konst(b, "b", Tensor::from_f32(vec![m], r.vec(m)).unwrap());
            b.node(
                "conv",
                Box::new(Conv::new(w.clone(), group)),
                &[Some(x), Some(&wt), Some(&bias)],
                "y",
            );
            "y".into()
        });
    }
}

#[test]
fn pools() {
    let cases: Vec<(&str, PoolKind, Window)> = vec![
        (
            "maxpool2x2",
            PoolKind::Max,
            win([2, 2], [2, 2], [1, 1], [0; 4]),
        ),
        (
            "maxpool3x3_pad_ceil",
            PoolKind::Max,
            Window {
                ceil_mode: true,
                ..win([3, 3], [2, 2], [1, 1], [1, 1, 1, 1])
            },
        ),
        (
            "maxpool_dilated",
            PoolKind::Max,
            win([2, 2], [1, 1], [2, 2], [0; 4]),
        ),
        (
            "avgpool_excl_pad",
            PoolKind::Average {
                count_include_pad: false,
            },
            win([3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        ),
        (
            "avgpool_incl_pad_ceil",
            PoolKind::Average {
                count_include_pad: true,
            },
            Window {
                ceil_mode: true,
                ..win([3, 2], [2, 2], [1, 1], [1, 0, 1, 0])
            },
        ),
    ];
    for (name, kind, w) in cases {
        check(name, [2, 7, 8], |b, _, x| {
            b.node(
                "pool",
                Box::new(Pool {
                    kind,
                    window: w.clone(),
                    relu_input: false,
                }),
                &[Some(x)],
                "y",
            );
            "y".into()
        });
    }
    check("global_average_pool", [3, 4, 5], |b, _, x| {
        b.node("gap", Box::new(GlobalAveragePool), &[Some(x)], "y");
        "y".into()
    });
}

#[test]
fn activations() {
    for kind in [
        UnaryKind::Relu,
        UnaryKind::LeakyRelu(0.1),
        UnaryKind::Sigmoid,
        UnaryKind::Tanh,
        UnaryKind::Erf,
        UnaryKind::Gelu { tanh: false },
        UnaryKind::Gelu { tanh: true },
        UnaryKind::Clip(-0.2, 0.3),
        UnaryKind::Neg,
        UnaryKind::Exp,
        UnaryKind::Abs,
        UnaryKind::Identity,
    ] {
        check(&format!("{kind:?}"), [2, 3, 4], |b, _, x| {
            b.node("act", Box::new(Unary::new(kind)), &[Some(x)], "y");
            "y".into()
        });
    }
}

#[test]
fn softmax_variants_and_batch_norm() {
    for (axis, coerce, log) in [
        (1, true, false),
        (-1, false, false),
        (2, false, true),
        (1, true, true),
    ] {
        check(
            &format!("softmax_{axis}_{coerce}_{log}"),
            [3, 2, 4],
            |b, _, x| {
                b.node(
                    "sm",
                    Box::new(Softmax {
                        axis,
                        coerce_2d: coerce,
                        log,
                    }),
                    &[Some(x)],
                    "y",
                );
                "y".into()
            },
        );
    }
    check("batch_norm", [3, 2, 4], |b, r, x| {
        let mut ins = vec![Some(x.to_string())];
        for (i, nm) in ["g", "bb", "m", "v"].iter().enumerate() {
            let vals: Vec<f32> = r
                .vec(3)
                .iter()
                .map(|v| if i == 3 { 0.5 + v.abs() } else { *v })
                .collect();
            ins.push(Some(konst(b, nm, Tensor::from_f32(vec![3], vals).unwrap())));
        }
        let refs: Vec<Option<&str>> = ins.iter().map(|s| s.as_deref()).collect();
        b.node("bn", Box::new(BatchNorm { epsilon: 1e-5 }), &refs, "y");
        "y".into()
    });
}

#[test]
fn linear_algebra() {
    check("gemm_transb", [1, 3, 4], |b, r, x| {
        b.node("fl", Box::new(Flatten { axis: 1 }), &[Some(x)], "f");
        let w = konst(b, "w", Tensor::from_f32(vec![5, 12], r.vec(60)).unwrap());
        let c = konst(b, "c", Tensor::from_f32(vec![5], r.vec(5)).unwrap());
        b.node(
            "gemm",
            Box::new(Gemm {
                alpha: 0.7,
                beta: 1.3,
                trans_a: false,
                trans_b: true,
                ..Gemm::default()
            }),
            &[Some("f"), Some(&w), Some(&c)],
            "y",
        );
        "y".into()
    });
    check("gemm_transa", [1, 3, 4], |b, r, x| {
        b.node("fl", Box::new(Flatten { axis: 1 }), &[Some(x)], "f");
        b.node("t", Box::new(Transpose { perm: None }), &[Some("f")], "ft");
        let w = konst(b, "w", Tensor::from_f32(vec![12, 5], r.vec(60)).unwrap());
        b.node(
            "gemm",
            Box::new(Gemm {
                trans_a: true,
                ..Gemm::default()
            }),
            &[Some("ft"), Some(&w)],
            "y",
        );
        "y".into()
    });
    check("matmul_with_a_vector", [1, 3, 4], |b, r, x| {
        // [N, 12] · [12] → [N]: the 1-D operand's axis is added and removed again.
        b.node("fl", Box::new(Flatten { axis: 1 }), &[Some(x)], "f");
        let w = konst(b, "w", Tensor::from_f32(vec![12], r.vec(12)).unwrap());
        b.node("mm", Box::new(MatMul), &[Some("f"), Some(&w)], "y");
        "y".into()
    });
    check("matmul_batched_and_dynamic", [2, 3, 4], |b, r, x| {
        let w = konst(b, "w", Tensor::from_f32(vec![4, 5], r.vec(20)).unwrap());
        b.node("mm", Box::new(MatMul), &[Some(x), Some(&w)], "y1");
        b.node(
            "tr",
            Box::new(Transpose {
                perm: Some(vec![0, 1, 3, 2]),
            }),
            &[Some(x)],
            "xt",
        );
        b.node("mm2", Box::new(MatMul), &[Some(x), Some("xt")], "y2");
        b.node("fl1", Box::new(Flatten { axis: 1 }), &[Some("y1")], "a");
        b.node("fl2", Box::new(Flatten { axis: 1 }), &[Some("y2")], "c");
        b.node(
            "cat",
            Box::new(Concat { axis: 1 }),
            &[Some("a"), Some("c")],
            "y",
        );
        "y".into()
    });
}

#[test]
fn broadcasting_arithmetic_with_two_dynamic_operands() {
    for kind in [
        BinaryKind::Add,
        BinaryKind::Sub,
        BinaryKind::Mul,
        BinaryKind::Div,
    ] {
        check(&format!("{kind:?}"), [3, 4, 5], |b, _, x| {
            // Second operand: a per-channel reduction of x itself, kept away from zero for Div.
            let axes = konst(b, "axes", Tensor::from_i64(vec![2], vec![2, 3]).unwrap());
            b.node(
                "red",
                Box::new(Reduce {
                    kind: ReduceKind::Mean,
                    axes: None,
                    keepdims: true,
                    noop_with_empty_axes: false,
                }),
                &[Some(x), Some(&axes)],
                "m",
            );
            b.node(
                "sq",
                Box::new(Unary::new(UnaryKind::Exp)),
                &[Some("m")],
                "e",
            );
            b.node(
                "op",
                Box::new(Binary::new(kind)),
                &[Some(x), Some("e")],
                "y",
            );
            "y".into()
        });
    }
    check("reduce_sum_no_keepdims", [3, 4, 5], |b, _, x| {
        b.node(
            "red",
            Box::new(Reduce {
                kind: ReduceKind::Sum,
                axes: Some(vec![1, -1]),
                keepdims: false,
                noop_with_empty_axes: false,
            }),
            &[Some(x)],
            "y",
        );
        "y".into()
    });
}

#[test]
fn data_movement() {
    check("reshape_transpose", [2, 3, 4], |b, _, x| {
        let t = konst(b, "t", Tensor::from_i64(vec![3], vec![0, 6, -1]).unwrap());
        b.node(
            "rs",
            Box::new(Reshape::default()),
            &[Some(x), Some(&t)],
            "r",
        );
        b.node(
            "tr",
            Box::new(Transpose {
                perm: Some(vec![0, 2, 1]),
            }),
            &[Some("r")],
            "y",
        );
        "y".into()
    });
    check("slice_negative_step", [3, 5, 6], |b, _, x| {
        let s = konst(b, "s", Tensor::from_i64(vec![3], vec![2, -1, 0]).unwrap());
        let e = konst(b, "e", Tensor::from_i64(vec![3], vec![0, -100, 5]).unwrap());
        let a = konst(b, "a", Tensor::from_i64(vec![3], vec![1, 2, 3]).unwrap());
        let st = konst(b, "st", Tensor::from_i64(vec![3], vec![-1, -2, 2]).unwrap());
        b.node(
            "sl",
            Box::new(Slice::default()),
            &[Some(x), Some(&s), Some(&e), Some(&a), Some(&st)],
            "y",
        );
        "y".into()
    });
    for mode in [
        PadMode::Constant,
        PadMode::Reflect,
        PadMode::Edge,
        PadMode::Wrap,
    ] {
        check(&format!("pad_{mode:?}"), [2, 4, 5], |b, _, x| {
            let p = konst(
                b,
                "p",
                Tensor::from_i64(vec![8], vec![0, 1, 2, -1, 0, 0, 1, 3]).unwrap(),
            );
            let v = konst(b, "v", Tensor::scalar(0.25));
            b.node(
                "pad",
                Box::new(Pad { mode, attrs: None }),
                &[Some(x), Some(&p), Some(&v)],
                "y",
            );
            "y".into()
        });
    }
    check("gather_unsqueeze_squeeze_expand", [3, 4, 2], |b, _, x| {
        let i = konst(
            b,
            "i",
            Tensor::from_i64(vec![4], vec![2, 0, -1, 2]).unwrap(),
        );
        b.node(
            "ga",
            Box::new(Gather { axis: 2 }),
            &[Some(x), Some(&i)],
            "g",
        );
        b.node(
            "un",
            Box::new(Unsqueeze {
                axes: Some(vec![1]),
            }),
            &[Some("g")],
            "u",
        );
        b.node(
            "sq",
            Box::new(Squeeze {
                axes: Some(vec![1]),
            }),
            &[Some("u")],
            "s",
        );
        let sh = konst(
            b,
            "sh",
            Tensor::from_i64(vec![5], vec![1, 1, 3, 4, 2]).unwrap(),
        );
        b.node("ex", Box::new(Expand), &[Some("s"), Some(&sh)], "e");
        b.node("ca", Box::new(Cast { to_float: true }), &[Some("e")], "y");
        "y".into()
    });
}

#[test]
fn batch_norm_after_conv_is_folded_without_changing_results() {
    let mut r = Lcg(7);
    let build = |fold_blocker: bool, r: &mut Lcg| {
        let mut b = GraphBuilder::new();
        b.input("x");
        b.constant("w", Tensor::from_f32(vec![3, 2, 3, 3], r.vec(54)).unwrap());
        b.node(
            "conv",
            Box::new(Conv::new(win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 1)),
            &[Some("x"), Some("w")],
            "c",
        );
        for (nm, v) in [
            ("g", r.vec(3)),
            ("bb", r.vec(3)),
            ("m", r.vec(3)),
            ("v", r.vec(3).iter().map(|v| 1.0 + v.abs()).collect()),
        ] {
            b.constant(nm, Tensor::from_f32(vec![3], v).unwrap());
        }
        b.node(
            "bn",
            Box::new(BatchNorm { epsilon: 1e-5 }),
            &[Some("c"), Some("g"), Some("bb"), Some("m"), Some("v")],
            "y",
        );
        let out = if fold_blocker {
            // A second reader of the conv output prevents folding.
            b.node(
                "id",
                Box::new(Unary::new(UnaryKind::Identity)),
                &[Some("c")],
                "c2",
            );
            b.node(
                "add",
                Box::new(Binary::new(BinaryKind::Add)),
                &[Some("y"), Some("c2")],
                "o",
            );
            b.node(
                "sub",
                Box::new(Binary::new(BinaryKind::Sub)),
                &[Some("o"), Some("c2")],
                "o2",
            );
            "o2"
        } else {
            "y"
        };
        b.node("fl", Box::new(Flatten { axis: 1 }), &[Some(out)], "out");
        b.build("out").unwrap()
    };
    let folded = build(false, &mut Lcg(7));
    let unfolded = build(true, &mut Lcg(7));
    // The builder keeps the graph as written; Model::prepare runs the load-time passes.
    assert!(folded
        .nodes()
        .iter()
        .any(|n| n.op.name() == "BatchNormalization"));
    let (mut a, mut b) = (Model::new(folded, vec![]), Model::new(unfolded, vec![]));
    a.prepare([2, 5, 5], None).unwrap();
    b.prepare([2, 5, 5], None).unwrap();
    assert!(a
        .graph()
        .nodes()
        .iter()
        .all(|n| n.op.name() != "BatchNormalization"));
    assert!(b
        .graph()
        .nodes()
        .iter()
        .any(|n| n.op.name() == "BatchNormalization"));
    let x = r.vec(100);
    let (za, zb) = (a.logits(&x).unwrap(), b.logits(&x).unwrap());
    for (p, q) in za.iter().zip(&zb) {
        assert!((p - q).abs() < 1e-4 * (1.0 + q.abs()), "{p} vs {q}");
    }
}

/// `Relu(Add(Conv(Relu(Conv(x))), x))` (a ResNet block) and `Add(r, Conv(x))` with the
/// residual first: built so that the load-time pass fuses them into FusedConv nodes.
fn residual_block(b: &mut GraphBuilder, r: &mut Lcg, x: &str, chans: usize) -> String {
    let w = |b: &mut GraphBuilder, r: &mut Lcg, n: &str| {
        konst(
            b,
            n,
            // Scaled by 1/√fan-in so activations stay O(1) and float32 differences stay exact
            // enough for the finite-difference check.
            Tensor::from_f32(
                vec![chans, chans, 3, 3],
                r.vec(chans * chans * 9)
                    .iter()
                    .map(|v| v / (3.0 * chans as f32).sqrt())
                    .collect(),
            )
            .unwrap(),
        )
    };
    let (w1, w2, w3) = (w(b, r, "w1"), w(b, r, "w2"), w(b, r, "w3"));
    let b1 = konst(
        b,
        "b1",
        Tensor::from_f32(vec![chans], r.vec(chans)).unwrap(),
    );
    let conv = || Box::new(Conv::new(win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 1));
    b.node("c1", conv(), &[Some(x), Some(&w1), Some(&b1)], "c1");
    b.node(
        "r1",
        Box::new(Unary::new(UnaryKind::Relu)),
        &[Some("c1")],
        "r1",
    );
    b.node("c2", conv(), &[Some("r1"), Some(&w2)], "c2");
    b.node(
        "a2",
        Box::new(Binary::new(BinaryKind::Add)),
        &[Some("c2"), Some(x)],
        "a2",
    );
    b.node(
        "r2",
        Box::new(Unary::new(UnaryKind::Relu)),
        &[Some("a2")],
        "r2",
    );
    b.node("c3", conv(), &[Some("r2"), Some(&w3), Some(&b1)], "c3");
    b.node(
        "a3",
        Box::new(Binary::new(BinaryKind::Add)),
        &[Some("r2"), Some("c3")],
        "a3",
    );
    "a3".into()
}

#[test]
fn fused_conv_residual_relu() {
    check("fused_residual_block", [3, 6, 5], |b, r, x| {
        residual_block(b, r, x, 3)
    });
}

#[test]
fn fusing_conv_add_relu_does_not_change_results() {
    let build = |block_fusion: bool| {
        let mut b = GraphBuilder::new();
        b.input("x");
        let y = residual_block(&mut b, &mut Lcg(11), "x", 2);
        let out = if block_fusion {
            // Second readers of every convolution output keep the operators apart.
            for c in ["c1", "c2", "c3"] {
                b.node(
                    &format!("{c}_id"),
                    Box::new(Unary::new(UnaryKind::Identity)),
                    &[Some(c)],
                    &format!("{c}_copy"),
                );
            }
            b.node(
                "keep",
                Box::new(Concat { axis: 1 }),
                &[Some(&y), Some("c1_copy"), Some("c2_copy"), Some("c3_copy")],
                "cat",
            );
            b.constant("sl_s", Tensor::from_i64(vec![1], vec![0]).unwrap());
            b.constant("sl_e", Tensor::from_i64(vec![1], vec![2]).unwrap());
            b.constant("sl_a", Tensor::from_i64(vec![1], vec![1]).unwrap());
            b.node(
                "first",
                Box::new(Slice::default()),
                &[Some("cat"), Some("sl_s"), Some("sl_e"), Some("sl_a")],
                "z",
            );
            "z".to_string()
        } else {
            y
        };
        b.node("fl", Box::new(Flatten { axis: 1 }), &[Some(&out)], "out");
        b.build("out").unwrap()
    };
    let (fused, plain) = (build(false), build(true));
    let (mut a, mut b) = (Model::new(fused, vec![]), Model::new(plain, vec![]));
    a.prepare([2, 5, 6], None).unwrap();
    b.prepare([2, 5, 6], None).unwrap();
    assert_eq!(
        a.graph()
            .nodes()
            .iter()
            .filter(|n| n.op.name() == "Conv")
            .count(),
        3
    );
    assert_eq!(
        a.graph().nodes().len(),
        4,
        "three fused convolutions and the flatten"
    );
    assert!(b.graph().nodes().iter().any(|n| n.op.name() == "Relu"));
    let x = Lcg(3).vec(3 * 60);
    let w = Lcg(4).vec(3 * 60);
    let (ga, gb) = (
        a.loss_grad(&x, &Loss::Weights(&w)).unwrap(),
        b.loss_grad(&x, &Loss::Weights(&w)).unwrap(),
    );
    for (p, q) in ga.logits.iter().zip(&gb.logits) {
        assert!((p - q).abs() < 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
    }
    for (p, q) in ga.grad.iter().zip(&gb.grad) {
        assert!((p - q).abs() < 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
    }
}
