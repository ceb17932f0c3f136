//! The commands outside a run: running an exported model (`predict`, `embed`, `encode`, `fill-mask`), the speed
//! bench of the encoder, and the machine's cache of fine-tuned teachers and targets (`cache`).

pub mod bench;
pub mod cache;
pub mod embed;
pub mod encode;
pub mod fill_mask;
pub mod predict;
