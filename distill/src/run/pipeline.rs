//! A whole run, `distill run`: the stages in order (teacher and targets, student, compare, export),
//! each timed, and `distill compare`: the teacher the teacher stage made and the trained student, side
//! by side in the report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use super::{ExportStage, Plan, StudentStage, TeacherStage};
use crate::report::{self, Report};
use inference::Runtime;

/// Every stage in order, timing each (written to `timings.json`); returns the comparison report. The
/// caller has made `check::config_alone` first.
pub fn run_all(plan: &Plan) -> Result<Report> {
    let mut times = serde_json::Map::new();
    let mut timed = |name: &str, t0: Instant| {
        let s = t0.elapsed().as_secs_f64();
        tracing::info!("== {name}: {s:.1} s");
        times.insert(name.into(), s.into());
    };
    let t0 = Instant::now();
    TeacherStage::new(plan).targets()?;
    timed("teacher", t0);
    let t0 = Instant::now();
    StudentStage::new(plan).train()?;
    timed("train", t0);
    let t0 = Instant::now();
    let report = compare(plan, &[], Runtime::Candle)?;
    timed("compare", t0);
    let t0 = Instant::now();
    ExportStage::new(plan).write(None, false, false)?;
    timed("export", t0);
    let text = serde_json::to_string_pretty(&times)?;
    modeling::write_atomic(&plan.out().join("timings.json"), text.as_bytes())?;
    Ok(report)
}

/// The teacher and the student on the dev set (`runs`: other runs' students for the seed summary).
pub fn compare(plan: &Plan, runs: &[PathBuf], runtime: Runtime) -> Result<Report> {
    let teacher = TeacherStage::new(plan).model()?;
    let ctx = report::Context {
        spec: plan.spec().clone(),
        dev_sets: plan.dev_sets()?,
        seed: plan.cfg().seed,
        device: plan.device().clone(),
        batch_size: plan.cfg().teacher.batch_size,
        teacher_name: plan.cfg().teacher.model.clone(),
        student: plan.student_dir().join("best"),
        student_tokenizer: plan.student_tokenizer()?,
        training_log: std::fs::read_to_string(plan.student_dir().join("metrics.jsonl")).ok(),
        out: plan.out().to_path_buf(),
    };
    let report = report::compare(&ctx, teacher, runs, runtime)?;
    teacher_line(plan, &report)?;
    Ok(report)
}

/// The teacher's dev scores beside the student's curves in TensorBoard (`dev/teacher_METRIC`): a constant
/// line, the same values at the student's first and last evaluation.
fn teacher_line(plan: &Plan, report: &Report) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(plan.student_dir().join("train_report.json")) else {
        return Ok(());
    };
    let trained: train::TrainReport = serde_json::from_str(&text)?;
    let mut steps: Vec<usize> = trained.history.iter().map(|h| h.step).collect();
    steps.sort_unstable();
    steps.dedup();
    let ends = [steps.first(), steps.last()];
    let values: Vec<(String, f64)> = report
        .teacher
        .dev
        .values
        .iter()
        .map(|(k, v)| (format!("dev/teacher_{k}"), *v))
        .collect();
    let mut tb = train::tensorboard::EventWriter::create(&plan.tensorboard_dir("student"))?;
    for step in ends
        .into_iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
    {
        tb.scalars(*step, &values)?;
    }
    Ok(())
}

/// After a suite (`glue`, `sweep`) has written its table: an error naming the `failed` ones of `total`
/// `things` (tasks, trials), pointing at the table that holds the others; Ok when none failed.
pub(crate) fn fail_if_any(
    things: &str,
    failed: &[&str],
    total: usize,
    table: &std::path::Path,
) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "{} of {total} {things} failed ({}); {} has the others",
        failed.len(),
        failed.join(", "),
        table.display()
    )
}
