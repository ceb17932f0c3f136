//! The student crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] modeling::Error),

    #[error(transparent)]
    Train(#[from] train::Error),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },

    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

/// A failure inside the student's loss, as the training loop reports it.
impl From<Error> for train::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Train(e) => e,
            e => train::Error::Loss(Box::new(e)),
        }
    }
}
