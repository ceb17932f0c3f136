//! docs/configuration.md is what the config types say: regenerated here and compared with the committed
//! file, so a key added, removed or re-documented in code fails this test until the page is rewritten
//! (`DISTILL_WRITE_DOCS=1 cargo test -p distill --test configuration`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::Path;

#[test]
fn the_configuration_reference_matches_the_config_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let want = distill::config::doc::markdown();
    if std::env::var_os("DISTILL_WRITE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/configuration.md is out of date with the config types: run \
         DISTILL_WRITE_DOCS=1 cargo test -p distill --test configuration"
    );
}

#[test]
fn every_key_of_the_shipped_configs_is_documented() {
    let doc = distill::config::doc::markdown();
    for key in [
        "`task`",
        "`train.epochs`",
        "`train.gradient_accumulation`",
        "`teacher.finetune.learning_rate`",
        "`student.init`",
        "`distill.alpha_kd`",
        "`distill.terms[].kind`",
        "`data.max_seq_len`",
        "`masking.mask_prob`",
    ] {
        assert!(
            doc.contains(key),
            "{key} is not in the configuration reference"
        );
    }
}
