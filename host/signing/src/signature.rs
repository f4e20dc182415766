//! The signature file (`connector.sig`) and the publisher keys an agent trusts.

use crate::keys::Algorithm;
use crate::package::{Package, PackageMeta, SIGNATURE_FILE};
use crate::{Error, Result};
use aws_lc_rs::signature::{ED25519, ParsedPublicKey, RSA_PSS_2048_8192_SHA256};
use base64::Engine;
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What is signed: a context string, then the package digest.
const SIGNATURE_CONTEXT: &[u8] = b"idgard-connector-signature-v1\0";

pub(crate) fn message(digest: &[u8; 32]) -> Vec<u8> {
    let mut m = SIGNATURE_CONTEXT.to_vec();
    m.extend_from_slice(digest);
    m
}

/// `connector.sig`: who signed which package digest, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The format's version (1).
    pub format: u32,
    /// The publisher: the name of its key file on agents (`publishers/<name>.pem`).
    pub publisher: String,
    /// How it was signed.
    pub algorithm: Algorithm,
    /// The connector and version signed, for people (the digest covers the manifest anyway).
    pub connector: String,
    /// The version signed.
    pub version: String,
    /// The package digest, hex.
    pub digest: String,
    /// The signature over the digest, base64.
    pub signature: String,
}

impl Signature {
    pub(crate) fn new(
        publisher: &str,
        algorithm: Algorithm,
        meta: &PackageMeta,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Self {
        Self {
            format: 1,
            publisher: publisher.to_owned(),
            algorithm,
            connector: meta.name.clone(),
            version: meta.version.clone(),
            digest: hex::encode(digest),
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        }
    }

    /// The file's text.
    pub fn to_file(&self) -> String {
        let body = toml::to_string(self).expect("a signature serializes");
        format!(
            "# Signature of the connector package {} {} (idgard-agent connector sign).\n{body}",
            self.connector, self.version
        )
    }

    /// Reads the file's text.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| Error::Malformed(format!("{SIGNATURE_FILE} is not UTF-8")))?;
        let sig: Signature = toml::from_str(text)
            .map_err(|e| Error::Malformed(format!("{SIGNATURE_FILE}: {}", e.message())))?;
        if sig.format != 1 {
            return Err(Error::Malformed(format!(
                "{SIGNATURE_FILE}: format {} is not known here (1 is)",
                sig.format
            )));
        }
        check_publisher(&sig.publisher)?;
        Ok(sig)
    }
}

/// A publisher's name: also a file name on agents.
pub(crate) fn check_publisher(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Malformed(format!(
            "the publisher `{name}` is not a publisher name (lower-case letters, digits, `-`, `_`)"
        )))
    }
}

/// A package whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who signed it.
    pub publisher: String,
    /// How.
    pub algorithm: Algorithm,
    /// The package digest, hex.
    pub digest: String,
}

/// The publisher keys an agent trusts: the `<publisher>.pem` files (`BEGIN PUBLIC KEY`,
/// Ed25519 or RSA) of one folder.
#[derive(Debug, Default)]
pub struct Trust {
    dir: PathBuf,
    keys: BTreeMap<String, (Algorithm, ParsedPublicKey)>,
}

impl Trust {
    /// Reads every `*.pem` of `dir` (a missing folder trusts nobody). A file that is not a
    /// usable public key is an error: an operator who meant to trust someone should know.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut trust = Trust {
            dir: dir.to_owned(),
            keys: BTreeMap::new(),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(trust),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pem"))
            else {
                continue;
            };
            check_publisher(name).map_err(|e| Error::key(&path, e.to_string()))?;
            let pem = crate::package::read_bounded(&path, 64 << 10)?;
            let key = parse_public(&pem).map_err(|m| Error::key(&path, m))?;
            trust.keys.insert(name.to_owned(), key);
        }
        Ok(trust)
    }

    /// Whether no publisher is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The publishers trusted, with their algorithms.
    pub fn publishers(&self) -> impl Iterator<Item = (&str, Algorithm)> {
        self.keys.iter().map(|(n, (a, _))| (n.as_str(), *a))
    }

    /// The folder the keys came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that `package` carries a signature, by a trusted publisher, over its digest.
    pub fn verify(&self, package: &Package) -> Result<Verified> {
        self.verify_digest(&package.digest(), package.signature.as_deref())
    }

    /// [`Trust::verify`] of a package known by its digest ([`crate::digest_of`]) and its
    /// signature file, if it has one.
    pub fn verify_digest(&self, digest: &[u8; 32], signature: Option<&[u8]>) -> Result<Verified> {
        let bytes = signature.ok_or(Error::Unsigned)?;
        let sig = Signature::parse(bytes)?;
        let digest = *digest;
        let found = hex::encode(digest);
        if sig.digest != found {
            return Err(Error::DigestMismatch {
                found,
                signed: sig.digest,
            });
        }
        let (algorithm, key) = self
            .keys
            .get(&sig.publisher)
            .ok_or_else(|| Error::UnknownPublisher(sig.publisher.clone()))?;
        if *algorithm != sig.algorithm {
            return Err(Error::BadSignature(sig.publisher));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sig.signature)
            .map_err(|_| {
                Error::Malformed(format!("{SIGNATURE_FILE}: the signature is not base64"))
            })?;
        key.verify_sig(&message(&digest), &raw)
            .map_err(|_| Error::BadSignature(sig.publisher.clone()))?;
        Ok(Verified {
            publisher: sig.publisher,
            algorithm: sig.algorithm,
            digest: found,
        })
    }
}

/// An Ed25519 or RSA public key from PEM (`BEGIN PUBLIC KEY`).
fn parse_public(pem: &[u8]) -> Result<(Algorithm, ParsedPublicKey), &'static str> {
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem)
        .map_err(|_| "not a public key in PEM (BEGIN PUBLIC KEY)")?;
    if let Ok(key) = ParsedPublicKey::new(&ED25519, der.as_ref()) {
        return Ok((Algorithm::Ed25519, key));
    }
    ParsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, der.as_ref())
        .map(|key| (Algorithm::RsaPssSha256, key))
        .map_err(|_| "neither an Ed25519 nor an RSA (2048 to 8192 bits) public key")
}
