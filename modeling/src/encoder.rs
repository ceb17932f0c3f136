//! One transformer encoder for BERT, RoBERTa and MPNet checkpoints, with Hugging Face weight names
//! (`embeddings.word_embeddings.weight`, `encoder.layer.{i}.attention.self.query.weight`, MPNet's
//! `encoder.layer.{i}.attention.attn.q.weight`, ...). Mirrors transformers' `modeling_bert.py`,
//! `modeling_roberta.py` and `modeling_mpnet.py` (eager attention): post-LayerNorm blocks, additive
//! attention mask, RoBERTa and MPNet positions from `padding_idx + 1`, MPNet's relative-position
//! bias (T5's log buckets, one table shared by all layers) added to the attention scores. Used by
//! teacher and student.

use std::sync::Arc;

use rayon::prelude::*;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Embedding, Init, VarBuilder};

use crate::config::{Activation, EncoderConfig, ModelKind};
use crate::fused_layer::{self, BlockWeights, GradSink};
use crate::inference_block::InferenceBlock;
use crate::nn::{apply, linear, softmax_t, Dense, DropoutRng, LayerNorm, Packing};
use crate::Result;
use kernels::attention::FusedAttention;
use kernels::quant::QEmbedding;

/// A padded batch on the model's device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// [b, s] u32 token ids.
    pub input_ids: Tensor,
    /// [b, s] u32 segment ids (zeros for single sentences and for RoBERTa).
    pub token_type_ids: Tensor,
    /// [b, s] f32, 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

/// What a forward pass returns besides hidden states (each costs memory, so each is asked for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    /// Each layer's attention probabilities.
    pub attentions: bool,
    /// Each layer's query, key and value projections (MiniLM relation distillation needs them).
    pub qkv: bool,
}

/// One layer's query, key and value projections, before the split into heads: each [b, s, h].
#[derive(Debug, Clone)]
pub struct Qkv {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
}

/// Every layer's hidden states (index 0 is the embedding output) and, when asked, attention probabilities
/// and Q/K/V projections.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// `num_layers + 1` tensors of [b, s, h].
    pub hidden_states: Vec<Tensor>,
    /// `num_layers` tensors of [b, heads, s, s] (pre-dropout probabilities), empty unless requested.
    pub attentions: Vec<Tensor>,
    /// `num_layers` entries (layer 1 first), empty unless requested.
    pub qkv: Vec<Qkv>,
}

impl EncoderOutput {
    /// The outputs of consecutive parts of a batch as the whole batch's.
    fn concat(parts: Vec<EncoderOutput>) -> Result<Self> {
        let cat = |f: &dyn Fn(&EncoderOutput) -> Vec<Tensor>| -> Result<Vec<Tensor>> {
            let per_part: Vec<Vec<Tensor>> = parts.iter().map(f).collect();
            (0..per_part.first().map_or(0, Vec::len))
                .map(|i| {
                    let xs: Vec<&Tensor> = per_part.iter().map(|p| &p[i]).collect();
                    Ok(Tensor::cat(&xs, 0)?)
                })
                .collect()
        };
        let hidden_states = cat(&|o| o.hidden_states.clone())?;
        let attentions = cat(&|o| o.attentions.clone())?;
        let [q, k, v] = [0, 1, 2].map(|j| {
            cat(&|o: &EncoderOutput| {
                o.qkv
                    .iter()
                    .map(|x| [&x.q, &x.k, &x.v][j].clone())
                    .collect()
            })
        });
        let qkv = q?
            .into_iter()
            .zip(k?)
            .zip(v?)
            .map(|((q, k), v)| Qkv { q, k, v })
            .collect();
        Ok(Self {
            hidden_states,
            attentions,
            qkv,
        })
    }

    pub fn last(&self) -> Result<&Tensor> {
        self.hidden_states
            .last()
            .ok_or_else(|| crate::Error::Msg("encoder produced no hidden states".into()))
    }
}

#[derive(Debug, Clone)]
struct Embeddings {
    word: Embedding,
    /// Set by `quantize_int8`: word lookups read this int8 table instead.
    word_int8: Option<Arc<QEmbedding>>,
    position: Embedding,
    /// Absent in MPNet.
    token_type: Option<Embedding>,
    norm: LayerNorm,
}

impl Embeddings {
    fn new(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let emb = |n: usize, name: &str| -> Result<Embedding> {
            let w = vb
                .pp(name)
                .get_with_hints((n, cfg.hidden_size), "weight", Init::Const(0.))?;
            Ok(Embedding::new(w, cfg.hidden_size))
        };
        Ok(Self {
            word: emb(cfg.vocab_size, "word_embeddings")?,
            word_int8: None,
            position: emb(cfg.max_position_embeddings, "position_embeddings")?,
            token_type: if cfg.has_token_types() {
                Some(emb(cfg.type_vocab_size, "token_type_embeddings")?)
            } else {
                None
            },
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }
}

#[derive(Debug, Clone)]
struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
    /// Set by `pack(F32)` and `quantize_int8` for GELU models: the block as one inference op.
    inference: Option<Arc<InferenceBlock>>,
}

impl Layer {
    /// Builds the block's inference op from its layers' inference copies (see `inference_block`).
    fn build_inference(&mut self, act: Activation) -> Result<()> {
        self.inference = match act {
            Activation::Gelu => {
                InferenceBlock::new(self.dense(), [&self.attn_norm, &self.out_norm])?.map(Arc::new)
            }
            _ => None,
        };
        Ok(())
    }

    /// The block's six dense layers: query, key, value, attention output, intermediate, output.
    fn dense(&self) -> [&Dense; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attn_out,
            &self.intermediate,
            &self.output,
        ]
    }

    /// The block's six dense layers.
    fn dense_mut(&mut self) -> [&mut Dense; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attn_out,
            &mut self.intermediate,
            &mut self.output,
        ]
    }

    /// The weights for a fused block: `None` while a dense layer has an inference copy (or no bias).
    fn block_weights(&self) -> Option<BlockWeights> {
        let d = |l: &Dense| {
            let b = l.linear.bias()?;
            (!l.has_inference_copy()).then(|| (l.linear.weight().clone(), b.clone()))
        };
        let [q, k, v, o, i, out] = self.dense().map(d);
        Some(BlockWeights {
            dense: [q?, k?, v?, o?, i?, out?],
            norms: [self.attn_norm.parts(), self.out_norm.parts()],
        })
    }

    fn new(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        if cfg.kind() == ModelKind::Mpnet {
            // MPNetAttention: `attn.{q,k,v,o}` and the LayerNorm beside `attn`.
            let a = att.pp("attn");
            return Ok(Self {
                query: linear(h, h, a.pp("q"))?,
                key: linear(h, h, a.pp("k"))?,
                value: linear(h, h, a.pp("v"))?,
                attn_out: linear(h, h, a.pp("o"))?,
                attn_norm: LayerNorm::new(h, cfg.layer_norm_eps, att.pp("LayerNorm"))?,
                intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
                output: linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
                out_norm: LayerNorm::new(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
                inference: None,
            });
        }
        Ok(Self {
            query: linear(h, h, att.pp("self").pp("query"))?,
            key: linear(h, h, att.pp("self").pp("key"))?,
            value: linear(h, h, att.pp("self").pp("value"))?,
            attn_out: linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: LayerNorm::new(h, cfg.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: LayerNorm::new(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            inference: None,
        })
    }
}

/// The encoder: embeddings and `num_hidden_layers` post-LN transformer blocks.
#[derive(Debug, Clone)]
pub struct Encoder {
    cfg: EncoderConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// MPNet's relative-position bias [buckets, heads], shared by all layers.
    relative_bias: Option<Embedding>,
    dropout: DropoutRng,
    /// The dtype of the matrix products (see `set_compute_dtype`).
    compute: DType,
    /// The kernels a forward pass may take, chosen from the device and the compute dtype.
    kernels: Kernels,
    /// The fused blocks' weight gradients, for `modeling::backward` (shared by clones).
    grads: GradSink,
}

impl Encoder {
    /// Builds the encoder under `vb` (for example `vb.pp("bert")`), creating or fetching its tensors.
    pub fn new(cfg: &EncoderConfig, vb: VarBuilder, dropout: DropoutRng) -> Result<Self> {
        let embeddings = Embeddings::new(cfg, vb.pp("embeddings"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, vb.pp("encoder").pp(format!("layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let relative_bias = match cfg.relative_attention_num_buckets {
            Some(n) if cfg.kind() == ModelKind::Mpnet => {
                let w = vb
                    .pp("encoder")
                    .pp("relative_attention_bias")
                    .get_with_hints((n, cfg.num_attention_heads), "weight", Init::Const(0.))?;
                Some(Embedding::new(w, cfg.num_attention_heads))
            }
            _ => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            embeddings,
            layers,
            relative_bias,
            dropout,
            compute: DType::F32,
            kernels: Kernels::choose(cfg, vb.device(), DType::F32),
            grads: GradSink::default(),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Where training's fused blocks leave their weights' gradients: differentiate a training step
    /// with `modeling::backward(&loss, encoder.grad_sink())`.
    pub fn grad_sink(&self) -> &GradSink {
        &self.grads
    }

    /// Mixed precision, as PyTorch's autocast does it: with BF16 or F16 the blocks' matrix products
    /// (the dense layers and the two attention products) run in that dtype on copies of the f32
    /// weights made at each forward pass, so gradients reach the f32 master weights through the casts.
    /// Embeddings, the attention softmax, LayerNorms, the residual stream and everything returned
    /// (hidden states, probabilities, Q/K/V) stay f32: they are where half precision loses accuracy.
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(crate::Error::Msg(format!(
                "compute dtype must be f32, bf16 or f16 (got {dtype:?})"
            )));
        }
        self.compute = dtype;
        let device = self.embeddings.word.embeddings().device().clone();
        self.kernels = Kernels::choose(&self.cfg, &device, dtype);
        Ok(())
    }

    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// Switches every dense layer of every block to the `how` inference copy (see `nn::Packing`).
    pub fn pack(&mut self, how: Packing) -> Result<()> {
        for l in &mut self.layers {
            for d in l.dense_mut() {
                d.pack(how)?;
            }
            l.build_inference(self.cfg.hidden_act)?;
        }
        Ok(())
    }

    /// Switches the word embeddings and every dense layer of every block to int8 inference (see
    /// `quant`); returns those tensors' (f32 bytes, int8 bytes).
    pub fn quantize_int8(&mut self) -> Result<(usize, usize)> {
        let words = QEmbedding::from_table(self.embeddings.word.embeddings())?;
        let mut total = (words.f32_bytes(), words.bytes());
        self.embeddings.word_int8 = Some(Arc::new(words));
        for l in &mut self.layers {
            for d in l.dense_mut() {
                let (f, q) = d.quantize_int8()?;
                total = (total.0 + f, total.1 + q);
            }
            l.build_inference(self.cfg.hidden_act)?;
        }
        Ok(total)
    }

    /// How many blocks run as one inference op (`pack(F32)` or `quantize_int8` on a GELU model).
    pub fn inference_blocks(&self) -> usize {
        self.layers.iter().filter(|l| l.inference.is_some()).count()
    }

    /// Sets both dropout probabilities (0 makes training-mode forward passes deterministic).
    pub fn set_dropout(&mut self, p: f64) {
        self.cfg.hidden_dropout_prob = p;
        self.cfg.attention_probs_dropout_prob = p;
    }

    /// Position ids as transformers computes them: 0.. for BERT; for RoBERTa and MPNet `cumsum(ids !=
    /// pad)` masked, plus `pad` (`position_padding_id`), so that padding keeps the padding position.
    fn position_ids(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (b, s) = input_ids.dims2()?;
        match self.cfg.kind() {
            ModelKind::Bert => Ok(Tensor::arange(0u32, s as u32, input_ids.device())?
                .unsqueeze(0)?
                .broadcast_as((b, s))?
                .contiguous()?),
            ModelKind::Roberta | ModelKind::Mpnet => {
                let pad_id = self.cfg.position_padding_id();
                let pad = pad_id as f64;
                let real = input_ids.ne(pad_id)?.to_dtype(DType::F32)?; // [b, s]
                let pos = (real.cumsum(1)? * &real)?;
                Ok((pos + pad)?.to_dtype(DType::U32)?)
            }
        }
    }

    /// Runs the encoder. `train` turns dropout on (and selects differentiable kernels);
    /// `attentions` returns each layer's attention probabilities.
    pub fn forward(&self, batch: &Batch, train: bool, attentions: bool) -> Result<EncoderOutput> {
        let want = Want {
            attentions,
            qkv: false,
        };
        self.forward_with(batch, train, want)
    }

    /// `forward`, returning what `want` asks for besides the hidden states.
    pub fn forward_with(&self, batch: &Batch, train: bool, want: Want) -> Result<EncoderOutput> {
        if train || !batch.input_ids.device().is_cpu() {
            return self.forward_batch(batch, train, want);
        }
        // Inference on the CPU runs on a thread of the pool: its many short parallel steps then
        // share the work with the pool's other threads, instead of each handing it over from the
        // calling thread and waiting to be woken (at batch 1, a fifth of the time went there).
        if rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward_with(batch, train, want));
        }
        // A batch of at least two sequences a thread is split into one part a thread, each run whole
        // by its thread: no thread waits for the others at every step of every block, and a thread
        // that finishes first takes over work from the rest. Every row's result is its own (per-token
        // int8 scales), so the answers are those of the whole batch.
        let threads = rayon::current_num_threads();
        let b = batch.input_ids.dim(0)?;
        if threads < 2 || b < 2 * threads {
            return self.forward_batch(batch, train, want);
        }
        let parts = (0..threads)
            .map(|t| {
                let (start, end) = (t * b / threads, (t + 1) * b / threads);
                let rows = |x: &Tensor| x.narrow(0, start, end - start);
                Ok(Batch {
                    input_ids: rows(&batch.input_ids)?,
                    token_type_ids: rows(&batch.token_type_ids)?,
                    attention_mask: rows(&batch.attention_mask)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let outs = parts
            .par_iter()
            .map(|p| self.forward_batch(p, train, want))
            .collect::<Result<Vec<_>>>()?;
        EncoderOutput::concat(outs)
    }

    /// `forward_with` over the whole batch at once.
    fn forward_batch(&self, batch: &Batch, train: bool, want: Want) -> Result<EncoderOutput> {
        let cfg = &self.cfg;
        let p_hidden = cfg.hidden_dropout_prob;
        let e = &self.embeddings;
        let positions = self.position_ids(&batch.input_ids)?;
        let words = match &e.word_int8 {
            Some(q) => q.forward(&batch.input_ids)?,
            None => e.word.forward_ids(&batch.input_ids)?,
        };
        let mut x = words.add(&e.position.forward_ids(&positions)?)?; // [b, s, h]
        if let Some(token_type) = &e.token_type {
            // RoBERTa checkpoints have a single token type: any segment id would index out of range.
            let types = if cfg.type_vocab_size == 1 {
                batch.token_type_ids.zeros_like()?
            } else {
                batch.token_type_ids.clone()
            };
            x = x.add(&token_type.forward_ids(&types)?)?;
        }
        let x = e.norm.forward_t(&x, train)?;
        let mut x = self.dropout.apply(&x, p_hidden, train)?;

        // Additive mask: 0 for tokens, the most negative float for padding, as transformers does.
        let (b, s) = batch.attention_mask.dims2()?;
        let bias = ((1.0 - &batch.attention_mask)? * f32::MIN as f64)?.reshape((b, 1, 1, s))?;
        // MPNet: [1, heads, s, s], the same for every layer.
        let position_bias = self.position_bias(s, batch.input_ids.device())?;
        // Training: each block is one graph node (`fused_layer`) where the kernels allow, unless Q/K/V or
        // the probabilities are wanted.
        let blockwise = train && self.kernels.fused_blocks && !want.qkv && !want.attentions;
        let blocks: Option<Vec<BlockWeights>> = match blockwise {
            true => self.layers.iter().map(Layer::block_weights).collect(),
            false => None,
        };
        // Attention is one fused op (`attention`) where the kernels allow, unless the probabilities are
        // wanted, or MPNet trains outside the blocks (the bare op gives its position bias no gradient).
        let fused = self.kernels.fused_attention
            && !want.attentions
            && !(train && position_bias.is_some() && blocks.is_none());
        let fused_mask = if fused {
            let mask = bias.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            let pb = match &position_bias {
                Some(p) => Some(p.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            Some((mask, pb))
        } else {
            None
        };

        if blocks.is_some() {
            self.grads.check_empty()?;
        }
        let mut blocks = blocks.map(Vec::into_iter);

        let mut hidden_states = Vec::with_capacity(self.layers.len() + 1);
        let mut probs_out = Vec::new();
        let mut qkv_out = Vec::new();
        hidden_states.push(x.clone());
        // Inference on the CPU: blocks with an inference op run as one (`inference_block`).
        let one_op = !train && !want.qkv && !want.attentions && x.dtype() == DType::F32;
        for layer in &self.layers {
            if let (true, Some(block), Some((mask, pb))) = (one_op, &layer.inference, &fused_mask) {
                let attention = FusedAttention {
                    heads: cfg.num_attention_heads,
                    mask: mask.clone(),
                    position_bias: pb.clone(),
                    dropout: None,
                };
                x = block.forward(&x, attention)?;
                hidden_states.push(x.clone());
                continue;
            }
            if let (Some(w), Some((mask, pb))) =
                (blocks.as_mut().and_then(Iterator::next), &fused_mask)
            {
                let attention = FusedAttention {
                    heads: cfg.num_attention_heads,
                    mask: mask.clone(),
                    position_bias: pb.clone(),
                    dropout: self.dropout.op(cfg.attention_probs_dropout_prob, train)?,
                };
                let hidden = [
                    self.dropout.op(p_hidden, train)?,
                    self.dropout.op(p_hidden, train)?,
                ];
                let pb = position_bias.as_ref();
                x = fused_layer::forward(w, &x, pb, attention, hidden, &self.grads)?;
                hidden_states.push(x.clone());
                continue;
            }
            let (y, probs, qkv) = self.layer_forward(
                layer,
                &x,
                &bias,
                position_bias.as_ref(),
                fused_mask.as_ref(),
                train,
            )?;
            if let (true, Some(p)) = (want.attentions, probs) {
                probs_out.push(p);
            }
            if want.qkv {
                let f32 = |t: &Tensor| t.to_dtype(DType::F32);
                qkv_out.push(Qkv {
                    q: f32(&qkv.q)?,
                    k: f32(&qkv.k)?,
                    v: f32(&qkv.v)?,
                });
            }
            hidden_states.push(y.clone());
            x = y;
        }
        Ok(EncoderOutput {
            hidden_states,
            attentions: probs_out,
            qkv: qkv_out,
        })
    }

    /// MPNet's relative-position bias for `s` tokens, [1, heads, s, s] (`None` for other models):
    /// transformers' `compute_position_bias` with `relative_position_bucket` (max distance 128).
    fn position_bias(&self, s: usize, device: &candle_core::Device) -> Result<Option<Tensor>> {
        let (Some(table), Some(n)) = (&self.relative_bias, self.cfg.relative_attention_num_buckets)
        else {
            return Ok(None);
        };
        let buckets = relative_buckets(s, n, 128);
        let idx = Tensor::from_vec(buckets, (s, s), device)?;
        let values = table.forward_ids(&idx)?; // [s, s, heads]
        Ok(Some(values.permute((2, 0, 1))?.unsqueeze(0)?.contiguous()?))
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        l: &Layer,
        x: &Tensor,
        bias: &Tensor,
        position_bias: Option<&Tensor>,
        fused_mask: Option<&(Vec<f32>, Option<Vec<f32>>)>,
        train: bool,
    ) -> Result<(Tensor, Option<Tensor>, Qkv)> {
        let cfg = &self.cfg;
        let (b, s, h) = x.dims3()?;
        let (nh, hd) = (cfg.num_attention_heads, cfg.head_dim());
        let heads = |t: &Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, s, nh, hd))?.transpose(1, 2)?.contiguous()?) // [b, nh, s, hd]
        };
        // The dense layers' inputs in the compute dtype (a no-op in f32); `x` stays the f32 residual.
        let c = self.compute;
        let xc = x.to_dtype(c)?;
        // [b, s, h] each; kept (cheap clones of the same storage) for relation distillation.
        let qkv = Qkv {
            q: apply(&l.query, &xc)?,
            k: apply(&l.key, &xc)?,
            v: apply(&l.value, &xc)?,
        };
        let (ctx, probs) = if let Some((mask, pb)) = fused_mask {
            let op = FusedAttention {
                heads: nh,
                mask: mask.clone(),
                position_bias: pb.clone(),
                dropout: self.dropout.op(cfg.attention_probs_dropout_prob, train)?,
            };
            let (q, k, v) = (
                qkv.q.contiguous()?,
                qkv.k.contiguous()?,
                qkv.v.contiguous()?,
            );
            (q.apply_op3(&k, &v, op)?, None)
        } else {
            let q = heads(&qkv.q)?;
            let k = heads(&qkv.k)?;
            let v = heads(&qkv.v)?;
            let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?; // [b, nh, s, s]
                                                                             // Mask and softmax in f32: the mask's f32::MIN is -inf in bf16 and f16.
            let mut scores = scores.to_dtype(DType::F32)?;
            if let Some(pb) = position_bias {
                scores = scores.broadcast_add(pb)?;
            }
            let scores = scores.broadcast_add(bias)?;
            let probs = softmax_t(&scores, train)?;
            let dropped =
                self.dropout
                    .apply(&probs.to_dtype(c)?, cfg.attention_probs_dropout_prob, train)?;
            let ctx = dropped
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, s, h))?; // [b, s, h]
            (ctx, Some(probs))
        };
        let a = apply(&l.attn_out, &ctx)?;
        let a = self.dropout.apply(&a, cfg.hidden_dropout_prob, train)?;
        let a = l
            .attn_norm
            .forward_t(&(a.to_dtype(DType::F32)? + x)?, train)?;

        let i = activation(&apply(&l.intermediate, &a.to_dtype(c)?)?, cfg.hidden_act)?; // [b, s, ffn]
        let o = apply(&l.output, &i)?;
        let o = self.dropout.apply(&o, cfg.hidden_dropout_prob, train)?;
        let o = l
            .out_norm
            .forward_t(&(o.to_dtype(DType::F32)? + &a)?, train)?;
        Ok((o, probs, qkv))
    }
}

/// The kernels an encoder's forward passes may take, chosen when it is built and when its compute dtype
/// is set (not on every call): the CPU's fused ops in f32, candle's composed ops elsewhere.
#[derive(Debug, Clone, Copy)]
struct Kernels {
    /// Attention as one fused op (`kernels::attention`): on the CPU in f32.
    fused_attention: bool,
    /// Training's blocks as one graph node each (`fused_layer`): on the CPU in f32, for the BERT block
    /// (GELU) it implements.
    fused_blocks: bool,
}

impl Kernels {
    fn choose(cfg: &EncoderConfig, device: &Device, compute: DType) -> Self {
        let cpu_f32 = device.is_cpu() && compute == DType::F32;
        Self {
            fused_attention: cpu_f32,
            fused_blocks: cpu_f32 && cfg.hidden_act == Activation::Gelu,
        }
    }
}

/// T5's relative-position buckets as MPNet computes them (`relative_position_bucket`): for query i and
/// key j, half the buckets for keys before the query and half after; within each half, exact
/// distances below `num_buckets / 4`, then logarithmically wider buckets up to `max_distance`. [s · s]
/// row-major. The logarithm is taken in f64: over every distance up to 300 it gives transformers'
/// buckets exactly (checked against `MPNetEncoder.relative_position_bucket`).
pub fn relative_buckets(s: usize, num_buckets: usize, max_distance: usize) -> Vec<u32> {
    let half = num_buckets / 2;
    let max_exact = half / 2;
    let mut out = Vec::with_capacity(s * s);
    for i in 0..s {
        for j in 0..s {
            // transformers: relative_position = j - i, n = -relative_position.
            let n = i as i64 - j as i64;
            let side = if n < 0 { half } else { 0 };
            let n = n.unsigned_abs() as usize;
            let within = if n < max_exact {
                n
            } else {
                let log = (n as f64 / max_exact as f64).ln()
                    / (max_distance as f64 / max_exact as f64).ln()
                    * (half - max_exact) as f64;
                (max_exact + log as usize).min(half - 1)
            };
            out.push((side + within) as u32);
        }
    }
    out
}

pub(crate) fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    Ok(match act {
        Activation::Gelu if x.device().is_cpu() && x.dtype() == DType::F32 => {
            x.contiguous()?.apply_op1(kernels::ops::Gelu)?
        }
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
    })
}

trait ForwardIds {
    fn forward_ids(&self, ids: &Tensor) -> Result<Tensor>;
}

impl ForwardIds for Embedding {
    fn forward_ids(&self, ids: &Tensor) -> Result<Tensor> {
        use candle_core::Module;
        Ok(self.forward(ids)?)
    }
}

/// First-token ([CLS] / <s>) vectors of a [b, s, h] tensor: [b, h], contiguous. The narrowed rows
/// are `s * h` apart, and candle's CUDA matmul refuses a left-hand side whose row stride is not its
/// width (`MatMulNonContiguous`) once the batch has more than one row; the CPU's takes any stride.
pub fn first_token(x: &Tensor) -> Result<Tensor> {
    Ok(x.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?)
}

/// Mean over real tokens of a [b, s, h] tensor, with a [b, s] f32 mask: [b, h].
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.unsqueeze(D::Minus1)?; // [b, s, 1]
    let sum = x.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1.0, f64::MAX)?;
    Ok(sum.broadcast_div(&count)?)
}
