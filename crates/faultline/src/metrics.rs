//! Counters over per-sample predictions: accuracy, per-class accuracy (TP_c / N_c) and the
//! confusion matrix (rows: true class, columns: predicted class). Pure functions of records,
//! so a resumed run summarizes exactly like an uninterrupted one.

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
