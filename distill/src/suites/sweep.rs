//! `distill sweep CONFIG`: the recipe's grid (batch size × learning rate, from `sweep:` in the config)
//! over one teacher. The teacher and its targets are made once in the run's output_dir; each trial trains
//! a student under `sweep/<trial>/` from those targets; several seeds give mean ± std; the best grid point
//! on dev (mean over seeds) is reported and its best checkpoint copied to `student/best`, so `distill
//! compare` and `distill export` apply to it. With `sweep.halving`, trials that cannot beat the others
//! stop early (successive halving at 1/4 and 1/2 of their updates).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::RunConfig;
use crate::run::{Plan, StudentStage, TeacherStage};

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub name: String,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    /// Best dev score (the task's main metric); None when stopped by halving before any evaluation.
    pub best: Option<f64>,
    pub steps: usize,
    pub stopped_early: bool,
    /// Why the trial stopped with an error (the other trials went on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GridPoint {
    pub batch_size: usize,
    pub learning_rate: f64,
    pub mean: f64,
    pub std: f64,
    pub seeds: usize,
}

fn trial_plan(parent: &Plan, b: usize, lr: f64, seed: u64) -> Result<Plan> {
    let mut cfg: RunConfig = parent.cfg().clone();
    cfg.train.batch_size = b;
    cfg.train.learning_rate = lr;
    let name = format!("bs{b}-lr{lr:e}-seed{seed}");
    cfg.output_dir = parent.out().join("sweep").join(&name);
    Plan::trial(parent, cfg, seed)
}

pub fn run(parent: &Plan) -> Result<Vec<GridPoint>> {
    TeacherStage::new(parent).targets()?;
    let w = &parent.cfg().sweep;
    let seeds = if w.seeds.is_empty() {
        vec![parent.cfg().seed]
    } else {
        w.seeds.clone()
    };
    let mut trials: Vec<(Plan, Trial)> = Vec::new();
    // Each trial's folder has its writer's lock too, held until the sweep ends.
    let mut locks = Vec::new();
    for &b in &w.batch_size {
        for &lr in &w.learning_rate {
            for &seed in &seeds {
                let p = trial_plan(parent, b, lr, seed)?;
                let failed = match p.lock() {
                    Ok(lock) => {
                        locks.push(lock);
                        None
                    }
                    Err(e) => Some(format!("{e:#}")),
                };
                let name = p
                    .out()
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                trials.push((
                    p,
                    Trial {
                        name,
                        batch_size: b,
                        learning_rate: lr,
                        seed,
                        best: None,
                        steps: 0,
                        stopped_early: false,
                        failed,
                    },
                ));
            }
        }
    }
    let n_train = parent.num_train_examples()?;
    let rungs: &[f64] = if w.halving { &[0.25, 0.5, 1.0] } else { &[1.0] };
    let mut alive: Vec<usize> = (0..trials.len())
        .filter(|&i| trials[i].1.failed.is_none())
        .collect();
    for (r, &frac) in rungs.iter().enumerate() {
        for &i in &alive {
            let (plan, trial) = &mut trials[i];
            let total = plan.planned_steps(n_train);
            let until = ((total as f64 * frac).ceil() as usize).max(1);
            tracing::info!(
                "sweep: {} ({} of {total} updates)",
                trial.name,
                until.min(total)
            );
            // A failed trial is recorded with its reason; the others go on.
            match StudentStage::new(plan).train_until(&|step| step >= until && frac < 1.0) {
                Ok(report) => {
                    trial.best = report.best.as_ref().map(|b| b.scores.main);
                    trial.steps = report.steps;
                }
                Err(e) => {
                    tracing::error!("sweep: {} failed: {e:#}", trial.name);
                    trial.failed = Some(format!("{e:#}"));
                }
            }
        }
        alive.retain(|&i| trials[i].1.failed.is_none());
        if r + 1 < rungs.len() {
            alive.sort_by(|&a, &b| {
                let s = |i: usize| trials[i].1.best.unwrap_or(f64::NEG_INFINITY);
                s(b).total_cmp(&s(a))
            });
            let keep = alive.len().div_ceil(2);
            for &i in &alive[keep..] {
                trials[i].1.stopped_early = true;
            }
            alive.truncate(keep);
        }
    }
    // Mean ± std over seeds per grid point, over trials that ran to the end.
    let mut groups: BTreeMap<(usize, u64), Vec<f64>> = BTreeMap::new();
    for (_, t) in trials
        .iter()
        .filter(|(_, t)| !t.stopped_early && t.failed.is_none())
    {
        if let Some(b) = t.best {
            groups
                .entry((t.batch_size, t.learning_rate.to_bits()))
                .or_default()
                .push(b);
        }
    }
    let mut points: Vec<GridPoint> = groups
        .into_iter()
        .map(|((b, lr), v)| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let std = if v.len() > 1 {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            GridPoint {
                batch_size: b,
                learning_rate: f64::from_bits(lr),
                mean,
                std,
                seeds: v.len(),
            }
        })
        .collect();
    points.sort_by(|a, b| b.mean.total_cmp(&a.mean));
    let all: Vec<&Trial> = trials.iter().map(|(_, t)| t).collect();
    let json = serde_json::json!({"grid": points, "trials": all, "best": points.first()});
    modeling::write_atomic(
        &parent.out().join("sweep.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    let table = parent.out().join("sweep.md");
    modeling::write_atomic(&table, markdown(&points, &all).as_bytes())?;
    if let Some(best) = points.first() {
        // Keep the best grid point's best seed as the run's student.
        let winner = trials
            .iter()
            .filter(|(_, t)| {
                !t.stopped_early
                    && t.failed.is_none()
                    && t.batch_size == best.batch_size
                    && t.learning_rate == best.learning_rate
            })
            .max_by(|a, b| {
                a.1.best
                    .unwrap_or(f64::MIN)
                    .total_cmp(&b.1.best.unwrap_or(f64::MIN))
            })
            .context("no winning trial")?;
        copy_dir(
            &winner.0.student_dir().join("best"),
            &parent.student_dir().join("best"),
        )?;
        tracing::info!(
            "sweep: best batch {} lr {:e}: dev {:.4} ± {:.4} ({} seeds); copied to {}",
            best.batch_size,
            best.learning_rate,
            best.mean,
            best.std,
            best.seeds,
            parent.student_dir().join("best").display()
        );
    }
    let failed: Vec<&str> = all
        .iter()
        .filter(|t| t.failed.is_some())
        .map(|t| t.name.as_str())
        .collect();
    crate::run::pipeline::fail_if_any("trials", &failed, all.len(), &table)?;
    if points.is_empty() {
        bail!("no trial finished");
    }
    Ok(points)
}

fn markdown(points: &[GridPoint], trials: &[&Trial]) -> String {
    let mut s = String::from(
        "| batch size | learning rate | dev (mean ± std) | seeds |\n|---|---|---|---|\n",
    );
    for p in points {
        s.push_str(&format!(
            "| {} | {:e} | {:.2} ± {:.2} | {} |\n",
            p.batch_size,
            p.learning_rate,
            p.mean * 100.0,
            p.std * 100.0,
            p.seeds
        ));
    }
    let stopped: Vec<&str> = trials
        .iter()
        .filter(|t| t.stopped_early)
        .map(|t| t.name.as_str())
        .collect();
    if !stopped.is_empty() {
        s.push_str(&format!(
            "\nStopped early by successive halving: {}.\n",
            stopped.join(", ")
        ));
    }
    let failed: Vec<String> = trials
        .iter()
        .filter_map(|t| Some(format!("- {}: failed: {}\n", t.name, t.failed.as_ref()?)))
        .collect();
    if !failed.is_empty() {
        s.push_str("\nFailed trials (left out of the grid):\n\n");
        s.push_str(&failed.concat());
    }
    s
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_file_name("best.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    for e in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), tmp.join(e.file_name()))?;
        }
    }
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::rename(&tmp, to)?;
    Ok(())
}
