//! `distill predict MODEL_DIR [TEXT ...] [--file F]`: runs an exported model (or any Hugging Face
//! sequence-classification folder) and prints one JSON object per input: label, its probability (or the
//! score for regression) and the logits. A tab in an input separates a sentence pair. `--runtime
//! onnxruntime` runs the folder's ONNX graph in onnxruntime instead of our encoder (see [`Runtime`]).
//! An empty or whitespace-only input (or side of a pair) is an error naming its argument or FILE:LINE.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use modeling::infer::{self, Engine};
use modeling::onnx_runtime::OrtClassifier;
use modeling::{Classifier, Encoded, EncoderConfig, ModelSource, TextTokenizer};

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
    /// What runs the model: our encoder, or the folder's ONNX graph in onnxruntime.
    #[arg(long, value_enum, default_value_t = Runtime::Candle)]
    runtime: Runtime,
    /// Time the model on the inputs instead of printing predictions: batch-1 latency (p50/p99 over the
    /// first 200 inputs, after 10 untimed) and throughput at --batch-size, as one JSON object, measured
    /// as `distill compare` measures (`bench/runtimes.py` sets the runtimes side by side).
    #[arg(long)]
    time: bool,
}

/// What runs a model for `predict`, `serve` and `compare`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// This project's encoder, on candle: f32 weights packed for its f32 kernel, or dynamic int8.
    #[default]
    Candle,
    /// The model's ONNX graph (`model.onnx`, or `model.int8.onnx` with `--int8`) in onnxruntime, whose
    /// shared library ORT_DYLIB_PATH names (`tools/setup_onnxruntime.sh` installs one).
    Onnxruntime,
}

impl Runtime {
    /// How reports and logs name it: `candle`, or `onnxruntime (libonnxruntime.so.1.30.0)`.
    pub fn describe(self) -> Result<String> {
        Ok(match self {
            Self::Candle => "candle".into(),
            Self::Onnxruntime => format!("onnxruntime ({})", modeling::onnx_runtime::library()?),
        })
    }
}

/// An exported model ready to classify: weights (on the CPU), its tokenizer truncating at `max_len`
/// tokens, and its label names. Shared by `predict` and `serve`.
pub struct Predictor {
    pub engine: Engine,
    pub tok: TextTokenizer,
    pub labels: Vec<String>,
    /// The shared lock on `model_dir`, held while the model is in use, so an export cannot replace the
    /// folder under it.
    _reading: Option<Lock>,
}

impl Predictor {
    /// Loads `model_dir`; inputs longer than `max_len` (or the model's positions) are truncated.
    /// With the candle runtime, `int8` switches inference to dynamic int8 (`Classifier::quantize_int8`);
    /// otherwise the dense layers are packed for the f32 kernel of `kernels::packed`. With onnxruntime,
    /// `int8` picks `model.int8.onnx` over `model.onnx`.
    pub fn load(model_dir: &Path, max_len: usize, int8: bool, runtime: Runtime) -> Result<Self> {
        if max_len < 8 {
            bail!("--max-len {max_len} leaves no room for text besides the special tokens (use at least 8)");
        }
        let reading = Lock::reader(model_dir)?;
        let files = ModelSource::Local(model_dir.to_path_buf()).resolve(false)?;
        let config = EncoderConfig::from_file(&files.config)?;
        let engine = match runtime {
            Runtime::Candle => {
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
                    model.pack(modeling::Packing::F32)?;
                }
                Engine::Candle(model)
            }
            Runtime::Onnxruntime => {
                let (name, flag) = match int8 {
                    true => ("model.int8.onnx", " --int8"),
                    false => ("model.onnx", ""),
                };
                let path = model_dir.join(name);
                if !path.is_file() {
                    bail!(
                        "{}: not found; --runtime onnxruntime runs the folder's ONNX graph: write it with \
                         `distill onnx {}{flag}`",
                        path.display(),
                        model_dir.display()
                    );
                }
                let threads = candle_core::utils::get_num_threads();
                Engine::OnnxRuntime(OrtClassifier::from_file(&path, threads)?)
            }
        };
        let tok = TextTokenizer::for_model(&files, max_len.min(config.max_tokens()))?;
        Ok(Self {
            engine,
            tok,
            labels: config.labels(),
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

    /// Logit rows [n][c] in input order, `batch_size` examples per forward; `progress` is ticked per
    /// input (a server passes none: it would draw one bar per batch).
    pub fn logits(
        &self,
        enc: &[Encoded],
        batch_size: usize,
        progress: Option<&indicatif::ProgressBar>,
    ) -> Result<Vec<Vec<f32>>> {
        if enc.is_empty() {
            return Ok(Vec::new());
        }
        let logits = infer::logits(
            &self.engine,
            enc,
            self.tok.pad_id(),
            batch_size.max(1),
            progress,
        )?;
        Ok(logits.to_vec2()?)
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

/// Which part of an input has no text (empty or whitespace only), if any: `text`, or `pair` for the
/// second text of a pair. Such an input is refused rather than classified: the model would still answer a
/// confident label, from the special tokens alone (text-embeddings-inference refuses them too).
pub fn blank_part(text: &str, pair: Option<&str>) -> Option<&'static str> {
    if text.trim().is_empty() {
        Some("text")
    } else if pair.is_some_and(|p| p.trim().is_empty()) {
        Some("second text of the pair")
    } else {
        None
    }
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
        let latency = crate::report::batch1_latency(&p.engine, &enc, p.tok.pad_id())?;
        let (_, speed) = crate::plan::timed_logits(&p.engine, &enc, p.tok.pad_id(), a.batch_size)?;
        let timing = serde_json::json!({
            "runtime": a.runtime.describe()?,
            "int8": a.int8,
            "threads": candle_core::utils::get_num_threads(),
            "inputs": enc.len(),
            "latency": latency,
            "batch_size": a.batch_size,
            "examples_per_second": speed,
        });
        writeln!(std::io::stdout().lock(), "{timing}")?;
        return Ok(());
    }
    let bar = train::progress_bar(enc.len() as u64, "predict");
    let rows = p.logits(&enc, a.batch_size, Some(&bar));
    bar.finish_and_clear();
    let rows = rows?;
    let mut out = std::io::stdout().lock();
    for row in rows {
        writeln!(out, "{}", p.prediction(&row))?;
    }
    Ok(())
}
