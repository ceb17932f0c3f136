//! Test fixtures built on the fly: a small cased WordPiece vocabulary, tiny random BERT/RoBERTa
//! checkpoints written to disk (so tests run the real loading path), and a tiny sentiment dataset with a
//! learnable signal in GLUE's SST-2 layout.

use std::path::Path;

use candle_core::Device;

use crate::config::EncoderConfig;
use crate::model::Classifier;
use crate::{Error, Result};

pub const POSITIVE: &[&str] = &[
    "good",
    "great",
    "fun",
    "lovely",
    "Brilliant",
    "warm",
    "funny",
];
pub const NEGATIVE: &[&str] = &["bad", "dull", "awful", "boring", "Terrible", "cold", "weak"];
pub const FILLER: &[&str] = &[
    "the", "a", "movie", "film", "was", "is", "and", "very", "plot", "actors", "it", "The",
    "story", "quite", "of", "this",
];

/// Vocabulary lines: special tokens, every ASCII printable character and its `##` form, then words.
pub fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in '!'..='~' {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    for w in POSITIVE.iter().chain(NEGATIVE).chain(FILLER) {
        if !v.contains(&w.to_string()) {
            v.push(w.to_string());
        }
    }
    v
}

pub fn write_vocab(path: &Path) -> Result<()> {
    crate::write_atomic(path, (vocab().join("\n") + "\n").as_bytes())
}

/// A tiny config sized to `vocab()`.
pub fn tiny_config() -> EncoderConfig {
    EncoderConfig::tiny(vocab().len())
}

/// `tiny_config` in RoBERTa's layout: one token type, padding id 0.
pub fn tiny_roberta_config() -> EncoderConfig {
    EncoderConfig {
        model_type: "roberta".into(),
        pad_token_id: 0,
        type_vocab_size: 1,
        ..tiny_config()
    }
}

/// Writes config.json, model.safetensors and vocab.txt of a random tiny model into `dir`.
/// With `num_labels` the checkpoint has a task head; without, it is a bare encoder (pooler kept).
pub fn tiny_checkpoint(
    dir: &Path,
    cfg: &EncoderConfig,
    num_labels: Option<usize>,
    seed: u64,
) -> Result<()> {
    let model = Classifier::new(cfg, num_labels.unwrap_or(2), seed, &Device::Cpu)?;
    let labels: Vec<String> = (0..num_labels.unwrap_or(0))
        .map(|i| i.to_string())
        .collect();
    model.save(dir, &labels)?;
    write_vocab(&dir.join("vocab.txt"))?;
    if num_labels.is_none() {
        // Drop the head tensors and label info so the folder looks like a pre-trained encoder.
        let path = dir.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
        tensors.retain(|k, _| !k.starts_with("classifier"));
        candle_core::safetensors::save(&tensors, &path)?;
        let mut c = cfg.clone();
        c.architectures = vec!["BertModel".into()];
        let text = serde_json::to_string_pretty(&c).map_err(|e| Error::Msg(e.to_string()))?;
        crate::write_atomic(&dir.join("config.json"), text.as_bytes())?;
    }
    Ok(())
}

/// A sentiment sentence with label 1 (positive) or 0, chosen by `k`.
pub fn sentence(k: usize) -> (String, usize) {
    let label = (k / 3 + k) % 2;
    let words = if label == 1 { POSITIVE } else { NEGATIVE };
    let f = |i: usize| FILLER[(k * 7 + i * 3) % FILLER.len()];
    let w = words[(k * 5) % words.len()];
    let text = match k % 3 {
        0 => format!("{} {} {} {w} .", f(0), f(1), f(2)),
        1 => format!("{w} {} {} {} {} !", f(3), f(1), f(4), f(0)),
        _ => format!("{} {} {w} and {} {}", f(2), f(5), f(1), f(6)),
    };
    (text, label)
}

/// Writes `train.tsv` (n_train rows) and `dev.tsv` (n_dev rows) in SST-2's layout.
pub fn tiny_sst2(dir: &Path, n_train: usize, n_dev: usize) -> Result<()> {
    let write = |name: &str, range: std::ops::Range<usize>| -> Result<()> {
        let mut s = String::from("sentence\tlabel\n");
        for k in range {
            let (t, l) = sentence(k);
            s.push_str(&format!("{t}\t{l}\n"));
        }
        crate::write_atomic(&dir.join(name), s.as_bytes())
    };
    write("train.tsv", 0..n_train)?;
    write("dev.tsv", 10_000..10_000 + n_dev)
}

/// The largest absolute difference of two tensors of one shape.
pub use kernels::max_abs_diff;
