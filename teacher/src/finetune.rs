//! Fine-tuning a teacher that has no task head (a bare or sentence-embedding encoder): a fresh head
//! and the whole encoder trained on the gold labels alone, with the loop every classifier trains in.

use std::path::Path;

use modeling::Classifier;
use serde::{Deserialize, Serialize};
use train::classify::{self, ClassifyData, Run, TaskLoss};
use train::{TrainReport, TrainSettings};

use crate::Result;

/// What a fine-tuning run depends on (a `last/` checkpoint of another is not resumed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneConfig {
    pub settings: TrainSettings,
    pub seed: u64,
    pub eval_batch_size: usize,
}

/// Trains `model` in place on `data`'s gold labels; checkpoints under `out` (`best/`, `last/`).
pub fn finetune(
    model: &Classifier,
    data: &ClassifyData,
    cfg: &FinetuneConfig,
    out: &Path,
) -> Result<TrainReport> {
    let run = Run {
        settings: &cfg.settings,
        seed: cfg.seed,
        eval_batch_size: cfg.eval_batch_size,
        config: cfg,
    };
    Ok(classify::train(
        model,
        data,
        &mut TaskLoss,
        &run,
        out,
        &|_| false,
    )?)
}
