//! The configuration of an embedding run (`task: embedding`, run by `distill run`): unlabelled sentences,
//! a sentence-embedding teacher, the student, the loss, the STS set it is scored on. Loaded through the
//! same steps as `RunConfig` (`--set` overrides, `${VAR}` expansion, unknown keys refused, errors naming
//! the file and the key).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use data::sentences::SentenceSource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use student::static_embedding::StaticConfig;
use train::TrainSettings;

use crate::config::{check, parse, DeviceSpec, StudentConfig};

/// The `task:` value that makes a config an embedding run.
pub const TASK: &str = "embedding";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// `embedding`.
    pub task: String,
    /// Where the run writes its targets, checkpoints, report and export.
    pub output_dir: PathBuf,
    /// Seeds the held-out split, the student's initialisation, batch order, dropout and the bootstrap.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N
    #[serde(default)]
    pub device: DeviceSpec,
    /// The unlabelled sentences the student learns the teacher's embeddings of.
    pub data: EmbeddingData,
    /// The sentence-embedding teacher, used as it is (never fine-tuned).
    pub teacher: EmbeddingTeacher,
    /// The student: its shape and where its weights start (as in task configs).
    #[serde(default)]
    pub student: StudentConfig,
    #[serde(default)]
    pub loss: EmbeddingLoss,
    /// How the student is optimised (the task configs' `train:` keys and defaults).
    #[serde(default = "TrainSettings::for_tasks")]
    pub train: TrainSettings,
    /// Sentence pairs with similarity scores, scored by the cosine of their embeddings.
    #[serde(default)]
    pub eval: Option<StsSet>,
    /// A static student instead of a transformer (model2vec's distillation: a vector per token of the
    /// teacher's vocabulary, no training); `student`, `loss` and `train` are then unused.
    #[serde(default)]
    pub static_model: Option<StaticConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingData {
    /// Where the unlabelled sentences come from (each sentence is kept once).
    pub sentences: Vec<SentenceSource>,
    /// Longest input in tokens, special tokens included.
    #[serde(default = "default_max_len")]
    pub max_seq_len: usize,
    /// Use a seeded random subset of the sentences of this size (0: all of them).
    #[serde(default)]
    pub max_sentences: usize,
    /// Sentences held out (seeded) to choose the best checkpoint by agreement with the teacher.
    #[serde(default = "default_held_out")]
    pub held_out: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingTeacher {
    /// A sentence-transformers folder (its `modules.json` says how it pools and normalises) or any
    /// BERT-family folder or hub id (mean pooling, normalised).
    pub model: String,
    /// The hub revision of `model`.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Inference batch size for the targets and evaluation.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

/// The student's loss against the teacher's embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingLoss {
    /// Weight of `1 - cos(student, teacher)`.
    pub cosine: f64,
    /// Weight of the mean squared error (sentence-transformers' distillation loss).
    pub mse: f64,
}

impl Default for EmbeddingLoss {
    fn default() -> Self {
        Self {
            cosine: 1.0,
            mse: 0.0,
        }
    }
}

/// Scored sentence pairs in STS-B's layout (a TSV with a header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StsSet {
    /// The file (STS-B's `dev.tsv`).
    pub file: PathBuf,
    /// The columns of the two sentences and of the score.
    #[serde(default = "default_pair")]
    pub columns: [String; 3],
    /// Score only the first N pairs (0: all).
    #[serde(default)]
    pub max_pairs: usize,
}

fn default_seed() -> u64 {
    42
}
fn default_max_len() -> usize {
    128
}
fn default_held_out() -> usize {
    1000
}
fn default_revision() -> String {
    "main".into()
}
fn default_batch() -> usize {
    64
}
fn default_pair() -> [String; 3] {
    ["sentence1".into(), "sentence2".into(), "score".into()]
}

/// Whether the config at `path` (with `overrides`) is an embedding run: its `task` is `embedding`.
pub fn is_embedding(path: &Path, overrides: &[String]) -> bool {
    let set = overrides
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix("task="))
        .map(str::to_string);
    let task = set.or_else(|| {
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        v.get("task")?.as_str().map(str::to_string)
    });
    task.as_deref() == Some(TASK)
}

/// Reads and validates an embedding config, and checks that its files exist.
pub fn load(path: &Path, overrides: &[String]) -> Result<EmbeddingConfig> {
    let cfg: EmbeddingConfig = parse(path, overrides)?;
    cfg.validate()
        .and_then(|_| cfg.check_files())
        .map_err(|e| anyhow!("config {}: {e}", path.display()))?;
    Ok(cfg)
}

impl EmbeddingConfig {
    pub fn validate(&self) -> Result<()> {
        check(self.task == TASK, "task", format!("must be `{TASK}`"))?;
        check(
            !self.output_dir.as_os_str().is_empty(),
            "output_dir",
            "must not be empty",
        )?;
        check(
            !self.data.sentences.is_empty(),
            "data.sentences",
            "lists no sources",
        )?;
        for (i, s) in self.data.sentences.iter().enumerate() {
            if let Some(p) = s.problem() {
                return check(false, &format!("data.sentences[{i}]"), p);
            }
        }
        check(
            (8..=4096).contains(&self.data.max_seq_len),
            "data.max_seq_len",
            format!("must be between 8 and 4096 (got {})", self.data.max_seq_len),
        )?;
        check(
            self.data.held_out > 0,
            "data.held_out",
            "must be at least 1",
        )?;
        check(
            !self.teacher.model.is_empty(),
            "teacher.model",
            "must not be empty",
        )?;
        check(
            self.teacher.batch_size > 0,
            "teacher.batch_size",
            "must be positive",
        )?;
        for (k, v) in [
            ("loss.cosine", self.loss.cosine),
            ("loss.mse", self.loss.mse),
        ] {
            check(v >= 0.0 && v.is_finite(), k, "must be 0 or more")?;
        }
        check(
            self.loss.cosine > 0.0 || self.loss.mse > 0.0,
            "loss",
            "cosine and mse are both 0: nothing to train",
        )?;
        if let Some(st) = &self.static_model {
            check(
                self.student == StudentConfig::default(),
                "student",
                "a static model is made of the teacher's vocabulary and outputs: leave `student:` out with `static_model:`",
            )?;
            check(st.dims > 0, "static_model.dims", "must be positive")?;
            check(
                st.sif_coefficient >= 0.0 && st.sif_coefficient < 1.0,
                "static_model.sif_coefficient",
                "must be within [0, 1)",
            )?;
            check(
                st.batch_size > 0,
                "static_model.batch_size",
                "must be positive",
            )?;
        }
        self.student
            .validate()
            .map_err(|e| anyhow!("student: {e}"))?;
        self.train.validate("train").map_err(|e| anyhow!(e))
    }

    /// The files the config names exist.
    pub fn check_files(&self) -> Result<()> {
        for (i, s) in self
            .data
            .sentences
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_local())
        {
            let f = s.path();
            check(
                f.is_file(),
                &format!("data.sentences[{i}]"),
                format!("{} is not a file", f.display()),
            )?;
        }
        if let Some(e) = &self.eval {
            check(
                e.file.is_file(),
                "eval.file",
                format!("{} is not a file", e.file.display()),
            )?;
        }
        Ok(())
    }
}
