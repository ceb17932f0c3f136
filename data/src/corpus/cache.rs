//! The corpus token cache. Plain-text files (one sentence per line, a blank line between documents;
//! each file also ends a document) are tokenized once, without special tokens or truncation, into flat
//! little-endian files that are memory-mapped when read, so a corpus larger than RAM streams from disk:
//!
//! - `tokens.u32`: every token id, sentence after sentence;
//! - `sentences.u64`: `sentences + 1` token offsets (sentence `i` is `tokens[s[i]..s[i + 1]]`);
//! - `documents.u64`: `documents + 1` sentence offsets (document `d` is sentences `d[d]..d[d + 1]`);
//! - `cache.json`: the counts and a fingerprint (SHA-256 of the corpus files' contents and of the
//!   tokenizer file, lower-casing, the format version). A cache whose fingerprint differs is rebuilt.
//!
//! The same idea as fairseq's binarised datasets (a token stream plus an index) that RoBERTa was
//! pre-trained from. Building is in `build`.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::corpus::build::build_with;
use crate::corpus::layout::{
    BuildOptions, CacheMeta, CorpusFingerprint, DOCUMENTS, META, SENTENCES, TOKENS,
};
use crate::{Error, Result};
use modeling::tokenizer::TextTokenizer;

/// How `open_or_build` found the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// Present and its fingerprint matches: reused.
    Fresh,
    /// Built, with the reasons (`no cache yet`, `the corpus files' contents changed`, ...).
    Built(Vec<String>),
}

/// Documents for training and for evaluation, each list in corpus order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub eval: Vec<usize>,
}

/// An opened cache: the three files memory-mapped, read with bounds checks.
pub struct TokenCache {
    dir: PathBuf,
    meta: CacheMeta,
    tokens: Mmap,
    sentences: Mmap,
    documents: Mmap,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish()
    }
}

/// Maps a cache file read-only. One of the two places outside the kernels crate allowed `unsafe`.
#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<Mmap> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: cache files are written once into a temporary folder that is renamed into place and never
    // modified afterwards (a rebuild writes a new folder), so the mapped bytes do not change under us; a
    // file cut short by another program would break that, as it would for any mmap. Every read below
    // goes through bounds-checked slices, so bad offsets give errors, not undefined behaviour.
    unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))
}

fn u64_at(m: &Mmap, i: usize) -> Option<u64> {
    let b = m.get(i.checked_mul(8)?..i.checked_mul(8)?.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

impl TokenCache {
    /// Opens the cache in `dir`, checking that the files' sizes match `cache.json`.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: CacheMeta = serde_json::from_str(&text)
            .map_err(|e| Error::file(&meta_path, format!("not a corpus cache: {e}")))?;
        let cache = Self {
            dir: dir.to_path_buf(),
            tokens: map_file(&dir.join(TOKENS))?,
            sentences: map_file(&dir.join(SENTENCES))?,
            documents: map_file(&dir.join(DOCUMENTS))?,
            meta,
        };
        let m = &cache.meta;
        let sizes = [
            (
                TOKENS,
                cache.tokens.len() as u64,
                m.tokens.saturating_mul(4),
            ),
            (
                SENTENCES,
                cache.sentences.len() as u64,
                (m.sentences + 1) * 8,
            ),
            (
                DOCUMENTS,
                cache.documents.len() as u64,
                (m.documents + 1) * 8,
            ),
        ];
        for (name, got, want) in sizes {
            if got != want {
                return Err(Error::file(
                    dir.join(name),
                    format!("{got} bytes but cache.json implies {want}: the cache is damaged, delete it to rebuild"),
                ));
            }
        }
        Ok(cache)
    }

    /// Opens the cache in `dir` when its fingerprint matches `corpus` and `tok`; otherwise (missing,
    /// unreadable, stale) builds it, saying why in the returned status.
    pub fn open_or_build(
        corpus: &[PathBuf],
        tok: &TextTokenizer,
        dir: &Path,
        opts: &BuildOptions,
    ) -> Result<(Self, CacheStatus)> {
        let want = CorpusFingerprint::compute(corpus, tok)?;
        let reasons = if !dir.join(META).is_file() {
            vec!["no cache yet".to_string()]
        } else {
            match Self::open(dir) {
                Ok(c) if c.meta.fingerprint == want => return Ok((c, CacheStatus::Fresh)),
                Ok(c) => want.changes(&c.meta.fingerprint),
                Err(e) => vec![format!("the old cache is unreadable ({e})")],
            }
        };
        build_with(corpus, tok, dir, opts, want)?;
        let cache = Self::open(dir)?;
        Ok((cache, CacheStatus::Built(reasons)))
    }

    /// Tokenizes `corpus` into a new cache in `dir` (replacing an old cache there).
    pub fn build(
        corpus: &[PathBuf],
        tok: &TextTokenizer,
        dir: &Path,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let fp = CorpusFingerprint::compute(corpus, tok)?;
        build_with(corpus, tok, dir, opts, fp)?;
        Self::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &CacheMeta {
        &self.meta
    }

    pub fn num_tokens(&self) -> u64 {
        self.meta.tokens
    }

    pub fn num_sentences(&self) -> usize {
        self.meta.sentences as usize
    }

    pub fn num_documents(&self) -> usize {
        self.meta.documents as usize
    }

    fn damaged(&self, what: String) -> Error {
        Error::file(
            &self.dir,
            format!("corpus cache damaged: {what} (delete it to rebuild)"),
        )
    }

    /// Token offsets of sentence `i`.
    pub fn sentence(&self, i: usize) -> Result<Range<u64>> {
        let (a, b) = (u64_at(&self.sentences, i), u64_at(&self.sentences, i + 1));
        match (a, b) {
            (Some(a), Some(b)) if a <= b && b <= self.meta.tokens && i < self.num_sentences() => {
                Ok(a..b)
            }
            _ => Err(self.damaged(format!("sentence {i} has no valid offsets"))),
        }
    }

    /// Sentence indices of document `d`.
    pub fn document(&self, d: usize) -> Result<Range<usize>> {
        let (a, b) = (u64_at(&self.documents, d), u64_at(&self.documents, d + 1));
        match (a, b) {
            (Some(a), Some(b))
                if a <= b && b <= self.meta.sentences && d < self.num_documents() =>
            {
                Ok(a as usize..b as usize)
            }
            _ => Err(self.damaged(format!("document {d} has no valid offsets"))),
        }
    }

    /// Token offsets of document `d` (its sentences are contiguous in the token file).
    pub fn document_tokens(&self, d: usize) -> Result<Range<u64>> {
        let s = self.document(d)?;
        if s.is_empty() {
            return Ok(0..0);
        }
        Ok(self.sentence(s.start)?.start..self.sentence(s.end - 1)?.end)
    }

    /// Appends the tokens in `range` to `out`.
    pub fn read_tokens(&self, range: Range<u64>, out: &mut Vec<u32>) -> Result<()> {
        let bytes = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .filter(|(a, b)| a <= b)
            .and_then(|(a, b)| self.tokens.get(a.checked_mul(4)?..b.checked_mul(4)?))
            .ok_or_else(|| self.damaged(format!("token range {range:?} out of bounds")))?;
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(())
    }

    /// Holds out `fraction` of the documents for evaluation (at least one when there are two or more),
    /// chosen by a shuffle seeded with `seed`; whole documents, so no text is shared across the split.
    pub fn split(&self, fraction: f64, seed: u64) -> Split {
        let n = self.num_documents();
        let k = if n < 2 {
            0
        } else {
            ((n as f64 * fraction.clamp(0.0, 1.0)).round() as usize).clamp(1, n - 1)
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut held = vec![false; n];
        for &d in &order[..k] {
            held[d] = true;
        }
        let (eval, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&d| held[d]);
        Split { train, eval }
    }
}
