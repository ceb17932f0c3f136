//! Builds a corpus token cache (the layout is described in `cache`): streams the corpus files line by
//! line, tokenizes them in chunks (memory bounded by the chunk, not the corpus) and appends to the flat
//! files in a temporary folder, which is synced and renamed into place only when complete.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::corpus::layout::{
    BuildOptions, CacheMeta, CorpusFingerprint, DOCUMENTS, META, SENTENCES, TOKENS,
};
use crate::{Error, Result};
use modeling::tokenizer::{PlainEncoder, TextTokenizer};

/// The growing cache files and their counts.
struct Writers {
    tokens: BufWriter<File>,
    sentences: BufWriter<File>,
    documents: BufWriter<File>,
    dir: PathBuf,
    n_tokens: u64,
    n_sentences: u64,
    n_documents: u64,
    /// A sentence has been written since the last document ended.
    doc_open: bool,
    /// Ids that only packing may place ([CLS], [SEP], [PAD], [MASK]): dropped from the text.
    structural: [u32; 4],
}

impl Writers {
    fn create(dir: &Path, structural: [u32; 4]) -> Result<Self> {
        let open = |name: &str| -> Result<BufWriter<File>> {
            let p = dir.join(name);
            Ok(BufWriter::new(
                File::create(&p).map_err(|e| Error::io(&p, e))?,
            ))
        };
        let mut w = Self {
            tokens: open(TOKENS)?,
            sentences: open(SENTENCES)?,
            documents: open(DOCUMENTS)?,
            dir: dir.to_path_buf(),
            n_tokens: 0,
            n_sentences: 0,
            n_documents: 0,
            doc_open: false,
            structural,
        };
        // Both offset files start at 0, so entry i and i + 1 bound item i.
        w.put_offset(SENTENCES, 0)?;
        w.put_offset(DOCUMENTS, 0)?;
        Ok(w)
    }

    fn put_offset(&mut self, file: &str, v: u64) -> Result<()> {
        let w = if file == SENTENCES {
            &mut self.sentences
        } else {
            &mut self.documents
        };
        w.write_all(&v.to_le_bytes())
            .map_err(|e| Error::io(self.dir.join(file), e))
    }

    fn sentence(&mut self, ids: &[u32]) -> Result<()> {
        let mut n = 0u64;
        for &id in ids.iter().filter(|id| !self.structural.contains(id)) {
            self.tokens
                .write_all(&id.to_le_bytes())
                .map_err(|e| Error::io(self.dir.join(TOKENS), e))?;
            n += 1;
        }
        if n == 0 {
            return Ok(()); // nothing left to learn from (e.g. only control characters)
        }
        self.n_tokens += n;
        self.n_sentences += 1;
        self.doc_open = true;
        self.put_offset(SENTENCES, self.n_tokens)
    }

    fn end_document(&mut self) -> Result<()> {
        if !self.doc_open {
            return Ok(()); // blank lines in a row, or a file ending in one: no empty documents
        }
        self.doc_open = false;
        self.n_documents += 1;
        self.put_offset(DOCUMENTS, self.n_sentences)
    }

    /// Tokenizes a chunk of lines (`None` = blank line) and appends it.
    fn chunk(&mut self, enc: &PlainEncoder, lines: &mut Vec<Option<String>>) -> Result<()> {
        let items = std::mem::take(lines);
        let blank: Vec<bool> = items.iter().map(Option::is_none).collect();
        let texts: Vec<String> = items.into_iter().flatten().collect();
        let mut ids = enc.encode_batch(&texts)?.into_iter();
        for b in blank {
            if b {
                self.end_document()?;
            } else if let Some(s) = ids.next() {
                self.sentence(&s)?;
            }
        }
        Ok(())
    }

    /// Flushes and syncs every file.
    fn finish(self) -> Result<(u64, u64, u64)> {
        let counts = (self.n_tokens, self.n_sentences, self.n_documents);
        for (name, w) in [
            (TOKENS, self.tokens),
            (SENTENCES, self.sentences),
            (DOCUMENTS, self.documents),
        ] {
            let p = self.dir.join(name);
            let f = w.into_inner().map_err(|e| Error::io(&p, e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(&p, e))?;
        }
        Ok(counts)
    }
}

fn progress(total: u64, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix("corpus");
    bar
}

pub(crate) fn build_with(
    corpus: &[PathBuf],
    tok: &TextTokenizer,
    dir: &Path,
    opts: &BuildOptions,
    fingerprint: CorpusFingerprint,
) -> Result<()> {
    if corpus.is_empty() {
        return Err(Error::Msg("corpus: no files given".into()));
    }
    // Only ever replace a folder that is a cache (or empty): never a user's folder given by mistake.
    if dir.exists() && !dir.join(META).is_file() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::file(
                dir,
                "exists and is not a corpus cache (no cache.json): refusing to replace it",
            ));
        }
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "corpus-cache".into());
    let tmp = parent.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = write_cache(corpus, tok, &tmp, opts, fingerprint);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    Ok(())
}

fn write_cache(
    corpus: &[PathBuf],
    tok: &TextTokenizer,
    tmp: &Path,
    opts: &BuildOptions,
    fingerprint: CorpusFingerprint,
) -> Result<()> {
    let enc = tok.plain()?;
    let sp = tok.special_tokens()?;
    let mut out = Writers::create(tmp, [sp.cls, sp.sep, sp.pad, sp.mask])?;
    let total: u64 = corpus
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = progress(total, opts.progress);
    let per_chunk = opts.lines_per_chunk.max(1);
    for path in corpus {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::new(f);
        let mut lines: Vec<Option<String>> = Vec::with_capacity(per_chunk.min(1 << 16));
        let mut line = String::new();
        let mut lineno = 0usize;
        loop {
            line.clear();
            lineno += 1;
            let n = reader.read_line(&mut line).map_err(|e| Error::Data {
                path: path.clone(),
                line: lineno,
                msg: format!("cannot read ({e}): the corpus must be UTF-8 text"),
            })?;
            if n == 0 {
                break;
            }
            bar.inc(n as u64);
            let text = line.trim();
            lines.push((!text.is_empty()).then(|| text.to_string()));
            if lines.len() >= per_chunk {
                out.chunk(&enc, &mut lines)?;
            }
        }
        out.chunk(&enc, &mut lines)?;
        out.end_document()?; // a file ends its last document
    }
    bar.finish_and_clear();
    let (tokens, sentences, documents) = out.finish()?;
    if tokens == 0 {
        return Err(Error::Msg(format!(
            "corpus {}: no text to tokenize",
            corpus
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let meta = CacheMeta {
        fingerprint,
        files: corpus.to_vec(),
        tokens,
        sentences,
        documents,
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| Error::Msg(e.to_string()))?;
    modeling::write_atomic(&tmp.join(META), json.as_bytes())
}
