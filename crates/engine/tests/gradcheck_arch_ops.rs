//! Input gradients of the operators that transformers, mobile networks and the newer PyTorch
//! exporter need (normalizations, hard activations, comparisons and selection, extra
//! reductions, Split/Tile/CumSum/Trilu/ScatterND/GatherND/TopK/Einsum/Resize) against central
//! finite differences, through `common::check`.

mod common;
use common::*;
use faultline_engine::ops::*;
use faultline_engine::{GraphBuilder, Loss, Tensor};

fn node(b: &mut GraphBuilder, op: impl Op + 'static, ins: &[&str], out: &str) -> String {
    let ins: Vec<Option<&str>> = ins.iter().map(|s| Some(*s)).collect();
    b.node(out, Box::new(op), &ins, out);
    out.to_string()
}

fn ints(b: &mut GraphBuilder, name: &str, v: &[i64]) -> String {
    konst(
        b,
        name,
        Tensor::from_i64(vec![v.len()], v.to_vec()).unwrap(),
    )
}

fn scaled(b: &mut GraphBuilder, x: &str, k: f32) -> String {
    let c = konst(b, "k", Tensor::scalar(k));
    node(b, Binary::new(BinaryKind::Mul), &[x, &c], "xk")
}

#[test]
fn new_activations() {
    for (kind, scale) in [
        (
            UnaryKind::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            7.0,
        ),
        (UnaryKind::HardSwish, 7.0),
        (UnaryKind::Mish, 4.0),
        (UnaryKind::Softplus, 4.0),
        (UnaryKind::Elu(1.0), 2.0),
        (UnaryKind::Reciprocal, 1.0),
    ] {
        check(&format!("{kind:?}"), [2, 3, 4], |b, _, x| {
            let xk = scaled(b, x, scale);
            node(b, Unary::new(kind), &[&xk], "y")
        });
    }
    check("log_of_exp_plus", [2, 3, 4], |b, _, x| {
        let e = node(b, Unary::new(UnaryKind::Exp), &[x], "e");
        node(b, Unary::new(UnaryKind::Log), &[&e], "y")
    });
}

#[test]
fn normalizations() {
    let cases: Vec<(&str, NormKind, Vec<usize>)> = vec![
        ("layer_last", NormKind::Layer { axis: -1 }, vec![5]),
        ("layer_chw", NormKind::Layer { axis: 1 }, vec![4, 3, 5]),
        ("group_per_channel", NormKind::Group { groups: 2 }, vec![4]),
        ("group_per_group", NormKind::Group { groups: 2 }, vec![2]),
        ("instance", NormKind::Instance, vec![4]),
    ];
    for (name, kind, pshape) in cases {
        check(name, [4, 3, 5], |b, r, x| {
            let n: usize = pshape.iter().product();
            let g: Vec<f32> = r.vec(n).iter().map(|v| 1.0 + 0.5 * v).collect();
            let gm = konst(b, "g", Tensor::from_f32(pshape.clone(), g).unwrap());
            let bt = konst(b, "bt", Tensor::from_f32(pshape.clone(), r.vec(n)).unwrap());
            let op = Normalize {
                kind,
                epsilon: 1e-5,
            };
            let y = node(b, op, &[x, &gm, &bt], "n");
            // A nonlinearity after, so that the weights of Σ w·y are not all the gradient sees.
            node(b, Unary::new(UnaryKind::Tanh), &[&y], "y")
        });
    }
    check("layer_no_affine", [2, 3, 5], |b, _, x| {
        let op = Normalize {
            kind: NormKind::Layer { axis: -1 },
            epsilon: 1e-5,
        };
        let y = node(b, op, &[x], "n");
        node(b, Unary::new(UnaryKind::Tanh), &[&y], "y")
    });
}

#[test]
fn pow_max_min_mod_where() {
    check("pow_const_exponent", [2, 3, 4], |b, _, x| {
        let e = konst(b, "e", Tensor::scalar(3.0));
        node(b, Binary::new(BinaryKind::Pow), &[x, &e], "y")
    });
    check("pow_int_exponent", [2, 3, 4], |b, _, x| {
        let e = konst(b, "e", Tensor::from_i64(vec![], vec![2]).unwrap());
        node(b, Binary::new(BinaryKind::Pow), &[x, &e], "y")
    });
    check("pow_dynamic_both", [2, 3, 4], |b, _, x| {
        let base = node(b, Unary::new(UnaryKind::Exp), &[x], "e");
        node(b, Binary::new(BinaryKind::Pow), &[&base, x], "y")
    });
    for kind in [BinaryKind::Max, BinaryKind::Min] {
        check(&format!("{kind:?}"), [2, 3, 4], |b, _, x| {
            let e = node(b, Unary::new(UnaryKind::Tanh), &[x], "t");
            let k = konst(b, "k", Tensor::scalar(-1.7));
            let e = node(b, Binary::new(BinaryKind::Mul), &[&e, &k], "tk");
            node(b, Binary::new(kind), &[x, &e], "y")
        });
    }
    for fmod in [false, true] {
        // |x| ∈ [0.05, 0.45]: the only jump (at 0, Python semantics) stays out of reach of
        // the finite differences.
        check(&format!("mod_{fmod}"), [2, 3, 4], |b, _, x| {
            let d = konst(b, "d", Tensor::scalar(0.7));
            node(b, Binary::new(BinaryKind::Mod { fmod }), &[x, &d], "y")
        });
    }
    check("where_greater", [2, 3, 4], |b, _, x| {
        let zero = konst(b, "z", Tensor::scalar(0.0));
        let c = node(b, Binary::new(BinaryKind::Greater), &[x, &zero], "c");
        let e = node(b, Unary::new(UnaryKind::Exp), &[x], "e");
        let half = konst(
            b,
            "h",
            Tensor::from_f32(vec![4], vec![0.1, 0.2, 0.3, 0.4]).unwrap(),
        );
        let w1 = node(b, Where, &[&c, &e, &half], "w1");
        let nc = node(b, Unary::new(UnaryKind::Not), &[&c], "nc");
        let w2 = node(b, Where, &[&nc, x, &e], "w2");
        node(b, Binary::new(BinaryKind::Add), &[&w1, &w2], "y")
    });
}

#[test]
fn new_reductions() {
    for kind in [
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
        ReduceKind::L1,
        ReduceKind::L2,
        ReduceKind::SumSquare,
        ReduceKind::LogSumExp,
    ] {
        for (axes, keepdims) in [(vec![1, -1], true), (vec![2], false)] {
            check(
                &format!("{kind:?}_{axes:?}_{keepdims}"),
                [3, 2, 4],
                |b, _, x| {
                    node(
                        b,
                        Reduce {
                            kind,
                            axes: Some(axes.clone()),
                            keepdims,
                            noop_with_empty_axes: false,
                        },
                        &[x],
                        "y",
                    )
                },
            );
        }
    }
}

#[test]
fn split_tile_cumsum_trilu() {
    check("split_sizes", [5, 2, 3], |b, _, x| {
        let sizes = ints(b, "s", &[2, 3]);
        let mut parts = vec![];
        for index in 0..2 {
            let op = SplitPart {
                axis: 1,
                sizes: None,
                parts: 2,
                index,
            };
            parts.push(node(b, op, &[x, &sizes], &format!("p{index}")));
        }
        let e = node(b, Unary::new(UnaryKind::Exp), &[&parts[1]], "e");
        node(b, Concat { axis: 1 }, &[&e, &parts[0]], "y")
    });
    check("split_equal_uneven", [5, 2, 3], |b, _, x| {
        let mut parts = vec![];
        for index in 0..2 {
            let op = SplitPart {
                axis: -1,
                sizes: None,
                parts: 2,
                index,
            };
            parts.push(node(b, op, &[x], &format!("p{index}")));
        }
        let e = node(b, Unary::new(UnaryKind::Tanh), &[&parts[0]], "e");
        node(b, Concat { axis: -1 }, &[&parts[1], &e], "y")
    });
    check("tile", [2, 3, 2], |b, _, x| {
        let r = ints(b, "r", &[1, 2, 1, 3]);
        let t = node(b, Tile, &[x, &r], "t");
        node(b, Unary::new(UnaryKind::Tanh), &[&t], "y")
    });
    for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
        check(
            &format!("cumsum_{exclusive}_{reverse}"),
            [2, 3, 4],
            |b, _, x| {
                let a = konst(b, "a", Tensor::from_i64(vec![], vec![-1]).unwrap());
                let c = node(b, CumSum { exclusive, reverse }, &[x, &a], "c");
                node(b, Unary::new(UnaryKind::Tanh), &[&c], "y")
            },
        );
    }
    for upper in [false, true] {
        check(&format!("trilu_{upper}"), [2, 4, 4], |b, _, x| {
            let k = konst(b, "k", Tensor::from_i64(vec![], vec![1]).unwrap());
            node(b, Trilu { upper }, &[x, &k], "y")
        });
    }
}

#[test]
fn scatter_gather_nd_topk() {
    check("scatter_nd_dynamic_updates", [3, 4, 2], |b, _, x| {
        // On x transposed to [C, N, H, W]: rows 2 and 0 (gathered) are written, tanh-ed, over
        // rows 1 and 0, then added once more.
        let perm = Transpose {
            perm: Some(vec![1, 0, 2, 3]),
        };
        let t = node(b, perm.clone(), &[x], "xt");
        let from = konst(b, "from", Tensor::from_i64(vec![2, 1], vec![2, 0]).unwrap());
        let rows = node(b, GatherNd { batch_dims: 0 }, &[&t, &from], "rows");
        let upd = node(b, Unary::new(UnaryKind::Tanh), &[&rows], "upd");
        let to = konst(b, "to", Tensor::from_i64(vec![2, 1], vec![1, 0]).unwrap());
        let s = node(b, ScatterNd { add: false }, &[&t, &to, &upd], "s");
        let s2 = node(b, ScatterNd { add: true }, &[&s, &to, &rows], "s2");
        node(b, perm, &[&s2], "y")
    });
    check("gather_nd_batch_dims", [3, 4, 2], |b, _, x| {
        // [N, C, H, W] → [C, H, N, W]; per channel (the batch axis), pick rows of H.
        let t = node(
            b,
            Transpose {
                perm: Some(vec![1, 2, 0, 3]),
            },
            &[x],
            "xt",
        );
        let idx = konst(
            b,
            "i",
            Tensor::from_i64(vec![3, 2, 1], vec![0, 3, 2, 2, 1, 0]).unwrap(),
        );
        let g = node(b, GatherNd { batch_dims: 1 }, &[&t, &idx], "g");
        // [C, 2, N, W] → [N, C, 2, W]: the batch first again.
        node(
            b,
            Transpose {
                perm: Some(vec![2, 0, 1, 3]),
            },
            &[&g],
            "y",
        )
    });
    for largest in [true, false] {
        check(&format!("topk_{largest}"), [2, 3, 5], |b, _, x| {
            let k = konst(b, "k", Tensor::from_i64(vec![1], vec![3]).unwrap());
            let op = TopK {
                axis: -1,
                largest,
                indices: false,
            };
            node(b, op, &[x, &k], "y")
        });
    }
}

#[test]
fn einsum_patterns() {
    for (eq, other) in [
        ("nchw,cd->ndhw", vec![3, 2]),
        ("nchw,hk->nckw", vec![4, 3]),
        ("...hw,wk->...hk", vec![5, 2]),
        ("bchw,c", vec![3]),
    ] {
        check(eq, [3, 4, 5], |b, r, x| {
            let n: usize = other.iter().product();
            let w = konst(b, "w", Tensor::from_f32(other.clone(), r.vec(n)).unwrap());
            let op = Einsum {
                equation: eq.to_string(),
            };
            node(b, op, &[x, &w], "y")
        });
    }
    check("einsum_two_dynamic", [2, 3, 4], |b, _, x| {
        let e = node(b, Unary::new(UnaryKind::Tanh), &[x], "t");
        let op = Einsum {
            equation: "nchw,nchv->nwv".to_string(),
        };
        node(b, op, &[x, &e], "y")
    });
}

#[test]
fn resize_modes() {
    let cases = [
        (
            "nearest_up2",
            false,
            CoordMode::Asymmetric,
            NearestMode::Floor,
            None,
            Some([1.0, 1.0, 2.0, 2.0]),
        ),
        (
            "nearest_half_pixel_sizes",
            false,
            CoordMode::HalfPixel,
            NearestMode::RoundPreferFloor,
            Some([7, 3]),
            None,
        ),
        (
            "linear_half_pixel_up",
            true,
            CoordMode::HalfPixel,
            NearestMode::Floor,
            None,
            Some([1.0, 1.0, 1.5, 2.5]),
        ),
        (
            "linear_align_corners_down",
            true,
            CoordMode::AlignCorners,
            NearestMode::Floor,
            Some([3, 2]),
            None,
        ),
        (
            "linear_pytorch_half_pixel",
            true,
            CoordMode::PytorchHalfPixel,
            NearestMode::Floor,
            Some([5, 1]),
            None,
        ),
    ];
    for (name, linear, coord, nearest, sizes, scales) in cases {
        check(name, [2, 4, 5], |b, _, x| {
            let roi = konst(b, "roi", Tensor::from_f32(vec![0], vec![]).unwrap());
            let sc = konst(
                b,
                "sc",
                match scales {
                    Some(s) => Tensor::from_f32(vec![4], s.to_vec()).unwrap(),
                    None => Tensor::from_f32(vec![0], vec![]).unwrap(),
                },
            );
            let mut ins = vec![x.to_string(), roi, sc];
            if let Some(hw) = sizes {
                // sizes = Shape(x)[0..2] ++ [h, w], as exporters compute them.
                let shape = Shape {
                    start: 0,
                    end: Some(2),
                };
                let nc = node(b, shape, &[x], "nc");
                let hw = ints(b, "hw", &hw);
                ins.push(node(b, Concat { axis: 0 }, &[&nc, &hw], "sz"));
            }
            let refs: Vec<&str> = ins.iter().map(|s| s.as_str()).collect();
            let op = Resize {
                linear,
                coord,
                nearest,
                scales_input: 2,
            };
            let y = node(b, op, &refs, "r");
            node(b, Unary::new(UnaryKind::Tanh), &[&y], "y")
        });
    }
}

/// The attention chain of a TorchScript ViT export on `x [N, heads, tokens, dim]`: Q, K, V by
/// constant projections, `Mul(Q, √α) · Mul(Kᵀ, √α) → Softmax(axis) → · V`, then a Tanh.
/// With `axis = -1` the load-time pass fuses it into one Attention node; with the equivalent
/// positive axis it does not (the pass matches the exporters' -1 only), which gives the
/// unfused reference.
fn attention_chain(b: &mut GraphBuilder, r: &mut Lcg, x: &str, axis: i64) -> String {
    let proj = |b: &mut GraphBuilder, r: &mut Lcg, name: &str| {
        let w = konst(
            b,
            &format!("w{name}"),
            Tensor::from_f32(vec![4, 4], r.vec(16)).unwrap(),
        );
        node(b, MatMul, &[x, &w], name)
    };
    let (q, k, v) = (proj(b, r, "q"), proj(b, r, "k"), proj(b, r, "v"));
    let perm = Some(vec![0, 1, 3, 2]);
    let kt = node(b, Transpose { perm }, &[&k], "kt");
    let s = konst(b, "sqrt_scale", Tensor::scalar(0.5f32.sqrt() * 1.5));
    let qs = node(b, Binary::new(BinaryKind::Mul), &[&q, &s], "qs");
    let ks = node(b, Binary::new(BinaryKind::Mul), &[&s, &kt], "ks");
    let scores = node(b, MatMul, &[&qs, &ks], "scores");
    let sm = Softmax {
        axis,
        coerce_2d: false,
        log: false,
    };
    let p = node(b, sm, &[&scores], "p");
    let o = node(b, MatMul, &[&p, &v], "o");
    node(b, Unary::new(UnaryKind::Tanh), &[&o], "y")
}

#[test]
fn fused_attention() {
    check("attention", [2, 5, 4], |b, r, x| {
        attention_chain(b, r, x, -1)
    });
    // Kᵀ a constant of lower rank: the batch dimensions broadcast, the unfused path runs.
    check("attention_broadcast", [2, 5, 4], |b, r, x| {
        let kt = konst(b, "kt", Tensor::from_f32(vec![4, 6], r.vec(24)).unwrap());
        let v = konst(b, "v", Tensor::from_f32(vec![2, 6, 3], r.vec(36)).unwrap());
        let sm = Softmax {
            axis: -1,
            coerce_2d: false,
            log: false,
        };
        let scores = node(b, MatMul, &[x, &kt], "scores");
        let p = node(b, sm, &[&scores], "p");
        let o = node(b, MatMul, &[&p, &v], "o");
        node(b, Unary::new(UnaryKind::Tanh), &[&o], "y")
    });
}

#[test]
fn fusing_attention_does_not_change_results() {
    let prepared = |axis: i64| {
        let mut m = shifted_model("attention", 7, &|b, r, x| attention_chain(b, r, x, axis));
        m.prepare([2, 5, 4], None).unwrap();
        m
    };
    let (fused, plain) = (prepared(-1), prepared(3));
    let count = |m: &faultline_engine::Model, op: &str| {
        m.graph()
            .nodes()
            .iter()
            .filter(|n| n.op.name() == op)
            .count()
    };
    assert_eq!(count(&fused, "Attention"), 1);
    assert_eq!(count(&fused, "Softmax") + count(&fused, "Mul"), 0);
    assert_eq!(count(&plain, "Attention"), 0);
    let x = Lcg(3).vec(3 * 40);
    let w = Lcg(4).vec(3 * 40);
    let (a, b) = (
        fused.loss_grad(&x, &Loss::Weights(&w)).unwrap(),
        plain.loss_grad(&x, &Loss::Weights(&w)).unwrap(),
    );
    let close = |p: &[f32], q: &[f32], what: &str| {
        let scale = q.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (u, v) in p.iter().zip(q) {
            assert!((u - v).abs() <= 1e-5 * scale, "{what}: {u} vs {v}");
        }
    };
    close(&a.logits, &b.logits, "logits");
    close(&a.grad, &b.grad, "input gradient");
}
