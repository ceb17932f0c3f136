//! A masked language model: the one encoder plus the masked-LM head, its weights in one `VarMap`. Loads
//! Hugging Face `BertForMaskedLM` / `RobertaForMaskedLM` folders (the head's bias under `bias` or
//! `decoder.bias`; a stored `decoder.weight` must equal the word embeddings, as the tie makes it), or a
//! bare encoder (or a classifier) with a fresh head; saves the same layout, which transformers loads with
//! `AutoModelForMaskedLM`. The loss is transformers' MLM loss: cross-entropy over predicted positions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::config::{EncoderConfig, ModelKind};
use crate::encoder::{Batch, Encoder};
use crate::hub::ModelFiles;
use crate::mlm_head::MlmHead;
use crate::model::LoadReport;
use crate::nn::DropoutRng;
use crate::{Error, Result};

#[derive(Clone)]
pub struct MaskedLm {
    pub config: EncoderConfig,
    pub encoder: Encoder,
    pub head: MlmHead,
    pub varmap: VarMap,
    pub dropout: DropoutRng,
    pub device: Device,
}

impl std::fmt::Debug for MaskedLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskedLm")
            .field("config", &self.config)
            .finish()
    }
}

impl MaskedLm {
    /// A freshly initialised model (transformers' `_init_weights`: normal(0, initializer_range) for
    /// matrices and embeddings, zero biases, unit LayerNorm, zero padding row), drawn from `seed`.
    pub fn new(config: &EncoderConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut config = config.clone();
        config.check().map_err(Error::Msg)?;
        config.num_labels = None;
        config.id2label.clear();
        config.problem_type = None;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let dropout = DropoutRng::default();
        let encoder = Encoder::new(&config, vb.pp(config.kind().prefix()), dropout.clone())?;
        let head = MlmHead::new(&config, vb)?;
        let model = Self {
            config,
            encoder,
            head,
            varmap,
            dropout,
            device: device.clone(),
        };
        model.init_weights(seed)?;
        Ok(model)
    }

    fn init_weights(&self, seed: u64) -> Result<()> {
        crate::model::init_weights(&self.named_vars(), &self.config, seed, &self.device)
    }

    /// All trainable tensors, sorted by name (the tied decoder is the word embeddings, listed once).
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        crate::model::sorted_vars(&self.varmap)
    }

    pub fn num_parameters(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Sets both dropout probabilities (0 makes training-mode passes deterministic).
    pub fn set_dropout(&mut self, p: f64) {
        self.encoder.set_dropout(p);
        self.config.hidden_dropout_prob = p;
        self.config.attention_probs_dropout_prob = p;
    }

    /// Mixed precision for the encoder's matrix products (see `Encoder::set_compute_dtype`); the
    /// masked-LM head stays f32.
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        self.encoder.set_compute_dtype(dtype)
    }

    /// Loads a checkpoint folder: a masked-LM checkpoint, or any encoder checkpoint (bare or with a
    /// classification head, which is ignored) with a fresh masked-LM head drawn from `seed`;
    /// `LoadReport::has_head` says which.
    pub fn load(files: &ModelFiles, seed: u64, device: &Device) -> Result<(Self, LoadReport)> {
        let config = EncoderConfig::from_file(&files.config)?;
        let model = Self::new(&config, seed, device)?;
        let tensors = files.read_tensors(device)?;
        let report = model.assign(tensors, &files.weights_label())?;
        Ok((model, report))
    }

    /// Copies checkpoint tensors into the model: bare (`embeddings.…`) or prefixed names, old
    /// `gamma`/`beta` names, the head's bias under `bias` or `decoder.bias`; every shape checked.
    fn assign(&self, tensors: HashMap<String, Tensor>, source: &Path) -> Result<LoadReport> {
        let kind = self.config.kind();
        let prefix = format!("{}.", kind.prefix());
        let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
        for (k, t) in tensors {
            let k = k.replace("LayerNorm.gamma", "LayerNorm.weight");
            let k = k.replace("LayerNorm.beta", "LayerNorm.bias");
            by_name.insert(k, t);
        }
        let head_names = MlmHead::tensor_names(kind);
        let (dec_w, dec_b) = MlmHead::decoder_names(kind);
        let bias_name = head_names[4];
        let mut used = HashSet::new();
        if !by_name.contains_key(bias_name) {
            if let Some(t) = by_name.remove(dec_b) {
                by_name.insert(bias_name.to_string(), t);
            }
        } else if by_name.contains_key(dec_b) {
            used.insert(dec_b.to_string()); // the same tensor stored twice
        }
        let words = format!("{prefix}embeddings.word_embeddings.weight");
        if let Some(w) = by_name.get(dec_w) {
            let emb = by_name
                .get(&words)
                .or_else(|| by_name.get("embeddings.word_embeddings.weight"));
            let tied = match emb {
                Some(e) if e.dims() == w.dims() => {
                    let d: f32 = (e.to_dtype(DType::F32)? - w.to_dtype(DType::F32)?)?
                        .abs()?
                        .flatten_all()?
                        .max(0)?
                        .to_scalar()?;
                    d <= 1e-6
                }
                _ => false,
            };
            if !tied {
                return Err(Error::checkpoint(
                    source,
                    format!("`{dec_w}` differs from the word embeddings: untied masked-LM decoders are not supported"),
                ));
            }
            used.insert(dec_w.to_string());
        }
        let mut missing = Vec::new();
        let mut head_found = 0;
        for (name, var) in self.named_vars() {
            let bare = name.strip_prefix(&prefix);
            let found = by_name
                .get_key_value(&name)
                .or_else(|| bare.and_then(|b| by_name.get_key_value(b)));
            let is_head = head_names.contains(&name.as_str());
            let Some((key, t)) = found else {
                if !is_head {
                    missing.push(name);
                }
                continue;
            };
            if t.dims() != var.dims() {
                return Err(Error::checkpoint(
                    source,
                    format!(
                        "tensor `{key}` has shape {:?} but config.json implies {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            used.insert(key.clone());
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
            head_found += usize::from(is_head);
        }
        crate::model::check_complete(source, &missing, head_found, head_names.len(), "masked-LM")?;
        Ok(LoadReport {
            has_head: head_found == head_names.len(),
            unused: by_name
                .keys()
                .filter(|k| !used.contains(*k))
                .cloned()
                .collect(),
        })
    }

    /// Vocabulary logits at every position: [b, s, vocab].
    pub fn forward(&self, batch: &Batch, train: bool) -> Result<Tensor> {
        let out = self.encoder.forward(batch, train, false)?;
        self.head.forward(out.last()?, train)
    }

    /// Vocabulary logits at some positions only: `positions` [n] u32 are flat indices (row · s + column)
    /// into the batch; returns [n, vocab]. Training needs these 15% of the positions, and the decoder
    /// over all of them would be most of the step's work and memory ([b, s, 29k] floats).
    pub fn forward_at(&self, batch: &Batch, positions: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.encoder.forward(batch, train, false)?;
        let last = out.last()?; // [b, s, h]
        let (b, s, h) = last.dims3()?;
        let picked = last.reshape((b * s, h))?.index_select(positions, 0)?; // [n, h]
        self.head.forward(&picked, train)
    }

    /// The masked-LM loss of a batch (mean cross-entropy over its predicted positions): `positions`
    /// [n] u32 flat indices (row · s + column) of the predicted tokens, `targets` [n] u32 their ids.
    pub fn loss(
        &self,
        batch: &Batch,
        positions: &Tensor,
        targets: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        if targets.dims().first().copied().unwrap_or(0) == 0 {
            return Err(Error::Msg(
                "a masked-LM batch without predicted tokens".into(),
            ));
        }
        let logits = self.forward_at(batch, positions, train)?; // [n, vocab]
        Ok(candle_nn::loss::cross_entropy(&logits, targets)?)
    }

    /// Saves `model.safetensors` (the tied decoder is not stored: transformers ties it on load) and
    /// `config.json` naming `BertForMaskedLM` / `RobertaForMaskedLM`, each written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors: HashMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        crate::save_tensors(&tensors, &dir.join("model.safetensors"))?;
        let mut cfg = self.config.clone();
        cfg.architectures = vec![mlm_architecture(cfg.kind()).into()];
        let mut json = serde_json::to_value(&cfg).map_err(|e| Error::Msg(e.to_string()))?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("tie_word_embeddings".into(), true.into());
        }
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Msg(e.to_string()))?;
        crate::write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}

/// The label of a position the loss ignores (transformers' `-100`).
pub const IGNORE: i64 = -100;

/// transformers' class name of a masked LM of this family.
pub fn mlm_architecture(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Bert => "BertForMaskedLM",
        ModelKind::Roberta => "RobertaForMaskedLM",
        ModelKind::Mpnet => "MPNetForMaskedLM",
    }
}

/// Flat positions [n] u32 and target ids [n] u32 of the labels [b, s] i64 that are not -100.
pub fn predicted(labels: &Tensor) -> Result<(Tensor, Tensor)> {
    let flat: Vec<i64> = labels.flatten_all()?.to_dtype(DType::I64)?.to_vec1()?;
    let (mut pos, mut tgt) = (Vec::new(), Vec::new());
    for (i, &l) in flat.iter().enumerate() {
        if l != IGNORE {
            if l < 0 {
                return Err(Error::Msg(format!("masked-LM label {l} at position {i}")));
            }
            pos.push(i as u32);
            tgt.push(l as u32);
        }
    }
    let n = pos.len();
    let dev = labels.device();
    Ok((
        Tensor::from_vec(pos, n, dev)?,
        Tensor::from_vec(tgt, n, dev)?,
    ))
}

/// transformers' masked-LM loss: mean cross-entropy of logits [b, s, vocab] over the positions whose
/// label [b, s] (i64) is not -100.
pub fn mlm_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, s, v) = logits.dims3()?;
    if labels.dims() != [b, s] {
        return Err(Error::Msg(format!(
            "mlm_loss: labels {:?} for logits {:?}",
            labels.dims(),
            logits.dims()
        )));
    }
    let (pos, tgt) = predicted(labels)?;
    if tgt.dims() == [0] {
        return Err(Error::Msg("mlm_loss: no predicted positions".into()));
    }
    let picked = logits.reshape((b * s, v))?.index_select(&pos, 0)?; // [n, vocab]
    Ok(candle_nn::loss::cross_entropy(&picked, &tgt)?)
}
