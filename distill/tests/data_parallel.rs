//! Data-parallel training end to end: `distill train --nproc 2` (two processes, one micro-batch each per
//! update) ends with exactly the weights and the log of one process accumulating the same two
//! micro-batches per update; a rank that never shows up is named.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fails, ok};

/// `distill ARGS --set output_dir=OUT --set train.epochs=2` from the repository root, with `env` set
/// (and no group inherited from the environment the tests run in).
fn distill(args: &[&str], out: &Path, env: &[(&str, &str)]) -> Output {
    let o = format!("output_dir={}", out.display());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.args(args)
        .args(["--set", &o, "--set", "train.epochs=2"])
        .current_dir(root)
        .env_remove("DISTILL_WORLD_SIZE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn two_processes_equal_one_accumulating_two_micro_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let cfg = "configs/tiny.yaml";
    for d in [&one, &two] {
        ok(&distill(&["teacher", cfg], d, &[]));
    }
    ok(&distill(
        &["train", cfg, "--set", "train.gradient_accumulation=2"],
        &one,
        &[],
    ));
    let log = ok(&distill(&["train", cfg, "--nproc", "2"], &two, &[]));
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
    let again = ok(&distill(&["train", cfg], &two, &[]));
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
    fails(&o, &["ranks 1 did not connect"]);
    let o = distill(&["train", "configs/tiny.yaml", "--nproc", "2"], &out, &env);
    fails(&o, &["already a rank"]);
}

#[test]
fn data_parallel_pre_training_equals_accumulation_too() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &Path, extra: &[&str]| {
        let o = format!("output_dir={}", dir.display());
        let mut args = vec!["pretrain", "configs/tiny-pretrain.yaml", "--set", &o];
        args.extend_from_slice(extra);
        ok(&common::distill(&args))
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
