//! Soft-only (augmented) examples: the task loss skips them (`ce` and the regression `mse` are
//! unchanged by adding them, and they get no gradient from it), and a training run mixing them with gold
//! examples under `kd` trains.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use candle_core::{Device, Tensor, Var};
use common::{data, fixture};
use data::tasks::NO_CLASS;
use data::Label;
use modeling::testutil::tiny_config;
use modeling::Classifier;
use student::loss::{ce, mse_labelled, IGNORE_CLASS};
use student::{train, TrainConfig};

fn close(a: &Tensor, b: &Tensor) {
    let (a, b) = (a.to_scalar::<f32>().unwrap(), b.to_scalar::<f32>().unwrap());
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
}

#[test]
fn the_soft_label_becomes_the_ignored_class_in_a_label_tensor() {
    // train.rs turns `Label::Class(c)` into `c as u32`: NO_CLASS must land on IGNORE_CLASS.
    assert_eq!(NO_CLASS as u32, IGNORE_CLASS);
    assert!(!Label::soft(false).is_gold() && !Label::soft(true).is_gold());
    assert!(Label::Class(0).is_gold() && Label::Score(0.5).is_gold());
}

#[test]
fn ce_is_unchanged_by_soft_only_rows_and_gives_them_no_gradient() {
    let d = Device::Cpu;
    let gold = Tensor::new(&[[1.0f32, -0.5, 0.2], [0.3, 0.9, -1.2]], &d).unwrap();
    let labels = Tensor::new(&[2u32, 1], &d).unwrap();
    let want = ce(&gold, &labels).unwrap();
    let extra = Tensor::new(&[[4.0f32, -3.0, 0.0], [0.0, 0.0, 9.0]], &d).unwrap();
    let all = Var::from_tensor(&Tensor::cat(&[&gold, &extra], 0).unwrap()).unwrap();
    let mixed = Tensor::new(&[2u32, IGNORE_CLASS, 1, IGNORE_CLASS], &d).unwrap();
    // Interleaved: rows 0 and 2 are gold.
    let rows = Tensor::new(&[0u32, 2, 1, 3], &d).unwrap();
    let logits = all.as_tensor().index_select(&rows, 0).unwrap();
    let got = ce(&logits, &mixed).unwrap();
    close(&got, &want);
    let grads = got.backward().unwrap();
    let g: Vec<Vec<f32>> = grads.get(&all).unwrap().to_vec2().unwrap();
    assert!(g[2].iter().chain(&g[3]).all(|&v| v == 0.0), "{g:?}");
    assert!(g[0].iter().any(|&v| v != 0.0));
    // A batch of soft-only rows: zero, still differentiable.
    let none = Tensor::new(&[IGNORE_CLASS, IGNORE_CLASS], &d).unwrap();
    let z = ce(&extra, &none).unwrap();
    assert_eq!(z.to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn regression_task_loss_skips_nan_scores() {
    let d = Device::Cpu;
    let s = Tensor::new(&[[0.5f32], [2.0], [7.0]], &d).unwrap();
    let y = Tensor::new(&[[1.0f32], [f32::NAN], [6.0]], &d).unwrap();
    // ((0.5 - 1)^2 + (7 - 6)^2) / 2
    assert!((mse_labelled(&s, &y).unwrap().to_scalar::<f32>().unwrap() - 0.625).abs() < 1e-6);
}

#[test]
fn training_mixes_gold_and_soft_only_examples() {
    let f = fixture(48);
    let mut f = f;
    // The second half of the training set has no gold label: kd teaches it, ce skips it.
    for l in f.train_labels.iter_mut().skip(24) {
        *l = Label::soft(false);
    }
    let n = f.train.len();
    let t = Tensor::new(
        (0..n)
            .flat_map(|i| {
                if i % 2 == 0 {
                    [2.0f32, -2.0]
                } else {
                    [-2.0, 2.0]
                }
            })
            .collect::<Vec<_>>(),
        &Device::Cpu,
    )
    .unwrap()
    .reshape((n, 2))
    .unwrap();
    let labels = vec!["0".to_string(), "1".to_string()];
    let model = Classifier::new(&tiny_config(), 2, 1, &Device::Cpu).unwrap();
    let cfg = TrainConfig {
        alpha_kd: 0.5,
        train: ::train::TrainSettings {
            epochs: 1,
            batch_size: 8,
            ..::train::TrainSettings::for_tasks()
        },
        ..Default::default()
    };
    let out = tempfile::tempdir().unwrap();
    let rep = train(&model, &data(&f, Some(&t), &labels), &cfg, out.path()).unwrap();
    assert_eq!(rep.steps, 6);
}
