//! Arbitrary bytes as a data file through every reader: each GLUE task's TSV spec, and custom specs for
//! TSV (named and indexed columns, with and without header), CSV and JSONL, classification and
//! regression. Errors are expected; panics are bugs. Every example returned must carry a valid label.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use data::tasks::{Column, Format};
use data::{Label, Metric, TaskSpec};

fn path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("data.txt");
        (dir, p)
    })
    .1
}

fn custom(
    format: Format,
    header: bool,
    a: Column,
    b: Option<Column>,
    label: Column,
    labels: &[&str],
) -> TaskSpec {
    TaskSpec {
        name: "custom".into(),
        format,
        header,
        text_a: a,
        text_b: b,
        label,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        metric: if labels.is_empty() {
            Metric::PearsonSpearman
        } else {
            Metric::Accuracy
        },
        train_file: "train".into(),
        dev_file: "dev".into(),
        extra_dev: Vec::new(),
    }
}

fn specs() -> &'static Vec<TaskSpec> {
    static SPECS: OnceLock<Vec<TaskSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let n = |s: &str| Column::Name(s.to_string());
        let mut v: Vec<TaskSpec> = data::glue::names()
            .map(|t| TaskSpec::glue(t).expect("glue task"))
            .collect();
        v.push(custom(
            Format::Tsv,
            true,
            n("text"),
            Some(n("pair")),
            n("label"),
            &["a", "b", "c"],
        ));
        v.push(custom(
            Format::Tsv,
            false,
            Column::Index(0),
            Some(Column::Index(2)),
            Column::Index(1),
            &["0", "1"],
        ));
        v.push(custom(
            Format::Tsv,
            false,
            Column::Index(1),
            None,
            Column::Index(0),
            &[],
        ));
        v.push(custom(
            Format::Csv,
            true,
            n("text"),
            None,
            n("label"),
            &["0", "1"],
        ));
        v.push(custom(
            Format::Csv,
            false,
            Column::Index(0),
            Some(Column::Index(1)),
            Column::Index(2),
            &[],
        ));
        v.push(custom(
            Format::Jsonl,
            true,
            n("text"),
            Some(n("pair")),
            n("label"),
            &["0", "1"],
        ));
        v.push(custom(
            Format::Jsonl,
            true,
            n("text"),
            None,
            n("score"),
            &[],
        ));
        v.push(custom(
            Format::Jsonl,
            true,
            Column::Index(0),
            None,
            n("label"),
            &["0", "1"],
        ));
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let p = path();
    std::fs::write(p, data).expect("write");
    for spec in specs() {
        if let Ok(rows) = spec.read(p) {
            assert!(!rows.is_empty(), "{}: Ok with no examples", spec.name);
            for r in rows {
                match r.label {
                    Label::Class(c) => assert!(
                        c < spec.labels.len(),
                        "{}: class {c} out of range",
                        spec.name
                    ),
                    Label::Score(s) => assert!(
                        s.is_finite() && spec.labels.is_empty(),
                        "{}: bad score {s}",
                        spec.name
                    ),
                }
                assert_eq!(r.text_b.is_some(), spec.text_b.is_some());
            }
        }
    }
});
