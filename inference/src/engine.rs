//! What turns tokenised inputs into logits, and the one batched pass over a dataset that every caller
//! uses: length-sorted batches (`modeling::infer`), rows back in the dataset's order, a progress bar, and
//! the pass's speed.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;
use modeling::batch::make_batch;
use modeling::infer::in_sorted_batches;
use modeling::sentence::SentenceEncoder;
use modeling::static_model::StaticModel;
use modeling::{Classifier, Encoded};

use crate::onnxruntime::OrtClassifier;

/// Anything that answers logits [b, c] for a batch of encoded inputs padded with `pad_id`.
pub trait Forward {
    fn logits(&self, items: &[&Encoded], pad_id: u32) -> modeling::Result<Tensor>;
}

impl Forward for Classifier {
    /// Eval mode (no dropout), on the model's device.
    fn logits(&self, items: &[&Encoded], pad_id: u32) -> modeling::Result<Tensor> {
        let batch = make_batch(items, pad_id, &self.device)?;
        Ok(self.forward(&batch, false, false)?.0)
    }
}

impl Forward for SentenceEncoder {
    /// The sentence embeddings [b, d] (eval mode): what `logits` means for an embedding model.
    fn logits(&self, items: &[&Encoded], pad_id: u32) -> modeling::Result<Tensor> {
        let batch = make_batch(items, pad_id, &self.model.device)?;
        self.embed(&batch, false)
    }
}

impl Forward for StaticModel {
    /// The mean of each input's token vectors [b, d].
    fn logits(&self, items: &[&Encoded], _pad_id: u32) -> modeling::Result<Tensor> {
        self.embed(items)
    }
}

/// What runs an exported model: our encoder, or the same model's ONNX graph in onnxruntime
/// (`crate::onnxruntime`). `predict`, `serve` and `compare` take either.
#[allow(clippy::large_enum_variant)] // one per loaded model, never copied: size is no concern
pub enum Engine {
    Candle(Classifier),
    OnnxRuntime(OrtClassifier),
}

impl Forward for Engine {
    fn logits(&self, items: &[&Encoded], pad_id: u32) -> modeling::Result<Tensor> {
        match self {
            Self::Candle(model) => model.logits(items, pad_id),
            Self::OnnxRuntime(graph) => graph.logits(items, pad_id),
        }
    }
}

/// The logits of a pass over a dataset and its speed.
pub struct Pass {
    /// [n, c] on the CPU, in the dataset's order.
    pub logits: Tensor,
    pub examples_per_second: f64,
}

/// Runs `model` over `data`, `batch_size` examples a forward, with a progress bar named `progress` (a
/// server passes none: it would draw one bar per batch).
pub fn logits(
    model: &impl Forward,
    data: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    progress: Option<&str>,
) -> Result<Pass> {
    let bar = progress.map(|what| crate::progress_bar(data.len() as u64, what));
    let t0 = Instant::now();
    let parts = in_sorted_batches(data, batch_size.max(1), bar.as_ref(), |items| {
        Ok(vec![model.logits(items, pad_id)?])
    });
    let secs = t0.elapsed().as_secs_f64();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let logits = parts?.pop().context("no outputs")?;
    Ok(Pass {
        logits,
        examples_per_second: data.len() as f64 / secs.max(1e-9),
    })
}
