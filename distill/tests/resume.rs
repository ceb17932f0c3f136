//! A training run killed with SIGKILL at a random moment resumes, when the same command is run again,
//! and ends with exactly the weights of an uninterrupted run (CPU).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cmd(sub: &str, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.env("DISTILL_CACHE", "off");
    c.args([
        sub,
        "configs/tiny.yaml",
        "--set",
        &format!("output_dir={}", out.display()),
        "--set",
        "train.epochs=24",
    ])
    .current_dir(root());
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{t}");
    t
}

#[test]
fn sigkilled_training_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&a, &b] {
        ok(&mut cmd("teacher", d));
    }
    let t0 = std::time::Instant::now();
    ok(&mut cmd("train", &a));
    let full = t0.elapsed();

    // Kill at a pseudo-random point inside the run (20%..80% of its length).
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let frac = 0.2 + 0.6 * (nanos % 1000) as f64 / 1000.0;
    let mut child = cmd("train", &b).spawn().unwrap();
    std::thread::sleep(Duration::from_secs_f64(full.as_secs_f64() * frac));
    child.kill().unwrap();
    child.wait().unwrap();

    let log = ok(&mut cmd("train", &b));
    let wa = std::fs::read(a.join("student/last/model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("student/last/model.safetensors")).unwrap();
    assert!(
        wa == wb,
        "resumed weights differ (killed at {frac:.2} of {full:?}):\n{log}"
    );
    let ba = std::fs::read(a.join("student/best/model.safetensors")).unwrap();
    let bb = std::fs::read(b.join("student/best/model.safetensors")).unwrap();
    assert!(ba == bb, "best checkpoints differ");
}
