//! `faultline list --json`: one JSON object describing what faultline supports, consistent with
//! what the other subcommands accept.

mod util;

use util::*;

#[test]
fn list_json_describes_every_attack_the_attack_command_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(tmp.path(), &["list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.trim().lines().count(), 1, "one JSON object: {out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "attacks",
        "presets",
        "corruptions",
        "operators",
        "opsets",
        "formats",
    ] {
        assert!(v.get(key).is_some(), "list --json lacks {key}: {out}");
    }
    let help = stdout(&run(tmp.path(), &["attack", "--help"]));
    let attacks = v["attacks"].as_array().unwrap();
    assert!(attacks.len() >= 11, "{}", attacks.len());
    let mut names: Vec<&str> = Vec::new();
    for a in attacks {
        let name = a["name"].as_str().unwrap();
        names.push(name);
        assert!(help.contains(name), "attack --help lacks {name}");
        assert!(
            a["parameters"].is_object() && !a["parameters"].as_object().unwrap().is_empty(),
            "{name}: parameters is not an object: {a}"
        );
        assert!(
            ["bounded", "min-norm"].contains(&a["kind"].as_str().unwrap()),
            "{a}"
        );
        let norms: Vec<&str> = a["norms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(!norms.is_empty(), "{a}");
        assert!(
            norms.iter().all(|n| ["linf", "l2", "l1"].contains(n)),
            "{a}"
        );
        assert!(
            norms.contains(&a["default_norm"].as_str().unwrap()),
            "{name}: default norm not among its norms: {a}"
        );
        // The settings an attack takes are flags of `attack`.
        for s in a["settings"].as_array().unwrap() {
            let flag = format!("--{}", s.as_str().unwrap());
            assert!(
                help.contains(&flag),
                "{name} takes {flag}, which attack lacks"
            );
        }
        assert!(!a["about"].as_str().unwrap().is_empty(), "{a}");
    }
    for want in [
        "fgsm", "pgd", "mifgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "deepfool",
        "fab", "cw",
    ] {
        assert!(names.contains(&want), "list --json lacks {want}: {names:?}");
    }
    // Presets: their stages are registered attacks; their names are values of --preset.
    let presets = v["presets"].as_array().unwrap();
    assert!(presets.iter().any(|p| p["name"] == "standard"), "{out}");
    for p in presets {
        assert!(help.contains(p["name"].as_str().unwrap()), "{p}");
        for st in p["stages"].as_array().unwrap() {
            assert!(names.contains(&st.as_str().unwrap()), "{p}");
        }
    }
    let corruptions: Vec<&str> = v["corruptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(corruptions.contains(&"fog") && corruptions.contains(&"gaussian_noise"));
    assert!(v["operators"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == "Conv"));
    let opsets = v["opsets"].as_array().unwrap();
    assert_eq!(opsets.len(), 2);
    assert!(opsets[0].as_u64().unwrap() <= opsets[1].as_u64().unwrap());
    let formats: Vec<&str> = v["formats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for f in ["cifar10", "cifar100", "idx", "folder", "npy"] {
        assert!(formats.contains(&f), "{formats:?}");
    }
}
