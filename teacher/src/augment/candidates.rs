//! Replacement candidates for one word, TinyBERT-style (Jiao et al. 2020, `data_augmentation.py`): the
//! teacher-MLM's top-K predictions at the word's masked position, or the K nearest neighbours of the
//! word's token embedding by cosine similarity over the teacher's word-embedding matrix. Both exclude
//! special tokens, subword continuations (`##x`, BPE pieces without `Ġ`) and the word's own pieces.

use candle_core::{DType, Device, Tensor, D};

use crate::{Error, Result};
use modeling::batch::make_batch;
use modeling::mlm::MaskedLm;
use modeling::tokenizer::{Encoded, TextTokenizer};

/// Which vocabulary entries may replace a word, and the text each one stands for.
pub struct Vocab {
    /// Per id: a whole word (not special, not a continuation piece, with a letter or digit).
    pub allowed: Vec<bool>,
    /// Per id: the token as text (`Ġparis` -> `paris`); empty when not allowed.
    pub text: Vec<String>,
}

impl Vocab {
    pub fn new(tok: &TextTokenizer) -> Result<Self> {
        let specials = tok.special_tokens()?;
        // A byte-level BPE vocabulary marks word starts with `Ġ`; WordPiece marks continuations `##`.
        let bpe = tok.is_bpe();
        let n = tok.vocab_size();
        let (mut allowed, mut text) = (vec![false; n], vec![String::new(); n]);
        for id in 0..n as u32 {
            let Some(t) = tok.id_to_token(id) else {
                continue;
            };
            let start = if bpe {
                t.starts_with('Ġ')
            } else {
                !t.starts_with("##")
            };
            // `[unused3]`, `<unk>`: placeholders, never words.
            let bracketed = (t.starts_with('[') && t.ends_with(']') && t.len() > 2)
                || (t.starts_with('<') && t.ends_with('>') && t.len() > 2);
            if !start || bracketed || specials.is_special(id) {
                continue;
            }
            let s = tok.decode(&[id])?.trim().to_string();
            if s.chars().any(char::is_alphanumeric) && !s.contains(char::is_whitespace) {
                allowed[id as usize] = true;
                text[id as usize] = s;
            }
        }
        // Without a single replacement word every variant would equal its sentence and be dropped.
        if !allowed.contains(&true) {
            return Err(Error::file(
                tok.path(),
                "augment: no vocabulary entry can replace a word (none is a whole word)",
            ));
        }
        Ok(Self { allowed, text })
    }
}

/// The `k` best allowed ids of one score row, best first, skipping `exclude`.
pub fn top_k(scores: &[f32], vocab: &Vocab, exclude: &[u32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| vocab.allowed.get(i as usize) == Some(&true) && !exclude.contains(&i))
        .collect();
    let by_score = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]);
    if ids.len() > k && k > 0 {
        ids.select_nth_unstable_by(k - 1, by_score);
        ids.truncate(k);
    }
    // Ties broken by id, so the order never depends on the selection algorithm.
    ids.sort_by(|a, b| by_score(a, b).then(a.cmp(b)));
    ids.truncate(k);
    ids
}

/// One word to predict with the masked LM: its sentence's ids with `[MASK]` at `position`.
pub struct MlmQuery {
    pub input: Encoded,
    pub position: usize,
    /// The word's own id (never its own replacement).
    pub own: u32,
}

/// Top-`k` masked-LM predictions of each query, batched `batch_size` at a time (sorted by length, so
/// batches hold little padding).
pub fn mlm_candidates(
    mlm: &MaskedLm,
    queries: &[MlmQuery],
    vocab: &Vocab,
    pad_id: u32,
    k: usize,
    batch_size: usize,
) -> Result<Vec<Vec<u32>>> {
    let mut order: Vec<usize> = (0..queries.len()).collect();
    order.sort_by_key(|&i| queries[i].input.ids.len());
    let mut out = vec![Vec::new(); queries.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let items: Vec<&Encoded> = chunk.iter().map(|&i| &queries[i].input).collect();
        let batch = make_batch(&items, pad_id, &mlm.device)?;
        let s = batch.input_ids.dims2()?.1;
        let pos: Vec<u32> = chunk
            .iter()
            .enumerate()
            .map(|(r, &i)| (r * s + queries[i].position) as u32)
            .collect();
        let pos = Tensor::new(pos, &mlm.device)?;
        let logits = mlm.forward_at(&batch, &pos, false)?; // [n, vocab]
        let rows: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        for (&i, row) in chunk.iter().zip(&rows) {
            out[i] = top_k(row, vocab, &[queries[i].own], k);
        }
    }
    Ok(out)
}

/// The teacher's word embeddings [vocab, h], each row scaled to unit length (once per run).
pub fn normalised(embeddings: &Tensor) -> Result<Tensor> {
    let e = embeddings.to_dtype(DType::F32)?;
    let norm = e
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(e.broadcast_div(&norm)?)
}

/// The `k` nearest neighbours (cosine) of each word, a word being the mean of its pieces' embeddings:
/// one matmul [m, h] x [h, vocab] per `batch` words.
pub fn neighbour_candidates(
    unit: &Tensor,
    words: &[Vec<u32>],
    vocab: &Vocab,
    k: usize,
    batch: usize,
) -> Result<Vec<Vec<u32>>> {
    let dev: &Device = unit.device();
    let unit_t = unit.t()?.contiguous()?; // [h, vocab]
    let mut out = Vec::with_capacity(words.len());
    for chunk in words.chunks(batch.max(1)) {
        let mut queries = Vec::with_capacity(chunk.len());
        for pieces in chunk {
            let ids = Tensor::new(pieces.as_slice(), dev)?;
            queries.push(unit.index_select(&ids, 0)?.mean(0)?); // [h]
        }
        let q = Tensor::stack(&queries, 0)?; // [m, h]
        let scores: Vec<Vec<f32>> = q.matmul(&unit_t)?.to_vec2()?; // [m, vocab]
        for (pieces, row) in chunk.iter().zip(&scores) {
            out.push(top_k(row, vocab, pieces, k));
        }
    }
    Ok(out)
}
