//! Everything that trains: loss terms and the objective built from them, AdamW with its schedule, the
//! one training loop (used for the student and for fine-tuning a head-less teacher), GLUE metrics with
//! bootstrap intervals, calibration, evaluation and export.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bootstrap;
pub mod calibration;
pub mod dist;
mod error;
pub mod eval;
pub mod export;
pub mod loss;
pub mod metrics;
pub mod objective;
pub mod onnx;
mod onnx_proto;
pub mod optim;
pub mod precision;
pub mod pretrain;
pub mod terms;
pub mod train;
pub mod trainer;

pub use error::{Error, Result};
pub use metrics::Scores;
pub use precision::Precision;
pub use train::{train, train_until, TrainConfig, TrainData, TrainReport, WordAlign};

/// A progress bar on stderr (indicatif hides it when stderr is not a terminal).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>8} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}
