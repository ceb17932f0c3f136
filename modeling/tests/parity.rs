//! Parity with Hugging Face transformers: tiny BERT and RoBERTa checkpoints and their reference outputs
//! were made by `tools/parity/make_fixtures.py`, the MPNet one by `tools/parity/make_mpnet_fixture.py`
//! (transformers 5.24, eager attention, eval mode). Our
//! encoder must reproduce every hidden state, attention map and logit within 1e-5, the loss, and the
//! gradients of named parameters within 1e-4 relative; our tokenizer must reproduce the token ids.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use modeling::{Batch, Classifier, ModelSource, TextTokenizer};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
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

fn load(name: &str) -> Classifier {
    let files = ModelSource::Local(fixture(name)).resolve(false).unwrap();
    Classifier::load(&files, None, 0, &Device::Cpu).unwrap().0
}

fn check_forward(name: &str, with_logits: bool) {
    let r = reference(name);
    let model = load(name);
    let (logits, out) = model.forward(&batch(&r), false, true).unwrap();
    for (i, h) in out.hidden_states.iter().enumerate() {
        let d = max_abs_diff(h, &r[&format!("hidden_states.{i}")]);
        assert!(d < 1e-5, "{name} hidden_states.{i}: max diff {d}");
    }
    for (i, a) in out.attentions.iter().enumerate() {
        let d = max_abs_diff(a, &r[&format!("attentions.{i}")]);
        assert!(d < 1e-5, "{name} attentions.{i}: max diff {d}");
    }
    if with_logits {
        let d = max_abs_diff(&logits, &r["logits"]);
        assert!(d < 1e-5, "{name} logits: max diff {d}");
    }
}

#[test]
fn bert_classifier_matches_transformers() {
    check_forward("bert_cls", true);
}

#[test]
fn bare_bert_matches_transformers() {
    let files = ModelSource::Local(fixture("bert_bare"))
        .resolve(false)
        .unwrap();
    let (model, report) = Classifier::load(&files, Some(2), 0, &Device::Cpu).unwrap();
    assert!(!report.has_head, "a bare encoder has no task head");
    let r = reference("bert_bare");
    let (_, out) = model.forward(&batch(&r), false, true).unwrap();
    let d = max_abs_diff(out.last().unwrap(), &r["last_hidden_state"]);
    assert!(d < 1e-5, "last_hidden_state: {d}");
    check_forward("bert_bare", false);
}

#[test]
fn roberta_classifier_matches_transformers() {
    check_forward("roberta_cls", true);
}

#[test]
fn roberta_regression_matches_transformers() {
    check_forward("roberta_reg", true);
}

#[test]
fn mpnet_classifier_matches_transformers() {
    // With attention maps asked for: the composed attention, the position bias added in candle.
    check_forward("mpnet_cls", true);
}

#[test]
fn mpnet_fused_attention_adds_the_same_position_bias() {
    // Without attention maps the CPU takes the fused op, which adds the bias itself.
    let r = reference("mpnet_cls");
    let model = load("mpnet_cls");
    let (logits, out) = model.forward(&batch(&r), false, false).unwrap();
    let last = model.config.num_hidden_layers;
    let d = max_abs_diff(out.last().unwrap(), &r[&format!("hidden_states.{last}")]);
    assert!(
        d < 1e-5,
        "mpnet_cls last hidden state (fused): max diff {d}"
    );
    let d = max_abs_diff(&logits, &r["logits"]);
    assert!(d < 1e-5, "mpnet_cls logits (fused): max diff {d}");
}

#[test]
fn mpnet_relative_buckets_match_transformers() {
    // transformers' relative_position_bucket(-n, 32, 128) for n = 8, 12, 16, 23, 32, 46, 64, 91, 128:
    // 8 9 10 11 12 13 14 15 15 (queries after keys); the other side adds 16.
    let s = 200;
    let b = modeling::encoder::relative_buckets(s, 32, 128);
    let at = |i: usize, j: usize| b[i * s + j];
    for (n, want) in [
        (0, 0),
        (7, 7),
        (8, 8),
        (12, 9),
        (16, 10),
        (23, 11),
        (32, 12),
    ]
    .into_iter()
    .chain([(46, 13), (64, 14), (91, 15), (128, 15), (199, 15)])
    {
        assert_eq!(at(n, 0), want, "query {n} after the key");
        if n > 0 {
            assert_eq!(at(0, n), want + 16, "query {n} before the key");
        }
    }
}

/// Loss and gradients in training mode with dropout off (transformers' eval forward with autograd).
fn check_gradients(name: &str, regression: bool) {
    let r = reference(name);
    let mut model = load(name);
    model.set_dropout(0.0);
    let (logits, _) = model.forward(&batch(&r), true, false).unwrap();
    let loss = if regression {
        let y = r["labels"]
            .to_dtype(DType::F32)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        (&logits - &y).unwrap().sqr().unwrap().mean_all().unwrap()
    } else {
        let y = r["labels"].to_dtype(DType::U32).unwrap();
        candle_nn::loss::cross_entropy(&logits, &y).unwrap()
    };
    let want: f32 = r["loss"].to_scalar().unwrap();
    let got: f32 = loss.to_scalar().unwrap();
    assert!((got - want).abs() < 1e-5, "{name} loss {got} vs {want}");
    let grads = modeling::backward(&loss, model.encoder.grad_sink()).unwrap();
    let vars: HashMap<String, candle_core::Var> = model.named_vars().into_iter().collect();
    for (k, g_ref) in r.iter().filter(|(k, _)| k.starts_with("grad.")) {
        let pname = &k["grad.".len()..];
        let var = &vars[pname];
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {pname}"));
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
    }
}

#[test]
fn bert_loss_and_gradients_match_transformers() {
    check_gradients("bert_cls", false);
}

#[test]
fn roberta_loss_and_gradients_match_transformers() {
    check_gradients("roberta_cls", false);
    check_gradients("roberta_reg", true);
}

#[test]
fn mpnet_loss_and_gradients_match_transformers() {
    // The relative-position bias table is among the checked gradients: training takes the composed
    // attention, through which it gets one.
    check_gradients("mpnet_cls", false);
}

#[test]
fn tokenizers_match_transformers() {
    for name in ["bert_cls", "roberta_cls", "mpnet_cls"] {
        let r = reference(name);
        let inputs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("inputs.json")).unwrap(),
        )
        .unwrap();
        let tok =
            TextTokenizer::from_file(&fixture(name).join("tokenizer.json"), 512, false).unwrap();
        let ids: Vec<Vec<i64>> = r["input_ids"].to_vec2().unwrap();
        let types: Vec<Vec<i64>> = r["token_type_ids"].to_vec2().unwrap();
        let mask: Vec<Vec<i64>> = r["attention_mask"].to_vec2().unwrap();
        for (i, pair) in inputs["texts"].as_array().unwrap().iter().enumerate() {
            let a = pair[0].as_str().unwrap();
            let b = pair[1].as_str();
            let enc = tok.encode(a, b).unwrap();
            let n = mask[i].iter().filter(|&&m| m == 1).count();
            let want: Vec<u32> = ids[i][..n].iter().map(|&x| x as u32).collect();
            assert_eq!(enc.ids, want, "{name} row {i} ids");
            if name == "bert_cls" {
                let want_t: Vec<u32> = types[i][..n].iter().map(|&x| x as u32).collect();
                assert_eq!(enc.type_ids, want_t, "{name} row {i} type ids");
            }
        }
    }
}

#[test]
fn vocab_txt_tokenizer_matches_tokenizer_json() {
    // The cased WordPiece tokenizer we build from a vocab.txt equals BertTokenizerFast's tokenizer.json.
    let dir = fixture("bert_cls");
    let from_vocab = TextTokenizer::from_file(&dir.join("vocab.txt"), 512, false).unwrap();
    let from_json = TextTokenizer::from_file(&dir.join("tokenizer.json"), 512, false).unwrap();
    let inputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).unwrap()).unwrap();
    for pair in inputs["texts"].as_array().unwrap() {
        let (a, b) = (pair[0].as_str().unwrap(), pair[1].as_str());
        assert_eq!(
            from_vocab.encode(a, b).unwrap(),
            from_json.encode(a, b).unwrap()
        );
    }
}
