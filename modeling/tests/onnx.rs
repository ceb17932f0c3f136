//! The ONNX export's graph is well formed, read back with a small protobuf decoder: every node input is
//! a graph input, an initializer or an earlier node's output (ONNX requires topological order), names
//! are unique, every checkpoint tensor is carried, and the int8 form quantizes every dense layer.
//! Numerical parity with transformers runs in onnxruntime: tools/parity/onnx_fixtures.py.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::{HashMap, HashSet};

use candle_core::Device;
use modeling::config::EncoderConfig;
use modeling::testutil::tiny_config;
use modeling::Classifier;

/// Fields of one protobuf message: (field number, varint value or bytes).
fn fields(mut b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= ((byte & 0x7f) as u64) << shift;
            shift += 7;
            if byte < 0x80 {
                return v;
            }
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let value = match key & 7 {
            0 => Ok(varint(&mut b)),
            2 => {
                let n = varint(&mut b) as usize;
                let v = b[..n].to_vec();
                b = &b[n..];
                Err(v)
            }
            5 => {
                let v = u32::from_le_bytes(b[..4].try_into().unwrap()) as u64;
                b = &b[4..];
                Ok(v)
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn strings(msg: &[u8], field: u64) -> Vec<String> {
    fields(msg)
        .into_iter()
        .filter(|(f, _)| *f == field)
        .map(|(_, v)| String::from_utf8(v.unwrap_err()).unwrap())
        .collect()
}

fn submessages(msg: &[u8], field: u64) -> Vec<Vec<u8>> {
    fields(msg)
        .into_iter()
        .filter(|(f, _)| *f == field)
        .map(|(_, v)| v.unwrap_err())
        .collect()
}

struct Parsed {
    ops: Vec<String>,
    initializers: HashMap<String, usize>, // name -> raw bytes
}

fn check_graph(model: &[u8]) -> Parsed {
    let top = fields(model);
    assert!(top.contains(&(1, Ok(8))), "IR version 8");
    let graph = submessages(model, 7).pop().expect("a graph");
    let mut defined: HashSet<String> = HashSet::new();
    let mut initializers = HashMap::new();
    for t in submessages(&graph, 5) {
        let name = strings(&t, 8).pop().unwrap();
        let raw = submessages(&t, 9).pop().unwrap().len();
        assert!(
            initializers.insert(name.clone(), raw).is_none(),
            "duplicate initializer {name}"
        );
        defined.insert(name);
    }
    let inputs: Vec<String> = submessages(&graph, 11)
        .iter()
        .map(|v| strings(v, 1).pop().unwrap())
        .collect();
    defined.extend(inputs.iter().cloned());
    let mut ops = Vec::new();
    for n in submessages(&graph, 1) {
        for i in strings(&n, 1) {
            assert!(
                defined.contains(&i),
                "node input {i} is used before it is defined"
            );
        }
        for o in strings(&n, 2) {
            assert!(defined.insert(o.clone()), "output {o} defined twice");
        }
        ops.push(strings(&n, 4).pop().unwrap());
    }
    let outputs: Vec<String> = submessages(&graph, 12)
        .iter()
        .map(|v| strings(v, 1).pop().unwrap())
        .collect();
    assert_eq!(outputs, ["logits"]);
    assert!(defined.contains("logits"));
    Parsed { ops, initializers }
}

fn model(cfg: &EncoderConfig, labels: usize) -> Classifier {
    Classifier::new(cfg, labels, 3, &Device::Cpu).unwrap()
}

#[test]
fn bert_and_roberta_graphs_are_well_formed_and_carry_every_tensor() {
    let bert = tiny_config();
    let mut roberta = tiny_config();
    roberta.model_type = "roberta".into();
    roberta.type_vocab_size = 1;
    roberta.pad_token_id = 1;
    roberta.max_position_embeddings += 2;
    let mut mpnet = roberta.clone();
    mpnet.model_type = "mpnet".into();
    mpnet.relative_attention_num_buckets = Some(32);
    for (cfg, labels) in [(bert, 3), (roberta, 1), (mpnet, 2)] {
        let m = model(&cfg, labels);
        let p = check_graph(&modeling::onnx::to_onnx(&m, false).unwrap());
        for (name, var) in m.named_vars() {
            // Dense weights are stored transposed, as `NAME_t`.
            let dense = format!("{name}_t");
            let bytes = p
                .initializers
                .get(&name)
                .or_else(|| p.initializers.get(&dense))
                .unwrap_or_else(|| panic!("{name} is not in the graph"));
            assert_eq!(*bytes, 4 * var.elem_count(), "{name}");
        }
        assert!(p.ops.contains(&"LayerNormalization".to_string()));
        assert!(!p.ops.contains(&"MatMulInteger".to_string()));
        if cfg.relative_attention_num_buckets.is_some() {
            // MPNet's buckets come from the sequence length in the graph: logs, a floor, a gather.
            for op in ["Log", "Where", "Min"] {
                assert!(p.ops.contains(&op.to_string()), "mpnet: no {op}");
            }
        }
        let positions = if cfg.type_vocab_size > 1 {
            "Range"
        } else {
            "CumSum"
        };
        assert!(p.ops.contains(&positions.to_string()), "{positions}");
    }
}

#[test]
fn int8_graph_quantizes_every_dense_layer() {
    let cfg = tiny_config();
    let m = model(&cfg, 2);
    let f32_graph = modeling::onnx::to_onnx(&m, false).unwrap();
    let int8_graph = modeling::onnx::to_onnx(&m, true).unwrap();
    let p = check_graph(&int8_graph);
    // Six per block, pooler and classifier.
    let dense = 6 * cfg.num_hidden_layers + 2;
    let count = |op: &str| p.ops.iter().filter(|o| *o == op).count();
    assert_eq!(count("MatMulInteger"), dense);
    assert_eq!(count("DynamicQuantizeLinear"), dense);
    assert!(p.initializers.keys().all(|k| !k.ends_with(".weight_t")));
    assert!(p
        .initializers
        .contains_key("bert.embeddings.word_embeddings.weight_int8"));
    assert!(!p
        .initializers
        .contains_key("bert.embeddings.word_embeddings.weight"));
    assert!(int8_graph.len() < f32_graph.len());
}
