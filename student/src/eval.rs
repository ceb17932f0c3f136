//! Dev-set evaluation: run a classifier over tokenised examples and score it with the task's metric.

use candle_core::Tensor;
use teacher::infer::{self, Pooling};
use teacher::{Classifier, Encoded, Label, Metric};

use crate::metrics::{argmax_rows, score_classes, score_regression, Scores};
use crate::Result;

/// Logits [n, c] of `model` over `data` (eval mode, dataset order).
pub fn logits(
    model: &Classifier,
    data: &[Encoded],
    pad_id: u32,
    batch_size: usize,
) -> Result<Tensor> {
    if data.is_empty() {
        return Err(crate::Error::Msg("no examples to evaluate".into()));
    }
    let bar = crate::progress_bar(data.len() as u64, "eval");
    let out = infer::run(
        model,
        data,
        pad_id,
        batch_size,
        &[],
        Pooling::Cls,
        Some(&bar),
    );
    bar.finish_and_clear();
    Ok(out?.logits)
}

/// Scores logits [n, c] against gold labels with `metric` (regression when c == 1).
pub fn score(logits: &Tensor, gold: &[Label], metric: Metric) -> Result<Scores> {
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    if rows.first().is_some_and(|r| r.len() == 1) {
        let pred: Vec<f64> = rows.iter().map(|r| r[0] as f64).collect();
        let g: Vec<f64> = gold
            .iter()
            .map(|l| match l {
                Label::Score(s) => *s as f64,
                Label::Class(c) => *c as f64,
            })
            .collect();
        return Ok(score_regression(&pred, &g));
    }
    let pred = argmax_rows(&rows);
    let g: Vec<usize> = gold
        .iter()
        .map(|l| match l {
            Label::Class(c) => *c,
            Label::Score(s) => *s as usize,
        })
        .collect();
    Ok(score_classes(metric, &pred, &g))
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
