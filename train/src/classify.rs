//! Training a sequence classifier (or a regressor: one output) as a task of the shared loop: batches
//! of similar lengths in an order that depends only on (seed, epoch), a loss per micro-batch, dev
//! evaluation with the task's metric, checkpoints of the model. What the micro-batch minimises is a
//! `ClassifierLoss`: `TaskLoss` (the gold labels alone) fine-tunes a teacher; the student crate's
//! distillation objective is another.

use std::path::Path;

use candle_core::{DType, Tensor, Var};
use data::{Label, Metric};
use modeling::batch::{bucketed_batches, make_batch};
use modeling::{Batch, Classifier, Encoded, ModelSource, Want};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dist::Group;
use crate::metrics::Scores;
use crate::settings::TrainSettings;
use crate::trainer::{self, LoggedTerm, MicroStep, Task, TrainReport};
use crate::{eval, loss, Error, Result};

/// Tokenised training and dev sets with their gold labels.
pub struct ClassifyData<'a> {
    pub train: &'a [Encoded],
    pub train_labels: &'a [Label],
    pub dev: &'a [Encoded],
    pub dev_labels: &'a [Label],
    pub pad_id: u32,
    pub metric: Metric,
    /// Label names in index order (empty for regression), written into saved configs.
    pub label_names: &'a [String],
    /// The data-parallel group this process trains in (`None`: alone).
    pub group: Option<&'a Group>,
    /// Where the TensorBoard event files go (`None`: metrics.jsonl only).
    pub tensorboard: Option<&'a Path>,
}

/// The loss of one micro-batch: the total to differentiate and each term for the log.
pub struct StepLoss {
    pub total: Tensor,
    pub terms: Vec<LoggedTerm>,
}

/// What a classifier's micro-batch minimises.
pub trait ClassifierLoss {
    /// The loss of the training examples `idx`, batched as `batch` with gold `labels` ([b] u32 class
    /// ids, or [b, 1] f32 scores): runs `model` forward in training mode. `progress` in [0, 1).
    fn loss(
        &mut self,
        model: &Classifier,
        idx: &[usize],
        batch: &Batch,
        labels: &Tensor,
        progress: f64,
    ) -> Result<StepLoss>;
    /// Trained weights besides the model's (e.g. projections), with their learning-rate scale.
    fn extra_vars(&self) -> (Vec<(String, Var)>, f64) {
        (Vec::new(), 1.0)
    }
    /// Saves state beyond the model (e.g. projections) into a checkpoint folder.
    fn save_state(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }
    /// Restores what `save_state` wrote.
    fn load_state(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// The gold labels alone: cross-entropy, or mean squared error for regression.
pub struct TaskLoss;

impl ClassifierLoss for TaskLoss {
    fn loss(
        &mut self,
        model: &Classifier,
        _idx: &[usize],
        batch: &Batch,
        labels: &Tensor,
        _progress: f64,
    ) -> Result<StepLoss> {
        let (logits, _) = model.forward_with(batch, true, Want::default())?; // [b, c]
        let (name, total) = if model.num_labels == 1 {
            ("mse", loss::mse_labelled(&logits, labels)?)
        } else {
            ("ce", loss::ce(&logits, labels)?)
        };
        let v = total.to_scalar::<f32>()?;
        Ok(StepLoss {
            total,
            terms: vec![LoggedTerm {
                name: name.into(),
                raw: v,
                weighted: v,
            }],
        })
    }
}

/// What a classifier's training run is: the settings, the seed, and `config`, the whole configuration
/// a `last/` checkpoint must match to be resumed.
pub struct Run<'a, C> {
    pub settings: &'a TrainSettings,
    pub seed: u64,
    pub eval_batch_size: usize,
    pub config: &'a C,
}

/// Trains `model` in place on `data`, minimising `loss`. Checkpoints go to `out/best` and
/// `out/last`, the metrics log to `out/metrics.jsonl`. `stop(step)` ends the run early after an
/// evaluation and a `last/` checkpoint, for a later call to resume.
pub fn train<C, L>(
    model: &Classifier,
    data: &ClassifyData,
    loss: &mut L,
    run: &Run<C>,
    out: &Path,
    stop: &dyn Fn(usize) -> bool,
) -> Result<TrainReport>
where
    C: Clone + PartialEq + Serialize + DeserializeOwned,
    L: ClassifierLoss,
{
    if data.train.is_empty() || data.dev.is_empty() {
        return Err(Error::Msg("training and dev sets must not be empty".into()));
    }
    if data.train.len() != data.train_labels.len() || data.dev.len() != data.dev_labels.len() {
        return Err(Error::Msg("examples and labels differ in number".into()));
    }
    run.settings.precision.note_for(&model.device);
    // A clone shares the weights: the mixed-precision one trains `model`, which evaluates in f32.
    let mut mixed = model.clone();
    mixed.set_compute_dtype(run.settings.precision.dtype())?;
    let mut task = Classify {
        model,
        mixed,
        data,
        run,
        loss,
        lengths: data.train.iter().map(|e| e.ids.len()).collect(),
    };
    let single = Group::single();
    let group = data.group.unwrap_or(&single);
    trainer::run(
        &mut task,
        run.settings,
        run.seed,
        out,
        stop,
        group,
        data.tensorboard,
    )
}

/// The batches of `epoch`: a function of (seed, epoch) only, so a resumed run replays it exactly.
pub fn epoch_batches(
    lengths: &[usize],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    bucketed_batches(lengths, batch_size, &mut rng)
}

/// The gold labels of examples `idx`: [b] u32 class ids, or [b, 1] f32 scores for one output.
pub fn labels(
    model: &Classifier,
    labels: &[Label],
    idx: &[usize],
    dev: &candle_core::Device,
) -> Result<Tensor> {
    Ok(if model.num_labels == 1 {
        let y: Vec<f32> = idx
            .iter()
            .map(|&i| match labels[i] {
                Label::Score(s) => s,
                Label::Class(c) => c as f32,
            })
            .collect();
        Tensor::from_vec(y, (idx.len(), 1), dev)?
    } else {
        let y: Vec<u32> = idx
            .iter()
            .map(|&i| match labels[i] {
                Label::Class(c) => c as u32,
                Label::Score(s) => s as u32,
            })
            .collect();
        Tensor::new(y, dev)?
    })
}

struct Classify<'a, C, L> {
    /// The model as given: f32, for evaluation and checkpoints.
    model: &'a Classifier,
    /// The same weights computing in the configured precision, for the training steps.
    mixed: Classifier,
    data: &'a ClassifyData<'a>,
    run: &'a Run<'a, C>,
    loss: &'a mut L,
    lengths: Vec<usize>,
}

impl<C, L> Task for Classify<'_, C, L>
where
    C: Clone + PartialEq + Serialize + DeserializeOwned,
    L: ClassifierLoss,
{
    type Config = C;

    fn config(&self) -> &C {
        self.run.config
    }

    fn train_len(&self) -> usize {
        self.data.train.len()
    }

    fn epoch_batches(&self, epoch: usize) -> Result<Vec<Vec<usize>>> {
        Ok(epoch_batches(
            &self.lengths,
            self.run.settings.batch_size,
            self.run.seed,
            epoch,
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
        idx: &[usize],
        _epoch: usize,
        scale: f64,
        step: usize,
        progress: f64,
    ) -> Result<MicroStep> {
        let model = &self.mixed;
        let dev = &model.device;
        let items: Vec<&Encoded> = idx.iter().map(|&i| &self.data.train[i]).collect();
        let batch = make_batch(&items, self.data.pad_id, dev)?;
        let gold = labels(model, self.data.train_labels, idx, dev)?;
        let out = self.loss.loss(model, idx, &batch, &gold, progress)?;
        let loss_v = out.total.to_scalar::<f32>()?;
        if !loss_v.is_finite() {
            let parts: Vec<String> = out
                .terms
                .iter()
                .map(|v| format!("{} {}", v.name, v.raw))
                .collect();
            // f16's range ends at 65,504: activations beyond it are infinite, which bf16 would survive.
            let hint = if model.encoder.compute_dtype() == DType::F16 {
                "; under precision f16 an activation may have overflowed, bf16 has f32's range"
            } else {
                ""
            };
            return Err(Error::NonFinite {
                step: step + 1,
                what: format!("the loss ({}){hint}", parts.join(", ")),
            });
        }
        let grads = modeling::backward_scaled(&out.total, scale, model.encoder.grad_sink())?;
        Ok(MicroStep {
            grads,
            loss: loss_v,
            terms: out.terms,
            tokens: idx.iter().map(|&k| self.lengths[k]).sum(),
        })
    }

    fn evaluate(&self) -> Result<Scores> {
        let batch = self.run.eval_batch_size;
        let pass = inference::logits(
            self.model,
            self.data.dev,
            self.data.pad_id,
            batch,
            Some("eval"),
        )
        .map_err(|e| Error::Msg(format!("{e:#}")))?;
        eval::score(&pass.logits, self.data.dev_labels, self.data.metric)
    }

    fn param_groups(&self) -> Vec<(Vec<(String, Var)>, f64)> {
        let (extra, scale) = self.loss.extra_vars();
        vec![(self.model.named_vars(), 1.0), (extra, scale)]
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        Ok(self.model.save(dir, self.data.label_names)?)
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        self.loss.save_state(dir)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let model = self.model;
        let files = ModelSource::Local(dir.to_path_buf()).resolve(false)?;
        let (loaded, _) = Classifier::load(&files, Some(model.num_labels), 0, &model.device)?;
        for ((_, dst), (_, src)) in model.named_vars().iter().zip(loaded.named_vars()) {
            dst.set(src.as_tensor())?;
        }
        self.loss.load_state(dir)
    }
}
