//! Console output through the real binary: log lines at info by default (each evaluation one of them),
//! `-q` and `RUST_LOG` quieter, `-v` more; `--json` reports for scripts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::process::Command;

fn run(out: &std::path::Path, flags: &[&str], env: Option<(&str, &str)>) -> (String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.env("DISTILL_CACHE", "off");
    cmd.args(flags)
        .args(["run", "configs/tiny.yaml", "--set"])
        .arg(format!("output_dir={}", out.display()))
        .current_dir(root)
        .env_remove("RUST_LOG");
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{stderr}");
    (stdout, stderr)
}

#[test]
fn log_levels_follow_the_flags_and_rust_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run(&tmp.path().join("a"), &[], None);
    assert!(stderr.contains(" INFO "), "{stderr}");
    assert!(stderr.contains("(epoch 1.00): dev accuracy"), "{stderr}");
    assert!(stdout.contains("| student |"), "{stdout}");
    // Quiet: no info lines; the report still on stdout.
    let (stdout, stderr) = run(&tmp.path().join("b"), &["-q"], None);
    assert!(!stderr.contains(" INFO "), "{stderr}");
    assert!(stdout.contains("| student |"), "{stdout}");
    let (_, stderr) = run(&tmp.path().join("c"), &[], Some(("RUST_LOG", "warn")));
    assert!(!stderr.contains(" INFO "), "{stderr}");
    // Verbose lets debug lines through (none are required, but the info ones stay).
    let (_, stderr) = run(&tmp.path().join("d"), &["-v"], None);
    assert!(stderr.contains(" INFO "), "{stderr}");
}

#[test]
fn json_reports_for_run_and_compare() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let (stdout, _) = run(&out, &["-q"], None);
    assert!(stdout.contains("| student |"));
    for cmd in [["compare", "--json"], ["run", "--json"]] {
        let o = common::tiny_cmd(&out, &[cmd[0], cmd[1]]);
        let text = common::ok(&o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{cmd:?}: stdout is not JSON ({e}):\n{text}"));
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(v["student"]["dev"], file["student"]["dev"], "{cmd:?}");
        assert_eq!(v["task"], "sst2");
    }
}
