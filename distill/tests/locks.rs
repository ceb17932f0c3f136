//! One writer per output folder, end to end with the real binary: a second writer is refused at once,
//! names the holder, and changes nothing; a killed holder frees the folder; readers of an export keep an
//! export from replacing it; teacher shards lock only their own file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{fails, ok, tiny_cmd, tiny_run};
use inference::lock::{Lock, LOCK_FILE};

/// Every file under `dir` (but the lock file) with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != LOCK_FILE {
                out.insert(p, (m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

#[test]
fn a_second_writer_is_refused_names_the_holder_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    ok(&tiny_run(&out, &[]));
    let before = snapshot(&out);
    let held = Lock::folder(&out).unwrap();
    let me = format!("pid {}", std::process::id());
    let folder = out.display().to_string();
    for cmd in [
        vec!["run"],
        vec!["train"],
        vec!["teacher"],
        vec!["compare"],
        vec!["export"],
        vec!["sweep"],
        vec!["run", "--set", "train.learning_rate=1.0e-2"],
    ] {
        let o = tiny_cmd(&out, &cmd);
        fails(&o, &[&folder, "is in use by", &me, "left unchanged"]);
    }
    assert_eq!(
        snapshot(&out),
        before,
        "a refused writer changed the folder"
    );
    drop(held);
    ok(&tiny_cmd(&out, &["compare"]));
}

#[test]
fn two_runs_on_one_folder_the_second_is_refused_and_a_killed_holder_frees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // A first run long enough to still be running when the second starts.
    let mut first = Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(["run", "configs/tiny.yaml", "--set"])
        .arg(format!("output_dir={}", out.display()))
        .args(["--set", "teacher.finetune.epochs=100000"])
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("teacher").is_dir() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the first run never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = tiny_run(&out, &["train.learning_rate=1.0e-2"]);
    let pid = format!("pid {}", first.id());
    fails(&second, &["is in use by", &pid, "run configs/tiny.yaml"]);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the refused run stopped the first one"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // The kernel dropped the killed run's lock: the next writer goes ahead.
    ok(&tiny_cmd(&out, &["teacher", "--finetune-only"]));
}

#[test]
fn readers_keep_an_export_from_being_replaced_and_wait_for_no_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    ok(&tiny_run(&out, &[]));
    let export = out.join("export");
    let reading = Lock::reader(&export).unwrap().unwrap();
    let o = tiny_cmd(&out, &["export"]);
    fails(&o, &[&export.display().to_string(), "is in use by"]);
    assert!(export.join("model.safetensors").is_file());
    // Two readers at once are fine.
    let p = common::distill(&["predict", export.to_str().unwrap(), "a fine film"]);
    ok(&p);
    drop(reading);
    ok(&tiny_cmd(&out, &["export"]));
    let writing = Lock::replacing(&export).unwrap();
    let p = common::distill(&["predict", export.to_str().unwrap(), "a fine film"]);
    fails(&p, &["is being written by"]);
    drop(writing);
    // Readers leave nothing in the folder (a Hub upload of it carries no lock file), and nor does export.
    ok(&common::distill(&[
        "predict",
        export.to_str().unwrap(),
        "a fine film",
    ]));
    let stray: Vec<_> = std::fs::read_dir(&export)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lock"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn teacher_shards_lock_only_their_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // A shard never fine-tunes: the shards of one folder would all do it at once.
    let o = tiny_cmd(&out, &["teacher", "--shard", "0/2"]);
    fails(&o, &["--finetune-only"]);
    ok(&tiny_cmd(&out, &["teacher", "--finetune-only"]));
    let shard0 = out.join("targets/train.shard-0-of-2.safetensors");
    let held = Lock::file(&shard0).unwrap();
    let o = tiny_cmd(&out, &["teacher", "--shard", "0/2"]);
    fails(&o, &["train.shard-0-of-2.safetensors", "is in use by"]);
    assert!(!shard0.exists());
    ok(&tiny_cmd(&out, &["teacher", "--shard", "1/2"]));
    drop(held);
    ok(&tiny_cmd(&out, &["teacher", "--shard", "0/2"]));
    ok(&tiny_cmd(&out, &["teacher", "--merge", "2"]));
}

#[test]
fn a_sweep_trial_that_fails_is_recorded_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    // Another writer holds one trial's folder: that trial fails, the sweep goes on without it.
    let held = Lock::folder(&out.join("sweep/bs8-lr3e-3-seed2")).unwrap();
    let o = tiny_cmd(
        &out,
        &[
            "sweep",
            "--set",
            "sweep.batch_size=[8]",
            "--set",
            "sweep.learning_rate=[3.0e-3]",
            "--set",
            "sweep.seeds=[1, 2]",
        ],
    );
    fails(&o, &["1 of 2 trials failed (bs8-lr3e-3-seed2)", "sweep.md"]);
    drop(held);
    let md = std::fs::read_to_string(out.join("sweep.md")).unwrap();
    assert!(
        md.contains("bs8-lr3e-3-seed2: failed:") && md.contains("is in use by"),
        "{md}"
    );
    assert!(md.contains("| 8 | 3e-3 |"), "{md}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(v["best"]["seeds"], 1, "{v}");
    assert!(out.join("student/best/model.safetensors").is_file());
}
