//! `distill glue`: runs a list of GLUE tasks (one config each, `CONFIGS/<task>.yaml`) and writes the
//! model-card style table with teacher and student side by side and % of teacher retained (glue.md,
//! glue.json), plus GLUE-submission prediction files for the test sets (`<Task>.tsv`: index, prediction).
//! The GLUE score averages tasks, a task's two numbers (F1/accuracy, Pearson/Spearman) averaged first,
//! as the leaderboard does.

use std::path::PathBuf;

use anyhow::{Context, Result};
use data::tasks::{read_test, TestRow};
use data::Label;
use modeling::{Classifier, ModelSource};
use serde::Serialize;

use std::rc::Rc;

use train::dist::Group;

use crate::config;
use crate::report::Report;
use crate::run::plan::Plan;
use inference::Lock;

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
    /// Print the table as JSON (glue.json's content) instead of markdown.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub task: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What became of one task of the suite.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Teacher and student trained and compared.
    Done {
        report: Box<Report>,
        submission: Option<PathBuf>,
    },
    /// WNLI: the training set's majority class, as GLUE practice reports it (every model is at chance
    /// there); the same figure stands for teacher and student.
    Majority {
        label: String,
        dev_accuracy: f64,
        submission: Option<PathBuf>,
    },
    /// No training data at the configured place.
    Skipped { reason: String },
    /// The task stopped with an error; the others went on.
    Failed { reason: String },
}

/// The leaderboard's per-task number: the mean of the task's metrics, in percent.
pub fn task_score(values: &std::collections::BTreeMap<String, f64>) -> f64 {
    100.0 * values.values().sum::<f64>() / values.len().max(1) as f64
}

/// Runs every task, one after the other. A task that fails is recorded in the table with its reason and the
/// others go on; the table is written either way, and the command fails at the end if any task did.
pub fn run(a: &GlueArgs) -> Result<Vec<Row>> {
    let _lock = Lock::folder(&a.out)?;
    let mut rows = Vec::new();
    for task in &a.tasks {
        tracing::info!("glue: {task}");
        let outcome = run_task(task, a).unwrap_or_else(|e| {
            tracing::error!("glue: {task} failed: {e:#}");
            Outcome::Failed {
                reason: format!("{e:#}"),
            }
        });
        if let Outcome::Skipped { reason } = &outcome {
            tracing::info!("glue: skipping {task}: {reason}");
        }
        rows.push(Row {
            task: task.clone(),
            outcome,
        });
    }
    let md = markdown(&rows);
    modeling::write_atomic(&a.out.join("glue.md"), md.as_bytes())?;
    modeling::write_atomic(
        &a.out.join("glue.json"),
        serde_json::to_string_pretty(&rows)?.as_bytes(),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{md}");
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
        .map(|r| r.task.as_str())
        .collect();
    crate::run::pipeline::fail_if_any("tasks", &failed, rows.len(), &a.out.join("glue.md"))?;
    Ok(rows)
}

fn run_task(task: &str, a: &GlueArgs) -> Result<Outcome> {
    let path = a.configs.join(format!("{task}.yaml"));
    let mut cfg = config::load(&path, &a.set)?;
    // Each task's run lives beside the table, so a suite never collides with single-task runs.
    cfg.output_dir = a.out.join(task);
    let device = cfg.device.select()?;
    let plan = Plan::new(cfg, device, Rc::new(Group::single()))?;
    let train_file = plan.cfg().data.dir.join(&plan.spec().train_file);
    if plan.cfg().data.hub.is_none() && !train_file.is_file() {
        return Ok(Outcome::Skipped {
            reason: format!("no training data at {}", train_file.display()),
        });
    }
    if plan.spec().name == "wnli" {
        let _lock = plan.lock()?;
        return majority(&plan, a);
    }
    crate::run::check::config_alone(&plan)?;
    let _lock = plan.lock()?;
    let report = crate::run::pipeline::run_all(&plan)?;
    let submission = predict_test(&plan, a).context("test-set predictions")?;
    Ok(Outcome::Done {
        report: Box::new(report),
        submission,
    })
}

/// The majority class of the training set: its dev accuracy, and a submission that predicts it everywhere.
fn majority(plan: &Plan, a: &GlueArgs) -> Result<Outcome> {
    let (train, dev) = plan.read_data()?;
    let n = plan.spec().labels.len();
    let count = |set: &[data::Example], k: usize| {
        set.iter()
            .filter(|e| matches!(e.label, Label::Class(c) if c == k))
            .count()
    };
    // The first of the most frequent classes (ties go to the lower index).
    let k = (0..n)
        .rev()
        .max_by_key(|&k| count(&train, k))
        .context("the task has no classes")?;
    let label = plan.spec().labels[k].clone();
    let dev_accuracy = count(&dev, k) as f64 / dev.len().max(1) as f64;
    tracing::info!(
        "glue: {}: the majority class `{label}` (GLUE practice), dev accuracy {:.1}",
        plan.spec().name,
        100.0 * dev_accuracy
    );
    let submission = write_submissions(plan, a, |_| label.clone())?;
    Ok(Outcome::Majority {
        label,
        dev_accuracy,
        submission,
    })
}

/// Writes `<Task>.tsv` submission files of the student's predictions for the task's test sets that exist.
fn predict_test(plan: &Plan, a: &GlueArgs) -> Result<Option<PathBuf>> {
    let files = ModelSource::Local(plan.student_dir().join("best")).resolve(false)?;
    let (model, _) = Classifier::load(&files, Some(plan.spec().num_outputs()), 0, plan.device())?;
    let tok = plan.student_tokenizer()?;
    let spec = plan.spec();
    let predict = |rows: &[TestRow]| -> Result<Vec<String>> {
        let enc = rows
            .iter()
            .map(|r| tok.encode(&r.text_a, r.text_b.as_deref()))
            .collect::<modeling::Result<Vec<_>>>()?;
        let logits: Vec<Vec<f32>> = inference::logits(
            &model,
            &enc,
            tok.pad_id(),
            plan.cfg().teacher.batch_size,
            Some("test"),
        )?
        .logits
        .to_vec2()?;
        Ok(logits
            .iter()
            .map(|l| {
                if spec.is_regression() {
                    format!("{:.3}", l[0].clamp(0.0, 5.0))
                } else {
                    spec.labels[inference::argmax(l)].clone()
                }
            })
            .collect())
    };
    write_test_files(plan, a, predict)
}

/// Writes `<Task>.tsv` submission files predicting `label` for every row.
fn write_submissions(
    plan: &Plan,
    a: &GlueArgs,
    label: impl Fn(&TestRow) -> String,
) -> Result<Option<PathBuf>> {
    write_test_files(plan, a, |rows| Ok(rows.iter().map(&label).collect()))
}

/// Writes `<Task>.tsv` (index, prediction) for each of the task's test sets that exist, the predictions
/// from `predict`; the last file written.
fn write_test_files(
    plan: &Plan,
    a: &GlueArgs,
    predict: impl Fn(&[TestRow]) -> Result<Vec<String>>,
) -> Result<Option<PathBuf>> {
    let mut last = None;
    for (name, file, ca, cb) in plan.spec().glue_test_files() {
        let path = plan.cfg().data.dir.join(file);
        if !path.is_file() {
            continue;
        }
        let rows = read_test(&path, ca, cb)?;
        let preds = predict(&rows)?;
        let mut out = String::from("index\tprediction\n");
        for (r, pred) in rows.iter().zip(&preds) {
            out.push_str(&format!("{}\t{pred}\n", r.index));
        }
        let dest = a.out.join(format!("{name}.tsv"));
        modeling::write_atomic(&dest, out.as_bytes())?;
        tracing::info!(
            "glue: wrote {} ({} predictions)",
            dest.display(),
            rows.len()
        );
        last = Some(dest);
    }
    Ok(last)
}

/// The table: one line per task that ran (a majority-class row counts for teacher and student alike), the
/// mean over them, then a note for each task that was skipped or failed.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| task | metric | teacher | student | % of teacher |\n|---|---|---|---|---|\n",
    );
    let (mut t_sum, mut s_sum, mut scored) = (0.0, 0.0, 0);
    let mut notes = Vec::new();
    for r in rows {
        match &r.outcome {
            Outcome::Done { report, .. } => {
                let t = &report.teacher.dev.values;
                let st = &report.student.dev.values;
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
                scored += 1;
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    r.task,
                    names.join("/"),
                    fmt(t),
                    fmt(st),
                    percent(ss, ts)
                ));
            }
            Outcome::Majority {
                label,
                dev_accuracy,
                ..
            } => {
                let v = 100.0 * dev_accuracy;
                t_sum += v;
                s_sum += v;
                scored += 1;
                s.push_str(&format!(
                    "| {} | accuracy | {v:.1} (majority) | {v:.1} (majority) | |\n",
                    r.task
                ));
                notes.push(format!(
                    "{}: the majority class `{label}` of the training set, for teacher and student alike, as \
                     GLUE practice reports this task (every model is at chance on it).",
                    r.task
                ));
            }
            Outcome::Skipped { reason } => notes.push(format!("{}: skipped, {reason}.", r.task)),
            Outcome::Failed { reason } => {
                s.push_str(&format!("| {} | | failed | failed | |\n", r.task));
                notes.push(format!("{}: failed: {reason}", r.task));
            }
        }
    }
    if scored > 0 {
        let n = scored as f64;
        s.push_str(&format!(
            "| **score** (mean of {scored} task{}) | | {:.1} | {:.1} | {} |\n",
            if scored == 1 { "" } else { "s" },
            t_sum / n,
            s_sum / n,
            percent(s_sum, t_sum)
        ));
    }
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            s.push_str(&format!("- {n}\n"));
        }
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
