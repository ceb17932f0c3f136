//! Deployment commands through the real binary: `distill onnx`, `export --format onnx --int8` and
//! `predict --int8`, and their errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{distill, text};

fn logits(o: &Output) -> Vec<Vec<f64>> {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn tiny_model(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    modeling::testutil::tiny_checkpoint(&m, &modeling::testutil::tiny_config(), Some(2), 7)
        .unwrap();
    m
}

#[test]
fn onnx_command_writes_f32_and_int8_graphs() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(tmp.path());
    let ms = m.to_str().unwrap();
    let o = distill(&["onnx", ms]);
    assert!(o.status.success(), "{}", text(&o));
    let o = distill(&["onnx", ms, "--int8"]);
    assert!(o.status.success(), "{}", text(&o));
    let f32_size = std::fs::metadata(m.join("model.onnx")).unwrap().len();
    let int8_size = std::fs::metadata(m.join("model.int8.onnx")).unwrap().len();
    assert!(int8_size < f32_size, "{int8_size} vs {f32_size}");
    // A protobuf ModelProto opens with field 1 (ir_version) as a varint: bytes 0x08 0x08.
    assert_eq!(&std::fs::read(m.join("model.onnx")).unwrap()[..2], &[8, 8]);
}

#[test]
fn predict_int8_is_close_to_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(tmp.path());
    let ms = m.to_str().unwrap();
    let texts = ["the film was great .", "dull and boring", "a\tpair of them"];
    let mut args = vec!["predict", ms];
    args.extend(texts);
    let want = logits(&distill(&args));
    args.push("--int8");
    let got = logits(&distill(&args));
    assert_eq!(want.len(), 3);
    let range = want.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
    for (a, b) in want.iter().zip(&got) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 0.05 * range.max(1e-3), "{x} vs {y}");
        }
    }
    assert_ne!(want, got, "--int8 gave bit-identical logits: not quantized");
}

#[test]
fn deployment_errors_are_clean() {
    let tmp = tempfile::tempdir().unwrap();
    // A bare encoder has no head to export.
    let o = distill(&["onnx", "configs/tiny/teacher"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no classification head"), "{}", text(&o));
    let o = distill(&["onnx", "/no/such/model"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/no/such/model"), "{}", text(&o));
    // --int8 quantizes the ONNX graph only.
    let o = distill(&["export", "configs/tiny.yaml", "--int8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("--format onnx"), "{}", text(&o));
    // An unwritable destination is named.
    let m = tiny_model(tmp.path());
    let o = distill(&["onnx", m.to_str().unwrap(), "--out", "/proc/x.onnx"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("/proc/x.onnx"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"));
}

#[test]
fn an_export_carries_a_model_card_the_hub_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sst2-run");
    common::ok(&common::tiny_run(&out, &[]));
    let card = std::fs::read_to_string(out.join("export/README.md")).unwrap();
    let front = card
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .unwrap_or_else(|| panic!("no YAML front matter:\n{card}"))
        .0;
    let meta: serde_yaml::Value = serde_yaml::from_str(front).unwrap();
    assert_eq!(meta["library_name"], "transformers");
    assert_eq!(meta["pipeline_tag"], "text-classification");
    let tags: Vec<&str> = meta["tags"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"distillation") && tags.contains(&"sst2"),
        "{tags:?}"
    );
    assert_eq!(meta["datasets"][0], "nyu-mll/glue");
    // A local teacher folder is no hub id: no base_model the Hub could not resolve.
    assert!(meta.get("base_model").is_none(), "{front}");
    // The model-index holds the report's dev metric.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let want = report["student"]["dev"]["values"]["accuracy"]
        .as_f64()
        .unwrap();
    let result = &meta["model-index"][0]["results"][0];
    assert_eq!(result["dataset"]["config"], "sst2");
    assert_eq!(result["dataset"]["split"], "validation");
    assert_eq!(result["metrics"][0]["type"], "accuracy");
    let got = result["metrics"][0]["value"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    assert_eq!(meta["model-index"][0]["name"], "sst2-run");
    for section in [
        "## Recipe",
        "## Teacher and student",
        "## Use",
        "| teacher |",
        "| student |",
    ] {
        assert!(card.contains(section), "{section}:\n{card}");
    }
}
