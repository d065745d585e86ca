//! The attack registry: one table from which name parsing, the command line's value list, the
//! norms each attack supports, `faultline list` and the README's table all come.
//!
//! An entry builds its attack from the few [`Settings`] a user may give any attack (norm, steps,
//! restarts, …); each attack takes only the settings it has and refuses the others, so a flag
//! never silently does nothing. Everything else keeps the defaults of the attack's parameter
//! struct (documented there, with their source).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::a3::A3Params;
use crate::apgd::ApgdParams;
use crate::attack::{BoundedAttack, Described, MinNormAttack};
use crate::cw::CwParams;
use crate::deepfool::DeepFoolParams;
use crate::fab::FabParams;
use crate::loss::AttackLoss;
use crate::norm::Norm;
use crate::pgd::PgdParams;
use crate::square::SquareParams;
use crate::{Error, Result};

/// What a user may set on any attack; `None` (or `false`) keeps the attack's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settings {
    /// Threat model [default: the attack's first supported norm].
    pub norm: Option<Norm>,
    /// Iterations (Square: queries; C&W: per binary-search step).
    pub steps: Option<usize>,
    /// Absolute step size α.
    pub step_size: Option<f32>,
    /// Runs per sample (later runs start at random).
    pub restarts: Option<usize>,
    /// Start the first run at a random point of the ball.
    pub random_start: bool,
    /// Loss ascended.
    pub loss: Option<AttackLoss>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Any field of the attack's parameter struct by its name in `faultline list` (`--param
    /// KEY=VALUE`), set after the settings above; an ensemble sets each in the stages that
    /// have it.
    pub params: Vec<(String, Value)>,
}

impl Settings {
    /// The flags of the settings given (not left at the attack's default).
    pub fn given(&self) -> Vec<Setting> {
        ALL_SETTINGS
            .iter()
            .copied()
            .filter(|t| t.given(self))
            .collect()
    }
}

/// One of the settings in [`Settings`], by the name the command line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// `steps`.
    Steps,
    /// `step_size`.
    StepSize,
    /// `restarts`.
    Restarts,
    /// `random_start`.
    RandomStart,
    /// `loss`.
    Loss,
}

impl Setting {
    /// The command-line flag.
    pub fn flag(self) -> &'static str {
        match self {
            Setting::Steps => "--steps",
            Setting::StepSize => "--step-size",
            Setting::Restarts => "--restarts",
            Setting::RandomStart => "--random-start",
            Setting::Loss => "--loss",
        }
    }
    fn given(self, s: &Settings) -> bool {
        match self {
            Setting::Steps => s.steps.is_some(),
            Setting::StepSize => s.step_size.is_some(),
            Setting::Restarts => s.restarts.is_some(),
            Setting::RandomStart => s.random_start,
            Setting::Loss => s.loss.is_some(),
        }
    }
}

/// Whether an attack searches within a given radius or for the smallest perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Fixed ε ([`BoundedAttack`]).
    Bounded,
    /// Smallest perturbation ([`MinNormAttack`]).
    MinNorm,
}

/// A built attack of either kind.
pub enum Method {
    /// Runs at a radius.
    Bounded(Box<dyn BoundedAttack>),
    /// Finds the smallest perturbation.
    MinNorm(Box<dyn MinNormAttack>),
}

/// A registered attack, built with its parameters: what a run executes and records.
pub struct Attack {
    /// Registry name (`pgd`, `apgd-t`, …), or a preset's name for an ensemble.
    pub name: String,
    /// The attack.
    pub method: Method,
}

impl Attack {
    /// A bounded attack (an ensemble, say) under a name.
    pub fn bounded(name: &str, a: impl BoundedAttack + 'static) -> Self {
        Attack {
            name: name.to_string(),
            method: Method::Bounded(Box::new(a)),
        }
    }
    fn described(&self) -> &dyn Described {
        match &self.method {
            Method::Bounded(a) => a.as_ref(),
            Method::MinNorm(a) => a.as_ref(),
        }
    }
    /// The norm it works in.
    pub fn norm(&self) -> Norm {
        self.described().norm()
    }
    /// Whether it looks for the smallest perturbation.
    pub fn is_min_norm(&self) -> bool {
        matches!(self.method, Method::MinNorm(_))
    }
    /// Stage names of an ensemble (empty otherwise).
    pub fn stages(&self) -> Vec<&str> {
        match &self.method {
            Method::Bounded(a) => a.stages(),
            Method::MinNorm(_) => Vec::new(),
        }
    }
    /// `{"name", "kind", "norm", "params"}` for run records.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "kind": if self.is_min_norm() { Kind::MinNorm } else { Kind::Bounded },
            "norm": self.norm(),
            "params": self.described().params(),
        })
    }
}

impl std::fmt::Debug for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

/// One row of the registry.
pub struct Entry {
    /// The name used everywhere (file, command line, records).
    pub name: &'static str,
    /// Bounded or minimum-norm.
    pub kind: Kind,
    /// Supported norms; the first is the default.
    pub norms: &'static [Norm],
    /// Settings it takes besides the norm and the seed.
    pub takes: &'static [Setting],
    /// One line for `faultline list`.
    pub about: &'static str,
    build: fn(Norm, &Settings) -> Result<Method>,
}

impl Entry {
    /// The default norm.
    pub fn default_norm(&self) -> Norm {
        self.norms[0]
    }
    /// Builds the attack; refuses a norm it lacks and settings it does not take.
    pub fn build(&self, s: &Settings) -> Result<Attack> {
        let norm = s.norm.unwrap_or(self.default_norm());
        if !self.norms.contains(&norm) {
            return Err(Error::Unsupported {
                attack: self.name,
                what: format!(
                    "the {} norm (it supports {})",
                    norm.name(),
                    names(self.norms.iter().map(|n| n.name()))
                ),
            });
        }
        let refused: Vec<&str> = s
            .given()
            .into_iter()
            .filter(|t| !self.takes.contains(t))
            .map(Setting::flag)
            .collect();
        if !refused.is_empty() {
            return Err(Error::Unsupported {
                attack: self.name,
                what: format!(
                    "{} (it takes {})",
                    refused.join(", "),
                    if self.takes.is_empty() {
                        "none of --steps, --step-size, --restarts, --random-start, --loss".into()
                    } else {
                        names(self.takes.iter().map(|t| t.flag()))
                    }
                ),
            });
        }
        if let Some(0) = s.steps {
            return Err(Error::Unsupported {
                attack: self.name,
                what: "0 steps (it needs at least 1)".into(),
            });
        }
        if let Some(0) = s.restarts {
            return Err(Error::Unsupported {
                attack: self.name,
                what: "0 restarts (it needs at least 1)".into(),
            });
        }
        if let Some(a) = s.step_size {
            if !(a.is_finite() && a > 0.0) {
                return Err(Error::Unsupported {
                    attack: self.name,
                    what: format!("step size {a} (it must be positive)"),
                });
            }
        }
        Ok(Attack {
            name: self.name.to_string(),
            method: (self.build)(norm, s).map_err(|e| match e {
                Error::Unsupported { what, .. } => Error::Unsupported {
                    attack: self.name,
                    what,
                },
                e => e,
            })?,
        })
    }
    /// The parameters, with their defaults, in the default norm.
    pub fn defaults(&self) -> serde_json::Value {
        match (self.build)(self.default_norm(), &Settings::default()) {
            Ok(Method::Bounded(a)) => a.params(),
            Ok(Method::MinNorm(a)) => a.params(),
            Err(_) => Value::Null,
        }
    }
}

const ALL_SETTINGS: [Setting; 5] = [
    Setting::Steps,
    Setting::StepSize,
    Setting::Restarts,
    Setting::RandomStart,
    Setting::Loss,
];

fn names<'a>(v: impl Iterator<Item = &'a str>) -> String {
    v.collect::<Vec<_>>().join(", ")
}

/// `p` with the fields named in `params` replaced, each checked on its own so that an error
/// names the key (the attack's name is filled in by [`Entry::build`]).
fn tuned<T: Serialize + DeserializeOwned>(p: T, params: &[(String, Value)]) -> Result<T> {
    if params.is_empty() {
        return Ok(p);
    }
    let refuse = |what: String| Error::Unsupported { attack: "", what };
    let mut v = serde_json::to_value(&p).map_err(|e| refuse(e.to_string()))?;
    for (key, value) in params {
        let fields = v.as_object().map(|o| names(o.keys().map(String::as_str)));
        match v.get_mut(key) {
            Some(slot) => *slot = value.clone(),
            None => {
                return Err(refuse(format!(
                    "--param {key} (its parameters: {})",
                    fields.unwrap_or_default()
                )))
            }
        }
        if let Err(e) = serde_json::from_value::<T>(v.clone()) {
            return Err(refuse(format!("--param {key}={value} ({e})")));
        }
    }
    serde_json::from_value(v).map_err(|e| refuse(e.to_string()))
}

/// A bounded attack with the `--param` fields of `s` set.
fn bounded<T>(p: T, s: &Settings) -> Result<Method>
where
    T: BoundedAttack + Serialize + DeserializeOwned + 'static,
{
    Ok(Method::Bounded(Box::new(tuned(p, &s.params)?)))
}

/// A minimum-norm attack with the `--param` fields of `s` set.
fn min_norm<T>(p: T, s: &Settings) -> Result<Method>
where
    T: MinNormAttack + Serialize + DeserializeOwned + 'static,
{
    Ok(Method::MinNorm(Box::new(tuned(p, &s.params)?)))
}

use Norm::{Linf, L1, L2};
use Setting::{Loss, RandomStart, Restarts, StepSize, Steps};

const PGD_SETTINGS: &[Setting] = &[Steps, StepSize, Restarts, RandomStart, Loss];

fn pgd_like(base: PgdParams, s: &Settings) -> Result<Method> {
    let p = PgdParams {
        steps: s.steps.unwrap_or(base.steps),
        step_size: s.step_size,
        restarts: s.restarts.unwrap_or(base.restarts),
        random_start: s.random_start,
        loss: s.loss.unwrap_or(base.loss),
        seed: s.seed,
        ..base
    };
    bounded(p, s)
}

fn apgd_of(base: ApgdParams, s: &Settings) -> ApgdParams {
    ApgdParams {
        steps: s.steps.unwrap_or(base.steps),
        restarts: s.restarts.unwrap_or(base.restarts),
        seed: s.seed,
        ..base
    }
}

fn a3_like(base: A3Params, s: &Settings) -> Result<Method> {
    let p = A3Params {
        apgd: apgd_of(base.apgd.clone(), s),
        ..base
    };
    bounded(p, s)
}

fn fab_like(base: FabParams, s: &Settings) -> FabParams {
    FabParams {
        steps: s.steps.unwrap_or(base.steps),
        restarts: s.restarts.unwrap_or(base.restarts),
        seed: s.seed,
        ..base
    }
}

/// Every attack, in the order `faultline list` prints them.
pub static ATTACKS: &[Entry] = &[
    Entry {
        name: "fgsm",
        kind: Kind::Bounded,
        norms: &[Linf, L2, L1],
        takes: &[Loss],
        about: "one gradient step of size ε (Goodfellow et al. 2015)",
        build: |n, s| {
            let p = PgdParams {
                loss: s.loss.unwrap_or_default(),
                seed: s.seed,
                ..PgdParams::fgsm(n)
            };
            bounded(p, s)
        },
    },
    Entry {
        name: "pgd",
        kind: Kind::Bounded,
        norms: &[Linf, L2, L1],
        takes: PGD_SETTINGS,
        about: "projected gradient ascent, 20 steps of ε/4 (Madry et al. 2018)",
        build: |n, s| {
            pgd_like(
                PgdParams {
                    norm: n,
                    ..PgdParams::default()
                },
                s,
            )
        },
    },
    Entry {
        name: "mifgsm",
        kind: Kind::Bounded,
        norms: &[Linf, L2, L1],
        takes: PGD_SETTINGS,
        about: "momentum iterative FGSM, 10 steps of ε/10, μ = 1 (Dong et al. 2018)",
        build: |n, s| pgd_like(PgdParams::mifgsm(n), s),
    },
    Entry {
        name: "apgd-ce",
        kind: Kind::Bounded,
        norms: &[Linf, L2],
        takes: &[Steps, Restarts],
        about: "Auto-PGD on cross-entropy, 100 iterations (Croce & Hein 2020)",
        build: |n, s| bounded(apgd_of(ApgdParams::autoattack_ce(n), s), s),
    },
    Entry {
        name: "apgd-dlr",
        kind: Kind::Bounded,
        norms: &[Linf, L2],
        takes: &[Steps, Restarts],
        about: "Auto-PGD on the DLR loss",
        build: |n, s| {
            let base = ApgdParams {
                loss: AttackLoss::Dlr,
                ..ApgdParams::autoattack_ce(n)
            };
            bounded(apgd_of(base, s), s)
        },
    },
    Entry {
        name: "apgd-t",
        kind: Kind::Bounded,
        norms: &[Linf, L2],
        takes: &[Steps, Restarts],
        about: "targeted Auto-PGD on the targeted DLR loss, 9 target classes",
        build: |n, s| bounded(apgd_of(ApgdParams::autoattack_t(n), s), s),
    },
    Entry {
        name: "a3-ce",
        kind: Kind::Bounded,
        norms: &[Linf, L2],
        takes: &[Steps, Restarts],
        about: "A3-style adaptive APGD-CE: learned start directions, online discarding (Liu et al. 2022)",
        build: |n, s| a3_like(A3Params::ce(n), s),
    },
    Entry {
        name: "a3-t",
        kind: Kind::Bounded,
        norms: &[Linf, L2],
        takes: &[Steps, Restarts],
        about: "A3-style adaptive APGD-T, 9 target classes (Liu et al. 2022)",
        build: |n, s| a3_like(A3Params::targeted(n), s),
    },
    Entry {
        name: "fab-t",
        kind: Kind::Bounded,
        norms: &[Linf, L2, L1],
        takes: &[Steps, Restarts],
        about: "targeted FAB within ε, 9 target classes (Croce & Hein 2020)",
        build: |n, s| bounded(fab_like(FabParams::autoattack_t(n), s), s),
    },
    Entry {
        name: "square",
        kind: Kind::Bounded,
        norms: &[Linf, L2],
        takes: &[Steps, Restarts],
        about: "gradient-free random search, 5,000 queries (--steps) (Andriushchenko et al. 2020)",
        build: |n, s| {
            let base = SquareParams::default();
            let p = SquareParams {
                norm: n,
                queries: s.steps.unwrap_or(base.queries),
                restarts: s.restarts.unwrap_or(base.restarts),
                seed: s.seed,
                ..base
            };
            bounded(p, s)
        },
    },
    Entry {
        name: "deepfool",
        kind: Kind::MinNorm,
        norms: &[L2, Linf],
        takes: &[Steps],
        about: "smallest perturbation by linearised steps, 50 iterations (Moosavi-Dezfooli et al. 2016)",
        build: |n, s| {
            let base = DeepFoolParams::default();
            let p = DeepFoolParams {
                norm: n,
                steps: s.steps.unwrap_or(base.steps),
                ..base
            };
            min_norm(p, s)
        },
    },
    Entry {
        name: "fab",
        kind: Kind::MinNorm,
        norms: &[Linf, L2, L1],
        takes: &[Steps, Restarts],
        about: "smallest perturbation by fast adaptive boundary steps, 5 × 100 (Croce & Hein 2020)",
        build: |n, s| {
            let base = FabParams {
                norm: n,
                ..FabParams::default()
            };
            min_norm(fab_like(base, s), s)
        },
    },
    Entry {
        name: "cw",
        kind: Kind::MinNorm,
        norms: &[L2],
        takes: &[Steps],
        about: "Carlini & Wagner L2, 9 binary-search steps × 300 (--steps) (2017)",
        build: |_, s| {
            let base = CwParams::default();
            let p = CwParams {
                steps: s.steps.unwrap_or(base.steps),
                ..base
            };
            min_norm(p, s)
        },
    },
];

/// The registry entry called `name`.
pub fn entry(name: &str) -> Result<&'static Entry> {
    ATTACKS
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| Error::UnknownAttack {
            name: name.to_string(),
            known: names(ATTACKS.iter().map(|e| e.name)),
        })
}

/// Builds the attack called `name` with settings `s`.
pub fn build(name: &str, s: &Settings) -> Result<Attack> {
    entry(name)?.build(s)
}

/// The names of every registered attack.
pub fn names_list() -> Vec<&'static str> {
    ATTACKS.iter().map(|e| e.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_in_each_of_its_norms_and_reports_its_name_and_norm() {
        for e in ATTACKS {
            for &n in e.norms {
                let a = e
                    .build(&Settings {
                        norm: Some(n),
                        ..Settings::default()
                    })
                    .unwrap();
                assert_eq!(a.name, e.name);
                assert_eq!(a.norm(), n, "{}", e.name);
                assert_eq!(a.is_min_norm(), e.kind == Kind::MinNorm);
            }
            assert!(e.defaults().is_object(), "{}", e.name);
        }
    }

    #[test]
    fn unsupported_norms_and_settings_are_refused_by_name() {
        let l1 = Settings {
            norm: Some(L1),
            ..Settings::default()
        };
        let e = build("apgd-ce", &l1).unwrap_err().to_string();
        assert!(e.contains("apgd-ce") && e.contains("l1"), "{e}");
        let steps = Settings {
            steps: Some(3),
            ..Settings::default()
        };
        let e = build("fgsm", &steps).unwrap_err().to_string();
        assert!(e.contains("--steps") && e.contains("fgsm"), "{e}");
        let zero = Settings {
            steps: Some(0),
            ..Settings::default()
        };
        assert!(build("pgd", &zero).is_err());
        let e = build("pgdd", &Settings::default()).unwrap_err().to_string();
        assert!(e.contains("pgdd") && e.contains("apgd-ce"), "{e}");
    }

    #[test]
    fn settings_reach_the_parameters() {
        let s = Settings {
            steps: Some(7),
            restarts: Some(2),
            seed: 9,
            ..Settings::default()
        };
        let p = build("apgd-t", &s).unwrap().describe();
        assert_eq!(p["params"]["steps"], 7);
        assert_eq!(p["params"]["restarts"], 2);
        assert_eq!(p["params"]["seed"], 9);
        assert_eq!(p["params"]["target_classes"], 9);
        assert_eq!(p["name"], "apgd-t");
        let q = build("square", &s).unwrap().describe();
        assert_eq!(q["params"]["queries"], 7);
    }

    #[test]
    fn params_set_any_field_by_name_and_refuse_unknown_or_ill_typed_ones() {
        let with = |kv: &[(&str, Value)]| Settings {
            params: kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            ..Settings::default()
        };
        let a = build(
            "a3-t",
            &with(&[("osd_keep", 0.3.into()), ("rho", 0.8.into())]),
        )
        .unwrap();
        let p = a.describe();
        assert!((p["params"]["osd_keep"].as_f64().unwrap() - 0.3).abs() < 1e-6);
        assert!((p["params"]["rho"].as_f64().unwrap() - 0.8).abs() < 1e-6);
        assert_eq!(
            p["params"]["target_classes"], 9,
            "untouched fields keep their defaults"
        );
        // --param steps=5 is --steps 5.
        let by_param = build("pgd", &with(&[("steps", 5.into())]))
            .unwrap()
            .describe();
        let by_flag = build(
            "pgd",
            &Settings {
                steps: Some(5),
                ..Settings::default()
            },
        )
        .unwrap()
        .describe();
        assert_eq!(by_param, by_flag);
        let e = build("pgd", &with(&[("osd_keep", 0.5.into())]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pgd") && e.contains("osd_keep") && e.contains("steps"),
            "{e}"
        );
        let e = build("a3-ce", &with(&[("adi_prior", "many".into())]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a3-ce") && e.contains("adi_prior"), "{e}");
    }
}
