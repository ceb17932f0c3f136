//! The report's figures: training curves from `metrics.jsonl`, confusion matrices, reliability diagrams,
//! latency and size bars, drawn by plots.rs.

use std::collections::BTreeMap;

use anyhow::Result;
use train::calibration::Calibration;
use train::records::{self, Record};

use super::{ModelSummary, Plot, Report};
use crate::report::plots::{self, BarPanel, Series};

/// A loss term's name in the figure's legend.
fn term_label(name: &str) -> String {
    match name {
        "kd" => "kd (teacher soft targets)".into(),
        "ce" => "task (gold labels)".into(),
        _ => name.into(),
    }
}

/// Loss terms and dev metrics by step from a training log (`metrics.jsonl`, `train::records`): the
/// total loss and each term's raw value, and each dev metric. A resumed run logs some steps twice;
/// the later line wins.
pub(super) fn training_series(log: &str) -> (Vec<Series>, Vec<Series>) {
    let mut losses: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let mut dev: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    let finite = |x: f64| x.is_finite().then_some(x);
    for rec in records::read(log) {
        match rec {
            Record::Eval(e) => {
                for (k, x) in e.dev {
                    dev.entry(k).or_default().insert(e.step as u64, x);
                }
            }
            Record::Step(s) => {
                let step = s.step as u64;
                if let Some(x) = finite(s.loss as f64) {
                    losses
                        .entry("total loss".into())
                        .or_default()
                        .insert(step, x);
                }
                for (k, v) in s.terms {
                    if let Some(x) = finite(v.raw as f64) {
                        losses.entry(term_label(&k)).or_default().insert(step, x);
                    }
                }
            }
        }
    }
    let series = |m: BTreeMap<String, BTreeMap<u64, f64>>, rename: &dyn Fn(&str) -> String| {
        m.into_iter()
            .map(|(k, pts)| Series {
                name: rename(&k),
                points: pts.into_iter().map(|(s, x)| (s as f64, x)).collect(),
            })
            .collect::<Vec<_>>()
    };
    let mut losses = series(losses, &|k| k.into());
    // The total first, so that it keeps the first colour.
    losses.sort_by_key(|s| s.name != "total loss");
    (losses, series(dev, &|k| format!("student {k}")))
}

/// The figures of `report` (file name relative to the report, PNG bytes), with their titles.
pub(super) fn figures(report: &Report, log: Option<&str>) -> Result<Vec<(Plot, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut add = |file: &str, title: &str, png: Vec<u8>| {
        out.push((
            Plot {
                title: title.into(),
                file: format!("plots/{file}"),
            },
            png,
        ))
    };
    if let Some(log) = log {
        let (losses, dev) = training_series(log);
        let refs: Vec<(String, f64)> = report
            .teacher
            .dev
            .values
            .iter()
            .filter(|(k, _)| dev.iter().any(|s| s.name == format!("student {k}")))
            .map(|(k, v)| (format!("teacher {k}"), *v))
            .collect();
        add(
            "training_curves.png",
            "Training curves",
            plots::training_curves(&losses, &dev, &refs)?,
        );
    }
    let models = report.models();
    let confusion: Vec<(&str, &[Vec<usize>])> = models
        .iter()
        .filter_map(|m| m.confusion.as_deref().map(|c| (m.name.as_str(), c)))
        .collect();
    if !confusion.is_empty() {
        add(
            "confusion.png",
            "Confusion matrices (main dev set)",
            plots::confusion_matrices(&confusion, &report.labels)?,
        );
    }
    let reliability: Vec<(&str, &Calibration)> = models
        .iter()
        .filter_map(|m| m.calibration.as_ref().map(|c| (m.name.as_str(), c)))
        .collect();
    if !reliability.is_empty() {
        add(
            "reliability.png",
            "Reliability diagrams (main dev set)",
            plots::reliability_diagrams(&reliability)?,
        );
    }
    let bars =
        |title: String, unit: &str, decimals: usize, f: &dyn Fn(&ModelSummary) -> f64| BarPanel {
            title,
            unit: unit.into(),
            decimals,
            bars: models.iter().map(|m| (m.name.clone(), f(m))).collect(),
        };
    add(
        "latency.png",
        "Latency and throughput",
        plots::bar_panels(&[
            bars(
                "Batch-1 latency, p50 (lower is better)".into(),
                " ms",
                1,
                &|m| m.latency.p50_ms,
            ),
            bars(
                "Batch-1 latency, p99 (lower is better)".into(),
                " ms",
                1,
                &|m| m.latency.p99_ms,
            ),
            bars(
                format!(
                    "Throughput at batch {}, examples/s (higher is better)",
                    report.batch_size
                ),
                "",
                1,
                &|m| m.examples_per_second,
            ),
        ])?,
    );
    add(
        "size.png",
        "Size",
        plots::bar_panels(&[
            bars("Size on disk".into(), " MB", 1, &|m| {
                m.size_bytes as f64 / 1e6
            }),
            bars("Parameters".into(), "M", 2, &|m| m.parameters as f64 / 1e6),
        ])?,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_log_gives_loss_terms_and_dev_metrics() {
        let log = r#"{"step":1,"epoch":0.1,"loss":0.75,"terms":{"kd":{"raw":0.98,"weighted":0.49},"ce":{"raw":0.66,"weighted":0.33}},"lr":1e-6,"grad_norm":1.2}
{"step":10,"epoch":0.2,"loss":0.80,"terms":{"kd":{"raw":0.90,"weighted":0.45},"ce":{"raw":0.65,"weighted":0.32}},"lr":2e-6,"grad_norm":1.5}
{"step":10,"epoch":1.0,"dev":{"accuracy":0.73,"f1":0.7},"dev_main":0.715}
not json
{"step":10,"epoch":0.2,"loss":0.375,"terms":{"kd":{"raw":0.5,"weighted":0.25},"ce":{"raw":0.3,"weighted":0.15}},"lr":2e-6,"grad_norm":1.5}
"#;
        let (losses, dev) = training_series(log);
        let names: Vec<&str> = losses.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "total loss",
                "kd (teacher soft targets)",
                "task (gold labels)"
            ]
        );
        // Step 10 was logged twice (a resumed run): the later value wins.
        assert_eq!(losses[0].points, vec![(1.0, 0.75), (10.0, 0.375)]);
        let names: Vec<&str> = dev.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["student accuracy", "student f1"]);
        assert_eq!(dev[0].points, vec![(10.0, 0.73)]);
    }
}
