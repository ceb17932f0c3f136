//! The model zoo and the targets: loads any BERT-family checkpoint (local folder or hub), runs it, and
//! caches its outputs as distillation targets. The student crate builds on this; this crate never sees
//! the student.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod augment;
pub mod batch;
pub mod config;
pub mod data;
pub mod encoder;
mod error;
pub mod head;
pub mod hub;
pub mod infer;
pub mod kernels;
pub mod mlm;
pub mod mlm_head;
pub mod model;
pub mod nn;
pub mod pretrain;
pub mod quant;
pub mod targets;
pub mod tokenizer;

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use config::{EncoderConfig, ModelKind};
pub use data::{Example, Label, Metric, TaskSpec};
pub use encoder::{Batch, Encoder, EncoderOutput, Qkv, Want};
pub use error::{Error, Result};
pub use hub::{ModelFiles, ModelSource};
pub use mlm::{mlm_loss, MaskedLm};
pub use model::{Classifier, LoadReport};
pub use targets::{Fingerprint, Targets};
pub use tokenizer::{Encoded, SpecialTokens, TextTokenizer, WordEncoded};

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and renamed, so readers
/// never see a half-written file and an existing good file survives a failed write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    commit_file(&tmp, path)
}

/// Makes a finished temporary file durable (fsync) and moves it over `path` in one rename; on failure the
/// temporary file is removed and `path` keeps its old contents.
pub fn commit_file(tmp: &Path, path: &Path) -> Result<()> {
    let synced = std::fs::File::open(tmp).and_then(|f| f.sync_all());
    let result = synced
        .map_err(|e| Error::io(tmp, e))
        .and_then(|_| std::fs::rename(tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}
