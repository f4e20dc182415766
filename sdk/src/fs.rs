//! The folders a run can see, and helpers to read and write records in them.
//!
//! Inside the sandbox a run sees only:
//! - `/collect`: the connection's collection folder, read-write, during an export;
//! - `/orders`: the connection's orders folder, read-only, during fulfil;
//! - `/grants/<name>`: each folder that `connector.toml` asks for **and** the connection grants,
//!   read-only or read-write as both allow.
//!
//! Nothing else exists: any other path fails with "not found" (WASI errno 44).

use crate::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The collection folder of an export run (read-write; kept between runs of the connection).
pub fn collect_dir() -> PathBuf {
    imp::collect_dir()
}

/// The orders folder of a fulfil run (read-only).
pub fn orders_dir() -> PathBuf {
    imp::orders_dir()
}

/// A granted folder by the name the manifest asks for it under.
pub fn granted(name: &str) -> Result<PathBuf, Error> {
    let path = imp::granted(name);
    if path.as_ref().is_some_and(|p| p.is_dir()) {
        Ok(path.expect("checked"))
    } else {
        Err(Error::denied(format!(
            "folder `{name}` is not granted to this run: ask for it under [[capabilities.folders]] \
             in connector.toml and grant it under [grants.folders] in the connection's configuration"
        )))
    }
}

/// Maps an I/O error on `path` to a connector error that names the file.
pub fn io_error(path: &Path, action: &str, e: std::io::Error) -> Error {
    use std::io::ErrorKind as K;
    let message = format!("cannot {action} {}: {e}", path.display());
    match e.kind() {
        K::PermissionDenied | K::ReadOnlyFilesystem => Error::denied(message),
        K::NotFound => Error::configuration(message),
        K::InvalidData => Error::invalid_data(message),
        _ => Error::unavailable(message),
    }
}

/// Reads a whole file as text, with a clear error naming it.
pub fn read_to_string(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| io_error(path, "read", e))
}

/// Replaces a file's content all at once: writes a temporary file beside it, then renames it
/// over the old one, so a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = temporary_beside(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(path, "write", e)
    })
}

/// A path beside `path` for a temporary file that will be renamed over it.
pub fn temporary_beside(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads a file of JSON lines (one record per line; blank lines skipped) into records.
pub fn read_json_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, Error> {
    let text = read_to_string(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| Error::invalid_data(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Writes records as JSON lines, atomically (see [`write_atomic`]).
pub fn write_json_lines<T: serde::Serialize>(path: &Path, records: &[T]) -> Result<(), Error> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| Error::internal(e.to_string()))?;
        out.push(b'\n');
    }
    write_atomic(path, &out)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::path::PathBuf;
    pub fn collect_dir() -> PathBuf {
        PathBuf::from("/collect")
    }
    pub fn orders_dir() -> PathBuf {
        PathBuf::from("/orders")
    }
    pub fn granted(name: &str) -> Option<PathBuf> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| PathBuf::from("/grants").join(name))
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub use crate::testing::fake::{collect_dir, granted, orders_dir};
}
