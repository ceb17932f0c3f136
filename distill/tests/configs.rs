//! Every shipped config parses and validates, and names a GLUE task whose reader exists (`*pretrain.yaml`:
//! a `distill pretrain` config; `task: embedding`: an embedding run's).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::Path;

#[test]
fn every_shipped_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with("pretrain.yaml") {
            // `distill pretrain` configs (their corpus may not exist yet: not checked here).
            let cfg: distill::config::pretrain::PretrainConfig =
                distill::config::parse(&p, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        } else if distill::config::embedding::is_embedding(&p, &[]) {
            // Their sentence files may live outside the repository (../shared): keys checked only.
            let cfg: distill::config::embedding::EmbeddingConfig =
                distill::config::parse(&p, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e:#}"));
        } else if p.extension().is_some_and(|e| e == "yaml") {
            let cfg =
                distill::config::load(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            cfg.task_spec().unwrap();
            n += 1;
        }
    }
    assert!(
        n >= 10,
        "expected the nine GLUE configs and tiny.yaml, found {n}"
    );
}

#[test]
fn overrides_and_environment_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(
        &p,
        "task: sst2\noutput_dir: ${DISTILL_TEST_OUT:-runs/default}\ndata: {dir: d}\nteacher: {model: m}\nstudent: {tokenizer: v.txt}\n",
    )
    .unwrap();
    let c = distill::config::load(&p, &[]).unwrap();
    assert_eq!(c.output_dir, Path::new("runs/default"));
    assert_eq!(c.train.epochs, 4);
    let c = distill::config::load(
        &p,
        &[
            "train.epochs=2".into(),
            "teacher.hidden_layers=[1, 3]".into(),
            "distill.alpha_kd=0".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.train.epochs, 2);
    assert_eq!(c.teacher.hidden_layers, vec![1, 3]);
    assert_eq!(c.distill.alpha_kd, 0.0);
}

/// Settings added later stay out of the run stamps at their defaults, so a run made before they existed
/// is still fresh (not retrained) after an upgrade; set, they are part of the stamp.
#[test]
fn default_training_settings_leave_stamps_unchanged() {
    let mut t = train::TrainSettings::for_tasks();
    let keys = |t: &train::TrainSettings| {
        let v = serde_json::to_value(t).unwrap();
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let before = [
        "batch_size",
        "epochs",
        "eval_every",
        "learning_rate",
        "max_grad_norm",
        "max_steps",
        "warmup_ratio",
        "weight_decay",
    ];
    assert_eq!(keys(&t), before);
    t.precision = train::Precision::Bf16;
    t.gradient_accumulation = 2;
    assert!(keys(&t).contains(&"precision".to_string()));
    assert!(keys(&t).contains(&"gradient_accumulation".to_string()));
}
