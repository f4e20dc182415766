//! A package's files and its digest.

use crate::{Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path};

/// The manifest's name in a package.
pub const MANIFEST_FILE: &str = "connector.toml";
/// The signature's name in a package.
pub const SIGNATURE_FILE: &str = "connector.sig";
/// Largest manifest read.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Largest signature file read.
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 10;
/// Largest component read (as the host's limit).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// What the digest starts with: a package digest is never confused with another SHA-256.
const DIGEST_CONTEXT: &[u8] = b"idgard-connector-package-v1\0";

/// The few manifest fields this crate reads (the host checks the rest).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PackageMeta {
    /// The connector's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The component file, relative to the manifest.
    pub component: String,
}

/// A connector package in memory: manifest, component and, if signed, the signature file.
#[derive(Clone)]
pub struct Package {
    /// The manifest's fields read here.
    pub meta: PackageMeta,
    /// `connector.toml`, as written.
    pub manifest: Vec<u8>,
    /// The component, as written.
    pub component: Vec<u8>,
    /// `connector.sig`, when present.
    pub signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("meta", &self.meta)
            .field("digest", &self.digest_hex())
            .field("signed", &self.signature.is_some())
            .finish()
    }
}

impl Package {
    /// A package from its files' contents; the manifest is parsed for its name, version and
    /// component path, which must stay inside the package.
    pub fn from_parts(
        manifest: Vec<u8>,
        component: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<Self> {
        let meta = parse_meta(&manifest)?;
        Ok(Self {
            meta,
            manifest,
            component,
            signature,
        })
    }

    /// Reads a package folder: `connector.toml`, the component it names, and `connector.sig`
    /// when there is one. Every file is read with a bound.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let manifest = read_bounded(&dir.join(MANIFEST_FILE), MAX_MANIFEST_BYTES)?;
        let meta = parse_meta(&manifest)?;
        let component = read_bounded(&dir.join(&meta.component), MAX_COMPONENT_BYTES)?;
        let sig_path = dir.join(SIGNATURE_FILE);
        let signature = match std::fs::symlink_metadata(&sig_path) {
            Ok(_) => Some(read_bounded(&sig_path, MAX_SIGNATURE_BYTES)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&sig_path, e)),
        };
        Ok(Self {
            meta,
            manifest,
            component,
            signature,
        })
    }

    /// Writes the package's files into `dir` (which must exist), each written whole.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        let mut files = vec![
            (MANIFEST_FILE, &self.manifest),
            (self.meta.component.as_str(), &self.component),
        ];
        if let Some(sig) = &self.signature {
            files.push((SIGNATURE_FILE, sig));
        }
        for (name, bytes) in files {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// SHA-256 over a context string, then the manifest and the component, each preceded by
    /// its length (so no byte can move from one to the other).
    pub fn digest(&self) -> [u8; 32] {
        digest_of(&self.manifest, &self.component)
    }

    /// [`Package::digest`] in lower-case hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }

    /// Bytes of the manifest and the component together.
    pub fn size(&self) -> u64 {
        (self.manifest.len() + self.component.len()) as u64
    }
}

/// The package digest of a manifest and a component.
pub fn digest_of(manifest: &[u8], component: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DIGEST_CONTEXT);
    h.update((manifest.len() as u64).to_be_bytes());
    h.update(manifest);
    h.update((component.len() as u64).to_be_bytes());
    h.update(component);
    h.finalize().into()
}

fn parse_meta(manifest: &[u8]) -> Result<PackageMeta> {
    let text = std::str::from_utf8(manifest)
        .map_err(|_| Error::Malformed(format!("{MANIFEST_FILE} is not UTF-8")))?;
    let meta: PackageMeta = toml::from_str(text)
        .map_err(|e| Error::Malformed(format!("{MANIFEST_FILE}: {}", e.message())))?;
    let name_ok = !meta.name.is_empty()
        && meta.name.len() <= 64
        && meta
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(Error::Malformed(format!(
            "{MANIFEST_FILE}: the name `{}` is not a connector name (lower-case letters, digits, `-`, `_`)",
            meta.name
        )));
    }
    if meta.version.is_empty() || meta.version.len() > 64 || meta.version.contains(char::is_control)
    {
        return Err(Error::Malformed(format!(
            "{MANIFEST_FILE}: the version must be 1 to 64 printable characters"
        )));
    }
    let component = Path::new(&meta.component);
    let confined = !meta.component.is_empty()
        && meta.component.len() <= 255
        && component
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && meta.component != MANIFEST_FILE
        && meta.component != SIGNATURE_FILE;
    if !confined {
        return Err(Error::Malformed(format!(
            "{MANIFEST_FILE}: the component `{}` must be a file inside the package (a relative path without `.` or `..`)",
            meta.component
        )));
    }
    Ok(meta)
}

/// Reads a regular file (not a link) of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Malformed(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > max {
        return Err(Error::Malformed(format!(
            "{} is {} bytes; the limit is {max}",
            path.display(),
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::Malformed(format!(
            "{} grew past {max} bytes while read",
            path.display()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(component: &str) -> Vec<u8> {
        format!("name = \"csv\"\nversion = \"1.0.0\"\ncomponent = \"{component}\"\ncontract = \"0.3.0\"\n")
            .into_bytes()
    }

    #[test]
    fn the_digest_covers_both_files_and_where_they_split() {
        let a = digest_of(b"ab", b"c");
        assert_ne!(a, digest_of(b"a", b"bc"));
        assert_ne!(a, digest_of(b"ab", b"d"));
        assert_eq!(a, digest_of(b"ab", b"c"));
    }

    #[test]
    fn the_component_stays_inside_the_package() {
        assert!(Package::from_parts(manifest("c.wasm"), vec![], None).is_ok());
        assert!(Package::from_parts(manifest("lib/c.wasm"), vec![], None).is_ok());
        for bad in [
            "../c.wasm",
            "/etc/passwd",
            "./c.wasm",
            "",
            "connector.sig",
            "a/../../b",
        ] {
            let e = Package::from_parts(manifest(bad), vec![], None).unwrap_err();
            assert_eq!(e.code(), "package.malformed", "{bad}");
        }
    }

    #[test]
    fn a_manifest_without_a_name_or_with_a_strange_one_is_refused() {
        let e = Package::from_parts(b"version = \"1\"\ncomponent = \"c\"".to_vec(), vec![], None)
            .unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        let bad = b"name = \"../x\"\nversion = \"1\"\ncomponent = \"c\"".to_vec();
        assert!(Package::from_parts(bad, vec![], None).is_err());
        assert!(Package::from_parts(vec![0xff, 0xfe], vec![], None).is_err());
    }
}
