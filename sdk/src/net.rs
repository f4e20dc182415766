//! Connections to the endpoints a connection grants: plain TCP, TLS from the first byte, or a
//! plain start upgraded with [`Stream::start_tls`], each with the grant's trust and timeouts.
//!
//! A connector looks no name up: the host resolved the endpoint's name and the sandbox lets the
//! connector reach those addresses only. Everything here blocks; a connector makes one call at a
//! time, and the host's deadline ends a run whatever it waits for.
//!
//! ```ignore
//! let mut stream = idgard_sdk::net::connect("directory")?; // TLS already if the grant says `direct`
//! stream.write_all(request)?;
//! ```

use crate::Error;
pub use crate::bindings::idgard::connector::network::{Endpoint, TlsMode, TlsPolicy};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A granted endpoint by name (see [`Endpoint`] for what it holds).
pub fn endpoint(name: &str) -> Result<Endpoint, Error> {
    crate::host::endpoint(name)
}

/// The names of the endpoints the connection grants.
pub fn endpoints() -> Vec<String> {
    crate::host::endpoints()
}

/// Opens a connection to a granted endpoint as its grant says: TLS from the first byte when the
/// grant's mode is `direct`; plain for `none` and `start-tls` (then the protocol asks for TLS and
/// the connector calls [`Stream::start_tls`]).
pub fn connect(name: &str) -> Result<Stream, Error> {
    let endpoint = endpoint(name)?;
    let tcp = open(&endpoint)?;
    let stream = Stream {
        inner: Inner::Plain(tcp),
        endpoint,
    };
    match stream.endpoint.tls.mode {
        TlsMode::Direct => stream.start_tls(),
        TlsMode::None | TlsMode::StartTls => Ok(stream),
    }
}

/// Opens a TLS connection to a granted endpoint, whatever its mode, with its trust. Refused
/// when the grant trusts nothing (`tls = "none"`).
pub fn connect_tls(name: &str) -> Result<Stream, Error> {
    let endpoint = endpoint(name)?;
    let tcp = open(&endpoint)?;
    Stream {
        inner: Inner::Plain(tcp),
        endpoint,
    }
    .start_tls()
}

/// One connection: read and write it as any `std::io` stream.
pub struct Stream {
    inner: Inner,
    endpoint: Endpoint,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("endpoint", &self.endpoint.name)
            .field("tls", &self.is_tls())
            .finish()
    }
}

impl Stream {
    /// Whether the stream is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Whether the grant asks for StartTLS and the stream is still plain: the connector must
    /// upgrade it before sending anything that matters.
    pub fn needs_start_tls(&self) -> bool {
        self.endpoint.tls.mode == TlsMode::StartTls && !self.is_tls()
    }

    /// The endpoint this stream is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Upgrades a plain stream to TLS (StartTLS, once the protocol agreed), checking the
    /// server's certificate against the grant's CA and pins. A TLS stream is returned as is.
    pub fn start_tls(self) -> Result<Stream, Error> {
        let tcp = match self.inner {
            Inner::Tls(_) => return Ok(self),
            Inner::Plain(tcp) => tcp,
        };
        let ep = &self.endpoint;
        let config = client_config(ep)?;
        let name = ServerName::try_from(ep.tls.server_name.clone()).map_err(|e| {
            Error::configuration(format!(
                "endpoint `{}`: server name `{}`: {e}",
                ep.name, ep.tls.server_name
            ))
        })?;
        let conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| Error::internal(format!("endpoint `{}`: TLS: {e}", ep.name)))?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| handshake_error(ep, e))?;
        }
        Ok(Stream {
            inner: Inner::Tls(Box::new(tls)),
            endpoint: self.endpoint,
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.read(buf),
            Inner::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.write(buf),
            Inner::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => s.flush(),
            Inner::Tls(s) => s.flush(),
        }
    }
}

/// Connects to the first of the endpoint's addresses that answers.
fn open(ep: &Endpoint) -> Result<TcpStream, Error> {
    let connect_timeout = Duration::from_millis(ep.connect_timeout_ms.max(1).into());
    let io_timeout = Duration::from_millis(ep.io_timeout_ms.max(1).into());
    let mut last = None;
    for addr in &ep.addresses {
        let Ok(addr) = addr.parse::<SocketAddr>() else {
            continue;
        };
        let attempt = match TcpStream::connect_timeout(&addr, connect_timeout) {
            Err(e) if e.kind() == io::ErrorKind::Unsupported => TcpStream::connect(addr),
            other => other,
        };
        match attempt {
            Ok(s) => {
                // Where the platform cannot time a read, the host's deadline still ends the run.
                let _ = s.set_read_timeout(Some(io_timeout));
                let _ = s.set_write_timeout(Some(io_timeout));
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(Error::unavailable(format!(
        "endpoint `{}` ({}): cannot connect: {}",
        ep.name,
        ep.address,
        last.unwrap_or_else(|| "it resolved to no address".into())
    )))
}

fn handshake_error(ep: &Endpoint, e: io::Error) -> Error {
    let message = format!("endpoint `{}` ({}): TLS: {e}", ep.name, ep.address);
    let refused = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::General(_)
            )
        });
    if refused {
        Error::denied(message)
    } else {
        Error::unavailable(message)
    }
}

/// ring's provider, ChaCha20-Poly1305 first: inside WebAssembly there is no AES instruction,
/// and ChaCha20 in software is several times faster than AES-GCM in software.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    Arc::new(p)
}

/// The TLS set-up of an endpoint: its CA bundle as roots, and its pins on top (or alone).
fn client_config(ep: &Endpoint) -> Result<ClientConfig, Error> {
    let bad = |m: String| Error::configuration(format!("endpoint `{}`: {m}", ep.name));
    if ep.tls.mode == TlsMode::None {
        return Err(bad(
            "the grant says `tls = \"none\"`: it gives nothing to trust for TLS".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ep.tls.ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| bad(format!("CA bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("CA bundle: {e}")))?;
    }
    let provider = provider();
    let ca = if roots.is_empty() {
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| bad(format!("CA bundle: {e}")))?,
        )
    };
    let verifier = Arc::new(Verifier {
        ca,
        pins: ep.tls.pins.clone(),
        provider: provider.clone(),
    });
    if verifier.ca.is_none() && verifier.pins.is_empty() {
        return Err(bad(
            "TLS needs a CA bundle or pins, and the grant gives neither".into(),
        ));
    }
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Checks a server: against the CA (chain, validity, server name) when one is given, and its
/// public key against the pins when any are given; both when both are.
#[derive(Debug)]
struct Verifier {
    ca: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pins: Vec<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(ca) = &self.ca {
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if !self.pins.is_empty() {
            let pin = key_pin(end_entity)?;
            if !self.pins.iter().any(|p| p.eq_ignore_ascii_case(&pin)) {
                return Err(rustls::Error::General(format!(
                    "the server's key (SHA-256 {pin}) is none of the pinned keys"
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
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

/// SHA-256 of a certificate's SubjectPublicKeyInfo, lower-case hex (what `openssl x509 -pubkey
/// | openssl pkey -pubin -outform der | sha256sum` prints).
pub fn key_pin(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    use x509_cert::der::{Decode, Encode};
    let bad = |e: x509_cert::der::Error| {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
            Arc::new(e),
        )))
    };
    let parsed = x509_cert::Certificate::from_der(cert.as_ref()).map_err(bad)?;
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(bad)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}
