//! Batched forward passes over a tokenised dataset: logits, and pooled hidden states of chosen layers, in
//! the dataset's order. Shared by teacher targets and dev evaluation; the `inference` crate runs exported
//! models (our encoder or onnxruntime) through the same length-sorted batches.

use candle_core::{Device, Tensor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::batch::{make_batch, sorted_batches};
use crate::encoder::{first_token, masked_mean};
use crate::model::Classifier;
use crate::tokenizer::Encoded;
use crate::Result;

/// How a layer's [b, s, h] states become one [b, h] vector per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    #[default]
    Cls,
    Mean,
}

pub struct Outputs {
    /// [n, c] on the CPU.
    pub logits: Tensor,
    /// (layer, [n, h]) on the CPU, for the requested layers (0 = embeddings).
    pub hidden: Vec<(usize, Tensor)>,
}

/// Runs `model` in eval mode over `data` in length-sorted batches. `progress` is ticked per example.
pub fn run(
    model: &Classifier,
    data: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    layers: &[usize],
    pooling: Pooling,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Outputs> {
    let mut parts = in_sorted_batches(data, batch_size, progress, |items| {
        let batch = make_batch(items, pad_id, &model.device)?;
        let (logits, out) = model.forward(&batch, false, false)?;
        let mut rows = vec![logits];
        for &layer in layers {
            let h = out.hidden_states.get(layer).ok_or_else(|| {
                crate::Error::Msg(format!(
                    "layer {layer} requested but the model has {} hidden states",
                    out.hidden_states.len()
                ))
            })?;
            rows.push(match pooling {
                Pooling::Cls => first_token(h)?,
                Pooling::Mean => masked_mean(h, &batch.attention_mask)?,
            });
        }
        Ok(rows)
    })?
    .into_iter();
    let logits = parts
        .next()
        .ok_or_else(|| crate::Error::Msg("no outputs".into()))?;
    Ok(Outputs {
        logits,
        hidden: layers.iter().copied().zip(parts).collect(),
    })
}

/// Calls `f` on `data` in length-sorted batches; `f` returns the same number of [b, ...] tensors for each
/// batch. Each of them comes back as one tensor on the CPU, its rows in `data`'s order.
pub fn in_sorted_batches(
    data: &[Encoded],
    batch_size: usize,
    progress: Option<&indicatif::ProgressBar>,
    mut f: impl FnMut(&[&Encoded]) -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    if data.is_empty() {
        return Err(crate::Error::Msg("no examples to run".into()));
    }
    let lengths: Vec<usize> = data.iter().map(|e| e.ids.len()).collect();
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    let mut order = Vec::with_capacity(data.len());
    for idx in sorted_batches(&lengths, batch_size) {
        let items: Vec<&Encoded> = idx.iter().map(|&i| &data[i]).collect();
        let outs = f(&items)?;
        parts.resize_with(outs.len(), Vec::new);
        for (k, t) in outs.into_iter().enumerate() {
            parts[k].push(t.to_device(&Device::Cpu)?);
        }
        if let Some(p) = progress {
            p.inc(idx.len() as u64);
        }
        order.extend(idx);
    }
    // Scatter back: row j of the concatenation is example order[j].
    let mut inverse = vec![0u32; order.len()];
    for (j, &i) in order.iter().enumerate() {
        inverse[i] = j as u32;
    }
    let inverse = Tensor::from_vec(inverse, order.len(), &Device::Cpu)?;
    parts
        .iter()
        .map(|p| Ok(Tensor::cat(p, 0)?.index_select(&inverse, 0)?))
        .collect()
}
