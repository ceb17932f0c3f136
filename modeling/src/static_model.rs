//! A static embedding model in model2vec's format (`StaticModel`, Tulkens & van Dongen 2024): one vector
//! per token of the tokenizer, a sentence's embedding the mean of its tokens' vectors (special and unknown
//! tokens left out, as model2vec's `encode` tokenizes without them and drops the unknown id), normalised.
//! The folder holds `model.safetensors` (`embeddings` [vocab, d]; optional per-token `weights`),
//! `tokenizer.json` and `config.json` (`model_type: model2vec`), which `StaticModel.from_pretrained`
//! loads (model2vec 0.10, `persistence.py`). No transformer runs at inference: a lookup and a mean.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::sentence::l2_normalize;
use crate::tokenizer::Encoded;
use crate::{Error, Result};

/// model2vec's `model_type`.
pub const MODEL_TYPE: &str = "model2vec";

#[derive(Debug, Clone)]
pub struct StaticModel {
    /// [vocab, d], f32 on the CPU, any per-token weight already applied.
    pub embeddings: Tensor,
    /// Token ids that carry no meaning of their own (special and unknown tokens), sorted.
    pub skip: Vec<u32>,
    pub normalize: bool,
    /// config.json as written (model2vec's keys).
    pub config: serde_json::Value,
}

impl StaticModel {
    /// Whether `dir` holds a model2vec folder.
    pub fn is_folder(dir: &Path) -> bool {
        std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("model_type").and_then(|m| m.as_str()) == Some(MODEL_TYPE))
    }

    /// Loads `dir`'s embeddings and config; `skip` lists the tokenizer's special and unknown ids.
    pub fn load(dir: &Path, skip: Vec<u32>) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::file(&cfg_path, format!("not valid JSON: {e}")))?;
        let path = dir.join("model.safetensors");
        let mut t = candle_core::safetensors::load(&path, &Device::Cpu)
            .map_err(|e| Error::file(&path, format!("cannot read: {e}")))?;
        if t.contains_key("mapping") {
            return Err(Error::file(
                &path,
                "a vocabulary-quantized model (`mapping`) is not supported",
            ));
        }
        let mut emb = t
            .remove("embeddings")
            .ok_or_else(|| Error::file(&path, "no `embeddings` tensor"))?
            .to_dtype(DType::F32)?;
        if let Some(w) = t.remove("weights") {
            emb = emb.broadcast_mul(&w.to_dtype(DType::F32)?.unsqueeze(1)?)?;
        }
        let normalize = config
            .get("normalize")
            .and_then(|n| n.as_bool())
            .unwrap_or(true);
        let mut skip = skip;
        skip.sort_unstable();
        Ok(Self {
            embeddings: emb,
            skip,
            normalize,
            config,
        })
    }

    /// The embedding width.
    pub fn dim(&self) -> usize {
        self.embeddings.dims().get(1).copied().unwrap_or(0)
    }

    /// Embeddings [b, d]: the mean of each input's token vectors, normalised when the model says so;
    /// an input with no token of its own gives zeros, as model2vec's does.
    pub fn embed(&self, items: &[&Encoded]) -> Result<Tensor> {
        let (vocab, d) = self.embeddings.dims2()?;
        let mut rows = Vec::with_capacity(items.len());
        for e in items {
            let ids: Vec<u32> = e
                .ids
                .iter()
                .copied()
                .filter(|i| self.skip.binary_search(i).is_err() && (*i as usize) < vocab)
                .collect();
            rows.push(if ids.is_empty() {
                Tensor::zeros(d, DType::F32, &Device::Cpu)?
            } else {
                let n = ids.len();
                let idx = Tensor::from_vec(ids, n, &Device::Cpu)?;
                self.embeddings.index_select(&idx, 0)?.mean(0)?
            });
        }
        let out = Tensor::stack(&rows, 0)?;
        if self.normalize {
            l2_normalize(&out)
        } else {
            Ok(out)
        }
    }

    /// Writes `model.safetensors` and `config.json` into `dir` (the caller adds tokenizer.json).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let t = HashMap::from([("embeddings".to_string(), self.embeddings.clone())]);
        crate::save_tensors(&t, &dir.join("model.safetensors"))?;
        let text =
            serde_json::to_string_pretty(&self.config).map_err(|e| Error::Msg(e.to_string()))?;
        crate::write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}
