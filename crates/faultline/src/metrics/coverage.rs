//! Neuron coverage of the adversarial test data (data-oriented metrics of Guo et al. / AISafety,
//! methods.md §3.4; DeepXplore, Pei et al. 2017; DeepGauge, Ma et al. 2018). A *neuron* is one
//! channel of a layer's output (AISafety's granularity); its value on an input is the mean of its
//! channel map (one value for a fully connected layer) [U: DeepGauge uses single units].
//! Bounds `[lo_c, hi_c]` come from the clean data, coverage from the adversarial data. Everything
//! is streamed: per neuron a min/max, `k` section bits, two corner bits and a top-k mark, plus
//! one hash per distinct top-k pattern, so memory does not grow with the number of images
//! (except the pattern set, at most one hash per image).
//!
//! - **nc** (DeepXplore): per input and neuron, the channel map is scaled to [0, 1] by its own
//!   min/max (a one-value map — a fully connected unit — by the min/max of the whole layer output
//!   for that input); the neuron is activated when the mean scaled value exceeds
//!   [`CoverageParams::nc_threshold`] (0.2); nc = activated pairs / (inputs × neurons).
//! - **kmnc**: `k` ([`CoverageParams::kmnc_sections`], 20) equal sections of `[lo_c, hi_c]`; a
//!   section is covered when some adversarial value falls in it; kmnc = covered / (k × neurons).
//! - **nbc** = `(#{c : some value > hi_c} + #{c : some value < lo_c}) / (2 × neurons)`
//!   (DeepGauge's form; AISafety counts a neuron once).
//! - **snac** = `#{c : some value > hi_c} / neurons` (DeepGauge; AISafety divides by 2×neurons,
//!   a bug we do not copy).
//! - **tknc**: per input and layer, the [`CoverageParams::tknc_k`] (3) neurons with the largest
//!   values are marked; tknc = marked neurons / neurons.
//! - **tknp**: the number of distinct top-[`CoverageParams::tknp_k`] (2) patterns, the pattern of
//!   an input being its top-k neuron sets of every layer, concatenated.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Parameters of the coverage metrics (the reference's defaults).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoverageParams {
    /// nc's activation threshold on the scaled channel mean.
    pub nc_threshold: f64,
    /// kmnc's sections per neuron.
    pub kmnc_sections: usize,
    /// tknc's k.
    pub tknc_k: usize,
    /// tknp's k.
    pub tknp_k: usize,
}

impl Default for CoverageParams {
    fn default() -> Self {
        CoverageParams {
            nc_threshold: 0.2,
            kmnc_sections: 20,
            tknc_k: 3,
            tknp_k: 2,
        }
    }
}

/// One layer's output for a batch: `n` inputs × `channels` × `spatial` values (NC… layout).
#[derive(Debug, Clone, Copy)]
pub struct Act<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Inputs.
    pub n: usize,
    /// Channels (neurons).
    pub channels: usize,
    /// Values per channel map.
    pub spatial: usize,
}

impl<'a> Act<'a> {
    /// A batch's activation of `shape` (batch first; a 2-D output is `n × features`, each
    /// feature a one-value map).
    pub fn new(data: &'a [f32], shape: &[usize]) -> Act<'a> {
        let n = shape.first().copied().unwrap_or(1).max(1);
        let channels = shape.get(1).copied().unwrap_or(1).max(1);
        let spatial = shape.iter().skip(2).product::<usize>().max(1);
        Act {
            data,
            n,
            channels,
            spatial,
        }
    }
    /// The map of neuron `c` on input `i`.
    pub fn map(&self, i: usize, c: usize) -> &'a [f32] {
        let per = self.channels * self.spatial;
        &self.data[i * per + c * self.spatial..i * per + (c + 1) * self.spatial]
    }
    /// The value (channel mean) of neuron `c` on input `i`.
    pub fn value(&self, i: usize, c: usize) -> f64 {
        let m = self.map(i, c);
        m.iter().map(|&v| v as f64).sum::<f64>() / m.len() as f64
    }
}

/// Clean per-neuron bounds, one vector per layer.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    /// Per layer, per neuron: (min, max) of the neuron's value over the clean inputs.
    #[serde(with = "bits")]
    pub layers: Vec<Vec<(f64, f64)>>,
}

/// (min, max) pairs as their bit patterns: bounds start at ±∞, which JSON cannot hold.
mod bits {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Pairs = Vec<Vec<(f64, f64)>>;

    pub fn serialize<S: Serializer>(v: &Pairs, s: S) -> Result<S::Ok, S::Error> {
        let b: Vec<Vec<(u64, u64)>> = v
            .iter()
            .map(|l| l.iter().map(|&(a, b)| (a.to_bits(), b.to_bits())).collect())
            .collect();
        b.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        let b = Vec::<Vec<(u64, u64)>>::deserialize(d)?;
        Ok(b.into_iter()
            .map(|l| {
                l.into_iter()
                    .map(|(a, b)| (f64::from_bits(a), f64::from_bits(b)))
                    .collect()
            })
            .collect())
    }
}

impl Bounds {
    /// Widens the bounds of layer `l` with a batch of clean activations.
    pub fn observe(&mut self, l: usize, a: Act) {
        if self.layers.len() <= l {
            self.layers.resize(l + 1, Vec::new());
        }
        let b = &mut self.layers[l];
        if b.is_empty() {
            b.resize(a.channels, (f64::INFINITY, f64::NEG_INFINITY));
        }
        for i in 0..a.n {
            for (c, bc) in b.iter_mut().enumerate().take(a.channels) {
                let v = a.value(i, c);
                bc.0 = bc.0.min(v);
                bc.1 = bc.1.max(v);
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct LayerCover {
    sections: Vec<bool>,
    upper: Vec<bool>,
    lower: Vec<bool>,
    top: Vec<bool>,
}

/// Streaming coverage of the adversarial data against clean [`Bounds`].
#[derive(Debug, Clone)]
pub struct Coverage {
    params: CoverageParams,
    bounds: Bounds,
    layers: Vec<LayerCover>,
    inputs: u64,
    activated: u64,
    pairs: u64,
    patterns: HashSet<u64>,
    pending: Vec<DefaultHasher>,
}

/// What [`Coverage`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageFigures {
    /// Neuron coverage.
    pub nc: f64,
    /// k-multisection neuron coverage.
    pub kmnc: f64,
    /// Neuron boundary coverage.
    pub nbc: f64,
    /// Strong neuron activation coverage.
    pub snac: f64,
    /// Top-k neuron coverage.
    pub tknc: f64,
    /// Distinct top-k neuron patterns.
    pub tknp: usize,
    /// Neurons over all layers.
    pub neurons: usize,
}

impl Coverage {
    /// Coverage against `bounds`.
    pub fn new(params: CoverageParams, bounds: Bounds) -> Coverage {
        let layers = bounds
            .layers
            .iter()
            .map(|b| LayerCover {
                sections: vec![false; b.len() * params.kmnc_sections],
                upper: vec![false; b.len()],
                lower: vec![false; b.len()],
                top: vec![false; b.len()],
            })
            .collect();
        Coverage {
            params,
            bounds,
            layers,
            inputs: 0,
            activated: 0,
            pairs: 0,
            patterns: HashSet::new(),
            pending: Vec::new(),
        }
    }

    /// Adds one batch: the adversarial activations of every layer, in the order of the bounds.
    pub fn add(&mut self, acts: &[Act]) {
        let n = acts.first().map_or(0, |a| a.n);
        self.pending = (0..n).map(|_| DefaultHasher::new()).collect();
        for (l, a) in acts.iter().enumerate() {
            self.add_layer(l, *a);
        }
        for h in std::mem::take(&mut self.pending) {
            self.patterns.insert(h.finish());
        }
        self.inputs += n as u64;
    }

    fn add_layer(&mut self, l: usize, a: Act) {
        let p = &self.params;
        let k = p.kmnc_sections;
        let (Some(bounds), Some(cov)) = (self.bounds.layers.get(l), self.layers.get_mut(l)) else {
            return;
        };
        let channels = a.channels.min(bounds.len());
        for i in 0..a.n {
            let vals: Vec<f64> = (0..channels).map(|c| a.value(i, c)).collect();
            // nc: scale each map by its own min/max (the layer's, for one-value maps).
            let layer_range = if a.spatial == 1 {
                let (lo, hi) = min_max(vals.iter().copied());
                Some((lo, hi))
            } else {
                None
            };
            for (c, &v) in vals.iter().enumerate() {
                let (lo, hi) =
                    layer_range.unwrap_or_else(|| min_max(a.map(i, c).iter().map(|&x| x as f64)));
                let scaled = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
                self.pairs += 1;
                if scaled > p.nc_threshold {
                    self.activated += 1;
                }
                let (blo, bhi) = bounds[c];
                if v > bhi {
                    cov.upper[c] = true;
                } else if v < blo {
                    cov.lower[c] = true;
                } else if bhi > blo {
                    let s = (((v - blo) / (bhi - blo)) * k as f64).floor() as usize;
                    cov.sections[c * k + s.min(k - 1)] = true;
                } else {
                    // A neuron constant on the clean data: its one value is its only section.
                    cov.sections[c * k] = true;
                }
            }
            for c in top_k(&vals, p.tknc_k) {
                cov.top[c] = true;
            }
            let mut pat = top_k(&vals, p.tknp_k);
            pat.sort_unstable();
            (l, pat).hash(&mut self.pending[i]);
        }
    }

    /// The figures (None before any input).
    pub fn figures(&self) -> Option<CoverageFigures> {
        let neurons: usize = self.layers.iter().map(|l| l.upper.len()).sum();
        if self.inputs == 0 || neurons == 0 {
            return None;
        }
        let count = |f: &dyn Fn(&LayerCover) -> &Vec<bool>| -> usize {
            self.layers
                .iter()
                .map(|l| f(l).iter().filter(|&&b| b).count())
                .sum()
        };
        let nn = neurons as f64;
        let upper = count(&|l| &l.upper) as f64;
        let lower = count(&|l| &l.lower) as f64;
        Some(CoverageFigures {
            nc: self.activated as f64 / self.pairs.max(1) as f64,
            kmnc: count(&|l| &l.sections) as f64 / (self.params.kmnc_sections as f64 * nn),
            nbc: (upper + lower) / (2.0 * nn),
            snac: upper / nn,
            tknc: count(&|l| &l.top) as f64 / nn,
            tknp: self.patterns.len(),
            neurons,
        })
    }
}

fn min_max(it: impl Iterator<Item = f64>) -> (f64, f64) {
    it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    })
}

/// Indices of the `k` largest values (first index on ties).
fn top_k(vals: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..vals.len()).collect();
    idx.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3-neuron fully connected layer: clean values give bounds [0, 1], [0, 2], [−1, 1].
    fn bounds() -> Bounds {
        let clean = [0.0f32, 0.0, -1.0, 1.0, 2.0, 1.0];
        let mut b = Bounds::default();
        b.observe(0, Act::new(&clean, &[2, 3]));
        assert_eq!(b.layers[0], vec![(0.0, 1.0), (0.0, 2.0), (-1.0, 1.0)]);
        b
    }

    #[test]
    fn three_neurons_by_hand() {
        let params = CoverageParams {
            kmnc_sections: 4,
            tknc_k: 1,
            tknp_k: 1,
            ..CoverageParams::default()
        };
        let mut cov = Coverage::new(params, bounds());
        // Input A: (0.1, 2.5, 0.0): n0 in section 0, n1 above its max, n2 in section 2
        // ((0 − (−1))/2·4 = 2). Input B: (0.9, 1.0, −2.0): n0 section 3, n1 section 2, n2 below.
        let adv = [0.1f32, 2.5, 0.0, 0.9, 1.0, -2.0];
        cov.add(&[Act::new(&adv, &[2, 3])]);
        let f = cov.figures().unwrap();
        assert_eq!(f.neurons, 3);
        // Sections covered: n0 {0, 3}, n1 {2}, n2 {2} → 4 of 12.
        assert!((f.kmnc - 4.0 / 12.0).abs() < 1e-12);
        // Upper corner: n1; lower corner: n2 → (1 + 1)/6 and 1/3.
        assert!((f.nbc - 2.0 / 6.0).abs() < 1e-12);
        assert!((f.snac - 1.0 / 3.0).abs() < 1e-12);
        // Top-1: A → n1, B → n1 (1.0 > 0.9): one neuron marked, one pattern.
        assert!((f.tknc - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(f.tknp, 1);
        // nc, one-value maps scaled by the layer: A: (0.1, 2.5, 0) → (0.04, 1, 0): 1 activated;
        // B: (0.9, 1, −2) → (0.9667, 1, 0): 2 activated → 3 of 6.
        assert!((f.nc - 0.5).abs() < 1e-12);
    }

    #[test]
    fn channel_maps_are_averaged_and_scaled_per_map() {
        // One input, two channels of 2 values: (0, 1) and (3, 3).
        let a = [0.0f32, 1.0, 3.0, 3.0];
        let act = Act::new(&a, &[1, 2, 1, 2]);
        assert_eq!((act.value(0, 0), act.value(0, 1)), (0.5, 3.0));
        let mut b = Bounds::default();
        b.observe(0, act);
        let mut cov = Coverage::new(CoverageParams::default(), b);
        cov.add(&[act]);
        let f = cov.figures().unwrap();
        // Channel 0 scaled mean 0.5 > 0.2; channel 1 is a flat map (scaled 0): 1 of 2.
        assert!((f.nc - 0.5).abs() < 1e-12);
        // Each neuron sits at its clean bounds: a section each, no corner.
        assert!((f.kmnc - 2.0 / 40.0).abs() < 1e-12);
        assert_eq!((f.nbc, f.snac), (0.0, 0.0));
        assert_eq!(f.tknp, 1);
    }
}
