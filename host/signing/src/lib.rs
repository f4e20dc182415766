//! Signed connector packages.
//!
//! A connector package is its manifest (`connector.toml`) and the component file the manifest
//! names. Its **digest** is SHA-256 over both (see [`Package::digest`]); a publisher signs the
//! digest with Ed25519 or RSA-PSS (SHA-256), and the signature travels with the package in
//! `connector.sig`. An agent trusts a set of publisher keys ([`Trust`]) and loads nothing else.
//!
//! - [`Package`]: a package's files, read from a folder or a [`bundle`], and its digest.
//! - [`SigningKey`], [`Signature`]: signing, and the signature file.
//! - [`Trust`]: the publisher keys an agent trusts, and the check.
//! - [`bundle`]: the tar file a package travels in (admin → server → agent), read with bounds.

pub mod bundle;
mod keys;
mod package;
mod signature;

pub use keys::{Algorithm, SigningKey, generate_ed25519};
pub use package::{MANIFEST_FILE, Package, PackageMeta, SIGNATURE_FILE, digest_of};
pub use signature::{Signature, Trust, Verified};

use std::path::{Path, PathBuf};

/// What can go wrong reading, signing or checking a package.
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
    /// The package is not well formed (manifest, component, bundle).
    #[error("{0}")]
    Malformed(String),
    /// A key file cannot be used.
    #[error("{path}: {message}")]
    Key {
        /// The key's file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The package carries no signature, and this agent requires one.
    #[error(
        "the package is not signed ({SIGNATURE_FILE} is missing); this agent loads only packages signed by a trusted publisher"
    )]
    Unsigned,
    /// Signed by a publisher this agent does not trust.
    #[error("signed by `{0}`, a publisher this agent does not trust (no publishers/{0}.pem)")]
    UnknownPublisher(String),
    /// The signature file names another digest than the package's files have.
    #[error(
        "the files do not match their signature: their digest is {found}, the signature covers {signed}"
    )]
    DigestMismatch {
        /// The files' digest.
        found: String,
        /// The digest in the signature file.
        signed: String,
    },
    /// The signature does not verify under the publisher's key.
    #[error("the signature by `{0}` does not verify with that publisher's key")]
    BadSignature(String),
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

    pub(crate) fn key(path: &Path, message: impl Into<String>) -> Self {
        Error::Key {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// A stable code for logs and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "package.io",
            Error::Malformed(_) => "package.malformed",
            Error::Key { .. } => "package.bad_key",
            Error::Unsigned => "package.unsigned",
            Error::UnknownPublisher(_) => "package.untrusted_publisher",
            Error::DigestMismatch { .. } => "package.digest_mismatch",
            Error::BadSignature(_) => "package.bad_signature",
            Error::Crypto(_) => "package.crypto",
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
