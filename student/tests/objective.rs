//! The distillation objective on tiny models: token-level terms against an online teacher go down over a
//! few steps, projections stay out of the exported weights, a resumed run (projections, balancing,
//! schedules) ends bit-identical, and the terms vanish when the student is the teacher.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use candle_core::{Device, Tensor};
use common::{data, fixture, weights};
use modeling::testutil::tiny_config;
use modeling::{Classifier, EncoderConfig, EncoderOutput, Want};
use student::objective::{Objective, StepInputs};
use student::terms::{
    ObjectiveConfig, Relation, TemperatureSchedule, TermKind, TermSpec, WeightSchedule,
};
use student::{train, train_until, TrainConfig};

fn narrow_student() -> EncoderConfig {
    // Half the teacher's width with the same head count: hidden terms need a projection 16 -> 32,
    // attention_mse compares 4 heads with 4.
    let mut c = tiny_config();
    c.hidden_size = 16;
    c.intermediate_size = 32;
    c
}

fn term(kind: TermKind, weight: f64) -> TermSpec {
    TermSpec::new(kind, weight)
}

fn cfg(terms: Vec<TermSpec>) -> TrainConfig {
    TrainConfig {
        train: ::train::TrainSettings {
            epochs: 5,
            batch_size: 16,
            learning_rate: 3e-3,
            ..::train::TrainSettings::for_tasks()
        },
        seed: 11,
        objective: ObjectiveConfig {
            terms,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `terms.<name>.raw` of every logged step.
fn logged(out: &std::path::Path, name: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["terms"][name]["raw"].as_f64())
        .collect()
}

/// A random tiny teacher whose attention is far from uniform (random init at std 0.02 attends almost
/// uniformly, which any student matches from the start): its query and key weights are scaled up.
fn peaky_teacher() -> Classifier {
    let t = Classifier::new(&tiny_config(), 2, 7, &Device::Cpu).unwrap();
    for (name, v) in t.named_vars() {
        if name.ends_with("self.query.weight") || name.ends_with("self.key.weight") {
            v.set(&(v.as_tensor() * 30.0).unwrap()).unwrap();
        }
    }
    t
}

/// Each term's raw value on the first 32 training examples, both models in eval mode.
fn term_values(
    obj: &mut Objective,
    student: &Classifier,
    teacher: &Classifier,
    f: &common::Fixture,
) -> Vec<f32> {
    let items: Vec<_> = f.train.iter().take(32).collect();
    let batch = modeling::batch::make_batch(&items, f.tok.pad_id(), &Device::Cpu).unwrap();
    let want = obj.want();
    let (logits, so) = student.forward_with(&batch, false, want).unwrap();
    let (tl, to) = teacher.forward_with(&batch, false, want).unwrap();
    let labels = Tensor::new(vec![0u32; items.len()], &Device::Cpu).unwrap();
    let x = step_inputs(&logits, &so, &labels, Some(&tl), &to, &batch.attention_mask);
    obj.loss(&x).unwrap().values.iter().map(|v| v.raw).collect()
}

#[test]
fn hidden_and_attention_terms_go_down_with_an_online_teacher() {
    let f = fixture(64);
    let labels = vec!["0".to_string(), "1".to_string()];
    let teacher = peaky_teacher();
    let student = Classifier::new(&narrow_student(), 2, 1, &Device::Cpu).unwrap();
    // kd without cached targets takes the online teacher's logits.
    let mut c = cfg(vec![
        term(TermKind::HiddenMse, 1.0),
        term(TermKind::AttentionMse, 1.0),
        term(TermKind::Kd, 0.5),
    ]);
    c.train.epochs = 10;
    c.train.learning_rate = 1e-2;
    let mut obj = Objective::new(&c, &student.config, Some(&teacher.config), &Device::Cpu).unwrap();
    let before = term_values(&mut obj, &student, &teacher, &f);
    let mut d = data(&f, None, &labels);
    d.teacher = Some(&teacher);
    let out = f.root.join("run");
    train(&student, &d, &c, &out).unwrap();
    obj.load(&out.join("last/objective.safetensors")).unwrap();
    let after = term_values(&mut obj, &student, &teacher, &f);
    for (i, name) in ["hidden_mse", "attention_mse", "kd"].iter().enumerate() {
        assert!(
            after[i] < 0.85 * before[i],
            "{name} did not go down: {} -> {}",
            before[i],
            after[i]
        );
        let v = logged(&out, name);
        assert!(
            v.len() >= 3 && v.iter().all(|x| x.is_finite()),
            "{name}: {v:?}"
        );
    }
    // The projection is in the checkpoint, not in the model weights that export copies.
    let best =
        candle_core::safetensors::load(out.join("best/model.safetensors"), &Device::Cpu).unwrap();
    assert!(best.keys().all(|k| !k.starts_with("distill.")));
    let saved =
        candle_core::safetensors::load(out.join("last/objective.safetensors"), &Device::Cpu)
            .unwrap();
    assert_eq!(saved["distill.hidden_mse.proj.weight"].dims(), [32, 16]);
}

#[test]
fn resumed_run_with_projection_balance_and_schedules_is_identical() {
    let f = fixture(64);
    let labels = vec!["0".to_string(), "1".to_string()];
    let teacher = Classifier::new(&tiny_config(), 2, 7, &Device::Cpu).unwrap();
    let mut kd = term(TermKind::Kd, 1.0);
    kd.temperature_schedule = Some(TemperatureSchedule::Flsw);
    let mut hid = term(TermKind::HiddenCosine, 1.0);
    hid.schedule = WeightSchedule::LinearDecay;
    hid.layer_map = Some(vec![[1, 1], [2, 2]]);
    let mut rel = term(TermKind::MinilmRelations, 1.0);
    rel.relation_heads = Some(2);
    rel.relations = Some(vec![Relation::Vv]);
    let mut c = cfg(vec![kd, hid, rel, term(TermKind::Ce, 1.0)]);
    c.train.epochs = 2;
    c.train.eval_every = 3;
    c.objective.balance = true;
    c.objective.projection_lr = Some(1e-2);
    let run = |seed: u64, dir: &str, stop: Option<usize>| {
        let m = Classifier::new(&narrow_student(), 2, seed, &Device::Cpu).unwrap();
        let mut d = data(&f, None, &labels);
        d.teacher = Some(&teacher);
        let out = f.root.join(dir);
        match stop {
            Some(s) => train_until(&m, &d, &c, &out, &move |k| k == s).unwrap(),
            None => train(&m, &d, &c, &out).unwrap(),
        };
        m
    };
    let full = run(5, "full", None);
    let part = run(5, "part", Some(5));
    drop(part);
    let resumed = run(99, "part", None);
    assert!(weights(&full) == weights(&resumed), "resumed run differs");
    let a = std::fs::read(f.root.join("full/last/objective.safetensors")).unwrap();
    let b = std::fs::read(f.root.join("part/last/objective.safetensors")).unwrap();
    assert!(a == b, "projections or running magnitudes differ");
}

fn step_inputs<'a>(
    logits: &'a Tensor,
    s: &'a EncoderOutput,
    labels: &'a Tensor,
    t_logits: Option<&'a Tensor>,
    t: &'a EncoderOutput,
    mask: &'a Tensor,
) -> StepInputs<'a> {
    StepInputs {
        logits,
        student: s,
        labels,
        teacher_logits: t_logits,
        teacher: Some(t),
        mask,
        words: None,
        progress: 0.0,
    }
}

#[test]
fn every_teacher_term_is_zero_when_the_student_is_the_teacher() {
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let f = fixture(8);
    let items: Vec<_> = f.train.iter().collect();
    let batch = modeling::batch::make_batch(&items, f.tok.pad_id(), &Device::Cpu).unwrap();
    let mut kd = term(TermKind::Kd, 1.0);
    kd.temperature_schedule = Some(TemperatureSchedule::Cwsm);
    let c = cfg(vec![
        kd,
        term(TermKind::LogitsMse, 1.0),
        term(TermKind::HiddenMse, 1.0),
        term(TermKind::HiddenCosine, 1.0),
        term(TermKind::AttentionMse, 1.0),
        term(TermKind::MinilmRelations, 1.0),
    ]);
    let mut obj = Objective::new(&c, &model.config, Some(&model.config), &Device::Cpu).unwrap();
    assert!(
        obj.named_vars().is_empty(),
        "equal widths need no projection"
    );
    let want = obj.want();
    assert_eq!(
        want,
        Want {
            attentions: true,
            qkv: true
        }
    );
    let (logits, out) = model.forward_with(&batch, false, want).unwrap();
    let labels = Tensor::new(vec![0u32; f.train.len()], &Device::Cpu).unwrap();
    let x = step_inputs(
        &logits,
        &out,
        &labels,
        Some(&logits),
        &out,
        &batch.attention_mask,
    );
    let l = obj.loss(&x).unwrap();
    assert_eq!(l.values.len(), 6);
    for v in &l.values {
        assert!(v.raw.abs() < 1e-5, "{}: {}", v.name, v.raw);
    }

    // Word-aligned (as with different tokenizers): the same states pooled per word still give 0.
    let spec = data::TaskSpec::glue("sst2").unwrap();
    let ex = spec.read(&f.root.join("train.tsv")).unwrap();
    let words: Vec<Vec<Option<u32>>> = ex
        .iter()
        .map(|e| f.tok.encode_words(&e.text_a, None).unwrap().words)
        .collect();
    let rows: Vec<&[Option<u32>]> = words.iter().map(Vec::as_slice).collect();
    let s = batch.input_ids.dim(1).unwrap();
    let pools = student::loss::word_pools(&rows, &rows, s, s, &Device::Cpu).unwrap();
    let mut x = x;
    x.words = Some(&pools);
    let l = obj.loss(&x).unwrap();
    for v in &l.values {
        assert!(v.raw.abs() < 1e-5, "words: {}: {}", v.name, v.raw);
    }
}

#[test]
fn identity_projection_gives_zero_and_gradients_reach_it() {
    // Student states of width 16, teacher states = [student, 0] of width 32: with the projection set to
    // [I; 0] and no bias, hidden_mse is 0.
    let (b, s, hs, ht) = (2, 5, 16, 32);
    let mut scfg = tiny_config();
    scfg.hidden_size = hs;
    scfg.num_hidden_layers = 1;
    let mut tcfg = tiny_config();
    tcfg.num_hidden_layers = 1;
    let c = cfg(vec![term(TermKind::HiddenMse, 1.0)]);
    let mut obj = Objective::new(&c, &scfg, Some(&tcfg), &Device::Cpu).unwrap();
    let vars = obj.named_vars();
    assert_eq!(vars.len(), 2, "one shared projection: weight and bias");
    let eye = Tensor::eye(hs, candle_core::DType::F32, &Device::Cpu).unwrap();
    let zeros = Tensor::zeros((ht - hs, hs), candle_core::DType::F32, &Device::Cpu).unwrap();
    for (name, v) in &vars {
        if name.ends_with("weight") {
            v.set(&Tensor::cat(&[&eye, &zeros], 0).unwrap()).unwrap();
        } else {
            v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    let st: Vec<Tensor> = (0..2)
        .map(|i| Tensor::randn(0f32, 1.0, (b, s, hs), &Device::Cpu).unwrap() * (i + 1) as f64)
        .map(|t| t.unwrap())
        .collect();
    let pad = Tensor::zeros((b, s, ht - hs), candle_core::DType::F32, &Device::Cpu).unwrap();
    let tt: Vec<Tensor> = st
        .iter()
        .map(|x| Tensor::cat(&[x, &pad], 2).unwrap())
        .collect();
    let enc = |h: Vec<Tensor>| EncoderOutput {
        hidden_states: h,
        attentions: vec![],
        qkv: vec![],
    };
    let (so, to) = (enc(st), enc(tt));
    let logits = Tensor::zeros((b, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let labels = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let mask = Tensor::ones((b, s), candle_core::DType::F32, &Device::Cpu).unwrap();
    let x = step_inputs(&logits, &so, &labels, None, &to, &mask);
    let l = obj.loss(&x).unwrap();
    assert!(l.values[0].raw.abs() < 1e-10, "{}", l.values[0].raw);

    // Off the identity, the projection's gradient is finite and non-zero.
    let (_, w) = &vars.iter().find(|(n, _)| n.ends_with("weight")).unwrap();
    w.set(&(w.as_tensor() * 0.5).unwrap()).unwrap();
    let l = obj.loss(&x).unwrap();
    let g = l.total.backward().unwrap();
    let gw = g.get(w.as_tensor()).unwrap();
    let n: f32 = gw.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!(n.is_finite() && n > 0.0, "{n}");
}

#[test]
fn schedules_and_balance_scale_the_weighted_values() {
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let f = fixture(8);
    let items: Vec<_> = f.train.iter().collect();
    let batch = modeling::batch::make_batch(&items, f.tok.pad_id(), &Device::Cpu).unwrap();
    let (logits, out) = model.forward(&batch, false, false).unwrap();
    let labels = Tensor::new(vec![1u32; f.train.len()], &Device::Cpu).unwrap();
    let t_logits = (&logits * -1.0).unwrap();
    let mut grow = term(TermKind::LogitsMse, 2.0);
    grow.schedule = WeightSchedule::LinearGrowth;
    let mut decay = term(TermKind::Ce, 3.0);
    decay.schedule = WeightSchedule::LinearDecay;
    let mut c = cfg(vec![grow, decay]);
    let mut x = step_inputs(
        &logits,
        &out,
        &labels,
        Some(&t_logits),
        &out,
        &batch.attention_mask,
    );
    x.progress = 0.25;
    let mut obj = Objective::new(&c, &model.config, None, &Device::Cpu).unwrap();
    let v = obj.loss(&x).unwrap().values;
    assert!((v[0].weighted - v[0].raw * 2.0 * 0.25).abs() < 1e-6);
    assert!((v[1].weighted - v[1].raw * 3.0 * 0.75).abs() < 1e-6);

    // Balanced: the first step divides each term by itself, leaving its scheduled weight.
    c.objective.balance = true;
    let mut obj = Objective::new(&c, &model.config, None, &Device::Cpu).unwrap();
    let v = obj.loss(&x).unwrap().values;
    assert!((v[0].weighted - 0.5).abs() < 1e-5, "{v:?}");
    assert!((v[1].weighted - 2.25).abs() < 1e-5, "{v:?}");
}
