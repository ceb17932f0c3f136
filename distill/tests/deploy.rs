//! Deployment commands through the real binary: `distill onnx`, `export --format onnx --int8`,
//! `predict --int8` and `--time`, and their errors, those of `--runtime onnxruntime` included (its answers
//! are checked against onnxruntime itself by tools/parity/check_runtime.py: the Rust tests never need the
//! library).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{distill, fails, text};

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

/// `distill ARGS` with `ORT_DYLIB_PATH` naming a library that does not exist.
fn without_onnxruntime(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(args)
        .current_dir(root)
        .env("ORT_DYLIB_PATH", "/no/such/libonnxruntime.so")
        .output()
        .unwrap()
}

#[test]
fn the_onnxruntime_runtime_names_what_it_lacks() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(tmp.path());
    let ms = m.to_str().unwrap();
    // No graph in the folder: the file, and the command that writes it.
    let o = without_onnxruntime(&["predict", ms, "--runtime", "onnxruntime", "a film"]);
    fails(
        &o,
        &["model.onnx: not found", &format!("distill onnx {ms}`")],
    );
    let o = without_onnxruntime(&[
        "serve",
        ms,
        "--runtime",
        "onnxruntime",
        "--int8",
        "--port",
        "0",
    ]);
    fails(
        &o,
        &[
            "model.int8.onnx: not found",
            &format!("distill onnx {ms} --int8`"),
        ],
    );
    // With the graph but no library: the path tried, the variable and the setup script.
    assert!(distill(&["onnx", ms]).status.success());
    let o = without_onnxruntime(&["predict", ms, "--runtime", "onnxruntime", "a film"]);
    let needles = [
        "/no/such/libonnxruntime.so",
        "ORT_DYLIB_PATH",
        "tools/setup_onnxruntime.sh",
    ];
    fails(&o, &needles);
    // The candle runtime never looks for it.
    let o = without_onnxruntime(&["predict", ms, "a film"]);
    assert!(o.status.success(), "{}", text(&o));
    // compare fails before running any model, and writes no report.
    let out = tmp.path().join("run");
    let run = distill(&[
        "run",
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    std::fs::remove_file(out.join("report.json")).unwrap();
    let o = without_onnxruntime(&[
        "compare",
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
        "--runtime",
        "onnxruntime",
    ]);
    fails(&o, &needles);
    assert!(!out.join("report.json").exists());
}

#[test]
fn predict_time_reports_latency_and_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(tmp.path());
    let ms = m.to_str().unwrap();
    let o = distill(&[
        "predict",
        ms,
        "--time",
        "--batch-size",
        "4",
        "--file",
        "configs/tiny/data/dev.tsv",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The file's header line is an input too.
    assert_eq!(v["inputs"], 61, "{v}");
    assert_eq!(v["latency"]["examples"], 61, "{v}");
    assert_eq!(v["runtime"], "candle");
    assert_eq!(v["batch_size"], 4);
    let p50 = v["latency"]["p50_ms"].as_f64().unwrap();
    let p99 = v["latency"]["p99_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p99 >= p50, "{v}");
    assert!(v["examples_per_second"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn predict_refuses_blank_inputs_naming_the_argument_or_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_model(tmp.path());
    let ms = m.to_str().unwrap();
    for (args, needles) in [
        (
            vec![""],
            vec!["text argument 1: the text is empty or whitespace only"],
        ),
        (
            vec!["good", "   "],
            vec!["text argument 2: the text is empty"],
        ),
        (
            vec!["good film\t "],
            vec!["text argument 1: the second text of the pair is empty"],
        ),
    ] {
        let mut all = vec!["predict", ms];
        all.extend(args);
        let o = distill(&all);
        fails(&o, &needles);
        assert!(o.stderr.starts_with(b"error: "), "{}", text(&o));
        assert!(
            o.stdout.is_empty(),
            "a label for a blank input: {}",
            text(&o)
        );
    }
    let f = tmp.path().join("inputs.txt");
    std::fs::write(&f, "a fine film\n\t\nanother one\n").unwrap();
    let o = distill(&["predict", ms, "--file", f.to_str().unwrap()]);
    fails(&o, &[&format!("{}:2: the text is empty", f.display())]);
    assert!(o.stdout.is_empty(), "{}", text(&o));
    std::fs::write(&f, "a fine film\n  \n").unwrap();
    let o = distill(&["predict", ms, "--file", f.to_str().unwrap()]);
    fails(&o, &[&format!("{}:2:", f.display())]);
}
