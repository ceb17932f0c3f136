//! Running a model for its answers, apart from any training run: the engine (our encoder, or the export's
//! ONNX graph in onnxruntime), forward passes in length-sorted batches with a progress bar and their
//! speed, batch-1 latency, the predictor that `predict`, `serve` and `compare` load an export into, and the
//! folder locks that keep an export from being replaced under a reader. Builds without the training crates.

pub mod embedder;
pub mod engine;
pub mod latency;
pub mod lock;
pub mod onnxruntime;
pub mod predictor;

pub use embedder::{Embedder, EmbeddingModel};
pub use engine::{logits, Engine, Forward, Pass};
pub use latency::{batch1_latency, percentile, Latency};
pub use lock::Lock;
pub use predictor::{argmax, blank_part, prediction, Predictor, Runtime};

/// A progress bar on stderr (indicatif hides it when stderr is not a terminal); every long pass of the
/// project, training included, draws this one.
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
