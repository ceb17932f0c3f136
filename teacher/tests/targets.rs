//! The target cache: saved and loaded with its fingerprint, and refused as stale when any part of the
//! fingerprint changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use candle_core::{Device, Tensor};
use teacher::{Fingerprint, Targets};

fn fp() -> Fingerprint {
    Fingerprint {
        teacher_weights: "aa".into(),
        tokenizer: "bb".into(),
        max_seq_len: 128,
        dataset: "cc".into(),
        head: "2:0,1".into(),
        hidden_layers: vec![2],
        pooling: "Cls".into(),
        ensemble: Vec::new(),
        shard: None,
        augment: None,
        precision: None,
    }
}

#[test]
fn target_cache_round_trip_and_staleness() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("targets/train.safetensors");
    let logits = Tensor::new(&[[1f32, 2.0], [3.0, -1.0]], &Device::Cpu).unwrap();
    let hidden = Tensor::new(&[[0.5f32, 0.25, 0.0], [1.0, 2.0, 3.0]], &Device::Cpu).unwrap();
    let t = Targets {
        logits: logits.clone(),
        hidden: [(2usize, hidden)].into_iter().collect(),
        fingerprint: fp(),
        augmented: Vec::new(),
    };
    t.save(&path).unwrap();
    let mut stale = Vec::new();
    let back = Targets::load_fresh(&path, &fp(), &mut stale).unwrap();
    assert_eq!(
        back.logits.to_vec2::<f32>().unwrap(),
        logits.to_vec2::<f32>().unwrap()
    );
    assert_eq!(back.hidden[&2].dims(), &[2, 3]);
    let mut changed = fp();
    changed.dataset = "dd".into();
    changed.max_seq_len = 64;
    assert!(Targets::load_fresh(&path, &changed, &mut stale).is_none());
    let msg = stale.join(", ");
    assert!(
        msg.contains("dataset") && msg.contains("max_seq_len"),
        "{msg}"
    );
    assert!(!msg.contains("tokenizer"), "{msg}");
}
