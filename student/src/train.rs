//! The one training loop, for the student (distillation) and for fine-tuning a teacher (alpha_kd = 0):
//! the loss is the configured objective (see `objective`), by default
//! `alpha_kd · kd(student, teacher; T) + (1 − alpha_kd) · task loss` (CE, or MSE for regression).
//! Token-level terms run the teacher inside each step, in eval mode and detached, on the same batch.
//! Length-bucketed batches in a seeded order, AdamW with warmup and decay, dev evaluation every epoch
//! (and every `eval_every` steps), best checkpoint kept, and a `last/` checkpoint (weights, optimizer
//! moments, step) from which a killed run resumes: the batch order and dropout masks are functions of
//! (seed, epoch, step), so a resumed run follows the same path as an uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use teacher::batch::{bucketed_batches, make_batch};
use teacher::{Classifier, Encoded, Label, Metric};

use crate::metrics::Scores;
use crate::objective::{Objective, StepInputs, TermValue};
use crate::optim::{AdamW, AdamWConfig};
use crate::terms::{ObjectiveConfig, TermKind};
use crate::{eval, Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Evaluate on dev every N steps as well as after every epoch (0: epochs only).
    pub eval_every: usize,
    /// Stop after this many updates (0: no limit), for quick runs.
    pub max_steps: usize,
    pub seed: u64,
    pub alpha_kd: f64,
    pub temperature: f64,
    pub eval_batch_size: usize,
    /// The loss terms and their schedules (default: the `alpha_kd` / `temperature` shorthand).
    #[serde(default)]
    pub objective: ObjectiveConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch_size: 32,
            learning_rate: 1e-4,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            eval_every: 0,
            max_steps: 0,
            seed: 42,
            alpha_kd: 0.5,
            temperature: 2.0,
            eval_batch_size: 64,
            objective: ObjectiveConfig::default(),
        }
    }
}

/// Tokenised training and dev data with labels, and the teacher's logits for the training set.
pub struct TrainData<'a> {
    pub train: &'a [Encoded],
    pub train_labels: &'a [Label],
    pub dev: &'a [Encoded],
    pub dev_labels: &'a [Label],
    /// Teacher logits [n_train, c] (CPU): the source of kd / logits_mse terms when given.
    pub teacher_logits: Option<&'a Tensor>,
    /// The teacher itself, on the student's device, for token-level terms (run without gradients
    /// inside each step); also the source of teacher logits when `teacher_logits` is absent.
    pub teacher: Option<&'a Classifier>,
    pub pad_id: u32,
    pub metric: Metric,
    /// Label names in index order (empty for regression), written into saved configs.
    pub label_names: &'a [String],
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
}

/// What `last/trainer_state.json` holds besides weights and optimizer moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    history: Vec<EvalRecord>,
    best: Option<EvalRecord>,
    /// The configuration and data size the checkpoint belongs to.
    config: TrainConfig,
    n_train: usize,
}

/// Trains `model` in place. Checkpoints go to `out/best` and `out/last`, the metrics log to
/// `out/metrics.jsonl`. Returns the evaluation history and the best dev score.
pub fn train(
    model: &Classifier,
    data: &TrainData,
    cfg: &TrainConfig,
    out: &Path,
) -> Result<TrainReport> {
    train_until(model, data, cfg, out, &|_| false)
}

/// `train`, stopping early once `stop(step)` returns true, after evaluating and writing `last/`: a
/// graceful interruption that a later call resumes from (successive halving uses it).
pub fn train_until(
    model: &Classifier,
    data: &TrainData,
    cfg: &TrainConfig,
    out: &Path,
    stop: &dyn Fn(usize) -> bool,
) -> Result<TrainReport> {
    let mut objective = Objective::new(
        cfg,
        &model.config,
        data.teacher.map(|t| &t.config),
        &model.device,
    )?;
    validate(model, data, &objective)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let lengths: Vec<usize> = data.train.iter().map(|e| e.ids.len()).collect();
    let steps_per_epoch = data.train.len().div_ceil(cfg.batch_size);
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
        ..Default::default()
    };
    let proj_scale = cfg.objective.projection_lr.unwrap_or(cfg.learning_rate) / cfg.learning_rate;
    let groups = vec![
        (model.named_vars(), 1.0),
        (objective.named_vars(), proj_scale),
    ];
    let mut opt = AdamW::with_groups(groups, opt_cfg)?;
    let last_dir = out.join("last");
    let state = resume(
        model,
        &mut opt,
        &mut objective,
        &last_dir,
        cfg,
        data.train.len(),
    )?;
    let start = state.as_ref().map_or(0, |s| s.step);
    let mut history = state
        .as_ref()
        .map(|s| s.history.clone())
        .unwrap_or_default();
    let mut best = state.and_then(|s| s.best);
    let mut log = MetricsLog::open(&out.join("metrics.jsonl"), start > 0)?;

    let bar = crate::progress_bar(total as u64, "train");
    bar.set_position(start as u64);
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let mut step = start;
    'epochs: for epoch in 0..cfg.epochs {
        // The order of epoch e depends only on (seed, e): resuming mid-epoch replays it exactly.
        let mut rng =
            StdRng::seed_from_u64(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
        let batches = bucketed_batches(&lengths, cfg.batch_size, &mut rng);
        for (i, idx) in batches.iter().enumerate() {
            let global = epoch * steps_per_epoch + i;
            if global < start {
                continue;
            }
            if step >= total {
                break 'epochs;
            }
            model
                .dropout
                .reseed(cfg.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let progress = step as f64 / total.max(1) as f64;
            let terms = train_step(model, data, &mut objective, idx, &mut opt, step, progress)?;
            tokens += idx.iter().map(|&k| lengths[k]).sum::<usize>();
            step += 1;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", terms.loss));
            let epoch_f = epoch as f64 + (i + 1) as f64 / batches.len() as f64;
            if step % 10 == 0 || step == 1 {
                log.write(&terms.log_line(step, epoch_f))?;
            }
            let end_of_epoch = i + 1 == batches.len();
            let periodic = cfg.eval_every > 0 && step % cfg.eval_every == 0;
            let halt = stop(step);
            if end_of_epoch || periodic || step == total || halt {
                let scores = evaluate(model, data, cfg)?;
                let rec = EvalRecord {
                    step,
                    epoch: epoch_f,
                    scores,
                };
                log.write(&serde_json::json!({
                    "step": step, "epoch": epoch_f, "dev": rec.scores.values, "dev_main": rec.scores.main,
                }))?;
                bar.println(format!(
                    "  step {step} (epoch {epoch_f:.2}): dev {}",
                    rec.scores.summary()
                ));
                if best
                    .as_ref()
                    .is_none_or(|b| rec.scores.main > b.scores.main)
                {
                    model.save(&out.join("best"), data.label_names)?;
                    best = Some(rec.clone());
                }
                history.push(rec);
                let state = TrainerState {
                    step,
                    history: history.clone(),
                    best: best.clone(),
                    config: cfg.clone(),
                    n_train: data.train.len(),
                };
                save_last(model, &opt, &objective, &last_dir, &state, data.label_names)?;
                if halt {
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
    };
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Msg(e.to_string()))?;
    teacher::write_atomic(&out.join("train_report.json"), json.as_bytes())?;
    Ok(report)
}

fn validate(model: &Classifier, data: &TrainData, objective: &Objective) -> Result<()> {
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(Error::Msg("training and dev sets must not be empty".into()));
    }
    if data.train.len() != data.train_labels.len() || data.dev.len() != data.dev_labels.len() {
        return Err(Error::Msg("examples and labels differ in number".into()));
    }
    if objective.needs_teacher_logits() {
        match (data.teacher_logits, data.teacher) {
            (Some(t), _) => {
                if t.dims() != [data.train.len(), model.num_labels] {
                    return Err(Error::Msg(format!(
                        "teacher targets have shape {:?} but training needs [{}, {}] (stale target cache?)",
                        t.dims(),
                        data.train.len(),
                        model.num_labels
                    )));
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                return Err(Error::Msg(
                    "alpha_kd > 0 (or a kd / logits_mse term) but no teacher targets were given"
                        .into(),
                ))
            }
        }
    }
    if let Some(t) = data.teacher {
        if t.num_labels != model.num_labels {
            return Err(Error::Msg(format!(
                "the teacher has {} outputs but the student {}",
                t.num_labels, model.num_labels
            )));
        }
        if t.device.location() != model.device.location() {
            return Err(Error::Msg(
                "the online teacher must be on the student's device".into(),
            ));
        }
    }
    Ok(())
}

/// What one step did, for the progress bar and the metrics log.
struct StepLog {
    loss: f32,
    values: Vec<TermValue>,
    lr: f64,
    grad_norm: f64,
}

impl StepLog {
    /// One metrics.jsonl line: the total, each term's raw and weighted value under `terms`, and (for
    /// readers of earlier logs) `kd` and `task`: the raw kd and task losses (0 when absent).
    fn log_line(&self, step: usize, epoch: f64) -> serde_json::Value {
        let raw = |k: TermKind| {
            self.values
                .iter()
                .find(|v| v.kind == k)
                .map_or(0.0, |v| v.raw)
        };
        let terms: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|v| {
                (
                    v.name.clone(),
                    serde_json::json!({"raw": v.raw, "weighted": v.weighted}),
                )
            })
            .collect();
        serde_json::json!({
            "step": step, "epoch": epoch, "loss": self.loss, "kd": raw(TermKind::Kd),
            "task": raw(TermKind::Ce), "terms": terms, "lr": self.lr, "grad_norm": self.grad_norm,
        })
    }
}

fn train_step(
    model: &Classifier,
    data: &TrainData,
    objective: &mut Objective,
    idx: &[usize],
    opt: &mut AdamW,
    step: usize,
    progress: f64,
) -> Result<StepLog> {
    let dev = &model.device;
    let items: Vec<&Encoded> = idx.iter().map(|&i| &data.train[i]).collect();
    let batch = make_batch(&items, data.pad_id, dev)?;
    let want = objective.want();
    let (logits, student) = model.forward_with(&batch, true, want)?; // [b, c]
    let labels = if model.num_labels == 1 {
        let y: Vec<f32> = idx
            .iter()
            .map(|&i| match data.train_labels[i] {
                Label::Score(s) => s,
                Label::Class(c) => c as f32,
            })
            .collect();
        Tensor::from_vec(y, (idx.len(), 1), dev)?
    } else {
        let y: Vec<u32> = idx
            .iter()
            .map(|&i| match data.train_labels[i] {
                Label::Class(c) => c as u32,
                Label::Score(s) => s as u32,
            })
            .collect();
        Tensor::new(y, dev)?
    };
    let cached = match data.teacher_logits {
        Some(t) if objective.needs_teacher_logits() => {
            let rows = Tensor::new(
                idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                &Device::Cpu,
            )?;
            Some(t.index_select(&rows, 0)?.to_device(dev)?)
        }
        _ => None,
    };
    // The online teacher: eval mode (no dropout), detached so no gradient flows into it.
    let online_logits = objective.needs_teacher_logits() && cached.is_none();
    let teacher = match data.teacher {
        Some(t) if objective.needs_teacher_states() || online_logits => {
            let (tl, out) = t.forward_with(&batch, false, want)?;
            Some((tl.detach(), detach(out)))
        }
        _ => None,
    };
    let teacher_logits = cached.as_ref().or(teacher.as_ref().map(|(l, _)| l));
    let inputs = StepInputs {
        logits: &logits,
        student: &student,
        labels: &labels,
        teacher_logits,
        teacher: teacher.as_ref().map(|(_, o)| o),
        mask: &batch.attention_mask,
        progress,
    };
    let out = objective.loss(&inputs)?;
    let loss_v = out.total.to_scalar::<f32>()?;
    if !loss_v.is_finite() {
        let parts: Vec<String> = out
            .values
            .iter()
            .map(|v| format!("{} {}", v.name, v.raw))
            .collect();
        return Err(Error::NonFinite {
            step: step + 1,
            what: format!("the loss ({})", parts.join(", ")),
        });
    }
    let grads = out.total.backward()?;
    let info = opt.step(&grads)?;
    Ok(StepLog {
        loss: loss_v,
        values: out.values,
        lr: info.lr,
        grad_norm: info.grad_norm,
    })
}

/// The teacher's states cut from any graph.
fn detach(out: teacher::EncoderOutput) -> teacher::EncoderOutput {
    teacher::EncoderOutput {
        hidden_states: out.hidden_states.iter().map(Tensor::detach).collect(),
        attentions: out.attentions.iter().map(Tensor::detach).collect(),
        qkv: out
            .qkv
            .iter()
            .map(|q| teacher::Qkv {
                q: q.q.detach(),
                k: q.k.detach(),
                v: q.v.detach(),
            })
            .collect(),
    }
}

fn evaluate(model: &Classifier, data: &TrainData, cfg: &TrainConfig) -> Result<Scores> {
    let logits = eval::logits(model, data.dev, data.pad_id, cfg.eval_batch_size)?;
    eval::score(&logits, data.dev_labels, data.metric)
}

/// Writes `last/` (weights, optimizer state, trainer state) beside the old one and swaps it in, so a
/// kill at any moment leaves one complete checkpoint.
fn save_last(
    model: &Classifier,
    opt: &AdamW,
    objective: &Objective,
    dir: &Path,
    state: &TrainerState,
    labels: &[String],
) -> Result<()> {
    let tmp = dir.with_file_name("last.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    model.save(&tmp, labels)?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    if objective.has_state() {
        objective.save(&tmp.join("objective.safetensors"))?;
    }
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::Msg(e.to_string()))?;
    teacher::write_atomic(&tmp.join("trainer_state.json"), json.as_bytes())?;
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
fn resume(
    model: &Classifier,
    opt: &mut AdamW,
    objective: &mut Objective,
    dir: &Path,
    cfg: &TrainConfig,
    n_train: usize,
) -> Result<Option<TrainerState>> {
    // A crash between the two renames of save_last leaves the good checkpoint at last.old.
    let old = dir.with_file_name("last.old");
    if !dir.exists() && old.exists() {
        std::fs::rename(&old, dir).map_err(|e| Error::io(dir, e))?;
    }
    let state_path = dir.join("trainer_state.json");
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state: TrainerState = serde_json::from_str(&text)
        .map_err(|e| Error::file(&state_path, format!("corrupt trainer state: {e}")))?;
    if state.config != *cfg || state.n_train != n_train {
        eprintln!(
            "note: {} belongs to a different configuration or dataset; training from the start",
            dir.display()
        );
        return Ok(None);
    }
    let files = teacher::ModelSource::Local(dir.to_path_buf()).resolve(false)?;
    let (loaded, _) = Classifier::load(&files, Some(model.num_labels), 0, &model.device)?;
    for ((_, dst), (_, src)) in model.named_vars().iter().zip(loaded.named_vars()) {
        dst.set(src.as_tensor())?;
    }
    opt.load(&dir.join("optimizer.safetensors"))?;
    if objective.has_state() {
        objective.load(&dir.join("objective.safetensors"))?;
    }
    eprintln!("resuming from {} at step {}", dir.display(), state.step);
    Ok(Some(state))
}

/// Appends JSON lines to the metrics log.
struct MetricsLog {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsLog {
    fn open(path: &Path, append: bool) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    fn write(&mut self, v: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}").map_err(|e| Error::io(&self.path, e))
    }
}
