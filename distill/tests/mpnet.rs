//! An MPNet teacher through every stage: a bare MPNet encoder (the committed fixture without its head,
//! as all-mpnet-base-v2 comes) is fine-tuned on the task, its logits and hidden states are cached,
//! and a BERT student learns from them and, inside every step, from the online teacher's hidden
//! states and attention maps, aligned word by word across the two tokenizers; then the export, ONNX
//! and int8 prediction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;

use candle_core::Device;
use common::{distill, ok, tiny_run};

/// The committed MPNet classifier fixture as a bare encoder: no classifier tensors, `MPNetModel`.
fn bare_mpnet(dir: &Path) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../modeling/tests/fixtures/parity/mpnet_cls");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let mut t =
        candle_core::safetensors::load(fixture.join("model.safetensors"), &Device::Cpu).unwrap();
    t.retain(|k, _| !k.starts_with("classifier"));
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("config.json")).unwrap())
            .unwrap();
    cfg["architectures"] = serde_json::json!(["MPNetModel"]);
    let obj = cfg.as_object_mut().unwrap();
    for k in ["id2label", "label2id", "num_labels"] {
        obj.remove(k);
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

#[test]
fn an_mpnet_teacher_runs_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("mpnet");
    bare_mpnet(&teacher);
    let out = tmp.path().join("run");
    let t = format!("teacher.model={}", teacher.display());
    let log = ok(&tiny_run(
        &out,
        &[
            &t,
            "teacher.hidden_layers=[1, 2]",
            "distill.terms=[{kind: kd, weight: 0.5}, {kind: ce, weight: 0.5}, {kind: hidden_mse, weight: 0.1}, {kind: attention_mse, weight: 0.1, layer_map: [[2, 2]]}]",
            // The fixture's vocabulary is tiny and uncased: the BERT student keeps its own.
            "preflight.allow_weak_teacher=true",
        ],
    ));
    assert!(log.contains("has no task head; fine-tuning it"), "{log}");
    assert!(
        log.contains("compare word means"),
        "the tokenizers differ: {log}"
    );
    let targets =
        candle_core::safetensors::load(out.join("targets/train.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(targets.contains_key("logits"), "{:?}", targets.keys());
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("teacher/model/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["architectures"][0], "MPNetForSequenceClassification");
    // The fine-tuned teacher predicts, in f32 and int8, and converts to ONNX.
    let model = out.join("teacher/model");
    let m = model.to_str().unwrap();
    let f32 = ok(&distill(&["predict", m, "a great movie"]));
    let int8 = ok(&distill(&["predict", m, "--int8", "a great movie"]));
    assert!(
        f32.contains("\"label\"") && int8.contains("\"label\""),
        "{f32}{int8}"
    );
    ok(&distill(&["onnx", m, "--int8"]));
    assert!(model.join("model.int8.onnx").is_file());
}
