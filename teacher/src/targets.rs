//! The teacher-target cache: logits [n, c] and pooled hidden states of chosen layers for the training
//! set, in one safetensors file whose metadata holds a fingerprint of everything the targets depend on.
//! A fresh cache is reused; a stale one is named field by field so the user sees what changed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use data::tasks::{Example, Label};

/// What the targets were computed from. Each field is compared on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub teacher_weights: String,
    pub tokenizer: String,
    pub max_seq_len: usize,
    pub dataset: String,
    /// Head shape and labels, e.g. `classification:0,1`.
    pub head: String,
    pub hidden_layers: Vec<usize>,
    pub pooling: String,
    /// `weight:sha256` of every teacher when the logits average an ensemble; empty for one teacher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<String>,
    /// `i/n` for shard i of n (`distill teacher --shard`); absent for a whole training set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The `augment` settings (and the masked LM's weights when it proposed words); absent without
    /// augmentation, so caches written before it stay fresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<String>,
    /// `bf16` when the target pass ran its products in bf16 (`teacher.precision`); absent for fp32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

impl Fingerprint {
    /// Names of the fields that differ, with both values shortened.
    pub fn changes(&self, old: &Fingerprint) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(old).unwrap_or_default();
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return vec!["fingerprint".into()];
        };
        // Both key sets: an optional field present on one side only (`augment`) is a change too.
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let short = |v: Option<&serde_json::Value>| {
                    let s = v.map(|v| v.to_string()).unwrap_or_else(|| "none".into());
                    s.chars().take(20).collect::<String>()
                };
                format!("{k} ({} -> {})", short(b.get(k)), short(a.get(k)))
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Targets {
    /// [n, c] f32.
    pub logits: Tensor,
    /// layer -> [n, h] f32.
    pub hidden: BTreeMap<usize, Tensor>,
    pub fingerprint: Fingerprint,
    /// Augmented examples (soft labels only), whose logits follow the training set's rows: the cache
    /// holds them so that the student trains on exactly the texts the teacher labelled.
    pub augmented: Vec<Example>,
}

const META_KEY: &str = "distill.fingerprint";
/// The augmented texts, as UTF-8 JSON lines `[text_a, text_b]` in a u8 tensor (metadata is capped at
/// 100 MB by safetensors; a tensor is not).
const AUGMENTED_KEY: &str = "augmented";

fn augmented_tensor(examples: &[Example]) -> Result<Tensor> {
    let mut bytes = Vec::new();
    for e in examples {
        let line = serde_json::to_string(&(&e.text_a, &e.text_b))
            .map_err(|e| Error::Msg(e.to_string()))?;
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    let n = bytes.len();
    Ok(Tensor::from_vec(bytes, n, &Device::Cpu)?)
}

fn read_augmented(t: &Tensor) -> std::result::Result<Vec<Example>, String> {
    let bytes: Vec<u8> = t.to_vec1().map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| format!("augmented texts: {e}"))?;
    text.lines()
        .map(|l| {
            let (text_a, text_b): (String, Option<String>) =
                serde_json::from_str(l).map_err(|e| format!("augmented texts: {e}"))?;
            // The label is never stored: augmented examples have soft targets only.
            let label = Label::soft(false);
            Ok(Example {
                text_a,
                text_b,
                label,
            })
        })
        .collect()
}

impl Targets {
    pub fn len(&self) -> usize {
        self.logits.dims().first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the targets atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut tensors: Vec<(String, &Tensor)> = vec![("logits".into(), &self.logits)];
        for (l, t) in &self.hidden {
            tensors.push((format!("hidden.{l}"), t));
        }
        let aug = (!self.augmented.is_empty())
            .then(|| augmented_tensor(&self.augmented))
            .transpose()?;
        if let Some(a) = &aug {
            tensors.push((AUGMENTED_KEY.into(), a));
        }
        let meta =
            serde_json::to_string(&self.fingerprint).map_err(|e| Error::Msg(e.to_string()))?;
        let tmp = path.with_extension("safetensors.tmp");
        if let Err(e) = safetensors::serialize_to_file(
            tensors,
            Some(HashMap::from([(META_KEY.to_string(), meta)])),
            &tmp,
        ) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::file(&tmp, e.to_string()));
        }
        Ok(modeling::io::commit_file(&tmp, path)?)
    }

    /// Reads a target file written by `save`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::file(path, format!("not a safetensors file: {e}")))?;
        let fp = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| Error::file(path, "no fingerprint in metadata: not a target cache"))?;
        let fingerprint: Fingerprint =
            serde_json::from_str(fp).map_err(|e| Error::file(path, e.to_string()))?;
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| Error::file(path, e.to_string()))?;
        let logits = tensors
            .remove("logits")
            .ok_or_else(|| Error::file(path, "no `logits` tensor"))?;
        let augmented = match tensors.remove(AUGMENTED_KEY) {
            Some(t) => read_augmented(&t).map_err(|e| Error::file(path, e))?,
            None => Vec::new(),
        };
        let mut hidden = BTreeMap::new();
        for (k, t) in tensors {
            if let Some(l) = k.strip_prefix("hidden.").and_then(|l| l.parse().ok()) {
                hidden.insert(l, t);
            }
        }
        Ok(Self {
            logits,
            hidden,
            fingerprint,
            augmented,
        })
    }

    /// Joins shards given in order (rows of shard 0 first) under the fingerprint `fp`. Every shard
    /// must carry the same hidden layers.
    pub fn concat(parts: &[Targets], fp: Fingerprint) -> Result<Self> {
        let logits: Vec<Tensor> = parts.iter().map(|p| p.logits.clone()).collect();
        let layers: Vec<usize> = parts
            .first()
            .map(|p| p.hidden.keys().copied().collect())
            .unwrap_or_default();
        let mut hidden = BTreeMap::new();
        for l in layers {
            let rows = parts
                .iter()
                .map(|p| {
                    p.hidden.get(&l).cloned().ok_or_else(|| {
                        Error::Msg(format!("a shard lacks the hidden states of layer {l}"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            hidden.insert(l, Tensor::cat(&rows, 0)?);
        }
        Ok(Self {
            logits: Tensor::cat(&logits, 0)?,
            hidden,
            fingerprint: fp,
            augmented: parts.iter().flat_map(|p| p.augmented.clone()).collect(),
        })
    }

    /// Loads the cache at `path` if it exists and matches `want`. Returns `Ok(None)` with the reasons
    /// in `stale` when it is missing, unreadable or out of date.
    pub fn load_fresh(path: &Path, want: &Fingerprint, stale: &mut Vec<String>) -> Option<Self> {
        if !path.exists() {
            return None;
        }
        match Self::load(path) {
            Ok(t) if t.fingerprint == *want => Some(t),
            Ok(t) => {
                stale.extend(want.changes(&t.fingerprint));
                None
            }
            Err(e) => {
                stale.push(format!("unreadable ({e})"));
                None
            }
        }
    }
}
