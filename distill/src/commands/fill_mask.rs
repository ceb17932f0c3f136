//! `distill fill-mask MODEL_DIR TEXT ... [--top-k 5]`: the masked LM of a `*ForMaskedLM` folder fills each
//! mask token of each text; prints one JSON object per mask position, as transformers' fill-mask
//! pipeline scores it (softmax over the vocabulary at that position, `token_str` = `decode([id])`):
//! `{"input": 0, "position": 6, "predictions": [{"token_id": 4, "token": "Paris", "token_str": "Paris",
//! "score": 0.41}, ...]}`. `[MASK]` and `<mask>` are both accepted, whichever the tokenizer uses.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use modeling::{Batch, MaskedLm, ModelSource, SpecialTokens, TextTokenizer};

#[derive(clap::Args)]
pub struct FillMaskArgs {
    /// A masked-LM folder (config.json, model.safetensors, tokenizer.json or vocab.txt).
    model_dir: PathBuf,
    /// Texts with one or more mask tokens ([MASK] or <mask>).
    #[arg(required = true)]
    texts: Vec<String>,
    /// Predictions per mask position.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Longest input in tokens (longer inputs are truncated).
    #[arg(long, default_value_t = 512)]
    max_len: usize,
}

/// One prediction for one mask position.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Filled {
    pub token_id: u32,
    /// The vocabulary's spelling (`##ing`, `Ġparis`).
    pub token: String,
    /// As text, as transformers' `decode([id])` gives it.
    pub token_str: String,
    pub score: f32,
}

/// The top predictions at one mask position of one input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MaskPrediction {
    pub input: usize,
    /// Token index of the mask in the encoded input ([CLS] is 0).
    pub position: usize,
    pub predictions: Vec<Filled>,
}

/// A loaded masked LM with its tokenizer.
pub struct FillMask {
    pub model: MaskedLm,
    pub tok: TextTokenizer,
    pub specials: SpecialTokens,
}

impl FillMask {
    /// Loads `model_dir`; refuses a folder without a masked-LM head.
    pub fn load(model_dir: &Path, max_len: usize) -> Result<Self> {
        if max_len < 8 {
            bail!("--max-len {max_len} leaves no room for text besides the special tokens (use at least 8)");
        }
        let files = ModelSource::Local(model_dir.to_path_buf()).resolve(false)?;
        let (model, report) = MaskedLm::load(&files, 0, &Device::Cpu)?;
        if !report.has_head {
            bail!(
                "{}: no masked-LM head (cls.predictions.* or lm_head.*): fill-mask needs a BertForMaskedLM or RobertaForMaskedLM folder",
                model_dir.display()
            );
        }
        let tok = TextTokenizer::for_model(&files, max_len.min(model.config.max_tokens()))?;
        tok.check_vocab(model.config.vocab_size, model_dir)?;
        let specials = tok.special_tokens()?;
        Ok(Self {
            model,
            tok,
            specials,
        })
    }

    /// The text with either mask spelling turned into this tokenizer's.
    fn normalise(&self, text: &str) -> String {
        let mine = self.specials.mask_text.as_str();
        ["[MASK]", "<mask>"]
            .iter()
            .filter(|m| **m != mine)
            .fold(text.to_string(), |t, m| t.replace(m, mine))
    }

    /// The `top_k` most probable tokens at each mask of `text` (input number `input`).
    pub fn predict(&self, input: usize, text: &str, top_k: usize) -> Result<Vec<MaskPrediction>> {
        let enc = self.tok.encode(&self.normalise(text), None)?;
        let masks: Vec<usize> = enc
            .ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| id == self.specials.mask)
            .map(|(i, _)| i)
            .collect();
        if masks.is_empty() {
            bail!(
                "input {}: no mask token ({} or {}) in `{text}` (within the first {} tokens)",
                input + 1,
                "[MASK]",
                "<mask>",
                self.tok.max_len()
            );
        }
        let n = enc.ids.len();
        let dev = &self.model.device;
        let batch = Batch {
            input_ids: Tensor::from_vec(enc.ids.clone(), (1, n), dev)?,
            token_type_ids: Tensor::from_vec(enc.type_ids.clone(), (1, n), dev)?,
            attention_mask: Tensor::ones((1, n), DType::F32, dev)?,
        };
        let positions: Vec<u32> = masks.iter().map(|&p| p as u32).collect();
        let positions = Tensor::from_vec(positions, masks.len(), dev)?;
        let logits = self.model.forward_at(&batch, &positions, false)?; // [m, vocab]
        let probs: Vec<Vec<f32>> = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2()?;
        masks
            .iter()
            .zip(probs)
            .map(|(&position, p)| {
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
                let predictions = order
                    .into_iter()
                    .take(top_k)
                    .map(|id| {
                        let id = id as u32;
                        Ok(Filled {
                            token_id: id,
                            token: self.tok.id_to_token(id).unwrap_or_default(),
                            token_str: self.tok.decode(&[id])?,
                            score: p[id as usize],
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(MaskPrediction {
                    input,
                    position,
                    predictions,
                })
            })
            .collect()
    }
}

pub fn run(a: &FillMaskArgs) -> Result<()> {
    if a.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let fm = FillMask::load(&a.model_dir, a.max_len)?;
    let mut out = std::io::stdout().lock();
    for (i, text) in a.texts.iter().enumerate() {
        for p in fm.predict(i, text, a.top_k)? {
            writeln!(out, "{}", serde_json::to_string(&p)?)?;
        }
    }
    Ok(())
}
