//! Encryption at rest for the idgard server and agent.
//!
//! What either side keeps on disk that a reader of its files should not see (an export's
//! entries, results waiting for the server, connection secrets, an upload's chunks, a password
//! in a stored task) is sealed with AES-256-GCM under a data key, and the data key travels
//! with the data, wrapped by an RSA key pair of a [`Keyring`] (RSA-OAEP with SHA-256).
//!
//! - [`Keyring`]: the key pairs of one folder, rotation, the data keys.
//! - [`seal`], [`open`], [`seal_text`], [`open_text`]: one value, whole.
//! - [`SealedWriter`], [`SealedFile`]: a file of any size, written in a stream and read at any
//!   offset, 64 KiB at a time.
//! - [`write_file`], [`read_file`]: a small file, whole, written atomically.
//!
//! Formats are described in `docs/operations.md` ("Encryption at rest").

mod blob;
mod keyring;
mod stream;

pub use blob::{
    TEXT_PREFIX, is_sealed, is_sealed_text, key_of, open, open_text, read_file, seal, seal_text,
    write_file,
};
pub use keyring::{KeyInfo, Keyring, RELOAD_EVERY};
pub use stream::{CHUNK, SealedFile, SealedWriter};

use std::path::{Path, PathBuf};

/// `der` in PEM under `label` (`PRIVATE KEY`, `PUBLIC KEY`), lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// What can go wrong sealing or opening.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key ring's folder holds no key.
    #[error("the key ring {0} holds no key (key-<N>.pem)")]
    NoKeys(PathBuf),
    /// A key file cannot be used.
    #[error("{path}: {message}")]
    Key {
        /// The key's file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Sealed under a key the ring no longer (or never) held.
    #[error(
        "sealed under key {id}, which the key ring {dir} does not hold (was key-{id}.pem removed?)"
    )]
    UnknownKey {
        /// The key's number.
        id: u32,
        /// The ring's folder.
        dir: PathBuf,
    },
    /// Not sealed data, or sealed data that was altered, cut short or sealed elsewhere.
    #[error("sealed data is damaged: {0}")]
    Damaged(String),
    /// The system's random source failed.
    #[error("no randomness from the system")]
    Random,
    /// A cryptographic operation failed.
    #[error("{0}")]
    Crypto(&'static str),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// A stable code for logs and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "vault.io",
            Error::NoKeys(_) => "vault.no_keys",
            Error::Key { .. } => "vault.bad_key",
            Error::UnknownKey { .. } => "vault.unknown_key",
            Error::Damaged(_) => "vault.damaged",
            Error::Random => "vault.random",
            Error::Crypto(_) => "vault.crypto",
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `bytes` to `path` (created or emptied), readable by its owner only, and syncs it.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// The header shared by both formats: magic, key number, wrapped data key.
pub(crate) fn header(magic: &[u8; 4], key_id: u32, wrapped: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(10 + wrapped.len());
    h.extend_from_slice(magic);
    h.extend_from_slice(&key_id.to_be_bytes());
    h.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    h.extend_from_slice(wrapped);
    h
}

/// Reads a header written by [`header`]: the key number, the wrapped key and the header's
/// length.
pub(crate) fn parse_header<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<(u32, &'a [u8], usize)> {
    if bytes.len() < 10 || &bytes[..4] != magic {
        return Err(Error::Damaged("not sealed by idgard (no header)".into()));
    }
    let key_id = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let wlen = u16::from_be_bytes(bytes[8..10].try_into().expect("2 bytes")) as usize;
    let end = 10 + wlen;
    if wlen == 0 || bytes.len() < end {
        return Err(Error::Damaged("its header is cut short".into()));
    }
    Ok((key_id, &bytes[10..end], end))
}
