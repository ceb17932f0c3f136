//! A whole run, `distill run`: the stages in order (teacher and targets, student, compare, export),
//! each timed, and `distill compare`: the teacher the teacher stage made and the trained student, side
//! by side in the report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::plan::Plan;
use crate::report::{self, Report};

/// Every stage in order, timing each (written to `timings.json`); returns the comparison report.
pub fn run_all(plan: &Plan) -> Result<Report> {
    let mut times = serde_json::Map::new();
    let mut timed = |name: &str, t0: Instant| {
        let s = t0.elapsed().as_secs_f64();
        eprintln!("== {name}: {s:.1} s");
        times.insert(name.into(), s.into());
    };
    let t0 = Instant::now();
    plan.teacher()?;
    timed("teacher", t0);
    let t0 = Instant::now();
    plan.train()?;
    timed("train", t0);
    let t0 = Instant::now();
    let report = compare(plan, &[])?;
    timed("compare", t0);
    let t0 = Instant::now();
    plan.export(None, false, false)?;
    timed("export", t0);
    let text = serde_json::to_string_pretty(&times)?;
    modeling::write_atomic(&plan.out().join("timings.json"), text.as_bytes())?;
    Ok(report)
}

/// The teacher and the student on the dev set (`runs`: other runs' students for the seed summary).
pub fn compare(plan: &Plan, runs: &[PathBuf]) -> Result<Report> {
    let teacher = plan.teacher_model()?;
    report::compare(plan, teacher, runs)
}
