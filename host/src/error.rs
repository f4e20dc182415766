//! The host's errors.

use crate::limits::LimitHit;
use std::path::{Path, PathBuf};

/// Why loading or running a connector failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause, shown in the message (not as a separate source, which would print it
        /// twice in a chain of causes).
        cause: std::io::Error,
    },
    /// `connector.toml` is malformed or inconsistent.
    #[error("manifest {}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A connection's configuration is malformed or does not fit its connector.
    #[error("connection {}: {message}", path.display())]
    Connection {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A secret could not be read.
    #[error("secret `{name}`: {message}")]
    Secret {
        /// The secret's name.
        name: String,
        /// Why.
        message: String,
    },
    /// The `.wasm` file is not a usable component.
    #[error("{}: {message}", path.display())]
    Component {
        /// The component file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The component speaks a contract version this host does not.
    #[error("{}: contract version {found} is not supported by this host (it supports {supported})", path.display())]
    Contract {
        /// The component or manifest.
        path: PathBuf,
        /// The version found.
        found: String,
        /// What the host supports.
        supported: String,
    },
    /// The operation is not listed in the connector's manifest.
    #[error("connector `{connector}` does not support {operation}")]
    Unsupported {
        /// The connector.
        connector: String,
        /// The operation.
        operation: String,
    },
    /// A run's folder is unusable (missing, a symlink, not a folder).
    #[error("folder {}: {message}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The connector hit one of its limits; its store was discarded.
    #[error("connector `{connector}` stopped: {limit} exceeded ({detail})")]
    Limit {
        /// The connector.
        connector: String,
        /// The limit.
        limit: LimitHit,
        /// The limit's value and what was reached.
        detail: String,
    },
    /// The connector trapped (a panic, an abort, a protocol violation); its store was discarded.
    #[error("connector `{connector}` failed: {message}")]
    Trap {
        /// The connector.
        connector: String,
        /// The trap, with the connector's last words on stderr when there were any.
        message: String,
    },
    /// The run was cancelled (by the server, an operator or a shutdown); its store was
    /// discarded.
    #[error("connector `{connector}` stopped: the run was cancelled")]
    Cancelled {
        /// The connector.
        connector: String,
    },
    /// The package's signature is missing, unknown or wrong, and this host requires a trusted
    /// one.
    #[error("{}: {source}", path.display())]
    Signature {
        /// The package folder.
        path: PathBuf,
        /// Why (with a stable code: `source.code()`).
        source: idgard_signing::Error,
    },
    /// Something in the engine itself failed.
    #[error("engine: {0}")]
    Engine(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            cause: source,
        }
    }

    pub(crate) fn component(path: &Path, message: impl Into<String>) -> Self {
        Error::Component {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
