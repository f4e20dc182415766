//! The WASI side of a run: which folders exist, no environment, no arguments, no network unless
//! granted, and a stderr that is kept (capped) for the run's report.

use crate::error::Error;
use crate::grants::{Access, Effective};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// Guest path of the collection folder (export runs).
pub const COLLECT: &str = "/collect";
/// Guest path of the orders folder (fulfil runs).
pub const ORDERS: &str = "/orders";
/// Guest folder under which granted folders appear by name.
pub const GRANTS: &str = "/grants";

/// Bytes of the connector's stderr kept for the run's report (panic messages fit easily);
/// past it writes are dropped silently, so a chatty connector cannot fail or flood the agent.
const STDERR_KEPT: usize = 16 * 1024;

/// Folders one run sees besides its grants.
#[derive(Debug, Clone, Default)]
pub struct RunFolders<'a> {
    /// `/collect`, read-write.
    pub collect: Option<&'a Path>,
    /// `/orders`, read-only.
    pub orders: Option<&'a Path>,
}

/// A folder must exist, be a real folder (not a symlink: a link swapped in by someone else could
/// point the connector anywhere) and be given with an absolute or relative path we can open.
fn check_folder(path: &Path) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::Folder {
        path: path.to_owned(),
        message: format!("cannot be opened: {e}"),
    })?;
    if meta.file_type().is_symlink() {
        return Err(Error::Folder {
            path: path.to_owned(),
            message: "is a symbolic link; grant its target instead".into(),
        });
    }
    if !meta.is_dir() {
        return Err(Error::Folder {
            path: path.to_owned(),
            message: "is not a folder".into(),
        });
    }
    Ok(())
}

/// Builds the WASI context of one run; returns it with the handle on its stderr.
pub(crate) fn build(
    folders: &RunFolders<'_>,
    grants: &Effective,
) -> Result<(WasiCtx, Stderr), Error> {
    let mut b = WasiCtxBuilder::new();
    let stderr = Stderr::default();
    b.stderr(stderr.clone());
    b.allow_udp(false);
    b.allow_tcp(false);
    b.allow_ip_name_lookup(false);
    let open =
        |b: &mut WasiCtxBuilder, host: &Path, guest: &str, perms: FsPerms| -> Result<(), Error> {
            check_folder(host)?;
            b.preopened_dir(host, guest, perms)
                .map(|_| ())
                .map_err(|e| Error::Folder {
                    path: host.to_owned(),
                    message: format!("cannot be granted: {e}"),
                })
        };
    if let Some(p) = folders.collect {
        open(&mut b, p, COLLECT, FsPerms::ReadWrite)?;
    }
    if let Some(p) = folders.orders {
        open(&mut b, p, ORDERS, FsPerms::ReadOnly)?;
    }
    for f in &grants.folders {
        let perms = match f.access {
            Access::ReadOnly => FsPerms::ReadOnly,
            Access::ReadWrite => FsPerms::ReadWrite,
        };
        open(&mut b, &f.path, &format!("{GRANTS}/{}", f.name), perms)?;
    }
    if !grants.endpoints.is_empty() {
        let mut allowed: Vec<SocketAddr> = Vec::new();
        for ep in &grants.endpoints {
            // Resolved by the host, once per run: the connector may connect to these addresses
            // and no others, whatever names it looks up.
            match ep.to_socket_addrs() {
                Ok(addrs) => allowed.extend(addrs),
                Err(e) => tracing::warn!(endpoint = %ep, "granted endpoint does not resolve: {e}"),
            }
        }
        let allowed = Arc::new(allowed);
        b.allow_tcp(true);
        b.allow_ip_name_lookup(true);
        b.socket_addr_check(move |addr, usage| {
            let ok = match usage {
                // The implicit bind of an outgoing connection: any local port.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                SocketAddrUse::TcpConnect => allowed.contains(&addr),
                // A connector never listens, accepts or speaks UDP.
                _ => false,
            };
            Box::pin(async move { ok })
        });
    }
    Ok((b.build(), stderr))
}

/// The connector's stderr: the first [`STDERR_KEPT`] bytes are kept.
#[derive(Clone, Default)]
pub(crate) struct Stderr(Arc<Mutex<Vec<u8>>>);

impl Stderr {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("stderr lock"))
            .trim_end()
            .to_owned()
    }
}

impl wasmtime_wasi::cli::IsTerminal for Stderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Stderr {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Stderr {
    async fn ready(&mut self) {}
}

impl OutputStream for Stderr {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        let mut buf = self.0.lock().expect("stderr lock");
        let room = STDERR_KEPT.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}
