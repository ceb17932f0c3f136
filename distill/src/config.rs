//! The run configuration: YAML -> `--set` overrides -> `${VAR}` expansion -> `RunConfig` (serde, unknown
//! keys refused) -> `validate()`. Every error names the file (or the `--set` argument) and the YAML key
//! ([`errors`] words them).

mod device;
pub mod doc;
pub mod embedding;
mod errors;
pub mod pretrain;
pub(crate) mod schema;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use data::tasks::{Column, Format};
use data::{Metric, TaskSpec};
pub use device::DeviceSpec;
use modeling::infer::Pooling;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;
pub use student::init::StudentConfig;
use student::terms::{ObjectiveConfig, TemperatureSchedule, TermSpec};
use train::TrainSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A GLUE task name (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli) or `custom`.
    pub task: String,
    /// Where the run writes everything: the teacher, the targets, the student, the report, the export.
    pub output_dir: PathBuf,
    /// Seeds the data subset, the teacher's fine-tuning, the student's initialisation, batch order
    /// and dropout, and the bootstrap: the same seed gives the same run.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N
    #[serde(default)]
    pub device: DeviceSpec,
    /// The task's data.
    pub data: DataConfig,
    /// The teacher: a checkpoint, fine-tuned on the task first when it has no task head.
    pub teacher: TeacherConfig,
    /// The student: its shape and where its weights start.
    #[serde(default)]
    pub student: StudentConfig,
    /// The distillation objective.
    #[serde(default)]
    pub distill: DistillConfig,
    /// How the student is optimised.
    #[serde(default)]
    pub train: TrainSettings,
    /// The grid `distill sweep` searches.
    #[serde(default)]
    pub sweep: SweepConfig,
    /// Overrides of the checks run before the teacher's targets and the student's training.
    #[serde(default)]
    pub preflight: PreflightConfig,
    /// Training in stages (TinyBERT's intermediate-layer then prediction-layer distillation): each
    /// stage trains with its own terms, epochs and learning rate, starting from the previous stage's
    /// final weights. Empty: one stage with `distill` and `train`.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// TinyBERT's data augmentation of the training set (off unless `augment.copies` > 0); the
    /// augmented examples and their teacher logits live in the targets cache.
    #[serde(default)]
    pub augment: teacher::augment::AugmentConfig,
}

/// One stage of `stages:`; unset keys keep the run's `train` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Names the stage's folder (`student/stages/<i>-<name>`); letters, digits, `-` and `_`.
    pub name: String,
    /// The stage's objective.
    pub distill: DistillConfig,
    /// The stage's epochs (default: `train.epochs`).
    #[serde(default)]
    pub epochs: Option<usize>,
    /// The stage's peak learning rate (default: `train.learning_rate`).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Pruning while distilling: the student's shape from this stage on, no wider than the previous
    /// stage's. A later stage narrower than the one before it starts from a selection of that stage's
    /// final weights (`student.selection`, scored on the student itself). Unset keys keep the shape so
    /// far (the `student` keys, then earlier stages').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<StageShape>,
}

/// A stage's student shape (`stages[i].shape`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageShape {
    /// The student's width.
    #[serde(default)]
    pub hidden_size: Option<usize>,
    /// Its attention heads.
    #[serde(default)]
    pub num_heads: Option<usize>,
    /// Its FFN width.
    #[serde(default)]
    pub intermediate_size: Option<usize>,
}

impl StageShape {
    /// The keys, named as in the config, with their values.
    fn keys(&self) -> [(&'static str, Option<usize>); 3] {
        [
            ("hidden_size", self.hidden_size),
            ("num_heads", self.num_heads),
            ("intermediate_size", self.intermediate_size),
        ]
    }

    /// Sets the student's shape keys that this shape sets.
    pub fn apply(&self, student: &mut StudentConfig) {
        self.set([
            &mut student.hidden_size,
            &mut student.num_heads,
            &mut student.intermediate_size,
        ]);
    }

    /// Sets the keys of `so_far` that this shape sets.
    pub fn apply_to(&self, so_far: &mut StageShape) {
        self.set([
            &mut so_far.hidden_size,
            &mut so_far.num_heads,
            &mut so_far.intermediate_size,
        ]);
    }

    /// Width, heads, FFN width: each set to this shape's where it has one.
    fn set(&self, keys: [&mut Option<usize>; 3]) {
        for (to, (_, v)) in keys.into_iter().zip(self.keys()) {
            *to = v.or(*to);
        }
    }
}

/// Hyper-parameter grid for `distill sweep` (default: the RoBERTa-tiny recipe's grid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    /// The batch sizes tried.
    pub batch_size: Vec<usize>,
    /// The peak learning rates tried.
    pub learning_rate: Vec<f64>,
    /// Student seeds per grid point (empty: the run's `seed`); results are reported as mean ± std.
    pub seeds: Vec<u64>,
    /// Successive halving: train every trial for a quarter of its updates, keep the better half, train
    /// those to half, keep the better half, finish those.
    pub halving: bool,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            batch_size: vec![8, 16, 32, 64, 128],
            learning_rate: vec![3e-4, 1e-4, 5e-5, 3e-5],
            seeds: Vec::new(),
            halving: false,
        }
    }
}

fn default_seed() -> u64 {
    42
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder holding the task's train and dev files (or give `hub`).
    #[serde(default)]
    pub dir: PathBuf,
    /// Read the task from a Hub dataset's Parquet files, instead of `dir` when both are given: `{repo:
    /// nyu-mll/glue}` (config defaults to the task's name; revision `main`; splits `train` and
    /// `validation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<data::hub::HubDataset>,
    /// Longest input in tokens, special tokens included (longer inputs are truncated, longest first).
    #[serde(default = "default_max_len")]
    pub max_seq_len: usize,
    /// Use a seeded random subset of the training set of this size (0: all of it).
    #[serde(default)]
    pub max_train_examples: usize,
    /// Use the first N dev examples (0: all of them).
    #[serde(default)]
    pub max_dev_examples: usize,
    /// Custom tasks only: how to read the files.
    #[serde(default)]
    pub custom: Option<CustomTask>,
}

fn default_max_len() -> usize {
    128
}

/// A task that is not in GLUE: file names, format, columns, labels and metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomTask {
    /// The files' format.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Whether the files' first line names the columns (TSV and CSV).
    #[serde(default = "default_true")]
    pub header: bool,
    /// The training file, relative to `data.dir`.
    pub train_file: String,
    /// The dev file, relative to `data.dir`.
    pub dev_file: String,
    /// The column of the first (or only) text.
    pub text_a: Column,
    /// The column of the second text of a sentence pair.
    #[serde(default)]
    pub text_b: Option<Column>,
    /// The column of the gold label (a class name, or a score for regression).
    pub label: Column,
    /// Class names in index order; leave empty for a regression task.
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default = "default_metric")]
    pub metric: Metric,
}

fn default_format() -> Format {
    Format::Tsv
}
fn default_true() -> bool {
    true
}
fn default_metric() -> Metric {
    Metric::Accuracy
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// A local Hugging Face folder or a hub id.
    pub model: String,
    /// The hub revision of `model` (a branch, tag or commit).
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Admit pickle `pytorch_model.bin` weights (they can run code; safetensors is the default).
    #[serde(default)]
    pub allow_pickle: bool,
    /// Inference batch size for targets and evaluation.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// The products of the target pass: `fp32` (the default) or `bf16` (CPUs with AVX-512 BF16: about
    /// twice as fast, logits within bf16's precision of fp32's; docs/performance.md). Evaluation stays
    /// fp32; fine-tuning has `finetune.precision`.
    #[serde(default, skip_serializing_if = "train::Precision::is_fp32")]
    pub precision: train::Precision,
    /// Used when the checkpoint has no task head: fine-tune it on the task first.
    #[serde(default)]
    pub finetune: TrainSettings,
    /// Layers whose pooled hidden states are cached with the logits (0 = embeddings).
    #[serde(default)]
    pub hidden_layers: Vec<usize>,
    /// How a layer's states become one vector per example for `hidden_layers`: the first token (`cls`)
    /// or the mean over real tokens (`mean`).
    #[serde(default)]
    pub pooling: Pooling,
    /// Weight of this teacher's logits when `ensemble` lists more teachers.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// More teachers, each already fine-tuned on the task (with a head), whose logits are averaged with
    /// this one's in the cached targets, weighted (TextBrewer's multi-teacher distillation). Hidden
    /// states and token-level terms use `model` alone.
    #[serde(default)]
    pub ensemble: Vec<EnsembleMember>,
    /// Take the fine-tuned teacher and its targets from the machine's cache when another run made them,
    /// and put them there when this one does (`$DISTILL_CACHE`, else `$XDG_CACHE_HOME/distill`, else
    /// `~/.cache/distill`; `DISTILL_CACHE=off` turns it off everywhere). `false`: this run's output folder
    /// alone.
    #[serde(default = "default_true")]
    pub cache: bool,
}

/// One more teacher of `teacher.ensemble`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnsembleMember {
    /// A teacher fine-tuned on the task: a local folder or a hub id.
    pub model: String,
    /// The hub revision of `model`.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Weight of this teacher's logits in the average.
    #[serde(default = "default_weight")]
    pub weight: f64,
}

fn default_weight() -> f64 {
    1.0
}

fn default_revision() -> String {
    "main".into()
}
fn default_eval_batch() -> usize {
    64
}

/// The distillation objective. New keys are left out of the serialized form (and so out of stage
/// stamps) while they hold their defaults, so configs written before them stay fresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Weight of the soft-target (KD) loss; the task loss gets 1 - alpha_kd. Only used without `terms`.
    #[serde(default = "default_alpha")]
    pub alpha_kd: f64,
    /// Temperature of kd terms that set none.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// The loss terms, each with its weight; absent: `[{kind: kd, weight: alpha_kd},
    /// {kind: ce, weight: 1 - alpha_kd}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<Vec<TermSpec>>,
    /// Per-example temperatures for kd terms that set none: constant | flsw | cwsm (default
    /// constant; Wen et al. 2019).
    #[serde(default, skip_serializing_if = "is_constant")]
    pub temperature_schedule: TemperatureSchedule,
    /// flsw / cwsm: how far a temperature moves from `temperature` (default 1).
    #[serde(default = "default_one", skip_serializing_if = "is_one")]
    pub temperature_beta: f64,
    /// flsw: the exponent of the cosine distance (default 1).
    #[serde(default = "default_one", skip_serializing_if = "is_one")]
    pub temperature_gamma: f64,
    /// Scale each term by the inverse of its running magnitude (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub balance: bool,
    /// Learning rate of the hidden-state projections (default: `train.learning_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_lr: Option<f64>,
}

fn default_alpha() -> f64 {
    0.5
}
fn default_temperature() -> f64 {
    2.0
}
fn default_one() -> f64 {
    1.0
}
fn is_one(v: &f64) -> bool {
    *v == 1.0
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn is_constant(v: &TemperatureSchedule) -> bool {
    *v == TemperatureSchedule::Constant
}

impl Default for DistillConfig {
    fn default() -> Self {
        Self {
            alpha_kd: default_alpha(),
            temperature: default_temperature(),
            terms: None,
            temperature_schedule: TemperatureSchedule::Constant,
            temperature_beta: 1.0,
            temperature_gamma: 1.0,
            balance: false,
            projection_lr: None,
        }
    }
}

impl DistillConfig {
    /// The student's view of this section (the shorthand is resolved there).
    pub fn objective(&self) -> ObjectiveConfig {
        ObjectiveConfig {
            terms: self.terms.clone().unwrap_or_default(),
            temperature_schedule: self.temperature_schedule,
            temperature_beta: self.temperature_beta,
            temperature_gamma: self.temperature_gamma,
            balance: self.balance,
            projection_lr: self.projection_lr,
        }
    }

    /// The terms in force (the configured list or the shorthand's two).
    pub fn resolved_terms(&self) -> Vec<TermSpec> {
        self.objective()
            .resolved_terms(self.alpha_kd, self.temperature)
    }
}

/// A stage's shape: positive, and no wider than the one an earlier stage set (pruning only removes).
fn validate_shape(shape: &StageShape, earlier: &[StageConfig], key: &str) -> Result<()> {
    for (j, (name, v)) in shape.keys().into_iter().enumerate() {
        let Some(v) = v else { continue };
        check(v > 0, &format!("{key}.shape.{name}"), "must be positive")?;
        let before = earlier
            .iter()
            .rev()
            .find_map(|st| st.shape.as_ref().and_then(|s| s.keys()[j].1));
        if let Some(b) = before {
            check(
                v <= b,
                &format!("{key}.shape.{name}"),
                format!("{v} is wider than an earlier stage's {b}: a stage can only prune"),
            )?;
        }
    }
    Ok(())
}

/// The `distill` section's own checks, with `key` (`distill`, `stages[1].distill`) in every message.
fn validate_distill(d: &DistillConfig, key: &str) -> Result<()> {
    check(
        (0.0..=1.0).contains(&d.alpha_kd),
        &format!("{key}.alpha_kd"),
        format!("must be within [0, 1] (got {})", d.alpha_kd),
    )?;
    check(
        d.temperature > 0.0 && d.temperature.is_finite(),
        &format!("{key}.temperature"),
        format!("must be positive (got {})", d.temperature),
    )?;
    check(
        d.terms.as_ref().is_none_or(|t| !t.is_empty()),
        &format!("{key}.terms"),
        "must list at least one term (or leave it out for the alpha_kd shorthand)",
    )?;
    d.objective().validate().map_err(|e| anyhow!("{key}.{e}"))
}

fn validate_augment(a: &teacher::augment::AugmentConfig) -> Result<()> {
    check(
        a.copies <= 1000,
        "augment.copies",
        format!("must be at most 1000 (got {}; TinyBERT uses 20)", a.copies),
    )?;
    check(
        (0.0..=1.0).contains(&a.replace_prob),
        "augment.replace_prob",
        format!("must be within [0, 1] (got {})", a.replace_prob),
    )?;
    check(
        a.candidates > 0,
        "augment.candidates",
        "must be positive (TinyBERT uses 15)",
    )
}

/// Reads a config file, applies `--set key.path=value` overrides and `${VAR}` expansion, parses and
/// validates it.
pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
    let cfg: RunConfig = parse(path, overrides)?;
    cfg.validate()
        .map_err(|e| anyhow!("config {}: {e}", path.display()))?;
    Ok(cfg)
}

/// The loading steps every config type shares: read, `--set` overrides, `${VAR}` expansion, and serde
/// with errors naming the key, and the `--set` argument when one put the value there.
pub fn parse<T: serde::de::DeserializeOwned + JsonSchema>(
    path: &Path,
    overrides: &[String],
) -> Result<T> {
    let text = errors::read_text(path)?;
    let mut value: Value = serde_yaml::from_str(&text)
        .map_err(|e| anyhow!("config {}: invalid YAML: {e}", path.display()))?;
    if value.is_null() {
        bail!("config {}: the file is empty", path.display());
    }
    if !value.is_mapping() {
        bail!(
            "config {}: the top level must be a mapping of keys (task, output_dir, data, ...)",
            path.display()
        );
    }
    // The file's own tree, to tell a value the file gave from one a `--set` gave.
    let file = value.clone();
    for o in overrides {
        apply_override(&mut value, o).with_context(|| format!("--set {o}"))?;
    }
    // Before `${VAR}` expansion, which changes strings only: what the file and the `--set`s wrote.
    let written = value.clone();
    expand_env(&mut value, "").with_context(|| format!("config {}", path.display()))?;
    // serde_path_to_error names the key (`train.epochs`) that serde_yaml alone would not.
    serde_path_to_error::deserialize(value)
        .map_err(|e| errors::explain::<T>(path, &file, &written, overrides, &e))
}

/// Sets `a.b.c=value` in a YAML tree; the value is parsed as YAML (so numbers stay numbers).
fn apply_override(root: &mut Value, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| anyhow!("expected key.path=value"))?;
    let parsed: Value = serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.into()));
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            bail!("empty key segment in `{key}`");
        }
        let map = match node {
            Value::Mapping(m) => m,
            Value::Null => {
                *node = Value::Mapping(Default::default());
                match node {
                    Value::Mapping(m) => m,
                    _ => unreachable_mapping()?,
                }
            }
            _ => bail!("`{}` is not a mapping", parts[..i].join(".")),
        };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, parsed);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

fn unreachable_mapping<T>() -> Result<T> {
    bail!("internal: mapping expected")
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string of the tree.
fn expand_env(v: &mut Value, key: &str) -> Result<()> {
    match v {
        Value::String(s) if s.contains("${") => {
            *s = expand_str(s).map_err(|e| anyhow!("{key}: {e}"))?;
        }
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let name = k.as_str().unwrap_or("?");
                let path = if key.is_empty() {
                    name.to_string()
                } else {
                    format!("{key}.{name}")
                };
                expand_env(child, &path)?;
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                expand_env(child, &format!("{key}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("unclosed `${{` in `{s}`"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) => out.push_str(&v),
            (Err(_), Some(d)) => out.push_str(d),
            (Err(_), None) => bail!("environment variable {name} is not set (used in `{s}`)"),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn check(cond: bool, key: &str, msg: impl std::fmt::Display) -> Result<()> {
    if cond {
        Ok(())
    } else {
        bail!("{key}: {msg}")
    }
}

impl RunConfig {
    pub fn validate(&self) -> Result<()> {
        self.task_spec()?;
        check(
            !self.output_dir.as_os_str().is_empty(),
            "output_dir",
            "must not be empty",
        )?;
        check(
            self.data.max_seq_len >= 8 && self.data.max_seq_len <= 4096,
            "data.max_seq_len",
            format!("must be between 8 and 4096 (got {})", self.data.max_seq_len),
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
        check(
            self.teacher.precision != train::Precision::F16,
            "teacher.precision",
            "must be fp32 or bf16 (f16 has no CPU kernel for the target pass)",
        )?;
        check(
            self.data.hub.is_some() || !self.data.dir.as_os_str().is_empty(),
            "data",
            "give `dir` (a folder of files) or `hub` (a Hub dataset)",
        )?;
        self.train.validate("train").map_err(|e| anyhow!(e))?;
        self.student.validate()?;
        self.teacher
            .finetune
            .validate("teacher.finetune")
            .map_err(|e| anyhow!(e))?;
        let names = self.task_spec()?.metric.names();
        for (key, settings) in [
            ("train", &self.train),
            ("teacher.finetune", &self.teacher.finetune),
        ] {
            if let Some(m) = settings
                .early_stopping
                .as_ref()
                .and_then(|e| e.metric.as_ref())
            {
                check(
                    names.contains(&m.as_str()),
                    &format!("{key}.early_stopping.metric"),
                    format!(
                        "`{m}` is not a dev metric of task {} ({})",
                        self.task,
                        names.join(", ")
                    ),
                )?;
            }
        }
        let weights = std::iter::once(("teacher.weight".to_string(), self.teacher.weight)).chain(
            self.teacher
                .ensemble
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("teacher.ensemble[{i}].weight"), m.weight)),
        );
        let mut total = 0.0;
        for (key, w) in weights {
            check(
                w >= 0.0 && w.is_finite(),
                &key,
                format!("must be zero or positive (got {w})"),
            )?;
            total += w;
        }
        check(
            total > 0.0,
            "teacher.weight",
            "the teachers' weights sum to zero",
        )?;
        for (i, m) in self.teacher.ensemble.iter().enumerate() {
            check(
                !m.model.is_empty(),
                &format!("teacher.ensemble[{i}].model"),
                "must not be empty",
            )?;
        }
        validate_distill(&self.distill, "distill")?;
        validate_augment(&self.augment)?;
        let mut names = Vec::new();
        for (i, st) in self.stages.iter().enumerate() {
            let key = format!("stages[{i}]");
            check(
                !st.name.is_empty()
                    && st
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                &format!("{key}.name"),
                format!("must be letters, digits, `-` or `_` (got `{}`)", st.name),
            )?;
            check(
                !names.contains(&&st.name),
                &format!("{key}.name"),
                format!("`{}` names two stages", st.name),
            )?;
            names.push(&st.name);
            validate_distill(&st.distill, &format!("{key}.distill"))?;
            check(
                st.epochs != Some(0),
                &format!("{key}.epochs"),
                "must be positive",
            )?;
            if let Some(lr) = st.learning_rate {
                check(
                    lr > 0.0 && lr < 1.0,
                    &format!("{key}.learning_rate"),
                    format!("must be within (0, 1) (got {lr})"),
                )?;
            }
            if let Some(shape) = &st.shape {
                validate_shape(shape, &self.stages[..i], &key)?;
            }
        }
        let s = &self.student;
        if let Some(p) = s.dropout {
            check(
                (0.0..1.0).contains(&p),
                "student.dropout",
                format!("must be within [0, 1) (got {p})"),
            )?;
        }
        if let Some(t) = &s.model_type {
            check(
                t == "bert" || t == "roberta",
                "student.model_type",
                format!("must be bert or roberta (got `{t}`)"),
            )?;
        }
        // Upper bounds keep a typo from asking for terabytes (or overflowing a shape).
        for (key, v, max) in [
            ("student.hidden_size", s.hidden_size, 16_384),
            ("student.num_layers", s.num_layers, 256),
            ("student.num_heads", s.num_heads, 256),
            ("student.intermediate_size", s.intermediate_size, 65_536),
            (
                "student.max_position_embeddings",
                s.max_position_embeddings,
                65_536,
            ),
        ] {
            if let Some(v) = v {
                check(
                    (1..=max).contains(&v),
                    key,
                    format!("must be between 1 and {max} (got {v})"),
                )?;
            }
        }
        let w = &self.sweep;
        check(
            !w.batch_size.is_empty() && w.batch_size.iter().all(|&b| b > 0),
            "sweep.batch_size",
            "must list positive batch sizes",
        )?;
        check(
            !w.learning_rate.is_empty() && w.learning_rate.iter().all(|&l| l > 0.0 && l < 1.0),
            "sweep.learning_rate",
            "must list learning rates within (0, 1)",
        )?;
        if s.init == "random" && s.tokenizer.is_none() {
            bail!("student.tokenizer: required when student.init is `random` (a vocab.txt or tokenizer.json)");
        }
        Ok(())
    }

    /// The task's reading and scoring rules.
    pub fn task_spec(&self) -> Result<TaskSpec> {
        if self.task == "custom" {
            let c = self
                .data
                .custom
                .as_ref()
                .ok_or_else(|| anyhow!("data.custom: required when task is `custom`"))?;
            return Ok(TaskSpec {
                name: "custom".into(),
                format: c.format,
                header: c.header,
                text_a: c.text_a.clone(),
                text_b: c.text_b.clone(),
                label: c.label.clone(),
                labels: c.labels.clone(),
                metric: if c.labels.is_empty() {
                    Metric::PearsonSpearman
                } else {
                    c.metric
                },
                train_file: c.train_file.clone(),
                dev_file: c.dev_file.clone(),
                extra_dev: Vec::new(),
            });
        }
        if self.data.custom.is_some() {
            bail!("data.custom: only allowed when task is `custom`");
        }
        TaskSpec::glue(&self.task).ok_or_else(|| {
            anyhow!(
                "task: unknown task `{}` (one of {} or custom)",
                self.task,
                data::glue::names().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// `preflight:` overrides; each `true` turns one refusal into a warning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PreflightConfig {
    /// Go on with a teacher that scores at chance level on dev.
    pub allow_weak_teacher: bool,
    /// Go on with a teacher whose labels seem to be the dataset's in another order.
    pub allow_label_mismatch: bool,
    /// Go on with a student tokenizer whose casing does not match the data.
    pub allow_casing_mismatch: bool,
}
