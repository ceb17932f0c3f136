//! Fixtures shared by the training tests: the tiny SST-2-like dataset tokenised, and its `TrainData`.
#![allow(dead_code)]

use candle_core::Tensor;
use data::{Label, Metric, TaskSpec};
use modeling::testutil::{tiny_sst2, write_vocab};
use modeling::{Classifier, Encoded, TextTokenizer};
use student::TrainData;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub root: std::path::PathBuf,
    pub tok: TextTokenizer,
    pub train: Vec<Encoded>,
    pub train_labels: Vec<Label>,
    pub dev: Vec<Encoded>,
    pub dev_labels: Vec<Label>,
}

pub fn fixture(n_train: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    tiny_sst2(&root, n_train, 40).unwrap();
    write_vocab(&root.join("vocab.txt")).unwrap();
    let tok = TextTokenizer::from_file(&root.join("vocab.txt"), 32, false).unwrap();
    let spec = TaskSpec::glue("sst2").unwrap();
    let enc = |name: &str| {
        let ex = spec.read(&root.join(name)).unwrap();
        let ids: Vec<Encoded> = ex
            .iter()
            .map(|e| tok.encode(&e.text_a, None).unwrap())
            .collect();
        (ids, ex.iter().map(|e| e.label).collect::<Vec<_>>())
    };
    let (train, train_labels) = enc("train.tsv");
    let (dev, dev_labels) = enc("dev.tsv");
    Fixture {
        _dir: dir,
        root,
        tok,
        train,
        train_labels,
        dev,
        dev_labels,
    }
}

pub fn data<'a>(
    f: &'a Fixture,
    teacher: Option<&'a Tensor>,
    labels: &'a [String],
) -> TrainData<'a> {
    TrainData {
        train: &f.train,
        train_labels: &f.train_labels,
        dev: &f.dev,
        dev_labels: &f.dev_labels,
        teacher_logits: teacher,
        teacher: None,
        align: None,
        pad_id: f.tok.pad_id(),
        metric: Metric::Accuracy,
        label_names: labels,
        group: None,
        tensorboard: None,
    }
}

pub fn weights(m: &Classifier) -> Vec<Vec<f32>> {
    m.named_vars()
        .iter()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}
