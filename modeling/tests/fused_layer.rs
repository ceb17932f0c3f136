//! The fused encoder block of training (`modeling::fused_layer`) against the composed block, which a
//! forward pass that asks for Q/K/V takes: the same logits, hidden states and weight gradients, with
//! dropout and padding; and the refusal of a step differentiated without `modeling::backward`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use candle_core::{Device, Tensor};
use modeling::batch::make_batch;
use modeling::testutil::{max_abs_diff, tiny_config, write_vocab};
use modeling::{Classifier, TextTokenizer, Want};

fn batch() -> modeling::Batch {
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let tok = TextTokenizer::from_file(&dir.path().join("vocab.txt"), 32, false).unwrap();
    let a = tok.encode("the movie was great !", None).unwrap();
    let b = tok
        .encode("The plot", Some("was dull and very boring ."))
        .unwrap();
    let c = tok.encode("boring", None).unwrap();
    make_batch(&[&a, &b, &c], tok.pad_id(), &Device::Cpu).unwrap()
}

/// BERT, or MPNet with its trained relative-position bias.
fn model(mpnet: bool) -> Classifier {
    let mut cfg = tiny_config();
    if mpnet {
        cfg.model_type = "mpnet".into();
        cfg.type_vocab_size = 1;
        cfg.pad_token_id = 1;
        cfg.max_position_embeddings += 2;
        cfg.relative_attention_num_buckets = Some(32);
    }
    // Activations of order 1 and dropout everywhere: both forms draw the same masks in the same order.
    cfg.initializer_range = 0.2;
    cfg.hidden_dropout_prob = 0.1;
    cfg.attention_probs_dropout_prob = 0.1;
    Classifier::new(&cfg, 3, 7, &Device::Cpu).unwrap()
}

#[test]
fn fused_blocks_match_the_composed_blocks_and_their_gradients() {
    check_against_composed(false);
}

#[test]
fn mpnet_fused_blocks_train_the_position_bias_as_the_composed_blocks_do() {
    check_against_composed(true);
}

fn check_against_composed(mpnet: bool) {
    let b = batch();
    let y = Tensor::new(&[1u32, 0, 2], &Device::Cpu).unwrap();
    let run = |want: Want| {
        let m = model(mpnet);
        let (logits, out) = m.forward_with(&b, true, want).unwrap();
        // A loss on a hidden state too, so that gradient enters between blocks as distillation's does.
        let loss = (candle_nn::loss::cross_entropy(&logits, &y).unwrap()
            + out.hidden_states[1].sqr().unwrap().mean_all().unwrap())
        .unwrap();
        let grads = modeling::backward(&loss, m.encoder.grad_sink()).unwrap();
        let g: Vec<(String, Tensor)> = m
            .named_vars()
            .into_iter()
            .map(|(n, v)| {
                let g = grads.get(v.as_tensor()).cloned();
                (
                    n.clone(),
                    g.unwrap_or_else(|| panic!("no gradient for {n}")),
                )
            })
            .collect();
        (logits, out.hidden_states, g)
    };
    let (lf, hf, gf) = run(Want::default());
    let composed = Want {
        attentions: false,
        qkv: true,
    };
    let (lc, hc, gc) = run(composed);
    assert!(max_abs_diff(&lf, &lc).unwrap() <= 1e-6, "logits");
    for (a, c) in hf.iter().zip(&hc) {
        assert!(max_abs_diff(a, c).unwrap() <= 1e-6, "hidden states");
    }
    let largest = |g: &Tensor| -> f32 { g.abs().unwrap().max_all().unwrap().to_scalar().unwrap() };
    let top = gc.iter().map(|(_, g)| largest(g)).fold(0f32, f32::max);
    let mut blocks = 0;
    let mut bias = false;
    for ((name, a), (_, c)) in gf.iter().zip(&gc) {
        // The key's bias has a zero gradient in exact arithmetic (softmax ignores a constant shift):
        // both forms leave rounding noise there, hence the floor relative to the largest gradient.
        let tol = 1e-5 * largest(c) + 1e-6 * top;
        let d = max_abs_diff(a, c).unwrap();
        assert!(
            d <= tol,
            "{name}: gradients differ by {d} (tolerance {tol})"
        );
        blocks += usize::from(name.contains(".layer."));
        bias |= name.contains("relative_attention_bias");
    }
    assert_eq!(bias, mpnet);
    // 16 tensors a block, 2 blocks.
    assert_eq!(blocks, 32);
}

#[test]
fn a_step_differentiated_without_modeling_backward_is_refused() {
    let m = model(false);
    let b = batch();
    let (logits, _) = m.forward(&b, true, false).unwrap();
    let grads = logits.sum_all().unwrap().backward().unwrap();
    // The blocks' weights got nothing from candle alone...
    let (_, q) = m
        .named_vars()
        .into_iter()
        .find(|(n, _)| n.contains("layer.0.attention.self.query.weight"))
        .unwrap();
    assert!(grads.get(q.as_tensor()).is_none());
    // ... and the next training step says why instead of training without them.
    let err = m.forward(&b, true, false).unwrap_err().to_string();
    assert!(err.contains("modeling::backward"), "{err}");
    // Inference is not affected.
    m.forward(&b, false, false).unwrap();
}

/// Thirty SGD steps on batches of changing length: the fused and the composed blocks stay together (a
/// gradient the sink lost, kept from an earlier step, or filed under the wrong weight would part them).
#[test]
fn thirty_training_steps_stay_with_the_composed_blocks() {
    use candle_nn::optim::{Optimizer, SGD};
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let tok = TextTokenizer::from_file(&dir.path().join("vocab.txt"), 32, false).unwrap();
    let texts = [
        "the movie was great !",
        "The plot was dull and very boring .",
        "boring",
        "great great movie",
    ];
    let encoded: Vec<_> = texts.iter().map(|t| tok.encode(t, None).unwrap()).collect();
    for mpnet in [false, true] {
        let train = |want: Want| {
            let m = model(mpnet);
            let vars: Vec<_> = m.named_vars().into_iter().map(|(_, v)| v).collect();
            let mut opt = SGD::new(vars, 0.05).unwrap();
            for step in 0..30 {
                // Two or three sentences a step, so the padded length changes.
                let pick: Vec<_> = (0..2 + step % 2)
                    .map(|i| &encoded[(step + i) % 4])
                    .collect();
                let b = make_batch(&pick, tok.pad_id(), &Device::Cpu).unwrap();
                let y: Vec<u32> = (0..pick.len() as u32)
                    .map(|i| (i + step as u32) % 3)
                    .collect();
                let y = Tensor::new(y.as_slice(), &Device::Cpu).unwrap();
                let (logits, _) = m.forward_with(&b, true, want).unwrap();
                let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
                opt.step(&modeling::backward(&loss, m.encoder.grad_sink()).unwrap())
                    .unwrap();
            }
            let b = make_batch(
                &encoded.iter().collect::<Vec<_>>(),
                tok.pad_id(),
                &Device::Cpu,
            );
            m.forward(&b.unwrap(), false, false).unwrap().0
        };
        let fused = train(Want::default());
        let composed = train(Want {
            attentions: false,
            qkv: true,
        });
        let d = max_abs_diff(&fused, &composed).unwrap();
        assert!(
            d < 1e-4,
            "mpnet {mpnet}: logits after training differ by {d}"
        );
        // And the training moved them: an untrained model's logits are elsewhere.
        let b = make_batch(
            &encoded.iter().collect::<Vec<_>>(),
            tok.pad_id(),
            &Device::Cpu,
        );
        let start = model(mpnet).forward(&b.unwrap(), false, false).unwrap().0;
        assert!(max_abs_diff(&fused, &start).unwrap() > 0.1);
    }
}
