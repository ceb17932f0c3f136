//! `distill glue`: runs a list of GLUE tasks (one config each, `CONFIGS/<task>.yaml`) and writes the
//! model-card style table with teacher and student side by side and % of teacher retained (glue.md,
//! glue.json), plus GLUE-submission prediction files for the test sets (`<Task>.tsv`: index, prediction).
//! The GLUE score averages tasks, a task's two numbers (F1/accuracy, Pearson/Spearman) averaged first,
//! as the leaderboard does.

use std::path::PathBuf;

use anyhow::{Context, Result};
use data::tasks::read_test;
use modeling::{Classifier, ModelSource};
use serde::Serialize;

use std::sync::Arc;

use train::dist::Group;

use crate::config;
use crate::plan::Plan;
use crate::report::Report;

#[derive(clap::Args)]
pub struct GlueArgs {
    /// Tasks, comma-separated; tasks without training data are skipped with a note.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cola,sst2,mrpc,stsb,qqp,mnli,qnli,rte,wnli"
    )]
    pub tasks: Vec<String>,
    /// Folder holding `<task>.yaml` for each task.
    #[arg(long, default_value = "configs")]
    pub configs: PathBuf,
    /// Override applied to every task's config (repeatable), e.g. `--set train.epochs=1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where the table, the submission files and each task's run (`OUT/<task>/`) go.
    #[arg(long, default_value = "runs/glue")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub task: String,
    pub report: Report,
    pub submission: Option<PathBuf>,
}

/// The leaderboard's per-task number: the mean of the task's metrics, in percent.
pub fn task_score(values: &std::collections::BTreeMap<String, f64>) -> f64 {
    100.0 * values.values().sum::<f64>() / values.len().max(1) as f64
}

pub fn run(a: &GlueArgs) -> Result<Vec<Row>> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let mut rows = Vec::new();
    for task in &a.tasks {
        let path = a.configs.join(format!("{task}.yaml"));
        let mut cfg = config::load(&path, &a.set)?;
        // Each task's run lives beside the table, so a suite never collides with single-task runs.
        cfg.output_dir = a.out.join(task);
        let device = crate::device::select_device(&cfg.device)?;
        let plan = Plan::new(cfg, device, Arc::new(Group::single()))?;
        let train_file = plan.cfg().data.dir.join(&plan.spec().train_file);
        if !train_file.is_file() {
            eprintln!(
                "glue: skipping {task}: no training data at {}",
                train_file.display()
            );
            continue;
        }
        eprintln!("glue: {task}");
        let report = crate::pipeline::run_all(&plan).with_context(|| format!("task {task}"))?;
        let submission = predict_test(&plan, a)?;
        rows.push(Row {
            task: task.clone(),
            report,
            submission,
        });
    }
    let md = markdown(&rows);
    modeling::write_atomic(&a.out.join("glue.md"), md.as_bytes())?;
    modeling::write_atomic(
        &a.out.join("glue.json"),
        serde_json::to_string_pretty(&rows)?.as_bytes(),
    )?;
    println!("{md}");
    Ok(rows)
}

/// Writes `<Task>.tsv` submission files for the task's test sets that exist.
fn predict_test(plan: &Plan, a: &GlueArgs) -> Result<Option<PathBuf>> {
    let files = ModelSource::Local(plan.student_dir().join("best")).resolve(false)?;
    let (model, _) = Classifier::load(&files, Some(plan.spec().num_outputs()), 0, plan.device())?;
    let tok = plan.student_tokenizer()?;
    let mut last = None;
    for (name, file, ca, cb) in plan.spec().glue_test_files() {
        let path = plan.cfg().data.dir.join(file);
        if !path.is_file() {
            continue;
        }
        let rows = read_test(&path, ca, cb)?;
        let enc = rows
            .iter()
            .map(|r| tok.encode(&r.text_a, r.text_b.as_deref()))
            .collect::<modeling::Result<Vec<_>>>()?;
        let logits: Vec<Vec<f32>> =
            train::eval::logits(&model, &enc, tok.pad_id(), plan.cfg().teacher.batch_size)?
                .to_vec2()?;
        let mut out = String::from("index\tprediction\n");
        for (r, l) in rows.iter().zip(&logits) {
            let pred = if plan.spec().is_regression() {
                format!("{:.3}", l[0].clamp(0.0, 5.0))
            } else {
                let k = train::metrics::argmax_rows(std::slice::from_ref(l))[0];
                plan.spec().labels[k].clone()
            };
            out.push_str(&format!("{}\t{pred}\n", r.index));
        }
        let dest = a.out.join(format!("{name}.tsv"));
        modeling::write_atomic(&dest, out.as_bytes())?;
        eprintln!(
            "glue: wrote {} ({} predictions)",
            dest.display(),
            rows.len()
        );
        last = Some(dest);
    }
    Ok(last)
}

pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| task | metric | teacher | student | % of teacher |\n|---|---|---|---|---|\n",
    );
    let (mut t_sum, mut s_sum) = (0.0, 0.0);
    for r in rows {
        let t = &r.report.teacher.dev.values;
        let st = &r.report.student.dev.values;
        let names: Vec<&str> = t.keys().map(String::as_str).collect();
        let fmt = |v: &std::collections::BTreeMap<String, f64>| {
            v.values()
                .map(|x| format!("{:.1}", x * 100.0))
                .collect::<Vec<_>>()
                .join("/")
        };
        let (ts, ss) = (task_score(t), task_score(st));
        t_sum += ts;
        s_sum += ss;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.task,
            names.join("/"),
            fmt(t),
            fmt(st),
            percent(ss, ts)
        ));
    }
    if !rows.is_empty() {
        let n = rows.len() as f64;
        s.push_str(&format!(
            "| **score** (mean of tasks) | | {:.1} | {:.1} | {} |\n",
            t_sum / n,
            s_sum / n,
            percent(s_sum, t_sum)
        ));
    }
    s
}

/// `part` as a share of `whole`; undefined when the teacher scores zero or less (e.g. a Matthews
/// correlation of 0 from a teacher that predicts one class).
fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "n/a".into()
    }
}
