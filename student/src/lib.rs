//! The student's role: building and initialising it (`init`), its loss terms (`loss`) and the objective built from them (`terms`,
//! `objective`), its training against the teacher's targets (`train`), and masked-LM pre-training
//! with general distillation (`pretrain`). The loop, the optimizer and the metrics it runs on are the
//! `train` crate's; the model is the `modeling` crate's encoder.

pub mod embedding;
mod error;
pub mod init;
pub mod loss;
pub mod objective;
pub mod pretrain;
pub mod static_embedding;
pub mod terms;
pub mod train;
pub mod vocab;

pub use error::{Error, Result};
pub use train::{train, train_until, TrainConfig, TrainData, WordAlign};
