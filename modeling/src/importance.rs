//! How much each hidden dimension, attention head and FFN unit of a teacher contributes to its outputs,
//! measured on task examples: what `selection: importance` keeps (the largest of each). Forward passes
//! only, no gradient:
//! - an attention head's score is the size of what it adds to the residual stream, `‖ctx_h · W_o[:, h]‖`
//!   averaged over real tokens (Michel et al. 2019 rank heads by the gradient of a head mask; this is the
//!   first-order magnitude of the same removal, and needs no backward pass);
//! - an FFN unit's score is its mean absolute activation times the norm of its output column, the size
//!   of what it adds (as CoFi's and Wanda's magnitude criteria do);
//! - a hidden dimension's score is its root mean square over real tokens in the embedding output and
//!   the kept blocks' outputs: the dimensions the stream carries most (its outlier dimensions among them,
//!   which every LayerNorm's statistics depend on).
//!
//! Heads are scored summed over the kept blocks, since one set of heads serves them all (MPNet's single
//! relative-position table has one column per head). `gradient` scores the same dimensions by the
//! gradient of the task loss instead.

mod gradient;

use candle_core::{DType, Module, Tensor, D};
use candle_nn::Linear;

use crate::batch::{make_batch, sorted_batches};
use crate::encoder::{activation, Want};
use crate::{Classifier, Encoded, Error, Result};

/// Scores of a teacher's dimensions (larger: more important).
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    /// One per hidden dimension.
    pub hidden: Vec<f64>,
    /// One per attention head, summed over the kept blocks.
    pub heads: Vec<f64>,
    /// One list per kept block (in the order of `layers`), one score per FFN unit.
    pub ffn: Vec<Vec<f64>>,
}

/// The weights of one block that the scores need.
struct BlockWeights {
    value: Linear,
    out: Linear,
    norm: (Tensor, Tensor),
    up: Linear,
    down: Tensor,
}

impl Importance {
    /// Scores `teacher`'s dimensions for a student made of its blocks `layers` (1-based), over task
    /// examples `data` tokenised by the teacher's tokenizer (padding id `pad_id`), in inference mode,
    /// one length-sorted batch at a time.
    pub fn measure(
        teacher: &Classifier,
        layers: &[usize],
        data: &[Encoded],
        pad_id: u32,
    ) -> Result<Self> {
        let cfg = &teacher.config;
        teacher.config.keep_layers(layers)?;
        let blocks = layers
            .iter()
            .map(|&l| block_weights(teacher, l - 1))
            .collect::<Result<Vec<_>>>()?;
        let (nh, hd) = (cfg.num_attention_heads, cfg.head_dim());
        let mut hidden = vec![0f64; cfg.hidden_size];
        let mut heads = vec![0f64; nh];
        let mut ffn = vec![vec![0f64; cfg.intermediate_size]; layers.len()];
        let (mut tokens, mut stream_rows) = (0f64, 0f64);
        let deepest = layers.iter().copied().max().unwrap_or(0);
        let want = Want {
            attentions: true,
            qkv: false,
        };
        let lengths: Vec<usize> = data.iter().map(|e| e.ids.len()).collect();
        for idx in sorted_batches(&lengths, 32) {
            let items: Vec<&Encoded> = idx.iter().map(|&i| &data[i]).collect();
            let batch = make_batch(&items, pad_id, &teacher.device)?;
            let (_, out) = teacher.forward_with(&batch, false, want)?;
            // [b*s, 1] weights: 1 on real tokens, 0 on padding.
            let mask = batch.attention_mask.flatten_all()?.unsqueeze(1)?;
            let n = mask.sum_all()?.to_scalar::<f32>()? as f64;
            tokens += n;
            let rows = |t: &Tensor| -> Result<Tensor> {
                let w = t.dim(D::Minus1)?;
                Ok(t.reshape(((), w))?.broadcast_mul(&mask)?)
            };
            let sum_rows = |t: &Tensor| -> Result<Vec<f64>> {
                Ok(t.sum(0)?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
            };
            for h in out.hidden_states.iter().take(deepest + 1) {
                let sq = sum_rows(&rows(h)?.sqr()?)?;
                hidden.iter_mut().zip(sq).for_each(|(a, b)| *a += b);
                stream_rows += n;
            }
            for (j, (&l, w)) in layers.iter().zip(&blocks).enumerate() {
                let x = &out.hidden_states[l - 1];
                let probs = &out.attentions[l - 1]; // [b, nh, s, s]
                let (b, s, _) = x.dims3()?;
                let v = w
                    .value
                    .forward(x)?
                    .reshape((b, s, nh, hd))?
                    .transpose(1, 2)?
                    .contiguous()?;
                let ctx = probs.contiguous()?.matmul(&v)?; // [b, nh, s, hd]
                for (h, score) in heads.iter_mut().enumerate() {
                    let ctx_h = ctx.narrow(1, h, 1)?.squeeze(1)?; // [b, s, hd]
                    let w_o = w.out.weight().narrow(1, h * hd, hd)?; // [width, hd]
                    let part = ctx_h.broadcast_matmul(&w_o.t()?)?; // [b, s, width]
                    let norms = rows(&part)?.sqr()?.sum_keepdim(1)?.sqrt()?;
                    *score += norms.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                }
                // The block's own attention output (the heads' parts summed), then its FFN input.
                let merged = ctx.transpose(1, 2)?.reshape((b, s, nh * hd))?;
                let attn = (w.out.forward(&merged)? + x)?;
                let (g, beta) = &w.norm;
                let a = candle_nn::ops::layer_norm(&attn, g, beta, cfg.layer_norm_eps as f32)?;
                let act = activation(&w.up.forward(&a)?, cfg.hidden_act)?;
                let col_norms = w.down.sqr()?.sum(0)?.sqrt()?; // [ffn]
                let mean_abs = sum_rows(&rows(&act)?.abs()?)?;
                let col = col_norms.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                for ((f, m), c) in ffn[j].iter_mut().zip(mean_abs).zip(col) {
                    *f += m * c;
                }
            }
        }
        if tokens == 0.0 {
            return Err(Error::Msg(
                "importance: no tokens to measure the teacher on".into(),
            ));
        }
        hidden
            .iter_mut()
            .for_each(|v| *v = (*v / stream_rows).sqrt());
        heads.iter_mut().for_each(|v| *v /= tokens);
        ffn.iter_mut().flatten().for_each(|v| *v /= tokens);
        Ok(Self { hidden, heads, ffn })
    }
}

/// The `keep` largest of `scores`, as increasing indices (ties to the lower index).
pub fn top(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(keep);
    order.sort_unstable();
    order
}

/// Block `i`'s (0-based) value, attention output, attention LayerNorm, FFN up and down weights, by
/// their roles in BERT's, RoBERTa's and MPNet's names.
fn block_weights(model: &Classifier, i: usize) -> Result<BlockWeights> {
    let key = format!("encoder.layer.{i}.");
    let vars: Vec<(String, Tensor)> = model
        .named_vars()
        .into_iter()
        .filter_map(|(name, v)| {
            let at = name.find(&key)? + key.len();
            Some((name[at..].to_string(), v.as_tensor().clone()))
        })
        .collect();
    let find = |pick: &dyn Fn(&str) -> bool, what: &str| -> Result<Tensor> {
        vars.iter()
            .find(|(rest, _)| pick(rest))
            .map(|(_, t)| t.clone())
            .ok_or_else(|| Error::Msg(format!("importance: block {}: no {what}", i + 1)))
    };
    let pair = |prefixes: &[&str], what: &str| -> Result<(Tensor, Tensor)> {
        let w = find(
            &|r| prefixes.iter().any(|p| r == format!("{p}weight")),
            what,
        )?;
        let b = find(&|r| prefixes.iter().any(|p| r == format!("{p}bias")), what)?;
        Ok((w, b))
    };
    let dense = |prefixes: &[&str], what: &str| -> Result<Linear> {
        let (w, b) = pair(prefixes, what)?;
        Ok(Linear::new(w, Some(b)))
    };
    Ok(BlockWeights {
        value: dense(&["attention.self.value.", "attention.attn.v."], "value")?,
        out: dense(
            &["attention.output.dense.", "attention.attn.o."],
            "attention output",
        )?,
        norm: pair(
            &["attention.output.LayerNorm.", "attention.LayerNorm."],
            "attention LayerNorm",
        )?,
        up: dense(&["intermediate.dense."], "FFN up-projection")?,
        down: find(&|r| r == "output.dense.weight", "FFN down-projection")?,
    })
}
