//! Sentence embeddings as sentence-transformers makes them (`SentenceTransformer.encode`): the encoder's
//! last hidden states, pooled (`models.Pooling`: the first token or the mean over real tokens), an
//! optional linear layer (`models.Dense`, identity activation), an optional L2 normalisation
//! (`models.Normalize`). A sentence-transformers folder says which in `modules.json`; this module reads
//! and writes that layout, so what `distill` trains and measures is what `SentenceTransformer(folder)`
//! answers.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::encoder::{first_token, masked_mean, Batch};
use crate::hub::ModelFiles;
use crate::infer::Pooling;
use crate::model::Classifier;
use crate::{Error, Result};

/// The module types of a sentence-transformers `modules.json` that this module knows.
const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const DENSE: &str = "sentence_transformers.models.Dense";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";
/// sentence-transformers' name for a Dense layer without activation.
const IDENTITY: &str = "torch.nn.modules.linear.Identity";

/// What follows the encoder: pooling, a projection, normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceModules {
    pub pooling: Pooling,
    /// `models.Dense`: (in, out) features; its weights live in the model.
    pub dense: Option<(usize, usize)>,
    pub normalize: bool,
    /// `sentence_bert_config.json`'s `max_seq_length` (None: the tokenizer's).
    pub max_seq_length: Option<usize>,
    /// `sentence_bert_config.json`'s `do_lower_case`: sentence-transformers lower-cases the text before
    /// its tokenizer sees it (distill writes false: the tokenizer does its own casing).
    #[serde(default)]
    pub do_lower_case: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Serialize, Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: String,
}

fn yes() -> bool {
    true
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not valid: {e}")))
}

impl SentenceModules {
    /// Mean pooling and normalisation, as all-mpnet-base-v2 and all-MiniLM-L6-v2 embed.
    pub fn mean_normalized() -> Self {
        Self {
            pooling: Pooling::Mean,
            dense: None,
            normalize: true,
            max_seq_length: None,
            do_lower_case: false,
        }
    }

    /// The modules of a sentence-transformers folder; None when `dir` has no `modules.json` (a plain
    /// transformers checkpoint). A module this crate cannot run is refused, naming the file.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("modules.json");
        if !path.is_file() {
            return Ok(None);
        }
        let entries: Vec<ModuleEntry> = read_json(&path)?;
        let mut modules = Self {
            pooling: Pooling::Mean,
            dense: None,
            normalize: false,
            max_seq_length: None,
            do_lower_case: false,
        };
        let (mut has_transformer, mut has_pooling) = (false, false);
        for (i, m) in entries.iter().enumerate() {
            let folder = dir.join(&m.path);
            match m.kind.as_str() {
                TRANSFORMER if i == 0 => has_transformer = true,
                POOLING if has_transformer && !has_pooling => {
                    modules.pooling = read_pooling(&folder.join("config.json"))?;
                    has_pooling = true;
                }
                DENSE if has_pooling && modules.dense.is_none() && !modules.normalize => {
                    let c: DenseConfig = read_json(&folder.join("config.json"))?;
                    if !c.activation_function.is_empty() && c.activation_function != IDENTITY {
                        return Err(Error::file(
                            folder.join("config.json"),
                            format!("activation_function `{}`: only a Dense layer without activation ({IDENTITY}) is supported", c.activation_function),
                        ));
                    }
                    if !c.bias {
                        return Err(Error::file(
                            folder.join("config.json"),
                            "a Dense layer without bias is not supported",
                        ));
                    }
                    modules.dense = Some((c.in_features, c.out_features));
                }
                NORMALIZE if has_pooling => modules.normalize = true,
                other => {
                    return Err(Error::file(
                        &path,
                        format!("module {i} (`{other}`) is not supported here: distill runs Transformer, Pooling, an optional Dense and an optional Normalize, in that order"),
                    ))
                }
            }
        }
        if !has_pooling {
            return Err(Error::file(
                &path,
                "no Pooling module after the Transformer",
            ));
        }
        let st = dir.join("sentence_bert_config.json");
        if st.is_file() {
            let v: serde_json::Value = read_json(&st)?;
            modules.max_seq_length = v
                .get("max_seq_length")
                .and_then(|x| x.as_u64())
                .map(|x| x as usize);
            modules.do_lower_case = v
                .get("do_lower_case")
                .and_then(|x| x.as_bool())
                .unwrap_or(false);
        }
        Ok(Some(modules))
    }

    /// Writes `modules.json`, `sentence_bert_config.json`, `1_Pooling/config.json`, the Dense layer's
    /// folder (its `weights`: `linear.weight` [out, in] and `linear.bias`) and the Normalize folder
    /// into `dir`, for an encoder of width `hidden` whose files are `dir`'s own.
    pub fn write(&self, dir: &Path, hidden: usize, dense: Option<&Linear>) -> Result<()> {
        let mut entries = vec![json!({"idx": 0, "name": "0", "path": "", "type": TRANSFORMER})];
        let pooling = json!({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": self.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": self.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": false,
            "include_prompt": true,
        });
        write_json(&dir.join("1_Pooling").join("config.json"), &pooling)?;
        entries.push(json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING}));
        if let Some((i, o)) = self.dense {
            let layer =
                dense.ok_or_else(|| Error::Msg("the Dense module has no weights".into()))?;
            let c = DenseConfig {
                in_features: i,
                out_features: o,
                bias: true,
                activation_function: IDENTITY.into(),
            };
            let folder = dir.join("2_Dense");
            write_json(&folder.join("config.json"), &c)?;
            let mut t = HashMap::new();
            t.insert("linear.weight".to_string(), layer.weight().clone());
            if let Some(b) = layer.bias() {
                t.insert("linear.bias".to_string(), b.clone());
            }
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            crate::save_tensors(&t, &folder.join("model.safetensors"))?;
            entries.push(json!({"idx": 2, "name": "2", "path": "2_Dense", "type": DENSE}));
        }
        if self.normalize {
            let path = format!("{}_Normalize", entries.len());
            let folder = dir.join(&path);
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            let idx = entries.len();
            entries.push(
                json!({"idx": idx, "name": idx.to_string(), "path": path, "type": NORMALIZE}),
            );
        }
        write_json(&dir.join("modules.json"), &serde_json::Value::from(entries))?;
        let mut st = json!({"do_lower_case": self.do_lower_case});
        if let Some(n) = self.max_seq_length {
            st["max_seq_length"] = n.into();
        }
        write_json(&dir.join("sentence_bert_config.json"), &st)?;
        write_json(
            &dir.join("config_sentence_transformers.json"),
            &json!({"model_type": "SentenceTransformer", "similarity_fn_name": "cosine", "prompts": {}, "default_prompt_name": null}),
        )
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Msg(e.to_string()))?;
    crate::write_atomic(path, text.as_bytes())
}

fn read_pooling(path: &Path) -> Result<Pooling> {
    let c: PoolingConfig = read_json(path)?;
    let others = c.pooling_mode_max_tokens
        || c.pooling_mode_mean_sqrt_len_tokens
        || c.pooling_mode_weightedmean_tokens
        || c.pooling_mode_lasttoken;
    match (c.pooling_mode_cls_token, c.pooling_mode_mean_tokens, others) {
        (true, false, false) => Ok(Pooling::Cls),
        (false, true, false) => Ok(Pooling::Mean),
        _ => Err(Error::file(
            path,
            "only one of pooling_mode_cls_token and pooling_mode_mean_tokens is supported",
        )),
    }
}

/// An encoder with its sentence modules: the embedding model of a sentence-transformers folder, a
/// teacher's or a student's. The encoder is a `Classifier` whose head is never used, so that every
/// student start (random, teacher blocks, selection, vocabulary transfer) serves embeddings too.
#[derive(Clone)]
pub struct SentenceEncoder {
    pub model: Classifier,
    pub modules: SentenceModules,
    /// The `models.Dense` layer, trainable (its own vars).
    pub dense: Option<Linear>,
    dense_vars: VarMap,
}

impl SentenceEncoder {
    /// `model` followed by `modules`; a Dense layer of `modules` starts as `dense_init` ([out, in]
    /// weight, zero bias), or zero.
    pub fn new(
        model: Classifier,
        modules: SentenceModules,
        dense_init: Option<Tensor>,
    ) -> Result<Self> {
        let dense_vars = VarMap::new();
        let dense = match modules.dense {
            Some((i, o)) => {
                if i != model.config.hidden_size {
                    return Err(Error::Msg(format!(
                        "the Dense module reads {i} features but the encoder's width is {}",
                        model.config.hidden_size
                    )));
                }
                let vb = VarBuilder::from_varmap(&dense_vars, DType::F32, &model.device);
                let layer = crate::nn::linear(i, o, vb.pp("linear"))?.linear;
                if let Some(w) = dense_init {
                    set_var(&dense_vars, "linear.weight", &w)?;
                }
                Some(layer)
            }
            None => None,
        };
        Ok(Self {
            model,
            modules,
            dense,
            dense_vars,
        })
    }

    /// The embedding model of a folder: its `modules.json` when it has one, else `default` (a plain
    /// checkpoint, as sentence-transformers wraps it: mean pooling, no normalisation).
    pub fn load(
        files: &ModelFiles,
        dir: &Path,
        default: SentenceModules,
        device: &Device,
    ) -> Result<Self> {
        let modules = SentenceModules::read(dir)?.unwrap_or(default);
        let (model, _) = Classifier::load(files, Some(1), 0, device)?;
        let me = Self::new(model, modules, None)?;
        if me.dense.is_some() {
            // Saved by sentence-transformers as `2_Dense/model.safetensors` (older folders: `2/`).
            let found = ["2_Dense", "2"]
                .iter()
                .map(|p| dir.join(p).join("model.safetensors"))
                .find(|p| p.is_file())
                .ok_or_else(|| Error::file(dir, "modules.json names a Dense module but 2_Dense/model.safetensors is missing"))?;
            let tensors = candle_core::safetensors::load(&found, device)
                .map_err(|e| Error::file(&found, format!("cannot read: {e}")))?;
            // `set` writes in place: the Dense layer built on these vars sees the loaded weights.
            for name in ["linear.weight", "linear.bias"] {
                let t = tensors
                    .get(name)
                    .ok_or_else(|| Error::file(&found, format!("no tensor `{name}`")))?;
                set_var(&me.dense_vars, name, t)?;
            }
        }
        Ok(me)
    }

    /// The embedding's width: the Dense layer's output, else the encoder's.
    pub fn dim(&self) -> usize {
        self.modules
            .dense
            .map_or(self.model.config.hidden_size, |(_, o)| o)
    }

    /// Embeddings [b, d] of a batch (`train`: dropout on, for a student's step).
    pub fn embed(&self, batch: &Batch, train: bool) -> Result<Tensor> {
        let out = self.model.encoder.forward(batch, train, false)?;
        let h = out.last()?;
        let mut e = match self.modules.pooling {
            Pooling::Cls => first_token(h)?,
            Pooling::Mean => masked_mean(h, &batch.attention_mask)?,
        };
        if let Some(d) = &self.dense {
            e = d.forward(&e)?;
        }
        if self.modules.normalize {
            e = l2_normalize(&e)?;
        }
        Ok(e)
    }

    /// The trainable tensors: the encoder's (not the classification head, nor BERT's pooler, which no
    /// sentence module reads) and the Dense layer's.
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        let prefix = format!("{}.", self.model.config.kind().prefix());
        let mut vars: Vec<_> = self
            .model
            .named_vars()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !k.contains(".pooler."))
            .collect();
        let mut dense: Vec<_> = self
            .dense_vars
            .data()
            .lock()
            .map(|d| {
                d.iter()
                    .map(|(k, v)| (format!("dense.{k}"), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        dense.sort_by(|a, b| a.0.cmp(&b.0));
        vars.extend(dense);
        vars
    }

    /// Writes the encoder (`*Model` weights and config.json, no task head) and the sentence modules
    /// into `dir`: a sentence-transformers folder once the tokenizer files are added.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let prefix = format!("{}.", self.model.config.kind().prefix());
        let tensors: HashMap<String, Tensor> = self
            .model
            .named_vars()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        crate::save_tensors(&tensors, &dir.join("model.safetensors"))?;
        let mut cfg = self.model.config.clone();
        cfg.num_labels = None;
        cfg.id2label.clear();
        cfg.problem_type = None;
        cfg.architectures = vec![match cfg.kind() {
            crate::ModelKind::Bert => "BertModel".into(),
            crate::ModelKind::Roberta => "RobertaModel".into(),
            crate::ModelKind::Mpnet => "MPNetModel".into(),
        }];
        write_json(&dir.join("config.json"), &cfg)?;
        self.modules
            .write(dir, self.model.config.hidden_size, self.dense.as_ref())
    }
}

fn set_var(vars: &VarMap, name: &str, t: &Tensor) -> Result<()> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::Msg("the Dense layer's vars are poisoned".into()))?;
    let var = data
        .get(name)
        .ok_or_else(|| Error::Msg(format!("the Dense layer has no `{name}`")))?;
    if var.dims() != t.dims() {
        return Err(Error::Msg(format!(
            "Dense `{name}` has shape {:?}, given {:?}",
            var.dims(),
            t.dims()
        )));
    }
    var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
    Ok(())
}

/// Rows scaled to unit L2 norm (torch's `F.normalize(x, p=2, dim=1)`, eps 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Cosine similarity of matching rows of two [n, d] tensors: n values.
pub fn row_cosines(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
    let dot = (l2_normalize(a)? * l2_normalize(b)?)?.sum(D::Minus1)?;
    Ok(dot.to_dtype(DType::F32)?.to_vec1()?)
}
