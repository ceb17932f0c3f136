//! The official GLUE metrics, with the definitions of scikit-learn (`accuracy_score`, `f1_score` of the
//! positive class, `matthews_corrcoef`) and scipy (`pearsonr`, `spearmanr` with average ranks for ties).

use std::collections::BTreeMap;

use data::Metric;
use serde::{Deserialize, Serialize};

/// Metric values by name, and the single number used to pick the best checkpoint (GLUE averages a
/// task's two numbers where it has two).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub values: BTreeMap<String, f64>,
    pub main: f64,
}

impl Scores {
    pub fn summary(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k} {:.4}", v))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

/// F1 of class 1 (sklearn's binary default); 0 when there are no true positives.
pub fn f1(pred: &[usize], gold: &[usize]) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0f64, 0f64, 0f64);
    for (&p, &g) in pred.iter().zip(gold) {
        match (p == 1, g == 1) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

/// Matthews correlation for any number of classes (sklearn's multiclass formula); 0 when undefined.
pub fn matthews(pred: &[usize], gold: &[usize]) -> f64 {
    let k = pred.iter().chain(gold).copied().max().map_or(0, |m| m + 1);
    let mut c = vec![vec![0f64; k]; k];
    for (&p, &g) in pred.iter().zip(gold) {
        c[g][p] += 1.0;
    }
    let s: f64 = gold.len() as f64;
    let correct: f64 = (0..k).map(|i| c[i][i]).sum();
    let t: Vec<f64> = (0..k).map(|i| c[i].iter().sum()).collect(); // true counts
    let p: Vec<f64> = (0..k).map(|j| (0..k).map(|i| c[i][j]).sum()).collect(); // predicted counts
    let cov_ytyp = correct * s - t.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
    let cov_ypyp = s * s - p.iter().map(|x| x * x).sum::<f64>();
    let cov_ytyt = s * s - t.iter().map(|x| x * x).sum::<f64>();
    let den = (cov_ytyt * cov_ypyp).sqrt();
    if den == 0.0 {
        0.0
    } else {
        cov_ytyp / den
    }
}

pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks starting at 1, ties sharing their average rank (scipy's `rankdata(method='average')`).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Predicted classes (argmax) of a row-major [n, c] logit matrix.
pub fn argmax_rows(logits: &[Vec<f32>]) -> Vec<usize> {
    logits.iter().map(|row| inference::argmax(row)).collect()
}

/// Counts [gold][predicted] over `k` classes (scikit-learn's `confusion_matrix` layout: rows are the
/// true classes); labels outside 0..k are left out.
pub fn confusion(pred: &[usize], gold: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut c = vec![vec![0usize; k]; k];
    for (&p, &g) in pred.iter().zip(gold) {
        if let Some(cell) = c.get_mut(g).and_then(|row| row.get_mut(p)) {
            *cell += 1;
        }
    }
    c
}

/// Classification metrics from predicted and gold classes.
pub fn score_classes(metric: Metric, pred: &[usize], gold: &[usize]) -> Scores {
    let mut values = BTreeMap::new();
    let main = match metric {
        Metric::Matthews => {
            let m = matthews(pred, gold);
            values.insert("matthews".into(), m);
            m
        }
        Metric::F1Accuracy => {
            let (f, a) = (f1(pred, gold), accuracy(pred, gold));
            values.insert("f1".into(), f);
            values.insert("accuracy".into(), a);
            (f + a) / 2.0
        }
        Metric::Accuracy | Metric::PearsonSpearman => {
            let a = accuracy(pred, gold);
            values.insert("accuracy".into(), a);
            a
        }
    };
    Scores { values, main }
}

/// Regression metrics (Pearson and Spearman; their mean selects the best checkpoint).
pub fn score_regression(pred: &[f64], gold: &[f64]) -> Scores {
    let (p, s) = (pearson(pred, gold), spearman(pred, gold));
    Scores {
        values: BTreeMap::from([("pearson".into(), p), ("spearman".into(), s)]),
        main: (p + s) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scikit-learn 1.9.1 / scipy 1.17.1 (tools/.venv):
    // from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
    // from scipy.stats import pearsonr, spearmanr
    // g = [0,1,1,0,1,1,0,0,1,1]; p = [0,1,0,0,1,1,1,0,1,0]
    // accuracy_score(g, p) = 0.7; f1_score(g, p) = 0.7272727272727273; matthews_corrcoef(g, p) = 0.4082482904638631
    // x = [1, 2, 2, 3, 5.5, 4]; y = [2, 1, 4, 3, 7, 7]
    // pearsonr(x, y)[0] = 0.8512145711022472; spearmanr(x, y)[0] = 0.7941176470588235
    const G: [usize; 10] = [0, 1, 1, 0, 1, 1, 0, 0, 1, 1];
    const P: [usize; 10] = [0, 1, 0, 0, 1, 1, 1, 0, 1, 0];

    #[test]
    fn classification_metrics_match_sklearn() {
        assert!((accuracy(&P, &G) - 0.7).abs() < 1e-12);
        assert!((f1(&P, &G) - 0.7272727272727273).abs() < 1e-12);
        assert!((matthews(&P, &G) - 0.4082482904638631).abs() < 1e-12);
    }

    #[test]
    fn confusion_matches_sklearn() {
        // confusion_matrix(g, p) = [[3, 1], [2, 4]]
        assert_eq!(confusion(&P, &G, 2), vec![vec![3, 1], vec![2, 4]]);
        assert_eq!(confusion(&[0, 5], &[0, 1], 2), vec![vec![1, 0], vec![0, 0]]);
    }

    #[test]
    fn multiclass_matthews_matches_sklearn() {
        // matthews_corrcoef([0,1,2,2,1,0,2], [0,2,2,1,1,0,2]) = 0.5625
        let g = [0, 1, 2, 2, 1, 0, 2];
        let p = [0, 2, 2, 1, 1, 0, 2];
        assert!((matthews(&p, &g) - 0.5625).abs() < 1e-12);
    }

    #[test]
    fn correlations_match_scipy() {
        let x = [1.0, 2.0, 2.0, 3.0, 5.5, 4.0];
        let y = [2.0, 1.0, 4.0, 3.0, 7.0, 7.0];
        assert!((pearson(&x, &y) - 0.8512145711022472).abs() < 1e-12);
        assert!((spearman(&x, &y) - 0.7941176470588235).abs() < 1e-12);
    }

    #[test]
    fn degenerate_inputs_give_zero_not_nan() {
        assert_eq!(matthews(&[1, 1, 1], &[1, 1, 1]), 0.0);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), 0.0);
        assert_eq!(f1(&[0, 0], &[0, 0]), 0.0);
    }
}
