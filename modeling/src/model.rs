//! A sequence classifier (encoder + head) whose weights live in one `VarMap`, so the same value serves
//! inference (teacher) and training (student, teacher fine-tuning). Loads and saves Hugging Face
//! `*ForSequenceClassification` checkpoints; bare encoder checkpoints load with an untrained head.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::config::{EncoderConfig, ModelKind};
use crate::encoder::{Batch, Encoder, EncoderOutput, Want};
use crate::head::Head;
use crate::hub::ModelFiles;
use crate::nn::{DropoutRng, Packing};
use crate::{Error, Result};

/// What loading a checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The checkpoint carried trained task-head weights of the right shape.
    pub has_head: bool,
    /// Checkpoint tensors the model does not use (an MLM head, buffers, ...).
    pub unused: Vec<String>,
}

#[derive(Clone)]
pub struct Classifier {
    pub config: EncoderConfig,
    pub num_labels: usize,
    pub encoder: Encoder,
    pub head: Head,
    pub varmap: VarMap,
    pub dropout: DropoutRng,
    pub device: Device,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("config", &self.config)
            .field("num_labels", &self.num_labels)
            .finish()
    }
}

impl Classifier {
    /// A freshly initialised model, as transformers' `_init_weights` does it (normal(0, initializer_range)
    /// for matrices and embeddings, zero biases, unit LayerNorm, zero padding row), drawn from `seed`.
    pub fn new(
        config: &EncoderConfig,
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut config = config.clone();
        config.check().map_err(Error::Msg)?;
        config.num_labels = Some(num_labels);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let dropout = DropoutRng::default();
        let encoder = Encoder::new(&config, vb.pp(config.kind().prefix()), dropout.clone())?;
        let head = Head::new(&config, num_labels, vb)?;
        let model = Self {
            config,
            num_labels,
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
        init_weights(&self.named_vars(), &self.config, seed, &self.device)
    }

    /// All trainable tensors, sorted by name (a stable order for optimizers and checkpoints).
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        sorted_vars(&self.varmap)
    }

    pub fn num_parameters(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Loads a checkpoint folder. `num_labels` is the task's label count; `None` takes the checkpoint's.
    /// Encoder tensors must all be present with the configured shapes; head tensors may be absent
    /// (a pre-trained encoder), which `LoadReport::has_head` reports.
    pub fn load(
        files: &ModelFiles,
        num_labels: Option<usize>,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        Self::load_with(files, num_labels, seed, device, false)
    }

    /// `load`, but a task head with another label count is dropped (left freshly initialised) instead of
    /// refused: for starting a student from a model trained on another task.
    pub fn load_reinit_head(
        files: &ModelFiles,
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        Self::load_with(files, Some(num_labels), seed, device, true)
    }

    /// A classifier made of some of a checkpoint's blocks, as DistilBERT starts its student: the
    /// checkpoint's embeddings, its blocks `layers` (1-based, increasing: `[3, 6, 9, 12]` keeps every
    /// third of twelve) renumbered in order, and its head when it has one for `num_labels`.
    pub fn load_layers(
        files: &ModelFiles,
        layers: &[usize],
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let teacher = EncoderConfig::from_file(&files.config)?;
        let config = teacher.keep_layers(layers)?;
        // Whole blocks are a selection that keeps every dimension.
        let sel = crate::select::Selection::even(&teacher, &config, layers)?;
        Self::load_selected(files, &config, &sel, None, num_labels, seed, device)
    }

    /// A narrower, shallower classifier of shape `config` whose every weight is a subset of a
    /// checkpoint's, chosen by `sel` (weight selection, see `select`): its blocks `sel.layers`, hidden
    /// dimensions, heads and FFN units; with `vocab`, word embeddings for another vocabulary. The
    /// checkpoint's head is kept, cut down likewise, when it has one for `num_labels`.
    pub fn load_selected(
        files: &ModelFiles,
        config: &EncoderConfig,
        sel: &crate::select::Selection,
        vocab: Option<&crate::select::VocabMap>,
        num_labels: usize,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let teacher = EncoderConfig::from_file(&files.config)?;
        crate::select::check_fits(&teacher, config, &sel.layers)?;
        let model = Self::new(config, num_labels, seed, device)?;
        let mut tensors = HashMap::new();
        for (name, t) in files.read_tensors(device)? {
            let name = name
                .replace("LayerNorm.gamma", "LayerNorm.weight")
                .replace("LayerNorm.beta", "LayerNorm.bias");
            match block_of(&name) {
                None => {
                    tensors.insert(name, t);
                }
                Some((at, block, rest)) => {
                    if let Some(j) = sel.layers.iter().position(|&l| l == block + 1) {
                        tensors.insert(format!("{}{j}{rest}", &name[..at]), t);
                    }
                }
            }
        }
        let mut tensors = crate::select::apply(tensors, &teacher, &model.config, sel, vocab)?;
        model.drop_mismatched_head(&mut tensors);
        let report = model.assign(tensors, &files.weights_label())?;
        Ok((model, report))
    }

    /// Leaves out a checkpoint's task head when its shape is not this model's (another label count),
    /// so the head stays freshly initialised.
    fn drop_mismatched_head(&self, tensors: &mut HashMap<String, Tensor>) {
        let heads = Head::task_tensor_names(self.config.kind());
        let mismatched = self.named_vars().iter().any(|(name, var)| {
            heads.contains(&name.as_str())
                && tensors.get(name).is_some_and(|t| t.dims() != var.dims())
        });
        if mismatched {
            tensors.retain(|k, _| !heads.contains(&k.as_str()));
        }
    }

    fn load_with(
        files: &ModelFiles,
        num_labels: Option<usize>,
        seed: u64,
        device: &Device,
        reinit_head: bool,
    ) -> Result<(Self, LoadReport)> {
        let config = EncoderConfig::from_file(&files.config)?;
        let ckpt_labels = config.num_labels.or(match config.labels().len() {
            0 => None,
            n => Some(n),
        });
        let n = num_labels.or(ckpt_labels).unwrap_or(2);
        let model = Self::new(&config, n, seed, device)?;
        let mut tensors = files.read_tensors(device)?;
        if reinit_head {
            model.drop_mismatched_head(&mut tensors);
        }
        let report = model.assign(tensors, &files.weights_label())?;
        Ok((model, report))
    }

    /// Copies checkpoint tensors into the model, mapping bare names (`embeddings.…`) and old
    /// `gamma`/`beta` names onto ours, and checking every shape.
    fn assign(&self, tensors: HashMap<String, Tensor>, source: &Path) -> Result<LoadReport> {
        let prefix = format!("{}.", self.config.kind().prefix());
        let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
        for (k, t) in tensors {
            let k = k.replace("LayerNorm.gamma", "LayerNorm.weight");
            let k = k.replace("LayerNorm.beta", "LayerNorm.bias");
            by_name.insert(k, t);
        }
        let head_names = Head::task_tensor_names(self.config.kind());
        let mut missing = Vec::new();
        let mut used = std::collections::HashSet::new();
        let mut head_found = 0;
        for (name, var) in self.named_vars() {
            let bare = name.strip_prefix(&prefix);
            let found = by_name
                .get_key_value(&name)
                .or_else(|| bare.and_then(|b| by_name.get_key_value(b)));
            let Some((key, t)) = found else {
                let is_head = head_names.contains(&name.as_str());
                // A bare encoder may lack the pooler: transformers then initialises it randomly too.
                let optional = is_head || name.contains(".pooler.");
                if !optional {
                    missing.push(name);
                }
                continue;
            };
            used.insert(key.clone());
            if t.dims() != var.dims() {
                if head_names.contains(&name.as_str()) && num_rows_differ(t, var.as_tensor()) {
                    return Err(Error::checkpoint(
                        source,
                        format!(
                            "tensor `{key}` has shape {:?}: the checkpoint's head has {} outputs but the task needs {} (use a checkpoint without a head, or the task's label count)",
                            t.dims(),
                            t.dims().first().copied().unwrap_or(0),
                            self.num_labels
                        ),
                    ));
                }
                return Err(Error::checkpoint(
                    source,
                    format!(
                        "tensor `{key}` has shape {:?} but config.json implies {:?}",
                        t.dims(),
                        var.dims()
                    ),
                ));
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
            if head_names.contains(&name.as_str()) {
                head_found += 1;
            }
        }
        check_complete(
            source,
            &missing,
            head_found,
            head_names.len(),
            "classification",
        )?;
        let unused = by_name
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        Ok(LoadReport {
            has_head: head_found == head_names.len(),
            unused,
        })
    }

    /// Sets every dropout probability, the head's included.
    pub fn set_dropout(&mut self, p: f64) {
        self.encoder.set_dropout(p);
        self.config.hidden_dropout_prob = p;
        self.config.attention_probs_dropout_prob = p;
        self.config.classifier_dropout = None;
    }

    /// Mixed precision for the encoder's matrix products (see `Encoder::set_compute_dtype`); the head
    /// and the logits stay f32. A clone shares the weights, so a mixed-precision clone trains them.
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        self.encoder.set_compute_dtype(dtype)
    }

    /// Switches CPU inference to dense layers packed once (`Packing::F32` for the f32 kernel of
    /// `packed`, `Packing::Bf16` for bf16 products), for inference-only copies: the packed weights are
    /// a snapshot that training would not update.
    pub fn pack(&mut self, how: Packing) -> Result<()> {
        self.encoder.pack(how)?;
        self.head.pack(how)
    }

    /// Switches inference to int8: dynamic quantization of every dense layer of the blocks and the head,
    /// and int8 word embeddings (position and type embeddings and LayerNorms stay f32; training still
    /// uses the f32 weights). Returns the model's weight bytes after.
    pub fn quantize_int8(&mut self) -> Result<usize> {
        let (f1, q1) = self.encoder.quantize_int8()?;
        let (f2, q2) = self.head.quantize_int8()?;
        Ok(4 * self.num_parameters() - (f1 + f2) + q1 + q2)
    }

    /// Encoder outputs and logits [b, num_labels].
    pub fn forward(
        &self,
        batch: &Batch,
        train: bool,
        attentions: bool,
    ) -> Result<(Tensor, EncoderOutput)> {
        let want = Want {
            attentions,
            qkv: false,
        };
        self.forward_with(batch, train, want)
    }

    /// `forward`, returning what `want` asks for besides the hidden states.
    pub fn forward_with(
        &self,
        batch: &Batch,
        train: bool,
        want: Want,
    ) -> Result<(Tensor, EncoderOutput)> {
        let out = self.encoder.forward_with(batch, train, want)?;
        let p = self
            .config
            .classifier_dropout
            .unwrap_or(self.config.hidden_dropout_prob);
        let logits = self.head.forward(out.last()?, p, &self.dropout, train)?;
        Ok((logits, out))
    }

    /// Saves `model.safetensors` and `config.json` (with labels) in Hugging Face's layout, each written
    /// to a temporary file and renamed, so an interrupted save never leaves a half-written model.
    pub fn save(&self, dir: &Path, labels: &[String]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors: HashMap<String, Tensor> = self
            .named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        crate::save_tensors(&tensors, &dir.join("model.safetensors"))?;

        let mut cfg = self.config.clone();
        cfg.num_labels = Some(self.num_labels);
        cfg.architectures = vec![match cfg.kind() {
            ModelKind::Bert => "BertForSequenceClassification".into(),
            ModelKind::Roberta => "RobertaForSequenceClassification".into(),
            ModelKind::Mpnet => "MPNetForSequenceClassification".into(),
        }];
        cfg.id2label = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect();
        if self.num_labels == 1 {
            cfg.problem_type = Some("regression".into());
        } else {
            cfg.problem_type = Some("single_label_classification".into());
        }
        let mut json = serde_json::to_value(&cfg).map_err(|e| Error::Msg(e.to_string()))?;
        if let Some(obj) = json.as_object_mut() {
            let label2id: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), serde_json::Value::from(i)))
                .collect();
            obj.insert("label2id".into(), label2id.into());
        }
        let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Msg(e.to_string()))?;
        crate::write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}

fn num_rows_differ(a: &Tensor, b: &Tensor) -> bool {
    a.dims().first() != b.dims().first() && a.dims().get(1..) == b.dims().get(1..)
}

/// A VarMap's tensors sorted by name (a stable order for initialisation, optimizers and checkpoints).
pub(crate) fn sorted_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = match varmap.data().lock() {
        Ok(d) => d,
        Err(p) => p.into_inner(),
    };
    let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// transformers' `_init_weights` for BERT-family models, drawn from our seeded RNG (candle's CPU RNG
/// cannot be seeded): normal(0, initializer_range) for weights and embeddings, the padding row of the
/// word embeddings zero; biases stay zero and LayerNorm weights one, as created. `vars` in name order.
pub(crate) fn init_weights(
    vars: &[(String, candle_core::Var)],
    config: &EncoderConfig,
    seed: u64,
    device: &Device,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, config.initializer_range as f32)
        .map_err(|e| Error::Msg(format!("initializer_range: {e}")))?;
    let pad = config.pad_token_id as usize;
    let h = config.hidden_size;
    for (name, var) in vars {
        let ones = name.ends_with("LayerNorm.weight") || name.ends_with("layer_norm.weight");
        if name.ends_with("bias") || ones {
            continue; // created as zeros / ones
        }
        let shape = var.shape().clone();
        let mut data: Vec<f32> = (0..shape.elem_count())
            .map(|_| normal.sample(&mut rng))
            .collect();
        if name.ends_with("word_embeddings.weight") {
            if let Some(row) = data.get_mut(pad * h..(pad + 1) * h) {
                row.fill(0.0);
            }
        }
        var.set(&Tensor::from_vec(data, shape, device)?)?;
    }
    Ok(())
}

/// After assigning a checkpoint: every encoder tensor must have been found, and the head (`head_len`
/// tensors, `head_found` of them present) entirely or not at all.
/// For a tensor of block i (`...encoder.layer.{i}.rest`): where the block number starts, i, and `.rest`.
fn block_of(name: &str) -> Option<(usize, usize, &str)> {
    const KEY: &str = "encoder.layer.";
    let at = name.find(KEY)? + KEY.len();
    let digits = name[at..].find('.')?;
    let block = name[at..at + digits].parse().ok()?;
    Some((at, block, &name[at + digits..]))
}

pub(crate) fn check_complete(
    source: &Path,
    missing: &[String],
    head_found: usize,
    head_len: usize,
    head: &str,
) -> Result<()> {
    if !missing.is_empty() {
        let shown: Vec<_> = missing.iter().take(5).cloned().collect();
        return Err(Error::checkpoint(
            source,
            format!(
                "{} tensor(s) missing, e.g. {}",
                missing.len(),
                shown.join(", ")
            ),
        ));
    }
    if head_found != 0 && head_found != head_len {
        return Err(Error::checkpoint(
            source,
            format!("the {head} head is only partly present"),
        ));
    }
    Ok(())
}
