//! Reverse adversarial examples: a registered bounded attack run as loss *descent* toward a
//! label instead of ascent away from it.
//!
//! # Paper
//! Ye et al., *Brain-inspired Reverse Adversarial Examples*, arXiv 1905.12171 (2019); the
//! per-sample variant of methods.md §4.3 A:
//! `x^{t+1} = Π_{B_ε(x)∩[0,1]^D}(x^t − α·sign(∇_x L_CE(f(x^t), y)))`.
//!
//! # How
//! No attack is duplicated: the attack runs *targeted at the label* `y` (the true label, or the
//! model's own prediction at test time). A targeted attack ascends `−CE(f(x), t)` (PGD family,
//! APGD-CE, A3-CE; `margin` loss: `z_t − max_{j≠t} z_j`) or lowers Square's targeted CE, so with
//! `t = y` it descends the label's loss, and its success flag means "the label is predicted".
//! The PGD family runs with early stop off (its `early_stop` parameter): every sample takes all
//! its steps, so one already predicted as its label gains margin. APGD, A3 and Square stop a
//! sample once its label is predicted (their own rule). The returned image is kept only when
//! its cross-entropy of the label is not above the clean image's; otherwise the clean image is
//! returned (the start counts as an iterate, as APGD keeps its best point), so a reverse attack
//! never leaves a sample's loss higher than it found it.
//!
//! Refused ([`REVERSIBLE`] lists the others): attacks whose targeted objective degenerates
//! with target = label (`apgd-dlr`, `apgd-t`, `a3-t` use the DLR loss, `−(z_y − z_t)/… = 0`),
//! attacks that rank their own targets (`fab-t`), the DLR loss, and minimum-norm attacks.
//!
//! # Cost
//! That of the attack, plus one forward pass for the clean loss and one for the kept image.

use faultline_engine::Model;

use crate::attack::{argmax, AttackOutput, BatchRef, Goal, SampleResult};
use crate::loss::{loss_value, AttackLoss};
use crate::registry::{self, Attack, Method, Settings};
use crate::{Error, Result};

/// The registered attacks that can run in reverse (see the module doc for why the others
/// cannot).
pub const REVERSIBLE: &[&str] = &["fgsm", "pgd", "mifgsm", "apgd-ce", "a3-ce", "square"];

/// PGD's steps in reverse unless given (methods.md §4.3 A; α stays PGD's ε/4).
pub const PGD_STEPS: usize = 10;

/// Builds the registered attack `name` for a reverse run: refuses attacks and losses without a
/// descent toward a label, and turns the PGD family's early stop off.
pub fn build(name: &str, settings: &Settings) -> Result<Attack> {
    let entry = registry::entry(name)?;
    if !REVERSIBLE.contains(&name) {
        return Err(Error::Unsupported {
            attack: entry.name,
            what: format!(
                "reverse runs (its targeted objective does not descend toward a label; use one \
                 of {})",
                REVERSIBLE.join(", ")
            ),
        });
    }
    if settings.loss == Some(AttackLoss::Dlr) {
        return Err(Error::Unsupported {
            attack: entry.name,
            what: "the dlr loss in reverse (its targeted form is 0 at target = label; use ce or \
                   margin)"
                .into(),
        });
    }
    // methods.md §4.3 A: 10 steps of ε/4 (2/255 at 8/255) for PGD [U, the project's choice].
    let steps = settings.steps.or((name == "pgd").then_some(PGD_STEPS));
    // The PGD family's early stop goes off through the attack's own parameter (the `--param`
    // mechanism); the attacks without it keep their rule.
    let mut params = settings.params.clone();
    if entry.defaults().get("early_stop").is_some() {
        params.push(("early_stop".into(), false.into()));
    }
    entry.build(&Settings {
        steps,
        params,
        ..settings.clone()
    })
}

/// One sample of a reverse run.
#[derive(Debug, Clone)]
pub struct Reversed {
    /// The attack's result on the returned image (success: the label is predicted; margin of the
    /// label).
    pub result: SampleResult,
    /// Logits of the image before the attack.
    pub logits_before: Vec<f32>,
    /// Logits of the returned image.
    pub logits_after: Vec<f32>,
    /// Cross-entropy of the label before the attack.
    pub loss_before: f32,
    /// Cross-entropy of the label on the returned image (at most `loss_before`).
    pub loss_after: f32,
    /// The attack's image had a higher loss than the clean one, which was returned instead.
    pub kept_clean: bool,
}

/// Runs `attack` (built by [`build`]) as a descent of each sample's loss toward `toward[i]`
/// within radius `eps`; returns the images (inside the ball and the box) and per-sample
/// results.
pub fn reverse(
    attack: &Attack,
    model: &Model,
    batch: BatchRef,
    toward: &[usize],
    eps: f32,
) -> Result<(Vec<f32>, Vec<Reversed>)> {
    let Method::Bounded(a) = &attack.method else {
        return Err(Error::Unsupported {
            attack: "reverse",
            what: format!("the minimum-norm attack {}", attack.name),
        });
    };
    let goal = Goal {
        labels: toward,
        targets: Some(toward),
    };
    let AttackOutput { mut adv, results } = a.run(model, batch, goal, eps)?;
    let k = model.num_classes();
    let per = batch.per();
    let before = model.logits(batch.images)?;
    let mut after = model.logits(&adv)?;
    let ce = |z: &[f32], y: usize| loss_value(z, y, None, AttackLoss::Ce);
    let mut out = Vec::with_capacity(toward.len());
    for (i, mut result) in results.into_iter().enumerate() {
        let y = toward[i];
        let zb = &before[i * k..(i + 1) * k];
        let (lb, la) = (ce(zb, y), ce(&after[i * k..(i + 1) * k], y));
        let kept_clean = la > lb;
        if kept_clean {
            adv[i * per..(i + 1) * per].copy_from_slice(batch.image(i));
            after[i * k..(i + 1) * k].copy_from_slice(zb);
            let z = zb;
            result.prediction = argmax(z);
            result.success = result.prediction == y;
            result.logit_margin = z[y] - z[faultline_engine::runner_up(z, y)];
            (result.linf, result.l2, result.l1) = (0.0, 0.0, 0.0);
        }
        result.forward += 2;
        out.push(Reversed {
            result,
            logits_before: zb.to_vec(),
            logits_after: after[i * k..(i + 1) * k].to_vec(),
            loss_before: lb,
            loss_after: lb.min(la),
            kept_clean,
        });
    }
    Ok((adv, out))
}
