//! The endpoints a run may connect to: resolved by the host once per run, handed to the connector
//! by name (`idgard:connector/network`), and the only addresses the sandbox lets it reach.

use crate::bindings::{net, wit};
use crate::grants::{EndpointGrant, TlsMode};
use crate::state::RunState;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

/// Largest CA bundle handed to a connector.
const MAX_CA_BYTES: u64 = 1 << 20;

/// One granted endpoint as this run sees it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// What the connector is told; `Err` when the endpoint cannot be used this run (its name
    /// did not resolve, its CA file cannot be read): the connector gets the error when it asks.
    pub(crate) endpoint: Result<net::Endpoint, String>,
}

/// The run's endpoints by name, and every address they resolved to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Endpoints {
    pub(crate) by_name: BTreeMap<String, Resolved>,
    pub(crate) allowed: Vec<SocketAddr>,
}

/// Resolves every granted endpoint now. An endpoint that fails to resolve is not an error of the
/// run: a connector that needs it gets `unavailable` when it asks for it.
pub(crate) fn resolve(grants: &BTreeMap<String, EndpointGrant>) -> Endpoints {
    let mut out = Endpoints::default();
    for (name, grant) in grants {
        let endpoint = grant
            .check(name)
            .and_then(|()| resolve_one(name, grant))
            .inspect(|e| {
                out.allowed.extend(
                    e.addresses
                        .iter()
                        .filter_map(|a| a.parse::<SocketAddr>().ok()),
                )
            })
            .inspect_err(|e| tracing::warn!(endpoint = %name, "granted endpoint unusable: {e}"));
        out.by_name.insert(name.clone(), Resolved { endpoint });
    }
    out
}

fn resolve_one(name: &str, grant: &EndpointGrant) -> Result<net::Endpoint, String> {
    let addresses: Vec<String> = grant
        .address
        .to_socket_addrs()
        .map_err(|e| format!("`{}` does not resolve: {e}", grant.address))?
        .map(|a| a.to_string())
        .collect();
    let ca_pem = match &grant.ca {
        None => String::new(),
        Some(path) => read_ca(path)?,
    };
    Ok(net::Endpoint {
        name: name.to_owned(),
        address: grant.address.clone(),
        addresses,
        tls: net::TlsPolicy {
            mode: match grant.tls {
                TlsMode::None => net::TlsMode::None,
                TlsMode::Direct => net::TlsMode::Direct,
                TlsMode::StartTls => net::TlsMode::StartTls,
            },
            server_name: grant
                .server_name
                .clone()
                .unwrap_or_else(|| grant.host().to_owned()),
            ca_pem,
            pins: grant.pins.clone(),
        },
        connect_timeout_ms: grant.connect_timeout_s.saturating_mul(1000),
        io_timeout_ms: grant.io_timeout_s.saturating_mul(1000),
    })
}

pub(crate) fn read_ca(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("CA file {shown}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_CA_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("CA file {shown}: {e}"))?;
    if text.len() as u64 > MAX_CA_BYTES {
        return Err(format!("CA file {shown} is larger than 1 MiB"));
    }
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("CA file {shown} holds no PEM certificate"));
    }
    Ok(text)
}

impl net::Host for RunState {
    fn granted(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.endpoints.by_name.keys().cloned().collect())
    }

    fn resolve(&mut self, name: String) -> wasmtime::Result<Result<net::Endpoint, wit::Error>> {
        let Some(found) = self.endpoints.by_name.get(&name) else {
            return Ok(Err(wit::Error {
                kind: wit::ErrorKind::Denied,
                message: format!(
                    "the connection grants no endpoint `{}`",
                    crate::text::shown(&name, 64)
                ),
            }));
        };
        Ok(found.endpoint.clone().map_err(|message| wit::Error {
            kind: wit::ErrorKind::Unavailable,
            message,
        }))
    }
}
