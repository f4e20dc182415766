//! Keys and credentials: the RS256 token-signing key, agents' access tokens, secret hashing,
//! random tokens, and the HTTPS certificate.
//!
//! The `rsa` crate only generates and converts keys here; signing and verifying go through
//! `jsonwebtoken`, which uses ring's constant-time RSA (the `rsa` crate's private-key operations
//! carry RUSTSEC-2023-0071 and are never run on a network peer's request).

use anyhow::{Context, Result, bail};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The audience of agents' tokens.
const AUDIENCE: &str = "idgard-agent";
/// The issuer of every token.
const ISSUER: &str = idgard_protocol::LAUNCH_ISSUER;

/// The token-signing key pair.
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The public key, PEM (SubjectPublicKeyInfo), for whoever checks tokens offline.
    pub public_pem: String,
    ttl_s: u64,
}

/// What an agent's token says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// `agent:<id>`.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Issuer.
    pub iss: String,
    /// Issued at, seconds.
    pub iat: u64,
    /// Expires, seconds.
    pub exp: u64,
    /// The agent's token generation when it was issued: a reset moves the agent to the next
    /// one, and its older tokens stop working at once.
    #[serde(default, rename = "gen")]
    pub generation: i64,
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenFor {
    /// The agent.
    pub agent: i64,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// The agent's token generation it was issued in.
    pub generation: i64,
}

impl Signer {
    /// Loads the key from `path` (PEM, or PKCS#12 with `password`), or generates a development
    /// key in `dev_path` when no path is given.
    pub fn load(
        path: Option<&Path>,
        password: Option<&str>,
        dev_path: &Path,
        ttl_s: u64,
    ) -> Result<Self> {
        let key = match path {
            Some(path) => read_private_key(path, password)?,
            None => {
                if dev_path.exists() {
                    tracing::warn!(
                        "signing tokens with the development key {} (set signing.key for production)",
                        dev_path.display()
                    );
                    read_private_key(dev_path, None)?
                } else {
                    tracing::warn!(
                        "no signing key configured: generating a development key in {} (set signing.key for production)",
                        dev_path.display()
                    );
                    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
                        .context("cannot generate an RSA key")?;
                    let pem = key.to_pkcs1_pem(LineEnding::LF)?;
                    write_private(dev_path, pem.as_bytes())?;
                    key
                }
            }
        };
        if key.size() < 256 {
            bail!(
                "the signing key has {} bits: at least 2048 are needed",
                key.size() * 8
            );
        }
        let der = key.to_pkcs1_der()?;
        let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        Ok(Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(
                &key.n().to_bytes_be(),
                &key.e().to_bytes_be(),
            ),
            validation,
            public_pem,
            ttl_s,
        })
    }

    /// Lifetime of a token, seconds.
    pub fn ttl_s(&self) -> u64 {
        self.ttl_s
    }

    /// A token for an agent, in its current token generation.
    pub fn issue(&self, agent_id: i64, generation: i64, now_ms: i64) -> Result<String> {
        let now = (now_ms / 1000).max(0) as u64;
        let claims = Claims {
            sub: format!("agent:{agent_id}"),
            aud: AUDIENCE.into(),
            iss: ISSUER.into(),
            iat: now,
            exp: now + self.ttl_s,
            generation,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The token handing launch `launch` to agent `agent_id`: signed with the same key, for that
    /// agent's launch audience only, expiring with the launch.
    pub fn launch_token(
        &self,
        agent_id: i64,
        launch: &idgard_protocol::LaunchView,
    ) -> Result<String> {
        let claims = idgard_protocol::LaunchClaims {
            iss: idgard_protocol::LAUNCH_ISSUER.into(),
            aud: idgard_protocol::launch_audience(agent_id),
            sub: launch.user.clone(),
            jti: launch.id.clone(),
            iat: (launch.created_ms / 1000).max(0) as u64,
            exp: (launch.expires_ms / 1000).max(0) as u64,
            job: launch.job.clone(),
            incremental: launch.incremental,
            dry_run: launch.dry_run,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The agent a token was issued to, when it expires and its generation, if it is valid,
    /// unexpired and ours.
    pub fn verify(&self, token: &str) -> Result<TokenFor, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "the access token has expired: ask for a new one".to_owned()
                }
                _ => format!("invalid access token ({e})"),
            })?;
        data.claims
            .sub
            .strip_prefix("agent:")
            .and_then(|id| id.parse().ok())
            .map(|agent| TokenFor {
                agent,
                exp: data.claims.exp,
                generation: data.claims.generation,
            })
            .ok_or_else(|| "invalid access token (subject)".to_owned())
    }
}

fn read_private_key(path: &Path, password: Option<&str>) -> Result<rsa::RsaPrivateKey> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ext == "p12" || ext == "pfx" {
        let store =
            p12_keystore::KeyStore::from_pkcs12(&bytes, password.unwrap_or("")).map_err(|e| {
                anyhow::anyhow!("{}: not a readable PKCS#12 file ({e})", path.display())
            })?;
        let (_, chain) = store
            .private_key_chain()
            .with_context(|| format!("{}: holds no private key", path.display()))?;
        return rsa::RsaPrivateKey::from_pkcs8_der(chain.key())
            .with_context(|| format!("{}: the private key is not RSA", path.display()));
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{}: not PEM", path.display()))?;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    rsa::RsaPrivateKey::from_pkcs1_pem(&text)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(&text))
        .with_context(|| {
            format!(
                "{}: not an RSA private key in PEM (PKCS#1 or PKCS#8)",
                path.display()
            )
        })
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A random token: 32 bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

/// How secrets and one-time tokens are stored: SHA-256, hex. They are 256-bit random values, so
/// a fast hash is enough (no password stretching needed).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// SHA-256 of a DER certificate, hex: what agents pin.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The HTTPS certificate and key (PEM), from files or a development certificate generated once
/// in `dir`. Returns them with the certificate's fingerprint.
pub fn tls_material(
    cert: Option<&Path>,
    key: Option<&Path>,
    dir: &Path,
) -> Result<(Vec<u8>, Vec<u8>, String)> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        _ => {
            let c = dir.join("dev-cert.pem");
            let k = dir.join("dev-cert.key");
            if !c.exists() || !k.exists() {
                tracing::warn!(
                    "no TLS certificate configured: generating a self-signed development certificate in {} (set tls.cert and tls.key for production)",
                    c.display()
                );
                let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                let generated = rcgen::generate_simple_self_signed(names)?;
                write_private(&k, generated.signing_key.serialize_pem().as_bytes())?;
                std::fs::write(&c, generated.cert.pem())?;
            } else {
                tracing::warn!(
                    "serving HTTPS with the development certificate {}",
                    c.display()
                );
            }
            (c, k)
        }
    };
    let cert_pem = std::fs::read(&cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?;
    let key_pem =
        std::fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let first = rustls_pemfile_first_cert(&cert_pem)
        .with_context(|| format!("{}: no certificate in it", cert_path.display()))?;
    Ok((cert_pem, key_pem, fingerprint(&first)))
}

fn rustls_pemfile_first_cert(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()
        .map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load(None, None, &dir.path().join("a.pem"), 60).unwrap();
        let b = Signer::load(None, None, &dir.path().join("b.pem"), 60).unwrap();
        let now = crate::now_ms();
        let t = a.issue(7, 2, now).unwrap();
        assert_eq!(a.verify(&t).map(|v| (v.agent, v.generation)), Ok((7, 2)));
        assert!(b.verify(&t).unwrap_err().contains("invalid access token"));
        let expired = a.issue(7, 0, now - 3_600_000).unwrap();
        assert!(a.verify(&expired).unwrap_err().contains("expired"));
        // A reloaded development key signs the same way.
        let again = Signer::load(None, None, &dir.path().join("a.pem"), 60).unwrap();
        assert_eq!(again.verify(&t).map(|v| v.agent), Ok(7));
    }

    #[test]
    fn a_pkcs12_key_loads_with_its_password_and_not_without() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl (Debian's package) makes the PKCS#12 file");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            "/CN=idgard",
            "-days",
            "1",
        ]);
        run(&[
            "pkcs12",
            "-export",
            "-inkey",
            "k.pem",
            "-in",
            "c.pem",
            "-out",
            "s.p12",
            "-passout",
            "pass:s3cret",
        ]);
        let p12 = d.join("s.p12");
        let signer = Signer::load(Some(&p12), Some("s3cret"), &d.join("unused.pem"), 60).unwrap();
        let t = signer.issue(3, 0, crate::now_ms()).unwrap();
        assert_eq!(signer.verify(&t).map(|v| v.agent), Ok(3));
        // The same key from its PEM (PKCS#8) file verifies the same token.
        let pem = Signer::load(Some(&d.join("k.pem")), None, &d.join("unused.pem"), 60).unwrap();
        assert_eq!(pem.verify(&t).map(|v| v.agent), Ok(3));
        let e = Signer::load(Some(&p12), Some("wrong"), &d.join("unused.pem"), 60)
            .err()
            .unwrap();
        assert!(format!("{e:#}").contains("PKCS#12"), "{e:#}");
        assert!(!d.join("unused.pem").exists());
    }
}
