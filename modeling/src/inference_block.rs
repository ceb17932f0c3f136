//! One post-LN encoder block for CPU inference, as one op over plain slices. The composed block runs
//! about a dozen tensor ops, each a pass over its activations and a fresh buffer; in int8 it also
//! quantizes the block's input three times, once for each of the query, key and value layers. Here:
//! - the query, key and value layers are one product ([3h, h]: one pass over the input, one
//!   quantization, three times the work to share among threads);
//! - attention reads the three from that product in place;
//! - the FFN's GELU and both residual sums run in the products' epilogues, on tiles still in cache;
//! - the two LayerNorms.
//!
//! `pack(F32)` and `quantize_int8` build it for GELU (erf) models; the composed block stays for
//! training, other devices and dtypes, and callers that want Q/K/V or the probabilities. The kernels
//! and expressions are the composed block's, so int8 answers are bit for bit the same and f32 ones
//! the same up to the product's summation order (`tests/inference_block.rs`).

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use kernels::attention::FusedAttention;
use kernels::epilogue::Epilogue;
use kernels::ops::{layer_norm, slice};

use crate::nn::{Dense, LayerNorm};
use crate::Result;

/// A block's inference copies: the stacked query/key/value layer, the other three dense layers, and
/// the LayerNorms as (weight, bias, eps).
#[derive(Debug)]
pub(crate) struct InferenceBlock {
    qkv: Dense,
    attn_out: Dense,
    intermediate: Dense,
    output: Dense,
    norms: [(Vec<f32>, Vec<f32>, f32); 2],
}

impl InferenceBlock {
    /// From a block's layers, once each has an f32-packed or int8 inference copy; `None` otherwise.
    pub(crate) fn new(dense: [&Dense; 6], norms: [&LayerNorm; 2]) -> Result<Option<Self>> {
        let [q, k, v, attn_out, intermediate, output] = dense;
        let rest = [attn_out, intermediate, output];
        if rest.iter().any(|d| !d.has_inference_copy()) {
            return Ok(None);
        }
        let Some(qkv) = Dense::stacked(&[q, k, v])? else {
            return Ok(None);
        };
        let norm = |n: &LayerNorm| -> Result<(Vec<f32>, Vec<f32>, f32)> {
            let (w, b, eps) = n.parts();
            Ok((w.to_vec1()?, b.to_vec1()?, eps))
        };
        Ok(Some(Self {
            qkv,
            attn_out: attn_out.clone(),
            intermediate: intermediate.clone(),
            output: output.clone(),
            norms: [norm(norms[0])?, norm(norms[1])?],
        }))
    }

    /// The block on `x` [b, s, h] (f32, on the CPU), with `attention`'s mask and position bias.
    pub(crate) fn forward(&self, x: &Tensor, attention: FusedAttention) -> Result<Tensor> {
        let op = Op {
            block: self,
            attention,
        };
        Ok(x.contiguous()?.apply_op1_no_bwd(&op)?)
    }

    fn run(
        &self,
        x: &[f32],
        b: usize,
        attention: &FusedAttention,
    ) -> candle_core::Result<Vec<f32>> {
        let rows = |d: &Dense, x: &[f32], e: Epilogue| {
            d.forward_rows(x, e).ok_or_else(|| {
                candle_core::Error::Msg("inference block: a layer lost its inference copy".into())
            })
        };
        let norm = |x: &[f32], i: usize| {
            let (w, b, eps) = &self.norms[i];
            layer_norm(x, w, b, *eps)
        };
        let h = self.norms[0].0.len();
        let qkv = rows(&self.qkv, x, Epilogue::Bias)?;
        let ctx = attention.forward_fused_qkv(&qkv, b, h)?;
        let a = norm(&rows(&self.attn_out, &ctx, Epilogue::Residual(x))?, 0);
        let f = rows(&self.intermediate, &a, Epilogue::Gelu)?;
        Ok(norm(&rows(&self.output, &f, Epilogue::Residual(&a))?, 1))
    }
}

/// The block as a tensor op (it reads its input's storage in place).
struct Op<'a> {
    block: &'a InferenceBlock,
    attention: FusedAttention,
}

impl CustomOp1 for Op<'_> {
    fn name(&self) -> &'static str {
        "inference-block"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, self.name())?;
        let (b, _, h) = l.shape().dims3()?;
        if h != self.block.norms[0].0.len() {
            candle_core::bail!(
                "inference block: input width {h}, block width {}",
                self.block.norms[0].0.len()
            );
        }
        let y = self.block.run(x, b, &self.attention)?;
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
}
