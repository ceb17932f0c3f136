//! Dynamic masking for masked-LM pre-training (BERT, Devlin et al. 2019, §3.1 and appendix A.1; redrawn
//! every epoch as RoBERTa does, Liu et al. 2019, §4.1): 15% of the non-special tokens of an input are
//! chosen (at least one), and of those 80% become [MASK], 10% a random token, 10% stay. Labels hold the
//! original id where a token is predicted and -100 elsewhere (transformers' ignore index).
//!
//! Every draw comes from an RNG seeded by (seed, epoch, input index), so an epoch's masks do not depend on
//! batch order, batch size or what ran before: a resumed run masks exactly as an uninterrupted one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};
use modeling::tokenizer::SpecialTokens;

pub use modeling::mlm::IGNORE;

/// Masking rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Share of the non-special tokens chosen for prediction.
    #[serde(default = "default_mask_prob")]
    pub mask_prob: f64,
    /// Share of the chosen tokens replaced by the mask token.
    #[serde(default = "default_replace_mask")]
    pub replace_mask: f64,
    /// Share of the chosen tokens replaced by a random non-special token (the rest stay).
    #[serde(default = "default_replace_random")]
    pub replace_random: f64,
}

fn default_mask_prob() -> f64 {
    0.15
}
fn default_replace_mask() -> f64 {
    0.8
}
fn default_replace_random() -> f64 {
    0.1
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self {
            mask_prob: default_mask_prob(),
            replace_mask: default_replace_mask(),
            replace_random: default_replace_random(),
        }
    }
}

impl MaskingConfig {
    /// The message names the offending field.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(self.mask_prob > 0.0 && self.mask_prob <= 1.0) {
            return Err(format!("mask_prob {} must be in (0, 1]", self.mask_prob));
        }
        let ok = |v: f64| (0.0..=1.0).contains(&v);
        if !ok(self.replace_mask)
            || !ok(self.replace_random)
            || self.replace_mask + self.replace_random > 1.0 + 1e-9
        {
            return Err(format!(
                "replace_mask {} and replace_random {} must be in [0, 1] and sum to at most 1",
                self.replace_mask, self.replace_random
            ));
        }
        Ok(())
    }
}

/// One masked input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masked {
    pub input_ids: Vec<u32>,
    /// The original id at predicted positions, [`IGNORE`] elsewhere.
    pub labels: Vec<i64>,
}

/// Draws masks for inputs.
#[derive(Debug, Clone)]
pub struct Masker {
    cfg: MaskingConfig,
    specials: SpecialTokens,
    /// Ids a random replacement is drawn from: the vocabulary without special tokens.
    replacements: Vec<u32>,
    seed: u64,
}

/// SplitMix64's finaliser: spreads nearby seeds (epoch 3 and 4, input 10 and 11) far apart.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed from (seed, epoch, index), for masks and epoch orders.
pub fn derive_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    splitmix(splitmix(splitmix(seed) ^ epoch) ^ index)
}

impl Masker {
    /// `vocab_size`: the tokenizer's (ids `0..vocab_size` may be drawn, special ones excepted).
    pub fn new(
        cfg: MaskingConfig,
        specials: SpecialTokens,
        vocab_size: usize,
        seed: u64,
    ) -> Result<Self> {
        cfg.check()
            .map_err(|e| Error::Msg(format!("masking: {e}")))?;
        let replacements: Vec<u32> = (0..vocab_size as u32)
            .filter(|&id| !specials.is_special(id))
            .collect();
        if replacements.is_empty() {
            return Err(Error::Msg(
                "masking: the vocabulary has no ordinary tokens".into(),
            ));
        }
        Ok(Self {
            cfg,
            specials,
            replacements,
            seed,
        })
    }

    pub fn config(&self) -> &MaskingConfig {
        &self.cfg
    }

    pub fn specials(&self) -> &SpecialTokens {
        &self.specials
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Masks input `index` of `epoch`. The number of predicted tokens is `mask_prob · n` rounded up or
    /// down at random (so its mean is exact, as fairseq does), at least 1, where `n` counts the
    /// non-special tokens.
    pub fn mask(&self, ids: &[u32], epoch: u64, index: u64) -> Masked {
        let mut rng = StdRng::seed_from_u64(derive_seed(self.seed, epoch, index));
        let candidates: Vec<usize> = ids
            .iter()
            .enumerate()
            .filter(|(_, &id)| !self.specials.is_special(id))
            .map(|(i, _)| i)
            .collect();
        let mut input_ids = ids.to_vec();
        let mut labels = vec![IGNORE; ids.len()];
        let n = candidates.len();
        if n == 0 {
            return Masked { input_ids, labels };
        }
        let want = self.cfg.mask_prob * n as f64 + rng.random::<f64>();
        let k = (want.floor() as usize).clamp(1, n);
        for c in rand::seq::index::sample(&mut rng, n, k) {
            let pos = candidates[c];
            labels[pos] = i64::from(ids[pos]);
            let u = rng.random::<f64>();
            if u < self.cfg.replace_mask {
                input_ids[pos] = self.specials.mask;
            } else if u < self.cfg.replace_mask + self.cfg.replace_random {
                input_ids[pos] = self.replacements[rng.random_range(0..self.replacements.len())];
            }
        }
        Masked { input_ids, labels }
    }
}
