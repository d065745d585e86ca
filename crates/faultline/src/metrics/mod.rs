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

/// The keys of the paper's own list as reconstructed in methods.md §3.3 (b): its "likely" rows
/// with their "possibly" entries (KMNC, NBC, SNAC, TKNC, TKNP; ALDp, ASS, PSD; CA, AAW, AAB,
/// ACAC, ACTC, NTE; mCE, relative mCE, mFR; CCV, COS, CAV, CRR, CSR, RGB, RIC; EBD, EBD-2,
/// ε-ENI; NS, NU). The paper's table itself could not be read, so this list is [U]; `all` adds
/// the platform's other metrics (nc, asr, wbd).
pub const PAPER: &[&str] = &[
    "ca",
    "aaw",
    "aab",
    "acac",
    "actc",
    "nte",
    "ald_l0",
    "ald_l2",
    "ald_linf",
    "ass",
    "psd",
    "kmnc",
    "nbc",
    "snac",
    "tknc",
    "tknp",
    "rgb",
    "ric",
    "mce",
    "relative_mce",
    "mfr",
    "ebd",
    "ebd2",
    "eni",
    "neuron_sensitivity",
    "neuron_uncertainty",
    "cav",
    "crr",
    "csr",
    "ccv",
    "cos",
];

/// The metrics a `metrics` run computes (`--suite`): `all` (every key of [`SUITE`]), `paper`
/// ([`PAPER`]), or a comma-separated list of keys, module names of [`SUITE`] (`behaviour`,
/// `coverage`, `boundary`, …) and `paper`. Work whose every key is left out is skipped (the
/// black-box attack, coverage, corruptions, perturbation sequences, boundary scans, the
/// defended model), and the keys left out are null with the reason in `notes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    keys: std::collections::BTreeSet<&'static str>,
    name: String,
}

impl Default for Suite {
    fn default() -> Self {
        Suite::parse("all").expect("`all` is a suite")
    }
}

impl Suite {
    /// Parses `all`, `paper` or a list of keys, modules and `paper`.
    pub fn parse(s: &str) -> Result<Suite, String> {
        let mut keys = std::collections::BTreeSet::new();
        for item in s.split(',').map(str::trim) {
            let found: Vec<&'static str> = match item {
                "all" => SUITE.iter().map(|m| m.key).collect(),
                "paper" => PAPER.to_vec(),
                _ => SUITE
                    .iter()
                    .filter(|m| m.key == item || m.module == item)
                    .map(|m| m.key)
                    .collect(),
            };
            if found.is_empty() {
                let mut modules: Vec<&str> = Vec::new();
                for m in SUITE {
                    if !modules.contains(&m.module) {
                        modules.push(m.module);
                    }
                }
                return Err(format!(
                    "unknown metric or module `{item}` (give all, paper, a module: {}, or a key of \
                     run.json's metrics such as aaw)",
                    modules.join(", ")
                ));
            }
            keys.extend(found);
        }
        Ok(Suite {
            keys,
            name: s.trim().to_string(),
        })
    }
    /// Whether `key` is computed.
    pub fn has(&self, key: &str) -> bool {
        self.keys.contains(key)
    }
    /// Whether any of `keys` is computed.
    pub fn any(&self, keys: &[&str]) -> bool {
        keys.iter().any(|k| self.has(k))
    }
    /// Whether any key of `module` (a module name of [`SUITE`]) is computed.
    pub fn module(&self, module: &str) -> bool {
        SUITE.iter().any(|m| m.module == module && self.has(m.key))
    }
    /// As given on the command line.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Serialize for Suite {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.keys.serialize(s)
    }
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
