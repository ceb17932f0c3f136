//! `augment:` through the real binary on configs/tiny.yaml: the targets hold the augmented texts and
//! their logits, a rerun finds them fresh, a changed setting rebuilds them naming `augment`, the student
//! trains on them, and config errors name the key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use common::{fails, ok, tiny_cmd as distill};
use std::path::Path;

#[test]
fn augmented_targets_are_cached_fresh_and_rebuilt_on_change() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let two = "augment.copies=2";
    let t = ok(&distill(&out, &["teacher", "--set", two]));
    // configs/tiny/teacher is a bare encoder (no MLM head): `auto` falls back to neighbours.
    assert!(t.contains("no masked-LM head"), "{t}");
    assert!(t.contains("augment: "), "{t}");
    let path = out.join("targets/train.safetensors");
    let targets = teacher::Targets::load(&path).unwrap();
    let n_aug = targets.augmented.len();
    assert!(n_aug > 0);
    let n_train = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny/data/train.tsv"),
    )
    .unwrap()
    .lines()
    .count()
        - 1;
    assert_eq!(targets.len(), n_train + n_aug);
    assert!(n_aug <= 2 * n_train);
    assert!(targets.augmented.iter().all(|e| !e.label.is_gold()));
    assert!(targets
        .fingerprint
        .augment
        .as_deref()
        .unwrap()
        .contains("copies=2"));

    let t = ok(&distill(&out, &["teacher", "--set", two]));
    assert!(t.contains("is fresh"), "{t}");

    let p = "augment.replace_prob=0.2";
    let t = ok(&distill(&out, &["teacher", "--set", two, "--set", p]));
    assert!(t.contains("because augment ("), "{t}");

    // Training against targets of other settings is refused; with the same settings it trains.
    fails(
        &distill(&out, &["train", "--set", "augment.copies=3"]),
        &["augment", "distill teacher"],
    );
    let e = "train.epochs=1";
    ok(&distill(
        &out,
        &["train", "--set", two, "--set", p, "--set", e],
    ));
    // Without augmentation the cache is rebuilt without augmented rows.
    let t = ok(&distill(&out, &["teacher"]));
    assert!(t.contains("because augment ("), "{t}");
    assert!(teacher::Targets::load(&path).unwrap().augmented.is_empty());
}

#[test]
fn augment_config_errors_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    for (set, key) in [
        ("augment.replace_prob=1.5", "augment.replace_prob"),
        ("augment.candidates=0", "augment.candidates"),
        ("augment.copies=100000", "augment.copies"),
    ] {
        fails(&distill(&out, &["teacher", "--set", set]), &[key]);
    }
    fails(
        &distill(&out, &["teacher", "--set", "augment.bogus=1"]),
        &["bogus"],
    );
    fails(
        &distill(
            &out,
            &[
                "teacher",
                "--set",
                "augment.copies=1",
                "--set",
                "augment.mlm=on",
            ],
        ),
        &["augment.mlm", "no masked-LM head"],
    );
}
