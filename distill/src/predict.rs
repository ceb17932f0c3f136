//! `distill predict MODEL_DIR [TEXT ...] [--file F]`: runs an exported model (or any Hugging Face
//! sequence-classification folder) and prints one JSON object per input: label, its probability (or the
//! score for regression) and the logits. A tab in an input separates a sentence pair.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use modeling::infer::{self, Pooling};
use modeling::{Classifier, Encoded, ModelSource, TextTokenizer};

use crate::lock::Lock;

#[derive(clap::Args)]
pub struct PredictArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json or vocab.txt).
    model_dir: PathBuf,
    /// Texts to classify (a tab separates the two sentences of a pair).
    texts: Vec<String>,
    /// Read inputs from a file, one per line (tab-separated pairs).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Longest input in tokens (longer inputs are truncated).
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Run the dense layers in dynamic int8 (weights per output channel, activations per token).
    #[arg(long)]
    int8: bool,
}

/// An exported model ready to classify: weights (on the CPU), its tokenizer truncating at `max_len`
/// tokens, and its label names. Shared by `predict` and `serve`.
pub struct Predictor {
    pub model: Classifier,
    pub tok: TextTokenizer,
    pub labels: Vec<String>,
    /// The shared lock on `model_dir`, held while the model is in use, so an export cannot replace the
    /// folder under it.
    _reading: Option<Lock>,
}

impl Predictor {
    /// Loads `model_dir`; inputs longer than `max_len` (or the model's positions) are truncated.
    /// `int8` switches inference to dynamic int8 (`Classifier::quantize_int8`); otherwise the dense
    /// layers are packed for the f32 kernel of `kernels::packed`.
    pub fn load(model_dir: &Path, max_len: usize, int8: bool) -> Result<Self> {
        if max_len < 8 {
            bail!("--max-len {max_len} leaves no room for text besides the special tokens (use at least 8)");
        }
        let reading = Lock::reader(model_dir)?;
        let files = ModelSource::Local(model_dir.to_path_buf()).resolve(false)?;
        let (mut model, report) = Classifier::load(&files, None, 0, &Device::Cpu)?;
        if !report.has_head {
            bail!(
                "{}: the model has no classification head",
                model_dir.display()
            );
        }
        if int8 {
            model.quantize_int8()?;
        } else {
            // Requests of a few tokens take the packed f32 kernel; same numbers, lower latency.
            model.pack_f32()?;
        }
        let tok = TextTokenizer::for_model(&files, max_len.min(model.config.max_tokens()))?;
        let labels = model.config.labels();
        Ok(Self {
            model,
            tok,
            labels,
            _reading: reading,
        })
    }

    /// Tokenises a text, or a pair when `pair` is given.
    pub fn encode(&self, text: &str, pair: Option<&str>) -> Result<Encoded> {
        Ok(self.tok.encode(text, pair)?)
    }

    /// As `encode`, and whether tokens past the maximum length were cut off.
    pub fn encode_counted(&self, text: &str, pair: Option<&str>) -> Result<(Encoded, bool)> {
        Ok(self.tok.encode_counted(text, pair)?)
    }

    /// Logit rows [n][c] in input order, `batch_size` examples per forward. The same path as
    /// `train::eval::logits` without its progress bar (a server would draw one per batch).
    pub fn logits(&self, enc: &[Encoded], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        if enc.is_empty() {
            return Ok(Vec::new());
        }
        let out = infer::run(
            &self.model,
            enc,
            self.tok.pad_id(),
            batch_size.max(1),
            &[],
            Pooling::Cls,
            None,
        )?;
        Ok(out.logits.to_vec2()?)
    }

    /// The JSON object of one logit row: label, label_id, its probability as score and the logits; a
    /// one-column (regression) row gives the score and the logits.
    pub fn prediction(&self, row: &[f32]) -> serde_json::Value {
        prediction(row, &self.labels)
    }
}

/// See [`Predictor::prediction`].
pub fn prediction(row: &[f32], labels: &[String]) -> serde_json::Value {
    if row.len() == 1 {
        return serde_json::json!({"score": row[0], "logits": row});
    }
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let k = train::metrics::argmax_rows(&[row.to_vec()])[0];
    let label = labels.get(k).cloned().unwrap_or_else(|| k.to_string());
    serde_json::json!({"label": label, "label_id": k, "score": exp[k] / sum, "logits": row})
}

pub fn run(a: &PredictArgs) -> Result<()> {
    let mut inputs = a.texts.clone();
    if let Some(f) = &a.file {
        let file = std::fs::File::open(f).with_context(|| format!("{}", f.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", f.display(), i + 1))?;
            inputs.push(line);
        }
    }
    if inputs.is_empty() {
        bail!("no input: give texts as arguments or --file");
    }
    let p = Predictor::load(&a.model_dir, a.max_len, a.int8)?;
    let enc = inputs
        .iter()
        .map(|t| match t.split_once('\t') {
            Some((x, y)) => p.encode(x, Some(y)),
            None => p.encode(t, None),
        })
        .collect::<Result<Vec<_>>>()?;
    let logits = train::eval::logits(&p.model, &enc, p.tok.pad_id(), a.batch_size)?;
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    let mut out = std::io::stdout().lock();
    for row in rows {
        writeln!(out, "{}", p.prediction(&row))?;
    }
    Ok(())
}
