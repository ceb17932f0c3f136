//! `distill predict MODEL_DIR [TEXT ...] [--file F]`: runs an exported model (or any Hugging Face
//! sequence-classification folder) and prints one JSON object per input: label, its probability (or the
//! score for regression) and the logits. A tab in an input separates a sentence pair.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use teacher::{Classifier, ModelSource};

use crate::pipeline::model_tokenizer;

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

pub fn run(a: &PredictArgs) -> Result<()> {
    if a.max_len < 8 {
        bail!(
            "--max-len {} leaves no room for text besides the special tokens (use at least 8)",
            a.max_len
        );
    }
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
    let files = ModelSource::Local(a.model_dir.clone()).resolve(false)?;
    let (mut model, report) = Classifier::load(&files, None, 0, &Device::Cpu)?;
    if a.int8 {
        model.quantize_int8()?;
    }
    if !report.has_head {
        bail!(
            "{}: the model has no classification head",
            a.model_dir.display()
        );
    }
    let tok = model_tokenizer(&files, a.max_len.min(model.config.max_tokens()))?;
    let labels = model.config.labels();
    let enc = inputs
        .iter()
        .map(|t| match t.split_once('\t') {
            Some((x, y)) => tok.encode(x, Some(y)),
            None => tok.encode(t, None),
        })
        .collect::<teacher::Result<Vec<_>>>()?;
    let logits = student::eval::logits(&model, &enc, tok.pad_id(), a.batch_size)?;
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    let mut out = std::io::stdout().lock();
    for row in rows {
        let v = if row.len() == 1 {
            serde_json::json!({"score": row[0], "logits": row})
        } else {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            let k = student::metrics::argmax_rows(std::slice::from_ref(&row))[0];
            let label = labels.get(k).cloned().unwrap_or_else(|| k.to_string());
            serde_json::json!({"label": label, "label_id": k, "score": exp[k] / sum, "logits": row})
        };
        writeln!(out, "{v}")?;
    }
    Ok(())
}
