//! `distill pretrain` through the real binary on configs/tiny-pretrain.yaml: the held-out loss goes
//! down and the export fills masks; k accumulated micro-batches equal one batch k times larger; a run
//! killed with SIGKILL, or cut with `--stop-after`, resumes to identical weights; config errors name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use candle_core::{Device, Tensor};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cmd(out: &Path, sets: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.env("DISTILL_CACHE", "off");
    c.args([
        "pretrain",
        "configs/tiny-pretrain.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
    ])
    .current_dir(root())
    .env("NO_COLOR", "1");
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pretraining_lowers_the_held_out_loss_and_the_export_fills_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    ok(&mut cmd(&out, &[]));
    let log = lines(&out.join("metrics.jsonl"));
    let dev: Vec<&serde_json::Value> = log.iter().filter(|l| l.get("dev").is_some()).collect();
    assert_eq!(dev.len(), 8, "one held-out evaluation per epoch");
    let loss = |v: &serde_json::Value| v["dev"]["loss"].as_f64().unwrap();
    let (first, last) = (loss(dev[0]), loss(dev[dev.len() - 1]));
    assert!(last < first - 0.5, "held-out loss {first} -> {last}");
    for d in &dev {
        let ppl = d["dev"]["perplexity"].as_f64().unwrap();
        assert!((ppl - loss(d).exp()).abs() < 1e-6 * ppl);
        let acc = d["dev"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    let train: Vec<f64> = log
        .iter()
        .filter_map(|l| l["terms"]["mlm"]["raw"].as_f64())
        .collect();
    assert!(
        train.len() >= 2 && train[train.len() - 1] < train[0],
        "{train:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("train_report.json")).unwrap())
            .unwrap();
    assert!(report["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(report["steps"], 32);
    // best/ is the lowest held-out loss.
    let best = report["best"]["scores"]["main"].as_f64().unwrap();
    assert!(dev.iter().all(|d| loss(d) >= best));

    let export = out.join("export");
    let o = Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args([
            "fill-mask",
            export.to_str().unwrap(),
            "the film [MASK] bad .",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(row["predictions"].as_array().unwrap().len(), 5);

    // A second run finds the cache fresh and the finished checkpoint: nothing is retrained.
    let again = ok(&mut cmd(&out, &[]));
    assert!(again.contains("fresh, reused"), "{again}");
    assert!(again.contains("resuming from"), "{again}");
}

fn weights(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

#[test]
fn accumulated_micro_batches_equal_one_large_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Dropout off: with it, the micro-batches draw other masks than the large batch.
    let common = ["train.max_steps=3", "student.dropout=0"];
    let mut sa = vec!["train.batch_size=4", "train.gradient_accumulation=4"];
    let mut sb = vec!["train.batch_size=16", "train.gradient_accumulation=1"];
    sa.extend(common);
    sb.extend(common);
    ok(&mut cmd(&a, &sa));
    ok(&mut cmd(&b, &sb));
    let (wa, wb) = (
        weights(&a.join("last/model.safetensors")),
        weights(&b.join("last/model.safetensors")),
    );
    assert_eq!(wa.len(), wb.len());
    for (k, ta) in &wa {
        let d = (ta - &wb[k])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "{k} differs by {d}");
    }
    let la = lines(&a.join("metrics.jsonl"));
    let lb = lines(&b.join("metrics.jsonl"));
    let (x, y) = (
        la[0]["loss"].as_f64().unwrap(),
        lb[0]["loss"].as_f64().unwrap(),
    );
    assert!((x - y).abs() < 1e-5, "step-1 loss {x} vs {y}");
}

#[test]
fn sigkilled_pretraining_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let sets = ["train.epochs=60"];
    let t0 = std::time::Instant::now();
    ok(&mut cmd(&a, &sets));
    let full = t0.elapsed();
    // Kill at a pseudo-random point inside the run (30%..80% of its length).
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let frac = 0.3 + 0.5 * (nanos % 1000) as f64 / 1000.0;
    let mut child = cmd(&b, &sets)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs_f64(full.as_secs_f64() * frac));
    child.kill().unwrap();
    child.wait().unwrap();
    let log = ok(&mut cmd(&b, &sets));
    assert!(log.contains("resuming from"), "{log}");
    for f in [
        "last/model.safetensors",
        "best/model.safetensors",
        "export/model.safetensors",
    ] {
        let x = std::fs::read(a.join(f)).unwrap();
        let y = std::fs::read(b.join(f)).unwrap();
        assert!(
            x == y,
            "{f} differs after resuming (killed at {frac:.2} of {full:?}):\n{log}"
        );
    }
}

#[test]
fn stop_after_cuts_the_run_and_a_later_run_finishes_the_same_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let sets = ["train.max_steps=8"];
    ok(&mut cmd(&a, &sets));
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("train_report.json")).unwrap())
            .unwrap()
    };
    ok(cmd(&b, &sets).args(["--stop-after", "3"]));
    assert_eq!(report(&b)["steps"], 3);
    assert!(b.join("export/model.safetensors").exists());
    let n = lines(&b.join("metrics.jsonl")).len();
    // Already at its stop point: resumes, trains nothing, exports again.
    let log = ok(cmd(&b, &sets).args(["--stop-after", "3"]));
    assert!(log.contains("resuming from"), "{log}");
    assert_eq!(report(&b)["steps"], 3);
    assert_eq!(lines(&b.join("metrics.jsonl")).len(), n);
    // Without the flag the run goes on to the config's end, on the uninterrupted run's path.
    ok(&mut cmd(&b, &sets));
    assert_eq!(report(&b)["steps"], 8);
    let (x, y) = (
        std::fs::read(a.join("last/model.safetensors")).unwrap(),
        std::fs::read(b.join("last/model.safetensors")).unwrap(),
    );
    assert!(x == y, "the resumed run's weights differ");
}

#[test]
fn config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    for (set, key) in [
        (
            "train.gradient_accumulation=0",
            "train.gradient_accumulation",
        ),
        ("train.bogus=1", "bogus"),
        ("masking.mask_prob=0", "masking"),
        ("held_out=1.5", "held_out"),
        ("corpus=[nowhere.txt]", "corpus[0]"),
        ("max_seq_len=100", "max_seq_len"),
        ("student.model_type=gpt", "student.model_type"),
        ("train.learning_rate=-1", "train.learning_rate"),
    ] {
        let o = cmd(&out, &[set]).output().unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{set} was accepted");
        assert!(
            t.contains(key),
            "{set}: the error does not name `{key}`:\n{t}"
        );
        if key != "max_seq_len" {
            // Checked when the config loads (max_seq_len against the model only once it is built): the
            // message names where the value came from, the `--set` that gave it or the file.
            assert!(
                t.contains(&format!("--set {set}")) || t.contains("tiny-pretrain.yaml"),
                "{set}: neither the --set nor the file named:\n{t}"
            );
        }
    }
}

#[test]
fn general_distillation_terms_train_against_the_online_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d");
    // Distillation only: the tiny teacher shares the student's vocabulary and shape.
    ok(&mut cmd(
        &out,
        &[
            "distill.teacher=configs/tiny/teacher",
            "distill.mlm_weight=0",
            "distill.terms=[{kind: hidden_mse, layer_map: [[1, 1], [2, 2]]}, {kind: attention_mse, layer_map: [[2, 2]]}]",
        ],
    ));
    let log = lines(&out.join("metrics.jsonl"));
    let hidden: Vec<f64> = log
        .iter()
        .filter_map(|l| l["terms"]["hidden_mse"]["raw"].as_f64())
        .collect();
    assert!(hidden.len() >= 2, "{log:?}");
    assert!(
        hidden[hidden.len() - 1] < hidden[0],
        "hidden_mse {hidden:?}"
    );
    assert!(
        log.iter().all(|l| l["terms"].get("mlm").is_none()),
        "mlm_weight 0 logs no MLM loss"
    );
    assert!(out.join("export/model.safetensors").is_file());

    // With the MLM loss as well, both are logged.
    let both = tmp.path().join("b");
    ok(&mut cmd(
        &both,
        &[
            "distill.teacher=configs/tiny/teacher",
            "distill.terms=[{kind: minilm_relations}]",
            "train.max_steps=4",
        ],
    ));
    let log = lines(&both.join("metrics.jsonl"));
    assert!(
        log[0]["terms"]["minilm_relations"]["raw"]
            .as_f64()
            .is_some(),
        "{:?}",
        log[0]
    );
    assert!(
        log[0]["terms"]["mlm"]["raw"].as_f64().is_some(),
        "{:?}",
        log[0]
    );

    // Keys named: a logit term, a layer the student lacks.
    for (set, key) in [
        ("distill.terms=[{kind: kd}]", "distill.terms[0].kind"),
        (
            "distill.terms=[{kind: hidden_mse, layer_map: [[9, 1]]}]",
            "distill.terms[0]",
        ),
    ] {
        let o = cmd(
            &tmp.path().join("e"),
            &["distill.teacher=configs/tiny/teacher", set],
        )
        .output()
        .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{set} was accepted");
        assert!(
            t.contains(key),
            "{set}: the error does not name `{key}`:\n{t}"
        );
    }
}
