//! TinyBERT augmentation: words split as BERT's basic tokenizer does, determinism per seed, a
//! replacement rate close to `replace_prob`, the masked-LM path with an MLM head (the committed tiny
//! BERT/RoBERTa MLM fixtures) and the embedding-neighbour path without, soft-only labels.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use data::{Example, Label};
use modeling::testutil;
use modeling::{Classifier, MaskedLm, ModelSource, TextTokenizer};
use teacher::augment::{augment, words, AugmentConfig, Augmented, Teacher};

fn examples(n: usize, pairs: bool) -> Vec<Example> {
    (0..n)
        .map(|k| {
            let (a, label) = testutil::sentence(k);
            Example {
                text_a: a,
                text_b: pairs.then(|| testutil::sentence(k + 1).0),
                label: Label::Class(label),
            }
        })
        .collect()
}

/// The tiny testutil teacher's tokenizer and word embeddings (no MLM head).
fn tiny_teacher(dir: &Path) -> (TextTokenizer, Tensor) {
    testutil::tiny_checkpoint(dir, &testutil::tiny_config(), Some(2), 3).unwrap();
    let tok = TextTokenizer::from_file(&dir.join("vocab.txt"), 64, false).unwrap();
    let m = Classifier::new(&testutil::tiny_config(), 2, 3, &Device::Cpu).unwrap();
    (tok, embeddings(m.named_vars()))
}

fn embeddings(vars: Vec<(String, candle_core::Var)>) -> Tensor {
    vars.into_iter()
        .find(|(k, _)| k.ends_with("embeddings.word_embeddings.weight"))
        .unwrap()
        .1
        .as_tensor()
        .clone()
}

/// A teacher without a masked-LM head: embedding neighbours only, `batch` words per matmul.
fn without_mlm<'a>(tok: &'a TextTokenizer, emb: &'a Tensor, batch: usize) -> Teacher<'a> {
    Teacher {
        tok,
        embeddings: emb,
        mlm: None,
        batch_size: batch,
    }
}

fn cfg(copies: usize, p: f64) -> AugmentConfig {
    AugmentConfig {
        copies,
        replace_prob: p,
        ..Default::default()
    }
}

fn run(ex: &[Example], c: &AugmentConfig, seed: u64, t: &Teacher) -> Augmented {
    augment(ex, c, seed, false, t).unwrap()
}

#[test]
fn words_split_like_bert_basic_tokenizer() {
    assert_eq!(
        words("It's a  film,  isn't it?"),
        ["It", "'", "s", "a", "film", ",", "isn", "'", "t", "it", "?"]
    );
    assert!(words("   ").is_empty());
}

#[test]
fn deterministic_per_seed_and_rate_close_to_p() {
    let d = tempfile::tempdir().unwrap();
    let (tok, emb) = tiny_teacher(d.path());
    let t = without_mlm(&tok, &emb, 16);
    let ex = examples(40, true);
    let c = cfg(3, 0.4);
    let a = run(&ex, &c, 7, &t);
    let b = run(&ex, &c, 7, &t);
    assert_eq!(a.examples, b.examples);
    let other = run(&ex, &c, 8, &t);
    assert_ne!(a.examples, other.examples);
    // Soft-only labels; pairs keep a second text.
    assert!(a.examples.iter().all(|e| !e.label.is_gold()));
    assert!(a.examples.iter().all(|e| e.text_b.is_some()));
    assert!(a.examples.len() <= 3 * ex.len() && !a.examples.is_empty());
    // No MLM: every candidate set came from embedding neighbours.
    assert_eq!(a.mlm_words, 0);
    assert!(a.neighbour_words > 0);

    // The rate over many draws: 3 copies x 400 pairs x ~11 words ≈ 13k draws, sd of the rate ≈ 0.004.
    let big = run(&examples(400, true), &c, 1, &t);
    let rate = big.replaced as f64 / big.draws as f64;
    assert!(big.draws > 5000, "{}", big.draws);
    assert!((rate - 0.4).abs() < 0.02, "rate {rate}");
    let none = run(&ex, &cfg(3, 0.0), 1, &t);
    assert_eq!(none.replaced, 0);
    assert!(
        none.examples.is_empty(),
        "variants equal to the sentence are dropped"
    );
}

#[test]
fn replacements_are_whole_vocabulary_words_other_than_the_original() {
    let d = tempfile::tempdir().unwrap();
    let (tok, emb) = tiny_teacher(d.path());
    let t = without_mlm(&tok, &emb, 4);
    let ex = examples(30, false);
    let a = run(&ex, &cfg(1, 1.0), 3, &t);
    // copies: 1 at p = 1: one variant per sentence, every word with a letter replaced.
    assert_eq!(a.examples.len(), ex.len());
    for (e, v) in ex.iter().zip(&a.examples) {
        let (wa, wv) = (words(&e.text_a), words(&v.text_a));
        assert_eq!(wa.len(), wv.len(), "{} -> {}", e.text_a, v.text_a);
        for (x, y) in wa.iter().zip(&wv) {
            if x.chars().any(char::is_alphanumeric) {
                assert_ne!(x, y);
                assert!(
                    tok.token_to_id(y).is_some(),
                    "`{y}` is not a vocabulary word"
                );
                assert!(!y.starts_with("##"));
            } else {
                assert_eq!(x, y);
            }
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../modeling/tests/fixtures/parity/{name}"))
}

/// The MLM path on a committed masked-LM fixture: single-piece words get MLM candidates.
fn mlm_path(name: &str, text: &str) {
    let files = ModelSource::Local(fixture(name)).resolve(false).unwrap();
    let (mlm, report) = MaskedLm::load(&files, 0, &Device::Cpu).unwrap();
    assert!(report.has_head);
    let tok_path = files.tokenizer_json.clone().unwrap();
    let tok = TextTokenizer::from_file(&tok_path, 64, false).unwrap();
    let emb = embeddings(mlm.named_vars());
    let ex = vec![Example {
        text_a: text.into(),
        text_b: None,
        label: Label::Class(0),
    }];
    let with = Teacher {
        tok: &tok,
        embeddings: &emb,
        mlm: Some(&mlm),
        batch_size: 8,
    };
    let a = run(&ex, &cfg(4, 0.5), 5, &with);
    assert!(a.mlm_words > 0, "{name}: no MLM candidates");
    assert!(!a.examples.is_empty());
    assert_eq!(a.examples, run(&ex, &cfg(4, 0.5), 5, &with).examples);
    let without = Teacher { mlm: None, ..with };
    let b = run(&ex, &cfg(4, 0.5), 5, &without);
    assert_eq!(b.mlm_words, 0);
    assert_eq!(b.neighbour_words, a.mlm_words + a.neighbour_words);
}

#[test]
fn mlm_candidates_with_a_bert_mlm_head() {
    mlm_path("bert_mlm", "the cat was on the mat and it was not there");
}

#[test]
fn mlm_candidates_with_a_roberta_mlm_head() {
    mlm_path("roberta_mlm", "the cat was on the mat and it was not there");
}

/// MPNet's vocabulary is WordPiece with RoBERTa's `<s>`/`</s>`/`<mask>`: its whole words (no `##`)
/// replace words; the special tokens must not be taken for byte-level BPE's.
#[test]
fn neighbour_candidates_with_an_mpnet_wordpiece_vocabulary() {
    let dir = fixture("mpnet_cls");
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json"), 64, false).unwrap();
    assert!(tok.token_to_id("<mask>").is_some() && !tok.is_bpe());
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let emb = weights
        .into_iter()
        .find(|(k, _)| k.ends_with("embeddings.word_embeddings.weight"))
        .unwrap()
        .1;
    let t = without_mlm(&tok, &emb, 8);
    let ex = vec![Example {
        text_a: "the film was a wonderful story of a small dog and a big city".into(),
        text_b: None,
        label: Label::Class(1),
    }];
    let a = run(&ex, &cfg(3, 0.5), 5, &t);
    assert!(a.neighbour_words > 0);
    assert!(a.replaced > 0, "no word replaced");
    assert_eq!(a.examples.len(), 3, "{:?}", a.examples);
    for v in &a.examples {
        for w in words(&v.text_a) {
            assert!(
                tok.token_to_id(&w).is_some() && !w.starts_with("##"),
                "`{w}`"
            );
            assert!(!w.starts_with('<'), "a special token `{w}` replaced a word");
        }
    }
}

/// A vocabulary with no whole word cannot replace any: an error naming the tokenizer file, not a silent
/// run with no variants.
#[test]
fn a_vocabulary_without_whole_words_is_an_error_naming_it() {
    let d = tempfile::tempdir().unwrap();
    let vocab = d.path().join("vocab.txt");
    std::fs::write(&vocab, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n##a\n##b\n,\n").unwrap();
    let tok = TextTokenizer::from_file(&vocab, 16, false).unwrap();
    let emb = Tensor::ones((tok.vocab_size(), 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let t = without_mlm(&tok, &emb, 4);
    let ex = examples(3, false);
    let err = augment(&ex, &cfg(2, 1.0), 1, false, &t)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vocab.txt") && err.contains("whole word"),
        "{err}"
    );
}
