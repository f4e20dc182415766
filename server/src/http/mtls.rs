//! Mutual TLS for agents (optional): with `tls.agent_ca`, the server asks every client for a
//! certificate during the handshake and checks any it gets against that authority. A browser
//! or the admin CLI presents none and is served as before; an agent's requests are refused
//! unless its connection presented a certificate of that authority naming the agent (a DNS
//! name in its subject alternative names equal to the agent's name). The names a connection's
//! certificate holds travel with each of its requests ([`PeerNames`]).

use anyhow::{Context as _, Result};
use axum::http::Request;
use axum_server::accept::Accept;
use axum_server::tls_rustls::RustlsConfig;
use rustls::server::WebPkiClientVerifier;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_rustls::server::TlsStream;

/// The DNS names of the certificate the connection presented; `None`: it presented none.
#[derive(Debug, Clone, Default)]
pub struct PeerNames(pub Option<Arc<[String]>>);

/// The TLS configuration: the server's certificate and key (PEM), and clients' certificates
/// asked for and checked against the authorities in `agent_ca` (PEM).
pub fn config(cert: &[u8], key: &[u8], agent_ca: &Path) -> Result<RustlsConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls_pemfile::certs(&mut &cert[..])
        .collect::<Result<Vec<_>, _>>()
        .context("the TLS certificate is not PEM")?;
    let key = rustls_pemfile::private_key(&mut &key[..])
        .context("the TLS key is not PEM")?
        .context("no private key in the TLS key file")?;
    let ca_pem =
        std::fs::read(agent_ca).with_context(|| format!("cannot read {}", agent_ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let ca = ca.with_context(|| format!("{} is not PEM", agent_ca.display()))?;
        roots
            .add(ca)
            .with_context(|| format!("{}: not a usable authority", agent_ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{} holds no certificate", agent_ca.display());
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("the agents' certificate authority cannot be used")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("cannot use the TLS certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// The names a certificate holds (DNS names of its subject alternative names).
fn names_of(cert: &rustls::pki_types::CertificateDer<'_>) -> Arc<[String]> {
    webpki::EndEntityCert::try_from(cert)
        .map(|c| c.valid_dns_names().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// An acceptor that notes, after the TLS handshake of `A`, the names of the client's
/// certificate, for every request of the connection.
#[derive(Clone)]
pub struct WithPeerNames<A>(pub A);

impl<I, S, A, T> Accept<I, S> for WithPeerNames<A>
where
    A: Accept<I, S, Stream = TlsStream<T>>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
    T: Send + 'static,
{
    type Stream = TlsStream<T>;
    type Service = Named<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let handshake = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, inner) = handshake.await?;
            let names = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(names_of);
            Ok((
                stream,
                Named {
                    inner,
                    names: PeerNames(names),
                },
            ))
        })
    }
}

/// A connection's service, adding [`PeerNames`] to each request.
#[derive(Clone)]
pub struct Named<S> {
    inner: S,
    names: PeerNames,
}

impl<S, B> tower::Service<Request<B>> for Named<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.names.clone());
        self.inner.call(request)
    }
}
