//! `connector.toml`: what a connector package declares about itself.

use crate::error::Error;
use crate::grants::Access;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The operations a manifest may list.
pub const OPERATIONS: &[&str] = &[
    "describe",
    "test-connection",
    "schema",
    "export-full",
    "export-incremental",
    "fulfill",
];

/// A connector package's manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The connector's name (lower case, digits, `-`).
    pub name: String,
    /// The connector's version.
    pub version: String,
    /// The contract version the component implements (`idgard:connector@X.Y.Z`).
    pub contract: String,
    /// The component file, relative to the manifest.
    pub component: PathBuf,
    /// One line for people.
    #[serde(default)]
    pub description: String,
    /// Operations supported; checked against what the component's `describe` answers.
    pub operations: Vec<String>,
    /// What the connector asks to be granted.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// The settings a connection of this connector takes.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingSpec>,
}

/// What a connector asks for. Nothing is usable unless asked for here **and** granted by the
/// connection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Folders, by name, each mounted at `/grants/<name>` when granted.
    #[serde(default)]
    pub folders: Vec<FolderRequest>,
    /// Whether the connector opens TCP connections (to the endpoints the connection grants).
    #[serde(default)]
    pub endpoints: bool,
    /// Whether the connector makes HTTP requests (to the base URLs the connection grants).
    #[serde(default)]
    pub http: bool,
    /// Whether the connector runs SQL through the host (on the connection's database).
    #[serde(default)]
    pub sql: bool,
}

/// A folder the connector asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderRequest {
    /// The name the connection grants it under and the connector opens it by.
    pub name: String,
    /// The most access the connector needs.
    pub access: Access,
    /// What the folder is for.
    #[serde(default)]
    pub description: String,
}

/// The type of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// true or false.
    Boolean,
    /// A list of text values.
    List,
}

/// One setting a connection may give.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingSpec {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// Whether a connection must give it (unless it has a default).
    #[serde(default)]
    pub required: bool,
    /// The value when the connection gives none.
    pub default: Option<toml::Value>,
    /// What it means.
    #[serde(default)]
    pub description: String,
}

impl Capabilities {
    /// One line per capability asked for, for people (beside what the connection grants).
    pub fn summary(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .folders
            .iter()
            .map(|f| {
                let what = if f.description.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.description)
                };
                format!("folder `{}` ({}){what}", f.name, f.access.as_str())
            })
            .collect();
        for (asked, what) in [
            (self.endpoints, "TCP endpoints"),
            (self.http, "HTTP"),
            (self.sql, "SQL"),
        ] {
            if asked {
                out.push(what.to_owned());
            }
        }
        out
    }
}

impl Manifest {
    /// Whether the connector can export only what changed since a cursor.
    pub fn exports_incrementally(&self) -> bool {
        self.operations.iter().any(|o| o == "export-incremental")
    }

    /// Why an incremental export cannot be asked of it, when it cannot.
    pub fn refuse_incremental(&self) -> Option<String> {
        (!self.exports_incrementally()).then(|| {
            format!(
                "connector `{}` {} has no incremental export (its manifest declares: {}): \
                 run a full export",
                self.name,
                self.version,
                self.operations.join(", ")
            )
        })
    }

    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Reads a manifest's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, Error> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| Error::Manifest {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        manifest.check().map_err(|message| Error::Manifest {
            path: path.to_owned(),
            message,
        })?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "name `{}`: use lower-case letters, digits and `-`",
                self.name
            ));
        }
        for op in &self.operations {
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(format!(
                    "unknown operation `{op}` (known: {})",
                    OPERATIONS.join(", ")
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.capabilities.folders {
            if !valid_name(&f.name) {
                return Err(format!(
                    "folder name `{}`: use lower-case letters, digits and `-`",
                    f.name
                ));
            }
            if !seen.insert(&f.name) {
                return Err(format!("folder `{}` is asked for twice", f.name));
            }
        }
        for (name, spec) in &self.settings {
            if let Some(d) = &spec.default {
                check_type(name, spec.kind, d)?;
            }
        }
        Ok(())
    }

    /// Whether the manifest lists an operation.
    pub fn supports(&self, operation: &str) -> bool {
        self.operations.iter().any(|o| o == operation)
    }

    /// Checks a connection's settings against the manifest and returns them as the JSON object
    /// handed to the connector, defaults filled in. Unknown settings are errors: a typo must not
    /// silently fall back to a default.
    pub fn resolve_settings(&self, given: &toml::Table) -> Result<serde_json::Value, String> {
        let mut out = serde_json::Map::new();
        for key in given.keys() {
            if !self.settings.contains_key(key) {
                let known: Vec<&str> = self.settings.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown setting `{key}` (this connector knows: {})",
                    known.join(", ")
                ));
            }
        }
        for (name, spec) in &self.settings {
            let value = match given.get(name).or(spec.default.as_ref()) {
                Some(v) => v,
                None if spec.required => {
                    return Err(format!(
                        "missing required setting `{name}`: {}",
                        spec.description
                    ));
                }
                None => continue,
            };
            check_type(name, spec.kind, value)?;
            let json = serde_json::to_value(value).map_err(|e| format!("setting `{name}`: {e}"))?;
            out.insert(name.clone(), json);
        }
        Ok(serde_json::Value::Object(out))
    }
}

fn check_type(name: &str, kind: SettingType, value: &toml::Value) -> Result<(), String> {
    let ok = match (kind, value) {
        (SettingType::String, toml::Value::String(_)) => true,
        (SettingType::Integer, toml::Value::Integer(_)) => true,
        (SettingType::Boolean, toml::Value::Boolean(_)) => true,
        (SettingType::List, toml::Value::Array(a)) => a.iter().all(|v| v.is_str()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "setting `{name}` must be {}, found {}",
            kind_name(kind),
            value.type_str()
        ))
    }
}

fn kind_name(kind: SettingType) -> &'static str {
    match kind {
        SettingType::String => "a string",
        SettingType::Integer => "an integer",
        SettingType::Boolean => "a boolean",
        SettingType::List => "a list of strings",
    }
}

/// Entity types a connector may declare: letters, digits, `-`, `_` and `.`, not starting with
/// `.`, at most 64 bytes. They name tables, files and log fields downstream.
pub fn valid_entity_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub use idgard_model::names::valid_name;
