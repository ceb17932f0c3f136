//! `distill encode MODEL_DIR --file F --out OUT.safetensors`: every layer's hidden states for a list of
//! texts (one per line, a tab separating a pair), for feature extraction and for checking our encoder
//! against transformers on a real checkpoint (tools/parity/checkpoint_parity.py).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use modeling::batch::make_batch;
use modeling::{Classifier, ModelSource, TextTokenizer};

#[derive(clap::Args)]
pub struct EncodeArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json or vocab.txt).
    model_dir: PathBuf,
    /// Inputs, one per line (a tab separates the two texts of a pair).
    #[arg(long)]
    file: PathBuf,
    /// Output safetensors: input_ids, attention_mask [n, s] and hidden_states.{0..=L} [n, s, h].
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

pub fn run(a: &EncodeArgs) -> Result<()> {
    if a.max_len < 8 {
        bail!(
            "--max-len {} leaves no room for text besides the special tokens (use at least 8)",
            a.max_len
        );
    }
    let text = std::fs::read_to_string(&a.file).with_context(|| format!("{}", a.file.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        bail!("{}: no inputs", a.file.display());
    }
    let files = ModelSource::Local(a.model_dir.clone()).resolve(false)?;
    let (model, _) = Classifier::load(&files, None, 0, &Device::Cpu)?;
    let tok = TextTokenizer::for_model(&files, a.max_len.min(model.config.max_tokens()))?;
    let enc = lines
        .iter()
        .map(|l| match l.split_once('\t') {
            Some((x, y)) => tok.encode(x, Some(y)),
            None => tok.encode(l, None),
        })
        .collect::<modeling::Result<Vec<_>>>()?;
    let s_max = enc.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let n_states = model.config.num_hidden_layers + 1;
    let mut states: Vec<Vec<Tensor>> = vec![Vec::new(); n_states];
    let (mut ids, mut masks) = (Vec::new(), Vec::new());
    let bar = inference::progress_bar(enc.len() as u64, "encode");
    for chunk in enc.chunks(a.batch_size.max(1)) {
        let items: Vec<_> = chunk.iter().collect();
        let batch = make_batch(&items, tok.pad_id(), &Device::Cpu)?;
        let (_, out) = model.forward(&batch, false, false)?;
        // Pad every batch to the longest input overall so the batches concatenate.
        let extra = s_max - batch.input_ids.dims2()?.1;
        for (k, h) in out.hidden_states.iter().enumerate() {
            states[k].push(h.pad_with_zeros(1, 0, extra)?);
        }
        ids.push(batch.input_ids.pad_with_zeros(1, 0, extra)?);
        masks.push(batch.attention_mask.pad_with_zeros(1, 0, extra)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut tensors = HashMap::new();
    tensors.insert("input_ids".to_string(), Tensor::cat(&ids, 0)?);
    tensors.insert("attention_mask".to_string(), Tensor::cat(&masks, 0)?);
    for (k, parts) in states.iter().enumerate() {
        tensors.insert(format!("hidden_states.{k}"), Tensor::cat(parts, 0)?);
    }
    modeling::save_tensors(&tensors, &a.out).with_context(|| format!("{}", a.out.display()))?;
    tracing::info!(
        "encode: wrote {} ({} inputs, {n_states} hidden states)",
        a.out.display(),
        enc.len()
    );
    Ok(())
}
