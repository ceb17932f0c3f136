//! TinyBERT's data augmentation for task distillation (Jiao et al. 2020, §3.1 and its
//! `data_augmentation.py`): `copies` variants of every training sentence, each word (as BERT's basic
//! tokenizer splits them) replaced with probability `replace_prob` by one of `candidates` words: the
//! teacher-MLM's top predictions at the masked word when it is a single token and an MLM head is at hand,
//! else the nearest neighbours of its token embedding (TinyBERT uses GloVe there; we use the mean of the
//! word's piece embeddings in the teacher's own embedding space, so no second vocabulary is needed).
//!
//! As in TinyBERT, a word's candidates come from the ORIGINAL sentence (the word masked, the others
//! intact), so they are computed once per word and shared by all copies: the teacher's cost does not
//! grow with `copies`. A variant identical to the sentence or to an earlier variant is dropped, as
//! TinyBERT drops it. Variants join words with single spaces, as TinyBERT's do.

pub mod candidates;

use std::collections::{HashMap, HashSet};

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Result;
use candidates::{MlmQuery, Vocab};
use data::tasks::{Example, Label};
use modeling::mlm::MaskedLm;
use modeling::tokenizer::{Encoded, TextTokenizer};

/// When the masked LM proposes the replacements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MlmMode {
    /// When the teacher's checkpoint has a masked-LM head.
    #[default]
    Auto,
    /// Always (an error when the checkpoint has no masked-LM head).
    On,
    /// Never: nearest neighbours in the embedding space only.
    Off,
}

/// The `augment:` section of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Variants per training example (0: no augmentation; TinyBERT uses 20).
    pub copies: usize,
    /// Probability that a word is replaced (TinyBERT's p_t).
    pub replace_prob: f64,
    /// Candidates per word (TinyBERT's K).
    pub candidates: usize,
    pub mlm: MlmMode,
    /// Seed of the replacement draws (None: the run's `seed`).
    pub seed: Option<u64>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            copies: 0,
            replace_prob: 0.4,
            candidates: 15,
            mlm: MlmMode::Auto,
            seed: None,
        }
    }
}

/// What `augment` produced, and how.
#[derive(Debug, Clone, Default)]
pub struct Augmented {
    /// The variants, in example order; their labels are soft-only (see `Label::soft`).
    pub examples: Vec<Example>,
    /// Word draws over all copies (words with a letter or digit), and how many were replaced.
    pub draws: usize,
    pub replaced: usize,
    /// Distinct words whose candidates came from the masked LM, and from embedding neighbours.
    pub mlm_words: usize,
    pub neighbour_words: usize,
}

/// The teacher parts augmentation uses: its tokenizer, its word embeddings [vocab, h] and, when used,
/// its masked LM.
pub struct Teacher<'a> {
    pub tok: &'a TextTokenizer,
    pub embeddings: &'a Tensor,
    pub mlm: Option<&'a MaskedLm>,
    pub batch_size: usize,
}

/// Words as BERT's basic tokenizer splits them: on whitespace, and every character that is neither
/// a letter, a digit nor whitespace stands alone (punctuation, symbols).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        if c.is_whitespace() || !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One sentence's words, their pieces, and which copies replace which word.
struct Sentence {
    words: Vec<String>,
    /// Candidate-set index of each word (None: never replaced in any copy).
    slot: Vec<Option<usize>>,
    /// Per copy, per word: the draw (a uniform u32 picking the candidate) when the word is replaced.
    draws: Vec<Vec<Option<u32>>>,
}

/// `cfg.copies` variants of each example (fewer when variants repeat), deterministic given `seed`.
pub fn augment(
    examples: &[Example],
    cfg: &AugmentConfig,
    seed: u64,
    regression: bool,
    t: &Teacher,
) -> Result<Augmented> {
    let mut rng = StdRng::seed_from_u64(seed);
    // `random_bool` rejects NaN and values outside [0, 1].
    let p = if cfg.replace_prob.is_nan() {
        0.0
    } else {
        cfg.replace_prob.clamp(0.0, 1.0)
    };
    let mut stats = Augmented::default();
    // 1. Every replacement decision first, so that candidates are computed only for words some copy
    //    replaces (with copies: 1 that saves most of the teacher's work).
    let mut sentences: Vec<(Sentence, Option<Sentence>)> = Vec::with_capacity(examples.len());
    let mut needed: Vec<(usize, bool, usize)> = Vec::new(); // (example, is text_b, word)
    let mut draw = |text: &str, ex: usize, is_b: bool, needed: &mut Vec<(usize, bool, usize)>| {
        let ws = words(text);
        let mut slot = vec![None; ws.len()];
        let mut draws = vec![vec![None; ws.len()]; cfg.copies];
        for copy in draws.iter_mut() {
            for (w, word) in ws.iter().enumerate() {
                if !word.chars().any(char::is_alphanumeric) {
                    continue;
                }
                stats.draws += 1;
                let replace = rng.random_bool(p);
                let pick: u32 = rng.random();
                if replace {
                    copy[w] = Some(pick);
                    if slot[w].is_none() {
                        slot[w] = Some(needed.len());
                        needed.push((ex, is_b, w));
                    }
                }
            }
        }
        Sentence {
            words: ws,
            slot,
            draws,
        }
    };
    for (i, e) in examples.iter().enumerate() {
        let a = draw(&e.text_a, i, false, &mut needed);
        let b = e.text_b.as_deref().map(|b| draw(b, i, true, &mut needed));
        sentences.push((a, b));
    }
    // 2. Candidates of the needed words: masked LM for single-piece words, neighbours otherwise.
    let cands = word_candidates(&sentences, &needed, cfg.candidates, t, &mut stats)?;
    // 3. The variants.
    let label = Label::soft(regression);
    for (s_a, s_b) in &sentences {
        let mut seen: HashSet<(String, Option<String>)> = HashSet::new();
        seen.insert((s_a.words.join(" "), s_b.as_ref().map(|s| s.words.join(" "))));
        for copy in 0..cfg.copies {
            let a = variant(s_a, copy, &cands, &mut stats);
            let b = s_b.as_ref().map(|s| variant(s, copy, &cands, &mut stats));
            if seen.insert((a.clone(), b.clone())) {
                stats.examples.push(Example {
                    text_a: a,
                    text_b: b,
                    label,
                });
            }
        }
    }
    Ok(stats)
}

fn variant(s: &Sentence, copy: usize, cands: &[Vec<String>], stats: &mut Augmented) -> String {
    let mut out = Vec::with_capacity(s.words.len());
    for (w, word) in s.words.iter().enumerate() {
        let chosen = match (s.draws[copy][w], s.slot[w]) {
            (Some(pick), Some(slot)) => cands
                .get(slot)
                .filter(|c| !c.is_empty())
                .map(|c| &c[pick as usize % c.len()]),
            _ => None,
        };
        match chosen {
            Some(c) => {
                stats.replaced += 1;
                out.push(c.as_str());
            }
            None => out.push(word.as_str()),
        }
    }
    out.join(" ")
}

/// The candidate words of each needed (example, text, word), in `needed` order.
fn word_candidates(
    sentences: &[(Sentence, Option<Sentence>)],
    needed: &[(usize, bool, usize)],
    k: usize,
    t: &Teacher,
    stats: &mut Augmented,
) -> Result<Vec<Vec<String>>> {
    let vocab = Vocab::new(t.tok)?;
    let plain = t.tok.plain()?;
    let specials = t.tok.special_tokens()?;
    // Byte-level BPE encodes a word differently after a space: encode it as it stands in a sentence.
    let bpe = t.tok.is_bpe();
    let max_len = t.tok.max_len();
    let sentence = |ex: usize, is_b: bool| -> &Sentence {
        let (a, b) = &sentences[ex];
        match (is_b, b) {
            (true, Some(b)) => b,
            _ => a,
        }
    };
    // Pieces of every word of every sentence that has a needed word (the MLM input needs them all).
    let mut pieces_of: HashMap<(usize, bool), Vec<Vec<u32>>> = HashMap::new();
    for &(ex, is_b, _) in needed {
        if pieces_of.contains_key(&(ex, is_b)) {
            continue;
        }
        let ws: Vec<String> = sentence(ex, is_b)
            .words
            .iter()
            .map(|w| if bpe { format!(" {w}") } else { w.clone() })
            .collect();
        pieces_of.insert((ex, is_b), plain.encode_batch(&ws)?);
    }
    let mut mlm_q: Vec<MlmQuery> = Vec::new();
    let mut mlm_slot = Vec::new();
    // Neighbours depend on the word's pieces only: each distinct word is looked up once.
    let mut nn_q: Vec<Vec<u32>> = Vec::new();
    let mut nn_index: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut nn_slot = Vec::new(); // (slot, index into nn_q)
    for (slot, &(ex, is_b, w)) in needed.iter().enumerate() {
        let pieces = &pieces_of[&(ex, is_b)];
        let own = &pieces[w];
        if own.is_empty() {
            continue; // nothing the tokenizer keeps: no candidates, the word stays
        }
        // The word's position in `[CLS] pieces… [SEP]`, which must fit the teacher's max length.
        let pos = 1 + pieces[..w].iter().map(Vec::len).sum::<usize>();
        if let (Some(_), [id], true) = (t.mlm, own.as_slice(), pos + 1 < max_len) {
            let mut ids = vec![specials.cls];
            ids.extend(pieces.iter().flatten());
            ids.truncate(max_len - 1);
            ids.push(specials.sep);
            ids[pos] = specials.mask;
            let n = ids.len();
            mlm_q.push(MlmQuery {
                input: Encoded {
                    ids,
                    type_ids: vec![0; n],
                },
                position: pos,
                own: *id,
            });
            mlm_slot.push(slot);
        } else {
            let q = *nn_index.entry(own.clone()).or_insert_with(|| {
                nn_q.push(own.clone());
                nn_q.len() - 1
            });
            nn_slot.push((slot, q));
        }
    }
    stats.mlm_words = mlm_q.len();
    stats.neighbour_words = nn_slot.len();
    let mut out = vec![Vec::new(); needed.len()];
    let texts = |ids: Vec<u32>| -> Vec<String> {
        ids.iter()
            .map(|&i| vocab.text[i as usize].clone())
            .collect()
    };
    if let Some(mlm) = t.mlm {
        let found = candidates::mlm_candidates(mlm, &mlm_q, &vocab, specials.pad, k, t.batch_size)?;
        for (slot, ids) in mlm_slot.into_iter().zip(found) {
            out[slot] = texts(ids);
        }
    }
    if !nn_q.is_empty() {
        let unit = candidates::normalised(t.embeddings)?;
        let found = candidates::neighbour_candidates(&unit, &nn_q, &vocab, k, t.batch_size)?;
        for (slot, q) in nn_slot {
            out[slot] = texts(found[q].clone());
        }
    }
    Ok(out)
}
