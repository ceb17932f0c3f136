//! Model configuration in Hugging Face `config.json` form (BertConfig / RobertaConfig / MPNetConfig),
//! read and written with the same key names so that an exported folder loads in transformers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Architecture family: decides the weight prefix, the position numbering and the classification head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Bert,
    Roberta,
    /// MPNet (Song et al. 2020): RoBERTa's positions, no token types, and a relative-position
    /// attention bias shared by all layers.
    Mpnet,
}

impl ModelKind {
    /// Weight-name prefix of the encoder inside `*ForSequenceClassification` checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            ModelKind::Bert => "bert",
            ModelKind::Roberta => "roberta",
            ModelKind::Mpnet => "mpnet",
        }
    }

    fn from_model_type(t: &str) -> Option<Self> {
        match t {
            // BERT-family checkpoints that share BERT's weight layout and position numbering.
            "bert" | "distilbert_as_bert" | "electra_as_bert" => Some(ModelKind::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Some(ModelKind::Roberta),
            "mpnet" => Some(ModelKind::Mpnet),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

/// The encoder's shape and hyper-parameters, plus the task head's labels when the checkpoint has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_dropout: Option<f64>,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: u32,
    /// MPNet's relative-position buckets (32); absent for BERT and RoBERTa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_attention_num_buckets: Option<usize>,
    /// Label names by index, as HF writes them (`{"0": "negative", ...}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub id2label: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// `regression` for a one-output regression head (STS-B).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_init_range() -> f64 {
    0.02
}
fn default_eps() -> f64 {
    1e-12
}

impl EncoderConfig {
    /// Reads a Hugging Face `config.json`, checking the values the encoder depends on.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: EncoderConfig =
            serde_json::from_str(&text).map_err(|e| Error::file(path, e.to_string()))?;
        cfg.check().map_err(|msg| Error::file(path, msg))?;
        Ok(cfg)
    }

    pub fn kind(&self) -> ModelKind {
        ModelKind::from_model_type(&self.model_type).unwrap_or(ModelKind::Bert)
    }

    /// Checks the invariants the encoder relies on; the message names the offending key.
    pub fn check(&self) -> std::result::Result<(), String> {
        if ModelKind::from_model_type(&self.model_type).is_none() {
            return Err(format!(
                "model_type `{}` is not supported (bert, roberta, xlm-roberta, camembert, mpnet)",
                self.model_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return Err(format!("{key} must be positive"));
            }
        }
        if self.kind() != ModelKind::Bert && self.max_position_embeddings <= self.position_offset()
        {
            return Err("max_position_embeddings leaves no room after RoBERTa's offset".into());
        }
        if self.kind() == ModelKind::Mpnet && self.relative_attention_num_buckets.unwrap_or(0) < 2 {
            return Err("relative_attention_num_buckets must be at least 2 for MPNet".into());
        }
        Ok(())
    }

    /// The token id that RoBERTa and MPNet number positions around (transformers'
    /// `create_position_ids_from_input_ids`): RoBERTa's `pad_token_id`, and for MPNet always 1, since
    /// transformers' `MPNetEmbeddings` fixes its `padding_idx` at 1 whatever the config says (a student
    /// with another vocabulary must number its positions as transformers will).
    pub fn position_padding_id(&self) -> u32 {
        match self.kind() {
            ModelKind::Mpnet => 1,
            _ => self.pad_token_id,
        }
    }

    /// First position id: RoBERTa and MPNet number positions from `position_padding_id() + 1`, BERT
    /// from 0.
    pub fn position_offset(&self) -> usize {
        match self.kind() {
            ModelKind::Bert => 0,
            ModelKind::Roberta | ModelKind::Mpnet => self.position_padding_id() as usize + 1,
        }
    }

    /// Whether the model has token-type (segment) embeddings: MPNet has none.
    pub fn has_token_types(&self) -> bool {
        self.kind() != ModelKind::Mpnet
    }

    /// The shape of a model made of this one's blocks `layers` (1-based, increasing: `[3, 6, 9, 12]`
    /// keeps every third of twelve), checked against the blocks this one has.
    pub fn keep_layers(&self, layers: &[usize]) -> Result<Self> {
        let n = self.num_hidden_layers;
        if layers.is_empty() || layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Msg(format!(
                "teacher layers {layers:?} must be a non-empty increasing list"
            )));
        }
        if let Some(l) = layers.iter().find(|&&l| l == 0 || l > n) {
            return Err(Error::Msg(format!(
                "layer {l} does not exist: the checkpoint has blocks 1..={n}"
            )));
        }
        Ok(Self {
            num_hidden_layers: layers.len(),
            ..self.clone()
        })
    }

    /// Longest input (special tokens included) the position table can hold.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings - self.position_offset()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Label names in index order, when the config names them.
    pub fn labels(&self) -> Vec<String> {
        let mut pairs: Vec<(usize, &String)> = self
            .id2label
            .iter()
            .filter_map(|(k, v)| k.parse().ok().map(|i| (i, v)))
            .collect();
        pairs.sort();
        pairs.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// The student this project targets: RoBERTa-tiny-cased (4 layers, hidden 512, 8 heads, FFN 2048,
    /// bert-base-cased vocabulary). It is a BERT-architecture model trained with RoBERTa's recipe.
    pub fn roberta_tiny_cased() -> Self {
        EncoderConfig {
            model_type: "bert".into(),
            vocab_size: 28996,
            hidden_size: 512,
            num_hidden_layers: 4,
            num_attention_heads: 8,
            intermediate_size: 2048,
            hidden_act: Activation::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            classifier_dropout: None,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            relative_attention_num_buckets: None,
            id2label: BTreeMap::new(),
            num_labels: None,
            problem_type: None,
            architectures: Vec::new(),
        }
    }

    /// A very small BERT for tests.
    pub fn tiny(vocab_size: usize) -> Self {
        EncoderConfig {
            vocab_size,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 64,
            max_position_embeddings: 64,
            ..Self::roberta_tiny_cased()
        }
    }
}
