//! Signing and checking packages, with both algorithms, and what a tampered package, an unknown
//! publisher or a hostile bundle meets.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use idgard_signing::{Algorithm, Package, SigningKey, Trust, bundle, generate_ed25519};
use std::path::Path;

const MANIFEST: &str = "name = \"csv\"\nversion = \"1.2.0\"\ncontract = \"0.3.0\"\ncomponent = \"c.wasm\"\noperations = []\n";

fn package() -> Package {
    Package::from_parts(
        MANIFEST.as_bytes().to_vec(),
        b"\0asm component bytes".to_vec(),
        None,
    )
    .unwrap()
}

/// Writes a publisher's key pair: the private key in `dir/<name>.key`, the public one in
/// `dir/trusted/<name>.pem`.
fn ed25519_publisher(dir: &Path, name: &str) -> SigningKey {
    let (private, public) = generate_ed25519().unwrap();
    std::fs::create_dir_all(dir.join("trusted")).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), private).unwrap();
    std::fs::write(dir.join("trusted").join(format!("{name}.pem")), public).unwrap();
    SigningKey::load(&dir.join(format!("{name}.key"))).unwrap()
}

fn rsa_publisher(dir: &Path, name: &str) -> SigningKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<Pkcs8V1Der>::as_der(&pair).unwrap();
    std::fs::create_dir_all(dir.join("trusted")).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        idgard_vault::pem("PRIVATE KEY", der.as_ref()),
    )
    .unwrap();
    let key = SigningKey::load(&dir.join(format!("{name}.key"))).unwrap();
    std::fs::write(
        dir.join("trusted").join(format!("{name}.pem")),
        key.public_pem().unwrap(),
    )
    .unwrap();
    key
}

fn signed(key: &SigningKey, publisher: &str) -> Package {
    let mut p = package();
    p.signature = Some(key.sign(publisher, &p).unwrap().to_file().into_bytes());
    p
}

#[test]
fn both_algorithms_sign_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ed = ed25519_publisher(dir.path(), "acme");
    let rsa = rsa_publisher(dir.path(), "bigcorp");
    assert_eq!(ed.algorithm(), Algorithm::Ed25519);
    assert_eq!(rsa.algorithm(), Algorithm::RsaPssSha256);
    let trust = Trust::load(&dir.path().join("trusted")).unwrap();
    assert_eq!(trust.publishers().count(), 2);
    for (key, name) in [(&ed, "acme"), (&rsa, "bigcorp")] {
        let p = signed(key, name);
        let v = trust.verify(&p).unwrap();
        assert_eq!(v.publisher, name);
        assert_eq!(v.digest, p.digest_hex());
        // Through a bundle, unchanged.
        let back = bundle::read(&bundle::write(&p)).unwrap();
        assert_eq!(trust.verify(&back).unwrap(), v);
    }
}

#[test]
fn any_changed_byte_of_the_manifest_or_component_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_publisher(dir.path(), "acme");
    let trust = Trust::load(&dir.path().join("trusted")).unwrap();
    let good = signed(&key, "acme");
    for i in 0..good.component.len() {
        let mut p = good.clone();
        p.component[i] ^= 1;
        let e = trust.verify(&p).unwrap_err();
        assert_eq!(e.code(), "package.digest_mismatch", "byte {i}");
    }
    let mut p = good.clone();
    p.manifest = MANIFEST.replace("1.2.0", "1.2.1").into_bytes();
    assert_eq!(
        trust.verify(&p).unwrap_err().code(),
        "package.digest_mismatch"
    );
    // A signature file edited to the new digest no longer verifies.
    let mut sig = idgard_signing::Signature::parse(good.signature.as_ref().unwrap()).unwrap();
    sig.digest = p.digest_hex();
    p.signature = Some(sig.to_file().into_bytes());
    let e = trust.verify(&p).unwrap_err();
    assert_eq!(e.code(), "package.bad_signature", "{e}");
    assert!(e.to_string().contains("acme"), "{e}");
}

#[test]
fn unsigned_or_unknown_publishers_are_refused_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let _ours = ed25519_publisher(dir.path(), "acme");
    let trust = Trust::load(&dir.path().join("trusted")).unwrap();
    let e = trust.verify(&package()).unwrap_err();
    assert_eq!(e.code(), "package.unsigned");

    let other = tempfile::tempdir().unwrap();
    let stranger = ed25519_publisher(other.path(), "mallory");
    let e = trust.verify(&signed(&stranger, "mallory")).unwrap_err();
    assert_eq!(e.code(), "package.untrusted_publisher");
    assert!(e.to_string().contains("mallory"), "{e}");

    // Another key signing under a trusted publisher's name.
    let e = trust.verify(&signed(&stranger, "acme")).unwrap_err();
    assert_eq!(e.code(), "package.bad_signature", "{e}");
}

#[test]
fn a_key_folder_with_something_else_than_a_public_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acme.pem"), "hello").unwrap();
    let e = Trust::load(dir.path()).unwrap_err();
    assert_eq!(e.code(), "package.bad_key");
    assert!(e.to_string().contains("acme.pem"), "{e}");
    // A missing folder trusts nobody.
    assert!(Trust::load(&dir.path().join("none")).unwrap().is_empty());
}

#[test]
fn the_package_folder_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_publisher(dir.path(), "acme");
    let p = signed(&key, "acme");
    let out = dir.path().join("pkg");
    std::fs::create_dir(&out).unwrap();
    p.write_dir(&out).unwrap();
    let back = Package::read_dir(&out).unwrap();
    assert_eq!(back.digest(), p.digest());
    assert_eq!(back.signature, p.signature);
}

/// A tar entry written by hand (the builder refuses the hostile ones).
fn entry(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

#[test]
fn hostile_bundles_are_refused() {
    let m = entry(
        "connector.toml",
        tar::EntryType::Regular,
        MANIFEST.as_bytes(),
    );
    let c = entry("c.wasm", tar::EntryType::Regular, b"wasm");
    // The well-formed one reads.
    assert!(bundle::read(&tar_of(&[m.clone(), c.clone()])).is_ok());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not a tar", b"hello".repeat(200)),
        ("no manifest", tar_of(std::slice::from_ref(&c))),
        ("no component", tar_of(std::slice::from_ref(&m))),
        ("twice", tar_of(&[m.clone(), c.clone(), c.clone()])),
        (
            "extra file",
            tar_of(&[
                m.clone(),
                c.clone(),
                entry("../../etc/cron.d/x", tar::EntryType::Regular, b"x"),
            ]),
        ),
        (
            "a link as the component",
            tar_of(&[m.clone(), entry("c.wasm", tar::EntryType::Symlink, b"")]),
        ),
        (
            "a folder",
            tar_of(&[m.clone(), entry("c.wasm", tar::EntryType::Directory, b"")]),
        ),
    ];
    for (what, bytes) in cases {
        let e = bundle::read(&bytes).unwrap_err();
        assert_eq!(e.code(), "package.malformed", "{what}: {e}");
    }
}
