//! The one training loop, shared by every kind of training: a `Task` says what a step is (the batches
//! of an epoch, a micro-batch's loss and gradients, an evaluation, the vars and how to save them); this
//! module owns everything around it: epochs, gradient accumulation, AdamW with warmup and decay,
//! periodic evaluation, the metrics log and the report; one module each for the optimizer step
//! (`step`: micro-batches, gradients summed over the group), the checkpoints (`checkpoint`: the best one,
//! the `last/` one a killed run resumes from) and early stopping (`early_stopping`). The classification / distillation task lives in `train`, masked-LM
//! pre-training in `pretrain`.
//!
//! Exact resume: batch order, masks and dropout are functions of (seed, epoch, step), and `last/` holds
//! the weights, the optimizer moments and the step, so a resumed run follows the uninterrupted path.

use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::Var;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dist::Group;
use crate::metrics::Scores;
use crate::optim::{AdamW, AdamWConfig};
use crate::precision::LossScale;
use crate::records::{MetricsLog, Record};
use crate::settings::TrainSettings;
use crate::{Error, Result};

mod checkpoint;
mod early_stopping;
mod step;

use checkpoint::TrainerState;

/// One logged loss term of a step (averaged over its micro-batches).
#[derive(Debug, Clone)]
pub struct LoggedTerm {
    pub name: String,
    pub raw: f32,
    pub weighted: f32,
}

/// What a micro-batch produced.
pub struct MicroStep {
    pub grads: GradStore,
    pub loss: f32,
    pub terms: Vec<LoggedTerm>,
    /// Non-padding tokens in the micro-batch, for the throughput.
    pub tokens: usize,
}

/// What a kind of training plugs into the loop.
pub trait Task {
    /// Compared with the one in `last/` before resuming: a different config trains from the start.
    type Config: Clone + PartialEq + Serialize + DeserializeOwned;

    fn config(&self) -> &Self::Config;
    /// Size of the training set, also checked on resume.
    fn train_len(&self) -> usize;
    /// The micro-batches of `epoch` (indices into the training set), a function of (seed, epoch).
    fn epoch_batches(&self, epoch: usize) -> Result<Vec<Vec<usize>>>;
    /// What the loss of a micro-batch averages over (examples, predicted tokens): an accumulated step
    /// weights each micro-batch's loss by its share, so it equals the loss of the whole batch.
    fn loss_units(&self, batch: &[usize], epoch: usize) -> Result<usize>;
    /// Seeds the dropout masks of the next forward pass.
    fn reseed_dropout(&self, seed: u64);
    /// Forward and backward of one micro-batch, the loss multiplied by `scale` before backward.
    /// `step` is the optimizer step (0-based) for error messages, `progress` in [0, 1) for schedules.
    fn micro_step(
        &mut self,
        batch: &[usize],
        epoch: usize,
        scale: f64,
        step: usize,
        progress: f64,
    ) -> Result<MicroStep>;
    /// Scores on the held-out set.
    fn evaluate(&self) -> Result<Scores>;
    /// Whether `new` beats `old` (default: a higher main score).
    fn better(&self, new: &Scores, old: &Scores) -> bool {
        if self.lower_is_better() {
            new.main < old.main
        } else {
            new.main > old.main
        }
    }
    /// Whether a lower main dev score is the better one (a loss); higher by default (accuracy, F1, ...).
    fn lower_is_better(&self) -> bool {
        false
    }
    /// The optimizer's parameter groups with their learning-rate scales.
    fn param_groups(&self) -> Vec<(Vec<(String, Var)>, f64)>;
    /// Saves the model (for `best/` and `last/`).
    fn save_model(&self, dir: &Path) -> Result<()>;
    /// Saves training state beyond the model and optimizer (e.g. objective weights) into `dir`.
    fn save_state(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Restores what `save_model` and `save_state` wrote.
    fn load(&mut self, dir: &Path) -> Result<()>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub epoch: f64,
    pub scores: Scores,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub best: Option<EvalRecord>,
    pub history: Vec<EvalRecord>,
    pub steps: usize,
    pub seconds: f64,
    pub resumed_from: usize,
    /// Training tokens (non-padding) processed per second in this run.
    pub tokens_per_second: f64,
    /// Whether `early_stopping` ended the run before its epochs were done.
    #[serde(default)]
    pub stopped_early: bool,
}

/// Trains `task` until its epochs (or `max_steps`) are done, or `stop(step)` says so after an
/// evaluation and a `last/` checkpoint (a graceful interruption a later call resumes from).
/// Checkpoints go to `out/best` and `out/last`, the log to `out/metrics.jsonl` (and to TensorBoard event
/// files in `tensorboard`, when given).
///
/// In a data-parallel `group` of n processes, an optimizer step takes n · k micro-batches: rank r
/// computes the r-th k of them, the gradients are summed over the group, and every rank applies the
/// same update. Rank 0 alone evaluates, logs and writes files; the others read `last/` to resume.
pub fn run<T: Task>(
    task: &mut T,
    cfg: &TrainSettings,
    seed: u64,
    out: &Path,
    stop: &dyn Fn(usize) -> bool,
    group: &Group,
    tensorboard: Option<&Path>,
) -> Result<TrainReport> {
    if task.train_len() == 0 {
        return Err(Error::Msg("the training set is empty".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let k = cfg.gradient_accumulation.max(1);
    let world = group.world();
    // Every epoch has the same number of micro-batches (a function of the data size only).
    let steps_per_epoch = task.epoch_batches(0)?.len().div_ceil(k * world);
    let mut total = steps_per_epoch * cfg.epochs;
    if cfg.max_steps > 0 {
        total = total.min(cfg.max_steps);
    }
    let opt_cfg = AdamWConfig {
        learning_rate: cfg.learning_rate,
        weight_decay: cfg.weight_decay,
        max_grad_norm: cfg.max_grad_norm,
        warmup_steps: (cfg.warmup_ratio * total as f64).round() as usize,
        total_steps: total,
        schedule: cfg.schedule,
        ..Default::default()
    };
    let groups = task.param_groups();
    let vars: Vec<Var> = groups
        .iter()
        .flat_map(|(g, _)| g.iter().map(|(_, v)| v.clone()))
        .collect();
    let mut opt = AdamW::with_groups(groups, opt_cfg)?;
    let last_dir = out.join("last");
    let state = checkpoint::resume(task, &mut opt, &last_dir, group)?;
    step::same_start(&vars, group)?;
    if world > 1 && group.is_main() {
        // The flat buffer of all_reduce: every value and one presence flag per parameter.
        let floats: usize = vars.iter().map(|v| v.elem_count() + 1).sum();
        tracing::info!(
            "data-parallel: {:.1} MB of gradients summed per update ({})",
            floats as f64 * 4.0 / 1e6,
            if cfg.all_reduce.is_deterministic() {
                "deterministic"
            } else {
                "fast"
            }
        );
    }
    let start = state.as_ref().map_or(0, |s| s.step);
    let mut history = state
        .as_ref()
        .map(|s| s.history.clone())
        .unwrap_or_default();
    let mut scale = state
        .as_ref()
        .and_then(|s| s.loss_scale)
        .unwrap_or_else(|| LossScale::new(cfg.precision));
    let mut best = state.and_then(|s| s.best);
    let mut log = if group.is_main() {
        Some(MetricsLog::open(
            &out.join("metrics.jsonl"),
            start > 0,
            tensorboard,
        )?)
    } else {
        None
    };

    let bar = inference::progress_bar(total as u64, "train");
    if !group.is_main() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_position(start as u64);
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let mut step = start;
    let mut stopped_early = false;
    let lower_is_better = task.lower_is_better();
    // A resumed run that is already at its stop point trains nothing (not even one more step).
    let done = early_stopping::reached(cfg, &history, lower_is_better);
    let epochs = if start > 0 && (stop(start) || done) {
        0
    } else {
        cfg.epochs
    };
    'epochs: for epoch in 0..epochs {
        let micro = task.epoch_batches(epoch)?;
        let groups: Vec<&[Vec<usize>]> = micro.chunks(k * world).collect();
        for (i, batches) in groups.iter().enumerate() {
            let global = epoch * steps_per_epoch + i;
            if global < start {
                continue;
            }
            if step >= total {
                break 'epochs;
            }
            let progress = step as f64 / total.max(1) as f64;
            let (info_loss, line) = step::optimizer_step(
                task,
                &mut opt,
                &mut scale,
                &vars,
                batches,
                (epoch, step, k, progress),
                seed,
                (group, cfg.all_reduce),
            )?;
            tokens += line.tokens;
            step += 1;
            bar.inc(1);
            bar.set_message(format!("loss {info_loss:.4}"));
            let epoch_f = epoch as f64 + (i + 1) as f64 / groups.len() as f64;
            let logging = step % cfg.logging_steps.max(1) == 0 || step == 1;
            if let (Some(log), true) = (&mut log, logging) {
                log.write(&Record::Step(line.record(step, epoch_f)))?;
            }
            let end_of_epoch = i + 1 == groups.len();
            let periodic = cfg.eval_every > 0 && step % cfg.eval_every == 0;
            let halt = stop(step);
            if !group.is_main() && halt {
                break 'epochs;
            }
            let evaluating = end_of_epoch || periodic || step == total || halt;
            if let (Some(log), true) = (&mut log, evaluating) {
                let rec = checkpoint::evaluate(task, log, step, epoch_f, &bar)?;
                checkpoint::keep_best(task, &out.join("best"), &rec, &mut best)?;
                history.push(rec);
                let state = TrainerState {
                    step,
                    history: history.clone(),
                    best: best.clone(),
                    config: task.config().clone(),
                    n_train: task.train_len(),
                    loss_scale: Some(scale),
                    world,
                };
                checkpoint::save_last(task, &opt, &last_dir, &state)?;
                if halt {
                    break 'epochs;
                }
            }
            if evaluating && early_stopping::vote(cfg, &history, lower_is_better, group, &bar)? {
                stopped_early = true;
                break 'epochs;
            }
        }
    }
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let report = TrainReport {
        best,
        history,
        steps: step,
        seconds,
        resumed_from: start,
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        stopped_early,
    };
    if group.is_main() {
        let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Msg(e.to_string()))?;
        modeling::write_atomic(&out.join("train_report.json"), json.as_bytes())?;
    }
    Ok(report)
}
