//! The masked LM on tiny random models: save -> load gives the same logits (BERT and RoBERTa layouts),
//! a bare encoder gets a fresh seeded head, every tensor trains and the loss falls, and a masked-LM folder
//! starts a classifier (encoder loaded, MLM head ignored, classification head fresh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer;
use data::corpus::{BuildOptions, Masker, MaskingConfig, MlmDataset, TokenCache};
use modeling::testutil::{self, max_abs_diff};
use modeling::{Batch, Classifier, EncoderConfig, MaskedLm, ModelSource, TextTokenizer};

fn roberta_config() -> EncoderConfig {
    let mut c = testutil::tiny_config();
    c.model_type = "roberta".into();
    c.pad_token_id = 0;
    c.type_vocab_size = 1;
    c.layer_norm_eps = 1e-5;
    c
}

fn some_batch() -> Batch {
    let ids = Tensor::new(
        &[[2u32, 120, 121, 4, 130, 3], [2, 140, 4, 3, 0, 0]],
        &Device::Cpu,
    )
    .unwrap();
    Batch {
        token_type_ids: ids.zeros_like().unwrap(),
        attention_mask: ids
            .ne(0u32)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap(),
        input_ids: ids,
    }
}

fn resolve(dir: &std::path::Path) -> modeling::ModelFiles {
    ModelSource::Local(dir.to_path_buf())
        .resolve(false)
        .unwrap()
}

#[test]
fn save_then_load_gives_the_same_logits() {
    for cfg in [testutil::tiny_config(), roberta_config()] {
        let tmp = tempfile::tempdir().unwrap();
        let m = MaskedLm::new(&cfg, 3, &Device::Cpu).unwrap();
        m.save(tmp.path()).unwrap();
        testutil::write_vocab(&tmp.path().join("vocab.txt")).unwrap();
        let (back, report) = MaskedLm::load(&resolve(tmp.path()), 99, &Device::Cpu).unwrap();
        assert!(report.has_head && report.unused.is_empty(), "{report:?}");
        let b = some_batch();
        let (a, z) = (
            m.forward(&b, false).unwrap(),
            back.forward(&b, false).unwrap(),
        );
        assert_eq!(a.dims(), &[2, 6, cfg.vocab_size]);
        assert_eq!(max_abs_diff(&a, &z).unwrap(), 0.0, "{}", cfg.model_type);
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tmp.path().join("config.json")).unwrap())
                .unwrap();
        let arch = if cfg.model_type == "bert" {
            "BertForMaskedLM"
        } else {
            "RobertaForMaskedLM"
        };
        assert_eq!(config["architectures"][0], arch);
        // The tied decoder is not stored twice.
        let stored =
            candle_core::safetensors::load(tmp.path().join("model.safetensors"), &Device::Cpu)
                .unwrap();
        assert!(
            stored.keys().all(|k| !k.contains("decoder")),
            "{:?}",
            stored.keys()
        );
    }
}

#[test]
fn a_bare_encoder_gets_a_fresh_seeded_head() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = testutil::tiny_config();
    testutil::tiny_checkpoint(tmp.path(), &cfg, None, 1).unwrap();
    let files = resolve(tmp.path());
    let (a, report) = MaskedLm::load(&files, 5, &Device::Cpu).unwrap();
    assert!(!report.has_head);
    assert!(
        report.unused.iter().all(|k| k.contains("pooler")),
        "{:?}",
        report.unused
    );
    let (b, _) = MaskedLm::load(&files, 5, &Device::Cpu).unwrap();
    let (c, _) = MaskedLm::load(&files, 6, &Device::Cpu).unwrap();
    let x = some_batch();
    let (la, lb, lc) = (
        a.forward(&x, false).unwrap(),
        b.forward(&x, false).unwrap(),
        c.forward(&x, false).unwrap(),
    );
    assert_eq!(max_abs_diff(&la, &lb).unwrap(), 0.0);
    assert!(max_abs_diff(&la, &lc).unwrap() > 0.0);
    // The encoder is the checkpoint's whatever the seed.
    let enc = |m: &MaskedLm| m.encoder.forward(&x, false, false).unwrap().hidden_states[2].clone();
    assert_eq!(max_abs_diff(&enc(&a), &enc(&c)).unwrap(), 0.0);
}

#[test]
fn every_tensor_trains_and_the_loss_falls() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = tmp.path().join("vocab.txt");
    testutil::write_vocab(&vocab).unwrap();
    let tok = TextTokenizer::from_file(&vocab, 512, false).unwrap();
    let corpus = tmp.path().join("corpus.txt");
    let lines: Vec<String> = (0..40)
        .map(|k| testutil::sentence(k).0 + if k % 5 == 4 { "\n" } else { "" })
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let opts = BuildOptions {
        lines_per_chunk: 16,
        progress: false,
    };
    let cache = Arc::new(TokenCache::build(&[corpus], &tok, &tmp.path().join("c"), &opts).unwrap());
    let docs: Vec<usize> = (0..cache.num_documents()).collect();
    let masker = Masker::new(
        MaskingConfig::default(),
        tok.special_tokens().unwrap(),
        tok.vocab_size(),
        1,
    )
    .unwrap();
    let data = MlmDataset::new(cache, &docs, 32, masker).unwrap();

    let mut model = MaskedLm::new(&testutil::tiny_config(), 0, &Device::Cpu).unwrap();
    model.set_dropout(0.0);
    let vars = model.named_vars();
    let mut opt = candle_nn::SGD::new(vars.iter().map(|(_, v)| v.clone()).collect(), 0.5).unwrap();
    let all: Vec<usize> = (0..data.len()).collect();
    let fixed = data.batch(&all, 0, &Device::Cpu).unwrap();
    let first: f32 = model
        .loss(&fixed.batch, &fixed.positions, &fixed.targets, true)
        .unwrap()
        .to_scalar()
        .unwrap();
    for step in 0..30u64 {
        for idx in data.epoch_batches(4, step) {
            let mb = data.batch(&idx, step, &Device::Cpu).unwrap();
            let loss = model
                .loss(&mb.batch, &mb.positions, &mb.targets, true)
                .unwrap();
            let grads = modeling::backward(&loss, model.encoder.grad_sink()).unwrap();
            if step == 0 {
                for (name, v) in &vars {
                    let g = grads.get(v.as_tensor());
                    let norm: f32 = g
                        .map(|g| g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap())
                        .unwrap_or(0.0);
                    // The tied decoder sends gradient into word_embeddings even where no input id is.
                    assert!(norm > 0.0, "{name} got no gradient");
                }
            }
            opt.step(&grads).unwrap();
        }
    }
    let last: f32 = model
        .loss(&fixed.batch, &fixed.positions, &fixed.targets, true)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(last < first * 0.7, "loss {first} -> {last}");
}

#[test]
fn a_masked_lm_folder_starts_a_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let mlm = MaskedLm::new(&testutil::tiny_config(), 4, &Device::Cpu).unwrap();
    mlm.save(tmp.path()).unwrap();
    testutil::write_vocab(&tmp.path().join("vocab.txt")).unwrap();
    let files = resolve(tmp.path());
    let (clf, report) = Classifier::load_reinit_head(&files, 3, 7, &Device::Cpu).unwrap();
    assert!(!report.has_head, "the classification head must be fresh");
    let mut unused = report.unused.clone();
    unused.sort();
    assert_eq!(
        unused,
        [
            "cls.predictions.bias",
            "cls.predictions.transform.LayerNorm.bias",
            "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.dense.weight"
        ]
    );
    let x = some_batch();
    let (logits, out) = clf.forward(&x, false, false).unwrap();
    assert_eq!(logits.dims(), &[2, 3]);
    let want = mlm.encoder.forward(&x, false, false).unwrap();
    assert_eq!(
        max_abs_diff(out.last().unwrap(), want.last().unwrap()).unwrap(),
        0.0
    );
    // And the other way: a classifier folder starts a masked LM (its head and pooler unused).
    let dir2 = tmp.path().join("clf");
    clf.save(&dir2, &["a".into(), "b".into(), "c".into()])
        .unwrap();
    testutil::write_vocab(&dir2.join("vocab.txt")).unwrap();
    let (back, report) = MaskedLm::load(&resolve(&dir2), 0, &Device::Cpu).unwrap();
    assert!(!report.has_head);
    assert!(report
        .unused
        .iter()
        .all(|k| k.contains("pooler") || k.starts_with("classifier")));
    let h = back.encoder.forward(&x, false, false).unwrap();
    assert_eq!(
        max_abs_diff(h.last().unwrap(), want.last().unwrap()).unwrap(),
        0.0
    );
}
