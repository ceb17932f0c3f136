//! The predictor: an exported model (or any Hugging Face sequence-classification folder) loaded for
//! answers on either runtime, its tokenizer, its label names, and the JSON answer of one logit row.
//! `predict`, `serve` and `compare` share it.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::Device;
use modeling::{Classifier, Encoded, EncoderConfig, ModelSource, TextTokenizer};

use crate::engine::Engine;
use crate::lock::Lock;
use crate::onnxruntime::OrtClassifier;

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
            Self::Onnxruntime => format!("onnxruntime ({})", crate::onnxruntime::library()?),
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

    /// Logit rows [n][c] in input order, `batch_size` examples per forward, with a progress bar named
    /// `progress` (a server passes none: it would draw one bar per batch).
    pub fn logits(
        &self,
        enc: &[Encoded],
        batch_size: usize,
        progress: Option<&str>,
    ) -> Result<Vec<Vec<f32>>> {
        if enc.is_empty() {
            return Ok(Vec::new());
        }
        let pass = crate::logits(&self.engine, enc, self.tok.pad_id(), batch_size, progress)?;
        Ok(pass.logits.to_vec2()?)
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
    let k = argmax(row);
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

/// The index of the largest value of `row` (the first of equal ones; 0 for an empty row): a logit row's
/// predicted class.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}
