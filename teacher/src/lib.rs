//! The teacher's role: fine-tuning a teacher that has no task head (`finetune`), its outputs on the
//! training set cached as distillation targets with a fingerprint of what made them (`targets`), the
//! online teacher that token-level terms run inside the student's steps (`online`), and
//! data augmentation with its masked-LM head or embeddings (`augment`), and the machine's cache of
//! fine-tuned teachers and targets that every run shares (`cache`). The student never sees this
//! crate: the two meet in the target cache, a file, and in the CLI's stages.

pub mod augment;
pub mod cache;
mod error;
pub mod finetune;
pub mod online;
pub mod targets;

pub use error::{Error, Result};
pub use targets::{Fingerprint, Targets};
