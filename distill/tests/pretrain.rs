//! Masked-LM pieces through the real binary: `distill fill-mask` on the committed MLM fixtures (its
//! probabilities against the library's forward pass) and its errors, and a task run whose student
//! starts from a masked-LM export (encoder loaded, MLM head ignored, classification head fresh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor, D};
use modeling::{Batch, EncoderConfig, MaskedLm, ModelSource, TextTokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    root().join("modeling/tests/fixtures/parity").join(name)
}

fn distill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Softmax probabilities at `position` of `text`, from the library.
fn probs(dir: &Path, text: &str, position: usize) -> Vec<f32> {
    let files = ModelSource::Local(dir.to_path_buf())
        .resolve(false)
        .unwrap();
    let (model, _) = MaskedLm::load(&files, 0, &Device::Cpu).unwrap();
    let tok = TextTokenizer::from_file(files.tokenizer_json.as_ref().unwrap(), 64, false).unwrap();
    let enc = tok.encode(text, None).unwrap();
    let n = enc.ids.len();
    let ids = Tensor::from_vec(enc.ids, (1, n), &Device::Cpu).unwrap();
    let batch = Batch {
        token_type_ids: ids.zeros_like().unwrap(),
        attention_mask: Tensor::ones((1, n), candle_core::DType::F32, &Device::Cpu).unwrap(),
        input_ids: ids,
    };
    let logits = model.forward(&batch, false).unwrap(); // [1, n, vocab]
    let p = candle_nn::ops::softmax(&logits, D::Minus1).unwrap();
    p.get(0).unwrap().get(position).unwrap().to_vec1().unwrap()
}

#[test]
fn fill_mask_prints_the_top_tokens_of_each_mask() {
    let dir = fixture("bert_mlm");
    let t = "The quick brown [MASK] jumped over the <mask> dog.";
    let rows = json_lines(&distill(&[
        "fill-mask",
        dir.to_str().unwrap(),
        t,
        "Hello [MASK]!",
    ]));
    assert_eq!(rows.len(), 3, "one line per mask");
    assert_eq!(
        rows.iter()
            .map(|r| r["input"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 0, 1]
    );
    let normalised = t.replace("<mask>", "[MASK]");
    for r in &rows[..2] {
        let preds = r["predictions"].as_array().unwrap();
        assert_eq!(preds.len(), 5, "--top-k defaults to 5");
        let want = probs(&dir, &normalised, r["position"].as_u64().unwrap() as usize);
        let mut best: Vec<usize> = (0..want.len()).collect();
        best.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
        for (p, &id) in preds.iter().zip(&best) {
            assert_eq!(p["token_id"].as_u64().unwrap() as usize, id);
            let score = p["score"].as_f64().unwrap() as f32;
            assert!((score - want[id]).abs() < 1e-6, "{score} vs {}", want[id]);
            assert!(p["token"].is_string() && p["token_str"].is_string());
        }
    }

    // RoBERTa's <mask>, also written as [MASK]; --top-k.
    let dir = fixture("roberta_mlm");
    let rows = json_lines(&distill(&[
        "fill-mask",
        dir.to_str().unwrap(),
        "Hello [MASK]!",
        "--top-k",
        "2",
    ]));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["predictions"].as_array().unwrap().len(), 2);
    let scores: Vec<f64> = rows[0]["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] >= scores[1] && scores[0] <= 1.0);
}

#[test]
fn fill_mask_errors_are_clean() {
    let fails = |o: Output, needle: &str| {
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains(needle), "`{needle}` not in: {t}");
        assert!(!t.contains("panicked"), "{t}");
    };
    let mlm = fixture("bert_mlm");
    let mlm = mlm.to_str().unwrap();
    fails(
        distill(&["fill-mask", mlm, "no mask here"]),
        "no mask token",
    );
    fails(
        distill(&[
            "fill-mask",
            fixture("bert_cls").to_str().unwrap(),
            "a [MASK]",
        ]),
        "no masked-LM head",
    );
    fails(
        distill(&["fill-mask", mlm, "a [MASK]", "--top-k", "0"]),
        "--top-k",
    );
    fails(
        distill(&["fill-mask", "/no/such/model", "a [MASK]"]),
        "/no/such/model",
    );
}

#[test]
fn a_task_student_starts_from_a_masked_lm_export() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = TextTokenizer::from_file(&root().join("configs/tiny/vocab.txt"), 64, false).unwrap();
    let mlm = MaskedLm::new(&EncoderConfig::tiny(tok.vocab_size()), 11, &Device::Cpu).unwrap();
    let export = tmp.path().join("mlm-export");
    modeling::export::export_mlm(&mlm, &tok, &export).unwrap();
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
    ] {
        assert!(export.join(f).is_file(), "{f}");
    }
    // The export fills masks itself.
    let rows = json_lines(&distill(&[
        "fill-mask",
        export.to_str().unwrap(),
        "the movie was [MASK] .",
    ]));
    assert_eq!(rows.len(), 1);

    let out = tmp.path().join("run");
    let o = distill(&[
        "run",
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
        "--set",
        &format!("student.init={}", export.display()),
        "--set",
        "student.tokenizer=null",
        "--set",
        "train.epochs=1",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("has no head for this task; starting a new one"),
        "{t}"
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("export/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["architectures"][0], "BertForSequenceClassification");
    let stored =
        candle_core::safetensors::load(out.join("export/model.safetensors"), &Device::Cpu).unwrap();
    assert!(stored.contains_key("classifier.weight"));
    assert!(
        stored.keys().all(|k| !k.starts_with("cls.")),
        "the MLM head is not carried over"
    );
}
