//! Data-parallel training end to end: `distill train --nproc 2` (two processes, one micro-batch each per
//! update) ends with exactly the weights and the log of one process accumulating the same two
//! micro-batches per update; a rank that never shows up is named.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn distill(args: &[&str], out: &Path, env: &[(&str, &str)]) -> Output {
    let o = format!("output_dir={}", out.display());
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.args(args)
        .args(["--set", &o, "--set", "train.epochs=2"])
        .current_dir(root())
        .env_remove("DISTILL_WORLD_SIZE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(o: Output) -> String {
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    t
}

#[test]
fn two_processes_equal_one_accumulating_two_micro_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let cfg = "configs/tiny.yaml";
    for d in [&one, &two] {
        ok(distill(&["teacher", cfg], d, &[]));
    }
    ok(distill(
        &["train", cfg, "--set", "train.gradient_accumulation=2"],
        &one,
        &[],
    ));
    let log = ok(distill(&["train", cfg, "--nproc", "2"], &two, &[]));
    assert!(log.contains("data-parallel: 2 processes"), "{log}");
    let read = |d: &Path, f: &str| std::fs::read(d.join("student").join(f)).unwrap();
    assert!(
        read(&one, "last/model.safetensors") == read(&two, "last/model.safetensors"),
        "the two runs end with different weights"
    );
    assert_eq!(
        String::from_utf8(read(&one, "metrics.jsonl")).unwrap(),
        String::from_utf8(read(&two, "metrics.jsonl")).unwrap()
    );
    let state = String::from_utf8(read(&two, "last/trainer_state.json")).unwrap();
    assert!(state.contains("\"world\": 2"), "{state}");

    // Run again as one process: the checkpoint of two is not resumed (another global batch).
    let again = ok(distill(&["train", cfg], &two, &[]));
    assert!(
        again.contains("retraining from scratch") || again.contains("data-parallel processes"),
        "{again}"
    );
}

#[test]
fn a_rank_that_never_connects_is_named_and_nproc_inside_a_group_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let env = [
        ("DISTILL_WORLD_SIZE", "2"),
        ("DISTILL_RANK", "0"),
        ("DISTILL_MASTER", port.as_str()),
        ("DISTILL_CONNECT_TIMEOUT", "1"),
    ];
    let o = distill(&["train", "configs/tiny.yaml"], &out, &env);
    let t = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(t.contains("ranks 1 did not connect"), "{t}");
    let o = distill(&["train", "configs/tiny.yaml", "--nproc", "2"], &out, &env);
    let t = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && t.contains("already a rank"), "{t}");
}

#[test]
fn data_parallel_pre_training_equals_accumulation_too() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &Path, extra: &[&str]| {
        let o = format!("output_dir={}", dir.display());
        let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
        c.args(["pretrain", "configs/tiny-pretrain.yaml", "--set", &o])
            .args(extra)
            .current_dir(root())
            .env_remove("DISTILL_WORLD_SIZE");
        ok(c.output().unwrap())
    };
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    run(&one, &["--set", "train.gradient_accumulation=2"]);
    run(
        &two,
        &["--set", "train.gradient_accumulation=1", "--nproc", "2"],
    );
    for f in [
        "last/model.safetensors",
        "export/model.safetensors",
        "metrics.jsonl",
    ] {
        assert!(
            std::fs::read(one.join(f)).unwrap() == std::fs::read(two.join(f)).unwrap(),
            "{f} differs"
        );
    }
}
