//! Running the models of the report: the dev sets tokenised, batch-1 latency and a timed throughput pass
//! through either engine, the scores, intervals and calibration of one model, and the student as each
//! runtime runs it.

use anyhow::{Context as _, Result};
use candle_core::Tensor;
use data::Example;
use inference::onnxruntime::OrtClassifier;
use inference::{batch1_latency, Engine, Runtime};
use modeling::{Classifier, ModelFiles, TextTokenizer};
use train::bootstrap::{score_intervals, BootstrapConfig};
use train::calibration::{calibration, ECE_BINS};
use train::eval::{score_dev_sets, Predictions};

use super::{Context, ModelSummary};
use data::{tokenise, Tokenised};

pub(super) fn tokenise_sets(
    tok: &TextTokenizer,
    sets: &[(String, Vec<Example>)],
) -> Result<Vec<(String, Tokenised)>> {
    sets.iter()
        .map(|(suffix, ex)| Ok((suffix.clone(), tokenise(tok, ex)?)))
        .collect()
}

/// A model's outputs on every dev set.
pub(super) struct Outputs {
    /// Logits [n, c] of the main dev set.
    pub(super) logits: Tensor,
    pub(super) rows: Vec<Vec<f32>>,
    /// (suffix, predictions) of each dev set, the main one first.
    pub(super) predictions: Vec<(String, Predictions)>,
    /// Main dev set throughput, when timed.
    pub(super) examples_per_second: f64,
}

pub(super) fn run_model(
    model: &Engine,
    pad: u32,
    sets: &[(String, Tokenised)],
    batch_size: usize,
) -> Result<Outputs> {
    let mut predictions = Vec::with_capacity(sets.len());
    let mut main = None;
    for (i, (suffix, t)) in sets.iter().enumerate() {
        let pass = inference::logits(model, &t.ids, pad, batch_size, Some("eval"))?;
        let (logits, speed) = (pass.logits, pass.examples_per_second);
        let rows: Vec<Vec<f32>> = logits.to_vec2()?;
        predictions.push((suffix.clone(), Predictions::new(&rows, &t.labels)));
        if i == 0 {
            main = Some((logits, rows, speed));
        }
    }
    let (logits, rows, examples_per_second) = main.context("no dev set")?;
    Ok(Outputs {
        logits,
        rows,
        predictions,
        examples_per_second,
    })
}

/// Main-set gold classes (classification only).
pub(super) fn gold_classes(predictions: &[(String, Predictions)]) -> Option<&[usize]> {
    match predictions.first() {
        Some((_, Predictions::Classes { gold, .. })) => Some(gold),
        _ => None,
    }
}

/// A model to measure: what runs it, its parameter count and the bytes of its weights.
pub(super) struct Measured {
    pub(super) engine: Engine,
    pub(super) parameters: usize,
    pub(super) size_bytes: u64,
}

/// Scores, intervals, calibration and speed of one model over the dev sets.
pub(super) fn summarise(
    ctx: &Context,
    name: String,
    measured: &Measured,
    tok: &TextTokenizer,
    sets: &[(String, Vec<Example>)],
    cfg: &BootstrapConfig,
) -> Result<(ModelSummary, Outputs)> {
    let model = &measured.engine;
    let enc = tokenise_sets(tok, sets)?;
    let main = &enc.first().context("no dev set")?.1;
    // Batch-1 first: its warm-up passes also warm the model for the throughput pass.
    let latency = batch1_latency(model, &main.ids, tok.pad_id())?;
    let out = run_model(model, tok.pad_id(), &enc, ctx.batch_size)?;
    let dev = score_dev_sets(&out.predictions, ctx.spec.metric);
    let dev_interval = score_intervals(&out.predictions, ctx.spec.metric, cfg);
    let (calibration, confusion) = match (gold_classes(&out.predictions), &out.predictions[0].1) {
        (Some(gold), Predictions::Classes { pred, .. }) => (
            Some(calibration(&out.rows, gold, ECE_BINS)),
            Some(train::metrics::confusion(
                pred,
                gold,
                ctx.spec.num_outputs(),
            )),
        ),
        _ => (None, None),
    };
    let summary = ModelSummary {
        name,
        dev,
        dev_interval,
        calibration,
        confusion,
        parameters: measured.parameters,
        size_bytes: measured.size_bytes,
        examples_per_second: out.examples_per_second,
        latency,
    };
    Ok((summary, out))
}

/// The trained student as `runtime` runs it, in f32 or dynamic int8, with its parameter count and the
/// bytes of its weights: in candle, the safetensors file (f32) or the quantized weights in memory; in
/// onnxruntime, the ONNX graph that `distill export --format onnx [--int8]` writes, built in memory.
pub(super) fn student_engine(
    ctx: &Context,
    files: &ModelFiles,
    int8: bool,
    runtime: Runtime,
) -> Result<Measured> {
    let device = match runtime {
        Runtime::Candle => ctx.device.clone(),
        Runtime::Onnxruntime => candle_core::Device::Cpu,
    };
    let (mut model, _) = Classifier::load(files, Some(ctx.spec.num_outputs()), ctx.seed, &device)?;
    let parameters = model.num_parameters();
    let (engine, size_bytes) = match runtime {
        Runtime::Candle if int8 => {
            let bytes = model.quantize_int8()?;
            (Engine::Candle(model), bytes as u64)
        }
        Runtime::Candle => {
            model.pack(modeling::Packing::F32)?;
            (Engine::Candle(model), files.weights_size())
        }
        Runtime::Onnxruntime => {
            let graph = modeling::onnx::to_onnx(&model, int8)?;
            let name = if int8 {
                "model.int8.onnx"
            } else {
                "model.onnx"
            };
            let runner = OrtClassifier::from_bytes(
                &graph,
                candle_core::utils::get_num_threads(),
                format!("the student's {name}"),
            )?;
            (Engine::OnnxRuntime(runner), graph.len() as u64)
        }
    };
    Ok(Measured {
        engine,
        parameters,
        size_bytes,
    })
}
