//! One post-LN encoder block as one autograd node, for training on the CPU in f32. candle's backward
//! pass starts the gradient of every graph node as a zero-filled buffer and adds each contribution into
//! it: a memset, an add and a fresh buffer per node. A block composed of its fourteen ops pays that on
//! every [tokens, hidden] and [tokens, ffn] activation, about a tenth of a training step. Here the
//! forward pass runs the same kernels outside the graph and keeps what the backward pass needs; the
//! backward pass calls each kernel's own backward in reverse order and sums the residual branches
//! itself. Only the input's gradient goes back through candle: the weights' gradients go to the
//! encoder's `GradSink`, which `backward` adds to the store. MPNet's relative-position bias, a graph
//! tensor all blocks share, is the node's second input and gets its gradient from the fused attention's
//! backward pass. The kernels are the composed block's, so the numbers are too, up to the order of the
//! residual sums; `tests/fused_layer.rs` checks the output and every gradient against the composed
//! block.

use std::sync::{Arc, Mutex};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Storage, Tensor};
use kernels::attention::FusedAttention;
use kernels::dense::LinearOp;
use kernels::ops::{slice, Dropout, Gelu, LayerNormOp};

use crate::{Error, Result};

/// Weight gradients that fused blocks computed in the backward pass, waiting for `backward` to add
/// them to the gradient store. Clones share the list (as clones of a model share its weights).
#[derive(Debug, Clone, Default)]
pub struct GradSink(Arc<Mutex<Vec<(Tensor, Tensor)>>>);

impl GradSink {
    fn lock(&self) -> candle_core::Result<std::sync::MutexGuard<'_, Vec<(Tensor, Tensor)>>> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("the gradient sink is poisoned".into()))
    }

    /// Refuses a forward pass while gradients of an earlier one wait: that step was differentiated
    /// with a bare `loss.backward()`, which left the blocks' weights without their gradients.
    pub(crate) fn check_empty(&self) -> Result<()> {
        if self.lock()?.is_empty() {
            return Ok(());
        }
        Err(Error::Msg(
            "a training step was differentiated with `loss.backward()`: fused encoder blocks hand \
             their weights' gradients over only through `modeling::backward`"
                .into(),
        ))
    }
}

/// `loss.backward()` with the gradients of the fused blocks in `sink` added in: the one way to
/// differentiate a training step of an encoder (`Encoder::grad_sink`).
pub fn backward(loss: &Tensor, sink: &GradSink) -> Result<GradStore> {
    let mut grads = loss.backward()?;
    let waiting = std::mem::take(&mut *sink.lock()?);
    for (w, g) in waiting {
        let g = match grads.remove(&w) {
            Some(old) => (old + g)?,
            None => g,
        };
        grads.insert(&w, g);
    }
    Ok(grads)
}

/// `backward` of `loss * scale` (gradient accumulation's share of a micro-batch); a scale of 1.0 leaves the
/// graph, and so the result, exactly as `backward(loss)`.
pub fn backward_scaled(loss: &Tensor, scale: f64, sink: &GradSink) -> Result<GradStore> {
    if scale == 1.0 {
        backward(loss, sink)
    } else {
        backward(&(loss * scale)?, sink)
    }
}

/// A block's weights: the dense layers (query, key, value, attention output, intermediate, output) as
/// (weight, bias), and the two LayerNorms as (weight, bias, eps).
pub(crate) struct BlockWeights {
    pub dense: [(Tensor, Tensor); 6],
    pub norms: [(Tensor, Tensor, f32); 2],
}

impl BlockWeights {
    /// Copies outside the graph (the same storage): products with them build no graph nodes.
    fn detach(&self) -> Self {
        Self {
            dense: self.dense.each_ref().map(|(w, b)| (w.detach(), b.detach())),
            norms: self
                .norms
                .each_ref()
                .map(|(w, b, eps)| (w.detach(), b.detach(), *eps)),
        }
    }
}

/// The block's hidden-state dropouts: after the attention output and after the FFN output.
pub(crate) type HiddenDropout = [Option<Dropout>; 2];

/// What the backward pass reads, all outside the graph.
struct Saved {
    x: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    ctx: Tensor,
    a_in: Tensor,
    a: Tensor,
    ffn_in: Tensor,
    ffn: Tensor,
    o_in: Tensor,
}

/// The block `x` → LN(a + FFN(a)), a = LN(x + attention(x)), as one node. MPNet's relative-position
/// bias (`position_bias`, the tensor whose values `attention` holds) gets its gradient through it.
pub(crate) fn forward(
    weights: BlockWeights,
    x: &Tensor,
    position_bias: Option<&Tensor>,
    attention: FusedAttention,
    dropout: HiddenDropout,
    sink: &GradSink,
) -> Result<Tensor> {
    let detached = weights.detach();
    let lin = |t: &Tensor, i: usize| {
        let (w, b) = &detached.dense[i];
        t.apply_op3_no_bwd(w, b, &LinearOp)
    };
    let norm = |t: &Tensor, i: usize| {
        let (w, b, eps) = &detached.norms[i];
        t.apply_op3_no_bwd(w, b, &LayerNormOp { eps: *eps })
    };
    let drop = |t: Tensor, d: &Option<Dropout>| match d {
        Some(op) => t.apply_op1_no_bwd(op),
        None => Ok(t),
    };
    let xd = x.detach().contiguous()?;
    let (q, k, v) = (lin(&xd, 0)?, lin(&xd, 1)?, lin(&xd, 2)?);
    let ctx = q.apply_op3_no_bwd(&k, &v, &attention)?;
    let a_in = (drop(lin(&ctx, 3)?, &dropout[0])? + &xd)?;
    let a = norm(&a_in, 0)?;
    let ffn_in = lin(&a, 4)?;
    let ffn = ffn_in.apply_op1_no_bwd(&Gelu)?;
    let o_in = (drop(lin(&ffn, 5)?, &dropout[1])? + &a)?;
    let y = norm(&o_in, 1)?;
    let node = Block {
        weights,
        detached,
        attention,
        dropout,
        saved: Saved {
            x: xd,
            q,
            k,
            v,
            ctx,
            a_in,
            a,
            ffn_in,
            ffn,
            o_in,
        },
        y,
        sink: sink.clone(),
    };
    // The node's inputs are the graph tensors the gradient flows to; its forward copies the result.
    Ok(match position_bias {
        Some(pb) => x.apply_op2(pb, node)?,
        None => x.apply_op1(node)?,
    })
}

/// The node: its forward copies the block's result, its backward is the block's.
struct Block {
    /// The model's weights (graph tensors), under which the gradients go to the sink.
    weights: BlockWeights,
    /// The same outside the graph, for the products.
    detached: BlockWeights,
    attention: FusedAttention,
    dropout: HiddenDropout,
    saved: Saved,
    /// The block's result (outside the graph), which the node's forward copies.
    y: Tensor,
    sink: GradSink,
}

impl CustomOp1 for Block {
    fn name(&self) -> &'static str {
        "encoder-block"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.result()
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.backward(dy, false)?.0))
    }
}

/// With MPNet's position bias as the second input.
impl CustomOp2 for Block {
    fn name(&self) -> &'static str {
        "encoder-block"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.result()
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _pb: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dpb) = self.backward(dy, true)?;
        Ok((Some(dx), dpb))
    }
}

impl Block {
    fn result(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let (storage, layout) = self.y.storage_and_layout();
        let Storage::Cpu(y) = &*storage else {
            candle_core::bail!("encoder-block: the result is not on the CPU")
        };
        let y = slice(y, layout, "encoder-block")?;
        Ok((CpuStorage::F32(y.to_vec()), layout.shape().clone()))
    }

    /// The input's gradient (and the position bias's, with `bias_grad`) from the result's; the
    /// weights' gradients go to the sink.
    fn backward(
        &self,
        dy: &Tensor,
        bias_grad: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let s = &self.saved;
        let mut grads: Vec<(Tensor, Tensor)> = Vec::with_capacity(16);
        let mut dense_grads = |i: usize, dw: Tensor, db: Tensor| {
            let (w, b) = &self.weights.dense[i];
            grads.push((w.clone(), dw));
            grads.push((b.clone(), db));
        };
        let lin =
            |t: &Tensor, i: usize, dy: &Tensor| LinearOp.backward(t, &self.detached.dense[i].0, dy);
        let norm = |t: &Tensor, i: usize, dy: &Tensor| {
            let (w, _, eps) = &self.detached.norms[i];
            LayerNormOp { eps: *eps }.backward(t, w, dy)
        };
        let drop = |t: Tensor, d: &Option<Dropout>| match d {
            Some(op) => t.apply_op1_no_bwd(op),
            None => Ok(t),
        };
        // FFN half: y = LN(o_in), o_in = a + drop(W5 · gelu(W4 · a)).
        let (d_o_in, dw_n2, db_n2) = norm(&s.o_in, 1, dy)?;
        let (d_ffn, dw, db) = lin(&s.ffn, 5, &drop(d_o_in.clone(), &self.dropout[1])?)?;
        dense_grads(5, dw, db);
        let d_ffn_in = Gelu.backward(&s.ffn_in, &d_ffn)?;
        let (d_a, dw, db) = lin(&s.a, 4, &d_ffn_in)?;
        dense_grads(4, dw, db);
        let d_a = (d_a + d_o_in)?;
        // Attention half: a = LN(a_in), a_in = x + drop(W3 · attention(W0 x, W1 x, W2 x)).
        let (d_a_in, dw_n1, db_n1) = norm(&s.a_in, 0, &d_a)?;
        let (d_ctx, dw, db) = lin(&s.ctx, 3, &drop(d_a_in.clone(), &self.dropout[0])?)?;
        dense_grads(3, dw, db);
        let (dqkv, dpb) = self
            .attention
            .backward(&s.q, &s.k, &s.v, &d_ctx, bias_grad)?;
        let mut dx = d_a_in;
        for i in 0..3 {
            let (d, dw, db) = lin(&s.x, i, &dqkv.get(i)?)?;
            dense_grads(i, dw, db);
            dx = (dx + d)?;
        }
        for (i, (dw, db)) in [(dw_n1, db_n1), (dw_n2, db_n2)].into_iter().enumerate() {
            let (w, b, _) = &self.weights.norms[i];
            grads.push((w.clone(), dw));
            grads.push((b.clone(), db));
        }
        self.sink.lock()?.extend(grads);
        Ok((dx, dpb))
    }
}
