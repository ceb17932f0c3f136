//! Masked-LM batches for one epoch: a seeded order of the packed inputs, each input masked as
//! `Masker` draws it for (seed, epoch, input index), padded to the longest input of its batch. Both
//! the order and the masks are functions of (seed, epoch), so a killed run resumes exactly.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::corpus::cache::TokenCache;
use crate::corpus::mask::{derive_seed, Masker, IGNORE};
use crate::corpus::pack::Packing;
use crate::{Error, Result};
use modeling::encoder::Batch;

/// A masked batch on the model's device.
#[derive(Debug, Clone)]
pub struct MlmBatch {
    /// The masked inputs (token types all 0).
    pub batch: Batch,
    /// [b, s] i64: the original id where a token is predicted, -100 elsewhere (padding included).
    pub labels: Tensor,
    /// [n] u32: flat indices (row · s + column) of the predicted positions, row-major order.
    pub positions: Tensor,
    /// [n] u32: the original ids at `positions`.
    pub targets: Tensor,
}

impl MlmBatch {
    /// Number of predicted positions.
    pub fn num_predicted(&self) -> usize {
        self.targets.dims().first().copied().unwrap_or(0)
    }
}

/// Packed inputs over some documents of a cache, with their masker.
#[derive(Debug, Clone)]
pub struct MlmDataset {
    cache: Arc<TokenCache>,
    packing: Arc<Packing>,
    masker: Masker,
}

impl MlmDataset {
    /// Packs `documents` of `cache` into inputs of at most `max_seq_len` tokens.
    pub fn new(
        cache: Arc<TokenCache>,
        documents: &[usize],
        max_seq_len: usize,
        masker: Masker,
    ) -> Result<Self> {
        let packing = Packing::new(&cache, documents, max_seq_len)?;
        Ok(Self {
            cache,
            packing: Arc::new(packing),
            masker,
        })
    }

    /// Number of packed inputs.
    pub fn len(&self) -> usize {
        self.packing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packing.is_empty()
    }

    pub fn packing(&self) -> &Packing {
        &self.packing
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Tokens of input `i` before masking.
    pub fn input_ids(&self, i: usize) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.packing.max_seq_len());
        self.packing
            .input_ids(&self.cache, self.masker.specials(), i, &mut out)?;
        Ok(out)
    }

    /// The training order of `epoch`: every input once, shuffled by (seed, epoch), in batches of
    /// `batch_size` (the last may be smaller). Packed inputs are nearly all full, so no length bucketing.
    pub fn epoch_batches(&self, batch_size: usize, epoch: u64) -> Vec<Vec<usize>> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        let seed = derive_seed(self.masker.seed(), epoch, u64::MAX);
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        idx.chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Evaluation order: every input once, in order. Evaluate with one fixed epoch (e.g. 0) so every
    /// evaluation scores the same masks.
    pub fn eval_batches(&self, batch_size: usize) -> Vec<Vec<usize>> {
        let idx: Vec<usize> = (0..self.len()).collect();
        idx.chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Inputs `indices`, masked for `epoch`, padded and moved to `device`.
    pub fn batch(&self, indices: &[usize], epoch: u64, device: &Device) -> Result<MlmBatch> {
        if indices.is_empty() {
            return Err(Error::Msg("an empty masked-LM batch".into()));
        }
        let masked = indices
            .iter()
            .map(|&i| {
                let ids = self.input_ids(i)?;
                Ok(self.masker.mask(&ids, epoch, i as u64))
            })
            .collect::<Result<Vec<_>>>()?;
        let b = masked.len();
        let s = masked.iter().map(|m| m.input_ids.len()).max().unwrap_or(1);
        let pad = self.masker.specials().pad;
        let mut ids = vec![pad; b * s];
        let mut mask = vec![0f32; b * s];
        let mut labels = vec![IGNORE; b * s];
        let (mut positions, mut targets) = (Vec::new(), Vec::new());
        for (r, m) in masked.iter().enumerate() {
            let row = r * s;
            let n = m.input_ids.len();
            ids[row..row + n].copy_from_slice(&m.input_ids);
            mask[row..row + n].fill(1.0);
            labels[row..row + n].copy_from_slice(&m.labels);
            for (c, &l) in m.labels.iter().enumerate() {
                if l != IGNORE {
                    positions.push((row + c) as u32);
                    targets.push(l as u32);
                }
            }
        }
        let n = positions.len();
        Ok(MlmBatch {
            batch: Batch {
                input_ids: Tensor::from_vec(ids, (b, s), device)?,
                token_type_ids: Tensor::zeros((b, s), candle_core::DType::U32, device)?,
                attention_mask: Tensor::from_vec(mask, (b, s), device)?,
            },
            labels: Tensor::from_vec(labels, (b, s), device)?,
            positions: Tensor::from_vec(positions, n, device)?,
            targets: Tensor::from_vec(targets, n, device)?,
        })
    }
}
