//! Text to token ids with Hugging Face `tokenizers`: a `tokenizer.json`, or a WordPiece `vocab.txt`
//! assembled the way `BertTokenizerFast` does (BERT normaliser, cased unless told otherwise, [CLS] A [SEP]
//! B [SEP] with segment ids). Truncation is longest-first to `max_len`; padding is the batcher's job.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, ModelWrapper, Tokenizer, TruncationParams, TruncationStrategy};

use crate::{Error, Result};

/// One tokenised example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// One tokenised example with the word each token belongs to (see [`TextTokenizer::encode_words`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordEncoded {
    pub enc: Encoded,
    /// Per token: the index of its word among the words of `text_a` then `text_b` ([`words`]), or None
    /// for special tokens.
    pub words: Vec<Option<u32>>,
    /// Words of both texts together (some may have no token after truncation).
    pub n_words: usize,
}

/// Words of a raw text as byte spans: a maximal run of alphanumeric characters, or one other
/// non-whitespace character (punctuation). Defined on the raw text, not on either tokenizer's
/// normalised form, so that two tokenizers (cased and uncased, WordPiece and byte-level BPE) agree on
/// what word `i` is; this is BERT's pre-tokenisation (whitespace, then each punctuation mark alone).
pub fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            run.get_or_insert(i);
            continue;
        }
        if let Some(start) = run.take() {
            out.push((start, i));
        }
        if !c.is_whitespace() {
            out.push((i, i + c.len_utf8()));
        }
    }
    if let Some(start) = run {
        out.push((start, text.len()));
    }
    out
}

#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
    max_len: usize,
    /// Lower-casing asked of a vocab.txt tokenizer (a tokenizer.json carries its own normaliser).
    lowercase: bool,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TextTokenizer({}, max_len {})",
            self.path.display(),
            self.max_len
        )
    }
}

impl TextTokenizer {
    /// The tokenizer shipped with a model folder: tokenizer.json, else vocab.txt (lower-casing as its
    /// tokenizer_config.json says).
    pub fn for_model(files: &crate::hub::ModelFiles, max_len: usize) -> Result<Self> {
        let path = files
            .tokenizer_json
            .as_ref()
            .or(files.vocab_txt.as_ref())
            .ok_or_else(|| {
                Error::file(&files.config, "no tokenizer.json or vocab.txt beside it")
            })?;
        Self::from_file(path, max_len, files.lowercase())
    }

    /// Loads `tokenizer.json`, or builds a WordPiece tokenizer from `vocab.txt` (`lowercase` applies
    /// only then: a tokenizer.json carries its own normaliser).
    pub fn from_file(path: &Path, max_len: usize, lowercase: bool) -> Result<Self> {
        let err = |msg: String| Error::Tokenizer {
            path: path.to_path_buf(),
            msg,
        };
        if !path.is_file() {
            return Err(err("file not found".into()));
        }
        if max_len < 8 {
            return Err(err(format!(
                "a maximum length of {max_len} tokens leaves no room for text besides the special tokens (use at least 8)"
            )));
        }
        let is_vocab = path.extension().is_some_and(|e| e == "txt");
        let mut inner = if is_vocab {
            wordpiece_from_vocab(path, lowercase).map_err(err)?
        } else {
            Tokenizer::from_file(path).map_err(|e| err(format!("cannot parse: {e}")))?
        };
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..Default::default()
            }))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
            max_len,
            lowercase: is_vocab && lowercase,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether a vocab.txt tokenizer lower-cases (always false for a tokenizer.json).
    pub fn lowercase(&self) -> bool {
        self.lowercase
    }

    /// Size of the vocabulary including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Whether the vocabulary is BPE (RoBERTa's and GPT-2's byte-level one marks word starts with
    /// `Ġ`) rather than WordPiece (which marks continuations `##`). The special tokens do not tell:
    /// MPNet's WordPiece vocabulary has RoBERTa's `<s>`, `</s>` and `<mask>`.
    pub fn is_bpe(&self) -> bool {
        matches!(self.inner.get_model(), ModelWrapper::BPE(_))
    }

    /// The id used for padding: `[PAD]` or `<pad>` (the one registered as a special token when the
    /// vocabulary has both, as MPNet's does), else 0.
    pub fn pad_id(&self) -> u32 {
        self.special_id(["[PAD]", "<pad>"]).unwrap_or(0)
    }

    /// The first of `names` that the tokenizer registers as a special token, else the first it has.
    fn special_id(&self, names: [&str; 2]) -> Option<u32> {
        let added = self.inner.get_added_tokens_decoder();
        let special = |id: &u32| added.get(id).is_some_and(|t| t.special);
        names
            .iter()
            .filter_map(|t| self.token_to_id(t))
            .find(special)
            .or_else(|| names.iter().find_map(|t| self.token_to_id(t)))
    }

    /// Tokenises a single text or a pair, with special tokens, truncated to `max_len`.
    pub fn encode(&self, a: &str, b: Option<&str>) -> Result<Encoded> {
        self.encode_counted(a, b).map(|(enc, _)| enc)
    }

    /// As [`encode`](Self::encode), and whether truncation cut tokens off.
    pub fn encode_counted(&self, a: &str, b: Option<&str>) -> Result<(Encoded, bool)> {
        let enc = match b {
            None => self.inner.encode(a, true),
            Some(b) => self.inner.encode((a, b), true),
        }
        .map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let cut = !enc.get_overflowing().is_empty();
        Ok((
            Encoded {
                ids: enc.get_ids().to_vec(),
                type_ids: enc.get_type_ids().to_vec(),
            },
            cut,
        ))
    }

    /// As [`encode`](Self::encode), plus each token's word on the raw text ([`words`]): a token belongs to
    /// the first word its byte offsets overlap, so a byte-level BPE token `'s` counts for the word `'`
    /// and leaves `s` without a token on that side (callers keep the words both sides have). Kept apart
    /// from `encode` because offsets and the word split cost time the position-by-position path never
    /// needs.
    pub fn encode_words(&self, a: &str, b: Option<&str>) -> Result<WordEncoded> {
        let enc = match b {
            None => self.inner.encode(a, true),
            Some(b) => self.inner.encode((a, b), true),
        }
        .map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        let wa = words(a);
        let wb = b.map(words).unwrap_or_default();
        let special = enc.get_special_tokens_mask();
        let seq = enc.get_sequence_ids();
        // Spans are sorted and disjoint: the first word ending after the token's start, if it begins
        // before the token's end (a binary search, so long texts stay cheap).
        let word_of = |spans: &[(usize, usize)], (s, e): (usize, usize)| {
            let i = spans.partition_point(|&(_, we)| we <= s);
            spans.get(i).filter(|&&(ws, _)| ws < e).map(|_| i)
        };
        let words: Vec<Option<u32>> = enc
            .get_offsets()
            .iter()
            .enumerate()
            .map(|(i, &off)| {
                if special.get(i).copied().unwrap_or(1) == 1 || off.0 >= off.1 {
                    return None;
                }
                let w = match seq.get(i).copied().flatten() {
                    Some(0) => word_of(&wa, off),
                    Some(_) => word_of(&wb, off).map(|w| w + wa.len()),
                    None => None,
                };
                w.map(|w| w as u32)
            })
            .collect();
        Ok(WordEncoded {
            enc: Encoded {
                ids: enc.get_ids().to_vec(),
                type_ids: enc.get_type_ids().to_vec(),
            },
            words,
            n_words: wa.len() + wb.len(),
        })
    }

    /// The token of an id, as the vocabulary spells it (`##ing`, `Ġparis`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Ids back to text, special tokens kept (as transformers' `decode`).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })
    }

    /// The tokens masked-LM pre-training places and protects: [CLS]/[SEP]/[MASK] (BERT vocabularies) or
    /// <s>/</s>/<mask> (RoBERTa's), the padding id, and every id the tokenizer marks special.
    pub fn special_tokens(&self) -> Result<SpecialTokens> {
        // MPNet's vocabulary holds both BERT's `[CLS]` (an ordinary token there) and the `<s>` its
        // tokenizer really uses: the one registered as a special token wins.
        let find = |names: [&str; 2]| -> Result<u32> {
            self.special_id(names).ok_or_else(|| Error::Tokenizer {
                path: self.path.clone(),
                msg: format!(
                    "has neither `{}` nor `{}`: masked-LM inputs need it",
                    names[0], names[1]
                ),
            })
        };
        let (cls, sep, mask) = (
            find(["[CLS]", "<s>"])?,
            find(["[SEP]", "</s>"])?,
            find(["[MASK]", "<mask>"])?,
        );
        let pad = self.pad_id();
        let mut all: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .chain([cls, sep, mask, pad])
            .chain(
                ["[UNK]", "<unk>"]
                    .iter()
                    .filter_map(|t| self.token_to_id(t)),
            )
            .collect();
        all.sort_unstable();
        all.dedup();
        let mask_text = self.id_to_token(mask).unwrap_or_default();
        Ok(SpecialTokens {
            cls,
            sep,
            pad,
            mask,
            mask_text,
            all,
        })
    }

    /// A copy that encodes plain text: no special tokens and no truncation (for the corpus cache).
    pub fn plain(&self) -> Result<PlainEncoder> {
        let mut inner = self.inner.clone();
        inner.with_truncation(None).map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        Ok(PlainEncoder {
            inner,
            path: self.path.clone(),
        })
    }

    /// Checks that every id the tokenizer can produce has a row in an embedding of `rows` rows.
    pub fn check_vocab(&self, rows: usize, model: &Path) -> Result<()> {
        let n = self.vocab_size();
        if n > rows {
            return Err(Error::Tokenizer {
                path: self.path.clone(),
                msg: format!(
                    "has {n} tokens but the model's word embedding ({}) has only {rows} rows: tokenizer and model do not belong together",
                    model.display()
                ),
            });
        }
        Ok(())
    }

    /// Writes the tokenizer as `tokenizer.json` (without truncation, as transformers expects), and beside
    /// it the `tokenizer_config.json` that makes transformers tokenize as this tokenizer does.
    pub fn save(&self, path: &Path) -> Result<()> {
        let err = |e: tokenizers::Error| Error::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        };
        let mut t = self.inner.clone();
        t.with_truncation(None).map_err(err)?;
        let json = t.to_string(true).map_err(err)?;
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| Error::Tokenizer {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        let config = crate::tokenizer_config::tokenizer_config(&value, self.max_len);
        crate::write_atomic(path, json.as_bytes())?;
        crate::write_atomic(
            &path.with_file_name("tokenizer_config.json"),
            serde_json::to_string_pretty(&config)
                .unwrap_or_default()
                .as_bytes(),
        )
    }
}

/// Ids of the special tokens (see [`TextTokenizer::special_tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Opens every input: `[CLS]` or `<s>`.
    pub cls: u32,
    /// Closes every input and separates documents inside one: `[SEP]` or `</s>`.
    pub sep: u32,
    pub pad: u32,
    /// `[MASK]` or `<mask>`.
    pub mask: u32,
    /// The mask token as text.
    pub mask_text: String,
    /// Every special id, sorted: never masked, never drawn as a random replacement. Unknown-token ids
    /// count as special, as transformers' `all_special_ids` has them.
    pub all: Vec<u32>,
}

impl SpecialTokens {
    pub fn is_special(&self, id: u32) -> bool {
        self.all.binary_search(&id).is_ok()
    }
}

/// Encodes text without special tokens or truncation (from [`TextTokenizer::plain`]).
#[derive(Clone)]
pub struct PlainEncoder {
    inner: Tokenizer,
    path: PathBuf,
}

impl PlainEncoder {
    /// Token ids of each text, in order (tokenizers spreads a batch over its thread pool).
    pub fn encode_batch(&self, texts: &[String]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let enc = self
            .inner
            .encode_batch(inputs, false)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        Ok(enc.iter().map(|e| e.get_ids().to_vec()).collect())
    }
}

/// `BertTokenizerFast` from a vocab.txt: BERT normaliser and pre-tokeniser, WordPiece with `##`
/// continuations, `[CLS] A [SEP] B [SEP]` with segment ids 0/1.
fn wordpiece_from_vocab(path: &Path, lowercase: bool) -> std::result::Result<Tokenizer, String> {
    let p = path.to_str().ok_or("path is not UTF-8")?;
    let wp = WordPiece::from_file(p)
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| format!("cannot read vocabulary: {e}"))?;
    let id = |t: &str| wp_id(&wp, t).ok_or_else(|| format!("vocabulary has no `{t}` token"));
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    id("[UNK]")?;
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    tok.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
    // As BertTokenizerFast does: special tokens written in the text stay whole (`a [SEP] b`).
    let specials: Vec<AddedToken> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .filter(|t| tok.token_to_id(t).is_some())
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

fn wp_id(wp: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    wp.token_to_id(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_counted_says_when_tokens_were_cut() {
        let dir = tempfile::tempdir().unwrap();
        let vocab = dir.path().join("vocab.txt");
        let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c"];
        std::fs::write(&vocab, words.join("\n")).unwrap();
        let tok = TextTokenizer::from_file(&vocab, 8, true).unwrap();
        let (enc, cut) = tok.encode_counted("a b c", None).unwrap();
        assert_eq!((enc.ids.len(), cut), (5, false));
        let (enc, cut) = tok.encode_counted("a b c a b c a b c", None).unwrap();
        assert_eq!((enc.ids.len(), cut), (8, true));
        let (enc, cut) = tok.encode_counted("a b c a", Some("b c a b")).unwrap();
        assert_eq!((enc.ids.len(), cut), (8, true));
        let (_, cut) = tok.encode_counted("a b", Some("c")).unwrap();
        assert!(!cut);
    }

    fn fixture(name: &str) -> TextTokenizer {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/parity")
            .join(name)
            .join("tokenizer.json");
        TextTokenizer::from_file(&p, 128, false).unwrap()
    }

    /// Cased WordPiece (bert_cls), uncased WordPiece (testutil vocab, lower-cased) and byte-level BPE
    /// (roberta_cls).
    fn three() -> (tempfile::TempDir, Vec<TextTokenizer>) {
        let dir = tempfile::tempdir().unwrap();
        let vocab = dir.path().join("vocab.txt");
        crate::testutil::write_vocab(&vocab).unwrap();
        let uncased = TextTokenizer::from_file(&vocab, 128, true).unwrap();
        (
            dir,
            vec![fixture("bert_cls"), uncased, fixture("roberta_cls")],
        )
    }

    const TEXTS: &[(&str, Option<&str>)] = &[
        ("Hello world!", None),
        (
            "The quick brown fox, surprisingly, jumped over 12 lazy dogs in Zürich yesterday.",
            None,
        ),
        (
            "How are you doing today?",
            Some("I am fine, thanks for asking."),
        ),
        ("It's a GREAT film -- isn't it?", Some("Terrible acting...")),
    ];

    #[test]
    fn words_split_on_whitespace_and_punctuation() {
        let t = "It's  Zürich, 12!";
        let got: Vec<&str> = words(t).iter().map(|&(s, e)| &t[s..e]).collect();
        assert_eq!(got, ["It", "'", "s", "Zürich", ",", "12", "!"]);
    }

    #[test]
    fn hand_checked_word_indices() {
        let (_d, toks) = three();
        for t in &toks {
            let w = t.encode_words("Hello world!", None).unwrap();
            assert_eq!(w.n_words, 3);
            assert_eq!(w.words.first(), Some(&None), "{t:?}");
            assert_eq!(w.words.last(), Some(&None), "{t:?}");
            let inner: Vec<u32> = w.words.iter().flatten().copied().collect();
            let mut distinct = inner.clone();
            distinct.dedup();
            assert_eq!(distinct, [0, 1, 2], "{t:?}: {:?}", w.words);
        }
        // A pair numbers text_b's words after text_a's.
        let w = toks[0].encode_words("a b", Some("c")).unwrap();
        assert_eq!(w.words, [None, Some(0), Some(1), None, Some(2), None]);
    }

    #[test]
    fn cased_uncased_and_bpe_agree_on_words() {
        let (_d, toks) = three();
        for &(a, b) in TEXTS {
            let n = words(a).len() + b.map_or(0, |b| words(b).len());
            let mut seen = Vec::new();
            for t in &toks {
                let w = t.encode_words(a, b).unwrap();
                assert_eq!(w.n_words, n);
                assert_eq!(w.words.len(), w.enc.ids.len());
                assert_eq!(w.enc, t.encode(a, b).unwrap(), "encode_words changes no id");
                let inner: Vec<u32> = w.words.iter().flatten().copied().collect();
                assert!(inner.windows(2).all(|p| p[0] <= p[1]), "{t:?}: {inner:?}");
                let mut distinct = inner;
                distinct.dedup();
                seen.push(distinct);
            }
            // Both WordPiece tokenizers give every word a token: same word split, cased or not.
            let all: Vec<u32> = (0..n as u32).collect();
            assert_eq!(seen[0], all, "{a}");
            assert_eq!(seen[1], all, "{a}");
            // BPE may fold a punctuation mark into the next token (`'s`): a subset, in order.
            assert!(seen[2].iter().all(|w| all.contains(w)), "{a}");
            assert!(seen[2].len() + 3 >= n, "{a}: {:?}", seen[2]);
        }
    }
}
