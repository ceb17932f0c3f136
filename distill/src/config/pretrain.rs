//! The configuration of `distill pretrain`: YAML -> `--set` overrides -> `${VAR}` expansion ->
//! `PretrainConfig` (unknown keys refused) -> `validate()`, through the same loader as `RunConfig`;
//! every error names the file and the key. The student section is the task runs' `StudentConfig`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use data::corpus::MaskingConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use student::terms::{ObjectiveConfig, TermSpec};
use train::TrainSettings;

use crate::config::{check, parse, StudentConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Where the run writes its cache, checkpoints, log and export.
    pub output_dir: PathBuf,
    /// Seeds the initialisation, the held-out split, packing order, masks and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N
    #[serde(default)]
    pub device: crate::config::DeviceSpec,
    /// Plain-text files: one sentence per line, blank lines between documents.
    pub corpus: Vec<PathBuf>,
    /// Where the token cache lives (default: OUTPUT_DIR/cache); rebuilt when the corpus or tokenizer
    /// changes.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The student to pre-train: `init: random` with a shape (RoBERTa-tiny by default), or a folder to
    /// continue from; `tokenizer` is required for a random student.
    #[serde(default)]
    pub student: StudentConfig,
    /// Tokens per packed input, special tokens included.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub masking: MaskingConfig,
    /// Share of the documents held out for evaluation.
    #[serde(default = "default_held_out")]
    pub held_out: f64,
    /// The optimisation settings, with pre-training's defaults (an effective batch of 512 inputs).
    #[serde(
        default = "TrainSettings::for_pretraining",
        deserialize_with = "TrainSettings::pretraining"
    )]
    pub train: TrainSettings,
    /// General distillation from a teacher run on the same masked batches (none: MLM only).
    #[serde(default)]
    pub distill: Option<PretrainDistill>,
}

/// `distill:` of a pre-training run: token-level terms against an online teacher, with or without the
/// MLM loss. The teacher must tokenize as the student does (checked on the corpus's first lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainDistill {
    /// A folder or hub id of any BERT-family encoder (its heads are not used).
    pub teacher: String,
    /// The hub revision of `teacher`.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Weight of the MLM loss beside the terms (0: distillation only).
    #[serde(default = "default_one")]
    pub mlm_weight: f64,
    /// hidden_mse, hidden_cosine, attention_mse, minilm_relations, as in task configs' `distill.terms`.
    pub terms: Vec<TermSpec>,
    /// Learning rate of the hidden-state projections (default: train.learning_rate).
    #[serde(default)]
    pub projection_lr: Option<f64>,
}

impl PretrainDistill {
    pub fn objective(&self) -> ObjectiveConfig {
        ObjectiveConfig {
            terms: self.terms.clone(),
            projection_lr: self.projection_lr,
            ..Default::default()
        }
    }
}

fn default_revision() -> String {
    "main".into()
}
fn default_one() -> f64 {
    1.0
}

fn default_seed() -> u64 {
    42
}
fn default_max_seq_len() -> usize {
    256
}
fn default_held_out() -> f64 {
    0.01
}

/// Reads and validates a pre-training config, and checks that its corpus files exist.
pub fn load(path: &Path, overrides: &[String]) -> Result<PretrainConfig> {
    let cfg: PretrainConfig = parse(path, overrides)?;
    let checks = || -> Result<()> {
        cfg.validate()?;
        for (i, f) in cfg.corpus.iter().enumerate() {
            check(
                f.is_file(),
                &format!("corpus[{i}]"),
                format!("{} is not a file", f.display()),
            )?;
        }
        Ok(())
    };
    checks().map_err(|e| anyhow!("config {}: {e}", path.display()))?;
    Ok(cfg)
}

impl PretrainConfig {
    pub fn validate(&self) -> Result<()> {
        check(
            !self.output_dir.as_os_str().is_empty(),
            "output_dir",
            "must not be empty",
        )?;
        check(!self.corpus.is_empty(), "corpus", "lists no files")?;
        check(
            !self.student.from_teacher(),
            "student.init",
            "`teacher` is for task configs; pre-training starts from `random` or a checkpoint",
        )?;
        check(
            self.student.init != "random" || self.student.tokenizer.is_some(),
            "student.tokenizer",
            "a random student needs a tokenizer (vocab.txt or tokenizer.json)",
        )?;
        check(
            matches!(
                self.student.model_type.as_deref(),
                None | Some("bert" | "roberta")
            ),
            "student.model_type",
            "must be bert or roberta",
        )?;
        check(
            (8..=4096).contains(&self.max_seq_len),
            "max_seq_len",
            format!("must be between 8 and 4096 (got {})", self.max_seq_len),
        )?;
        self.masking.check().map_err(|e| anyhow!("masking: {e}"))?;
        check(
            self.held_out > 0.0 && self.held_out < 1.0,
            "held_out",
            format!("must be within (0, 1) (got {})", self.held_out),
        )?;
        if let Some(d) = &self.distill {
            check(
                !d.teacher.is_empty(),
                "distill.teacher",
                "must not be empty",
            )?;
            check(
                d.mlm_weight >= 0.0 && d.mlm_weight.is_finite(),
                "distill.mlm_weight",
                "must be 0 or more",
            )?;
            check(!d.terms.is_empty(), "distill.terms", "lists no terms")?;
            for (i, t) in d.terms.iter().enumerate() {
                check(
                    t.kind.token_level(),
                    &format!("distill.terms[{i}].kind"),
                    format!(
                        "`{}` needs task logits; pre-training takes hidden_mse, hidden_cosine, attention_mse or minilm_relations",
                        t.kind.name()
                    ),
                )?;
            }
            check(
                d.mlm_weight > 0.0 || d.terms.iter().any(|t| t.weight > 0.0),
                "distill.mlm_weight",
                "is 0 and every term has weight 0: nothing to train",
            )?;
            d.objective()
                .validate()
                .map_err(|e| anyhow!("distill.{e}"))?;
        }
        self.train.validate("train").map_err(|e| anyhow!(e))
    }

    /// The token cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.output_dir.join("cache"))
    }
}
