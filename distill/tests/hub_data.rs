//! `data.hub`: a task read from a Hub dataset's Parquet files, offline, from tiny files laid out as the hub
//! cache lays out `nyu-mll/glue` (written here with the `parquet` crate, with the `datasets` library's
//! ClassLabel names in the file metadata). The run equals the same run on the same rows as TSV, and bad
//! files get errors that name them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A GLUE SST-2 style Parquet file (sentence, label, idx) with the Hub's ClassLabel names.
fn write_parquet(path: &Path, rows: &[(String, i64)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY sentence (UTF8); REQUIRED INT64 label; REQUIRED INT64 idx; }",
        )
        .unwrap(),
    );
    let features = r#"{"info": {"features": {"sentence": {"dtype": "string", "_type": "Value"},
        "label": {"names": ["negative", "positive"], "_type": "ClassLabel"},
        "idx": {"dtype": "int32", "_type": "Value"}}}}"#;
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "huggingface".into(),
                features.to_string(),
            )]))
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = w.next_row_group().unwrap();
    let texts: Vec<ByteArray> = rows
        .iter()
        .map(|(t, _)| ByteArray::from(t.as_str()))
        .collect();
    let labels: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let idx: Vec<i64> = (0..rows.len() as i64).collect();
    let mut n = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        match n {
            0 => col.typed::<ByteArrayType>().write_batch(&texts, None, None),
            1 => col.typed::<Int64Type>().write_batch(&labels, None, None),
            _ => col.typed::<Int64Type>().write_batch(&idx, None, None),
        }
        .unwrap();
        col.close().unwrap();
        n += 1;
    }
    group.close().unwrap();
    w.close().unwrap();
}

/// The tiny fixtures' rows (sentence TAB label).
fn rows(file: &str) -> Vec<(String, i64)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join("configs/tiny/data").join(file))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (s, y) = l.split_once('\t').unwrap();
            (s.to_string(), y.trim().parse().unwrap())
        })
        .collect()
}

/// A hub cache holding `nyu-mll/glue` at COMMIT, `main` pointing to it.
fn hub_cache(dir: &Path, train: &[(String, i64)], dev: &[(String, i64)]) {
    let repo = dir.join("datasets--nyu-mll--glue");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let snap = repo.join("snapshots").join(COMMIT).join("sst2");
    write_parquet(&snap.join("train-00000-of-00001.parquet"), train);
    write_parquet(&snap.join("validation-00000-of-00001.parquet"), dev);
}

fn run_hub(cache: &Path, out: &Path, extra: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(["-q", "run", "configs/tiny.yaml", "--set"])
        .arg(format!("output_dir={}", out.display()))
        .args(["--set", "data.hub={repo: nyu-mll/glue}"])
        .args(extra)
        .current_dir(root)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

fn student_dev(out: &Path) -> serde_json::Value {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    r["student"]["dev"].clone()
}

#[test]
fn a_hub_dataset_trains_the_same_student_as_its_tsv_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    hub_cache(&cache, &rows("train.tsv"), &rows("dev.tsv"));
    let from_hub = tmp.path().join("hub-run");
    common::ok(&run_hub(&cache, &from_hub, &[]));
    let from_tsv = tmp.path().join("tsv-run");
    common::ok(&common::tiny_run(&from_tsv, &[]));
    assert_eq!(student_dev(&from_hub), student_dev(&from_tsv));
    assert_eq!(
        std::fs::read(from_hub.join("student/best/model.safetensors")).unwrap(),
        std::fs::read(from_tsv.join("student/best/model.safetensors")).unwrap(),
        "the same rows in the same order train the same weights"
    );
}

#[test]
fn bad_hub_data_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    // A class id outside the task's labels: the file and the row are named.
    let mut train = rows("train.tsv");
    train[4].1 = 7;
    hub_cache(&cache, &train, &rows("dev.tsv"));
    let o = run_hub(&cache, &tmp.path().join("a"), &[]);
    common::fails(
        &o,
        &[
            "train-00000-of-00001.parquet",
            "row 5",
            "label 7 is not a class",
        ],
    );
    // Not a Parquet file.
    let snap = cache.join("datasets--nyu-mll--glue/snapshots").join(COMMIT);
    std::fs::write(
        snap.join("sst2/validation-00000-of-00001.parquet"),
        b"not parquet",
    )
    .unwrap();
    write_parquet(
        &snap.join("sst2/train-00000-of-00001.parquet"),
        &rows("train.tsv"),
    );
    let o = run_hub(&cache, &tmp.path().join("b"), &[]);
    common::fails(
        &o,
        &["validation-00000-of-00001.parquet", "not a Parquet file"],
    );
    // A configuration the cache does not hold, offline.
    let o = run_hub(
        &cache,
        &tmp.path().join("c"),
        &["--set", "data.hub={repo: nyu-mll/glue, config: cola}"],
    );
    common::fails(&o, &["nyu-mll/glue", "cola/train", "HF_HUB_OFFLINE=1"]);
}

/// An embedding run's sentences from a Hub dataset's Parquet files (the hub cache, offline): the named
/// column of every row; a column the files lack is named in the error.
#[test]
fn an_embedding_run_reads_sentences_from_a_hub_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    hub_cache(&cache, &rows("train.tsv"), &rows("dev.tsv"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let run = |column: &str| {
        Command::new(env!("CARGO_BIN_EXE_distill"))
            .env("DISTILL_CACHE", "off")
            .args(["run", "configs/tiny-embedding.yaml", "--set"])
            .arg(format!("output_dir={}", tmp.path().join("emb").display()))
            .args(["--set"])
            .arg(format!(
                "data.sentences=[{{hub: {{repo: nyu-mll/glue, config: sst2}}, columns: [{column}]}}]"
            ))
            .current_dir(root)
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let o = run("sentence");
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{text}");
    // The training file's distinct sentences, less the 40 held out.
    let distinct: std::collections::HashSet<String> =
        rows("train.tsv").into_iter().map(|r| r.0).collect();
    let want = format!("embedding: {} training sentences", distinct.len() - 40);
    assert!(text.contains(&want), "{want}: {text}");
    let o = run("text");
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        text.contains("train-00000-of-00001.parquet") && text.contains("no column `text`"),
        "{text}"
    );
}
