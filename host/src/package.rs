//! Reading a package's component file. The manifest names it, and the manifest comes with the
//! package, from whoever wrote the connector: the path must stay inside the package folder, name
//! a regular file (not `/dev/zero`, a FIFO or a link to `/etc/shadow`), and be read with a bound.

use crate::error::Error;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Largest `.wasm` file the host reads.
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// The component's path inside the package folder, refused when it could lead out of it.
pub fn component_path(dir: &Path, component: &Path) -> Result<PathBuf, Error> {
    let confined = !component.as_os_str().is_empty()
        && component
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !confined {
        return Err(Error::component(
            &dir.join(component),
            "the manifest's `component` must be a file inside the package folder \
             (a relative path without `..`)",
        ));
    }
    Ok(dir.join(component))
}

/// Reads the component file: a regular file, not a link, at most [`MAX_COMPONENT_BYTES`].
pub fn read_component(path: &Path) -> Result<Vec<u8>, Error> {
    if let Some(parent) = path.parent() {
        crate::sandbox::open_folder(parent)
            .map_err(|e| Error::component(path, format!("its folder is unusable: {e}")))?;
    }
    // O_NOFOLLOW refuses a link; O_NONBLOCK keeps a FIFO from hanging the open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => {
                Error::component(path, "is a symbolic link; the package must hold the file")
            }
            _ => Error::io(path, e),
        })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::component(path, "is not a regular file"));
    }
    if meta.len() > MAX_COMPONENT_BYTES {
        return Err(Error::component(
            path,
            format!(
                "is {} bytes; the limit is {MAX_COMPONENT_BYTES}",
                meta.len()
            ),
        ));
    }
    let mut wasm = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut wasm)
        .map_err(|e| Error::io(path, e))?;
    if wasm.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(Error::component(
            path,
            "grew past the size limit while read",
        ));
    }
    Ok(wasm)
}

fn libc_flags() -> i32 {
    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_stays_in_its_package() {
        let dir = Path::new("/pkg");
        assert!(component_path(dir, Path::new("c.wasm")).is_ok());
        assert!(component_path(dir, Path::new("./lib/c.wasm")).is_ok());
        for bad in ["/dev/zero", "../../../etc/shadow", "lib/../../x.wasm", ""] {
            assert!(component_path(dir, Path::new(bad)).is_err(), "{bad}");
        }
    }
}
