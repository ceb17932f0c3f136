//! The GLUE benchmark's nine tasks, in one table: how their files and the Hub's `nyu-mll/glue` dataset
//! lay them out, their labels and their official metric; and the task spec of each. Hub reading, test-set
//! submissions and model cards read it too.

use crate::tasks::{Column, Format, Metric, TaskSpec};

/// One GLUE task.
pub struct GlueTask {
    /// The config's `task:`, and the Hub dataset's config name.
    pub name: &'static str,
    /// Its name in GLUE's folders and submission files (`SST-2`).
    pub submission: &'static str,
    /// The header names of its text columns in GLUE's TSV files (test files included).
    pub tsv_text: (&'static str, Option<&'static str>),
    /// The label column of its TSV training and dev files.
    pub tsv_label: &'static str,
    /// The names of its text columns in the Hub's Parquet files.
    pub hub_text: (&'static str, Option<&'static str>),
    /// The labels as its files spell them, in index order; empty for regression (STS-B).
    pub labels: &'static [&'static str],
    /// The class names people read for files that hold bare ids (SST-2's `0`/`1`), from the Hub dataset's
    /// card; empty when the files' labels are names already.
    pub label_names: &'static [&'static str],
    pub metric: Metric,
}

const BINARY: &[&str] = &["0", "1"];
const ENTAIL: &[&str] = &["entailment", "not_entailment"];
const PAIR: (&str, Option<&str>) = ("sentence1", Some("sentence2"));

pub const GLUE: [GlueTask; 9] = [
    GlueTask {
        name: "sst2",
        submission: "SST-2",
        tsv_text: ("sentence", None),
        tsv_label: "label",
        hub_text: ("sentence", None),
        labels: BINARY,
        label_names: &["negative", "positive"],
        metric: Metric::Accuracy,
    },
    GlueTask {
        name: "cola",
        submission: "CoLA",
        tsv_text: ("sentence", None),
        tsv_label: "label",
        hub_text: ("sentence", None),
        labels: BINARY,
        label_names: &["unacceptable", "acceptable"],
        metric: Metric::Matthews,
    },
    GlueTask {
        name: "mrpc",
        submission: "MRPC",
        tsv_text: ("#1 String", Some("#2 String")),
        tsv_label: "Quality",
        hub_text: PAIR,
        labels: BINARY,
        label_names: &["not_equivalent", "equivalent"],
        metric: Metric::F1Accuracy,
    },
    GlueTask {
        name: "stsb",
        submission: "STS-B",
        tsv_text: PAIR,
        tsv_label: "score",
        hub_text: PAIR,
        labels: &[],
        label_names: &[],
        metric: Metric::PearsonSpearman,
    },
    GlueTask {
        name: "qqp",
        submission: "QQP",
        tsv_text: ("question1", Some("question2")),
        tsv_label: "is_duplicate",
        hub_text: ("question1", Some("question2")),
        labels: BINARY,
        label_names: &["not_duplicate", "duplicate"],
        metric: Metric::F1Accuracy,
    },
    GlueTask {
        name: "mnli",
        submission: "MNLI",
        tsv_text: PAIR,
        tsv_label: "gold_label",
        hub_text: ("premise", Some("hypothesis")),
        labels: &["contradiction", "entailment", "neutral"],
        label_names: &[],
        metric: Metric::Accuracy,
    },
    GlueTask {
        name: "qnli",
        submission: "QNLI",
        tsv_text: ("question", Some("sentence")),
        tsv_label: "label",
        hub_text: ("question", Some("sentence")),
        labels: ENTAIL,
        label_names: &[],
        metric: Metric::Accuracy,
    },
    GlueTask {
        name: "rte",
        submission: "RTE",
        tsv_text: PAIR,
        tsv_label: "label",
        hub_text: PAIR,
        labels: ENTAIL,
        label_names: &[],
        metric: Metric::Accuracy,
    },
    GlueTask {
        name: "wnli",
        submission: "WNLI",
        tsv_text: PAIR,
        tsv_label: "label",
        hub_text: PAIR,
        labels: BINARY,
        label_names: &["not_entailment", "entailment"],
        metric: Metric::Accuracy,
    },
];

/// The GLUE task of that name.
pub fn task(name: &str) -> Option<&'static GlueTask> {
    GLUE.iter().find(|t| t.name == name)
}

/// The names of the GLUE tasks, in the table's order.
pub fn names() -> impl Iterator<Item = &'static str> {
    GLUE.iter().map(|t| t.name)
}

/// A task spec's GLUE side: the spec of a GLUE task, its test files and its readable class names.
impl TaskSpec {
    /// The class names people read, in index order (predictions, `id2label`, the model card): for the
    /// GLUE tasks whose files hold bare ids, the names of the Hub's `nyu-mll/glue` dataset card (SST-2
    /// `negative`/`positive`); otherwise the labels as the files spell them (RTE's `entailment`).
    pub fn label_names(&self) -> Vec<String> {
        match task(&self.name) {
            Some(t) if !t.label_names.is_empty() && self.labels == t.labels => {
                t.label_names.iter().map(|s| s.to_string()).collect()
            }
            _ => self.labels.clone(),
        }
    }

    /// The GLUE task of that name (`GLUE`): its TSV files as GLUE lays them out.
    pub fn glue(name: &str) -> Option<Self> {
        let t = task(name)?;
        let n = |s: &str| Column::Name(s.to_string());
        let spec = TaskSpec {
            name: name.to_string(),
            format: Format::Tsv,
            header: true,
            text_a: n(t.tsv_text.0),
            text_b: t.tsv_text.1.map(n),
            label: n(t.tsv_label),
            labels: t.labels.iter().map(|s| s.to_string()).collect(),
            metric: t.metric,
            train_file: "train.tsv".into(),
            dev_file: "dev.tsv".into(),
            extra_dev: Vec::new(),
        };
        Some(match name {
            // CoLA's training and dev files have no header: source, label, original mark, sentence.
            "cola" => TaskSpec {
                header: false,
                text_a: Column::Index(3),
                label: Column::Index(1),
                ..spec
            },
            "mnli" => TaskSpec {
                dev_file: "dev_matched.tsv".into(),
                extra_dev: vec![("mm".into(), "dev_mismatched.tsv".into())],
                ..spec
            },
            _ => spec,
        })
    }

    /// GLUE test files of this task (no labels) and the submission file name of each, with the header
    /// names of their text columns: `(submission name, file, text_a, text_b)`.
    pub fn glue_test_files(
        &self,
    ) -> Vec<(
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    )> {
        let Some(t) = task(&self.name) else {
            return Vec::new();
        };
        let (a, b) = t.tsv_text;
        if t.name != "mnli" {
            return vec![(t.submission, "test.tsv", a, b)];
        }
        // The AX diagnostic set is predicted with the MNLI model; GLUE's download script puts it in
        // diagnostic/, other mirrors in AX/.
        vec![
            ("MNLI-m", "test_matched.tsv", a, b),
            ("MNLI-mm", "test_mismatched.tsv", a, b),
            ("AX", "../diagnostic/diagnostic.tsv", a, b),
            ("AX", "../AX/test.tsv", a, b),
        ]
    }
}
