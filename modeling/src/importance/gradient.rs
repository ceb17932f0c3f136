//! The gradient criterion (`selection: gradient`): how much the teacher's task loss changes when a
//! head, an FFN unit or a hidden dimension is scaled down, the derivative of the loss with respect to a
//! mask on it at 1 (Michel et al. 2019 for heads; Kwon et al. 2022 for FFN units; CoFi's hidden mask),
//! its absolute value averaged over examples. One set of heads and one set of hidden dimensions serve
//! all the student's blocks, so their masks are shared by the kept blocks: the score is the change when
//! the student removes them. Each mask scales weights, so its derivative is `Σ w · ∂L/∂w` over the
//! weights it scales, read from the weight gradients of one backward pass, with no mask in the model:
//! - a head's mask scales its context, which is linear in its value projection: its rows of the value
//!   weight and bias in each kept block;
//! - an FFN unit's mask scales its column of the block's down-projection weight;
//! - a hidden dimension's mask scales it in the embedding output and each kept block's output: its
//!   entries of those LayerNorms' scale and shift.
//!
//! One example a pass, so that each example's derivative is its own (summed over a batch, examples
//! of opposite sign would cancel).

use candle_core::{DType, Tensor};

use super::Importance;
use crate::batch::make_batch;
use crate::{Classifier, Encoded, Error, Result};

/// The weights each mask scales, as the graph's variables.
struct Masked {
    /// Per kept block: the value projection's weight and bias (a head is `head_dim` of their rows).
    values: Vec<[Tensor; 2]>,
    /// Per kept block: the FFN down-projection weight [hidden, ffn] (a unit is a column).
    downs: Vec<Tensor>,
    /// The LayerNorms whose outputs are the residual stream: the embeddings' and each kept block's
    /// output LayerNorm, scale and shift.
    norms: Vec<[Tensor; 2]>,
}

impl Importance {
    /// Scores `teacher`'s dimensions for a student made of its blocks `layers` (1-based) by the
    /// gradient of its task loss over examples `data` (tokenised by the teacher's tokenizer):
    /// `loss(i, logits)` is example `i`'s loss from its logits [1, outputs].
    pub fn gradient(
        teacher: &Classifier,
        layers: &[usize],
        data: &[Encoded],
        pad_id: u32,
        loss: &dyn Fn(usize, &Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        teacher.config.keep_layers(layers)?;
        if data.is_empty() {
            return Err(Error::Msg(
                "importance: no examples to measure the teacher on".into(),
            ));
        }
        // The training forward (it has a backward) with nothing random in it.
        let mut model = teacher.clone();
        model.set_dropout(0.0);
        let w = Masked::find(&model, layers)?;
        let (nh, hd) = (model.config.num_attention_heads, model.config.head_dim());
        let mut hidden = vec![0f64; model.config.hidden_size];
        let mut heads = vec![0f64; nh];
        let mut ffn = vec![vec![0f64; model.config.intermediate_size]; layers.len()];
        let abs_add = |acc: &mut [f64], d: &Tensor| -> Result<()> {
            let d = d.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            acc.iter_mut().zip(d).for_each(|(a, b)| *a += b.abs());
            Ok(())
        };
        for (i, e) in data.iter().enumerate() {
            let batch = make_batch(&[e], pad_id, &model.device)?;
            let (logits, _) = model.forward(&batch, true, false)?;
            let grads = crate::backward(&loss(i, &logits)?, model.encoder.grad_sink())?;
            // Per row of `t` (its entries, for a vector): Σ t · ∂L/∂t along the row.
            let dot = |t: &Tensor| -> Result<Tensor> {
                let g = grads.get(t).ok_or_else(|| {
                    Error::Msg("importance: a masked weight has no gradient".into())
                })?;
                let p = (g * t)?;
                Ok(if p.rank() == 2 { p.sum(1)? } else { p })
            };
            let mut head_d = Tensor::zeros(nh, DType::F32, &model.device)?;
            for [weight, bias] in &w.values {
                let rows = (dot(weight)? + dot(bias)?)?;
                head_d = (head_d + rows.reshape((nh, hd))?.sum(1)?)?;
            }
            abs_add(&mut heads, &head_d)?;
            for (acc, down) in ffn.iter_mut().zip(&w.downs) {
                let g = grads.get(down).ok_or_else(|| {
                    Error::Msg("importance: the FFN down-projection has no gradient".into())
                })?;
                abs_add(acc, &(g * down)?.sum(0)?)?;
            }
            let mut hidden_d = Tensor::zeros(hidden.len(), DType::F32, &model.device)?;
            for [scale, shift] in &w.norms {
                hidden_d = (hidden_d + dot(scale)? + dot(shift)?)?;
            }
            abs_add(&mut hidden, &hidden_d)?;
        }
        let n = data.len() as f64;
        for v in hidden
            .iter_mut()
            .chain(&mut heads)
            .chain(ffn.iter_mut().flatten())
        {
            *v /= n;
        }
        Ok(Self { hidden, heads, ffn })
    }
}

impl Masked {
    /// The weights of `model`'s blocks `layers` (1-based) and its embeddings, by their roles in BERT's,
    /// RoBERTa's and MPNet's names.
    fn find(model: &Classifier, layers: &[usize]) -> Result<Self> {
        let vars = model.named_vars();
        let var = |suffixes: &[String]| -> Result<Tensor> {
            vars.iter()
                .find(|(name, _)| suffixes.iter().any(|s| name.ends_with(s.as_str())))
                .map(|(_, v)| v.as_tensor().clone())
                .ok_or_else(|| Error::Msg(format!("importance: no {}", suffixes[0])))
        };
        let pair = |prefixes: &[String]| -> Result<[Tensor; 2]> {
            let with = |end: &str| {
                prefixes
                    .iter()
                    .map(|p| format!("{p}{end}"))
                    .collect::<Vec<_>>()
            };
            Ok([var(&with("weight"))?, var(&with("bias"))?])
        };
        let block = |l: usize, rest: &str| format!("encoder.layer.{}.{rest}", l - 1);
        let mut norms = vec![pair(&["embeddings.LayerNorm.".into()])?];
        let mut values = Vec::new();
        let mut downs = Vec::new();
        for &l in layers {
            values.push(pair(&[
                block(l, "attention.self.value."),
                block(l, "attention.attn.v."),
            ])?);
            downs.push(var(&[block(l, "output.dense.weight")])?);
            norms.push(pair(&[block(l, "output.LayerNorm.")])?);
        }
        Ok(Self {
            values,
            downs,
            norms,
        })
    }
}
