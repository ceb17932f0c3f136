//! The training crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] modeling::Error),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    // Not `source`: the OS error is part of this message, and a source would print it twice.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },

    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },

    /// A NaN or infinite value stopped training; the last good checkpoint is kept.
    #[error("training stopped at step {step}: {what} is not finite (NaN or Inf); the last good checkpoint is kept. Lower the learning rate or check the data")]
    NonFinite { step: usize, what: String },

    /// A failure inside a task's own loss (e.g. the student's objective).
    #[error(transparent)]
    Loss(Box<dyn std::error::Error + Send + Sync>),

    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }

    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
