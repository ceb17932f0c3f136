//! Embedding distillation end to end with the real binary on configs/tiny-embedding.yaml (committed tiny
//! fixtures): targets, student, report and a sentence-transformers export that `distill embed` reads; the
//! targets reused on a second run; and bad configs and inputs refused naming the key, file or argument.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;
use std::process::Output;

use common::distill;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(out: &Path, extra: &[&str]) -> Output {
    let o = format!("output_dir={}", out.display());
    let mut args = vec!["run", "configs/tiny-embedding.yaml", "--set", &o];
    args.extend_from_slice(extra);
    distill(&args)
}

#[test]
fn a_run_trains_reports_and_exports_what_embed_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = run(&out, &["--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["sts_pairs"], 40);
    for who in ["teacher", "student"] {
        let r = &report[who];
        let s = r["spearman"].as_f64().unwrap();
        let ci = &r["spearman_ci"];
        assert!(
            ci["low"].as_f64().unwrap() <= s && s <= ci["high"].as_f64().unwrap(),
            "{r}"
        );
        assert!(r["batch1_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(r["dimensions"], 32);
    }
    let agreement = report["teacher_agreement"].as_f64().unwrap();
    assert!(agreement > 0.5 && agreement <= 1.0, "{agreement}");
    let export = out.join("export");
    for f in [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
    ] {
        assert!(export.join(f).is_file(), "missing {f}");
    }
    // The learning curves beside the report (not in the export).
    let png = std::fs::read(out.join("plots/training_curves.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("](plots/training_curves.png)"), "{md}");
    let card = std::fs::read_to_string(export.join("README.md")).unwrap();
    assert!(!card.contains("training_curves"));
    assert!(card.contains("library_name: sentence-transformers"));
    assert!(card.contains("pipeline_tag: sentence-similarity"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(export.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertModel");

    let e = export.display().to_string();
    let o = distill(&["embed", &e, "Héllo Wörld", "the film was great !"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    let v: Vec<f64> = rows[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(v.len(), 32);
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");

    // The export as an ONNX graph whose output is the embedding (its numbers: tools/parity, in CI).
    let o = distill(&["onnx", &e]);
    assert!(o.status.success(), "{}", text(&o));
    let graph = std::fs::read(export.join("model.onnx")).unwrap();
    assert!(graph.windows(18).any(|w| w == b"sentence_embedding"));

    // The same inputs again: the teacher's embeddings are reused, not recomputed.
    let o = run(&out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("are fresh, reused"), "{}", text(&o));
}

#[test]
fn bad_configs_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bad");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--set", "data.sentences=[{file: nowhere.txt}]"],
            "data.sentences[0]",
        ),
        (&["--set", "loss={cosine: 0, mse: 0}"], "loss"),
        (&["--set", "loss.cosin=1"], "cosin"),
        (
            &["--set", "student.selection=importance"],
            "student.selection",
        ),
        (&["--set", "eval.file=missing.tsv"], "eval.file"),
    ];
    for (extra, key) in cases {
        let o = run(&out, extra);
        assert!(!o.status.success(), "{extra:?} was accepted");
        let t = text(&o);
        assert!(t.contains(key), "{extra:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}

#[test]
fn embed_refuses_blank_inputs_naming_them() {
    let o = distill(&["embed", "configs/tiny/teacher", "fine", "  "]);
    assert!(!o.status.success());
    assert!(text(&o).contains("text argument 2"), "{}", text(&o));
    // A plain encoder folder embeds with mean pooling, normalised.
    let o = distill(&["embed", "configs/tiny/teacher", "the film"]);
    assert!(o.status.success(), "{}", text(&o));
}
