//! HTTPS to an idgard server pinned to its certificate: the SHA-256 the server prints when it
//! starts is the only certificate accepted, whoever signed it (a development certificate is
//! signed by nobody), and the handshake's signatures are still checked, so only the holder of
//! that certificate's key gets through.

use anyhow::{Context, Result};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
struct Pinned {
    sha256: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one pinned (its SHA-256 differs)".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Checks a fingerprint: 64 hexadecimal digits, `:` separators allowed.
pub fn parse_fingerprint(fingerprint: &str) -> Result<Vec<u8>> {
    hex::decode(fingerprint.replace(':', ""))
        .ok()
        .filter(|b| b.len() == 32)
        .context("the fingerprint must be 64 hexadecimal digits (SHA-256)")
}

/// A client certificate and its key, presented to the server (an agent's, for mutual TLS).
pub struct ClientIdentity {
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Reads a certificate chain and its private key, both PEM.
    pub fn load(cert: &std::path::Path, key: &std::path::Path) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|c| c.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("{}: not a PEM certificate", cert.display()))?;
        anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert.display());
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("{}: not a PEM private key", key.display()))?;
        Ok(Self { certs, key })
    }
}

/// An HTTP client for `server`, pinned to `fingerprint` (required for `https://`); `who` is
/// the user agent's name.
pub fn http_client(server: &str, fingerprint: Option<&str>, who: &str) -> Result<reqwest::Client> {
    http_client_as(server, fingerprint, who, None)
}

/// [`http_client`], presenting `identity` when the server asks for a client certificate.
pub fn http_client_as(
    server: &str,
    fingerprint: Option<&str>,
    who: &str,
    identity: Option<&ClientIdentity>,
) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(format!("{who}/{}", env!("CARGO_PKG_VERSION")));
    let builder = if server.starts_with("https://") {
        let fingerprint = fingerprint.context(
            "an https server needs --fingerprint (the certificate's SHA-256 the server prints)",
        )?;
        let sha256 = parse_fingerprint(fingerprint)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { sha256, provider }));
        let config = match identity {
            Some(id) => config
                .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
                .context("the client certificate and key do not go together")?,
            None => config.with_no_client_auth(),
        };
        builder.use_preconfigured_tls(config)
    } else if server.starts_with("http://") {
        tracing::warn!("talking to {server} over plain HTTP: development only");
        builder
    } else {
        anyhow::bail!("the server's URL must start with https:// (or http:// in development)");
    };
    Ok(builder.build()?)
}
