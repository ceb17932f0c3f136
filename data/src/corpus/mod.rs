//! The data side of masked-language-model pre-training, as RoBERTa-tiny-cased's model card describes
//! it (MLM only, FULL-SENTENCES inputs up to 256 tokens, dynamic masking redrawn every epoch):
//! `build` tokenizes a plain-text corpus once into the files `cache` memory-maps, `pack` fills inputs
//! with contiguous sentences, `mask` draws the 15% / 80-10-10 masks, `batches` puts them together per
//! epoch.
//! The model and its loss are in `modeling::mlm`.

pub mod batches;
mod build;
pub mod cache;
pub mod layout;
pub mod mask;
pub mod pack;

pub use batches::{MlmBatch, MlmDataset};
pub use cache::{CacheStatus, Split, TokenCache};
pub use layout::{BuildOptions, CorpusFingerprint};
pub use mask::{Masked, Masker, MaskingConfig, IGNORE};
pub use pack::{Packing, Piece};
