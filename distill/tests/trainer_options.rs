//! The trainer's options end to end through the config: `train.schedule` reaches the optimizer (the
//! learning rates in metrics.jsonl), `train.early_stopping` stops a run whose dev score stalls, a resumed
//! run that stopped stays stopped, and a metric the task lacks is refused with its key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;

use common::{fails, ok, tiny_run};
use serde_json::Value;

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("student/train_report.json")).unwrap())
        .unwrap()
}

#[test]
fn schedules_shape_the_logged_learning_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let mut logged = Vec::new();
    for schedule in ["linear", "cosine", "constant"] {
        let out = tmp.path().join(schedule);
        ok(&tiny_run(
            &out,
            &[
                &format!("train.schedule={schedule}"),
                "train.learning_rate=1.0e-3",
            ],
        ));
        // (step, lr) every 10 updates, after the warmup (10% of the updates).
        let lrs: Vec<(u64, f64)> = lines(&out.join("student/metrics.jsonl"))
            .iter()
            .filter_map(|l| Some((l["step"].as_u64()?, l["lr"].as_f64()?)))
            .filter(|(step, _)| *step >= 10)
            .collect();
        assert!(lrs.len() >= 3, "{schedule}: {lrs:?}");
        logged.push(lrs);
    }
    let (linear, cosine, constant) = (&logged[0], &logged[1], &logged[2]);
    assert!(constant.iter().all(|(_, lr)| *lr == 1e-3), "{constant:?}");
    // Half a cosine stays above the straight line early on and falls below it late.
    let (first, last) = (0, linear.len() - 1);
    assert!(cosine[first].1 > linear[first].1, "{cosine:?} {linear:?}");
    assert!(cosine[last].1 < linear[last].1, "{cosine:?} {linear:?}");
    assert!(linear.windows(2).all(|w| w[1].1 < w[0].1), "{linear:?}");
}

#[test]
fn early_stopping_stops_a_stalled_run_and_stays_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let sets = [
        "train.epochs=40",
        "train.early_stopping={patience: 2}",
        "train.learning_rate=1.0e-2",
    ];
    ok(&tiny_run(&out, &sets));
    let r = report(&out);
    assert_eq!(r["stopped_early"], true, "{r}");
    let steps = r["steps"].as_u64().unwrap();
    let evals = r["history"].as_array().unwrap();
    let per_epoch = evals[0]["step"].as_u64().unwrap();
    assert!(steps < 40 * per_epoch, "{steps} steps");
    // The last two evaluations are no better than the best before them.
    let main: Vec<f64> = evals
        .iter()
        .map(|e| e["scores"]["main"].as_f64().unwrap())
        .collect();
    let n = main.len();
    let before = main[..n - 2].iter().copied().fold(f64::MIN, f64::max);
    assert!(main[n - 2..].iter().all(|&m| m <= before), "{main:?}");
    // Killed after the trainer stopped but before the stage was marked done: the same command resumes
    // from last/, sees that the run had stopped, and trains no further.
    std::fs::remove_file(out.join("student/done.json")).unwrap();
    let best = std::fs::read(out.join("student/best/model.safetensors")).unwrap();
    ok(&tiny_run(&out, &sets));
    let again = report(&out);
    assert_eq!(again["steps"], steps, "{again}");
    assert_eq!(again["resumed_from"], steps, "{again}");
    assert_eq!(
        std::fs::read(out.join("student/best/model.safetensors")).unwrap(),
        best
    );
}

#[test]
fn an_early_stopping_metric_the_task_lacks_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tiny_run(
        tmp.path(),
        &["train.early_stopping={patience: 2, metric: spearman}"],
    );
    fails(
        &o,
        &[
            "train.early_stopping.metric",
            "`spearman` is not a dev metric of task sst2 (accuracy)",
        ],
    );
    let o = tiny_run(
        tmp.path(),
        &["teacher.finetune.early_stopping={patience: 0}"],
    );
    fails(
        &o,
        &["teacher.finetune.early_stopping.patience: must be positive"],
    );
}
