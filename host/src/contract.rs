//! Reads what a component declares before anything of it runs.

use crate::error::Error;
use std::path::Path;
use wasmparser::{Encoding, Parser, Payload};

/// The custom section in which the SDK embeds the contract version.
pub const CONTRACT_SECTION: &str = "idgard:contract";

/// The contract versions this host speaks: `0.1.x` and `0.2.x` (frozen, linked by conversion)
/// and `0.3.x`.
pub const SUPPORTED: &str = "0.1.x, 0.2.x, 0.3.x";

/// The minor version of a `0.N.patch` contract version this host speaks.
pub fn minor(version: &str) -> Option<u32> {
    let mut parts = version.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("0"), Some(m @ ("1" | "2" | "3")), Some(p), None) if p.parse::<u32>().is_ok() => {
            m.parse().ok()
        }
        _ => None,
    }
}

/// Whether a contract version is one this host speaks.
pub fn supported(version: &str) -> bool {
    minor(version).is_some()
}

/// Checks that `bytes` is a WebAssembly component and returns the contract version it embeds.
pub fn embedded_version(path: &Path, bytes: &[u8]) -> Result<String, Error> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(Error::component(
            path,
            "not a WebAssembly file (no `\\0asm` header)",
        ));
    }
    let mut version = None;
    let mut first = true;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload =
            payload.map_err(|e| Error::component(path, format!("malformed WebAssembly: {e}")))?;
        match payload {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } if first => {
                return Err(Error::component(
                    path,
                    "is a core WebAssembly module, not a component: build the connector with \
                     `cargo build --target wasm32-wasip2`",
                ));
            }
            Payload::CustomSection(s) if s.name() == CONTRACT_SECTION => {
                let v = std::str::from_utf8(s.data())
                    .map_err(|_| Error::component(path, "contract version is not UTF-8"))?;
                version = Some(v.to_owned());
            }
            _ => {}
        }
        first = false;
    }
    version.ok_or_else(|| {
        Error::component(
            path,
            format!(
                "declares no contract version (custom section `{CONTRACT_SECTION}`): build it with \
                 idgard-sdk's `export!` macro"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(supported("0.1.0"));
        assert!(supported("0.1.7"));
        assert!(supported("0.2.0"));
        assert!(supported("0.3.1"));
        assert_eq!(minor("0.1.0"), Some(1));
        assert_eq!(minor("0.3.0"), Some(3));
        assert!(!supported("0.4.0"));
        assert!(!supported("1.1.0"));
        assert!(!supported("0.1"));
        assert!(!supported("0.1.x"));
    }

    #[test]
    fn reads_the_section_of_a_nested_module() {
        let wasm =
            wat::parse_str(r#"(component (core module (@custom "idgard:contract" "0.9.3")))"#)
                .unwrap();
        assert_eq!(
            embedded_version(Path::new("c.wasm"), &wasm).unwrap(),
            "0.9.3"
        );
    }

    #[test]
    fn refuses_modules_garbage_and_missing_sections() {
        let p = Path::new("x.wasm");
        let module = wat::parse_str("(module)").unwrap();
        assert!(
            embedded_version(p, &module)
                .unwrap_err()
                .to_string()
                .contains("not a component")
        );
        assert!(
            embedded_version(p, b"hello world")
                .unwrap_err()
                .to_string()
                .contains("not a WebAssembly file")
        );
        let mut truncated = wat::parse_str("(component (core module (func)))").unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(
            embedded_version(p, &truncated)
                .unwrap_err()
                .to_string()
                .contains("malformed")
        );
        let bare = wat::parse_str("(component)").unwrap();
        assert!(
            embedded_version(p, &bare)
                .unwrap_err()
                .to_string()
                .contains("declares no contract version")
        );
    }
}
