//! Model structure seen through its neurons (Guo et al. / AISafety `SNS` and `NU`, methods.md
//! §3.4). A neuron is one channel of a layer's output ([`super::coverage::Act`]). Both are
//! streamed: one running sum (sensitivity) or one running mean/variance (uncertainty) per neuron.
//!
//! - **neuron_sensitivity**: per neuron `c`, `NS_c = (1/N) Σ_i ‖F_c(x_i^a) − F_c(x_i)‖_1 / dim(F_c)`
//!   (the mean absolute change of its channel map between clean and adversarial input). Reported
//!   per layer as the mean over its neurons and the mean of its top 10 % neurons; the summary
//!   `mean` is the mean over layers of the layer means.
//! - **neuron_uncertainty**: per layer, the mean over neurons of the variance (population) of the
//!   neuron's value (channel mean) across the adversarial inputs; `mean` over layers. Which inputs
//!   the reference uses is not stated: we use the adversarial ones, as the other model-structure
//!   metrics do [U].

use serde::Serialize;

use super::coverage::Act;

/// One layer's figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerFigure {
    /// The tapped value's name.
    pub layer: String,
    /// Mean over the layer's neurons.
    pub mean: f64,
    /// Mean over the top 10 % of neurons (at least one); sensitivity only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top10: Option<f64>,
}

/// A per-layer metric with its summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PerLayer {
    /// Mean over layers of the layer means.
    pub mean: f64,
    /// Per layer, in execution order.
    pub layers: Vec<LayerFigure>,
}

/// Streaming neuron sensitivity.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Sensitivity {
    sums: Vec<Vec<f64>>,
    n: u64,
}

impl Sensitivity {
    /// Adds a batch: clean and adversarial activations of every layer (same shapes).
    pub fn add(&mut self, clean: &[Act], adv: &[Act]) {
        if self.sums.len() < clean.len() {
            self.sums.resize(clean.len(), Vec::new());
        }
        for (l, (c, a)) in clean.iter().zip(adv).enumerate() {
            let s = &mut self.sums[l];
            s.resize(c.channels, 0.0);
            for i in 0..c.n {
                for (ch, sc) in s.iter_mut().enumerate() {
                    let (mc, ma) = (c.map(i, ch), a.map(i, ch));
                    let d: f64 = mc.iter().zip(ma).map(|(&u, &v)| (u - v).abs() as f64).sum();
                    *sc += d / mc.len() as f64;
                }
            }
        }
        self.n += clean.first().map_or(0, |a| a.n) as u64;
    }

    /// Per-layer figures for layers named `names` (None before any input).
    pub fn figures(&self, names: &[String]) -> Option<PerLayer> {
        if self.n == 0 || self.sums.is_empty() {
            return None;
        }
        let n = self.n as f64;
        let layers: Vec<LayerFigure> = self
            .sums
            .iter()
            .zip(names)
            .map(|(s, name)| {
                let mut v: Vec<f64> = s.iter().map(|x| x / n).collect();
                v.sort_by(|a, b| b.total_cmp(a));
                let top = v.len().div_ceil(10).max(1).min(v.len());
                LayerFigure {
                    layer: name.clone(),
                    mean: mean(&v),
                    top10: Some(mean(&v[..top])),
                }
            })
            .collect();
        Some(PerLayer {
            mean: mean(&layers.iter().map(|l| l.mean).collect::<Vec<_>>()),
            layers,
        })
    }
}

/// Streaming neuron uncertainty (Welford per neuron).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Uncertainty {
    /// Per layer, per neuron: (count, mean, M2).
    stats: Vec<Vec<(f64, f64, f64)>>,
}

impl Uncertainty {
    /// Adds a batch of activations of every layer.
    pub fn add(&mut self, acts: &[Act]) {
        if self.stats.len() < acts.len() {
            self.stats.resize(acts.len(), Vec::new());
        }
        for (l, a) in acts.iter().enumerate() {
            let s = &mut self.stats[l];
            s.resize(a.channels, (0.0, 0.0, 0.0));
            for i in 0..a.n {
                for (c, st) in s.iter_mut().enumerate() {
                    let v = a.value(i, c);
                    st.0 += 1.0;
                    let d = v - st.1;
                    st.1 += d / st.0;
                    st.2 += d * (v - st.1);
                }
            }
        }
    }

    /// Per-layer figures for layers named `names` (None before any input).
    pub fn figures(&self, names: &[String]) -> Option<PerLayer> {
        if self.stats.is_empty() || self.stats[0].first().is_none_or(|s| s.0 == 0.0) {
            return None;
        }
        let layers: Vec<LayerFigure> = self
            .stats
            .iter()
            .zip(names)
            .map(|(s, name)| LayerFigure {
                layer: name.clone(),
                mean: mean(&s.iter().map(|st| st.2 / st.0).collect::<Vec<_>>()),
                top10: None,
            })
            .collect();
        Some(PerLayer {
            mean: mean(&layers.iter().map(|l| l.mean).collect::<Vec<_>>()),
            layers,
        })
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_neurons_by_hand() {
        let names = vec!["fc".to_string()];
        // Two inputs, three one-value neurons.
        let clean = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
        let adv = [1.5f32, 2.0, 1.0, 1.0, 0.0, 0.0];
        let mut s = Sensitivity::default();
        s.add(&[Act::new(&clean, &[2, 3])], &[Act::new(&adv, &[2, 3])]);
        let f = s.figures(&names).unwrap();
        // NS = ((0.5 + 1)/2, 0, (2 + 0)/2) = (0.75, 0, 1): mean 7/12, top 10 % = the largest.
        assert!((f.mean - 7.0 / 12.0).abs() < 1e-12);
        assert_eq!(f.layers[0].top10, Some(1.0));
        let mut u = Uncertainty::default();
        u.add(&[Act::new(&adv, &[2, 3])]);
        let f = u.figures(&names).unwrap();
        // Variances across the two inputs: (0.0625, 1, 0.25) → mean 1.3125/3.
        assert!((f.mean - 1.3125 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn maps_use_their_mean_absolute_change() {
        // One input, one channel of 4 values: change (1, −1, 0, 2) → ‖·‖₁/4 = 1.
        let c = [0.0f32; 4];
        let a = [1.0f32, -1.0, 0.0, 2.0];
        let mut s = Sensitivity::default();
        s.add(
            &[Act::new(&c, &[1, 1, 2, 2])],
            &[Act::new(&a, &[1, 1, 2, 2])],
        );
        assert_eq!(s.figures(&["conv".into()]).unwrap().mean, 1.0);
    }
}
