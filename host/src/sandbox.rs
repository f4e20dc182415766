//! The WASI side of a run: which folders exist, no environment, no arguments, no network unless
//! granted, and a stderr that is kept (capped) for the run's report.

use crate::error::Error;
use crate::grants::{Access, Effective};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
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

/// Opens a folder by walking its path one component at a time, following no symbolic link on
/// the way. A link anywhere in a granted path (not only as its last component) is refused: a
/// connector with a read-write grant above another connection's folder could otherwise swap a
/// folder for a link and send that connection's next run, and everything it writes, anywhere.
/// Paths are normalised lexically (`a/../b` is `b`), which matches the kernel's view exactly
/// because no component may be a link.
pub fn open_folder(path: &Path) -> Result<OwnedFd, Error> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    let bad = |message: String| Error::Folder {
        path: path.to_owned(),
        message,
    };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let start = if path.is_absolute() { "/" } else { "." };
    let mut dir = openat(CWD, start, flags, Mode::empty())
        .map_err(|e| bad(format!("cannot be opened: {e}")))?;
    let mut walked = PathBuf::from(start);
    for part in parts {
        walked.push(part);
        dir = openat(&dir, part, flags, Mode::empty()).map_err(
            |e| match std::fs::symlink_metadata(&walked) {
                Ok(m) if m.file_type().is_symlink() => bad(format!(
                    "{} is a symbolic link; grant the real folder instead",
                    walked.display()
                )),
                Ok(m) if !m.is_dir() => bad(format!("{} is not a folder", walked.display())),
                _ => bad(format!("cannot be opened: {e}")),
            },
        )?;
    }
    Ok(dir)
}

/// Removes everything in a folder (not the folder), following no link: a link is removed, not
/// what it points to.
pub fn empty_folder(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Builds the WASI context of one run; returns it with the handle on its stderr.
pub(crate) fn build(
    folders: &RunFolders<'_>,
    grants: &Effective,
    allowed: &[SocketAddr],
) -> Result<(WasiCtx, Stderr), Error> {
    let mut b = WasiCtxBuilder::new();
    let stderr = Stderr::default();
    b.stderr(stderr.clone());
    b.allow_udp(false);
    b.allow_tcp(false);
    b.allow_ip_name_lookup(false);
    let open =
        |b: &mut WasiCtxBuilder, host: &Path, guest: &str, perms: FsPerms| -> Result<(), Error> {
            // WASI opens the folder again by path: through the descriptor we just opened, so it
            // is the folder we checked, whatever changed since.
            let dir = open_folder(host)?;
            b.preopened_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()), guest, perms)
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
        // Resolved by the host, once per run: the connector may connect to these addresses
        // and no others, whatever names it looks up.
        let allowed = Arc::new(allowed.to_vec());
        b.allow_tcp(true);
        // No name look-ups from the guest, even with endpoints granted: a look-up of a name
        // the connector makes up would carry data out through DNS. It connects to the
        // addresses the host resolved.
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
