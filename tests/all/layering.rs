//! The crates depend on each other one way: the shared model at the bottom, the SDK (guests) and
//! the protocol (the API) on it, the host on the model only, the server on the model and the
//! protocol. The server never links the guest SDK or the host; the host never links the
//! protocol or the SDK; the vault (encryption at rest) links no other idgard crate, and package signing only the vault. Checked on the manifests' normal dependencies, transitively.

use std::collections::{BTreeMap, BTreeSet};

/// Each workspace crate's `idgard-*` normal dependencies.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = idgard_tests::root();
    let workspace: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let members = workspace["workspace"]["members"].as_array().unwrap();
    let mut graph = BTreeMap::new();
    for member in members {
        let manifest: toml::Table =
            std::fs::read_to_string(root.join(member.as_str().unwrap()).join("Cargo.toml"))
                .unwrap()
                .parse()
                .unwrap();
        let name = manifest["package"]["name"].as_str().unwrap().to_owned();
        let deps = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("idgard-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        graph.insert(name, deps);
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(c) = todo.pop() {
        for d in graph.get(&c).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn crates_depend_on_each_other_one_way() {
    let g = graph();
    assert!(g.contains_key("idgard-model"), "{g:?}");
    for (krate, forbidden) in [
        (
            "idgard-model",
            &[
                "idgard-sdk",
                "idgard-protocol",
                "idgard-host",
                "idgard-server",
            ][..],
        ),
        (
            "idgard-sdk",
            &["idgard-protocol", "idgard-host", "idgard-server"],
        ),
        (
            "idgard-protocol",
            &["idgard-sdk", "idgard-host", "idgard-server"],
        ),
        (
            "idgard-host",
            &["idgard-sdk", "idgard-protocol", "idgard-server"],
        ),
        ("idgard-server", &["idgard-sdk", "idgard-host"]),
        (
            "idgard-signing",
            &[
                "idgard-model",
                "idgard-sdk",
                "idgard-protocol",
                "idgard-host",
                "idgard-server",
            ][..],
        ),
        (
            "idgard-vault",
            &[
                "idgard-model",
                "idgard-sdk",
                "idgard-protocol",
                "idgard-host",
                "idgard-server",
            ],
        ),
    ] {
        let reached = closure(&g, krate);
        for f in forbidden {
            assert!(!reached.contains(*f), "{krate} depends on {f}: {reached:?}");
        }
    }
}
