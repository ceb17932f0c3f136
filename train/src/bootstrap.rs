//! Percentile-bootstrap confidence intervals for dev-set metrics (Efron & Tibshirani, *An Introduction
//! to the Bootstrap*, 1993, ch. 13): draw the dev examples with replacement, score every resample with
//! the same metric code as the point estimate, and take the (1 - level)/2 and (1 + level)/2 percentiles
//! of the resampled scores. The resampling is seeded, so a report is reproducible; with several dev
//! sets (MNLI matched and mismatched) each is resampled within itself, keeping its size.

use std::collections::BTreeMap;

use data::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::eval::{score_dev_sets, Predictions};
use inference::percentile;

/// A two-sided interval `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    pub fn width(&self) -> f64 {
        self.high - self.low
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Resamples drawn (1,000 keeps the Monte Carlo error of a 95% bound near 0.1 points of accuracy
    /// on a dev set of ~1,000 examples, well below the interval's own width).
    pub resamples: usize,
    /// Coverage of the interval, e.g. 0.95.
    pub level: f64,
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 1000,
            level: 0.95,
            seed: 0,
        }
    }
}

/// Percentile intervals of named statistics. `sizes[k]` is the number of examples of data set k; each
/// resample draws `sizes[k]` indices with replacement within every set and passes them to `stat`,
/// which returns the statistics of that resample by name.
pub fn bootstrap<F>(
    sizes: &[usize],
    cfg: &BootstrapConfig,
    mut stat: F,
) -> BTreeMap<String, Interval>
where
    F: FnMut(&[Vec<usize>]) -> BTreeMap<String, f64>,
{
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut idx: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![0; n]).collect();
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..cfg.resamples {
        for (v, &n) in idx.iter_mut().zip(sizes) {
            // (An empty set has no slots, so `0..0` is never sampled.)
            for x in v.iter_mut() {
                *x = rng.random_range(0..n);
            }
        }
        for (k, v) in stat(&idx) {
            samples.entry(k).or_default().push(v);
        }
    }
    let tail = (1.0 - cfg.level.clamp(0.0, 1.0)) / 2.0;
    samples
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let interval = Interval {
                low: percentile(&v, tail),
                high: percentile(&v, 1.0 - tail),
            };
            (k, interval)
        })
        .collect()
}

/// Intervals of every metric value of `sets` (as `eval::score_dev_sets` names them) and of the main
/// score (key `main`), scoring each resample with `eval::score_dev_sets`.
pub fn score_intervals(
    sets: &[(String, Predictions)],
    metric: Metric,
    cfg: &BootstrapConfig,
) -> BTreeMap<String, Interval> {
    let sizes: Vec<usize> = sets.iter().map(|(_, p)| p.len()).collect();
    bootstrap(&sizes, cfg, |idx| {
        let resampled: Vec<(String, Predictions)> = sets
            .iter()
            .zip(idx)
            .map(|((suffix, p), i)| (suffix.clone(), p.select(i)))
            .collect();
        let s = score_dev_sets(&resampled, metric);
        let mut out = s.values;
        out.insert("main".into(), s.main);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` examples of which the first `correct` are predicted right (binary classes).
    fn preds(n: usize, correct: usize) -> Predictions {
        let gold: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let pred = gold
            .iter()
            .enumerate()
            .map(|(i, &g)| if i < correct { g } else { 1 - g })
            .collect();
        Predictions::Classes { pred, gold }
    }

    fn accuracy_interval(n: usize, correct: usize, seed: u64) -> Interval {
        let cfg = BootstrapConfig {
            seed,
            ..Default::default()
        };
        score_intervals(
            &[(String::new(), preds(n, correct))],
            Metric::Accuracy,
            &cfg,
        )["accuracy"]
    }

    #[test]
    fn interval_contains_the_point_estimate_and_is_deterministic() {
        let i = accuracy_interval(500, 400, 7);
        assert!(i.contains(0.8), "{i:?}");
        assert!(i.low < 0.8 && 0.8 < i.high);
        assert_eq!(
            i,
            accuracy_interval(500, 400, 7),
            "same seed, same interval"
        );
        assert_ne!(
            i,
            accuracy_interval(500, 400, 8),
            "another seed resamples differently"
        );
    }

    #[test]
    fn interval_shrinks_with_more_examples() {
        // Width goes as 1/sqrt(n): 20x the examples, about 4.5x narrower.
        let small = accuracy_interval(100, 80, 1).width();
        let large = accuracy_interval(2000, 1600, 1).width();
        assert!(large < small / 3.0, "{small} vs {large}");
    }

    #[test]
    fn accuracy_interval_is_close_to_the_normal_approximation() {
        // p ± 1.96 sqrt(p (1 - p) / n) for p = 0.8, n = 1000: [0.7752, 0.8248].
        let (p, n) = (0.8f64, 1000.0);
        let h = 1.96 * (p * (1.0 - p) / n).sqrt();
        let i = accuracy_interval(1000, 800, 3);
        assert!((i.low - (p - h)).abs() < 0.006, "{i:?}");
        assert!((i.high - (p + h)).abs() < 0.006, "{i:?}");
    }

    #[test]
    fn several_dev_sets_are_resampled_each_within_itself() {
        // MNLI-like: matched all right, mismatched all wrong. A set resampled within itself keeps its
        // accuracy exactly; mixing the sets would not.
        let sets = vec![
            (String::new(), preds(50, 50)),
            ("mm".to_string(), preds(30, 0)),
        ];
        let iv = score_intervals(&sets, Metric::Accuracy, &BootstrapConfig::default());
        assert_eq!(
            iv["accuracy"],
            Interval {
                low: 1.0,
                high: 1.0
            }
        );
        assert_eq!(
            iv["accuracy_mm"],
            Interval {
                low: 0.0,
                high: 0.0
            }
        );
        assert_eq!(
            iv["main"],
            Interval {
                low: 0.5,
                high: 0.5
            }
        );
    }

    #[test]
    fn regression_metrics_get_intervals() {
        let pred: Vec<f64> = (0..200).map(|i| (i as f64 * 0.37).sin()).collect();
        let gold: Vec<f64> = pred
            .iter()
            .enumerate()
            .map(|(i, p)| p + 0.5 * (i as f64 * 1.3).cos())
            .collect();
        let p = Predictions::Regression { pred, gold };
        let point = p.score(Metric::PearsonSpearman);
        let iv = score_intervals(
            &[(String::new(), p)],
            Metric::PearsonSpearman,
            &BootstrapConfig::default(),
        );
        for k in ["pearson", "spearman"] {
            assert!(iv[k].contains(point.values[k]), "{k}: {:?}", iv[k]);
        }
        assert!(iv["main"].contains(point.main));
    }
}
