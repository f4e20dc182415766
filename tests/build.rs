//! Builds the first-party connectors and the test guests to components once, assembles each into
//! a package folder (manifest + component), and exposes the folders as constants.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (cargo package, package folder under `connectors/` or `tests/guests/`, component file)
const GUESTS: &[(&str, &str, &str)] = &[
    (
        "idgard-connector-csv",
        "connectors/csv",
        "idgard_connector_csv.wasm",
    ),
    (
        "idgard-connector-ldap",
        "connectors/ldap",
        "idgard_connector_ldap.wasm",
    ),
    (
        "idgard-connector-sql",
        "connectors/sql",
        "idgard_connector_sql.wasm",
    ),
    (
        "idgard-connector-scim",
        "connectors/scim",
        "idgard_connector_scim.wasm",
    ),
    (
        "idgard-guest-misbehave",
        "tests/guests/misbehave",
        "idgard_guest_misbehave.wasm",
    ),
    (
        "idgard-guest-hostile",
        "tests/guests/hostile",
        "idgard_guest_hostile.wasm",
    ),
    (
        "idgard-guest-sqlprobe",
        "tests/guests/sqlprobe",
        "idgard_guest_sqlprobe.wasm",
    ),
    (
        "idgard-guest-httpprobe",
        "tests/guests/httpprobe",
        "idgard_guest_httpprobe.wasm",
    ),
    (
        "idgard-guest-stall",
        "tests/guests/stall",
        "idgard_guest_stall.wasm",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    for watched in [
        "sdk/src",
        "sdk/Cargo.toml",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "connectors",
        "tests/guests",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // The outer build's flags and wrappers are for the host target, not for guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the guests");
    assert!(
        status.success(),
        "building the connectors and test guests for wasm32-wasip2 failed"
    );

    let packages = target_dir.join("packages");
    let mut consts = String::new();
    for (package, src, wasm) in GUESTS {
        let name = Path::new(src).file_name().unwrap().to_str().unwrap();
        let dir = packages.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            root.join(src).join("connector.toml"),
            dir.join("connector.toml"),
        )
        .unwrap();
        std::fs::copy(
            target_dir.join("wasm32-wasip2/wasm").join(wasm),
            dir.join(wasm),
        )
        .unwrap();
        let konst = package
            .trim_start_matches("idgard-")
            .replace('-', "_")
            .to_uppercase();
        consts.push_str(&format!(
            "/// The `{package}` package folder.\npub const {konst}: &str = {:?};\n",
            dir.display().to_string()
        ));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(out, consts).unwrap();
}
