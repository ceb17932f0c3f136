//! The checkpoints of a training run: each evaluation logged, the best dev checkpoint kept in `best/`,
//! and `last/` (weights, optimizer moments, trainer state) written so that a kill at any moment leaves
//! one complete checkpoint to resume from.

use std::path::Path;

use indicatif::ProgressBar;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{EvalRecord, Task};
use crate::dist::Group;
use crate::optim::AdamW;
use crate::precision::LossScale;
use crate::records::{EvalLine, MetricsLog, Record};
use crate::{Error, Result};

/// What `last/trainer_state.json` holds besides weights and optimizer moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "C: Serialize + DeserializeOwned")]
pub(super) struct TrainerState<C> {
    pub(super) step: usize,
    pub(super) history: Vec<EvalRecord>,
    pub(super) best: Option<EvalRecord>,
    /// The configuration and data size the checkpoint belongs to.
    pub(super) config: C,
    pub(super) n_train: usize,
    /// The f16 loss scale (absent in checkpoints written before mixed precision).
    #[serde(default)]
    pub(super) loss_scale: Option<LossScale>,
    /// Data-parallel processes: the global batch, and so the schedule, depends on it.
    #[serde(default = "one")]
    pub(super) world: usize,
}

fn one() -> usize {
    1
}

/// Scores `task` on its dev set at `step`, logs the scores and returns the record.
pub(super) fn evaluate<T: Task>(
    task: &T,
    log: &mut MetricsLog,
    step: usize,
    epoch: f64,
    bar: &ProgressBar,
) -> Result<EvalRecord> {
    let scores = task.evaluate()?;
    log.write(&Record::Eval(EvalLine {
        step,
        epoch,
        dev: scores.values.clone(),
        dev_main: scores.main,
    }))?;
    bar.suspend(|| tracing::info!("step {step} (epoch {epoch:.2}): dev {}", scores.summary()));
    Ok(EvalRecord {
        step,
        epoch,
        scores,
    })
}

/// Saves the model to `dir` when `rec` beats the best so far (or is the first), and makes it the best.
pub(super) fn keep_best<T: Task>(
    task: &T,
    dir: &Path,
    rec: &EvalRecord,
    best: &mut Option<EvalRecord>,
) -> Result<()> {
    if best
        .as_ref()
        .is_none_or(|b| task.better(&rec.scores, &b.scores))
    {
        task.save_model(dir)?;
        *best = Some(rec.clone());
    }
    Ok(())
}

/// Writes `last/` (weights, optimizer state, trainer state) beside the old one and swaps it in, so a
/// kill at any moment leaves one complete checkpoint.
pub(super) fn save_last<T: Task>(
    task: &T,
    opt: &AdamW,
    dir: &Path,
    state: &TrainerState<T::Config>,
) -> Result<()> {
    let tmp = dir.with_file_name("last.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    task.save_model(&tmp)?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    task.save_state(&tmp)?;
    let json = serde_json::to_string_pretty(state).map_err(|e| Error::Msg(e.to_string()))?;
    modeling::write_atomic(&tmp.join("trainer_state.json"), json.as_bytes())?;
    let old = dir.with_file_name("last.old");
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Restores `last/` when it belongs to this configuration and data; otherwise starts afresh.
pub(super) fn resume<T: Task>(
    task: &mut T,
    opt: &mut AdamW,
    dir: &Path,
    group: &Group,
) -> Result<Option<TrainerState<T::Config>>> {
    // A crash between the two renames of save_last leaves the good checkpoint at last.old. Rank 0
    // puts it back before any rank reads (the sum is a barrier).
    let old = dir.with_file_name("last.old");
    if group.is_main() && !dir.exists() && old.exists() {
        std::fs::rename(&old, dir).map_err(|e| Error::io(dir, e))?;
    }
    group.barrier()?;
    let state_path = dir.join("trainer_state.json");
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state: TrainerState<T::Config> = serde_json::from_str(&text)
        .map_err(|e| Error::file(&state_path, format!("corrupt trainer state: {e}")))?;
    if state.config != *task.config() || state.n_train != task.train_len() {
        if group.is_main() {
            tracing::info!(
                "note: {} belongs to a different configuration or dataset; training from the start",
                dir.display()
            );
        }
        return Ok(None);
    }
    if state.world != group.world() {
        if group.is_main() {
            tracing::info!(
                "note: {} was trained by {} data-parallel processes, this run has {}: the global \
                 batch differs, training from the start",
                dir.display(),
                state.world,
                group.world()
            );
        }
        return Ok(None);
    }
    task.load(dir)?;
    opt.load(&dir.join("optimizer.safetensors"))?;
    if group.is_main() {
        tracing::info!("resuming from {} at step {}", dir.display(), state.step);
    }
    Ok(Some(state))
}
