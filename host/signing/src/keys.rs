//! Publishers' signing keys: Ed25519 or RSA (signing with RSA-PSS and SHA-256), PKCS#8 in PEM.

use crate::package::Package;
use crate::signature::{Signature, message};
use crate::{Error, Result};
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RSA_PSS_SHA256, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519 (RFC 8032).
    #[serde(rename = "ed25519")]
    Ed25519,
    /// RSA-PSS with SHA-256 (and MGF1 with SHA-256, salt of 32 bytes), keys of 2048 to 8192
    /// bits.
    #[serde(rename = "rsa-pss-sha256")]
    RsaPssSha256,
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::RsaPssSha256 => "rsa-pss-sha256",
        })
    }
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A publisher's private key.
pub struct SigningKey {
    pair: Pair,
}

impl SigningKey {
    /// Reads a PKCS#8 private key in PEM (`BEGIN PRIVATE KEY`): Ed25519 (as `openssl genpkey
    /// -algorithm ed25519` or `idgard-agent connector keygen` write it) or RSA.
    pub fn load(path: &Path) -> Result<Self> {
        let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|_| Error::key(path, "not a PKCS#8 private key in PEM (BEGIN PRIVATE KEY)"))?;
        Self::from_pkcs8(der.secret_pkcs8_der()).map_err(|m| Error::key(path, m))
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, &'static str> {
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self {
                pair: Pair::Ed25519(pair),
            });
        }
        match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) if (2048..=8192).contains(&(pair.public_modulus_len() * 8)) => Ok(Self {
                pair: Pair::Rsa(pair),
            }),
            Ok(_) => Err("an RSA key must have 2048 to 8192 bits"),
            Err(_) => Err("neither an Ed25519 nor an RSA private key"),
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Ed25519(_) => Algorithm::Ed25519,
            Pair::Rsa(_) => Algorithm::RsaPssSha256,
        }
    }

    /// The public key, in PEM (`BEGIN PUBLIC KEY`): the file agents trust.
    pub fn public_pem(&self) -> Result<String> {
        let der: PublicKeyX509Der<'_> = match &self.pair {
            Pair::Ed25519(p) => p.public_key().as_der(),
            Pair::Rsa(p) => p.public_key().as_der(),
        }
        .map_err(|_| Error::Crypto("cannot encode the public key"))?;
        Ok(idgard_vault::pem("PUBLIC KEY", der.as_ref()))
    }

    /// Signs `package` as `publisher`: the signature file's contents.
    pub fn sign(&self, publisher: &str, package: &Package) -> Result<Signature> {
        crate::signature::check_publisher(publisher)?;
        let digest = package.digest();
        let msg = message(&digest);
        let bytes = match &self.pair {
            Pair::Ed25519(p) => p.sign(&msg).as_ref().to_vec(),
            Pair::Rsa(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&RSA_PSS_SHA256, &SystemRandom::new(), &msg, &mut sig)
                    .map_err(|_| Error::Crypto("RSA-PSS signing failed"))?;
                sig
            }
        };
        Ok(Signature::new(
            publisher,
            self.algorithm(),
            &package.meta,
            &digest,
            &bytes,
        ))
    }
}

/// A new Ed25519 key pair: (private key, PKCS#8 PEM; public key, PEM).
pub fn generate_ed25519() -> Result<(String, String)> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| Error::Crypto("cannot generate an Ed25519 key"))?;
    let private = idgard_vault::pem("PRIVATE KEY", pkcs8.as_ref());
    let key = SigningKey::from_pkcs8(pkcs8.as_ref()).map_err(Error::Crypto)?;
    Ok((private, key.public_pem()?))
}
