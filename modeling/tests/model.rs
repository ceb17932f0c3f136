//! Loading, saving and training-readiness of the one encoder, on tiny random checkpoints written to disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::Path;

use candle_core::{Device, Tensor};
use modeling::batch::make_batch;
use modeling::testutil::{tiny_checkpoint, tiny_config, tiny_roberta_config, vocab, write_vocab};
use modeling::{Classifier, ModelSource, TextTokenizer};

fn batch(tok: &TextTokenizer) -> modeling::Batch {
    let a = tok.encode("the movie was great !", None).unwrap();
    let b = tok
        .encode("The plot", Some("was dull and very boring ."))
        .unwrap();
    make_batch(&[&a, &b], tok.pad_id(), &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    modeling::testutil::max_abs_diff(a, b).unwrap()
}

fn tok(dir: &Path) -> TextTokenizer {
    TextTokenizer::from_file(&dir.join("vocab.txt"), 32, false).unwrap()
}

#[test]
fn save_then_load_gives_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), Some(3), 1).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let (a, report) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    assert!(report.has_head);
    assert_eq!(a.num_labels, 3);
    let out = dir.path().join("again");
    a.save(&out, &["x".into(), "y".into(), "z".into()]).unwrap();
    write_vocab(&out.join("vocab.txt")).unwrap();
    let files2 = ModelSource::Local(out.clone()).resolve(false).unwrap();
    let (b, _) = Classifier::load(&files2, None, 0, &Device::Cpu).unwrap();
    assert_eq!(b.config.labels(), vec!["x", "y", "z"]);
    let t = tok(dir.path());
    let (la, _) = a.forward(&batch(&t), false, false).unwrap();
    let (lb, _) = b.forward(&batch(&t), false, false).unwrap();
    assert_eq!(max_diff(&la, &lb), 0.0);
}

#[test]
fn every_trainable_tensor_gets_a_gradient() {
    // candle's fused LayerNorm and softmax have no backward: this guards against them in training.
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let t = tok(dir.path());
    let (logits, _) = model.forward(&batch(&t), true, false).unwrap();
    let y = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
    let grads = modeling::backward(&loss, model.encoder.grad_sink()).unwrap();
    for (name, var) in model.named_vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient sum {n}");
    }
}

#[test]
fn qkv_on_request_reproduce_the_attention_probabilities() {
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let b = batch(&tok(dir.path()));
    let (plain, none) = model.forward(&b, false, false).unwrap();
    assert!(none.qkv.is_empty() && none.attentions.is_empty());
    let want = modeling::Want {
        attentions: true,
        qkv: true,
    };
    let (logits, out) = model.forward_with(&b, false, want).unwrap();
    // Asking for the probabilities takes the composed attention instead of the fused op: the same
    // numbers up to float rounding.
    assert!(max_diff(&plain, &logits) < 1e-5);
    let cfg = &model.config;
    assert_eq!(out.qkv.len(), cfg.num_hidden_layers);
    let (bs, s) = b.input_ids.dims2().unwrap();
    let (nh, hd) = (cfg.num_attention_heads, cfg.head_dim());
    // softmax(q k^T / sqrt(d) + mask) from the returned projections is the returned attention.
    let mask = ((1.0 - &b.attention_mask).unwrap() * -1e9)
        .unwrap()
        .reshape((bs, 1, 1, s))
        .unwrap();
    for (qkv, probs) in out.qkv.iter().zip(&out.attentions) {
        assert_eq!(qkv.q.dims(), [bs, s, cfg.hidden_size]);
        let heads = |t: &Tensor| {
            t.reshape((bs, s, nh, hd))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let scores = (heads(&qkv.q).matmul(&heads(&qkv.k).t().unwrap()).unwrap()
            / (hd as f64).sqrt())
        .unwrap()
        .broadcast_add(&mask)
        .unwrap();
        let p = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        assert!(max_diff(&p, probs) < 1e-5);
    }
}

#[test]
fn dropout_is_active_in_training_and_reproducible_when_reseeded() {
    let model = Classifier::new(&tiny_config(), 2, 3, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let t = tok(dir.path());
    let b = batch(&t);
    let (e1, _) = model.forward(&b, false, false).unwrap();
    let (e2, _) = model.forward(&b, false, false).unwrap();
    assert_eq!(max_diff(&e1, &e2), 0.0, "eval mode is deterministic");
    model.dropout.reseed(5);
    let (t1, _) = model.forward(&b, true, false).unwrap();
    let (t2, _) = model.forward(&b, true, false).unwrap();
    assert!(max_diff(&t1, &t2) > 0.0, "dropout draws new masks");
    model.dropout.reseed(5);
    let (t3, _) = model.forward(&b, true, false).unwrap();
    assert_eq!(max_diff(&t1, &t3), 0.0, "same seed, same masks");
}

#[test]
fn bare_encoder_loads_without_head_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), None, 1).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let (_, report) = Classifier::load(&files, Some(2), 0, &Device::Cpu).unwrap();
    assert!(!report.has_head);
}

#[test]
fn checkpoint_that_does_not_match_its_config_is_refused_with_the_tensor_name() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), Some(2), 1).unwrap();
    // Claim a wider intermediate layer than the weights have.
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 80");
    std::fs::write(&path, text).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let err = Classifier::load(&files, None, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("intermediate.dense"),
        "{err}"
    );
}

#[test]
fn missing_tensor_and_head_size_mismatch_are_named() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), Some(3), 1).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let err = Classifier::load(&files, Some(2), 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 outputs") && err.contains("needs 2"),
        "{err}"
    );

    let path = dir.path().join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    t.remove("bert.encoder.layer.1.attention.self.key.weight");
    candle_core::safetensors::save(&t, &path).unwrap();
    let err = Classifier::load(&files, None, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("layer.1.attention.self.key.weight"),
        "{err}"
    );
}

#[test]
fn truncated_weights_and_pickle_without_opt_in_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), Some(2), 1).unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let err = Classifier::load(&files, None, 0, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");

    std::fs::rename(&path, dir.path().join("pytorch_model.bin")).unwrap();
    let err = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("allow_pickle"), "{err}");
}

#[test]
fn hub_id_resolves_from_the_local_hub_cache_without_network() {
    // hf-hub's layout: models--org--name/{refs/main, snapshots/<commit>/<files>}.
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--acme--tiny-bert");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(commit);
    tiny_checkpoint(&snap, &tiny_config(), Some(2), 9).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::env::set_var("HF_HUB_CACHE", cache.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let src = ModelSource::parse("acme/tiny-bert", "main");
    assert!(matches!(src, ModelSource::Hub { .. }));
    let files = src.resolve(false).unwrap();
    assert_eq!(files.config, snap.join("config.json"));
    let (hub_model, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    // By commit hash as revision, too.
    let by_commit = ModelSource::parse("acme/tiny-bert", commit)
        .resolve(false)
        .unwrap();
    assert_eq!(by_commit.config, files.config);
    // The same weights as loading the folder directly.
    let (local, _) = Classifier::load(
        &ModelSource::Local(snap.clone()).resolve(false).unwrap(),
        None,
        0,
        &Device::Cpu,
    )
    .unwrap();
    let t = tok(&snap);
    let (a, _) = hub_model.forward(&batch(&t), false, false).unwrap();
    let (b, _) = local.forward(&batch(&t), false, false).unwrap();
    assert_eq!(max_diff(&a, &b), 0.0);
    // An id that is not cached fails offline with a message naming it.
    let err = ModelSource::parse("acme/absent", "main")
        .resolve(false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hub id acme/absent (revision main)")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains("./acme/absent"),
        "{err}"
    );
}

/// A path that reads as a local folder is never looked up on the Hub: a missing one is reported as a
/// missing folder, with the directory it was looked up from.
#[test]
fn a_missing_local_looking_folder_is_not_a_hub_id() {
    let here = tempfile::tempdir().unwrap();
    std::fs::create_dir(here.path().join("runs")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(here.path()).unwrap();
    let kinds: Vec<bool> = [
        "models/all-mpnet-base-v2",
        "./acme/model",
        "../acme/model",
        "/abs/acme",
        "runs/model",
        "a/b/c",
        "plain-name",
        "owner/na me",
        "acme/tiny-bert",
    ]
    .iter()
    .map(|s| matches!(ModelSource::parse(s, "main"), ModelSource::Local(_)))
    .collect();
    let err = ModelSource::parse("models/all-mpnet-base-v2", "main")
        .resolve(false)
        .unwrap_err()
        .to_string();
    std::env::set_current_dir(cwd).unwrap();
    assert_eq!(
        kinds,
        [true, true, true, true, true, true, true, true, false]
    );
    assert!(
        err.contains("models/all-mpnet-base-v2")
            && err.contains("model folder not found")
            && err.contains(&here.path().display().to_string())
            && !err.contains("hub id"),
        "{err}"
    );
}

#[test]
fn tokenizer_vocab_larger_than_embedding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let t = tok(dir.path());
    assert!(t.check_vocab(vocab().len(), Path::new("m")).is_ok());
    let err = t.check_vocab(10, Path::new("m")).unwrap_err().to_string();
    assert!(err.contains("10 rows"), "{err}");
}

#[test]
fn a_head_for_another_label_count_can_be_reinitialised() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), Some(3), 1).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let (m, report) = Classifier::load_reinit_head(&files, 2, 0, &Device::Cpu).unwrap();
    assert!(!report.has_head);
    assert_eq!(m.num_labels, 2);
    // The encoder weights are the checkpoint's.
    let (full, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    let name = "bert.encoder.layer.0.attention.self.query.weight";
    let get = |c: &Classifier| {
        c.named_vars()
            .into_iter()
            .find(|(k, _)| k == name)
            .unwrap()
            .1
    };
    assert_eq!(
        get(&m).as_tensor().to_vec2::<f32>().unwrap(),
        get(&full).as_tensor().to_vec2::<f32>().unwrap()
    );
    // Same label count: the head is kept.
    let (_, report) = Classifier::load_reinit_head(&files, 3, 0, &Device::Cpu).unwrap();
    assert!(report.has_head);
}

#[test]
fn int8_inference_stays_close_to_f32_and_shrinks_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    tiny_checkpoint(dir.path(), &tiny_config(), Some(3), 5).unwrap();
    let files = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let (f32_model, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    let mut q = f32_model.clone();
    let bytes = q.quantize_int8().unwrap();
    assert!(bytes < 4 * f32_model.num_parameters());
    let t = tok(dir.path());
    let (want, _) = f32_model.forward(&batch(&t), false, false).unwrap();
    let (got, _) = q.forward(&batch(&t), false, false).unwrap();
    let range = want
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let err = max_diff(&want, &got);
    assert!(err > 0.0, "int8 path not taken");
    assert!(
        err < 0.05 * range.max(1e-3),
        "int8 error {err} vs logit range {range}"
    );
}

/// The inference fast path (dense layers packed once, fused attention on few tokens) against the
/// composed path, which returning the attention probabilities forces, on a padded batch; also the
/// hidden states, and with the RoBERTa layout.
#[test]
fn packed_inference_matches_the_composed_path() {
    for roberta in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = match roberta {
            true => tiny_roberta_config(),
            false => tiny_config(),
        };
        tiny_checkpoint(dir.path(), &cfg, Some(3), 5).unwrap();
        let files = ModelSource::Local(dir.path().into())
            .resolve(false)
            .unwrap();
        let (plain, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
        let mut packed = plain.clone();
        packed.pack(modeling::Packing::F32).unwrap();
        let b = batch(&tok(dir.path()));
        let (want, want_enc) = plain.forward(&b, false, true).unwrap();
        let (got, got_enc) = packed.forward(&b, false, false).unwrap();
        assert!(got_enc.attentions.is_empty(), "fused path not taken");
        assert!(max_diff(&want, &got) < 1e-5, "roberta {roberta}");
        for (w, g) in want_enc.hidden_states.iter().zip(&got_enc.hidden_states) {
            assert!(max_diff(w, g) < 1e-5, "roberta {roberta}");
        }
    }
}

#[test]
fn mixed_precision_stays_close_to_f32_and_trains_the_f32_weights() {
    use candle_core::DType;
    // Weights large enough for activations of order 1, where rounding shows.
    let mut cfg = tiny_config();
    cfg.initializer_range = 0.2;
    let mut model = Classifier::new(&cfg, 2, 3, &Device::Cpu).unwrap();
    // Training-mode kernels without dropout: f32 takes the fused attention, whose dropout mask is
    // laid out differently from the composed path's.
    model.set_dropout(0.0);
    let dir = tempfile::tempdir().unwrap();
    write_vocab(&dir.path().join("vocab.txt")).unwrap();
    let b = batch(&tok(dir.path()));
    let y = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    let want = modeling::Want {
        attentions: true,
        qkv: true,
    };
    let run = |m: &Classifier| {
        let (logits, out) = m.forward_with(&b, true, want).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        (
            logits,
            out,
            modeling::backward(&loss, m.encoder.grad_sink()).unwrap(),
        )
    };
    let (l32, o32, g32) = run(&model);
    // (dtype, tolerance on logits and hidden states, least gradient cosine): bf16 keeps 8 bits of
    // mantissa, f16 11.
    for (dt, tol, cos_min) in [(DType::BF16, 3e-2, 0.999), (DType::F16, 4e-3, 0.99995)] {
        let mut mixed = model.clone();
        mixed.set_compute_dtype(dt).unwrap();
        let (l, out, grads) = run(&mixed);
        assert_eq!(l.dtype(), DType::F32);
        let d = max_diff(&l32, &l);
        assert!(d > 0.0 && d < tol, "{dt:?}: logits differ by {d}");
        for (a, h) in o32.hidden_states.iter().zip(&out.hidden_states) {
            assert_eq!(h.dtype(), DType::F32);
            assert!(max_diff(a, h) < 10.0 * tol, "{dt:?} hidden states");
        }
        let returned = out.attentions.iter().chain(out.qkv.iter().map(|q| &q.q));
        assert!(returned.into_iter().all(|t| t.dtype() == DType::F32));
        // The key bias's true gradient is 0 (softmax ignores a shift shared by a row's scores): its
        // computed one is rounding noise in any precision.
        let vars = model.named_vars().into_iter();
        for (name, var) in vars.filter(|(n, _)| !n.ends_with("key.bias")) {
            let (a, g) = (
                g32.get(var.as_tensor()).unwrap(),
                grads.get(var.as_tensor()),
            );
            let g = g.unwrap_or_else(|| panic!("{dt:?}: no gradient for {name}"));
            assert_eq!(g.dtype(), DType::F32, "{name}");
            let dot: f32 = (a * g).unwrap().sum_all().unwrap().to_scalar().unwrap();
            let na: f32 = a.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            let ng: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            let cos = dot / (na * ng).sqrt();
            assert!(cos > cos_min, "{dt:?}: {name} gradient cosine {cos}");
        }
    }
    assert!(model
        .clone()
        .set_compute_dtype(DType::U32)
        .unwrap_err()
        .to_string()
        .contains("bf16"));
}

/// The tiny MPNet classifier that `tools/parity/make_mpnet_fixture.py` made with transformers.
fn mpnet_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/mpnet_cls")
}

#[test]
fn mpnet_saves_trains_packs_and_quantizes_like_the_others() {
    let files = ModelSource::Local(mpnet_fixture()).resolve(false).unwrap();
    let (model, report) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    assert!(report.has_head && report.unused.is_empty(), "{report:?}");
    let t = TextTokenizer::from_file(&mpnet_fixture().join("tokenizer.json"), 64, false).unwrap();
    let b = batch(&t);
    let (want, _) = model.forward(&b, false, false).unwrap();

    // Saved and loaded again: the same logits, and a config transformers reads as MPNet.
    let dir = tempfile::tempdir().unwrap();
    model
        .save(dir.path(), &["a".into(), "b".into(), "c".into()])
        .unwrap();
    let saved = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(
        saved.contains("MPNetForSequenceClassification")
            && saved.contains("relative_attention_num_buckets")
    );
    std::fs::copy(
        mpnet_fixture().join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let files2 = ModelSource::Local(dir.path().into())
        .resolve(false)
        .unwrap();
    let (again, _) = Classifier::load(&files2, None, 0, &Device::Cpu).unwrap();
    assert_eq!(
        max_diff(&want, &again.forward(&b, false, false).unwrap().0),
        0.0
    );

    // Training reaches every tensor, the relative-position bias table among them.
    let (logits, _) = model.forward(&b, true, false).unwrap();
    let y = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
    let grads = modeling::backward(&loss, model.encoder.grad_sink()).unwrap();
    for (name, var) in model.named_vars() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let n: f32 = g.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient sum {n}");
    }

    // Packed f32 gives the same numbers; int8 stays close.
    let mut packed = model.clone();
    packed.pack(modeling::Packing::F32).unwrap();
    assert!(max_diff(&want, &packed.forward(&b, false, false).unwrap().0) < 1e-5);
    let mut q = model.clone();
    q.quantize_int8().unwrap();
    let err = max_diff(&want, &q.forward(&b, false, false).unwrap().0);
    let range: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
    assert!(
        err > 0.0 && err < 0.05 * range.max(1e-3),
        "int8 error {err} vs {range}"
    );
}

#[test]
fn some_of_a_checkpoints_blocks_make_a_shallower_classifier() {
    let files = ModelSource::Local(mpnet_fixture()).resolve(false).unwrap();
    let (full, _) = Classifier::load(&files, None, 0, &Device::Cpu).unwrap();
    let (part, report) = Classifier::load_layers(&files, &[2], 3, 0, &Device::Cpu).unwrap();
    assert_eq!(part.config.num_hidden_layers, 1);
    assert!(report.has_head, "the classifier's head comes along");
    let full: std::collections::HashMap<_, _> = full.named_vars().into_iter().collect();
    for (name, var) in part.named_vars() {
        // Block 0 of the student is block 1 (the second) of the checkpoint; the rest is shared.
        let source = name.replace("encoder.layer.0.", "encoder.layer.1.");
        let d = max_diff(var.as_tensor(), full[&source].as_tensor());
        assert_eq!(d, 0.0, "{name} is not {source}");
    }
    for bad in [&[][..], &[0], &[3], &[2, 1]] {
        assert!(
            Classifier::load_layers(&files, bad, 3, 0, &Device::Cpu).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn the_head_reads_a_contiguous_first_token() {
    // candle's CUDA matmul refuses a strided left-hand side once the batch has more than one row
    // (`MatMulNonContiguous`); the CPU's accepts it, so the CPU can only check the layout it gets.
    let x = Tensor::arange(0f32, 2. * 3. * 4., &Device::Cpu)
        .unwrap()
        .reshape((2, 3, 4))
        .unwrap();
    let cls = modeling::encoder::first_token(&x).unwrap();
    assert!(cls.is_contiguous());
    assert_eq!(
        cls.to_vec2::<f32>().unwrap(),
        vec![vec![0., 1., 2., 3.], vec![12., 13., 14., 15.]]
    );
}
