//! What a server runs: a classifier (`/predict`) or an embedding model (`/embed`), told apart by the
//! folder: a sentence-transformers folder (`modules.json`) or a model2vec folder is an embedding model,
//! anything else a classifier. Both answer rows for tokenised inputs, so one inference thread and one
//! batching queue serve either.

use std::path::Path;

use anyhow::{bail, Result};
use modeling::static_model::StaticModel;
use modeling::Encoded;
use serde_json::{json, Value};

use inference::{Embedder, Predictor, Runtime};

#[allow(clippy::large_enum_variant)] // one per server, never copied: size is no concern
pub enum Served {
    Classifier(Predictor),
    Embedder(Embedder),
}

impl Served {
    pub fn load(dir: &Path, max_len: usize, int8: bool, runtime: Runtime) -> Result<Self> {
        if dir.join("modules.json").is_file() || StaticModel::is_folder(dir) {
            if runtime != Runtime::Candle {
                bail!("--runtime onnxruntime: {} is an embedding model, which runs on our encoder only", dir.display());
            }
            return Ok(Self::Embedder(Embedder::load(dir, Some(max_len), int8)?));
        }
        Ok(Self::Classifier(Predictor::load(
            dir, max_len, int8, runtime,
        )?))
    }

    /// The tokenised input and whether it was cut at the length limit.
    pub fn encode_counted(&self, text: &str, pair: Option<&str>) -> Result<(Encoded, bool)> {
        match self {
            Self::Classifier(p) => p.encode_counted(text, pair),
            Self::Embedder(e) => e.encode_counted(text),
        }
    }

    /// Logit rows or embeddings, one per input, in one forward.
    pub fn rows(&self, enc: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Classifier(p) => p.logits(enc, enc.len().max(1), None),
            Self::Embedder(e) => e.embed(enc, enc.len().max(1), None),
        }
    }

    pub fn max_len(&self) -> usize {
        match self {
            Self::Classifier(p) => p.tok.max_len(),
            Self::Embedder(e) => e.tok.max_len(),
        }
    }

    /// What `/health` says of the model: its labels, or its kind and dimensions.
    pub fn describe(&self) -> Value {
        match self {
            Self::Classifier(p) => json!({"task": "classification", "labels": p.labels}),
            Self::Embedder(e) => json!({"task": "embedding", "dimensions": e.model.dim()}),
        }
    }
}
