//! The author's tools for signed packages: `idgard-agent connector keygen`, `sign` and
//! `verify`. A publisher keeps its private key; agents that trust it hold its public key as
//! `publishers/<publisher>.pem`.

use anyhow::{Context, Result, bail};
use idgard_signing::{Package, SIGNATURE_FILE, SigningKey, Trust};
use std::path::{Path, PathBuf};

/// Makes an Ed25519 key pair for `publisher` in `dir`: `<publisher>.key` (private, 0600) and
/// `<publisher>.pem` (public, for agents' `publishers/` folders). Returns both paths.
pub fn keygen(publisher: &str, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let private = dir.join(format!("{publisher}.key"));
    let public = dir.join(format!("{publisher}.pem"));
    for path in [&private, &public] {
        if path.exists() {
            bail!("{} already exists: not overwritten", path.display());
        }
    }
    let (private_pem, public_pem) = idgard_signing::generate_ed25519()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    idgard_vault::write_private(&private, private_pem.as_bytes())?;
    std::fs::write(&public, public_pem)
        .with_context(|| format!("cannot write {}", public.display()))?;
    Ok((private, public))
}

/// Signs the package in `dir` as `publisher` with the private key `key`: writes
/// `connector.sig` next to the manifest. Returns the package and its digest.
pub fn sign(dir: &Path, key: &Path, publisher: &str) -> Result<(Package, String)> {
    let key = SigningKey::load(key)?;
    let mut package = Package::read_dir(dir)
        .with_context(|| format!("cannot read the package {}", dir.display()))?;
    let signature = key.sign(publisher, &package)?;
    let path = dir.join(SIGNATURE_FILE);
    let text = signature.to_file();
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    package.signature = Some(text.into_bytes());
    let digest = package.digest_hex();
    Ok((package, digest))
}

/// Checks the package in `dir` against the public keys in `trusted` (a folder of
/// `<publisher>.pem`, as an agent's `publishers`): who signed it.
pub fn verify(dir: &Path, trusted: &Path) -> Result<(Package, idgard_signing::Verified)> {
    let trust = Trust::load(trusted)?;
    if trust.is_empty() {
        bail!(
            "{} holds no public key (<publisher>.pem): there is no one to check against",
            trusted.display()
        );
    }
    let package = Package::read_dir(dir)
        .with_context(|| format!("cannot read the package {}", dir.display()))?;
    let verified = trust
        .verify(&package)
        .with_context(|| format!("{} {} is refused", package.meta.name, package.meta.version))?;
    Ok((package, verified))
}

/// Writes the package in `dir` (signed) as one bundle file, the form the server takes.
pub fn bundle(dir: &Path, out: &Path) -> Result<Package> {
    let package = Package::read_dir(dir)
        .with_context(|| format!("cannot read the package {}", dir.display()))?;
    if package.signature.is_none() {
        bail!(
            "{} is not signed: run `idgard-agent connector sign` first",
            dir.display()
        );
    }
    std::fs::write(out, idgard_signing::bundle::write(&package))
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(package)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_sign_verify_round_trip_and_a_changed_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let (private, _public) = keygen("acme", &keys).unwrap();
        assert!(keygen("acme", &keys).is_err(), "never overwrites a key");
        let pkg = dir.path().join("pkg");
        std::fs::create_dir(&pkg).unwrap();
        std::fs::write(
            pkg.join("connector.toml"),
            "name = \"demo\"\nversion = \"1.0.0\"\ncomponent = \"demo.wasm\"\n",
        )
        .unwrap();
        std::fs::write(pkg.join("demo.wasm"), b"component").unwrap();
        let (_, digest) = sign(&pkg, &private, "acme").unwrap();
        // The public key sits in `keys`, as agents keep it in `publishers`.
        let (_, v) = verify(&pkg, &keys).unwrap();
        assert_eq!(
            (v.publisher.as_str(), v.digest.as_str()),
            ("acme", digest.as_str())
        );
        let out = dir.path().join("demo.tar");
        bundle(&pkg, &out).unwrap();
        let back = idgard_signing::bundle::read(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(back.digest_hex(), digest);

        std::fs::write(pkg.join("demo.wasm"), b"c0mponent").unwrap();
        let e = format!("{:#}", verify(&pkg, &keys).unwrap_err());
        assert!(e.contains("do not match their signature"), "{e}");
    }
}
