//! Typed errors of the engine. Every message names the file, key or shape at fault, on one line.

use std::path::PathBuf;

/// Everything the engine can refuse.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Media { path: PathBuf, message: String },
    #[error("{path}: not a valid .npy array: {message}")]
    Npy { path: PathBuf, message: String },
    #[error("shape mismatch for {what}: expected {expected:?}, got {actual:?}")]
    Shape {
        what: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    #[error("{0}")]
    Invalid(String),
    /// The user cancelled the work (e.g. an evaluation) before it finished.
    #[error("{0} was cancelled")]
    Cancelled(&'static str),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn media(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Media {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A caught panic's message, for an error a user can read.
pub fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
