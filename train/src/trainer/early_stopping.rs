//! Early stopping: whether the dev scores have stopped improving (`early_stopping` in the settings), and
//! the group's common verdict, so that every data-parallel rank stops at the same step.

use indicatif::ProgressBar;

use super::EvalRecord;
use crate::dist::{Group, Reduction};
use crate::metrics::Scores;
use crate::settings::TrainSettings;
use crate::Result;

/// Whether `history` has gone `patience` evaluations without a better score.
pub(super) fn reached(cfg: &TrainSettings, history: &[EvalRecord], lower_is_better: bool) -> bool {
    cfg.early_stopping.as_ref().is_some_and(|e| {
        let scores: Vec<Scores> = history.iter().map(|r| r.scores.clone()).collect();
        e.reached(&scores, lower_is_better)
    })
}

/// After an evaluation: rank 0's verdict (it alone evaluated), shared with every rank.
pub(super) fn vote(
    cfg: &TrainSettings,
    history: &[EvalRecord],
    lower_is_better: bool,
    group: &Group,
    bar: &ProgressBar,
) -> Result<bool> {
    let Some(settings) = &cfg.early_stopping else {
        return Ok(false);
    };
    let mine = group.is_main() && reached(cfg, history, lower_is_better);
    let mut verdict = [if mine { 1.0 } else { 0.0 }];
    if group.world() > 1 {
        group.all_reduce_sum(&mut verdict, Reduction::Deterministic)?;
    }
    let stop = verdict[0] > 0.0;
    if stop && group.is_main() {
        let step = history.last().map_or(0, |r| r.step);
        bar.suspend(|| {
            tracing::info!(
                "early stopping at step {step}: no better dev score in the last {} evaluations",
                settings.patience
            )
        });
    }
    Ok(stop)
}
