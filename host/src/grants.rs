//! What a connection grants its connector, and what a run actually gets: the intersection of
//! what the manifest asks for and what the connection grants.

use crate::manifest::Manifest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Access to a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read files and list folders.
    ReadOnly,
    /// Also create, change and delete.
    ReadWrite,
}

/// What a connection grants (`[grants]` in its configuration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Folders by the name the manifest asks for them under.
    #[serde(default)]
    pub folders: BTreeMap<String, FolderGrant>,
    /// TCP endpoints, `host:port`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// HTTP base URLs (`https://host[:port]/path/`).
    #[serde(default)]
    pub http: Vec<String>,
    /// The database the host's SQL capability connects to (a URL; its password as a secret).
    #[serde(default)]
    pub sql: Option<String>,
}

/// A granted folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderGrant {
    /// Where it is on the agent's machine (relative paths: from the configuration file).
    pub path: PathBuf,
    /// The most access the connection allows.
    pub access: Access,
    /// Whether the connector may create symbolic links in it (read-write only). Off by default:
    /// a link left in a folder can redirect whoever opens the folder next.
    #[serde(default)]
    pub symlinks: bool,
    /// Whether this folder may overlap another connection's folder (the agent refuses
    /// overlapping grants otherwise: one connector could plant links or files in the other's).
    #[serde(default)]
    pub shared: bool,
}

/// A folder a run will see at `/grants/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedFolder {
    /// Name (and guest path component).
    pub name: String,
    /// Host path.
    pub path: PathBuf,
    /// The lesser of asked and granted.
    pub access: Access,
    /// Whether the connector may create symbolic links in it.
    pub symlinks: bool,
}

/// What a run gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    /// Folders asked for and granted.
    pub folders: Vec<GrantedFolder>,
    /// TCP endpoints, when the manifest asks for endpoints.
    pub endpoints: Vec<String>,
    /// HTTP base URLs, when the manifest asks for HTTP.
    pub http: Vec<String>,
    /// The SQL database, when the manifest asks for SQL.
    pub sql: Option<String>,
    /// Grants the manifest did not ask for (not given to the connector), for a warning.
    pub unused: Vec<String>,
}

/// Computes asked ∩ granted.
pub fn effective(manifest: &Manifest, grants: &Grants) -> Effective {
    let caps = &manifest.capabilities;
    let mut out = Effective::default();
    for asked in &caps.folders {
        if let Some(g) = grants.folders.get(&asked.name) {
            out.folders.push(GrantedFolder {
                name: asked.name.clone(),
                path: g.path.clone(),
                access: asked.access.min(g.access),
                symlinks: g.symlinks && asked.access.min(g.access) == Access::ReadWrite,
            });
        }
    }
    for name in grants.folders.keys() {
        if !caps.folders.iter().any(|f| &f.name == name) {
            out.unused.push(format!("folder `{name}`"));
        }
    }
    if caps.endpoints {
        out.endpoints = grants.endpoints.clone();
    } else if !grants.endpoints.is_empty() {
        out.unused.push("endpoints".into());
    }
    if caps.http {
        out.http = grants.http.clone();
    } else if !grants.http.is_empty() {
        out.unused.push("http".into());
    }
    if caps.sql {
        out.sql = grants.sql.clone();
    } else if grants.sql.is_some() {
        out.unused.push("sql".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(caps: &str) -> Manifest {
        toml::from_str(&format!(
            "name = \"t\"\nversion = \"1\"\ncontract = \"0.1.0\"\ncomponent = \"t.wasm\"\noperations = []\n{caps}"
        ))
        .unwrap()
    }

    #[test]
    fn only_what_is_asked_and_granted() {
        let m = manifest(
            "[[capabilities.folders]]\nname = \"src\"\naccess = \"read-write\"\n\
             [[capabilities.folders]]\nname = \"out\"\naccess = \"read-only\"\n\
             [[capabilities.folders]]\nname = \"never\"\naccess = \"read-only\"\n",
        );
        let g: Grants = toml::from_str(
            "endpoints = [\"db:5432\"]\n\
             [folders.src]\npath = \"/a\"\naccess = \"read-only\"\n\
             [folders.out]\npath = \"/b\"\naccess = \"read-write\"\n\
             [folders.extra]\npath = \"/c\"\naccess = \"read-write\"\n",
        )
        .unwrap();
        let e = effective(&m, &g);
        assert_eq!(
            e.folders,
            vec![
                GrantedFolder {
                    name: "src".into(),
                    path: "/a".into(),
                    access: Access::ReadOnly,
                    symlinks: false,
                },
                GrantedFolder {
                    name: "out".into(),
                    path: "/b".into(),
                    access: Access::ReadOnly,
                    symlinks: false,
                },
            ]
        );
        assert!(
            e.endpoints.is_empty(),
            "endpoints granted but not asked for"
        );
        assert_eq!(
            e.unused,
            vec!["folder `extra`".to_string(), "endpoints".to_string()]
        );
    }
}
