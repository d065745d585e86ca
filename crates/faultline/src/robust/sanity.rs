//! AutoAttack-style sanity checks for gradient masking, read from a bounded attack run's
//! records (see [`crate::robust`] for what each check costs and how it is run).

use faultline_attacks::{Attack, Norm};
use serde::Serialize;

use crate::eps::eps_label;
use crate::record::{AttackOutcome, SampleRecord};

/// The sanity checks of a run (see the module documentation), from its records.
#[derive(Debug, Clone, Serialize)]
pub struct SanityReport {
    /// Robust accuracy monotone in ε.
    pub monotone: MonotoneCheck,
    /// An unbounded attack breaks every sample.
    pub unbounded: UnboundedCheck,
    /// Non-zero, finite gradients at the clean images.
    pub gradients: GradientCheck,
    /// Ensembles ending with Square (gradient-free): per ε, the samples only Square broke
    /// (AutoAttack warns when Square lowers robust accuracy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub square: Vec<SquareCheck>,
    /// One line per problem found.
    pub warnings: Vec<String>,
}

/// Samples broken at a smaller ε that the attack did not break at a larger one.
#[derive(Debug, Clone, Serialize)]
pub struct MonotoneCheck {
    /// Each violation.
    pub violations: Vec<Violation>,
}

/// One violation of monotonicity.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// The sample.
    pub index: usize,
    /// The smaller ε at which it was broken.
    pub broken_at: f32,
    /// The larger ε at which the attack left it robust.
    pub robust_at: f32,
}

/// The unbounded attack on a few samples still robust at the largest ε.
#[derive(Debug, Clone, Serialize)]
pub struct UnboundedCheck {
    /// The attack.
    pub attack: String,
    /// Samples checked.
    pub checked: usize,
    /// Those it did not break.
    pub still_robust: Vec<usize>,
}

/// Gradients at the clean images of the clean-correct samples.
#[derive(Debug, Clone, Serialize)]
pub struct GradientCheck {
    /// Samples checked.
    pub checked: usize,
    /// Indices with a zero cross-entropy gradient.
    pub zero: Vec<usize>,
    /// Indices with a non-finite gradient.
    pub non_finite: Vec<usize>,
}

/// Samples only the gradient-free last stage broke at one ε.
#[derive(Debug, Clone, Serialize)]
pub struct SquareCheck {
    /// The radius.
    pub eps: f32,
    /// Samples broken by Square and by no earlier stage.
    pub broken: usize,
}

/// Builds the sanity report from the records of a bounded run made with
/// [`crate::robust::Options::sanity`] (`None` for minimum-norm attacks). Without the checks,
/// `carried_from` only says that a sample was not attacked again.
pub fn sanity_report(
    records: &[SampleRecord],
    attack: &Attack,
    eps: &[f32],
) -> Option<SanityReport> {
    if attack.is_min_norm() {
        return None;
    }
    let norm = attack.norm();
    // Every record of a bounded run carries an outcome; records without one match no check.
    let has =
        |r: &SampleRecord, f: &dyn Fn(&AttackOutcome) -> bool| r.attack.as_ref().is_some_and(f);
    let mut violations: Vec<Violation> = records
        .iter()
        .filter_map(|r| {
            Some(Violation {
                index: r.index,
                broken_at: r.attack.as_ref()?.carried_from?,
                robust_at: r.condition.eps()?,
            })
        })
        .collect();
    violations.sort_by(|a, b| {
        a.index
            .cmp(&b.index)
            .then(a.robust_at.total_cmp(&b.robust_at))
    });
    let checked = records
        .iter()
        .filter(|r| has(r, &|a| a.unbounded_success.is_some()))
        .count();
    let still_robust: Vec<usize> = records
        .iter()
        .filter(|r| has(r, &|a| a.unbounded_success == Some(false)))
        .map(|r| r.index)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let first: Vec<&SampleRecord> = records.iter().filter(|r| seen.insert(r.index)).collect();
    let ok: Vec<&&SampleRecord> = first.iter().filter(|r| r.clean_correct()).collect();
    let with = |what: &str| -> Vec<usize> {
        ok.iter()
            .filter(|r| has(r, &|a| a.gradient_issue.as_deref() == Some(what)))
            .map(|r| r.index)
            .collect()
    };
    let gradients = GradientCheck {
        checked: ok.len(),
        zero: with("zero"),
        non_finite: with("non-finite"),
    };
    let mut sorted: Vec<f32> = eps.to_vec();
    sorted.sort_by(f32::total_cmp);
    let stages = attack.stages();
    let square: Vec<SquareCheck> = match stages.last() {
        Some(&"square") if stages.len() > 1 => sorted
            .iter()
            .map(|&e| SquareCheck {
                eps: e,
                broken: records
                    .iter()
                    .filter(|r| {
                        r.condition.eps() == Some(e)
                            && has(r, &|a| {
                                a.success
                                    && a.stage.as_deref() == Some("square")
                                    && a.carried_from.is_none()
                            })
                    })
                    .count(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let big = match norm {
        Norm::Linf => "1",
        Norm::L2 => "√d",
        Norm::L1 => "d",
    };
    let mut warnings = Vec::new();
    if let Some(v) = violations.first() {
        warnings.push(format!(
            "{} sample(s) broken at a smaller ε were not broken at a larger one (e.g. sample {}: \
             broken at ε = {}, robust at ε = {}): the attack is unreliable, possibly because of \
             gradient masking",
            violations.len(),
            v.index,
            eps_label(v.broken_at),
            eps_label(v.robust_at)
        ));
    }
    if let Some(&i) = still_robust.first() {
        warnings.push(format!(
            "{} of {checked} sample(s) checked stay robust under APGD-CE at ε = {big} ({}), a \
             ball holding the whole image box (e.g. sample {i}): a sign of gradient masking or \
             of a broken attack",
            still_robust.len(),
            norm.name(),
        ));
    }
    for (list, what) in [
        (&gradients.zero, "zero"),
        (&gradients.non_finite, "non-finite"),
    ] {
        if let Some(&i) = list.first() {
            warnings.push(format!(
                "{} clean-correct sample(s) have a {what} cross-entropy gradient (e.g. sample \
                 {i}): gradient-based attacks may be unreliable on them",
                list.len(),
            ));
        }
    }
    for q in square.iter().filter(|q| q.broken > 0) {
        warnings.push(format!(
            "Square broke {} sample(s) the gradient-based stages left robust at ε = {} (robust \
             accuracy −{:.2} %): the gradient-based evaluation may be unreliable",
            q.broken,
            eps_label(q.eps),
            100.0 * q.broken as f64 / first.len().max(1) as f64
        ));
    }
    Some(SanityReport {
        monotone: MonotoneCheck { violations },
        unbounded: UnboundedCheck {
            attack: format!("apgd-ce, 100 iterations, ε = {big} ({})", norm.name()),
            checked,
            still_robust,
        },
        gradients,
        square,
        warnings,
    })
}
