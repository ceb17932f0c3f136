//! `stages:` through the real binary: TinyBERT's two-stage task distillation as a config (intermediate
//! layers against the online teacher, then the prediction layer), each stage resuming from the previous
//! one's final weights, fresh stages skipped on a rerun, and stage errors naming their key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::process::Output;

use common::tiny_run as distill;

const STAGES: &str = "stages=[\
{name: intermediate, epochs: 2, learning_rate: 3.0e-3, distill: {terms: [{kind: hidden_mse, weight: 1.0}, {kind: attention_mse, weight: 1.0}]}}, \
{name: prediction, epochs: 2, distill: {temperature: 1.0, terms: [{kind: kd, weight: 1.0}]}}]";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn two_stages_run_in_order_and_are_fresh_on_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let o = distill(&out, &[STAGES]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("stage 1/2: intermediate") && e.contains("stage 2/2: prediction"),
        "{e}"
    );
    let first = out.join("student/stages/0-intermediate");
    assert!(first.join("last/model.safetensors").is_file(), "{e}");
    assert!(out.join("student/best/model.safetensors").is_file());
    assert!(out.join("export/model.safetensors").is_file());
    // Stage 1 logged only its own terms, stage 2 only kd.
    let log1 = std::fs::read_to_string(first.join("metrics.jsonl")).unwrap();
    assert!(log1.contains("hidden_mse") && log1.contains("attention_mse"));
    let log2 = std::fs::read_to_string(out.join("student/metrics.jsonl")).unwrap();
    assert!(log2.contains("\"kd\"") && !log2.contains("hidden_mse"));
    // Stage 2 started from stage 1's final weights: its stamp records their hash.
    let stamp = std::fs::read_to_string(out.join("student/stamp.json")).unwrap();
    assert!(stamp.contains("init_weights"), "{stamp}");

    let again = distill(&out, &[STAGES]);
    let e = stderr(&again);
    assert!(again.status.success(), "{e}");
    assert!(e.matches("is fresh").count() >= 3, "{e}");
    assert!(!e.contains("parameters,"), "a stage retrained:\n{e}");
}

/// Pruning while distilling: the tiny teacher's two blocks at its full width (hidden 32, 4 heads,
/// FFN 64), then each stage narrower, selected from the previous stage's final weights (by the
/// gradient of the task loss, scored on that student), ending at the last stage's shape.
#[test]
fn stages_prune_the_student_to_the_last_stages_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r");
    let stages = "stages=[\
        {name: full, epochs: 1, distill: {}}, \
        {name: mid, epochs: 1, distill: {}, shape: {hidden_size: 24, num_heads: 3, intermediate_size: 48}}, \
        {name: last, epochs: 1, distill: {}, shape: {hidden_size: 16, num_heads: 2, intermediate_size: 32}}]";
    let o = distill(
        &out,
        &[
            "student.init=teacher",
            "student.teacher_layers=[1, 2]",
            "student.tokenizer=null",
            "student.selection=gradient",
            "student.importance_examples=20",
            stages,
        ],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let first = out.join("student/stages/0-full/last");
    let second = out.join("student/stages/1-mid/last");
    for (from, shape) in [
        (&first, "hidden 24, 3 heads, FFN 48"),
        (&second, "hidden 16, 2 heads, FFN 32"),
    ] {
        let line = format!(
            "{} narrowed to {shape} (Gradient selection)",
            from.display()
        );
        assert!(e.contains(&line), "no `{line}` in:\n{e}");
    }
    assert_eq!(e.matches("training examples (Gradient)").count(), 2, "{e}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("export/config.json")).unwrap())
            .unwrap();
    let shape = [
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
    ]
    .map(|k| config[k].as_u64().unwrap());
    assert_eq!(shape, [2, 16, 2, 32]);
    let full: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        full["hidden_size"], 32,
        "the first stage keeps the teacher's width"
    );
}

#[test]
fn stage_errors_name_the_stage_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (set, needle) in [
        ("stages=[{name: 'a b', distill: {}}]", "stages[0].name"),
        (
            "stages=[{name: a, distill: {}}, {name: a, distill: {}}]",
            "stages[1].name",
        ),
        (
            "stages=[{name: a, epochs: 0, distill: {}}]",
            "stages[0].epochs",
        ),
        (
            "stages=[{name: a, distill: {terms: [{kind: nope}]}}]",
            "stages[0].distill",
        ),
        (
            "stages=[{name: a, distill: {terms: [{kind: kd, weight: -1.0}]}}]",
            "stages[0].distill.terms[0]",
        ),
        (
            "stages=[{name: a, learning_rate: 2.0, distill: {}}]",
            "stages[0].learning_rate",
        ),
        ("stages=[{name: a, distill: {}, lr: 0.1}]", "lr"),
        (
            "stages=[{name: a, distill: {}, shape: {hidden_size: 0}}]",
            "stages[0].shape.hidden_size",
        ),
        (
            "stages=[{name: a, distill: {}, shape: {num_heads: 2}}, \
             {name: b, distill: {}, shape: {num_heads: 3}}]",
            "stages[1].shape.num_heads",
        ),
    ] {
        let o = distill(tmp.path(), &[set]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{set}: {e}");
        assert!(
            e.contains(needle) && !e.contains("panicked"),
            "{set}: message lacks `{needle}`:\n{e}"
        );
    }
}
