//! The student before training, as the config's `student:` section describes it: RoBERTa-tiny-cased
//! (or another shape) with random weights; a checkpoint folder or hub id to start from (a task head of
//! another label count is re-initialised), such as the model card's own `haisongzhang/roberta-tiny-cased`;
//! or some of the teacher's blocks, as DistilBERT starts (Sanh et al. 2019): the teacher's width,
//! vocabulary, embeddings and chosen layers, so the student starts pretrained.

use std::path::{Path, PathBuf};

use candle_core::Device;
use modeling::importance::Importance;
use modeling::select::Selection;
use modeling::{Classifier, EncoderConfig, ModelFiles, ModelSource, TextTokenizer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The `student:` section of a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentConfig {
    /// `random`; `teacher`, the teacher's blocks `teacher_layers`; or a checkpoint folder / hub id to
    /// start from (e.g. `haisongzhang/roberta-tiny-cased`, RoBERTa-tiny-cased itself).
    #[serde(default = "default_init")]
    pub init: String,
    /// With `init: teacher`: the teacher's blocks the student keeps, 1-based and increasing (`[3, 6,
    /// 9, 12]`: every third of twelve). The student takes the task teacher's embeddings, these blocks
    /// and its head, and the teacher's tokenizer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teacher_layers: Vec<usize>,
    /// The hub revision of `init` (a branch, tag or commit).
    #[serde(default = "default_revision")]
    pub revision: String,
    /// vocab.txt or tokenizer.json; default: the tokenizer of `init`. With `init: teacher`, another
    /// vocabulary than the teacher's: each token's embedding starts from the teacher's rows for it
    /// (vocabulary transfer).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Lower-case input (vocab.txt tokenizers only). The reference student is cased.
    #[serde(default)]
    pub lowercase: bool,
    /// Architecture of a randomly initialised student (defaults: RoBERTa-tiny-cased).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Width of a random student (default 512); with `init: teacher`, a width below the teacher's
    /// selects that many of its hidden dimensions (`selection`); likewise below a checkpoint's that
    /// `init` names (a stage of `stages:` pruning the previous one).
    #[serde(default)]
    pub hidden_size: Option<usize>,
    /// Transformer blocks of a random student (default 4).
    #[serde(default)]
    pub num_layers: Option<usize>,
    /// Attention heads of a random student (default 8); with `init: teacher` or a checkpoint, fewer than
    /// its own keep that many of its heads.
    #[serde(default)]
    pub num_heads: Option<usize>,
    /// FFN width of a random student (default 2048); with `init: teacher` or a checkpoint, fewer than its
    /// own keep that many of its FFN units.
    #[serde(default)]
    pub intermediate_size: Option<usize>,
    /// Longest input a random student can read, in tokens (default 512).
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// Hidden and attention dropout of a randomly initialised student (default 0.1).
    #[serde(default)]
    pub dropout: Option<f64>,
    /// With `init: teacher` and a student narrower than the teacher (`hidden_size`, `num_heads`,
    /// `intermediate_size` below the teacher's), or a checkpoint and a student narrower than it, how
    /// its hidden dimensions, heads and FFN units are chosen from the teacher's (the checkpoint's):
    /// `even`, evenly spaced (weight selection, Xu et al. 2024); `importance`, the ones that
    /// contribute most to the teacher's outputs on training examples; or `gradient`, those whose
    /// removal changes the teacher's task loss most (the gradient of a mask on each).
    #[serde(default)]
    pub selection: SelectionMethod,
    /// With `selection` other than `even`: how many training examples (evenly spaced through the training
    /// set) the teacher's dimensions are scored on.
    #[serde(default = "default_importance_examples")]
    pub importance_examples: usize,
}

/// The teacher a student made of its weights starts from: its files and, for `selection: importance`,
/// the scores of its dimensions.
#[derive(Debug, Clone, Copy)]
pub struct TeacherWeights<'a> {
    pub files: &'a ModelFiles,
    pub importance: Option<&'a Importance>,
}

/// How a narrower student's dimensions are chosen from the teacher's (`student.selection`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMethod {
    /// Evenly spaced indices of each dimension.
    #[default]
    Even,
    /// The hidden dimensions, heads and FFN units that contribute most to the teacher's outputs on
    /// training examples (`modeling::importance`).
    Importance,
    /// The heads and FFN units that contribute most; the hidden dimensions evenly spaced (every
    /// LayerNorm then keeps statistics close to the teacher's over all its dimensions).
    ImportanceUnits,
    /// The hidden dimensions, heads and FFN units whose removal changes the teacher's task loss most:
    /// the gradient of the loss with respect to a mask on each (Michel et al. 2019's head mask;
    /// `modeling::importance::gradient`), on training examples with their labels.
    Gradient,
}

fn default_importance_examples() -> usize {
    512
}

fn default_init() -> String {
    "random".into()
}

fn default_revision() -> String {
    "main".into()
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            init: default_init(),
            revision: default_revision(),
            teacher_layers: Vec::new(),
            tokenizer: None,
            lowercase: false,
            model_type: None,
            hidden_size: None,
            num_layers: None,
            num_heads: None,
            intermediate_size: None,
            max_position_embeddings: None,
            dropout: None,
            selection: SelectionMethod::Even,
            importance_examples: default_importance_examples(),
        }
    }
}

impl StudentConfig {
    /// Whether the student starts from random weights.
    pub fn is_random(&self) -> bool {
        self.init == "random"
    }

    /// Whether the student starts from the teacher's blocks.
    pub fn from_teacher(&self) -> bool {
        self.init == "teacher"
    }

    /// The keys' own consistency, with the key named.
    pub fn validate(&self) -> Result<()> {
        if self.from_teacher() == self.teacher_layers.is_empty() {
            return Err(Error::Msg(
                "student.teacher_layers: set it with `init: teacher` and only then (e.g. `init: teacher`, `teacher_layers: [3, 6, 9, 12]`)".into(),
            ));
        }
        if self.from_teacher() && self.model_type.is_some() {
            return Err(Error::Msg(
                "student.model_type: a student made of the teacher's weights has the teacher's architecture; leave it out".into(),
            ));
        }
        Ok(())
    }

    /// The student's tokenizer: `tokenizer`, else the one of `init` (of the teacher's files
    /// `teacher`, with `init: teacher`).
    pub fn tokenizer(&self, max_len: usize, teacher: Option<&ModelFiles>) -> Result<TextTokenizer> {
        match (&self.tokenizer, teacher) {
            (Some(p), _) => TextTokenizer::from_file(p, max_len, self.lowercase)
                .map_err(|e| Error::Msg(format!("student.tokenizer: {e}"))),
            (None, Some(files)) if self.from_teacher() => TextTokenizer::for_model(files, max_len)
                .map_err(|e| Error::Msg(format!("student.init: the teacher's tokenizer: {e}"))),
            (None, None) if self.from_teacher() => Err(Error::Msg(
                "student.init: `teacher` needs the teacher's files".into(),
            )),
            _ => {
                let files = ModelSource::parse(&self.init, &self.revision)
                    .resolve(false)
                    .map_err(|e| Error::Msg(format!("student.init: {e}")))?;
                TextTokenizer::for_model(&files, max_len)
                    .map_err(|e| Error::Msg(format!("student.init: {e}")))
            }
        }
    }

    /// The shape of a student made of the teacher's weights (shape `teacher`): its blocks
    /// `teacher_layers`, and its width, heads and FFN unless the keys ask for fewer; sized to `tok`'s
    /// vocabulary (the teacher's, or another one transferred to). For a student selected from a
    /// checkpoint (`init` a folder, the shape keys narrower), that checkpoint's shape, narrowed.
    pub fn teacher_shape(
        &self,
        teacher: &EncoderConfig,
        tok: &TextTokenizer,
    ) -> Result<EncoderConfig> {
        let key = |e: modeling::Error| Error::Msg(format!("student.teacher_layers: {e}"));
        let layers = self.source_layers(teacher);
        let mut c = teacher.keep_layers(&layers).map_err(key)?;
        c.hidden_size = self.hidden_size.unwrap_or(c.hidden_size);
        c.num_attention_heads = self.num_heads.unwrap_or(c.num_attention_heads);
        c.intermediate_size = self.intermediate_size.unwrap_or(c.intermediate_size);
        if self.from_teacher() && self.tokenizer.is_some() {
            let old_offset = c.position_offset();
            c.vocab_size = tok.vocab_size();
            c.pad_token_id = tok.pad_id();
            c.max_position_embeddings =
                c.max_position_embeddings - old_offset + c.position_offset();
        }
        if let Some(p) = self.max_position_embeddings {
            c.max_position_embeddings = c
                .max_position_embeddings
                .min(p.saturating_add(c.position_offset()));
        }
        if let Some(p) = self.dropout {
            c.hidden_dropout_prob = p;
            c.attention_probs_dropout_prob = p;
        }
        c.check().map_err(|e| Error::Msg(format!("student: {e}")))?;
        modeling::select::check_fits(teacher, &c, &layers)
            .map_err(|e| Error::Msg(format!("student: {e}")))?;
        Ok(c)
    }

    /// Whether a student made of the teacher's weights is narrower than the teacher or reads another
    /// vocabulary: then its weights are selected (`modeling::select`), not whole blocks.
    pub fn selects(&self, teacher: &EncoderConfig) -> bool {
        self.tokenizer.is_some() || self.narrows(teacher)
    }

    /// Whether the shape keys ask for another width, head count or FFN width than `source`'s (the
    /// teacher's, or the checkpoint's that `init` names): then the student is selected from it.
    pub fn narrows(&self, source: &EncoderConfig) -> bool {
        self.hidden_size.is_some_and(|h| h != source.hidden_size)
            || self
                .num_heads
                .is_some_and(|h| h != source.num_attention_heads)
            || self
                .intermediate_size
                .is_some_and(|f| f != source.intermediate_size)
    }

    /// The blocks of `source` the student keeps, 1-based: `teacher_layers` from the teacher, all of a
    /// checkpoint's.
    pub fn source_layers(&self, source: &EncoderConfig) -> Vec<usize> {
        match self.from_teacher() {
            true => self.teacher_layers.clone(),
            false => (1..=source.num_hidden_layers).collect(),
        }
    }

    /// The encoder shape of a randomly initialised student: RoBERTa-tiny-cased, with the keys that set
    /// a shape, sized to `tok`'s vocabulary.
    pub fn random_config(&self, tok: &TextTokenizer) -> Result<EncoderConfig> {
        let mut c = EncoderConfig::roberta_tiny_cased();
        if let Some(t) = &self.model_type {
            c.model_type = t.clone();
            if t == "roberta" {
                c.pad_token_id = tok.pad_id();
                c.type_vocab_size = 1;
                c.layer_norm_eps = 1e-5;
            }
        }
        c.vocab_size = tok.vocab_size();
        c.hidden_size = self.hidden_size.unwrap_or(c.hidden_size);
        c.num_hidden_layers = self.num_layers.unwrap_or(c.num_hidden_layers);
        c.num_attention_heads = self.num_heads.unwrap_or(c.num_attention_heads);
        c.intermediate_size = self.intermediate_size.unwrap_or(c.intermediate_size);
        c.max_position_embeddings = self
            .max_position_embeddings
            .unwrap_or(c.max_position_embeddings)
            + c.position_offset();
        if let Some(p) = self.dropout {
            c.hidden_dropout_prob = p;
            c.attention_probs_dropout_prob = p;
        }
        c.check().map_err(|e| Error::Msg(format!("student: {e}")))?;
        Ok(c)
    }

    /// Whether the student's dimensions are chosen by their importance to `source`, the teacher or
    /// the checkpoint it is selected from (which the caller measures on training examples and gives
    /// `build`).
    pub fn needs_importance(&self, source: &EncoderConfig) -> bool {
        let selected = match self.from_teacher() {
            true => self.selects(source),
            false => !self.is_random() && self.narrows(source),
        };
        selected && self.selection != SelectionMethod::Even
    }

    /// The student for a task of `num_outputs` outputs, its weights drawn from `seed` (random), read
    /// from `init`, or taken from the task teacher's (`init: teacher`), checked against `tok`'s
    /// vocabulary and inputs of `max_len` tokens.
    pub fn build(
        &self,
        tok: &TextTokenizer,
        teacher: Option<TeacherWeights>,
        num_outputs: usize,
        max_len: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Classifier> {
        self.validate()?;
        let model = if self.is_random() {
            Classifier::new(&self.random_config(tok)?, num_outputs, seed, device)?
        } else if self.from_teacher() {
            let TeacherWeights { files, importance } = teacher.ok_or_else(|| {
                Error::Msg("student.init: `teacher` needs the teacher's files".into())
            })?;
            let teacher = EncoderConfig::from_file(&files.config)
                .map_err(|e| Error::Msg(format!("student.init: {e}")))?;
            let (m, report) = if self.selects(&teacher) {
                let from = TeacherWeights { files, importance };
                self.select_from(from, &teacher, tok, num_outputs, seed, device)?
            } else {
                Classifier::load_layers(files, &self.teacher_layers, num_outputs, seed, device)
                    .map_err(|e| Error::Msg(format!("student.teacher_layers: {e}")))?
            };
            tracing::info!(
                "student: the teacher's embeddings and blocks {:?}{}{}",
                self.teacher_layers,
                if self.selects(&teacher) {
                    format!(
                        ", narrowed to hidden {}, {} heads, FFN {} ({:?} selection){}",
                        m.config.hidden_size,
                        m.config.num_attention_heads,
                        m.config.intermediate_size,
                        self.selection,
                        if self.tokenizer.is_some() {
                            ", vocabulary transferred"
                        } else {
                            ""
                        }
                    )
                } else {
                    String::new()
                },
                if report.has_head {
                    " with its head"
                } else {
                    ", a new head"
                }
            );
            m
        } else {
            let init = |e: modeling::Error| Error::Msg(format!("student.init: {e}"));
            let files = ModelSource::parse(&self.init, &self.revision)
                .resolve(false)
                .map_err(init)?;
            let source = EncoderConfig::from_file(&files.config).map_err(init)?;
            // A student trained on another task (e.g. MNLI before RTE) keeps its encoder; its head
            // is re-initialised when the label count differs. Narrower shape keys select from it
            // (pruning between stages).
            let (m, report) = if self.narrows(&source) {
                let importance = teacher.and_then(|t| t.importance);
                let from = TeacherWeights {
                    files: &files,
                    importance,
                };
                let (m, report) =
                    self.select_from(from, &source, tok, num_outputs, seed, device)?;
                tracing::info!(
                    "student: {} narrowed to hidden {}, {} heads, FFN {} ({:?} selection)",
                    self.init,
                    m.config.hidden_size,
                    m.config.num_attention_heads,
                    m.config.intermediate_size,
                    self.selection
                );
                (m, report)
            } else {
                Classifier::load_reinit_head(&files, num_outputs, seed, device).map_err(init)?
            };
            if !report.has_head {
                tracing::info!(
                    "student: {} has no head for this task; starting a new one",
                    self.init
                );
            }
            m
        };
        fits(&model.config, tok, max_len)?;
        Ok(model)
    }

    /// A student selected from the teacher's weights (`files`, shape `teacher`): see `teacher_shape`.
    fn select_from(
        &self,
        from: TeacherWeights,
        teacher: &EncoderConfig,
        tok: &TextTokenizer,
        num_outputs: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Classifier, modeling::LoadReport)> {
        let files = from.files;
        let config = self.teacher_shape(teacher, tok)?;
        let layers = &self.source_layers(teacher);
        let sel = match (self.selection, from.importance) {
            (SelectionMethod::Even, _) => Selection::even(teacher, &config, layers),
            (SelectionMethod::Importance | SelectionMethod::Gradient, Some(scores)) => {
                Selection::by_importance(teacher, &config, layers, scores, false)
            }
            (SelectionMethod::ImportanceUnits, Some(scores)) => {
                Selection::by_importance(teacher, &config, layers, scores, true)
            }
            (_, None) => {
                return Err(Error::Msg(
                    "student.selection: `importance`, `importance_units` and `gradient` need the teacher's scores, measured on training examples".into(),
                ))
            }
        }
        .map_err(|e| Error::Msg(format!("student: {e}")))?;
        let vocab = match &self.tokenizer {
            Some(_) if self.from_teacher() => {
                let teacher_tok = TextTokenizer::for_model(files, tok.max_len()).map_err(|e| {
                    Error::Msg(format!("student.init: the teacher's tokenizer: {e}"))
                })?;
                Some(crate::vocab::vocab_map(tok, &teacher_tok)?)
            }
            _ => None,
        };
        Classifier::load_selected(
            files,
            &config,
            &sel,
            vocab.as_ref(),
            num_outputs,
            seed,
            device,
        )
        .map_err(|e| Error::Msg(format!("student.init: {e}")))
    }

    /// The student's shape, before any weight is read: the random shape, the teacher's (`teacher`: its
    /// files) with the kept blocks, or that of `init`; checked against `tok` and inputs of `max_len`
    /// tokens. A run makes this check before any stage, so that an impossible student is refused before
    /// the teacher's hours rather than after them.
    pub fn check(
        &self,
        tok: &TextTokenizer,
        teacher: Option<&ModelFiles>,
        max_len: usize,
    ) -> Result<EncoderConfig> {
        self.validate()?;
        let config = if self.is_random() {
            self.random_config(tok)?
        } else if self.from_teacher() {
            let files = teacher.ok_or_else(|| {
                Error::Msg("student.init: `teacher` needs the teacher's files".into())
            })?;
            let teacher = EncoderConfig::from_file(&files.config)
                .map_err(|e| Error::Msg(format!("student.init: {e}")))?;
            self.teacher_shape(&teacher, tok)?
        } else {
            let init = |e: modeling::Error| Error::Msg(format!("student.init: {e}"));
            let files = ModelSource::parse(&self.init, &self.revision)
                .resolve(false)
                .map_err(init)?;
            let source = EncoderConfig::from_file(&files.config).map_err(init)?;
            match self.narrows(&source) {
                true => self.teacher_shape(&source, tok)?,
                false => source,
            }
        };
        fits(&config, tok, max_len)?;
        Ok(config)
    }
}

/// A student of shape `config` reads every id of `tok` and inputs of `max_len` tokens.
fn fits(config: &EncoderConfig, tok: &TextTokenizer, max_len: usize) -> Result<()> {
    tok.check_vocab(config.vocab_size, Path::new("student"))
        .map_err(|e| Error::Msg(format!("student.tokenizer: {e}")))?;
    if max_len > config.max_tokens() {
        return Err(Error::Msg(format!(
            "data.max_seq_len: {max_len} exceeds the student's {} positions",
            config.max_tokens()
        )));
    }
    Ok(())
}
