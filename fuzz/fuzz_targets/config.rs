//! Arbitrary bytes as a YAML config file through `distill::config::load` (YAML parse, `${VAR}`
//! expansion, serde with unknown keys refused, validation). Any outcome but a panic is fine.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("fuzz.yaml");
        (dir, p)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let p = path();
    std::fs::write(p, data).expect("write");
    let _ = distill::config::load(p, &[]);
});
