//! Masked-language-model pre-training as a `Task` of the shared loop (`trainer`): packed, dynamically
//! masked inputs (`data::corpus`), the mean cross-entropy over predicted tokens (RoBERTa's MLM
//! objective), and held-out evaluation: loss, perplexity (exp of the mean loss over predicted tokens)
//! and accuracy (argmax == original token over predicted tokens). The best checkpoint has the lowest
//! held-out loss.
//!
//! General distillation (TinyBERT's general stage, MiniLM): token-level terms of the shared objective
//! (`objective`: hidden_mse, hidden_cosine, attention_mse, minilm_relations) against a teacher run in
//! eval mode, detached, on the same masked batches, alone (`mlm_weight: 0`) or added to the MLM loss.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var, D};
use data::corpus::MlmDataset;
use modeling::MaskedLm;
use serde::{Deserialize, Serialize};

use crate::objective::{Objective, StepInputs};
use crate::terms::ObjectiveConfig;
use train::dist::Group;
use train::metrics::Scores;
use train::settings::TrainSettings;
use train::trainer::{self, LoggedTerm, MicroStep, Task, TrainReport};
use train::{Error, Result};

/// Optimisation settings of a pre-training run; with `data` it identifies the run a `last/` belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlmTrainConfig {
    /// The optimisation settings (the pre-training config's `train:` section).
    pub train: TrainSettings,
    pub seed: u64,
    /// Identifies the data (corpus fingerprint, packing, masking) and the teacher: a checkpoint of other
    /// data is not resumed.
    pub data: String,
    /// Weight of the MLM loss (0: distillation terms only).
    pub mlm_weight: f64,
    /// Token-level distillation terms against the online teacher (none: MLM only).
    pub objective: ObjectiveConfig,
}

/// Pre-trains `model` in place on `train`, evaluating on `eval`; checkpoints, log and report in `out`
/// as for task training (`best/` is the lowest held-out loss).
/// `teacher` runs the token-level terms of `cfg.objective` (its MLM head is not used). `group` is the
/// data-parallel group (`Group::single()` alone).
#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    model: &MaskedLm,
    teacher: Option<&MaskedLm>,
    train: &MlmDataset,
    eval: &MlmDataset,
    cfg: &MlmTrainConfig,
    out: &Path,
    stop: &dyn Fn(usize) -> bool,
    group: &Group,
) -> Result<TrainReport> {
    if train.is_empty() || eval.is_empty() {
        return Err(Error::Msg(
            "pre-training needs non-empty training and held-out sets".into(),
        ));
    }
    let objective = distillation(model, teacher, cfg)?;
    if objective.is_none() && cfg.mlm_weight <= 0.0 {
        return Err(Error::Msg(
            "mlm_weight is 0 and there are no distillation terms: nothing to train".into(),
        ));
    }
    // Clones share the weights: the mixed-precision student trains `model`, which evaluates in f32.
    let mixed = |m: &MaskedLm| -> Result<MaskedLm> {
        let mut m = m.clone();
        m.set_compute_dtype(cfg.train.precision.dtype())?;
        Ok(m)
    };
    cfg.train.precision.note_for(&model.device);
    let mut task = Mlm {
        model,
        mixed: mixed(model)?,
        train,
        eval,
        cfg,
        distill: objective.zip(teacher.map(mixed).transpose()?),
    };
    trainer::run(
        &mut task,
        &cfg.train,
        cfg.seed,
        out,
        stop,
        group,
        Some(&out.join("tb").join("pretrain")),
    )
}

/// Held-out scores of `model` on `data`, masked as for epoch 0 (the same masks at every evaluation).
pub fn evaluate(model: &MaskedLm, data: &MlmDataset, batch_size: usize) -> Result<Scores> {
    let (mut loss_sum, mut correct, mut n) = (0f64, 0usize, 0usize);
    for idx in data.eval_batches(batch_size) {
        let mb = data.batch(&idx, 0, &model.device)?;
        let k = mb.num_predicted();
        if k == 0 {
            continue;
        }
        let logits = model.forward_at(&mb.batch, &mb.positions, false)?; // [k, vocab]
        let ce = candle_nn::loss::cross_entropy(&logits, &mb.targets)?.to_scalar::<f32>()?;
        loss_sum += ce as f64 * k as f64;
        let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1()?;
        let gold: Vec<u32> = mb.targets.to_vec1()?;
        correct += pred.iter().zip(&gold).filter(|(p, g)| p == g).count();
        n += k;
    }
    if n == 0 {
        return Err(Error::Msg(
            "the held-out set has no predicted tokens".into(),
        ));
    }
    let loss = loss_sum / n as f64;
    let values = BTreeMap::from([
        ("loss".to_string(), loss),
        ("perplexity".to_string(), loss.exp()),
        ("accuracy".to_string(), correct as f64 / n as f64),
        ("predicted_tokens".to_string(), n as f64),
    ]);
    Ok(Scores { values, main: loss })
}

/// The distillation objective of `cfg`, bound to both models; None without terms.
fn distillation(
    model: &MaskedLm,
    teacher: Option<&MaskedLm>,
    cfg: &MlmTrainConfig,
) -> Result<Option<Objective>> {
    if cfg.objective.terms.is_empty() {
        return Ok(None);
    }
    if let Some(t) = cfg.objective.terms.iter().find(|t| !t.kind.token_level()) {
        return Err(Error::Msg(format!(
            "distill.terms: `{}` needs task logits; pre-training takes token-level terms only (hidden_mse, hidden_cosine, attention_mse, minilm_relations)",
            t.kind.name()
        )));
    }
    let Some(teacher) = teacher else {
        return Err(Error::Msg(
            "distill.terms are set but no teacher was given".into(),
        ));
    };
    if teacher.device.location() != model.device.location() {
        return Err(Error::Msg(
            "the online teacher must be on the student's device".into(),
        ));
    }
    // The objective reads its terms and seed from a task config; the shorthand's kd/ce are unused here.
    let tc = crate::TrainConfig {
        alpha_kd: 0.0,
        seed: cfg.seed,
        train: cfg.train.clone(),
        objective: cfg.objective.clone(),
        ..Default::default()
    };
    Ok(Some(Objective::new(
        &tc,
        &model.config,
        Some(&teacher.config),
        &model.device,
    )?))
}

struct Mlm<'a> {
    /// The model as given: f32, for evaluation and checkpoints.
    model: &'a MaskedLm,
    /// The same weights computing in the configured precision, for the training steps.
    mixed: MaskedLm,
    train: &'a MlmDataset,
    eval: &'a MlmDataset,
    cfg: &'a MlmTrainConfig,
    /// The objective and the online teacher, in the configured precision.
    distill: Option<(Objective, MaskedLm)>,
}

impl Task for Mlm<'_> {
    type Config = MlmTrainConfig;

    fn config(&self) -> &MlmTrainConfig {
        self.cfg
    }

    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn epoch_batches(&self, epoch: usize) -> Result<Vec<Vec<usize>>> {
        Ok(self
            .train
            .epoch_batches(self.cfg.train.batch_size, epoch as u64))
    }

    fn loss_units(&self, batch: &[usize], epoch: usize) -> Result<usize> {
        let mut n = 0;
        let masker = self.train.masker();
        for &i in batch {
            let ids = self.train.input_ids(i)?;
            let m = masker.mask(&ids, epoch as u64, i as u64);
            n += m
                .labels
                .iter()
                .filter(|&&l| l != data::corpus::IGNORE)
                .count();
        }
        Ok(n)
    }

    fn reseed_dropout(&self, seed: u64) {
        self.model.dropout.reseed(seed);
    }

    fn micro_step(
        &mut self,
        batch: &[usize],
        epoch: usize,
        scale: f64,
        step: usize,
        progress: f64,
    ) -> Result<MicroStep> {
        let tokens = batch
            .iter()
            .map(|&i| self.train.packing().input_len(i))
            .sum();
        let mb = self.train.batch(batch, epoch as u64, &self.model.device)?;
        if mb.num_predicted() == 0 {
            // Nothing to predict (possible in a tiny micro-batch): no gradient, weight 0 in the step.
            return Ok(MicroStep {
                grads: Default::default(),
                loss: 0.0,
                terms: Vec::new(),
                tokens,
            });
        }
        let want = self
            .distill
            .as_ref()
            .map(|(o, _)| o.want())
            .unwrap_or_default();
        let out = self.mixed.encoder.forward_with(&mb.batch, true, want)?;
        let mut terms = Vec::new();
        let mut total: Option<Tensor> = None;
        if self.cfg.mlm_weight > 0.0 {
            // The vocabulary logits only at the predicted positions (as MaskedLm::forward_at).
            let last = out.last()?; // [b, s, h]
            let (b, s, h) = last.dims3()?;
            let picked = last.reshape((b * s, h))?.index_select(&mb.positions, 0)?; // [n, h]
            let logits = self.mixed.head.forward(&picked, true)?; // [n, vocab]
            let mlm = candle_nn::loss::cross_entropy(&logits, &mb.targets)?;
            let v = mlm.to_scalar::<f32>()?;
            terms.push(LoggedTerm {
                name: "mlm".into(),
                raw: v,
                weighted: v * self.cfg.mlm_weight as f32,
            });
            total = Some(if self.cfg.mlm_weight == 1.0 {
                mlm
            } else {
                (mlm * self.cfg.mlm_weight)?
            });
        }
        if let Some((objective, teacher)) = &mut self.distill {
            // The teacher in eval mode on the same masked batch, cut from the graph.
            let t = teacher.encoder.forward_with(&mb.batch, false, want)?;
            let t = crate::train::detach(t);
            // Token-level terms read neither logits nor labels; these stand in for StepInputs' fields.
            let b = mb.batch.input_ids.dim(0)?;
            let dummy = Tensor::zeros((b, 2), DType::F32, &self.model.device)?;
            let labels = Tensor::zeros(b, DType::U32, &self.model.device)?;
            let step_loss = objective.loss(&StepInputs {
                logits: &dummy,
                student: &out,
                labels: &labels,
                teacher_logits: None,
                teacher: Some(&t),
                mask: &mb.batch.attention_mask,
                words: None,
                progress,
            })?;
            terms.extend(step_loss.values.iter().map(|v| LoggedTerm {
                name: v.name.clone(),
                raw: v.raw,
                weighted: v.weighted,
            }));
            total = Some(match total {
                Some(x) => (x + step_loss.total)?,
                None => step_loss.total,
            });
        }
        let loss = total.ok_or_else(|| Error::Msg("no loss term".into()))?;
        let v = loss.to_scalar::<f32>()?;
        if !v.is_finite() {
            let parts: Vec<String> = terms
                .iter()
                .map(|t| format!("{} {}", t.name, t.raw))
                .collect();
            return Err(Error::NonFinite {
                step: step + 1,
                what: format!("the pre-training loss ({})", parts.join(", ")),
            });
        }
        let grads = modeling::backward_scaled(&loss, scale, self.mixed.encoder.grad_sink())?;
        Ok(MicroStep {
            grads,
            loss: v,
            terms,
            tokens,
        })
    }

    fn evaluate(&self) -> Result<Scores> {
        evaluate(self.model, self.eval, self.cfg.train.eval_batch(64))
    }

    fn lower_is_better(&self) -> bool {
        true
    }

    fn param_groups(&self) -> Vec<(Vec<(String, Var)>, f64)> {
        let mut groups = vec![(self.model.named_vars(), 1.0)];
        if let Some((o, _)) = &self.distill {
            let scale = self
                .cfg
                .objective
                .projection_lr
                .unwrap_or(self.cfg.train.learning_rate)
                / self.cfg.train.learning_rate;
            groups.push((o.named_vars(), scale));
        }
        groups
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        match &self.distill {
            Some((o, _)) if o.has_state() => Ok(o.save(&dir.join("objective.safetensors"))?),
            _ => Ok(()),
        }
    }

    fn save_model(&self, dir: &Path) -> Result<()> {
        Ok(self.model.save(dir)?)
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        let files = modeling::ModelSource::Local(dir.to_path_buf()).resolve(false)?;
        let (loaded, _) = MaskedLm::load(&files, 0, &self.model.device)?;
        let (dst, src) = (self.model.named_vars(), loaded.named_vars());
        if dst.len() != src.len() {
            return Err(Error::file(
                dir,
                "the checkpoint's tensors differ from the model's",
            ));
        }
        for ((_, d), (_, s)) in dst.iter().zip(src) {
            d.set(s.as_tensor())?;
        }
        if let Some((o, _)) = &mut self.distill {
            if o.has_state() {
                o.load(&dir.join("objective.safetensors"))?;
            }
        }
        Ok(())
    }
}
