//! How a model is optimised: the settings of the loop, AdamW and its schedule. One type for every
//! purpose (the student's `train:`, the teacher's `teacher.finetune:`, pre-training's `train:`), so a
//! key means one thing everywhere; only the defaults differ by purpose, and each set is written once
//! (`for_tasks`, `for_pretraining`). A section read from YAML starts from its purpose's defaults and
//! takes the keys it names; an unknown key is refused with the expected ones listed.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::dist::Reduction;
use crate::precision::Precision;

/// The optimisation settings of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
// Deserialize is written below (each purpose's defaults); `default` tells the schema a task's defaults.
#[serde(default)]
pub struct TrainSettings {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples (or pre-training inputs) per micro-batch, per process when data-parallel.
    pub batch_size: usize,
    /// Micro-batches per optimizer step: a step sees `batch_size · gradient_accumulation` examples
    /// (times the data-parallel processes). Default 1 for tasks, 16 for pre-training; left out of
    /// stamps at 1, so outputs made before the setting existed stay fresh.
    #[serde(skip_serializing_if = "is_one")]
    pub gradient_accumulation: usize,
    /// AdamW's peak learning rate, reached after the warmup and decayed linearly to 0.
    pub learning_rate: f64,
    /// Share of the optimizer steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// AdamW's decoupled weight decay (not applied to biases and LayerNorm weights).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0: no clipping).
    pub max_grad_norm: f64,
    /// Evaluate every N optimizer steps as well as after every epoch (0: after epochs only).
    pub eval_every: usize,
    /// Stop after N optimizer steps (0: no limit), for quick runs.
    pub max_steps: usize,
    /// Log the loss terms, learning rate and gradient norm every N optimizer steps (metrics.jsonl and
    /// TensorBoard). Left out of stamps: it changes no result.
    #[serde(skip_serializing_if = "is_ten")]
    pub logging_steps: usize,
    /// Examples per evaluation batch (default: `teacher.batch_size` for tasks, 64 for pre-training).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batch_size: Option<usize>,
    /// The dtype of the matrix products: fp32 (the default), bf16 or f16 (weights, gradients and
    /// AdamW stay f32). Left out of stamps at fp32.
    #[serde(skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// The learning rate after the warmup: `linear` decay to 0 (the default), `cosine` (half a cosine
    /// down to 0) or `constant`, as `transformers.get_{linear,cosine,constant}_schedule_with_warmup`.
    /// Left out of stamps when linear.
    #[serde(skip_serializing_if = "Schedule::is_linear")]
    pub schedule: Schedule,
    /// Stop once the dev metric has not improved for `patience` evaluations in a row (default: no early
    /// stopping). The best checkpoint is kept as always.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// How data-parallel ranks sum their gradients: `deterministic` (the default: gathered and added
    /// in rank order, so N ranks equal one process accumulating N micro-batches, bit for bit) or
    /// `fast` (MPI_Allreduce, or NCCL's ring on GPUs). Left out of stamps when deterministic.
    #[serde(skip_serializing_if = "Reduction::is_deterministic")]
    pub all_reduce: Reduction,
}

/// The learning rate's shape after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Linear,
    Cosine,
    Constant,
}

impl Schedule {
    fn is_linear(&self) -> bool {
        *self == Schedule::Linear
    }
}

/// When training stops before its epochs are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Evaluations in a row without a new best before training stops.
    pub patience: usize,
    /// The dev metric watched (e.g. `f1`, `spearman`); default: the task's main metric. Lower is better
    /// for names with `loss` or `perplexity` in them, higher for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

impl EarlyStopping {
    /// Whether `history` (every evaluation so far, in order) has gone `patience` evaluations without
    /// improving on the best before them. `main_lower_is_better` gives the main metric's direction.
    pub fn reached(&self, history: &[crate::metrics::Scores], main_lower_is_better: bool) -> bool {
        let value = |s: &crate::metrics::Scores| match &self.metric {
            Some(m) => s.values.get(m).copied().unwrap_or(f64::NAN),
            None => s.main,
        };
        let lower = match &self.metric {
            Some(m) => m.contains("loss") || m.contains("perplexity"),
            None => main_lower_is_better,
        };
        let mut best: Option<f64> = None;
        let mut since = 0;
        for v in history.iter().map(value) {
            let improved = best.is_none_or(|b| if lower { v < b } else { v > b });
            if improved {
                best = Some(v);
                since = 0;
            } else {
                since += 1;
            }
        }
        since >= self.patience
    }
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_ten(n: &usize) -> bool {
    *n == 10
}

impl TrainSettings {
    /// Task training (the student, and fine-tuning a head-less teacher).
    pub fn for_tasks() -> Self {
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
            logging_steps: 10,
            eval_batch_size: None,
            precision: Precision::Fp32,
            schedule: Schedule::Linear,
            early_stopping: None,
            all_reduce: Reduction::Deterministic,
        }
    }

    /// Masked-LM pre-training, RoBERTa-tiny-cased's recipe: an effective batch of 512 inputs.
    pub fn for_pretraining() -> Self {
        Self {
            epochs: 20,
            gradient_accumulation: 16,
            warmup_ratio: 0.06,
            eval_batch_size: Some(64),
            ..Self::for_tasks()
        }
    }

    /// The evaluation batch size, `fallback` when the settings leave it open.
    pub fn eval_batch(&self, fallback: usize) -> usize {
        self.eval_batch_size.unwrap_or(fallback)
    }

    /// The keys present in a YAML section, over `base`.
    fn overlay(base: Self, p: Partial) -> Self {
        Self {
            epochs: p.epochs.unwrap_or(base.epochs),
            batch_size: p.batch_size.unwrap_or(base.batch_size),
            gradient_accumulation: p
                .gradient_accumulation
                .unwrap_or(base.gradient_accumulation),
            learning_rate: p.learning_rate.unwrap_or(base.learning_rate),
            warmup_ratio: p.warmup_ratio.unwrap_or(base.warmup_ratio),
            weight_decay: p.weight_decay.unwrap_or(base.weight_decay),
            max_grad_norm: p.max_grad_norm.unwrap_or(base.max_grad_norm),
            eval_every: p.eval_every.unwrap_or(base.eval_every),
            max_steps: p.max_steps.unwrap_or(base.max_steps),
            logging_steps: p.logging_steps.unwrap_or(base.logging_steps),
            eval_batch_size: p.eval_batch_size.or(base.eval_batch_size),
            precision: p.precision.unwrap_or(base.precision),
            schedule: p.schedule.unwrap_or(base.schedule),
            early_stopping: p.early_stopping.or(base.early_stopping),
            all_reduce: p.all_reduce.unwrap_or(base.all_reduce),
        }
    }

    /// `deserialize_with` for a pre-training section: its keys over `for_pretraining()`.
    pub fn pretraining<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::overlay(
            Self::for_pretraining(),
            Partial::deserialize(d)?,
        ))
    }

    /// Checks the values, naming `key.field` (e.g. `teacher.finetune.epochs`) in the message.
    pub fn validate(&self, key: &str) -> Result<(), String> {
        let checks: [(bool, &str, String); 10] = [
            (self.epochs > 0, "epochs", "must be positive".into()),
            (self.batch_size > 0, "batch_size", "must be positive".into()),
            (
                self.gradient_accumulation > 0,
                "gradient_accumulation",
                "must be positive (1: no accumulation)".into(),
            ),
            (
                self.learning_rate > 0.0 && self.learning_rate < 1.0,
                "learning_rate",
                format!("must be within (0, 1) (got {})", self.learning_rate),
            ),
            (
                (0.0..1.0).contains(&self.warmup_ratio),
                "warmup_ratio",
                format!("must be within [0, 1) (got {})", self.warmup_ratio),
            ),
            (
                self.weight_decay >= 0.0,
                "weight_decay",
                "must not be negative".into(),
            ),
            (
                self.max_grad_norm >= 0.0,
                "max_grad_norm",
                "must not be negative (0 disables clipping)".into(),
            ),
            (
                self.eval_batch_size != Some(0),
                "eval_batch_size",
                "must be positive".into(),
            ),
            (
                self.logging_steps > 0,
                "logging_steps",
                "must be positive".into(),
            ),
            (
                self.early_stopping.as_ref().is_none_or(|e| e.patience > 0),
                "early_stopping.patience",
                "must be positive (leave `early_stopping` out to train every epoch)".into(),
            ),
        ];
        match checks.into_iter().find(|(ok, _, _)| !ok) {
            Some((_, field, msg)) => Err(format!("{key}.{field}: {msg}")),
            None => Ok(()),
        }
    }
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self::for_tasks()
    }
}

/// A task section: its keys over `for_tasks()`.
impl<'de> Deserialize<'de> for TrainSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::overlay(Self::for_tasks(), Partial::deserialize(d)?))
    }
}

/// The keys a YAML section names; the rest come from the purpose's defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Partial {
    epochs: Option<usize>,
    batch_size: Option<usize>,
    gradient_accumulation: Option<usize>,
    learning_rate: Option<f64>,
    warmup_ratio: Option<f64>,
    weight_decay: Option<f64>,
    max_grad_norm: Option<f64>,
    eval_every: Option<usize>,
    max_steps: Option<usize>,
    logging_steps: Option<usize>,
    eval_batch_size: Option<usize>,
    precision: Option<Precision>,
    schedule: Option<Schedule>,
    early_stopping: Option<EarlyStopping>,
    all_reduce: Option<Reduction>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_fills_in_its_own_defaults() {
        let t: TrainSettings = serde_json::from_str(r#"{"epochs": 2}"#).unwrap();
        assert_eq!(
            t,
            TrainSettings {
                epochs: 2,
                ..TrainSettings::for_tasks()
            }
        );
        let mut d = serde_json::Deserializer::from_str(r#"{"learning_rate": 0.001}"#);
        let p = TrainSettings::pretraining(&mut d).unwrap();
        assert_eq!(p.gradient_accumulation, 16);
        assert_eq!(p.learning_rate, 0.001);
        assert_eq!(TrainSettings::for_tasks().gradient_accumulation, 1);
    }

    #[test]
    fn an_unknown_key_is_refused_with_the_expected_ones() {
        let e = serde_json::from_str::<TrainSettings>(r#"{"lr": 0.1}"#).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown field `lr`"), "{msg}");
        assert!(msg.contains("learning_rate"), "{msg}");
    }

    #[test]
    fn early_stopping_counts_evaluations_since_the_best() {
        let scores = |vals: &[f64]| -> Vec<crate::metrics::Scores> {
            vals.iter()
                .map(|&v| crate::metrics::Scores {
                    values: [("accuracy".to_string(), v), ("loss".to_string(), -v)]
                        .into_iter()
                        .collect(),
                    main: v,
                })
                .collect()
        };
        let e = EarlyStopping {
            patience: 2,
            metric: None,
        };
        assert!(!e.reached(&scores(&[0.5, 0.6, 0.6]), false));
        assert!(e.reached(&scores(&[0.5, 0.6, 0.6, 0.55]), false));
        assert!(!e.reached(&scores(&[0.5, 0.6, 0.6, 0.7]), false));
        // The same history read as a loss: falling values are the improvements.
        assert!(e.reached(&scores(&[0.5, 0.6, 0.7]), true));
        let by_loss = EarlyStopping {
            patience: 2,
            metric: Some("loss".into()),
        };
        assert!(!by_loss.reached(&scores(&[0.5, 0.6, 0.7]), false));
        assert!(by_loss.reached(&scores(&[0.7, 0.6, 0.5]), false));
    }

    #[test]
    fn validation_names_the_key() {
        let t = TrainSettings {
            warmup_ratio: 1.5,
            ..TrainSettings::for_tasks()
        };
        assert!(t
            .validate("teacher.finetune")
            .unwrap_err()
            .starts_with("teacher.finetune.warmup_ratio"));
    }
}
