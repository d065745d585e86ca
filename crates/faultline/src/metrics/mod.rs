//! Metrics. Counters over per-sample predictions (accuracy, per-class accuracy, the confusion
//! matrix) here; the comprehensive suite of Guo et al. (*A Comprehensive Evaluation Framework for
//! Deep Model Robustness*, Pattern Recognition 2023, platform AISafety; methods.md §3.4) in one
//! module per family, each metric's definition in its module's documentation and every key of
//! `faultline metrics` listed in [`SUITE`] with the module that computes it:
//!
//! | module | keys |
//! |---|---|
//! | [`behaviour`] | ca, aaw, aab, asr, acac, actc, nte, rgb, ric |
//! | [`imperceptibility`] ([`ssim`]) | ald_l0, ald_l2, ald_linf, ass, psd |
//! | [`coverage`] | nc, kmnc, nbc, snac, tknc, tknp |
//! | [`crate::corruption`] | mce, relative_mce |
//! | [`flip`] | mfr |
//! | [`boundary`] | ebd, ebd2, wbd, eni |
//! | [`neuron`] | neuron_sensitivity, neuron_uncertainty |
//! | [`defended`] | cav, crr, csr, ccv, cos (with a defended model) |

pub mod behaviour;
pub mod boundary;
pub mod coverage;
pub mod defended;
pub mod flip;
pub mod imperceptibility;
pub mod neuron;
pub mod ssim;

/// Which way a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Higher is better (for the model under evaluation).
    Higher,
    /// Lower is better.
    Lower,
    /// No direction (coverage of the test data, counts).
    Neither,
}

/// One key of the suite.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    /// The key in run.json's `metrics`.
    pub key: &'static str,
    /// The module computing it.
    pub module: &'static str,
    /// Which way is better for the model.
    pub better: Better,
    /// One-line definition.
    pub definition: &'static str,
}

const fn m(
    key: &'static str,
    module: &'static str,
    better: Better,
    definition: &'static str,
) -> MetricInfo {
    MetricInfo {
        key,
        module,
        better,
        definition,
    }
}

/// Every key of `faultline metrics`, in report order (the last five need `--defended`).
pub const SUITE: &[MetricInfo] = &[
    m("ca", "behaviour", Better::Higher, "clean accuracy"),
    m(
        "aaw",
        "behaviour",
        Better::Higher,
        "accuracy under the white-box attack",
    ),
    m(
        "aab",
        "behaviour",
        Better::Higher,
        "accuracy under the black-box attack",
    ),
    m(
        "asr",
        "behaviour",
        Better::Lower,
        "white-box attack success rate |S|/N",
    ),
    m(
        "acac",
        "behaviour",
        Better::Lower,
        "mean top probability of successful adversarial examples",
    ),
    m(
        "actc",
        "behaviour",
        Better::Higher,
        "mean true-class probability of successful adversarial examples",
    ),
    m(
        "nte",
        "behaviour",
        Better::Lower,
        "mean top-1 minus top-2 probability of successful adversarial examples",
    ),
    m(
        "ald_l0",
        "imperceptibility",
        Better::Higher,
        "mean fraction of changed values (8-bit levels) over S",
    ),
    m(
        "ald_l2",
        "imperceptibility",
        Better::Higher,
        "mean relative L2 perturbation over S",
    ),
    m(
        "ald_linf",
        "imperceptibility",
        Better::Higher,
        "mean L-inf perturbation over S",
    ),
    m(
        "ass",
        "imperceptibility",
        Better::Lower,
        "mean SSIM(x^a, x) over S",
    ),
    m(
        "psd",
        "imperceptibility",
        Better::Higher,
        "mean perturbation sensitivity distance over S",
    ),
    m(
        "nc",
        "coverage",
        Better::Neither,
        "neuron coverage of the adversarial data (DeepXplore, threshold 0.2)",
    ),
    m(
        "kmnc",
        "coverage",
        Better::Neither,
        "k-multisection neuron coverage (k = 20)",
    ),
    m(
        "nbc",
        "coverage",
        Better::Neither,
        "neuron boundary coverage (upper + lower corners)/(2N)",
    ),
    m(
        "snac",
        "coverage",
        Better::Neither,
        "strong neuron activation coverage (upper corners)/N",
    ),
    m("tknc", "coverage", Better::Neither, "top-3 neuron coverage"),
    m(
        "tknp",
        "coverage",
        Better::Neither,
        "distinct top-2 neuron patterns",
    ),
    m(
        "rgb",
        "behaviour",
        Better::Lower,
        "share of successful examples still successful after Gaussian blur",
    ),
    m(
        "ric",
        "behaviour",
        Better::Lower,
        "share of successful examples still successful after JPEG q55",
    ),
    m(
        "mce",
        "corruption",
        Better::Lower,
        "mean corruption error relative to the baseline model",
    ),
    m(
        "relative_mce",
        "corruption",
        Better::Lower,
        "relative mean corruption error against the baseline",
    ),
    m(
        "mfr",
        "flip",
        Better::Lower,
        "mean flip rate on perturbation sequences relative to the baseline",
    ),
    m(
        "ebd",
        "boundary",
        Better::Higher,
        "empirical boundary distance (min over random directions)",
    ),
    m(
        "ebd2",
        "boundary",
        Better::Higher,
        "sign-gradient steps of 0.0005 to change the prediction",
    ),
    m(
        "wbd",
        "boundary",
        Better::Higher,
        "worst-case boundary distance (max over random directions)",
    ),
    m(
        "eni",
        "boundary",
        Better::Lower,
        "empirical noise insensitivity |dCE| / L-inf",
    ),
    m(
        "neuron_sensitivity",
        "neuron",
        Better::Lower,
        "mean change of neurons between clean and adversarial input",
    ),
    m(
        "neuron_uncertainty",
        "neuron",
        Better::Lower,
        "mean variance of neurons over adversarial inputs",
    ),
    m(
        "cav",
        "defended",
        Better::Higher,
        "Acc(defended) - Acc(model)",
    ),
    m(
        "crr",
        "defended",
        Better::Higher,
        "share the defended model rectifies",
    ),
    m(
        "csr",
        "defended",
        Better::Lower,
        "share the defended model sacrifices",
    ),
    m(
        "ccv",
        "defended",
        Better::Lower,
        "mean |P_y - P^D_y| over samples both get right",
    ),
    m(
        "cos",
        "defended",
        Better::Lower,
        "mean Jensen-Shannon divergence of P and P^D over samples both get right",
    ),
];

/// The description of `key`.
pub fn info(key: &str) -> Option<&'static MetricInfo> {
    SUITE.iter().find(|m| m.key == key)
}

use serde::Serialize;

/// Accuracy of one class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassAccuracy {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub name: String,
    /// Samples of this class.
    pub n: u64,
    /// Correctly classified samples of this class.
    pub correct: u64,
    /// correct / n, or null when the class has no samples.
    pub accuracy: Option<f64>,
}

/// The confusion matrix of `(label, prediction)` pairs over `k` classes.
pub fn confusion(pairs: impl IntoIterator<Item = (usize, usize)>, k: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; k]; k];
    for (y, p) in pairs {
        if y < k && p < k {
            m[y][p] += 1;
        }
    }
    m
}

/// Per-class accuracy from a confusion matrix.
pub fn per_class(conf: &[Vec<u64>], names: &[String]) -> Vec<ClassAccuracy> {
    conf.iter()
        .enumerate()
        .map(|(c, row)| {
            let n: u64 = row.iter().sum();
            ClassAccuracy {
                class: c,
                name: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                n,
                correct: row[c],
                accuracy: (n > 0).then(|| row[c] as f64 / n as f64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbalanced_classes_counted_by_hand() {
        // Class 0: 3 samples (2 right), class 1: 1 sample (wrong, predicted 2), class 2: none.
        let conf = confusion([(0, 0), (0, 0), (0, 1), (1, 2)], 3);
        assert_eq!(conf, vec![vec![2, 1, 0], vec![0, 0, 1], vec![0, 0, 0]]);
        let pc = per_class(&conf, &["a".into(), "b".into(), "c".into()]);
        assert_eq!(pc[0].accuracy, Some(2.0 / 3.0));
        assert_eq!(pc[1].accuracy, Some(0.0));
        assert_eq!(pc[2].accuracy, None);
        assert_eq!(pc[2].name, "c");
    }
}
