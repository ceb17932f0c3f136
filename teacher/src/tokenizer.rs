//! Text to token ids with Hugging Face `tokenizers`: a `tokenizer.json`, or a WordPiece `vocab.txt`
//! assembled the way `BertTokenizerFast` does (BERT normaliser, cased unless told otherwise, [CLS] A [SEP]
//! B [SEP] with segment ids). Truncation is longest-first to `max_len`; padding is the batcher's job.

use std::path::{Path, PathBuf};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationParams, TruncationStrategy};

use crate::{Error, Result};

/// One tokenised example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
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

    /// The id used for padding: `[PAD]` or `<pad>`, else 0.
    pub fn pad_id(&self) -> u32 {
        self.token_to_id("[PAD]")
            .or_else(|| self.token_to_id("<pad>"))
            .unwrap_or(0)
    }

    /// Tokenises a single text or a pair, with special tokens.
    pub fn encode(&self, a: &str, b: Option<&str>) -> Result<Encoded> {
        let enc = match b {
            None => self.inner.encode(a, true),
            Some(b) => self.inner.encode((a, b), true),
        }
        .map_err(|e| Error::Tokenizer {
            path: self.path.clone(),
            msg: e.to_string(),
        })?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
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
        let find = |names: [&str; 2]| -> Result<u32> {
            names
                .iter()
                .find_map(|t| self.token_to_id(t))
                .ok_or_else(|| Error::Tokenizer {
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

    /// Writes the tokenizer as `tokenizer.json` (without truncation, as transformers expects).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t = self.inner.clone();
        t.with_truncation(None).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let json = t.to_string(true).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        crate::write_atomic(path, json.as_bytes())
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
