//! Dev-set evaluation: run a classifier over tokenised examples and score it with the task's metric.

use candle_core::Tensor;
use data::{Label, Metric};

use crate::metrics::{argmax_rows, score_classes, score_regression, Scores};
use crate::Result;

/// Scores logits [n, c] against gold labels with `metric` (regression when c == 1).
pub fn score(logits: &Tensor, gold: &[Label], metric: Metric) -> Result<Scores> {
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    Ok(Predictions::new(&rows, gold).score(metric))
}

/// A model's predictions beside the gold labels, in the form the metrics take: classes (argmax of the
/// logits) or regression scores. Computed once from the logits, then scored whole or resampled (the
/// bootstrap scores 1,000 resamples of it with the same metric code).
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    Classes { pred: Vec<usize>, gold: Vec<usize> },
    Regression { pred: Vec<f64>, gold: Vec<f64> },
}

impl Predictions {
    /// From logit rows [n][c] (regression when c == 1) and the gold labels.
    pub fn new(rows: &[Vec<f32>], gold: &[Label]) -> Self {
        if rows.first().is_some_and(|r| r.len() == 1) {
            let pred = rows.iter().map(|r| r[0] as f64).collect();
            let gold = gold
                .iter()
                .map(|l| match l {
                    Label::Score(s) => *s as f64,
                    Label::Class(c) => *c as f64,
                })
                .collect();
            return Predictions::Regression { pred, gold };
        }
        let gold = gold
            .iter()
            .map(|l| match l {
                Label::Class(c) => *c,
                Label::Score(s) => *s as usize,
            })
            .collect();
        Predictions::Classes {
            pred: argmax_rows(rows),
            gold,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Predictions::Classes { gold, .. } => gold.len(),
            Predictions::Regression { gold, .. } => gold.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The task's metric on these predictions.
    pub fn score(&self, metric: Metric) -> Scores {
        match self {
            Predictions::Classes { pred, gold } => score_classes(metric, pred, gold),
            Predictions::Regression { pred, gold } => score_regression(pred, gold),
        }
    }

    /// The examples at `idx` (repeats allowed), in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().filter_map(|&i| v.get(i).copied()).collect()
        }
        match self {
            Predictions::Classes { pred, gold } => Predictions::Classes {
                pred: pick(pred, idx),
                gold: pick(gold, idx),
            },
            Predictions::Regression { pred, gold } => Predictions::Regression {
                pred: pick(pred, idx),
                gold: pick(gold, idx),
            },
        }
    }
}

/// Adds the scores of a further dev set (MNLI mismatched) under `_{suffix}`; the main score becomes
/// the mean of all values, as the GLUE leaderboard averages MNLI-m and MNLI-mm.
pub fn add_dev_set(scores: &mut Scores, suffix: &str, more: Scores) {
    for (k, v) in more.values {
        scores.values.insert(format!("{k}_{suffix}"), v);
    }
    scores.main = scores.values.values().sum::<f64>() / scores.values.len().max(1) as f64;
}

/// Scores of several dev sets, given as (suffix, predictions) with the main set first (its suffix is
/// ignored): the main set's metrics, then each further set's under its suffix (see `add_dev_set`).
pub fn score_dev_sets(sets: &[(String, Predictions)], metric: Metric) -> Scores {
    let mut it = sets.iter();
    let mut scores = it.next().map_or_else(
        || Scores {
            values: Default::default(),
            main: 0.0,
        },
        |(_, p)| p.score(metric),
    );
    for (suffix, p) in it {
        add_dev_set(&mut scores, suffix, p.score(metric));
    }
    scores
}

/// Fraction of examples on which two logit matrices predict the same class (for regression: the share
/// of examples within 0.5 of each other).
pub fn agreement(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (ra, rb): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (a.to_vec2()?, b.to_vec2()?);
    if ra.is_empty() || ra.len() != rb.len() {
        return Ok(0.0);
    }
    let same = if ra[0].len() == 1 {
        ra.iter()
            .zip(&rb)
            .filter(|(x, y)| (x[0] - y[0]).abs() < 0.5)
            .count()
    } else {
        argmax_rows(&ra)
            .iter()
            .zip(argmax_rows(&rb))
            .filter(|(x, y)| **x == *y)
            .count()
    };
    Ok(same as f64 / ra.len() as f64)
}
