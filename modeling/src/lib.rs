//! The models: configs, the one encoder (BERT, RoBERTa, MPNet) with its classification and masked-LM
//! heads, tokenizers, batching, loading from a folder or the Hugging Face hub (the only network code),
//! the exports (a Hugging Face folder, ONNX), and inference through the encoder or through onnxruntime.
//! Teacher and student are both models of this crate.

pub mod batch;
pub mod config;
pub mod encoder;
mod error;
pub mod export;
pub mod fused_layer;
pub mod head;
pub mod hub;
pub mod importance;
pub mod infer;
mod inference_block;
pub mod io;
pub mod mlm;
pub mod mlm_head;
pub mod model;
pub mod nn;
pub mod onnx;
mod onnx_proto;
pub mod select;
pub mod sentence;
pub mod static_model;
pub mod tokenizer;
pub mod tokenizer_config;

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use config::{EncoderConfig, ModelKind};
pub use encoder::{Batch, Encoder, EncoderOutput, Qkv, Want};
pub use error::{Error, Result};
pub use fused_layer::{backward, backward_scaled, GradSink};
pub use hub::{ModelFiles, ModelSource};
pub use io::{save_tensors, write_atomic};
pub use mlm::{mlm_loss, MaskedLm};
pub use model::{Classifier, LoadReport};
pub use nn::Packing;
pub use tokenizer::{Encoded, SpecialTokens, TextTokenizer, WordEncoded};
