//! Sentence-embedding folders for `distill embed` and the server's `/embed`: a sentence-transformers
//! folder (its `modules.json` says how it pools, projects and normalises; `sentence_bert_config.json` how
//! long an input may be and whether the text is lower-cased first), a model2vec folder (a static model:
//! token vectors averaged), or a plain encoder folder (mean pooling, normalised).

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use candle_core::Tensor;
use modeling::sentence::{SentenceEncoder, SentenceModules};
use modeling::static_model::StaticModel;
use modeling::{Encoded, ModelSource, TextTokenizer};

use crate::Forward;

/// An embedding model of either kind.
#[allow(clippy::large_enum_variant)] // one per loaded model, never copied: size is no concern
pub enum EmbeddingModel {
    Encoder(SentenceEncoder),
    Static(StaticModel),
}

impl EmbeddingModel {
    pub fn dim(&self) -> usize {
        match self {
            Self::Encoder(m) => m.dim(),
            Self::Static(m) => m.dim(),
        }
    }

    fn lowercases(&self) -> bool {
        matches!(self, Self::Encoder(m) if m.modules.do_lower_case)
    }
}

impl Forward for EmbeddingModel {
    fn logits(&self, items: &[&Encoded], pad_id: u32) -> modeling::Result<Tensor> {
        match self {
            Self::Encoder(m) => m.logits(items, pad_id),
            Self::Static(m) => m.logits(items, pad_id),
        }
    }
}

pub struct Embedder {
    pub model: EmbeddingModel,
    pub tok: TextTokenizer,
}

impl Embedder {
    /// Loads `dir`; `max_len` overrides the folder's `max_seq_length` (default 512, or the model's limit
    /// when lower). `int8`: dynamic int8 dense layers.
    pub fn load(dir: &Path, max_len: Option<usize>, int8: bool) -> Result<Self> {
        if StaticModel::is_folder(dir) {
            if int8 {
                anyhow::bail!(
                    "--int8: {} is a static model (a table lookup, no dense layers)",
                    dir.display()
                );
            }
            let path = dir.join("tokenizer.json");
            // model2vec truncates at 512 tokens by default (`max_length`).
            let tok = TextTokenizer::from_file(&path, max_len.unwrap_or(512), false)
                .with_context(|| format!("{}", path.display()))?;
            let skip = tok.special_tokens()?.all;
            let model =
                StaticModel::load(dir, skip).with_context(|| format!("{}", dir.display()))?;
            return Ok(Self {
                model: EmbeddingModel::Static(model),
                tok,
            });
        }
        let files = ModelSource::Local(dir.to_path_buf())
            .resolve(false)
            .with_context(|| format!("{}", dir.display()))?;
        let mut model = SentenceEncoder::load(
            &files,
            dir,
            SentenceModules::mean_normalized(),
            &Device::Cpu,
        )
        .with_context(|| format!("{}", dir.display()))?;
        let limit = model.model.config.max_tokens();
        let len = max_len
            .or(model.modules.max_seq_length)
            .unwrap_or(512)
            .min(limit);
        let tok =
            TextTokenizer::for_model(&files, len).with_context(|| format!("{}", dir.display()))?;
        if int8 {
            model.model.quantize_int8()?;
        } else {
            // As `Predictor`: the packed f32 kernel and one op a block (`modeling::Packing`).
            model.model.pack(modeling::Packing::F32)?;
        }
        Ok(Self {
            model: EmbeddingModel::Encoder(model),
            tok,
        })
    }

    /// The input as the model reads it (lower-cased first when the folder says so).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        Ok(self.encode_counted(text)?.0)
    }

    /// `encode`, and whether the input was cut at the length limit.
    pub fn encode_counted(&self, text: &str) -> Result<(Encoded, bool)> {
        Ok(if self.model.lowercases() {
            self.tok.encode_counted(&text.to_lowercase(), None)?
        } else {
            self.tok.encode_counted(text, None)?
        })
    }

    /// The embeddings of `data`, `batch_size` inputs a pass, rows in `data`'s order.
    pub fn embed(
        &self,
        data: &[Encoded],
        batch_size: usize,
        progress: Option<&str>,
    ) -> Result<Vec<Vec<f32>>> {
        let pass = crate::logits(&self.model, data, self.tok.pad_id(), batch_size, progress)?;
        Ok(pass.logits.to_vec2()?)
    }
}
