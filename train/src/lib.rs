//! Trains any model: the loop (`trainer`, driven by a `Task`), AdamW with its schedule (`optim`),
//! mixed precision and loss scaling (`precision`), checkpoints and exact resume, the data-parallel
//! process group (`dist`), the metrics log, and evaluation: GLUE metrics (`metrics`), bootstrap
//! intervals (`bootstrap`), calibration (`calibration`), and batched dev-set logits (`eval`).
//! The teacher's fine-tuning and the student's distillation are both tasks of this loop.

pub mod bootstrap;
pub mod calibration;
pub mod classify;
pub mod dist;
mod error;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod precision;
pub mod records;
pub mod settings;
pub mod tensorboard;
pub mod trainer;

pub use error::{Error, Result};
pub use metrics::Scores;
pub use precision::Precision;
pub use settings::TrainSettings;
pub use trainer::{EvalRecord, TrainReport};
