//! Sentence-transformers folders: the modules written are the modules read, a saved embedding model
//! loads back with identical embeddings, unsupported modules are refused naming the file, and every
//! trainable tensor of an embedding model (the Dense layer included, the unused head excluded) receives a
//! gradient. Parity with sentence-transformers itself: tools/parity/check_sentence_export.py.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use candle_core::{Device, Tensor};
use modeling::batch::make_batch;
use modeling::infer::Pooling;
use modeling::sentence::{row_cosines, SentenceEncoder, SentenceModules};
use modeling::testutil::{tiny_checkpoint, tiny_config, write_vocab};
use modeling::{Classifier, ModelSource, TextTokenizer};

fn batch(dir: &std::path::Path) -> modeling::Batch {
    let tok = TextTokenizer::from_file(&dir.join("vocab.txt"), 32, false).unwrap();
    let a = tok.encode("the movie was great !", None).unwrap();
    let b = tok
        .encode("The plot was dull and very boring .", None)
        .unwrap();
    make_batch(&[&a, &b], tok.pad_id(), &Device::Cpu).unwrap()
}

fn projected(dim_out: usize) -> SentenceEncoder {
    let model = Classifier::new(&tiny_config(), 1, 7, &Device::Cpu).unwrap();
    let h = model.config.hidden_size;
    let modules = SentenceModules {
        dense: Some((h, dim_out)),
        ..SentenceModules::mean_normalized()
    };
    let w: Vec<f32> = (0..h * dim_out)
        .map(|i| ((i % 7) as f32 - 3.0) / 10.0)
        .collect();
    let init = Tensor::from_vec(w, (dim_out, h), &Device::Cpu).unwrap();
    SentenceEncoder::new(model, modules, Some(init)).unwrap()
}

#[test]
fn save_then_load_gives_identical_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let a = projected(24);
    a.save(dir.path()).unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let read = SentenceModules::read(dir.path()).unwrap().unwrap();
    assert_eq!(read.dense, Some((a.model.config.hidden_size, 24)));
    assert!(read.normalize);
    assert_eq!(read.pooling, Pooling::Mean);
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    // The default is ignored: the folder's modules.json decides.
    let cls = SentenceModules {
        pooling: Pooling::Cls,
        ..SentenceModules::mean_normalized()
    };
    let b = SentenceEncoder::load(&files, dir.path(), cls, &Device::Cpu).unwrap();
    let x = batch(dir.path());
    let (ea, eb) = (a.embed(&x, false).unwrap(), b.embed(&x, false).unwrap());
    assert_eq!(ea.dims(), &[2, 24]);
    assert_eq!(modeling::testutil::max_abs_diff(&ea, &eb).unwrap(), 0.0);
    // Normalised rows.
    let norms: Vec<f32> = ea.sqr().unwrap().sum(1).unwrap().to_vec1().unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    // No task head in the saved encoder.
    let t =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(t.keys().all(|k| k.starts_with("bert.")), "{:?}", t.keys());
}

#[test]
fn a_plain_folder_takes_the_default_modules() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), None, 3).unwrap();
    assert_eq!(SentenceModules::read(dir.path()).unwrap(), None);
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let m = SentenceEncoder::load(
        &files,
        dir.path(),
        SentenceModules::mean_normalized(),
        &Device::Cpu,
    )
    .unwrap();
    let x = batch(dir.path());
    let e = m.embed(&x, false).unwrap();
    // Mean pooling by hand, then normalised.
    let out = m.model.encoder.forward(&x, false, false).unwrap();
    let h = out.last().unwrap();
    let mask = x.attention_mask.unsqueeze(2).unwrap();
    let mean = h
        .broadcast_mul(&mask)
        .unwrap()
        .sum(1)
        .unwrap()
        .broadcast_div(&mask.sum(1).unwrap())
        .unwrap();
    let cos = row_cosines(&e, &mean).unwrap();
    assert!(cos.iter().all(|c| (c - 1.0).abs() < 1e-5), "{cos:?}");
}

#[test]
fn unsupported_modules_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    projected(8).save(dir.path()).unwrap();
    let pooling = dir.path().join("1_Pooling").join("config.json");
    std::fs::write(
        &pooling,
        r#"{"word_embedding_dimension": 32, "pooling_mode_max_tokens": true}"#,
    )
    .unwrap();
    let e = SentenceModules::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("1_Pooling") && e.contains("pooling_mode"), "{e}");
    std::fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_CNN", "type": "sentence_transformers.models.CNN"}]"#,
    )
    .unwrap();
    let e = SentenceModules::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("modules.json") && e.contains("CNN"), "{e}");
}

#[test]
fn every_trainable_tensor_of_an_embedding_model_gets_a_gradient() {
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let m = projected(24);
    let e = m.embed(&batch(dir.path()), true).unwrap();
    let target = Tensor::ones((2, 24), candle_core::DType::F32, &Device::Cpu).unwrap();
    let loss = (e - target).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = modeling::backward(&loss, m.model.encoder.grad_sink()).unwrap();
    let vars = m.named_vars();
    assert!(vars.iter().any(|(k, _)| k == "dense.linear.weight"));
    assert!(vars.iter().all(|(k, _)| !k.starts_with("classifier")));
    for (name, var) in vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(n > 0.0, "{name}: zero gradient");
    }
}
