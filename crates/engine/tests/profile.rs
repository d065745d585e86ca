//! `engine::profile`: every node of a pass is timed once per call, in its direction, and
//! nothing is counted outside `start`..`stop`. Its own test binary, because the table is
//! process-wide and other tests' passes would count in it.

mod common;
use common::*;
use faultline_engine::ops::*;
use faultline_engine::{profile, GraphBuilder, Loss, Model, Tensor};

#[test]
fn each_node_is_counted_once_per_pass_in_its_direction() {
    let mut r = Lcg(7);
    let mut b = GraphBuilder::new();
    b.input("x");
    let w = konst(
        &mut b,
        "w",
        Tensor::from_f32(vec![3, 2, 3, 3], r.vec(54)).unwrap(),
    );
    let same = win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]);
    b.node(
        "conv",
        Box::new(Conv::new(same, 1)),
        &[Some("x"), Some(&w)],
        "y",
    );
    b.node("gap", Box::new(GlobalAveragePool), &[Some("y")], "p");
    b.node("flat", Box::new(Flatten { axis: 1 }), &[Some("p")], "z");
    let mut model = Model::new(b.build("z").unwrap(), vec![None, Some(2), Some(4), Some(4)]);
    model.prepare([2, 4, 4], None).unwrap();
    let x = r.vec(2 * 2 * 4 * 4);
    let labels = [0usize, 2];

    model.logits(&x).unwrap();
    profile::start();
    model.logits(&x).unwrap();
    model.logits(&x).unwrap();
    model
        .loss_grad(&x, &Loss::CrossEntropy { labels: &labels })
        .unwrap();
    let table = profile::stop();
    model.logits(&x).unwrap();

    let forward: Vec<_> = table.iter().filter(|e| !e.backward).collect();
    let backward: Vec<_> = table.iter().filter(|e| e.backward).collect();
    let names = |rows: &[&profile::NodeTime]| {
        let mut n: Vec<String> = rows.iter().map(|e| e.node.clone()).collect();
        n.sort();
        n
    };
    // Three forward passes (two logits, one inside loss_grad) and one backward pass, over
    // the same nodes, whatever the load-time passes renamed or fused.
    assert!(!forward.is_empty());
    assert!(forward.iter().all(|e| e.calls == 3), "{table:?}");
    assert!(backward.iter().all(|e| e.calls == 1), "{table:?}");
    assert_eq!(names(&forward), names(&backward));
    assert!(forward.iter().any(|e| e.op == "Conv"), "{table:?}");
    // Stopped: the pass after `stop` is not counted, and a new start begins empty.
    profile::start();
    assert!(profile::stop().is_empty());
}
