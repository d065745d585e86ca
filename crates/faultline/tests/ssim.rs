//! SSIM against scikit-image: `fixtures/ssim.json` holds image pairs and the values
//! `skimage.metrics.structural_similarity` gives them (generator: `fixtures/ssim_fixture.py`).

use faultline::metrics::ssim::ssim;
use serde_json::Value;

#[test]
fn matches_scikit_image() {
    let v: Value = serde_json::from_str(include_str!("fixtures/ssim.json")).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let s: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let img = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let got = ssim(&img("a"), &img("b"), s[0], s[1], s[2], 255.0).unwrap();
        let want = case["ssim"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-6,
            "{s:?}: {got} vs scikit-image {want}"
        );
    }
}
