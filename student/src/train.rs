//! The student's training: the distillation objective (see `objective`), by default
//! `alpha_kd · kd(student, teacher; T) + (1 − alpha_kd) · task loss` (CE, or MSE for regression), as
//! the loss of `train::classify`, which owns batching, evaluation and checkpoints. The teacher's
//! logits come from the target cache; token-level terms run the online teacher inside each step, in
//! eval mode and detached, on the same examples (on its own tokenization when its tokenizer differs).

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use data::{Label, Metric};
use modeling::batch::make_batch;
use modeling::{Batch, Classifier, Encoded};
use serde::{Deserialize, Serialize};
use train::classify::{self, ClassifierLoss, ClassifyData, Run, StepLoss};
use train::dist::Group;
use train::trainer::LoggedTerm;
use train::{TrainReport, TrainSettings};

use crate::objective::{Objective, StepInputs};
use crate::terms::ObjectiveConfig;
use crate::{Error, Result};

/// Everything a student's training run depends on (a `last/` checkpoint of another is not resumed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The optimisation settings (the config's `train:` section).
    pub train: TrainSettings,
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
            train: TrainSettings::for_tasks(),
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
    /// The teacher's own tokenization of the training set, when its tokenizer differs from the
    /// student's: the teacher then runs on it and hidden-state terms compare per-word means.
    pub align: Option<WordAlign<'a>>,
    pub pad_id: u32,
    pub metric: Metric,
    /// Label names in index order (empty for regression), written into saved configs.
    pub label_names: &'a [String],
    /// The data-parallel group this process trains in (`None`: alone).
    pub group: Option<&'a Group>,
    /// Where the TensorBoard event files go (`None`: metrics.jsonl only).
    pub tensorboard: Option<&'a std::path::Path>,
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
    // The online teacher computes in the student's precision.
    let teacher = match data.teacher {
        Some(t) => {
            let mut t = t.clone();
            t.set_compute_dtype(cfg.train.precision.dtype())?;
            Some(t)
        }
        None => None,
    };
    let proj_scale = cfg
        .objective
        .projection_lr
        .unwrap_or(cfg.train.learning_rate)
        / cfg.train.learning_rate;
    let mut loss = Distill {
        data,
        objective,
        teacher,
        proj_scale,
    };
    let task = ClassifyData {
        train: data.train,
        train_labels: data.train_labels,
        dev: data.dev,
        dev_labels: data.dev_labels,
        pad_id: data.pad_id,
        metric: data.metric,
        label_names: data.label_names,
        group: data.group,
        tensorboard: data.tensorboard,
    };
    let run = Run {
        settings: &cfg.train,
        seed: cfg.seed,
        eval_batch_size: cfg.eval_batch_size,
        config: cfg,
    };
    Ok(classify::train(model, &task, &mut loss, &run, out, stop)?)
}

/// The distillation objective with what it reads: the cached teacher logits, the online teacher.
struct Distill<'a> {
    data: &'a TrainData<'a>,
    objective: Objective,
    /// The online teacher (if any), in the student's precision.
    teacher: Option<Classifier>,
    /// The projections' learning rate relative to the student's.
    proj_scale: f64,
}

impl Distill<'_> {
    /// The objective on one micro-batch: the student's forward pass, the teacher's logits (cached, or
    /// from the online teacher) and, for token-level terms, the online teacher's states.
    fn step(
        &mut self,
        model: &Classifier,
        idx: &[usize],
        batch: &Batch,
        labels: &Tensor,
        progress: f64,
    ) -> Result<StepLoss> {
        let dev = &model.device;
        let want = self.objective.want();
        let (logits, student) = model.forward_with(batch, true, want)?; // [b, c]
        let cached = match self.data.teacher_logits {
            Some(t) if self.objective.needs_teacher_logits() => {
                let rows = Tensor::new(
                    idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    &Device::Cpu,
                )?;
                Some(t.index_select(&rows, 0)?.to_device(dev)?)
            }
            _ => None,
        };
        // The online teacher: eval mode (no dropout), detached so no gradient flows into it.
        let online_logits = self.objective.needs_teacher_logits() && cached.is_none();
        // With different tokenizers the teacher reads its own tokens of the same examples, and the
        // word pooling matrices pair the two sides word by word.
        let (teacher, words) = match self.teacher.as_ref() {
            Some(t) if self.objective.needs_teacher_states() || online_logits => {
                match &self.data.align {
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
                        let (tl, out) = t.forward_with(batch, false, want)?;
                        (Some((tl.detach(), detach(out))), None)
                    }
                }
            }
            _ => (None, None),
        };
        let teacher_logits = cached.as_ref().or(teacher.as_ref().map(|(l, _)| l));
        let inputs = StepInputs {
            logits: &logits,
            student: &student,
            labels,
            teacher_logits,
            teacher: teacher.as_ref().map(|(_, o)| o),
            mask: &batch.attention_mask,
            words: words.as_ref(),
            progress,
        };
        let out = self.objective.loss(&inputs)?;
        Ok(StepLoss {
            total: out.total,
            terms: out
                .values
                .iter()
                .map(|v| LoggedTerm {
                    name: v.name.clone(),
                    raw: v.raw,
                    weighted: v.weighted,
                })
                .collect(),
        })
    }
}

impl ClassifierLoss for Distill<'_> {
    fn loss(
        &mut self,
        model: &Classifier,
        idx: &[usize],
        batch: &Batch,
        labels: &Tensor,
        progress: f64,
    ) -> train::Result<StepLoss> {
        Ok(self.step(model, idx, batch, labels, progress)?)
    }

    fn extra_vars(&self) -> (Vec<(String, Var)>, f64) {
        (self.objective.named_vars(), self.proj_scale)
    }

    fn save_state(&self, dir: &Path) -> train::Result<()> {
        if self.objective.has_state() {
            self.objective.save(&dir.join("objective.safetensors"))?;
        }
        Ok(())
    }

    fn load_state(&mut self, dir: &Path) -> train::Result<()> {
        if self.objective.has_state() {
            self.objective.load(&dir.join("objective.safetensors"))?;
        }
        Ok(())
    }
}

fn validate(model: &Classifier, data: &TrainData, objective: &Objective) -> Result<()> {
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

/// The teacher's states cut from any graph.
pub(crate) fn detach(out: modeling::EncoderOutput) -> modeling::EncoderOutput {
    modeling::EncoderOutput {
        hidden_states: out.hidden_states.iter().map(Tensor::detach).collect(),
        attentions: out.attentions.iter().map(Tensor::detach).collect(),
        qkv: out
            .qkv
            .iter()
            .map(|q| modeling::Qkv {
                q: q.q.detach(),
                k: q.k.detach(),
                v: q.v.detach(),
            })
            .collect(),
    }
}
