//! The gradient criterion against finite differences: each score must be the mean over examples of
//! |dL/dm|, the derivative of the example's loss with respect to a mask on the head, FFN unit or hidden
//! dimension, which the test applies by scaling the weights that the mask scales (a head's value
//! projection in every kept block, an FFN unit's down-projection column, a hidden dimension's
//! LayerNorm scale and shift in the embeddings and every kept block's output).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use candle_core::{Device, Tensor};
use modeling::batch::make_batch;
use modeling::importance::Importance;
use modeling::{Classifier, Encoded, ModelSource};

const EPS: f64 = 1e-2;

fn examples(vocab: u32) -> Vec<(Encoded, u32)> {
    let text = |start: u32, n: u32| -> Encoded {
        let ids: Vec<u32> = (0..n).map(|i| (start + i * 7) % vocab).collect();
        Encoded {
            type_ids: vec![0; ids.len()],
            ids,
        }
    };
    vec![(text(3, 9), 2), (text(11, 6), 0), (text(5, 12), 1)]
}

fn loss(m: &Classifier, e: &Encoded, label: u32, pad: u32) -> f64 {
    let batch = make_batch(&[e], pad, &Device::Cpu).unwrap();
    let (logits, _) = m.forward(&batch, false, false).unwrap();
    let y = Tensor::new(&[label], &Device::Cpu).unwrap();
    let l = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
    l.to_scalar::<f32>().unwrap() as f64
}

/// For a variable's name: the dimension and the indices along it that a mask scales, if any.
type Pick<'a> = &'a dyn Fn(&str) -> Option<(usize, Vec<usize>)>;

/// Entries `idx` of dimension `dim` of every variable `pick` names, scaled by `s`, for `f`'s duration.
fn scaled<T>(m: &Classifier, pick: Pick, s: f64, f: impl FnOnce() -> T) -> T {
    let mut saved = Vec::new();
    for (name, v) in m.named_vars() {
        let Some((dim, idx)) = pick(&name) else {
            continue;
        };
        // A copy of the values, outside the graph (`set` writes into the variable's own storage).
        let t = v.as_tensor().detach().copy().unwrap();
        let n = t.dim(dim).unwrap();
        let k: Vec<f32> = (0..n)
            .map(|i| if idx.contains(&i) { s as f32 } else { 1.0 })
            .collect();
        let mut shape = vec![1; t.rank()];
        shape[dim] = n;
        let k = Tensor::from_vec(k, shape, &Device::Cpu).unwrap();
        v.set(&t.broadcast_mul(&k).unwrap()).unwrap();
        saved.push((v, t));
    }
    assert!(!saved.is_empty(), "no variable to scale");
    let out = f();
    for (v, t) in saved {
        v.set(&t).unwrap();
    }
    out
}

/// Mean over the examples of |central difference of the loss| as the mask goes to 1 ± EPS.
fn finite_difference(m: &Classifier, data: &[(Encoded, u32)], pad: u32, pick: Pick) -> f64 {
    let mut sum = 0.0;
    for (e, y) in data {
        let up = scaled(m, pick, 1.0 + EPS, || loss(m, e, *y, pad));
        let down = scaled(m, pick, 1.0 - EPS, || loss(m, e, *y, pad));
        sum += ((up - down) / (2.0 * EPS)).abs();
    }
    sum / data.len() as f64
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 2e-5 + 1e-2 * want.abs(),
        "{what}: gradient {got}, finite difference {want}"
    );
}

/// The block number in `...encoder.layer.I.rest`, with `rest`.
fn block(name: &str) -> Option<(usize, &str)> {
    let rest = name.split("encoder.layer.").nth(1)?;
    let (i, rest) = rest.split_once('.')?;
    Some((i.parse().ok()?, rest))
}

#[test]
fn the_gradient_scores_are_the_mask_derivatives_of_the_task_loss() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    for name in ["bert_cls", "roberta_cls", "mpnet_cls"] {
        let files = ModelSource::Local(fixtures.join(name))
            .resolve(false)
            .unwrap();
        let (m, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
        let cfg = m.config.clone();
        let pad = cfg.pad_token_id;
        let classes = m.num_labels as u32;
        let data: Vec<(Encoded, u32)> = examples(cfg.vocab_size as u32)
            .into_iter()
            .map(|(e, y)| (e, y % classes))
            .collect();
        let ids: Vec<Encoded> = data.iter().map(|(e, _)| e.clone()).collect();
        let labels: Vec<u32> = data.iter().map(|(_, y)| *y).collect();
        let ce = |i: usize, logits: &Tensor| -> modeling::Result<Tensor> {
            let y = Tensor::new(&[labels[i]], &Device::Cpu)?;
            Ok(candle_nn::loss::cross_entropy(logits, &y)?)
        };
        for layers in [vec![1usize, 2], vec![2]] {
            let kept = |i: usize| layers.contains(&(i + 1));
            let scores = Importance::gradient(&m, &layers, &ids, pad, &ce).unwrap();
            let what = format!("{name}, blocks {layers:?}");
            // Every head matters somewhat on these examples: the comparisons below are not of zeros.
            assert!(
                scores.heads.iter().all(|&h| h > 1e-3),
                "{what}: {:?}",
                scores.heads
            );
            let hd = cfg.head_dim();
            for h in 0..cfg.num_attention_heads {
                let cols: Vec<usize> = (h * hd..(h + 1) * hd).collect();
                let pick = |n: &str| {
                    let (i, rest) = block(n)?;
                    let value = rest.starts_with("attention.self.value.")
                        || rest.starts_with("attention.attn.v.");
                    (kept(i) && value).then(|| (0, cols.clone()))
                };
                let fd = finite_difference(&m, &data, pad, &pick);
                close(scores.heads[h], fd, &format!("{what}: head {h}"));
            }
            for (j, &l) in layers.iter().enumerate() {
                for u in [0, 17, cfg.intermediate_size - 1] {
                    let pick = |n: &str| {
                        let (i, rest) = block(n)?;
                        (i + 1 == l && rest == "output.dense.weight").then(|| (1, vec![u]))
                    };
                    let fd = finite_difference(&m, &data, pad, &pick);
                    close(scores.ffn[j][u], fd, &format!("{what}: block {l} unit {u}"));
                }
            }
            for d in [0, 5, cfg.hidden_size - 1] {
                let pick = |n: &str| {
                    let stream = match block(n) {
                        Some((i, rest)) => kept(i) && rest.starts_with("output.LayerNorm."),
                        None => n.contains("embeddings.LayerNorm."),
                    };
                    stream.then(|| (0, vec![d]))
                };
                let fd = finite_difference(&m, &data, pad, &pick);
                close(
                    scores.hidden[d],
                    fd,
                    &format!("{what}: hidden dimension {d}"),
                );
            }
        }
    }
}
