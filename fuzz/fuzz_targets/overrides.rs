//! `--set` strings through `distill::config::load` on top of a fixed valid config (configs/tiny.yaml):
//! the input's lines (up to 8, lossily decoded) are the overrides.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const TINY: &str = include_str!("../../configs/tiny.yaml");

fn path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tiny.yaml");
        std::fs::write(&p, TINY).expect("write");
        (dir, p)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let overrides: Vec<String> = text.split('\n').take(8).map(str::to_string).collect();
    let _ = distill::config::load(path(), &overrides);
});
