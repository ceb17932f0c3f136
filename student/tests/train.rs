//! The training loop on the tiny fixtures: the loss goes down, dev accuracy rises above chance, a killed
//! run resumes to the same weights, and export -> reload gives the same logits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use candle_core::{Device, Tensor};
use common::{data, fixture};
use data::Label;
use modeling::testutil::tiny_config;
use modeling::{Classifier, ModelSource, TextTokenizer};
use student::{train, train_until, TrainConfig};

fn cfg() -> TrainConfig {
    TrainConfig {
        train: ::train::TrainSettings {
            epochs: 4,
            batch_size: 16,
            learning_rate: 3e-3,
            ..::train::TrainSettings::for_tasks()
        },
        seed: 11,
        alpha_kd: 0.0,
        ..Default::default()
    }
}

use common::weights;

#[test]
fn loss_goes_down_and_dev_accuracy_beats_chance() {
    let f = fixture(240);
    let labels = vec!["0".to_string(), "1".to_string()];
    let model = Classifier::new(&tiny_config(), 2, 1, &Device::Cpu).unwrap();
    let out = f.root.join("run");
    let c = TrainConfig {
        train: ::train::TrainSettings {
            epochs: 8,
            ..cfg().train
        },
        ..cfg()
    };
    let report = train(&model, &data(&f, None, &labels), &c, &out).unwrap();
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("loss").and_then(|x| x.as_f64()))
        .collect();
    assert!(losses.len() >= 3);
    assert!(losses.last().unwrap() < &(losses[0] * 0.8), "{losses:?}");
    let best = report.best.unwrap();
    assert!(best.scores.main > 0.7, "dev accuracy {}", best.scores.main);
    assert!(out.join("best/model.safetensors").is_file());
    assert_eq!(report.history.len(), 8, "one evaluation per epoch");
}

#[test]
fn distillation_with_teacher_logits_runs_and_pulls_towards_the_teacher() {
    let f = fixture(240);
    let labels = vec!["0".to_string(), "1".to_string()];
    // A "teacher" that is confident in the gold label.
    let rows: Vec<f32> = f
        .train_labels
        .iter()
        .flat_map(|l| {
            if *l == Label::Class(1) {
                [-3.0f32, 3.0]
            } else {
                [3.0, -3.0]
            }
        })
        .collect();
    let t = Tensor::from_vec(rows, (f.train.len(), 2), &Device::Cpu).unwrap();
    let model = Classifier::new(&tiny_config(), 2, 1, &Device::Cpu).unwrap();
    let c = TrainConfig {
        alpha_kd: 1.0,
        temperature: 2.0,
        ..cfg()
    };
    let report = train(&model, &data(&f, Some(&t), &labels), &c, &f.root.join("kd")).unwrap();
    assert!(report.best.unwrap().scores.main > 0.7);
    // Wrong-shaped targets are refused before training.
    let bad = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = train(
        &model,
        &data(&f, Some(&bad), &labels),
        &c,
        &f.root.join("bad"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("stale target cache"), "{err}");
}

#[test]
fn same_seed_same_weights_and_resume_continues_the_same_run() {
    let f = fixture(64);
    let labels = vec!["0".to_string(), "1".to_string()];
    let c = TrainConfig {
        train: ::train::TrainSettings {
            epochs: 2,
            eval_every: 3,
            ..cfg().train
        },
        ..cfg()
    };
    let full = Classifier::new(&tiny_config(), 2, 5, &Device::Cpu).unwrap();
    train(&full, &data(&f, None, &labels), &c, &f.root.join("full")).unwrap();

    // Interrupted after 5 of 8 steps, then resumed by a fresh process (a differently seeded model).
    let part = Classifier::new(&tiny_config(), 2, 5, &Device::Cpu).unwrap();
    let r = train_until(
        &part,
        &data(&f, None, &labels),
        &c,
        &f.root.join("part"),
        &|s| s == 5,
    )
    .unwrap();
    assert_eq!(r.steps, 5);
    let resumed = Classifier::new(&tiny_config(), 2, 99, &Device::Cpu).unwrap();
    let report = train(&resumed, &data(&f, None, &labels), &c, &f.root.join("part")).unwrap();
    assert_eq!(report.resumed_from, 5);
    assert!(
        weights(&full) == weights(&resumed),
        "resumed run ends where the full run ends"
    );

    let again = Classifier::new(&tiny_config(), 2, 5, &Device::Cpu).unwrap();
    train(&again, &data(&f, None, &labels), &c, &f.root.join("again")).unwrap();
    assert!(
        weights(&full) == weights(&again),
        "training is deterministic"
    );
}

#[test]
fn export_then_reload_gives_identical_logits() {
    let f = fixture(48);
    let labels = vec!["neg".to_string(), "pos".to_string()];
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let c = TrainConfig {
        train: ::train::TrainSettings {
            epochs: 1,
            ..cfg().train
        },
        ..cfg()
    };
    train(&model, &data(&f, None, &labels), &c, &f.root.join("run")).unwrap();
    let best = f.root.join("run/best");
    let out = f.root.join("export");
    modeling::export::export(&best, &f.tok, &out).unwrap();
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let files = ModelSource::Local(out.clone()).resolve(false).unwrap();
    let (exported, report) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    assert!(report.has_head);
    assert_eq!(exported.config.labels(), labels);
    let (best_model, _) = Classifier::load(
        &ModelSource::Local(best).resolve(false).unwrap(),
        None,
        0,
        &Device::Cpu,
    )
    .unwrap();
    let tok2 = TextTokenizer::from_file(&out.join("tokenizer.json"), 32, false).unwrap();
    assert_eq!(
        tok2.encode("The movie was Brilliant", None).unwrap(),
        f.tok.encode("The movie was Brilliant", None).unwrap()
    );
    let a = inference::logits(&exported, &f.dev, f.tok.pad_id(), 8, None)
        .unwrap()
        .logits;
    let b = inference::logits(&best_model, &f.dev, f.tok.pad_id(), 8, None)
        .unwrap()
        .logits;
    assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
}

#[test]
fn nan_loss_stops_training_with_the_step_named() {
    let f = fixture(32);
    let labels = vec!["0".to_string(), "1".to_string()];
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let t = Tensor::full(f32::NAN, (f.train.len(), 2), &Device::Cpu).unwrap();
    let c = TrainConfig {
        alpha_kd: 0.5,
        ..cfg()
    };
    let err = train(
        &model,
        &data(&f, Some(&t), &labels),
        &c,
        &f.root.join("nan"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("step 1") && err.contains("not finite"),
        "{err}"
    );
}

#[test]
fn bf16_and_f16_train_the_f32_weights_and_f16_resumes_with_its_loss_scale() {
    use ::train::Precision;
    let f = fixture(240);
    let labels = vec!["0".to_string(), "1".to_string()];
    for precision in [Precision::Bf16, Precision::F16] {
        let model = Classifier::new(&tiny_config(), 2, 1, &Device::Cpu).unwrap();
        let out = f.root.join(precision.name());
        let c = TrainConfig {
            train: ::train::TrainSettings {
                epochs: 8,
                precision,
                ..cfg().train
            },
            ..cfg()
        };
        let report = train(&model, &data(&f, None, &labels), &c, &out).unwrap();
        let best = report.best.unwrap().scores.main;
        assert!(best > 0.7, "{precision:?}: dev accuracy {best}");
        assert!(model
            .named_vars()
            .iter()
            .all(|(_, v)| v.dtype() == candle_core::DType::F32));
        let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        let scale = first.get("loss_scale").and_then(|s| s.as_f64());
        assert_eq!(scale, (precision == Precision::F16).then_some(65536.0));
    }

    // An f16 run interrupted and resumed ends where the uninterrupted one does, loss scale included.
    let f = fixture(64);
    let c = TrainConfig {
        train: ::train::TrainSettings {
            epochs: 2,
            eval_every: 3,
            precision: Precision::F16,
            ..cfg().train
        },
        ..cfg()
    };
    let full = Classifier::new(&tiny_config(), 2, 5, &Device::Cpu).unwrap();
    train(&full, &data(&f, None, &labels), &c, &f.root.join("full")).unwrap();
    let part = Classifier::new(&tiny_config(), 2, 5, &Device::Cpu).unwrap();
    let stop = |s| s == 5;
    train_until(
        &part,
        &data(&f, None, &labels),
        &c,
        &f.root.join("part"),
        &stop,
    )
    .unwrap();
    let state = std::fs::read_to_string(f.root.join("part/last/trainer_state.json")).unwrap();
    assert!(state.contains("\"loss_scale\""), "{state}");
    let resumed = Classifier::new(&tiny_config(), 2, 99, &Device::Cpu).unwrap();
    let report = train(&resumed, &data(&f, None, &labels), &c, &f.root.join("part")).unwrap();
    assert_eq!(report.resumed_from, 5);
    assert!(weights(&full) == weights(&resumed));
}
