//! The one training loop, for the student (distillation) and for fine-tuning a teacher (alpha_kd = 0):
//! the loss is the configured objective (see `objective`), by default
//! `alpha_kd · kd(student, teacher; T) + (1 − alpha_kd) · task loss` (CE, or MSE for regression).
//! Token-level terms run the teacher inside each step, in eval mode and detached, on the same batch.
//! This module is the classification `Task` of the shared loop in `trainer` (which owns epochs,
//! AdamW, evaluation, checkpoints and resume): length-bucketed batches in a seeded order, the
//! objective's loss, dev evaluation with the task's metric.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use teacher::batch::{bucketed_batches, make_batch};
use teacher::{Classifier, Encoded, Label, Metric};

use crate::dist::Group;
use crate::metrics::Scores;
use crate::objective::{Objective, StepInputs};
use crate::precision::Precision;
use crate::terms::{ObjectiveConfig, TermKind};
use crate::trainer::{self, LoggedTerm, LoopConfig, MicroStep, Task};
use crate::{eval, Error, Result};

pub use crate::trainer::{EvalRecord, TrainReport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Examples per micro-batch (per process when data-parallel).
    pub batch_size: usize,
    /// Micro-batches per update: the update sees `batch_size · gradient_accumulation` examples
    /// (times the data-parallel processes).
    #[serde(default = "one")]
    pub gradient_accumulation: usize,
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
    /// The dtype of the student's (and an online teacher's) matrix products; weights stay f32.
    #[serde(default)]
    pub precision: Precision,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch_size: 32,
            gradient_accumulation: 1,
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
            precision: Precision::Fp32,
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
    /// The teacher's own tokenization of the training set, when its tokenizer differs from the
    /// student's: the teacher then runs on it and hidden-state terms compare per-word means.
    pub align: Option<WordAlign<'a>>,
    pub pad_id: u32,
    pub metric: Metric,
    /// Label names in index order (empty for regression), written into saved configs.
    pub label_names: &'a [String],
    /// The data-parallel group this process trains in (`None`: alone).
    pub group: Option<&'a Group>,
}

/// Both tokenizations of the training set with each token's word (`TextTokenizer::encode_words`),
/// indexed like `TrainData::train`.
#[derive(Clone, Copy)]
pub struct WordAlign<'a> {
    pub student_words: &'a [Vec<Option<u32>>],
    pub teacher: &'a [Encoded],
    pub teacher_words: &'a [Vec<Option<u32>>],
    pub teacher_pad_id: u32,
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
    let objective = Objective::new(
        cfg,
        &model.config,
        data.teacher.map(|t| &t.config),
        &model.device,
    )?;
    validate(model, data, &objective)?;
    cfg.precision.note_for(&model.device);
    // Clones share the weights: the mixed-precision ones train `model`, which evaluates in f32.
    let mixed = |m: &Classifier| -> Result<Classifier> {
        let mut m = m.clone();
        m.set_compute_dtype(cfg.precision.dtype())?;
        Ok(m)
    };
    let mut task = Classify {
        model,
        mixed: mixed(model)?,
        teacher: data.teacher.map(mixed).transpose()?,
        data,
        cfg,
        objective,
        lengths: data.train.iter().map(|e| e.ids.len()).collect(),
    };
    let single = Group::single();
    let group = data.group.unwrap_or(&single);
    trainer::run(&mut task, &cfg.loop_config(), out, stop, group)
}

impl TrainConfig {
    /// The shared loop's settings (no gradient accumulation for task training).
    pub fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            epochs: self.epochs,
            gradient_accumulation: self.gradient_accumulation,
            learning_rate: self.learning_rate,
            warmup_ratio: self.warmup_ratio,
            weight_decay: self.weight_decay,
            max_grad_norm: self.max_grad_norm,
            eval_every: self.eval_every,
            max_steps: self.max_steps,
            seed: self.seed,
            precision: self.precision,
        }
    }
}

/// Classification / regression with the configured objective, as a task of the shared loop.
struct Classify<'a> {
    /// The model as given: f32, for evaluation and checkpoints.
    model: &'a Classifier,
    /// The same weights computing in the configured precision, for the training steps.
    mixed: Classifier,
    /// The online teacher (if any), in the same precision.
    teacher: Option<Classifier>,
    data: &'a TrainData<'a>,
    cfg: &'a TrainConfig,
    objective: Objective,
    lengths: Vec<usize>,
}

impl Task for Classify<'_> {
    type Config = TrainConfig;

    fn config(&self) -> &TrainConfig {
        self.cfg
    }

    fn train_len(&self) -> usize {
        self.data.train.len()
    }

    fn epoch_batches(&self, epoch: usize) -> Result<Vec<Vec<usize>>> {
        // The order of epoch e depends only on (seed, e): resuming mid-epoch replays it exactly.
        let mut rng = StdRng::seed_from_u64(
            self.cfg
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64),
        );
        Ok(bucketed_batches(
            &self.lengths,
            self.cfg.batch_size,
            &mut rng,
        ))
    }

    fn loss_units(&self, batch: &[usize], _epoch: usize) -> Result<usize> {
        Ok(batch.len())
    }

    fn reseed_dropout(&self, seed: u64) {
        self.model.dropout.reseed(seed);
    }

    fn micro_step(
        &mut self,
        batch: &[usize],
        _epoch: usize,
        scale: f64,
        step: usize,
        progress: f64,
    ) -> Result<MicroStep> {
        let mut m = train_step(
            &self.mixed,
            self.teacher.as_ref(),
            self.data,
            &mut self.objective,
            batch,
            scale,
            step,
            progress,
        )?;
        m.tokens = batch.iter().map(|&k| self.lengths[k]).sum();
        Ok(m)
    }

    fn evaluate(&self) -> Result<Scores> {
        evaluate(self.model, self.data, self.cfg)
    }

    fn param_groups(&self) -> Vec<(Vec<(String, Var)>, f64)> {
        let proj_scale = self
            .cfg
            .objective
            .projection_lr
            .unwrap_or(self.cfg.learning_rate)
            / self.cfg.learning_rate;
        vec![
            (self.model.named_vars(), 1.0),
            (self.objective.named_vars(), proj_scale),
        ]
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        Ok(self.model.save(dir, self.data.label_names)?)
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        if self.objective.has_state() {
            self.objective.save(&dir.join("objective.safetensors"))?;
        }
        Ok(())
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let model = self.model;
        let files = teacher::ModelSource::Local(dir.to_path_buf()).resolve(false)?;
        let (loaded, _) = Classifier::load(&files, Some(model.num_labels), 0, &model.device)?;
        for ((_, dst), (_, src)) in model.named_vars().iter().zip(loaded.named_vars()) {
            dst.set(src.as_tensor())?;
        }
        if self.objective.has_state() {
            self.objective.load(&dir.join("objective.safetensors"))?;
        }
        Ok(())
    }
}

fn validate(model: &Classifier, data: &TrainData, objective: &Objective) -> Result<()> {
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(Error::Msg("training and dev sets must not be empty".into()));
    }
    if data.train.len() != data.train_labels.len() || data.dev.len() != data.dev_labels.len() {
        return Err(Error::Msg("examples and labels differ in number".into()));
    }
    if let Some(a) = &data.align {
        let n = data.train.len();
        if a.student_words.len() != n || a.teacher.len() != n || a.teacher_words.len() != n {
            return Err(Error::Msg(format!(
                "word alignment covers {} / {} / {} examples but the training set has {n}",
                a.student_words.len(),
                a.teacher.len(),
                a.teacher_words.len()
            )));
        }
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

#[allow(clippy::too_many_arguments)]
fn train_step(
    model: &Classifier,
    teacher: Option<&Classifier>,
    data: &TrainData,
    objective: &mut Objective,
    idx: &[usize],
    scale: f64,
    step: usize,
    progress: f64,
) -> Result<MicroStep> {
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
    // With different tokenizers the teacher reads its own tokens of the same examples, and the
    // word pooling matrices pair the two sides word by word.
    let (teacher, words) = match teacher {
        Some(t) if objective.needs_teacher_states() || online_logits => match &data.align {
            Some(a) => {
                let t_items: Vec<&Encoded> = idx.iter().map(|&i| &a.teacher[i]).collect();
                let t_batch = make_batch(&t_items, a.teacher_pad_id, dev)?;
                let (tl, out) = t.forward_with(&t_batch, false, want)?;
                let sw: Vec<&[Option<u32>]> =
                    idx.iter().map(|&i| a.student_words[i].as_slice()).collect();
                let tw: Vec<&[Option<u32>]> =
                    idx.iter().map(|&i| a.teacher_words[i].as_slice()).collect();
                let pools = crate::loss::word_pools(
                    &sw,
                    &tw,
                    batch.input_ids.dim(1)?,
                    t_batch.input_ids.dim(1)?,
                    dev,
                )?;
                (Some((tl.detach(), detach(out))), Some(pools))
            }
            None => {
                let (tl, out) = t.forward_with(&batch, false, want)?;
                (Some((tl.detach(), detach(out))), None)
            }
        },
        _ => (None, None),
    };
    let teacher_logits = cached.as_ref().or(teacher.as_ref().map(|(l, _)| l));
    let inputs = StepInputs {
        logits: &logits,
        student: &student,
        labels: &labels,
        teacher_logits,
        teacher: teacher.as_ref().map(|(_, o)| o),
        mask: &batch.attention_mask,
        words: words.as_ref(),
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
        // f16's range ends at 65,504: activations beyond it are infinite, which bf16 would survive.
        let hint = if model.encoder.compute_dtype() == candle_core::DType::F16 {
            "; under precision f16 an activation may have overflowed, bf16 has f32's range"
        } else {
            ""
        };
        return Err(Error::NonFinite {
            step: step + 1,
            what: format!("the loss ({}){hint}", parts.join(", ")),
        });
    }
    // Scaled only under gradient accumulation (1.0 keeps the graph, and the result, unchanged).
    let grads = if scale == 1.0 {
        out.total.backward()?
    } else {
        (&out.total * scale)?.backward()?
    };
    // `kd` and `task` at the top level: the raw kd and task losses (0 when absent), for readers of
    // earlier logs.
    let raw = |k: TermKind| {
        out.values
            .iter()
            .find(|v| v.kind == k)
            .map_or(0.0, |v| v.raw)
    };
    let extra = vec![("kd", raw(TermKind::Kd)), ("task", raw(TermKind::Ce))];
    Ok(MicroStep {
        grads,
        loss: loss_v,
        terms: out
            .values
            .iter()
            .map(|v| LoggedTerm {
                name: v.name.clone(),
                raw: v.raw,
                weighted: v.weighted,
            })
            .collect(),
        extra,
        tokens: 0,
    })
}

/// The teacher's states cut from any graph.
pub(crate) fn detach(out: teacher::EncoderOutput) -> teacher::EncoderOutput {
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
