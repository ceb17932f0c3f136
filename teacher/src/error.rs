//! The teacher crate's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] modeling::Error),

    #[error(transparent)]
    Train(#[from] train::Error),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Model(modeling::Error::io(path, err))
    }

    pub fn file(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Model(modeling::Error::file(path, msg))
    }
}
