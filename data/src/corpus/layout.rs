//! The files of a corpus cache and what identifies them: the file names, the format version, the
//! fingerprint of the corpus and tokenizer a cache was built from, and `cache.json`'s contents. `build`
//! writes this layout and `cache` reads it.

use std::fs::File;
use std::path::PathBuf;

use modeling::tokenizer::TextTokenizer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Bumped whenever the files' layout or the tokenization rules change, so old caches are rebuilt.
pub const FORMAT_VERSION: u32 = 1;

pub(crate) const TOKENS: &str = "tokens.u32";
pub(crate) const SENTENCES: &str = "sentences.u64";
pub(crate) const DOCUMENTS: &str = "documents.u64";
pub(crate) const META: &str = "cache.json";

/// What a cache was built from; each field is compared on its own so a rebuild can say what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusFingerprint {
    pub format: u32,
    /// SHA-256 over the corpus files' contents, in the order given (each closed by its length).
    pub corpus: String,
    /// SHA-256 of the tokenizer file (tokenizer.json or vocab.txt).
    pub tokenizer: String,
    /// Lower-casing of a vocab.txt tokenizer.
    pub lowercase: bool,
}

impl CorpusFingerprint {
    pub fn compute(corpus: &[PathBuf], tok: &TextTokenizer) -> Result<Self> {
        let mut h = Sha256::new();
        for p in corpus {
            let mut f = File::open(p).map_err(|e| Error::io(p, e))?;
            let n = std::io::copy(&mut f, &mut h).map_err(|e| Error::io(p, e))?;
            // The length closes each file: the same text split differently between files differs.
            h.update(n.to_le_bytes());
        }
        Ok(Self {
            format: FORMAT_VERSION,
            corpus: format!("{:x}", h.finalize()),
            tokenizer: modeling::io::hash_files(&[tok.path()])?,
            lowercase: tok.lowercase(),
        })
    }

    /// What differs from `old`, in words.
    pub fn changes(&self, old: &CorpusFingerprint) -> Vec<String> {
        let mut v = Vec::new();
        if self.format != old.format {
            v.push(format!(
                "the cache format changed ({} -> {})",
                old.format, self.format
            ));
        }
        if self.corpus != old.corpus {
            v.push("the corpus files' contents changed".into());
        }
        if self.tokenizer != old.tokenizer {
            v.push("the tokenizer file changed".into());
        }
        if self.lowercase != old.lowercase {
            v.push(format!(
                "lower-casing changed ({} -> {})",
                old.lowercase, self.lowercase
            ));
        }
        v
    }
}

/// `cache.json`: the fingerprint, the files it was built from and the counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub fingerprint: CorpusFingerprint,
    pub files: Vec<PathBuf>,
    pub tokens: u64,
    pub sentences: u64,
    pub documents: u64,
}

/// How to build a cache.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Lines tokenized per batch: bounds the build's memory (tokenizers spreads a batch over threads).
    pub lines_per_chunk: usize,
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            lines_per_chunk: 10_000,
            progress: true,
        }
    }
}
