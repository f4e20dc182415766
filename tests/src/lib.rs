//! Support for idgard's end-to-end tests and benchmarks: the packages of the connectors and test
//! guests (built by this crate's build script), the demo HR data generator, and a real slapd for
//! the directory tests and benchmarks.

pub mod demo;
pub mod haproxy;
pub mod mail;
pub mod netns;
pub mod samba;
pub mod scim;
pub mod slapd;

/// Package folders (manifest + component) of the connectors and test guests.
pub mod packages {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The workspace's root folder.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// The Python of the tests' virtual environment (`scripts/setup.sh` installs the SCIM and SMTP
/// test services there).
pub fn python() -> std::path::PathBuf {
    root().join("target/py-venv/bin/python")
}
