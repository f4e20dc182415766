//! The bundle a package travels in: a plain tar file holding `connector.toml`, the component
//! and `connector.sig` (when signed), nothing else. Bundles come from outside (an
//! administrator's upload, the server's answer), so reading one is bounded: only regular files,
//! only those names, each once, each within its size limit.

use crate::package::{
    MANIFEST_FILE, MAX_COMPONENT_BYTES, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, Package,
    SIGNATURE_FILE,
};
use crate::{Error, Result};
use std::io::Read;

/// The bundle's bytes.
pub fn write(package: &Package) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::with_capacity(package.size() as usize + 4096));
    let mut files = vec![
        (MANIFEST_FILE, &package.manifest),
        (package.meta.component.as_str(), &package.component),
    ];
    if let Some(sig) = &package.signature {
        files.push((SIGNATURE_FILE, sig));
    }
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .expect("writing to memory");
    }
    builder.into_inner().expect("writing to memory")
}

/// Reads a bundle. The manifest must come first (it names the component).
pub fn read(bytes: &[u8]) -> Result<Package> {
    let bad = |m: String| Error::Malformed(format!("the package bundle: {m}"));
    let mut archive = tar::Archive::new(bytes);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar file: {e}")))?;
    let mut manifest: Option<Vec<u8>> = None;
    let mut component_name: Option<String> = None;
    let mut component: Option<Vec<u8>> = None;
    let mut signature: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a tar file: {e}")))?;
        let kind = entry.header().entry_type();
        let name = entry
            .path()
            .map_err(|e| bad(format!("an entry's name: {e}")))?
            .to_string_lossy()
            .into_owned();
        if !kind.is_file() {
            return Err(bad(format!("`{name}` is not a regular file")));
        }
        let (slot, max) = if name == MANIFEST_FILE {
            (&mut manifest, MAX_MANIFEST_BYTES)
        } else if name == SIGNATURE_FILE {
            (&mut signature, MAX_SIGNATURE_BYTES)
        } else if component_name.as_deref() == Some(name.as_str()) {
            (&mut component, MAX_COMPONENT_BYTES)
        } else if component_name.is_none() {
            return Err(bad(format!("`{name}` comes before {MANIFEST_FILE}")));
        } else {
            return Err(bad(format!(
                "`{name}` is neither {MANIFEST_FILE}, the component it names, nor {SIGNATURE_FILE}"
            )));
        };
        if slot.is_some() {
            return Err(bad(format!("`{name}` appears twice")));
        }
        let size = entry.size();
        if size > max {
            return Err(bad(format!("`{name}` is {size} bytes; the limit is {max}")));
        }
        // The header's size is a claim: reserve no more than the bundle could hold.
        let mut data = Vec::with_capacity(size.min(bytes.len() as u64) as usize);
        (&mut entry)
            .take(max + 1)
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("`{name}`: {e}")))?;
        if name == MANIFEST_FILE {
            let meta = Package::from_parts(data.clone(), vec![], None)?.meta;
            component_name = Some(meta.component);
        }
        *slot = Some(data);
    }
    let manifest = manifest.ok_or_else(|| bad(format!("{MANIFEST_FILE} is missing")))?;
    let component = component.ok_or_else(|| {
        bad(format!(
            "the component `{}` is missing",
            component_name.unwrap_or_default()
        ))
    })?;
    Package::from_parts(manifest, component, signature)
}
