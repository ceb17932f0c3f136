//! The one training loop, shared by every kind of training: a `Task` says what a step is (the batches
//! of an epoch, a micro-batch's loss and gradients, an evaluation, the vars and how to save them); this
//! module owns everything around it: epochs, gradient accumulation, AdamW with warmup and decay,
//! periodic evaluation, the best checkpoint, the `last/` checkpoint a killed run resumes from, the
//! metrics log and the report. The classification / distillation task lives in `train`, masked-LM
//! pre-training in `pretrain`.
//!
//! Exact resume: batch order, masks and dropout are functions of (seed, epoch, step), and `last/` holds
//! the weights, the optimizer moments and the step, so a resumed run follows the uninterrupted path.

use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dist::{Group, Reduction};
use crate::metrics::Scores;
use crate::optim::{AdamW, AdamWConfig};
use crate::precision::LossScale;
use crate::records::{EvalLine, MetricsLog, Record, StepRecord, TermRecord};
use crate::settings::TrainSettings;
use crate::{Error, Result};

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

/// What `last/trainer_state.json` holds besides weights and optimizer moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "C: Serialize + DeserializeOwned")]
struct TrainerState<C> {
    step: usize,
    history: Vec<EvalRecord>,
    best: Option<EvalRecord>,
    /// The configuration and data size the checkpoint belongs to.
    config: C,
    n_train: usize,
    /// The f16 loss scale (absent in checkpoints written before mixed precision).
    #[serde(default)]
    loss_scale: Option<LossScale>,
    /// Data-parallel processes: the global batch, and so the schedule, depends on it.
    #[serde(default = "one")]
    world: usize,
}

fn one() -> usize {
    1
}

/// Seed of the dropout masks of micro-batch `micro` (= step with no accumulation).
fn dropout_seed(seed: u64, micro: usize) -> u64 {
    seed ^ (micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
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
    let state = resume(task, &mut opt, &last_dir, group)?;
    same_start(&vars, group)?;
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
    let early = |history: &[EvalRecord]| {
        cfg.early_stopping.as_ref().is_some_and(|e| {
            let scores: Vec<Scores> = history.iter().map(|r| r.scores.clone()).collect();
            e.reached(&scores, lower_is_better)
        })
    };
    // A resumed run that is already at its stop point trains nothing (not even one more step).
    let epochs = if start > 0 && (stop(start) || early(&history)) {
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
            let (info_loss, line) = optimizer_step(
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
                let scores = task.evaluate()?;
                let rec = EvalRecord {
                    step,
                    epoch: epoch_f,
                    scores,
                };
                log.write(&Record::Eval(EvalLine {
                    step,
                    epoch: epoch_f,
                    dev: rec.scores.values.clone(),
                    dev_main: rec.scores.main,
                }))?;
                bar.suspend(|| {
                    tracing::info!(
                        "step {step} (epoch {epoch_f:.2}): dev {}",
                        rec.scores.summary()
                    )
                });
                if best
                    .as_ref()
                    .is_none_or(|b| task.better(&rec.scores, &b.scores))
                {
                    task.save_model(&out.join("best"))?;
                    best = Some(rec.clone());
                }
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
                save_last(task, &opt, &last_dir, &state)?;
                if halt {
                    break 'epochs;
                }
            }
            if evaluating && cfg.early_stopping.is_some() {
                // Rank 0 evaluated; every rank learns its verdict, so that the group stops together.
                let mut verdict = [if group.is_main() && early(&history) {
                    1.0
                } else {
                    0.0
                }];
                if world > 1 {
                    group.all_reduce_sum(&mut verdict, Reduction::Deterministic)?;
                }
                if verdict[0] > 0.0 {
                    if group.is_main() {
                        bar.suspend(|| {
                            tracing::info!(
                                "early stopping at step {step}: no better dev score in the last {} evaluations",
                                cfg.early_stopping.as_ref().map_or(0, |e| e.patience)
                            )
                        });
                    }
                    stopped_early = true;
                    break 'epochs;
                }
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

/// What one optimizer step did, for the progress bar and the metrics log.
struct StepLine {
    loss: f32,
    terms: Vec<LoggedTerm>,
    lr: f64,
    grad_norm: f64,
    tokens: usize,
    /// With f16: the loss scale the step used, and whether its update was skipped (an overflow).
    loss_scale: Option<(f64, bool)>,
}

impl StepLine {
    fn record(&self, step: usize, epoch: f64) -> StepRecord {
        StepRecord {
            step,
            epoch,
            loss: self.loss,
            terms: self
                .terms
                .iter()
                .map(|v| {
                    let r = TermRecord {
                        raw: v.raw,
                        weighted: v.weighted,
                    };
                    (v.name.clone(), r)
                })
                .collect(),
            lr: self.lr,
            grad_norm: self.grad_norm,
            loss_scale: self.loss_scale.map(|(s, _)| s),
            skipped: self.loss_scale.map(|(_, k)| k),
        }
    }
}

/// One AdamW update from the micro-batches of `batches` (the step's, over the whole group), each loss
/// weighted by its share of their loss units so that the summed gradients are those of one batch.
/// This rank computes its contiguous share of them; the group sums gradients and log values.
#[allow(clippy::too_many_arguments)]
fn optimizer_step<T: Task>(
    task: &mut T,
    opt: &mut AdamW,
    ls: &mut LossScale,
    vars: &[Var],
    batches: &[Vec<usize>],
    (epoch, step, k, progress): (usize, usize, usize, f64),
    seed: u64,
    (group, how): (&Group, Reduction),
) -> Result<(f32, StepLine)> {
    let n = batches.len();
    let units = if n == 1 {
        vec![1usize]
    } else {
        batches
            .iter()
            .map(|b| task.loss_units(b, epoch))
            .collect::<Result<Vec<_>>>()?
    };
    let sum = units.iter().sum::<usize>().max(1) as f64;
    // Rank r takes micro-batches [r·k, (r+1)·k); in an epoch's last, shorter step the last ranks may
    // have none. Dropout seeds count micro-batches as if every step had all of them.
    let r = group.rank();
    let mine = (r * k).min(n)..((r + 1) * k).min(n);
    let per_step = k * group.world();
    let mut acc: Option<GradStore> = None;
    let mut line = StepLine {
        loss: 0.0,
        terms: Vec::new(),
        lr: 0.0,
        grad_norm: 0.0,
        tokens: 0,
        loss_scale: None,
    };
    for j in mine.clone() {
        let (batch, u) = (&batches[j], units[j]);
        task.reseed_dropout(dropout_seed(seed, step * per_step + j));
        // A lone micro-batch keeps its loss unscaled: bit-identical to training without accumulation.
        let scale = if n == 1 { 1.0 } else { u as f64 / sum };
        // The loss scale multiplies the backward pass only: `m.loss` is the unscaled loss.
        let m = task.micro_step(batch, epoch, scale * ls.scale, step, progress)?;
        let w = scale as f32;
        if j == mine.start {
            line.loss = m.loss * w;
            line.terms = m.terms.iter().map(|t| scaled(t, w)).collect();
        } else {
            line.loss += m.loss * w;
            for (a, t) in line.terms.iter_mut().zip(&m.terms) {
                a.raw += t.raw * w;
                a.weighted += t.weighted * w;
            }
        }
        line.tokens += m.tokens;
        acc = Some(match acc {
            None if n == 1 => m.grads,
            None => keep_vars(m.grads, vars),
            Some(mut a) => {
                let mut g = m.grads;
                for v in vars {
                    if let Some(new) = g.remove(v.as_tensor()) {
                        let sum = match a.remove(v.as_tensor()) {
                            Some(old) => (old + new)?,
                            None => new,
                        };
                        a.insert(v.as_tensor(), sum);
                    }
                }
                a
            }
        });
    }
    let grads = if group.world() > 1 || group.sums_on_gpu() {
        line = merge_lines(line, group)?;
        all_reduce(acc.unwrap_or_default(), vars, group, how)?
    } else {
        acc.ok_or_else(|| Error::Msg("an optimizer step without micro-batches".into()))?
    };
    let info = opt.step_scaled(&grads, ls)?;
    if ls.dynamic {
        line.loss_scale = Some((ls.scale, info.skipped));
    }
    ls.update(info.skipped);
    line.lr = info.lr;
    line.grad_norm = info.grad_norm;
    Ok((line.loss, line))
}

/// The gradients summed over the group, in `vars` order through one flat buffer on their device (NCCL
/// sums it there on GPUs). A parameter that no rank has a gradient for stays without one (AdamW leaves
/// it alone, as in one process).
fn all_reduce(
    mut grads: GradStore,
    vars: &[Var],
    group: &Group,
    how: Reduction,
) -> Result<GradStore> {
    let Some(device) = vars.first().map(|v| v.device().clone()) else {
        return Ok(grads);
    };
    // The values, then one presence flag per parameter.
    let mut parts = Vec::with_capacity(vars.len() + 1);
    let mut present = Vec::with_capacity(vars.len());
    for v in vars {
        match grads.remove(v.as_tensor()) {
            Some(g) => {
                parts.push(g.flatten_all()?.to_dtype(DType::F32)?);
                present.push(1f32);
            }
            None => {
                parts.push(Tensor::zeros(v.elem_count(), DType::F32, &device)?);
                present.push(0f32);
            }
        }
    }
    let flags = present.len();
    parts.push(Tensor::from_vec(present, flags, &device)?);
    let sum = group.sum(&Tensor::cat(&parts, 0)?, how)?;
    let total = sum.elem_count() - flags;
    let present = sum.narrow(0, total, flags)?.to_vec1::<f32>()?;
    let mut out = GradStore::default();
    let mut at = 0;
    for (v, p) in vars.iter().zip(present) {
        let n = v.elem_count();
        if p > 0.0 {
            let g = sum
                .narrow(0, at, n)?
                .reshape(v.shape())?
                .to_dtype(v.dtype())?;
            out.insert(v.as_tensor(), g);
        }
        at += n;
    }
    Ok(out)
}

/// What a rank logs of its share of a step, for rank 0 to add up.
#[derive(Serialize, Deserialize)]
struct Share {
    loss: f32,
    tokens: usize,
    terms: Vec<(String, f32, f32)>,
}

/// Rank 0's line with every rank's loss, terms and tokens added (others keep their own line).
fn merge_lines(mut line: StepLine, group: &Group) -> Result<StepLine> {
    let share = Share {
        loss: line.loss,
        tokens: line.tokens,
        terms: line
            .terms
            .iter()
            .map(|t| (t.name.clone(), t.raw, t.weighted))
            .collect(),
    };
    let bytes = serde_json::to_vec(&share).map_err(|e| Error::Msg(e.to_string()))?;
    for other in group.gather(&bytes)?.iter().skip(1) {
        let s: Share = serde_json::from_slice(other).map_err(|e| Error::Msg(e.to_string()))?;
        line.loss += s.loss;
        line.tokens += s.tokens;
        for (name, raw, weighted) in s.terms {
            match line.terms.iter_mut().find(|t| t.name == name) {
                Some(t) => {
                    t.raw += raw;
                    t.weighted += weighted;
                }
                None => line.terms.push(LoggedTerm {
                    name,
                    raw,
                    weighted,
                }),
            }
        }
    }
    Ok(line)
}

/// Refuses to train when the ranks start from different weights (another `student.init` or seed):
/// each rank puts a checksum of its weights in its own slot and the sum shows them all.
fn same_start(vars: &[Var], group: &Group) -> Result<()> {
    if group.world() == 1 {
        return Ok(());
    }
    let (mut s1, mut s2) = (0f64, 0f64);
    for v in vars {
        for x in v.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? {
            s1 += x as f64;
            s2 += (x as f64) * (x as f64);
        }
    }
    let mut sums = vec![0f32; 2 * group.world()];
    sums[2 * group.rank()] = s1 as f32;
    sums[2 * group.rank() + 1] = s2 as f32;
    group.all_reduce_sum(&mut sums, Reduction::Deterministic)?;
    if let Some(r) = (1..group.world()).find(|&r| sums[2 * r..2 * r + 2] != sums[..2]) {
        return Err(Error::Msg(format!(
            "data-parallel rank {r} starts from other weights than rank 0 (another student.init, seed \
             or last/ checkpoint?)"
        )));
    }
    Ok(())
}

fn scaled(t: &LoggedTerm, w: f32) -> LoggedTerm {
    LoggedTerm {
        name: t.name.clone(),
        raw: t.raw * w,
        weighted: t.weighted * w,
    }
}

/// Only the parameters' gradients: the intermediate ones would stay alive across micro-batches.
fn keep_vars(mut grads: GradStore, vars: &[Var]) -> GradStore {
    let mut out = GradStore::default();
    for v in vars {
        if let Some(g) = grads.remove(v.as_tensor()) {
            out.insert(v.as_tensor(), g);
        }
    }
    out
}

/// Writes `last/` (weights, optimizer state, trainer state) beside the old one and swaps it in, so a
/// kill at any moment leaves one complete checkpoint.
fn save_last<T: Task>(
    task: &T,
    opt: &AdamW,
    dir: &Path,
    state: &TrainerState<T::Config>,
) -> Result<()> {
    let tmp = dir.with_file_name("last.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    task.save_model(&tmp)?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    task.save_state(&tmp)?;
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::Msg(e.to_string()))?;
    modeling::write_atomic(&tmp.join("trainer_state.json"), json.as_bytes())?;
    let old = dir.with_file_name("last.old");
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Restores `last/` when it belongs to this configuration and data; otherwise starts afresh.
fn resume<T: Task>(
    task: &mut T,
    opt: &mut AdamW,
    dir: &Path,
    group: &Group,
) -> Result<Option<TrainerState<T::Config>>> {
    // A crash between the two renames of save_last leaves the good checkpoint at last.old. Rank 0
    // puts it back before any rank reads (the sum is a barrier).
    let old = dir.with_file_name("last.old");
    if group.is_main() && !dir.exists() && old.exists() {
        std::fs::rename(&old, dir).map_err(|e| Error::io(dir, e))?;
    }
    group.barrier()?;
    let state_path = dir.join("trainer_state.json");
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state: TrainerState<T::Config> = serde_json::from_str(&text)
        .map_err(|e| Error::file(&state_path, format!("corrupt trainer state: {e}")))?;
    if state.config != *task.config() || state.n_train != task.train_len() {
        if group.is_main() {
            tracing::info!(
                "note: {} belongs to a different configuration or dataset; training from the start",
                dir.display()
            );
        }
        return Ok(None);
    }
    if state.world != group.world() {
        if group.is_main() {
            tracing::info!(
                "note: {} was trained by {} data-parallel processes, this run has {}: the global \
                 batch differs, training from the start",
                dir.display(),
                state.world,
                group.world()
            );
        }
        return Ok(None);
    }
    task.load(dir)?;
    opt.load(&dir.join("optimizer.safetensors"))?;
    if group.is_main() {
        tracing::info!("resuming from {} at step {}", dir.display(), state.step);
    }
    Ok(Some(state))
}
