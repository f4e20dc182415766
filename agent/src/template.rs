//! `idgard-agent connector new`: a connector crate that builds to a component and passes its
//! own test as created.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Where the new crate takes the SDK from.
pub enum Sdk {
    /// The published crate, in the version this agent was built with.
    Published,
    /// A local checkout (developing the SDK and a connector together).
    Path(PathBuf),
}

impl Sdk {
    /// The dependency line of the new crate's `Cargo.toml`.
    fn dependency(&self) -> Result<String> {
        Ok(match self {
            Sdk::Published => format!("idgard-sdk = \"{}\"", idgard_sdk::VERSION),
            Sdk::Path(p) => {
                let p = std::fs::canonicalize(p)
                    .with_context(|| format!("idgard-sdk not found at {}", p.display()))?;
                if !p.join("Cargo.toml").is_file() {
                    bail!(
                        "{} holds no Cargo.toml: not the idgard-sdk crate",
                        p.display()
                    );
                }
                format!("idgard-sdk = {{ path = \"{}\" }}", p.display())
            }
        })
    }
}

const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/Cargo.toml.in")),
    (
        "connector.toml",
        include_str!("templates/connector.toml.in"),
    ),
    ("src/lib.rs", include_str!("templates/lib.rs.in")),
    (
        "fixtures/people.jsonl",
        include_str!("templates/people.jsonl"),
    ),
    (
        "example-connection.toml",
        include_str!("templates/example-connection.toml.in"),
    ),
    ("README.md", include_str!("templates/README.md.in")),
    (
        ".cargo/config.toml",
        include_str!("templates/cargo-config.toml.in"),
    ),
    (
        "rust-toolchain.toml",
        include_str!("templates/rust-toolchain.toml.in"),
    ),
    (".gitignore", "/target\n/work\n"),
];

pub fn create(name: &str, dir: Option<PathBuf>, sdk: &Sdk) -> Result<()> {
    if !idgard_host::manifest::valid_name(name)
        || name.contains('_')
        || name.starts_with(|c: char| c.is_ascii_digit())
    {
        bail!(
            "connector name `{name}`: use lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} already exists and is not empty", dir.display());
    }
    let sdk = sdk.dependency()?;
    let crate_name = name.replace('-', "_");
    for (path, text) in FILES {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{sdk_dependency}}", &sdk)
            .replace("{{contract}}", idgard_sdk::CONTRACT_VERSION);
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().expect("file in a folder"))?;
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    eprintln!("created connector `{name}` in {}", dir.display());
    eprintln!("next:");
    eprintln!(
        "  cd {} && cargo test                                  # unit tests, natively",
        dir.display()
    );
    eprintln!("  cargo build --target wasm32-wasip2 --release        # the component");
    eprintln!("  idgard-agent connector run . export --config example-connection.toml");
    Ok(())
}
