//! Typed errors of the engine. Every message names the file, key or shape at fault, on one line.

use std::path::{Path, PathBuf};

/// Everything the engine can refuse.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
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
    /// The GPU itself failed under the work (out of its memory, the device lost): the line
    /// saying so ([`crate::backend::gpu_failure`]). The same work can go on on the CPU.
    #[error("{0}")]
    Gpu(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The same error about `path` where it was about `temp`, the hidden file a write went to
    /// ([`crate::files::write_atomic_with`]): the user named `path`, and `temp` is gone. An
    /// I/O error there was a write.
    pub(crate) fn about_target(self, temp: &Path, path: &Path) -> Self {
        let rename = |p: PathBuf| if p == temp { path.to_path_buf() } else { p };
        let text = |m: String| m.replace(&temp.display().to_string(), &path.display().to_string());
        match self {
            Self::Io { path: p, source } if p == temp => Self::Write {
                path: path.to_path_buf(),
                source,
            },
            Self::Write { path: p, source } => Self::Write {
                path: rename(p),
                source,
            },
            Self::Config { path: p, message } => Self::Config {
                path: rename(p),
                message: text(message),
            },
            Self::Checkpoint { path: p, message } => Self::Checkpoint {
                path: rename(p),
                message: text(message),
            },
            Self::Media { path: p, message } => Self::Media {
                path: rename(p),
                message: text(message),
            },
            Self::Backend { backend, message } => Self::Backend {
                backend,
                message: text(message),
            },
            Self::Invalid(message) => Self::Invalid(text(message)),
            other => other,
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
    panic_text(&*panic).unwrap_or("unknown panic").to_string()
}

/// The text a panic's payload carries (`panic!` gives a `&str` or a `String`), if any.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}
