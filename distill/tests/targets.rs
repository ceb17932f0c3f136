//! Teacher targets through the real binary: `teacher --shard i/n` on each slice, then
//! `teacher --merge n`, gives the targets of one whole run (a missing or foreign shard is refused), and
//! `teacher.ensemble` averages several teachers' logits with their weights.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

mod common;

use std::path::PathBuf;

use common::{fails, ok, tiny_cmd as distill};

use candle_core::Device;

fn logits(path: PathBuf) -> Vec<Vec<f32>> {
    teacher::Targets::load(&path)
        .unwrap()
        .logits
        .to_device(&Device::Cpu)
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn shards_merge_into_the_whole_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    ok(&distill(&whole, &["teacher"]));
    let want = logits(whole.join("targets/train.safetensors"));

    let sharded = tmp.path().join("sharded");
    ok(&distill(&sharded, &["teacher", "--finetune-only"]));
    assert!(!sharded.join("targets/train.safetensors").exists());
    // Merging before every shard exists names the missing one.
    ok(&distill(&sharded, &["teacher", "--shard", "0/3"]));
    fails(
        &distill(&sharded, &["teacher", "--merge", "3"]),
        &["train.shard-1-of-3.safetensors", "--shard 1/3"],
    );
    for s in ["1/3", "2/3"] {
        ok(&distill(&sharded, &["teacher", "--shard", s]));
    }
    let t = ok(&distill(&sharded, &["teacher", "--merge", "3"]));
    assert!(t.contains("merged 3 shards"), "{t}");
    let got = logits(sharded.join("targets/train.safetensors"));
    assert_eq!(got.len(), want.len());
    // Slices batch and pad differently from the whole run: equal up to float summation order.
    for (a, b) in want.iter().flatten().zip(got.iter().flatten()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // The merged targets are fresh for the whole run's next step.
    let t = ok(&distill(&sharded, &["teacher"]));
    assert!(t.contains("is fresh"), "{t}");

    // A shard computed with another setting is refused, naming what changed.
    ok(&distill(
        &sharded,
        &[
            "teacher",
            "--shard",
            "1/3",
            "--set",
            "teacher.hidden_layers=[1]",
        ],
    ));
    fails(
        &distill(&sharded, &["teacher", "--merge", "3"]),
        &["train.shard-1-of-3.safetensors", "hidden_layers"],
    );
    // A setting that would need another fine-tuned teacher: a shard never fine-tunes (the shards of one
    // folder would all do it at once), and says to fine-tune first.
    fails(
        &distill(
            &sharded,
            &["teacher", "--shard", "1/3", "--set", "data.max_seq_len=24"],
        ),
        &["no fresh fine-tuned copy", "--finetune-only"],
    );
}

#[test]
fn bad_shard_arguments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["3/3", "x/2", "1", "2/1"] {
        fails(
            &distill(tmp.path(), &["teacher", "--shard", bad]),
            &["--shard"],
        );
    }
    fails(
        &distill(tmp.path(), &["teacher", "--merge", "0"]),
        &["--merge"],
    );
}

#[test]
fn an_ensemble_averages_its_teachers_logits_with_their_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // Two fine-tuned teachers: the tiny teacher fine-tuned with two seeds.
    let (a, c) = (tmp.path().join("a"), tmp.path().join("c"));
    ok(&distill(&a, &["teacher"]));
    ok(&distill(&c, &["teacher", "--set", "seed=7"]));
    let (la, lc) = (
        logits(a.join("targets/train.safetensors")),
        logits(c.join("targets/train.safetensors")),
    );
    let b = tmp.path().join("b");
    let main = format!("teacher.model={}", a.join("teacher/model").display());
    let members = format!(
        "teacher.ensemble=[{{model: {}, weight: 3.0}}]",
        c.join("teacher/model").display()
    );
    ok(&distill(
        &b,
        &["teacher", "--set", &main, "--set", &members],
    ));
    let lb = logits(b.join("targets/train.safetensors"));
    for ((x, y), z) in la
        .iter()
        .flatten()
        .zip(lc.iter().flatten())
        .zip(lb.iter().flatten())
    {
        assert!(((x + 3.0 * y) / 4.0 - z).abs() < 1e-4, "{x} {y} -> {z}");
    }
    // A changed weight makes the cache stale, naming the ensemble.
    let members2 = members.replace("3.0", "1.0");
    let t = ok(&distill(
        &b,
        &["teacher", "--set", &main, "--set", &members2],
    ));
    assert!(t.contains("rebuilding") && t.contains("ensemble"), "{t}");
    // A member without a head is refused with its key.
    let bare = "teacher.ensemble=[{model: configs/tiny/teacher}]";
    fails(
        &distill(&b, &["teacher", "--set", &main, "--set", bare]),
        &["teacher.ensemble[0].model", "no task head"],
    );
    fails(
        &distill(&b, &["teacher", "--set", "teacher.weight=-1.0"]),
        &["teacher.weight"],
    );
}

/// `teacher.precision: bf16` recomputes the targets (the fingerprint names it) with bf16 products, within
/// bf16's precision of the fp32 logits; a CPU without AVX-512 BF16 refuses it by name.
#[test]
fn the_bf16_target_pass_stays_near_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    ok(&distill(&out, &["teacher"]));
    let fp32 = logits(out.join("targets/train.safetensors"));
    let o = distill(&out, &["teacher", "--set", "teacher.precision=bf16"]);
    if !kernels::bf16::available() {
        fails(&o, &["teacher.precision", "AVX-512 BF16"]);
        return;
    }
    let t = ok(&o);
    assert!(t.contains("precision"), "the stale targets' reason: {t}");
    let bf16 = logits(out.join("targets/train.safetensors"));
    let worst = fp32
        .iter()
        .flatten()
        .zip(bf16.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst > 0.0 && worst < 0.05, "bf16 logits {worst} from fp32");
    let t = ok(&distill(
        &out,
        &["teacher", "--set", "teacher.precision=bf16"],
    ));
    assert!(t.contains("is fresh"), "{t}");
}
