//! Masked-LM parity with Hugging Face transformers: tiny `BertForMaskedLM` and `RobertaForMaskedLM`
//! checkpoints and their outputs on masked inputs were made by `tools/parity/make_mlm_fixture.py`
//! (transformers 5.24, eager attention, eval mode). Our `MaskedLm` must reproduce the logits and the
//! MLM loss within 1e-4, and the loss's gradients (tied word embeddings included) within 1e-4 relative.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use data::corpus::MlmBatch;
use modeling::mlm::{mlm_loss, predicted};
use modeling::{Batch, MaskedLm, ModelSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modeling/tests/fixtures/parity")
        .join(name)
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("reference.safetensors"), &Device::Cpu)
        .unwrap()
}

fn batch(r: &HashMap<String, Tensor>) -> Batch {
    let u = |k: &str| r[k].to_dtype(DType::U32).unwrap();
    Batch {
        input_ids: u("input_ids"),
        token_type_ids: u("token_type_ids"),
        attention_mask: r["attention_mask"].to_dtype(DType::F32).unwrap(),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    modeling::testutil::max_abs_diff(a, b).unwrap()
}

fn load(name: &str) -> MaskedLm {
    let files = ModelSource::Local(fixture(name)).resolve(false).unwrap();
    let (model, report) = MaskedLm::load(&files, 0, &Device::Cpu).unwrap();
    assert!(report.has_head, "{name}: the MLM head was not found");
    assert!(
        report.unused.is_empty(),
        "{name}: unused {:?}",
        report.unused
    );
    model
}

fn check(name: &str) {
    let r = reference(name);
    let mut model = load(name);
    let b = batch(&r);

    // Inference: logits at every position.
    let logits = model.forward(&b, false).unwrap();
    let d = max_abs_diff(&logits, &r["logits"]);
    assert!(d < 1e-4, "{name} logits: max diff {d}");

    // Training mode without dropout: the loss and its gradients.
    model.set_dropout(0.0);
    let logits = model.forward(&b, true).unwrap();
    let loss = mlm_loss(&logits, &r["labels"]).unwrap();
    let want: f32 = r["loss"].to_scalar().unwrap();
    let got: f32 = loss.to_scalar().unwrap();
    assert!((got - want).abs() < 1e-4, "{name} loss {got} vs {want}");

    // The training path (decoder only at predicted positions) gives the same loss.
    let (positions, targets) = predicted(&r["labels"]).unwrap();
    let mb = MlmBatch {
        batch: b.clone(),
        labels: r["labels"].clone(),
        positions,
        targets,
    };
    let fast: f32 = model
        .loss(&mb.batch, &mb.positions, &mb.targets, true)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(
        (fast - got).abs() < 1e-5,
        "{name}: loss at positions {fast} vs {got}"
    );

    let grads = modeling::backward(&loss, model.encoder.grad_sink()).unwrap();
    let vars: HashMap<String, candle_core::Var> = model.named_vars().into_iter().collect();
    let mut checked = 0;
    for (k, g_ref) in r.iter().filter(|(k, _)| k.starts_with("grad.")) {
        let pname = &k["grad.".len()..];
        let g = grads
            .get(vars[pname].as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
        let d = max_abs_diff(g, g_ref);
        let scale: f32 = g_ref
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            d <= 1e-4 * scale.max(1e-6) + 1e-7,
            "{name} {pname}: max diff {d} (max |g| {scale})"
        );
        checked += 1;
    }
    assert_eq!(checked, 5, "{name}: gradient references");
}

#[test]
fn bert_masked_lm_matches_transformers() {
    check("bert_mlm");
}

#[test]
fn roberta_masked_lm_matches_transformers() {
    check("roberta_mlm");
}

#[test]
fn decoder_stored_under_its_own_names_loads_the_same() {
    // Some checkpoints store `cls.predictions.decoder.{weight,bias}` (the weight equal to the word
    // embeddings) instead of `cls.predictions.bias`.
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture("bert_mlm");
    for f in ["config.json", "vocab.txt", "tokenizer.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let mut t =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let bias = t.remove("cls.predictions.bias").unwrap();
    t.insert("cls.predictions.decoder.bias".into(), bias);
    let words = t["bert.embeddings.word_embeddings.weight"].clone();
    t.insert("cls.predictions.decoder.weight".into(), words.clone());
    candle_core::safetensors::save(&t, tmp.path().join("model.safetensors")).unwrap();
    let files = ModelSource::Local(tmp.path().to_path_buf())
        .resolve(false)
        .unwrap();
    let (model, report) = MaskedLm::load(&files, 0, &Device::Cpu).unwrap();
    assert!(report.has_head && report.unused.is_empty(), "{report:?}");
    let r = reference("bert_mlm");
    let d = max_abs_diff(&model.forward(&batch(&r), false).unwrap(), &r["logits"]);
    assert!(d < 1e-4, "max diff {d}");

    // An untied decoder is refused rather than silently replaced by the embeddings.
    t.insert(
        "cls.predictions.decoder.weight".into(),
        (words + 1.0).unwrap(),
    );
    candle_core::safetensors::save(&t, tmp.path().join("model.safetensors")).unwrap();
    let err = MaskedLm::load(&files, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("untied"), "{err}");
}
