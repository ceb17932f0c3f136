//! FULL-SENTENCES packing, as RoBERTa was pre-trained (Liu et al. 2019, §4.2): each input is filled
//! with contiguous sentences up to `max_seq_len` tokens, [CLS] ... [SEP] (<s> ... </s>) included. An
//! input may cross a document boundary, where one extra separator is inserted; a sentence longer than
//! an input is split across inputs. The packing is a pure function of the cache and the document list,
//! so every epoch (and a resumed run) sees the same inputs; only the masking is redrawn.
//!
//! Inputs are kept as runs of token offsets into the memory-mapped cache (16 bytes per run, about one
//! run per document an input touches), not as tokens, so the index stays small beside the corpus.

use crate::corpus::cache::TokenCache;
use crate::{Error, Result};
use modeling::tokenizer::SpecialTokens;

/// Consecutive tokens of one document inside a packed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Offset of the first token in the cache's token file.
    pub start: u64,
    pub len: u32,
    /// Starts another document than the piece before it in the same input: a separator precedes it.
    pub new_document: bool,
}

/// Packed inputs over a list of documents.
#[derive(Debug, Clone)]
pub struct Packing {
    pieces: Vec<Piece>,
    /// Input `i` is `pieces[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
    max_seq_len: usize,
}

/// The input being filled.
struct Open {
    /// Tokens so far, separators included, [CLS]/[SEP] not.
    len: usize,
    doc: Option<usize>,
}

impl Packing {
    /// Packs `documents` (cache document indices, taken in the order given) into inputs of at most
    /// `max_seq_len` tokens.
    pub fn new(cache: &TokenCache, documents: &[usize], max_seq_len: usize) -> Result<Self> {
        if max_seq_len < 8 {
            return Err(Error::Msg(format!(
                "max_seq_len {max_seq_len}: packed inputs need at least 8 tokens"
            )));
        }
        let budget = max_seq_len - 2; // room left by [CLS] and the closing [SEP]
        let mut p = Packing {
            pieces: Vec::new(),
            starts: vec![0],
            max_seq_len,
        };
        let mut open = Open { len: 0, doc: None };
        for &d in documents {
            for s in cache.document(d)? {
                let r = cache.sentence(s)?;
                let (mut start, mut left) = (r.start, (r.end - r.start) as usize);
                while left > 0 {
                    let sep = open.len > 0 && open.doc != Some(d);
                    let room = budget.saturating_sub(open.len + usize::from(sep));
                    if left <= room {
                        p.push(&mut open, d, start, left, sep);
                        break;
                    }
                    if open.len > 0 {
                        p.close(&mut open); // the sentence starts a fresh input instead
                        continue;
                    }
                    // Longer than a whole input: fill one and go on with the rest.
                    p.push(&mut open, d, start, budget, false);
                    start += budget as u64;
                    left -= budget;
                }
            }
        }
        p.close(&mut open);
        Ok(p)
    }

    fn push(&mut self, open: &mut Open, doc: usize, start: u64, len: usize, sep: bool) {
        let first_here = self.starts.last().copied().unwrap_or(0);
        let in_this_input = self.pieces.len() > first_here;
        match self.pieces.last_mut() {
            // The next sentence of the same document follows on in the token file: extend the run.
            Some(last) if !sep && in_this_input && last.start + u64::from(last.len) == start => {
                last.len += len as u32;
            }
            _ => self.pieces.push(Piece {
                start,
                len: len as u32,
                new_document: sep,
            }),
        }
        open.len += len + usize::from(sep);
        open.doc = Some(doc);
    }

    fn close(&mut self, open: &mut Open) {
        if open.len > 0 {
            self.starts.push(self.pieces.len());
        }
        *open = Open { len: 0, doc: None };
    }

    /// Number of packed inputs.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The runs of input `i`.
    pub fn pieces(&self, i: usize) -> &[Piece] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.pieces.get(a..b).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Length of input `i` in tokens, special tokens included.
    pub fn input_len(&self, i: usize) -> usize {
        let body: usize = self
            .pieces(i)
            .iter()
            .map(|p| p.len as usize + usize::from(p.new_document))
            .sum();
        body + 2
    }

    /// Writes input `i` into `out`: [CLS] tokens ([SEP] at each document change) ... [SEP].
    pub fn input_ids(
        &self,
        cache: &TokenCache,
        specials: &SpecialTokens,
        i: usize,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        if i >= self.len() {
            return Err(Error::Msg(format!(
                "packed input {i} of {} requested",
                self.len()
            )));
        }
        out.clear();
        out.push(specials.cls);
        for p in self.pieces(i) {
            if p.new_document {
                out.push(specials.sep);
            }
            cache.read_tokens(p.start..p.start + u64::from(p.len), out)?;
        }
        out.push(specials.sep);
        Ok(())
    }
}
