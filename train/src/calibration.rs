//! Confidence calibration of a classifier, as defined by Guo et al., "On Calibration of Modern Neural
//! Networks" (ICML 2017, section 2): the confidence of a prediction is its largest softmax probability;
//! predictions fall into M equal-width bins B_m = ((m - 1)/M, m/M]; the expected calibration error is
//! ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|. The per-bin numbers are the reliability diagram.
//! Bin edges are `np.linspace(0, 1, M + 1)`, as in the authors' reference code (gpleiss/temperature_scaling).

use serde::{Deserialize, Serialize};

use crate::metrics::argmax_rows;

/// Guo et al.'s number of bins.
pub const ECE_BINS: usize = 15;

/// One bin of the reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// The bin is (lower, upper].
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean confidence of the predictions in the bin; None when the bin is empty.
    pub confidence: Option<f64>,
    /// Share of them that are right; None when the bin is empty.
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Expected calibration error, in [0, 1].
    pub ece: f64,
    pub bins: Vec<Bin>,
}

/// Softmax confidence (largest probability) of each row of logits [n][c], computed in f64.
pub fn confidences(rows: &[Vec<f32>]) -> Vec<f64> {
    rows.iter()
        .map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            // The largest logit's probability: exp(0) / sum.
            1.0 / sum
        })
        .collect()
}

/// ECE and reliability bins of logits [n][c] against gold classes, with `n_bins` equal-width bins.
pub fn calibration(rows: &[Vec<f32>], gold: &[usize], n_bins: usize) -> Calibration {
    let correct: Vec<bool> = argmax_rows(rows)
        .iter()
        .zip(gold)
        .map(|(p, g)| p == g)
        .collect();
    calibration_of(&confidences(rows), &correct, n_bins)
}

/// ECE and reliability bins from each prediction's confidence and whether it was right.
pub fn calibration_of(confidence: &[f64], correct: &[bool], n_bins: usize) -> Calibration {
    let n_bins = n_bins.max(1);
    let step = 1.0 / n_bins as f64;
    // np.linspace(0, 1, n_bins + 1): k * step, the last edge exactly 1.
    let edge = |k: usize| if k == n_bins { 1.0 } else { k as f64 * step };
    let (mut count, mut conf_sum, mut right) = (
        vec![0usize; n_bins],
        vec![0f64; n_bins],
        vec![0usize; n_bins],
    );
    for (&c, &ok) in confidence.iter().zip(correct) {
        // The first bin whose upper edge is >= c; confidences are > 0 (at least 1 / classes).
        let Some(m) = (0..n_bins).find(|&m| c <= edge(m + 1)) else {
            continue;
        };
        count[m] += 1;
        conf_sum[m] += c;
        right[m] += ok as usize;
    }
    let n = count.iter().sum::<usize>().max(1) as f64;
    let mut ece = 0.0;
    let bins = (0..n_bins)
        .map(|m| {
            let (confidence, accuracy) = if count[m] == 0 {
                (None, None)
            } else {
                let k = count[m] as f64;
                let (conf, acc) = (conf_sum[m] / k, right[m] as f64 / k);
                ece += k / n * (acc - conf).abs();
                (Some(conf), Some(acc))
            };
            Bin {
                lower: edge(m),
                upper: edge(m + 1),
                count: count[m],
                confidence,
                accuracy,
            }
        })
        .collect();
    Calibration { ece, bins }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_matches_the_reference_definition() {
        // numpy, after gpleiss/temperature_scaling's _ECELoss:
        // logits = np.array([[2,0,0],[.5,0,0],[0,3,0],[1,1.2,0],[0,0,4],[.2,0,.1],[0,2,1],[1.5,0,1.4]])
        // gold = np.array([0,1,1,1,2,0,2,2])
        // p = np.exp(logits - logits.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
        // conf = p.max(1); acc = (p.argmax(1) == gold).astype(float)
        // b = np.linspace(0, 1, 16); ece = 0.0
        // for lo, hi in zip(b[:-1], b[1:]):
        //     m = (conf > lo) & (conf <= hi)
        //     if m.any(): ece += m.mean() * abs(acc[m].mean() - conf[m].mean())
        // ece = 0.2683999173808666; bins 5, 6, 7, 9, 11, 13, 14 (0-based) hold 1, 1, 2, 1, 1, 1, 1;
        // bin 7: conf 0.4708233904241627, acc 0.5
        let rows: Vec<Vec<f32>> = vec![
            vec![2.0, 0.0, 0.0],
            vec![0.5, 0.0, 0.0],
            vec![0.0, 3.0, 0.0],
            vec![1.0, 1.2, 0.0],
            vec![0.0, 0.0, 4.0],
            vec![0.2, 0.0, 0.1],
            vec![0.0, 2.0, 1.0],
            vec![1.5, 0.0, 1.4],
        ];
        let gold = [0, 1, 1, 1, 2, 0, 2, 2];
        let c = calibration(&rows, &gold, ECE_BINS);
        assert!((c.ece - 0.2683999173808666).abs() < 1e-6, "{}", c.ece);
        assert_eq!(c.bins.len(), 15);
        let counts: Vec<usize> = c.bins.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 0, 0, 0, 0, 1, 1, 2, 0, 1, 0, 1, 0, 1, 1]);
        let b7 = &c.bins[7];
        assert!((b7.confidence.unwrap() - 0.4708233904241627).abs() < 1e-6);
        assert_eq!(b7.accuracy, Some(0.5));
        assert_eq!(c.bins[0].confidence, None);
        assert!((b7.lower - 7.0 / 15.0).abs() < 1e-12 && (b7.upper - 8.0 / 15.0).abs() < 1e-12);
        assert_eq!(c.bins[14].upper, 1.0);
    }

    #[test]
    fn perfectly_calibrated_bins_give_zero() {
        // Confidence 0.75 in one bin, 3 of 4 right; confidence 1.0, all right.
        let conf = [0.75, 0.75, 0.75, 0.75, 1.0, 1.0];
        let ok = [true, true, true, false, true, true];
        assert!(calibration_of(&conf, &ok, ECE_BINS).ece.abs() < 1e-12);
        // Always 90% sure and always wrong: ECE 0.9.
        assert!((calibration_of(&[0.9; 4], &[false; 4], 15).ece - 0.9).abs() < 1e-12);
    }

    #[test]
    fn confidence_is_the_largest_softmax_probability() {
        // softmax([0, ln 3]) = [0.25, 0.75]
        let c = confidences(&[vec![0.0, 3f32.ln()], vec![1.0, 1.0]]);
        assert!((c[0] - 0.75).abs() < 1e-6 && (c[1] - 0.5).abs() < 1e-12);
    }
}
