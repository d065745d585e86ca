//! `faultline audit` end to end on the MNIST LeNet-5 (20 samples, quick preset): every section
//! written as its own run directory, the self-contained page, a re-run that reads every
//! section back without recomputing, `faultline report` rebuilding the same page, `--dry-run`.

mod util;

use util::{assert_clear_error, json, run, shared, stderr, stdout};

const SECTIONS: &[&str] = &["eval", "attack", "classwise", "margins"];
/// Every section of the page, as the library lists them.
const PAGE_IDS: &[&str] = faultline::report::html::SECTION_IDS;

fn args<'a>(model: &'a str, data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "audit",
        "--model",
        model,
        "--data",
        data,
        "--limit",
        "20",
        "--batch-size",
        "20",
        "--threads",
        "2",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn audit_writes_every_section_resumes_and_report_rebuilds_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let model = shared("models/mnist/mnist-lenet5-clean.onnx");
    let data = shared("data/mnist");
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());

    // --dry-run: the estimate only, nothing written.
    let o = run(tmp.path(), &args(m, d, &["--dry-run", "-o", "a"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let est = stdout(&o);
    assert!(
        est.contains("warm-up at batch 20") && est.contains("estimate: at most"),
        "{est}"
    );
    for s in SECTIONS {
        assert!(est.contains(s), "{est}");
    }
    assert!(!tmp.path().join("a").exists());

    let o = run(tmp.path(), &args(m, d, &["-o", "a"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = tmp.path().join("a");
    let r = json(&dir.join("run.json"));
    assert_eq!(r["command"], "audit");
    assert_eq!(r["status"], "complete");
    assert_eq!(r["preset"], "quick");
    assert_eq!(r["samples"], 20);
    let names: Vec<&str> = r["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eval", "attack", "classwise", "margins", "gallery"]);
    let mut before = Vec::new();
    for s in SECTIONS {
        let sub = json(&dir.join(s).join("run.json"));
        assert_eq!(sub["status"], "complete", "{s}");
        assert_eq!(sub["command"], *s);
        let samples = std::fs::read(dir.join(s).join("samples.jsonl")).unwrap();
        before.push(samples);
    }
    // 19 corruptions × 5 severities + clean, per sample.
    let eval = json(&dir.join("eval/run.json"));
    assert_eq!(eval["corruptions"]["table"].as_array().unwrap().len(), 95);
    // MNIST's radius 0.3: the quick curve is 0.15, 0.3.
    let curve = &json(&dir.join("attack/run.json"))["results"]["curve"];
    assert_eq!(curve.as_array().unwrap().len(), 2);
    // The headline figures are the sections' own.
    let f = &r["findings"];
    assert_eq!(f["clean_accuracy"], eval["clean_accuracy"]);
    assert_eq!(
        f["robust"][1]["robust_accuracy"],
        curve[1]["robust_accuracy"]
    );

    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for id in PAGE_IDS {
        assert!(page.contains(&format!("<section id=\"{id}\">")), "{id}");
    }
    for bad in ["http:", "https:", "<script", "<link", "@import", "url("] {
        assert!(!page.contains(bad), "the page refers outside itself: {bad}");
    }
    assert!(page.contains("<svg") && page.contains("data:image/png;base64,"));
    let clean = format!("{:.1} %", 100.0 * eval["clean_accuracy"].as_f64().unwrap());
    assert!(
        page.contains(&clean),
        "clean accuracy {clean} not on the page"
    );
    assert!(page.contains("Recommendations"));

    // The same flags again: every section is read back, nothing recomputed.
    let o = run(tmp.path(), &args(m, d, &["-o", "a"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("read back"), "{}", stderr(&o));
    let r2 = json(&dir.join("run.json"));
    for s in r2["sections"].as_array().unwrap() {
        if s["name"] != "gallery" {
            assert_eq!(s["read_back"], true, "{s}");
        }
    }
    for (s, b) in SECTIONS.iter().zip(&before) {
        let after = std::fs::read(dir.join(s).join("samples.jsonl")).unwrap();
        assert!(after == *b, "{s}/samples.jsonl changed on the re-run");
    }
    let page2 = std::fs::read_to_string(dir.join("report.html")).unwrap();

    // `report` on the audit directory writes the same page.
    let o = run(tmp.path(), &["report", "a", "--out", "again.html"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = std::fs::read_to_string(tmp.path().join("again.html")).unwrap();
    assert!(again == page2, "report rebuilt a different page");

    // From single runs: the sections it has, the others marked absent.
    let o = run(
        tmp.path(),
        &["report", "a/margins", "a/eval", "--out", "part.html"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let part = std::fs::read_to_string(tmp.path().join("part.html")).unwrap();
    assert!(part.contains("No attack run among the runs reported on"));
    assert!(part.contains("accuracy % under each corruption"));

    // Other settings in the same directory are refused, naming what differs.
    let o = run(
        tmp.path(),
        &args(m, d, &["-o", "a", "--preset", "standard"]),
    );
    assert_clear_error(&o, &["a", "different run", "preset"]);
    // Not a run directory.
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let o = run(tmp.path(), &["report", "empty"]);
    assert_clear_error(&o, &["empty", "run.json"]);
}
