//! `faultline classwise`: the whole report on a small set, reuse of earlier runs, and the CFPS
//! identity Σ_c CFPS_c = 1.

mod util;

use util::*;

#[test]
fn classwise_report_with_attack_corruption_targets_and_latent() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist/t10k-images-idx3-ubyte.gz");
    let args = [
        "classwise",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "60",
        "--eps",
        "0.1,0.2",
        "--corruptions",
        "fog",
        "--severities",
        "2",
        "--targeted",
        "--out",
        "cw",
    ];
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&tmp.path().join("cw/run.json"));
    let cfps = r["cfps"].as_object().unwrap();
    for cond in ["pgd 0.1", "pgd 0.2", "fog s2", "fog"] {
        let v = cfps
            .get(cond)
            .unwrap_or_else(|| panic!("no CFPS for {cond}: {:?}", cfps.keys()));
        let vals: Vec<f64> = v
            .as_object()
            .unwrap()
            .values()
            .filter_map(|x| x.as_f64())
            .collect();
        if !vals.is_empty() {
            assert!(
                (vals.iter().sum::<f64>() - 1.0).abs() < 1e-9,
                "{cond}: Σ CFPS = {}",
                vals.iter().sum::<f64>()
            );
        }
    }
    assert_eq!(r["targeted"].as_array().unwrap().len(), 10);
    // Counters against the target: "accuracy" toward class t is the rate of reaching t.
    let tc = &r["targeted_counters"][3];
    assert!(
        (tc["accuracy"].as_f64().unwrap() - r["targeted"][3]["success_rate"].as_f64().unwrap())
            .abs()
            < 1e-12
    );
    assert_eq!(
        r["latent"]["centroid_distance"].as_array().unwrap().len(),
        10
    );
    assert_eq!(r["ranking"].as_array().unwrap().len(), 10);
    for f in [
        "cfps.svg",
        "class_accuracy.svg",
        "confusion_clean.svg",
        "latent_pca.svg",
        "targeted.svg",
        "centroid_distance.svg",
    ] {
        let svg = std::fs::read_to_string(tmp.path().join("cw").join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}");
    }
    assert!(stdout(&o).contains("most to least vulnerable"));
    // A second run reuses every sub-run: the records are unchanged.
    let before = std::fs::read_to_string(tmp.path().join("cw/attack/samples.jsonl")).unwrap();
    let o = run(tmp.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("already"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("cw/attack/samples.jsonl")).unwrap(),
        before
    );
}
