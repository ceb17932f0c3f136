//! `distill predict MODEL_DIR [TEXT ...] [--file F]`: runs an exported model (or any Hugging Face
//! sequence-classification folder) and prints one JSON object per input: label, its probability (or the
//! score for regression) and the logits. A tab in an input separates a sentence pair. `--runtime
//! onnxruntime` runs the folder's ONNX graph in onnxruntime instead of our encoder (see [`Runtime`]).
//! An empty or whitespace-only input (or side of a pair) is an error naming its argument or FILE:LINE.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use inference::{blank_part, Predictor, Runtime};

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
    /// What runs the model: our encoder, or the folder's ONNX graph in onnxruntime.
    #[arg(long, value_enum, default_value_t = Runtime::Candle)]
    runtime: Runtime,
    /// Time the model on the inputs instead of printing predictions: batch-1 latency (p50/p99 over the
    /// first 200 inputs, after 10 untimed) and throughput at --batch-size, as one JSON object, measured
    /// as `distill compare` measures (`bench/runtimes.py` sets the runtimes side by side).
    #[arg(long)]
    time: bool,
}

/// The inputs of `predict`: the text arguments, then the lines of `--file`, each split at its first tab
/// into a pair. A blank input is an error naming its argument number or FILE:LINE.
fn read_inputs(a: &PredictArgs) -> Result<Vec<(String, Option<String>)>> {
    let split = |t: &str| match t.split_once('\t') {
        Some((x, y)) => (x.to_string(), Some(y.to_string())),
        None => (t.to_string(), None),
    };
    let refuse = |place: String, part: &str| -> anyhow::Error {
        anyhow::anyhow!(
            "{place}: the {part} is empty or whitespace only; there is nothing to classify (the model \
             would answer a label from its special tokens alone)"
        )
    };
    let mut inputs = Vec::new();
    for (i, t) in a.texts.iter().enumerate() {
        let (x, y) = split(t);
        if let Some(part) = blank_part(&x, y.as_deref()) {
            return Err(refuse(format!("text argument {}", i + 1), part));
        }
        inputs.push((x, y));
    }
    if let Some(f) = &a.file {
        let file = std::fs::File::open(f).with_context(|| format!("{}", f.display()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", f.display(), i + 1))?;
            let (x, y) = split(&line);
            if let Some(part) = blank_part(&x, y.as_deref()) {
                return Err(refuse(format!("{}:{}", f.display(), i + 1), part));
            }
            inputs.push((x, y));
        }
    }
    if inputs.is_empty() {
        bail!("no input: give texts as arguments or --file");
    }
    Ok(inputs)
}

pub fn run(a: &PredictArgs) -> Result<()> {
    // Checked before the model loads: a bad input costs no load time.
    let inputs = read_inputs(a)?;
    let p = Predictor::load(&a.model_dir, a.max_len, a.int8, a.runtime)?;
    let enc = inputs
        .iter()
        .map(|(x, y)| p.encode(x, y.as_deref()))
        .collect::<Result<Vec<_>>>()?;
    if a.time {
        let mut timing = timing(&p.engine, &enc, p.tok.pad_id(), a.batch_size)?;
        timing["runtime"] = a.runtime.describe()?.into();
        timing["int8"] = a.int8.into();
        writeln!(std::io::stdout().lock(), "{timing}")?;
        return Ok(());
    }
    let rows = p.logits(&enc, a.batch_size, Some("predict"))?;
    let mut out = std::io::stdout().lock();
    for row in rows {
        writeln!(out, "{}", p.prediction(&row))?;
    }
    Ok(())
}

/// `--time`: batch-1 latency over the inputs and throughput at `batch_size`, as one JSON object (`threads`,
/// `inputs`, `latency`, `batch_size`, `examples_per_second`), for `predict` and `embed` alike.
pub(crate) fn timing(
    model: &impl inference::Forward,
    enc: &[modeling::Encoded],
    pad: u32,
    batch_size: usize,
) -> Result<serde_json::Value> {
    let latency = inference::batch1_latency(model, enc, pad)?;
    let pass = inference::logits(model, enc, pad, batch_size, Some("time"))?;
    Ok(serde_json::json!({
        "threads": candle_core::utils::get_num_threads(),
        "inputs": enc.len(),
        "latency": latency,
        "batch_size": batch_size,
        "examples_per_second": pass.examples_per_second,
    }))
}
