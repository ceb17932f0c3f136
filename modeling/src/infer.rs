//! Batched inference over a tokenised dataset: logits, and pooled hidden states of chosen layers, in
//! the dataset's order. Shared by teacher targets, dev evaluation and prediction.

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
    let lengths: Vec<usize> = data.iter().map(|e| e.ids.len()).collect();
    let mut logit_parts = Vec::new();
    let mut hidden_parts: Vec<Vec<Tensor>> = vec![Vec::new(); layers.len()];
    let mut order = Vec::with_capacity(data.len());
    for idx in sorted_batches(&lengths, batch_size) {
        let items: Vec<&Encoded> = idx.iter().map(|&i| &data[i]).collect();
        let batch = make_batch(&items, pad_id, &model.device)?;
        let (logits, out) = model.forward(&batch, false, false)?;
        logit_parts.push(logits.to_device(&Device::Cpu)?);
        for (k, &layer) in layers.iter().enumerate() {
            let h = out.hidden_states.get(layer).ok_or_else(|| {
                crate::Error::Msg(format!(
                    "layer {layer} requested but the model has {} hidden states",
                    out.hidden_states.len()
                ))
            })?;
            let pooled = match pooling {
                Pooling::Cls => first_token(h)?,
                Pooling::Mean => masked_mean(h, &batch.attention_mask)?,
            };
            hidden_parts[k].push(pooled.to_device(&Device::Cpu)?);
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
    let unsort = |parts: &[Tensor]| -> Result<Tensor> {
        Ok(Tensor::cat(parts, 0)?.index_select(&inverse, 0)?)
    };
    let logits = unsort(&logit_parts)?;
    let hidden = layers
        .iter()
        .zip(hidden_parts.iter())
        .map(|(&l, parts)| Ok((l, unsort(parts)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Outputs { logits, hidden })
}
