//! The data side of masked-LM pre-training on tiny corpora: the token cache (round trip, chunked
//! streaming, fingerprint staleness), the held-out split, FULL-SENTENCES packing invariants, dynamic
//! masking statistics and determinism, and epoch batches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test may fail loudly

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use data::corpus::{
    BuildOptions, CacheStatus, Masker, MaskingConfig, MlmDataset, Packing, TokenCache, IGNORE,
};
use modeling::testutil;
use modeling::TextTokenizer;

fn tokenizer(dir: &Path) -> TextTokenizer {
    let vocab = dir.join("vocab.txt");
    testutil::write_vocab(&vocab).unwrap();
    TextTokenizer::from_file(&vocab, 512, false).unwrap()
}

fn quiet(lines_per_chunk: usize) -> BuildOptions {
    BuildOptions {
        lines_per_chunk,
        progress: false,
    }
}

/// Sentence `k` of the synthetic corpus: 1 to 12 words (some long enough to need splitting later).
fn sentence(k: usize) -> String {
    let n = 1 + (k * 7) % 12;
    (0..n)
        .map(|i| testutil::FILLER[(k * 3 + i * 5) % testutil::FILLER.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `docs` documents of 1..=6 sentences, a blank line between them (sometimes two, sometimes a
/// CRLF), into `path`; returns the documents' sentences.
fn write_corpus(path: &Path, docs: usize, first: usize) -> Vec<Vec<String>> {
    let mut text = String::new();
    let mut out = Vec::new();
    let mut k = first;
    for d in 0..docs {
        let mut doc = Vec::new();
        for _ in 0..1 + (d * 5) % 6 {
            let s = sentence(k);
            k += 1;
            text.push_str(&s);
            text.push_str(if k.is_multiple_of(7) { "\r\n" } else { "\n" });
            doc.push(s);
        }
        text.push_str(if d % 4 == 3 { "\n  \n" } else { "\n" });
        out.push(doc);
    }
    std::fs::write(path, text).unwrap();
    out
}

fn all_tokens(cache: &TokenCache, docs: &[usize]) -> Vec<u32> {
    let mut v = Vec::new();
    for &d in docs {
        cache
            .read_tokens(cache.document_tokens(d).unwrap(), &mut v)
            .unwrap();
    }
    v
}

#[test]
fn cache_round_trip_in_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let (a, b) = (tmp.path().join("a.txt"), tmp.path().join("b.txt"));
    let mut docs = write_corpus(&a, 60, 0);
    // The second file starts with blank lines and holds a line of only special tokens (dropped) and
    // special tokens inside text (removed: only packing places them).
    std::fs::write(&b, "\n\nthe movie [SEP] was good\n[CLS] [MASK]\nit is\n").unwrap();
    docs.push(vec!["the movie was good".into(), "it is".into()]);
    let files = vec![a.clone(), b.clone()];

    let small = TokenCache::build(&files, &tok, &tmp.path().join("c1"), &quiet(3)).unwrap();
    let whole = TokenCache::build(&files, &tok, &tmp.path().join("c2"), &quiet(100_000)).unwrap();
    for f in ["tokens.u32", "sentences.u64", "documents.u64"] {
        assert_eq!(
            std::fs::read(small.dir().join(f)).unwrap(),
            std::fs::read(whole.dir().join(f)).unwrap(),
            "{f}: chunked and whole builds differ"
        );
    }
    assert_eq!(small.meta(), whole.meta());

    // Reopened from disk, every sentence reads back as the tokenizer encodes it.
    drop(small);
    let cache = TokenCache::open(&tmp.path().join("c1")).unwrap();
    let plain = tok.plain().unwrap();
    assert_eq!(cache.num_documents(), docs.len());
    let n_sentences: usize = docs.iter().map(Vec::len).sum();
    assert_eq!(cache.num_sentences(), n_sentences);
    let mut total = 0;
    for (d, doc) in docs.iter().enumerate() {
        let range = cache.document(d).unwrap();
        assert_eq!(range.len(), doc.len(), "document {d}");
        let want = plain.encode_batch(doc).unwrap();
        for (s, w) in range.zip(&want) {
            let mut got = Vec::new();
            cache
                .read_tokens(cache.sentence(s).unwrap(), &mut got)
                .unwrap();
            assert_eq!(&got, w, "document {d} sentence {s}");
            total += w.len() as u64;
        }
    }
    assert_eq!(cache.num_tokens(), total);
    assert!(cache.sentence(n_sentences).is_err());
    assert!(cache.document(docs.len()).is_err());
}

#[test]
fn fingerprint_notices_corpus_and_tokenizer_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let corpus = tmp.path().join("corpus.txt");
    write_corpus(&corpus, 10, 0);
    let files = vec![corpus.clone()];
    let dir = tmp.path().join("cache");
    let opts = quiet(1000);

    let (_, status) = TokenCache::open_or_build(&files, &tok, &dir, &opts).unwrap();
    assert_eq!(status, CacheStatus::Built(vec!["no cache yet".into()]));
    let (_, status) = TokenCache::open_or_build(&files, &tok, &dir, &opts).unwrap();
    assert_eq!(status, CacheStatus::Fresh);

    write_corpus(&corpus, 11, 0);
    let (c, status) = TokenCache::open_or_build(&files, &tok, &dir, &opts).unwrap();
    assert_eq!(
        status,
        CacheStatus::Built(vec!["the corpus files' contents changed".into()])
    );
    assert_eq!(c.num_documents(), 11);

    // Another tokenizer file (one more word in the vocabulary), then lower-casing.
    let vocab2 = tmp.path().join("vocab2.txt");
    let mut v = testutil::vocab();
    v.push("extra".into());
    std::fs::write(&vocab2, v.join("\n") + "\n").unwrap();
    let tok2 = TextTokenizer::from_file(&vocab2, 512, false).unwrap();
    let (_, status) = TokenCache::open_or_build(&files, &tok2, &dir, &opts).unwrap();
    assert_eq!(
        status,
        CacheStatus::Built(vec!["the tokenizer file changed".into()])
    );
    let lower = TextTokenizer::from_file(&vocab2, 512, true).unwrap();
    let (_, status) = TokenCache::open_or_build(&files, &lower, &dir, &opts).unwrap();
    let CacheStatus::Built(why) = status else {
        panic!("lower-casing not noticed")
    };
    assert!(why[0].contains("lower-casing"), "{why:?}");

    // A damaged cache is rebuilt; a folder that is not a cache is never replaced.
    std::fs::write(dir.join("tokens.u32"), b"xx").unwrap();
    assert!(TokenCache::open(&dir).is_err());
    let (_, status) = TokenCache::open_or_build(&files, &lower, &dir, &opts).unwrap();
    let CacheStatus::Built(why) = status else {
        panic!("damage not noticed")
    };
    assert!(why[0].contains("unreadable"), "{why:?}");
    let other = tmp.path().join("notes");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let err = TokenCache::build(&files, &tok, &other, &opts).unwrap_err();
    assert!(err.to_string().contains("not a corpus cache"), "{err}");
    assert!(other.join("keep.txt").is_file());

    // Nothing to tokenize is an error that names the file.
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let err = TokenCache::build(&[empty], &tok, &tmp.path().join("c3"), &opts).unwrap_err();
    assert!(err.to_string().contains("empty.txt"), "{err}");
    assert!(!tmp.path().join("c3").exists());
}

#[test]
fn held_out_split_is_seeded_and_disjoint() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let corpus = tmp.path().join("corpus.txt");
    write_corpus(&corpus, 450, 0);
    let cache = TokenCache::build(&[corpus], &tok, &tmp.path().join("c"), &quiet(1000)).unwrap();
    let s = cache.split(0.01, 7);
    assert_eq!(s.eval.len(), 5, "1% of 450 documents, rounded");
    assert_eq!(s.train.len() + s.eval.len(), 450);
    let mut all: Vec<usize> = s.train.iter().chain(&s.eval).copied().collect();
    all.sort();
    assert_eq!(all, (0..450).collect::<Vec<_>>());
    assert!(s.train.windows(2).all(|w| w[0] < w[1]), "corpus order");
    assert_eq!(cache.split(0.01, 7), s);
    assert_ne!(cache.split(0.01, 8).eval, s.eval);
}

/// Checks every packing invariant against the documents' token stream.
fn check_packing(cache: &TokenCache, docs: &[usize], max_len: usize, tok: &TextTokenizer) -> usize {
    let sp = tok.special_tokens().unwrap();
    let p = Packing::new(cache, docs, max_len).unwrap();
    let mut body = Vec::new();
    let mut separators = 0;
    let mut ids = Vec::new();
    for i in 0..p.len() {
        p.input_ids(cache, &sp, i, &mut ids).unwrap();
        assert!(ids.len() <= max_len, "input {i}: {} tokens", ids.len());
        assert_eq!(ids.len(), p.input_len(i));
        assert!(ids.len() > 2, "input {i} is empty");
        assert_eq!(ids[0], sp.cls);
        assert_eq!(*ids.last().unwrap(), sp.sep);
        let inner = &ids[1..ids.len() - 1];
        separators += inner.iter().filter(|&&t| t == sp.sep).count();
        assert!(!inner.contains(&sp.cls) && !inner.contains(&sp.pad));
        body.extend(inner.iter().copied().filter(|&t| t != sp.sep));
        // Separators sit exactly where the input changes document.
        let changes = p.pieces(i).iter().filter(|x| x.new_document).count();
        assert_eq!(inner.iter().filter(|&&t| t == sp.sep).count(), changes);
        assert!(!p.pieces(i)[0].new_document);
    }
    // Every token once, in order.
    assert_eq!(body, all_tokens(cache, docs));
    // A separator exactly where an input moves to another document.
    let doc_of = |offset: u64| {
        docs.iter()
            .position(|&d| cache.document_tokens(d).unwrap().contains(&offset))
            .unwrap()
    };
    let mut crossings = 0;
    for i in 0..p.len() {
        let pieces = p.pieces(i);
        for w in pieces.windows(2) {
            let changed = doc_of(w[0].start) != doc_of(w[1].start);
            assert_eq!(w[1].new_document, changed, "input {i}");
            crossings += usize::from(changed);
        }
    }
    assert_eq!(separators, crossings);
    assert!(separators < docs.len().max(1));
    // A sentence that fits in an input is never split: its tokens sit in one input.
    let budget = max_len - 2;
    let mut starts = std::collections::HashSet::new();
    let mut spans = Vec::new();
    for i in 0..p.len() {
        for x in p.pieces(i) {
            spans.push((x.start, x.start + u64::from(x.len)));
            starts.insert(x.start);
        }
    }
    for &d in docs {
        for s in cache.document(d).unwrap() {
            let r = cache.sentence(s).unwrap();
            if (r.end - r.start) as usize <= budget {
                assert!(
                    spans.iter().any(|&(a, b)| a <= r.start && r.end <= b),
                    "sentence {s} ({r:?}) split"
                );
            }
        }
    }
    separators
}

#[test]
fn packing_fills_inputs_with_whole_sentences() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let corpus = tmp.path().join("corpus.txt");
    write_corpus(&corpus, 40, 0);
    // A sentence longer than two whole inputs, in a document of its own.
    let long: Vec<&str> = (0..45).map(|i| testutil::FILLER[i % 16]).collect();
    let mut text = std::fs::read_to_string(&corpus).unwrap();
    text.push_str(&format!("{}\nthe end\n", long.join(" ")));
    std::fs::write(&corpus, text).unwrap();
    let cache = TokenCache::build(&[corpus], &tok, &tmp.path().join("c"), &quiet(1000)).unwrap();
    let all: Vec<usize> = (0..cache.num_documents()).collect();
    for max_len in [8, 16, 33, 256] {
        let seps = check_packing(&cache, &all, max_len, &tok);
        assert!(seps > 0, "max_len {max_len}: no input crosses a document");
    }
    let split = cache.split(0.1, 1);
    check_packing(&cache, &split.train, 16, &tok);
    check_packing(&cache, &split.eval, 16, &tok);

    // Inputs are filled: far fewer inputs than sentences.
    let p = Packing::new(&cache, &all, 256).unwrap();
    assert!(p.len() < cache.num_sentences() / 4, "{} inputs", p.len());
    assert_eq!(
        Packing::new(&cache, &all, 16).unwrap().len(),
        Packing::new(&cache, &all, 16).unwrap().len(),
        "deterministic"
    );
    assert!(Packing::new(&cache, &all, 4).is_err());
}

#[test]
fn masking_rates_specials_and_determinism() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let sp = tok.special_tokens().unwrap();
    let vocab = tok.vocab_size();
    let masker = Masker::new(MaskingConfig::default(), sp.clone(), vocab, 42).unwrap();
    let (mut n_real, mut predicted, mut masked, mut random, mut kept) = (0, 0, 0, 0, 0);
    for i in 0..3000u64 {
        // [CLS] 60 tokens with a [SEP] and an [UNK] among them [SEP]
        let mut ids = vec![sp.cls];
        ids.extend((0..60).map(|j| 5 + ((i as u32 * 31 + j * 17) % (vocab as u32 - 5))));
        ids[20] = sp.sep;
        ids[30] = tok.token_to_id("[UNK]").unwrap();
        ids.push(sp.sep);
        let m = masker.mask(&ids, 3, i);
        assert_eq!(m, masker.mask(&ids, 3, i), "same (seed, epoch, index)");
        n_real += ids.iter().filter(|&&t| !sp.is_special(t)).count();
        for (p, (&orig, (&inp, &lab))) in ids
            .iter()
            .zip(m.input_ids.iter().zip(&m.labels))
            .enumerate()
        {
            if sp.is_special(orig) {
                assert_eq!((inp, lab), (orig, IGNORE), "special token touched at {p}");
                continue;
            }
            if lab == IGNORE {
                assert_eq!(inp, orig);
                continue;
            }
            assert_eq!(lab, i64::from(orig));
            predicted += 1;
            if inp == sp.mask {
                masked += 1;
            } else if inp == orig {
                kept += 1;
            } else {
                assert!(!sp.is_special(inp), "random replacement {inp} is special");
                random += 1;
            }
        }
    }
    let rate = predicted as f64 / n_real as f64;
    assert!((rate - 0.15).abs() < 0.003, "predicted {rate}");
    let share = |k: usize| k as f64 / predicted as f64;
    assert!(
        (share(masked) - 0.8).abs() < 0.015,
        "mask {}",
        share(masked)
    );
    // A random draw equals the original 1/V of the time: it then counts as kept.
    assert!(
        (share(random) - 0.1).abs() < 0.012,
        "random {}",
        share(random)
    );
    assert!((share(kept) - 0.1).abs() < 0.012, "kept {}", share(kept));

    // Masks are redrawn per epoch and per input, and at least one token is predicted.
    let ids: Vec<u32> = [sp.cls, 10, 11, 12, 13, 14, 15, 16, 17, sp.sep].to_vec();
    let e: Vec<Vec<i64>> = (0..6).map(|ep| masker.mask(&ids, ep, 0).labels).collect();
    assert!(
        e.windows(2).any(|w| w[0] != w[1]),
        "epochs draw the same masks"
    );
    assert_ne!(masker.mask(&ids, 0, 0).labels.len(), 0);
    for k in 0..200 {
        let short = [sp.cls, 40, sp.sep];
        let m = masker.mask(&short, k, k);
        assert_eq!(m.labels[1], 40, "the one real token is always predicted");
    }
    let other = Masker::new(MaskingConfig::default(), sp.clone(), vocab, 43).unwrap();
    assert!((0..10).any(|i| other.mask(&ids, 0, i) != masker.mask(&ids, 0, i)));

    let bad = MaskingConfig {
        replace_mask: 0.95,
        ..Default::default()
    };
    assert!(Masker::new(bad, sp, vocab, 0).is_err());
}

#[test]
fn epoch_batches_cover_every_input_with_consistent_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(tmp.path());
    let corpus = tmp.path().join("corpus.txt");
    write_corpus(&corpus, 50, 3);
    let cache =
        Arc::new(TokenCache::build(&[corpus], &tok, &tmp.path().join("c"), &quiet(1000)).unwrap());
    let sp = tok.special_tokens().unwrap();
    let masker = Masker::new(MaskingConfig::default(), sp.clone(), tok.vocab_size(), 5).unwrap();
    let all: Vec<usize> = (0..cache.num_documents()).collect();
    let data = MlmDataset::new(cache, &all, 24, masker).unwrap();
    let order = data.epoch_batches(4, 0);
    let mut seen: Vec<usize> = order.iter().flatten().copied().collect();
    seen.sort();
    assert_eq!(seen, (0..data.len()).collect::<Vec<_>>());
    assert_eq!(
        order,
        data.epoch_batches(4, 0),
        "an epoch's order is reproducible"
    );
    assert_ne!(
        order,
        data.epoch_batches(4, 1),
        "and differs between epochs"
    );

    let mb = data.batch(&order[0], 0, &Device::Cpu).unwrap();
    let (b, s) = mb.batch.input_ids.dims2().unwrap();
    assert_eq!(b, order[0].len());
    assert!(s <= 24);
    let labels: Vec<Vec<i64>> = mb.labels.to_vec2().unwrap();
    let mask: Vec<Vec<f32>> = mb.batch.attention_mask.to_vec2().unwrap();
    let pos: Vec<u32> = mb.positions.to_vec1().unwrap();
    let tgt: Vec<u32> = mb.targets.to_vec1().unwrap();
    let mut k = 0;
    for r in 0..b {
        let n = data.input_ids(order[0][r]).unwrap().len();
        assert!(mask[r][..n].iter().all(|&m| m == 1.0) && mask[r][n..].iter().all(|&m| m == 0.0));
        assert!(
            labels[r][n..].iter().all(|&l| l == IGNORE),
            "padding predicted"
        );
        assert!(
            labels[r].iter().any(|&l| l != IGNORE),
            "row {r} predicts nothing"
        );
        for (c, &l) in labels[r].iter().enumerate() {
            if l != IGNORE {
                assert_eq!((pos[k], tgt[k]), ((r * s + c) as u32, l as u32));
                k += 1;
            }
        }
    }
    assert_eq!(k, mb.num_predicted());
    // The same inputs in another batch get the same masks (resume-exact, batch-size free).
    let single = data.batch(&order[0][1..2], 0, &Device::Cpu).unwrap();
    let l1: Vec<Vec<i64>> = single.labels.to_vec2().unwrap();
    assert_eq!(l1[0][..], labels[1][..l1[0].len()]);
    assert!(data.batch(&[], 0, &Device::Cpu).is_err());
}
