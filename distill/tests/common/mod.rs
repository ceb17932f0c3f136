//! Helpers shared by the CLI test files: the real `distill` binary, run from the repository root.
#![allow(dead_code)] // each test file uses some of them

pub mod server;

use std::path::Path;
use std::process::{Command, Output};

/// `distill ARGS` from the repository root.
pub fn distill(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .env("DISTILL_CACHE", "off")
        .args(args)
        .current_dir(root)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// `distill CMD configs/tiny.yaml --set output_dir=OUT REST...` for `args = [CMD, REST...]`.
pub fn tiny_cmd(out: &Path, args: &[&str]) -> Output {
    let o = format!("output_dir={}", out.display());
    let mut all = vec![args[0], "configs/tiny.yaml", "--set", &o];
    all.extend_from_slice(&args[1..]);
    distill(&all)
}

/// `distill run configs/tiny.yaml --set output_dir=OUT --set S...` for every `S` of `sets`.
pub fn tiny_run(out: &Path, sets: &[&str]) -> Output {
    let mut args = vec!["run"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    tiny_cmd(out, &args)
}

/// Standard output and error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts success; returns the output.
pub fn ok(o: &Output) -> String {
    let t = text(o);
    assert!(o.status.success(), "{t}");
    t
}

/// Asserts a clean failure (exit 1, no panic) whose standard error has every needle.
pub fn fails(o: &Output, needles: &[&str]) {
    let t = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    for n in needles {
        assert!(t.contains(n), "message lacks `{n}`:\n{t}");
    }
}
