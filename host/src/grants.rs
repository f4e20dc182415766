//! What a connection grants its connector, and what a run actually gets: the intersection of
//! what the manifest asks for and what the connection grants.

pub use crate::http::grant::{HttpAuth, HttpGrant};
use crate::manifest::Manifest;
pub use crate::sql::grant::{DatabaseGrant, DatabaseTls};
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

impl Access {
    /// As the configuration writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
    }
}

impl Grants {
    /// One line per grant, for people (the agent reports them to the server's connectors page).
    /// Secrets never appear: a database is named by its scheme only.
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .folders
            .iter()
            .map(|(name, f)| {
                format!(
                    "folder `{name}`: {} ({})",
                    f.path.display(),
                    f.access.as_str()
                )
            })
            .collect();
        out.extend(self.endpoints.iter().map(|(name, e)| {
            let tls = match e.tls {
                TlsMode::None => "no TLS",
                TlsMode::Direct => "TLS",
                TlsMode::StartTls => "StartTLS",
            };
            format!("endpoint `{name}`: {} ({tls})", e.address)
        }));
        out.extend(self.http.iter().map(|(name, h)| h.summary(name)));
        out.extend(self.databases.iter().map(|(name, d)| {
            format!(
                "database `{name}`: {} ({}, {})",
                d.shown_url(),
                d.driver().map_or("unknown", |d| d.scheme()),
                d.access.as_str()
            )
        }));
        out
    }
}

impl Grants {
    /// Takes out of `secrets` every secret a grant names (database passwords, HTTP credentials),
    /// whether or not the connector asked for what the grant gives: the host uses them, the
    /// connector never reads them (`secret()` answers none).
    pub(crate) fn withhold(
        &self,
        secrets: &mut BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let passwords = self
            .databases
            .values()
            .filter_map(|g| g.password.as_deref());
        let credentials = self
            .http
            .values()
            .filter_map(|g| g.auth.as_ref())
            .flat_map(|a| a.secrets());
        passwords
            .chain(credentials)
            .filter_map(|name| secrets.remove(name).map(|v| (name.to_owned(), v)))
            .collect()
    }
}

/// What a connection grants (`[grants]` in its configuration).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Folders by the name the manifest asks for them under.
    #[serde(default)]
    pub folders: BTreeMap<String, FolderGrant>,
    /// TCP endpoints by the name the connector asks for them under.
    #[serde(default)]
    pub endpoints: BTreeMap<String, EndpointGrant>,
    /// HTTP services by name: base URLs, credentials, trust.
    #[serde(default)]
    pub http: BTreeMap<String, HttpGrant>,
    /// Databases the host's SQL capability connects to, by the name the connector uses.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseGrant>,
}

/// How a connector must protect what it sends to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP: only when the connection writes `tls = "none"`.
    None,
    /// TLS from the first byte (LDAPS).
    Direct,
    /// Plain first, then upgraded by the protocol (LDAP StartTLS).
    StartTls,
}

/// A granted TCP endpoint (`[grants.endpoints.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointGrant {
    /// `host:port`; the host resolves the name, the connector gets the addresses.
    pub address: String,
    /// TLS, or not: there is no default, the connection says which.
    pub tls: TlsMode,
    /// The name the server's certificate must carry; the address's host by default.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Certificate authorities to trust, a PEM file (relative: from the connection file).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// SHA-256 of the server's public key (SubjectPublicKeyInfo), hex: any one must match.
    #[serde(default)]
    pub pins: Vec<String>,
    /// Seconds to wait for a connection to open.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u32,
    /// Seconds to wait for one read or write.
    #[serde(default = "default_io_timeout")]
    pub io_timeout_s: u32,
}

fn default_connect_timeout() -> u32 {
    10
}

fn default_io_timeout() -> u32 {
    120
}

impl EndpointGrant {
    /// What is wrong with the grant, said for the connection file's reader.
    pub fn check(&self, name: &str) -> Result<(), String> {
        let bad = |m: String| Err(format!("endpoint `{name}`: {m}"));
        if !crate::manifest::valid_name(name) {
            return bad("name: use lower-case letters, digits, `-` and `_`".into());
        }
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return bad(format!("address `{}` is not `host:port`", self.address)),
        }
        if let Some(p) = self.pins.iter().find(|p| {
            p.len() != 64
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }) {
            return bad(format!(
                "pin `{p}` is not a SHA-256 in lower-case hex (64 characters)"
            ));
        }
        match self.tls {
            TlsMode::None if self.ca.is_some() || !self.pins.is_empty() => {
                bad("`tls = \"none\"` with a CA or pins: choose `direct` or `start-tls`".into())
            }
            TlsMode::Direct | TlsMode::StartTls if self.ca.is_none() && self.pins.is_empty() => {
                bad(
                    "TLS needs something to trust: `ca` (a PEM file) or `pins` (SHA-256 of the \
                 server's public key)"
                        .into(),
                )
            }
            _ if self.connect_timeout_s == 0 || self.io_timeout_s == 0 => {
                bad("timeouts must be at least one second".into())
            }
            _ => Ok(()),
        }
    }

    /// The host part of the address (brackets of an IPv6 literal removed).
    pub fn host(&self) -> &str {
        let host = self.address.rsplit_once(':').map_or("", |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
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
    pub endpoints: BTreeMap<String, EndpointGrant>,
    /// HTTP services, when the manifest asks for HTTP.
    pub http: BTreeMap<String, HttpGrant>,
    /// Databases, when the manifest asks for SQL.
    pub databases: BTreeMap<String, DatabaseGrant>,
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
        out.databases = grants.databases.clone();
    } else if !grants.databases.is_empty() {
        out.unused.push("databases".into());
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
            "[endpoints.db]\naddress = \"db:5432\"\ntls = \"none\"\n\
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

    fn endpoint(toml: &str) -> Result<(), String> {
        let g: EndpointGrant = toml::from_str(toml).map_err(|e| e.to_string())?;
        g.check("ldap")
    }

    #[test]
    fn endpoints_say_how_they_are_protected() {
        assert!(endpoint("address = \"ldap:636\"\ntls = \"direct\"\nca = \"ca.pem\"").is_ok());
        assert!(endpoint("address = \"ldap:389\"\ntls = \"none\"").is_ok());
        let pin = "a".repeat(64);
        assert!(
            endpoint(&format!(
                "address = \"[::1]:389\"\ntls = \"start-tls\"\npins = [\"{pin}\"]"
            ))
            .is_ok()
        );
        let no_mode = endpoint("address = \"ldap:636\"").unwrap_err();
        assert!(no_mode.contains("tls"), "{no_mode}");
        let nothing_trusted = endpoint("address = \"ldap:636\"\ntls = \"direct\"").unwrap_err();
        assert!(
            nothing_trusted.contains("something to trust"),
            "{nothing_trusted}"
        );
        let bad_pin =
            endpoint("address = \"ldap:636\"\ntls = \"direct\"\npins = [\"AB\"]").unwrap_err();
        assert!(bad_pin.contains("pin"), "{bad_pin}");
        let no_port = endpoint("address = \"ldap\"\ntls = \"none\"").unwrap_err();
        assert!(no_port.contains("host:port"), "{no_port}");
        let g: EndpointGrant = toml::from_str("address = \"[::1]:389\"\ntls = \"none\"").unwrap();
        assert_eq!(g.host(), "::1");
    }

    #[test]
    fn summaries_say_what_is_asked_and_granted_without_secrets() {
        let m = manifest(
            "[capabilities]\nendpoints = true\n\
             [[capabilities.folders]]\nname = \"src\"\naccess = \"read-only\"\ndescription = \"the HR files\"\n",
        );
        assert_eq!(
            m.capabilities.summary(),
            ["folder `src` (read-only): the HR files", "TCP endpoints"]
        );
        let g: Grants = toml::from_str(
            "[http.app]\nurl = \"https://app/api/\"\nauth = { bearer = \"secret\" }\n\
             [databases.hr]\nurl = \"postgres://idm@db/hr\"\npassword = \"secret\"\ntls = \"none\"\naccess = \"read-only\"\n\
             [endpoints.ldap]\naddress = \"dc:636\"\ntls = \"direct\"\npins = [\"00\"]\n\
             [folders.src]\npath = \"/data/hr\"\naccess = \"read-only\"\n",
        )
        .unwrap();
        let lines = g.summary();
        assert_eq!(
            lines,
            [
                "folder `src`: /data/hr (read-only)",
                "endpoint `ldap`: dc:636 (TLS)",
                "HTTP `app`: https://app/api/ (bearer token)",
                "database `hr`: db/hr (postgres, read-only)"
            ]
        );
        assert!(lines.iter().all(|l| !l.contains("secret")));
    }

    #[test]
    fn secrets_a_grant_names_are_withheld_from_the_connector() {
        let g: Grants = toml::from_str(
            "[databases.hr]\nurl = \"postgres://idgard@db/hr\"\npassword = \"hr_db\"\ntls = \"none\"\n\
             access = \"read-only\"\n[http.app]\nurl = \"https://app/\"\nauth = { bearer = \"app_token\" }\n",
        )
        .unwrap();
        let mut secrets: BTreeMap<String, String> = [
            ("hr_db".to_owned(), "hunter2".to_owned()),
            ("app_token".to_owned(), "t0ken".to_owned()),
            ("other".to_owned(), "x".to_owned()),
        ]
        .into();
        let withheld = g.withhold(&mut secrets);
        assert_eq!(withheld.get("hr_db").map(String::as_str), Some("hunter2"));
        assert_eq!(withheld.get("app_token").map(String::as_str), Some("t0ken"));
        assert_eq!(secrets.keys().collect::<Vec<_>>(), ["other"]);
    }
}
