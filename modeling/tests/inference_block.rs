//! The encoder block as one inference op (`pack(F32)`, `quantize_int8`) against the composed block,
//! which returning Q/K/V forces: bit for bit in int8 and f32 (the same kernels), and f32 against the
//! unpacked model; BERT, RoBERTa and MPNet (its relative-position bias), on a padded batch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::Path;

use candle_core::{Device, Tensor};
use modeling::batch::make_batch;
use modeling::testutil::{max_abs_diff, tiny_checkpoint, tiny_config, tiny_roberta_config};
use modeling::{Classifier, ModelSource, TextTokenizer};

fn mpnet_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/mpnet_cls")
}

/// The classifier of each layout, and a padded batch of two texts with capitals and accents.
fn models() -> Vec<(&'static str, Classifier, modeling::Batch)> {
    let texts = ["The café was GREAT !", "Dull, très dull."];
    let mut out = Vec::new();
    for kind in ["bert", "roberta"] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = match kind {
            "roberta" => tiny_roberta_config(),
            _ => tiny_config(),
        };
        // Weights large enough for activations of order 1, where differences would show.
        cfg.initializer_range = 0.2;
        tiny_checkpoint(dir.path(), &cfg, Some(3), 5).unwrap();
        let files = ModelSource::Local(dir.path().into())
            .resolve(false)
            .unwrap();
        let (model, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
        let tok = TextTokenizer::from_file(&dir.path().join("vocab.txt"), 32, false).unwrap();
        out.push((kind, model, batch(&tok, &texts)));
    }
    let files = ModelSource::Local(mpnet_fixture()).resolve(false).unwrap();
    let (model, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    let tok = TextTokenizer::from_file(&mpnet_fixture().join("tokenizer.json"), 64, false).unwrap();
    out.push(("mpnet", model, batch(&tok, &texts)));
    out
}

fn batch(tok: &TextTokenizer, texts: &[&str]) -> modeling::Batch {
    let enc: Vec<_> = texts.iter().map(|t| tok.encode(t, None).unwrap()).collect();
    let refs: Vec<_> = enc.iter().collect();
    make_batch(&refs, tok.pad_id(), &Device::Cpu).unwrap()
}

/// Logits and every hidden state of the one-op path and of the composed path (with the same fused
/// attention), which asking for Q/K/V forces.
fn both_paths(m: &Classifier, b: &modeling::Batch) -> [(Tensor, Vec<Tensor>); 2] {
    [false, true].map(|qkv| {
        let want = modeling::Want {
            attentions: false,
            qkv,
        };
        let (logits, out) = m.forward_with(b, false, want).unwrap();
        assert_eq!(out.qkv.is_empty(), !qkv);
        (logits, out.hidden_states)
    })
}

#[test]
fn int8_blocks_are_bit_identical_to_the_composed_blocks() {
    for (kind, mut m, b) in models() {
        m.quantize_int8().unwrap();
        assert_eq!(
            m.encoder.inference_blocks(),
            m.encoder.config().num_hidden_layers
        );
        let [(l1, h1), (l2, h2)] = both_paths(&m, &b);
        assert_eq!(max_abs_diff(&l1, &l2).unwrap(), 0.0, "{kind}");
        for (a, c) in h1.iter().zip(&h2) {
            assert_eq!(max_abs_diff(a, c).unwrap(), 0.0, "{kind}");
        }
    }
}

#[test]
fn packed_f32_blocks_match_the_unpacked_model() {
    for (kind, plain, b) in models() {
        let mut m = plain.clone();
        m.pack(modeling::Packing::F32).unwrap();
        assert_eq!(
            m.encoder.inference_blocks(),
            m.encoder.config().num_hidden_layers
        );
        let (want, want_out) = plain.forward(&b, false, false).unwrap();
        let [(l1, h1), (l2, h2)] = both_paths(&m, &b);
        assert_eq!(max_abs_diff(&l1, &l2).unwrap(), 0.0, "{kind}");
        for (a, c) in h1.iter().zip(&h2) {
            assert_eq!(max_abs_diff(a, c).unwrap(), 0.0, "{kind}");
        }
        assert!(max_abs_diff(&l1, &want).unwrap() < 1e-5, "{kind}");
        for (a, c) in h1.iter().zip(&want_out.hidden_states) {
            assert!(max_abs_diff(a, c).unwrap() < 1e-5, "{kind}");
        }
    }
}

#[test]
fn other_activations_keep_the_composed_blocks() {
    let mut cfg = tiny_config();
    cfg.hidden_act = modeling::config::Activation::Relu;
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &cfg, Some(3), 5).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let (mut relu, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    relu.pack(modeling::Packing::F32).unwrap();
    assert_eq!(relu.encoder.inference_blocks(), 0);
    relu.quantize_int8().unwrap();
    assert_eq!(relu.encoder.inference_blocks(), 0);
}

/// A batch of at least two sequences a thread runs as one part a thread: the same answers, bit for
/// bit, as one thread running the whole batch (int8 and packed f32, with Q/K/V asked for as well).
#[test]
fn a_batch_split_across_threads_answers_as_one() {
    let texts = [
        "The café was GREAT !",
        "Dull, très dull.",
        "東京 is big",
        "a",
        "An ending nobody saw coming, twice.",
    ];
    for (kind, plain, _) in models() {
        let dir = tempfile::tempdir().unwrap();
        let tok = if kind == "mpnet" {
            TextTokenizer::from_file(&mpnet_fixture().join("tokenizer.json"), 64, false).unwrap()
        } else {
            modeling::testutil::write_vocab(&dir.path().join("vocab.txt")).unwrap();
            TextTokenizer::from_file(&dir.path().join("vocab.txt"), 32, false).unwrap()
        };
        let b = batch(&tok, &texts);
        let mut int8 = plain.clone();
        int8.quantize_int8().unwrap();
        let mut packed = plain.clone();
        packed.pack(modeling::Packing::F32).unwrap();
        for m in [&int8, &packed] {
            let run = |threads: usize, qkv: bool| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let want = modeling::Want {
                    attentions: false,
                    qkv,
                };
                pool.install(|| m.forward_with(&b, false, want).unwrap())
            };
            for qkv in [false, true] {
                let ((l1, o1), (l2, o2)) = (run(1, qkv), run(2, qkv));
                assert_eq!(max_abs_diff(&l1, &l2).unwrap(), 0.0, "{kind}");
                assert_eq!(o1.hidden_states.len(), o2.hidden_states.len());
                for (a, c) in o1.hidden_states.iter().zip(&o2.hidden_states) {
                    assert_eq!(max_abs_diff(a, c).unwrap(), 0.0, "{kind}");
                }
                assert_eq!(o1.qkv.len(), o2.qkv.len());
                for (a, c) in o1.qkv.iter().zip(&o2.qkv) {
                    assert_eq!(max_abs_diff(&a.v, &c.v).unwrap(), 0.0, "{kind}");
                }
            }
        }
    }
}
