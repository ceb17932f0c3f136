//! ONNX export of a BERT/RoBERTa/MPNet sequence classifier: the same computation as `crate::encoder`
//! and `crate::head` (transformers' eager BERT/RoBERTa/MPNet), as an opset-17 graph with dynamic batch
//! and sequence axes. MPNet's relative-position buckets are computed in the graph from the sequence
//! length, so no table of positions is stored. Inputs `input_ids`, `attention_mask` (and `token_type_ids` when the model has more
//! than one segment type), all int64 [batch, sequence]; output `logits` [batch, num_labels], or for a
//! sentence-embedding model (`sentence_to_onnx`) `sentence_embedding` [batch, dimensions].
//!
//! With `int8`, every dense layer of the blocks and the head becomes onnxruntime's dynamic quantization
//! pattern (`DynamicQuantizeLinear` → `MatMulInteger` → rescale): int8 weights with one scale per output
//! channel, uint8 activations with a per-tensor scale and zero point computed at run time; the word
//! embeddings become an int8 table with one scale per row. Position and type embeddings and LayerNorms
//! stay f32, as in `Classifier::quantize_int8`.

use std::collections::{HashMap, HashSet};

use crate::config::Activation;
use crate::infer::Pooling;
use crate::sentence::{SentenceEncoder, SentenceModules};
use crate::{Classifier, EncoderConfig, ModelKind};
use candle_core::{DType, Device, Tensor};

use crate::onnx_proto::{self as pb, Attr, DataType, Dim, Msg};
use crate::{Error, Result};

const OPSET: i64 = 17;

/// Serialises `model` as an ONNX `ModelProto`.
pub fn to_onnx(model: &Classifier, int8: bool) -> Result<Vec<u8>> {
    let cfg = &model.config;
    let mut g = Graph::new(model.named_vars(), int8);
    let x = g.encoder(cfg)?;
    let p = cfg.kind().prefix();
    // Head on the first token.
    let first = g.const_i64("first", &[], &[0])?;
    let cls = g.op("Gather", &[&x, &first], &[Attr::Int("axis", 1)])?; // [b, h]
    let (dense, out) = match cfg.kind() {
        ModelKind::Bert => (format!("{p}.pooler.dense"), "classifier".to_string()),
        ModelKind::Roberta | ModelKind::Mpnet => {
            ("classifier.dense".into(), "classifier.out_proj".into())
        }
    };
    let pooled = g.dense(&cls, &dense)?;
    let pooled = g.op("Tanh", &[&pooled], &[])?;
    let logits = g.dense(&pooled, &out)?;

    g.finish(
        cfg,
        "distill_classifier",
        &logits,
        "logits",
        model.num_labels,
    )
}

/// Serialises a sentence-embedding model as an ONNX `ModelProto`: the encoder, its pooling (the first
/// token, or the mean over real tokens as sentence-transformers computes it), the Dense layer and the
/// normalisation of its modules; output `sentence_embedding` [batch, dimensions], what `distill embed`
/// prints.
pub fn sentence_to_onnx(model: &SentenceEncoder, int8: bool) -> Result<Vec<u8>> {
    let cfg = &model.model.config;
    let mut vars = model.model.named_vars();
    vars.extend(
        model
            .named_vars()
            .into_iter()
            .filter(|(k, _)| k.starts_with("dense.")),
    );
    let mut g = Graph::new(vars, int8);
    let x = g.encoder(cfg)?;
    let mut e = match model.modules.pooling {
        Pooling::Cls => {
            let first = g.const_i64("first", &[], &[0])?;
            g.op("Gather", &[&x, &first], &[Attr::Int("axis", 1)])?
        }
        Pooling::Mean => {
            // sum(x * mask) / max(sum(mask), 1e-9) over the sequence (sentence-transformers' Pooling).
            let mask = g.op(
                "Cast",
                &["attention_mask"],
                &[Attr::Int("to", DataType::Float as i64)],
            )?;
            let last = g.const_i64("axis_last", &[1], &[-1])?;
            let mask = g.op("Unsqueeze", &[&mask, &last], &[])?; // [b, s, 1]
            let masked = g.op("Mul", &[&x, &mask], &[])?;
            let seq = g.const_i64("axis_seq", &[1], &[1])?;
            let sum = g.op("ReduceSum", &[&masked, &seq], &[Attr::Int("keepdims", 0)])?;
            let count = g.op("ReduceSum", &[&mask, &seq], &[Attr::Int("keepdims", 0)])?;
            let tiny = g.const_f32("count_min", &[], &[1e-9])?;
            let count = g.op("Max", &[&count, &tiny], &[])?;
            g.op("Div", &[&sum, &count], &[])?
        }
    };
    if model.dense.is_some() {
        e = g.dense(&e, "dense.linear")?;
    }
    if model.modules.normalize {
        let norm = g.op(
            "ReduceL2",
            &[&e],
            &[Attr::Ints("axes", &[-1]), Attr::Int("keepdims", 1)],
        )?;
        let eps = g.const_f32("norm_min", &[], &[1e-12])?;
        let norm = g.op("Max", &[&norm, &eps], &[])?;
        e = g.op("Div", &[&e, &norm], &[])?;
    }
    g.finish(
        cfg,
        "distill_sentence_embedding",
        &e,
        "sentence_embedding",
        model.dim(),
    )
}

impl Graph {
    fn new(vars: Vec<(String, candle_core::Var)>, int8: bool) -> Self {
        Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            count: 0,
            weights: vars
                .into_iter()
                .map(|(k, v)| (k, v.as_tensor().clone()))
                .collect(),
            names: HashSet::new(),
            int8,
        }
    }

    /// The encoder on the graph inputs: the last hidden states [b, s, h].
    fn encoder(&mut self, cfg: &EncoderConfig) -> Result<String> {
        let g = self;
        let p = cfg.kind().prefix();
        let (h, nh) = (cfg.hidden_size, cfg.num_attention_heads);
        let hd = cfg.head_dim();
        let with_types = cfg.has_token_types() && cfg.type_vocab_size > 1;
        let mpnet = cfg.kind() == ModelKind::Mpnet;

        // Embeddings: words + positions + segment types, then LayerNorm.
        let pos_emb = g.weight(&format!("{p}.embeddings.position_embeddings.weight"))?;
        let words = g.word_embeddings(&format!("{p}.embeddings.word_embeddings.weight"))?;
        let positions = match cfg.kind() {
            ModelKind::Bert => {
                let shape = g.op("Shape", &["input_ids"], &[])?;
                let one = g.const_i64("one", &[], &[1])?;
                let zero = g.const_i64("zero", &[], &[0])?;
                let seq = g.op("Gather", &[&shape, &one], &[])?;
                g.op("Range", &[&zero, &seq, &one], &[])?
            }
            // transformers' create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + pad.
            ModelKind::Roberta | ModelKind::Mpnet => {
                let pad = g.const_i64("pad", &[], &[cfg.position_padding_id() as i64])?;
                let axis = g.const_i64("axis1", &[], &[1])?;
                let is_pad = g.op("Equal", &["input_ids", &pad], &[])?;
                let real = g.op("Not", &[&is_pad], &[])?;
                let real = g.op("Cast", &[&real], &[Attr::Int("to", DataType::Int64 as i64)])?;
                let count = g.op("CumSum", &[&real, &axis], &[])?;
                let count = g.op("Mul", &[&count, &real], &[])?;
                g.op("Add", &[&count, &pad], &[])?
            }
        };
        let pos = g.op("Gather", &[&pos_emb, &positions], &[])?;
        let mut x = g.op("Add", &[&words, &pos], &[])?;
        if cfg.has_token_types() {
            let type_emb = g.weight(&format!("{p}.embeddings.token_type_embeddings.weight"))?;
            let types = if with_types {
                g.op("Gather", &[&type_emb, "token_type_ids"], &[])?
            } else {
                // One segment type: every token adds its row 0.
                let zero = g.const_i64("type0", &[], &[0])?;
                g.op("Gather", &[&type_emb, &zero], &[])?
            };
            x = g.op("Add", &[&x, &types], &[])?;
        }
        let mut x = g.layer_norm(&x, &format!("{p}.embeddings.LayerNorm"), cfg.layer_norm_eps)?;

        // Additive attention mask [b, 1, 1, s]: 0 for tokens, the most negative float for padding.
        let mask = g.op(
            "Cast",
            &["attention_mask"],
            &[Attr::Int("to", DataType::Float as i64)],
        )?;
        let one = g.const_f32("one_f", &[], &[1.0])?;
        let min = g.const_f32("f32_min", &[], &[f32::MIN])?;
        let inv = g.op("Sub", &[&one, &mask], &[])?;
        let bias = g.op("Mul", &[&inv, &min], &[])?;
        let axes = g.const_i64("axes12", &[2], &[1, 2])?;
        let bias = g.op("Unsqueeze", &[&bias, &axes], &[])?;

        let position_bias = match cfg.relative_attention_num_buckets {
            Some(n) if mpnet => {
                Some(g.position_bias(&format!("{p}.encoder.relative_attention_bias.weight"), n)?)
            }
            _ => None,
        };

        let split = g.const_i64("split_heads", &[4], &[0, 0, nh as i64, hd as i64])?;
        let merge = g.const_i64("merge_heads", &[3], &[0, 0, h as i64])?;
        let scale = g.const_f32("scale", &[], &[1.0 / (hd as f32).sqrt()])?;
        for i in 0..cfg.num_hidden_layers {
            let l = format!("{p}.encoder.layer.{i}");
            // MPNet names its projections `attention.attn.{q,k,v,o}`, its norm `attention.LayerNorm`.
            let (qn, kn, vn, on, ln) = if mpnet {
                let a = format!("{l}.attention.attn");
                (
                    format!("{a}.q"),
                    format!("{a}.k"),
                    format!("{a}.v"),
                    format!("{a}.o"),
                    format!("{l}.attention.LayerNorm"),
                )
            } else {
                let a = format!("{l}.attention");
                (
                    format!("{a}.self.query"),
                    format!("{a}.self.key"),
                    format!("{a}.self.value"),
                    format!("{a}.output.dense"),
                    format!("{a}.output.LayerNorm"),
                )
            };
            let heads = |g: &mut Graph, name: &str, perm: &[i64]| -> Result<String> {
                let t = g.dense(&x, name)?;
                let t = g.op("Reshape", &[&t, &split], &[])?;
                g.op("Transpose", &[&t], &[Attr::Ints("perm", perm)])
            };
            let q = heads(g, &qn, &[0, 2, 1, 3])?; // [b, nh, s, hd]
            let k = heads(g, &kn, &[0, 2, 3, 1])?; // [b, nh, hd, s]
            let v = heads(g, &vn, &[0, 2, 1, 3])?; // [b, nh, s, hd]
            let scores = g.op("MatMul", &[&q, &k], &[])?;
            let mut scores = g.op("Mul", &[&scores, &scale], &[])?;
            if let Some(pb) = &position_bias {
                scores = g.op("Add", &[&scores, pb], &[])?;
            }
            let scores = g.op("Add", &[&scores, &bias], &[])?;
            let probs = g.op("Softmax", &[&scores], &[Attr::Int("axis", -1)])?;
            let ctx = g.op("MatMul", &[&probs, &v], &[])?;
            let ctx = g.op("Transpose", &[&ctx], &[Attr::Ints("perm", &[0, 2, 1, 3])])?;
            let ctx = g.op("Reshape", &[&ctx, &merge], &[])?; // [b, s, h]
            let a = g.dense(&ctx, &on)?;
            let a = g.op("Add", &[&a, &x], &[])?;
            let a = g.layer_norm(&a, &ln, cfg.layer_norm_eps)?;
            let f = g.dense(&a, &format!("{l}.intermediate.dense"))?;
            let f = g.activation(&f, cfg.hidden_act)?;
            let o = g.dense(&f, &format!("{l}.output.dense"))?;
            let o = g.op("Add", &[&o, &a], &[])?;
            x = g.layer_norm(&o, &format!("{l}.output.LayerNorm"), cfg.layer_norm_eps)?;
        }
        Ok(x)
    }

    /// Names `out` the graph's output `name` [batch, width], declares the inputs, and serialises.
    fn finish(
        mut self,
        cfg: &EncoderConfig,
        graph_name: &str,
        out: &str,
        name: &str,
        width: usize,
    ) -> Result<Vec<u8>> {
        self.nodes
            .push(pb::node("Identity", name, &[out], &[name], &[]));
        let with_types = cfg.has_token_types() && cfg.type_vocab_size > 1;
        let ids = [Dim::Named("batch"), Dim::Named("sequence")];
        let mut graph = Msg::default();
        for n in self.nodes {
            graph = graph.msg(1, n);
        }
        graph = graph.str(2, graph_name);
        for t in self.inits {
            graph = graph.msg(5, t);
        }
        let mut inputs = vec!["input_ids", "attention_mask"];
        if with_types {
            inputs.push("token_type_ids");
        }
        for input in inputs {
            graph = graph.msg(11, pb::value_info(input, DataType::Int64, &ids));
        }
        graph = graph.msg(
            12,
            pb::value_info(
                name,
                DataType::Float,
                &[Dim::Named("batch"), Dim::Fixed(width)],
            ),
        );
        Ok(pb::model(graph, OPSET))
    }
}

struct Graph {
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    count: usize,
    weights: HashMap<String, Tensor>,
    names: HashSet<String>,
    int8: bool,
}

impl Graph {
    fn fresh(&mut self, op: &str) -> String {
        self.count += 1;
        format!("{op}_{}", self.count)
    }

    /// A node with one output; returns the output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> Result<String> {
        let out = self.fresh(op);
        self.nodes.push(pb::node(op, &out, inputs, &[&out], attrs));
        Ok(out)
    }

    /// Adds an initializer once: shared constants (`one_f`, `half`, ...) are asked for by every layer.
    fn init(&mut self, name: &str, dims: &[usize], dtype: DataType, raw: Vec<u8>) -> String {
        if self.names.insert(name.to_string()) {
            self.inits.push(pb::tensor(name, dims, dtype, &raw));
        }
        name.to_string()
    }

    /// MPNet's relative-position bias [1, heads, s, s] for the input's length: the buckets of
    /// `encoder::relative_buckets` (max distance 128) computed from `Range`, gathered from `table`
    /// [buckets, heads].
    fn position_bias(&mut self, table: &str, num_buckets: usize) -> Result<String> {
        let half = num_buckets as i64 / 2;
        let exact = half / 2;
        let table = self.weight(table)?;
        let shape = self.op("Shape", &["input_ids"], &[])?;
        let one = self.const_i64("one", &[], &[1])?;
        let zero = self.const_i64("zero", &[], &[0])?;
        let seq = self.op("Gather", &[&shape, &one], &[])?;
        let r = self.op("Range", &[&zero, &seq, &one], &[])?; // [s]
        let ax1 = self.const_i64("axis_1", &[1], &[1])?;
        let ax0 = self.const_i64("axis_0", &[1], &[0])?;
        let rows = self.op("Unsqueeze", &[&r, &ax1], &[])?; // [s, 1]
        let cols = self.op("Unsqueeze", &[&r, &ax0], &[])?; // [1, s]
        let n = self.op("Sub", &[&rows, &cols], &[])?; // i - j
        let zero_i = self.const_i64("zero_i", &[], &[0])?;
        let after = self.op("Less", &[&n, &zero_i], &[])?;
        let after = self.op(
            "Cast",
            &[&after],
            &[Attr::Int("to", DataType::Int64 as i64)],
        )?;
        let half_c = self.const_i64("rel_half", &[], &[half])?;
        let side = self.op("Mul", &[&after, &half_c], &[])?;
        let a = self.op("Abs", &[&n], &[])?;
        let exact_c = self.const_i64("rel_exact", &[], &[exact])?;
        let small = self.op("Less", &[&a, &exact_c], &[])?;
        // The log bucket, on distances floored at `exact` so the log never sees 0.
        let af = self.op("Cast", &[&a], &[Attr::Int("to", DataType::Float as i64)])?;
        let exact_f = self.const_f32("rel_exact_f", &[], &[exact as f32])?;
        let af = self.op("Max", &[&af, &exact_f], &[])?;
        let ratio = self.op("Div", &[&af, &exact_f], &[])?;
        let log = self.op("Log", &[&ratio], &[])?;
        // As transformers: log(n / exact) / log(max_distance / exact) * (half - exact), in f32.
        let span = self.const_f32("rel_log_span", &[], &[(128.0 / exact as f64).ln() as f32])?;
        let log = self.op("Div", &[&log, &span], &[])?;
        let width = self.const_f32("rel_width", &[], &[(half - exact) as f32])?;
        let log = self.op("Mul", &[&log, &width], &[])?;
        let log = self.op("Cast", &[&log], &[Attr::Int("to", DataType::Int64 as i64)])?;
        let large = self.op("Add", &[&log, &exact_c], &[])?;
        let top = self.const_i64("rel_top", &[], &[half - 1])?;
        let large = self.op("Min", &[&large, &top], &[])?;
        let within = self.op("Where", &[&small, &a, &large], &[])?;
        let bucket = self.op("Add", &[&side, &within], &[])?; // [s, s]
        let values = self.op("Gather", &[&table, &bucket], &[])?; // [s, s, heads]
        let values = self.op("Transpose", &[&values], &[Attr::Ints("perm", &[2, 0, 1])])?;
        self.op("Unsqueeze", &[&values, &ax0], &[])
    }

    fn const_i64(&mut self, name: &str, dims: &[usize], v: &[i64]) -> Result<String> {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Ok(self.init(name, dims, DataType::Int64, raw))
    }

    fn const_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> Result<String> {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Ok(self.init(name, dims, DataType::Float, raw))
    }

    fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = self
            .weights
            .get(name)
            .ok_or_else(|| Error::Msg(format!("ONNX export: the model has no tensor {name}")))?;
        Ok(t.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
    }

    /// A checkpoint tensor as an f32 initializer under its own name.
    fn weight(&mut self, name: &str) -> Result<String> {
        let t = self.tensor(name)?;
        let dims = t.dims().to_vec();
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        self.const_f32(name, &dims, &v)
    }

    /// Word vectors [b, s, h] of `input_ids`; with int8 an int8 table with one scale per row, as
    /// `kernels::quant::QEmbedding`.
    fn word_embeddings(&mut self, name: &str) -> Result<String> {
        if !self.int8 {
            let table = self.weight(name)?;
            return self.op("Gather", &[&table, "input_ids"], &[]);
        }
        let t = self.tensor(name)?;
        let (rows, dim) = t.dims2()?;
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        let mut q = Vec::with_capacity(v.len());
        let mut scale = Vec::with_capacity(rows);
        for row in v.chunks(dim.max(1)) {
            let max = row.iter().fold(0f32, |m, x| m.max(x.abs()));
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            q.extend(
                row.iter()
                    .map(|x| (x / s).round().clamp(-127.0, 127.0) as i8 as u8),
            );
            scale.push(s);
        }
        let table = self.init(&format!("{name}_int8"), &[rows, dim], DataType::Int8, q);
        let scales = self.const_f32(&format!("{name}_scale"), &[rows, 1], &scale)?;
        let w = self.op("Gather", &[&table, "input_ids"], &[])?;
        let w = self.op("Cast", &[&w], &[Attr::Int("to", DataType::Float as i64)])?;
        let s = self.op("Gather", &[&scales, "input_ids"], &[])?; // [b, s, 1]
        self.op("Mul", &[&w, &s], &[])
    }

    fn layer_norm(&mut self, x: &str, prefix: &str, eps: f64) -> Result<String> {
        let gamma = self.weight(&format!("{prefix}.weight"))?;
        let beta = self.weight(&format!("{prefix}.bias"))?;
        self.op(
            "LayerNormalization",
            &[x, &gamma, &beta],
            &[Attr::Int("axis", -1), Attr::Float("epsilon", eps as f32)],
        )
    }

    /// `x W^T + b` for the HF dense layer `prefix` (weight [out, in]), in f32 or dynamic int8.
    fn dense(&mut self, x: &str, prefix: &str) -> Result<String> {
        let w = self.tensor(&format!("{prefix}.weight"))?; // [out, in]
        let (n, k) = w.dims2()?;
        let bias = self.weight(&format!("{prefix}.bias"))?;
        let wt: Vec<f32> = w.t()?.contiguous()?.flatten_all()?.to_vec1()?; // [in, out]
        let y = if self.int8 {
            // Symmetric per-output-channel weights, as `kernels::quant`.
            let mut scale = vec![0f32; n];
            for (o, s) in scale.iter_mut().enumerate() {
                let max = (0..k).fold(0f32, |m, i| m.max(wt[i * n + o].abs()));
                *s = if max > 0.0 { max / 127.0 } else { 1.0 };
            }
            let q: Vec<u8> = wt
                .iter()
                .enumerate()
                .map(|(j, v)| (v / scale[j % n]).round().clamp(-127.0, 127.0) as i8 as u8)
                .collect();
            let wq = self.init(&format!("{prefix}.weight_int8"), &[k, n], DataType::Int8, q);
            let ws = self.const_f32(&format!("{prefix}.weight_scale"), &[n], &scale)?;
            let xq = self.fresh("xq");
            let xs = self.fresh("xs");
            let xz = self.fresh("xz");
            let name = self.fresh("DynamicQuantizeLinear");
            self.nodes.push(pb::node(
                "DynamicQuantizeLinear",
                &name,
                &[x],
                &[&xq, &xs, &xz],
                &[],
            ));
            let acc = self.op("MatMulInteger", &[&xq, &wq, &xz], &[])?;
            let acc = self.op("Cast", &[&acc], &[Attr::Int("to", DataType::Float as i64)])?;
            let s = self.op("Mul", &[&xs, &ws], &[])?;
            self.op("Mul", &[&acc, &s], &[])?
        } else {
            let wt = self.const_f32(&format!("{prefix}.weight_t"), &[k, n], &wt)?;
            self.op("MatMul", &[x, &wt], &[])?
        };
        self.op("Add", &[&y, &bias], &[])
    }

    fn activation(&mut self, x: &str, act: Activation) -> Result<String> {
        match act {
            // 0.5 x (1 + erf(x / sqrt 2))
            Activation::Gelu => {
                let sqrt2 = self.const_f32("sqrt2", &[], &[std::f32::consts::SQRT_2])?;
                let one = self.const_f32("one_f", &[], &[1.0])?;
                let half = self.const_f32("half", &[], &[0.5])?;
                let t = self.op("Div", &[x, &sqrt2], &[])?;
                let t = self.op("Erf", &[&t], &[])?;
                let t = self.op("Add", &[&t, &one], &[])?;
                let t = self.op("Mul", &[x, &t], &[])?;
                self.op("Mul", &[&t, &half], &[])
            }
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
            Activation::GeluTanh => {
                let c = self.const_f32("gelu_c", &[], &[0.797_884_6])?;
                let a = self.const_f32("gelu_a", &[], &[0.044715])?;
                let one = self.const_f32("one_f", &[], &[1.0])?;
                let half = self.const_f32("half", &[], &[0.5])?;
                let x2 = self.op("Mul", &[x, x], &[])?;
                let x3 = self.op("Mul", &[&x2, x], &[])?;
                let t = self.op("Mul", &[&x3, &a], &[])?;
                let t = self.op("Add", &[x, &t], &[])?;
                let t = self.op("Mul", &[&t, &c], &[])?;
                let t = self.op("Tanh", &[&t], &[])?;
                let t = self.op("Add", &[&t, &one], &[])?;
                let t = self.op("Mul", &[x, &t], &[])?;
                self.op("Mul", &[&t, &half], &[])
            }
            Activation::Relu => self.op("Relu", &[x], &[]),
        }
    }
}

/// Loads the classifier in `model_dir` (an export or a checkpoint folder), or the sentence-embedding
/// model of a sentence-transformers folder, and writes it to `out`.
pub fn write(model_dir: &std::path::Path, out: &std::path::Path, int8: bool) -> Result<()> {
    let files = crate::ModelSource::Local(model_dir.to_path_buf()).resolve(false)?;
    if let Some(modules) = SentenceModules::read(model_dir)? {
        let model = SentenceEncoder::load(&files, model_dir, modules, &Device::Cpu)?;
        let bytes = sentence_to_onnx(&model, int8)?;
        return crate::write_atomic(out, &bytes)
            .map_err(|e| Error::file(out, format!("cannot write the ONNX graph: {e}")));
    }
    let (model, report) = Classifier::load(&files, None, 0, &Device::Cpu)?;
    if !report.has_head {
        return Err(Error::file(
            model_dir,
            "the model has no classification head to export",
        ));
    }
    let bytes = to_onnx(&model, int8)?;
    crate::write_atomic(out, &bytes)
        .map_err(|e| Error::file(out, format!("cannot write the ONNX graph: {e}")))
}
