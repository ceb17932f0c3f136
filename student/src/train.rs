//! The one training loop, for the student (distillation) and for fine-tuning a teacher (alpha_kd = 0):
//! loss = alpha_kd · kd(student, teacher; T) + (1 − alpha_kd) · task loss (CE, or MSE for regression).
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
use crate::optim::{AdamW, AdamWConfig};
use crate::{eval, loss, Error, Result};

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
        }
    }
}

/// Tokenised training and dev data with labels, and the teacher's logits for the training set.
pub struct TrainData<'a> {
    pub train: &'a [Encoded],
    pub train_labels: &'a [Label],
    pub dev: &'a [Encoded],
    pub dev_labels: &'a [Label],
    /// Teacher logits [n_train, c] (CPU), required when alpha_kd > 0.
    pub teacher_logits: Option<&'a Tensor>,
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
    validate(model, data, cfg)?;
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
    let mut opt = AdamW::new(model.named_vars(), opt_cfg)?;
    let last_dir = out.join("last");
    let state = resume(model, &mut opt, &last_dir, cfg, data.train.len())?;
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
            let terms = train_step(model, data, cfg, idx, &mut opt, step)?;
            tokens += idx.iter().map(|&k| lengths[k]).sum::<usize>();
            step += 1;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", terms.loss));
            let epoch_f = epoch as f64 + (i + 1) as f64 / batches.len() as f64;
            if step % 10 == 0 || step == 1 {
                log.write(&serde_json::json!({
                    "step": step, "epoch": epoch_f, "loss": terms.loss, "kd": terms.kd,
                    "task": terms.task, "lr": terms.lr, "grad_norm": terms.grad_norm,
                }))?;
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
                save_last(model, &opt, &last_dir, &state, data.label_names)?;
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

fn validate(model: &Classifier, data: &TrainData, cfg: &TrainConfig) -> Result<()> {
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(Error::Msg("training and dev sets must not be empty".into()));
    }
    if data.train.len() != data.train_labels.len() || data.dev.len() != data.dev_labels.len() {
        return Err(Error::Msg("examples and labels differ in number".into()));
    }
    if cfg.alpha_kd > 0.0 {
        let t = data
            .teacher_logits
            .ok_or_else(|| Error::Msg("alpha_kd > 0 but no teacher targets were given".into()))?;
        if t.dims() != [data.train.len(), model.num_labels] {
            return Err(Error::Msg(format!(
                "teacher targets have shape {:?} but training needs [{}, {}] (stale target cache?)",
                t.dims(),
                data.train.len(),
                model.num_labels
            )));
        }
    }
    Ok(())
}

struct Terms {
    loss: f32,
    kd: f32,
    task: f32,
    lr: f64,
    grad_norm: f64,
}

fn train_step(
    model: &Classifier,
    data: &TrainData,
    cfg: &TrainConfig,
    idx: &[usize],
    opt: &mut AdamW,
    step: usize,
) -> Result<Terms> {
    let dev = &model.device;
    let items: Vec<&Encoded> = idx.iter().map(|&i| &data.train[i]).collect();
    let batch = make_batch(&items, data.pad_id, dev)?;
    let (logits, _) = model.forward(&batch, true, false)?; // [b, c]
    let regression = model.num_labels == 1;
    let task = if regression {
        let y: Vec<f32> = idx
            .iter()
            .map(|&i| match data.train_labels[i] {
                Label::Score(s) => s,
                Label::Class(c) => c as f32,
            })
            .collect();
        let y = Tensor::from_vec(y, (idx.len(), 1), dev)?;
        loss::mse(&logits, &y)?
    } else {
        let y: Vec<u32> = idx
            .iter()
            .map(|&i| match data.train_labels[i] {
                Label::Class(c) => c as u32,
                Label::Score(s) => s as u32,
            })
            .collect();
        loss::ce(&logits, &Tensor::new(y, dev)?)?
    };
    let a = cfg.alpha_kd;
    let (total, kd) = match data.teacher_logits.filter(|_| a > 0.0) {
        Some(t) => {
            let rows = Tensor::new(
                idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                &Device::Cpu,
            )?;
            let t = t.index_select(&rows, 0)?.to_device(dev)?;
            let kd = if regression {
                loss::mse(&logits, &t)?
            } else {
                loss::kd(&logits, &t, cfg.temperature)?
            };
            (((&kd * a)? + (&task * (1.0 - a))?)?, Some(kd))
        }
        None => (task.clone(), None),
    };
    let loss_v = total.to_scalar::<f32>()?;
    let task_v = task.to_scalar::<f32>()?;
    let kd_v = kd.map(|k| k.to_scalar::<f32>()).transpose()?.unwrap_or(0.0);
    if !loss_v.is_finite() {
        return Err(Error::NonFinite {
            step: step + 1,
            what: format!("the loss (kd {kd_v}, task {task_v})"),
        });
    }
    let grads = total.backward()?;
    let info = opt.step(&grads)?;
    Ok(Terms {
        loss: loss_v,
        kd: kd_v,
        task: task_v,
        lr: info.lr,
        grad_norm: info.grad_norm,
    })
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
