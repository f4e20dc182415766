//! The contract's data as the host, the agent and the server pass it around, with a stable
//! JSON form (kebab-case) for files, the command line and the API.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A level of a log line from a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed.
    Trace,
    /// For whoever debugs the connector.
    Debug,
    /// Normal progress.
    Info,
    /// Something to look at.
    Warn,
    /// Something failed.
    Error,
}

/// The kind of a connector's own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Wrong or incomplete settings.
    Configuration,
    /// The managed system is unreachable for now.
    Unavailable,
    /// Access refused.
    Denied,
    /// Unreadable data in the managed system.
    InvalidData,
    /// The cursor is stale; run a full export.
    InvalidCursor,
    /// Not supported by the connector.
    Unsupported,
    /// A bug or an unexpected state.
    Internal,
}

/// Who a loaded connector says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Operations, as named in manifests.
    pub operations: Vec<String>,
    /// Entity types.
    pub entity_types: Vec<String>,
}

/// An attribute in a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct AttributeSchema {
    /// Name.
    pub name: String,
    /// text, integer, boolean, binary, datetime or reference.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it holds several values.
    pub multi_valued: bool,
    /// Whether it is the key.
    pub key: bool,
    /// Whether every entry has it.
    pub required: bool,
    /// For a reference: the entity type its values are keys of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
}

/// An entity type in a schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntitySchema {
    /// Name.
    pub name: String,
    /// Attributes.
    pub attributes: Vec<AttributeSchema>,
}

/// An incremental export's position, opaque to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cursor {
    /// How `data` is encoded (the connector's name for it).
    pub format: String,
    /// The position, hex-encoded in JSON.
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
}

/// What an export returned, with the counts verified by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportSummary {
    /// Where the next incremental export starts.
    pub cursor: Option<Cursor>,
    /// Entries the host received and validated.
    pub entries: u64,
    /// Source records the connector could not read.
    pub rejected: u64,
    /// Bytes of entries received.
    pub bytes: u64,
    /// Batches received.
    pub batches: u64,
    /// The connector's largest linear memory during the run, in bytes.
    pub peak_memory: u64,
}

/// How to change one attribute in an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttributeChange {
    /// Attribute.
    pub name: String,
    /// add, remove or replace.
    pub op: ChangeOp,
    /// The values added, removed, or the new values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// The operation of an [`AttributeChange`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Add values.
    Add,
    /// Remove values.
    Remove,
    /// Replace all values.
    Replace,
}

/// What an order asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OrderKind {
    /// Create the entry with these attributes.
    Create {
        /// Attribute values.
        attributes: BTreeMap<String, Vec<String>>,
    },
    /// Change attributes.
    Update {
        /// The changes.
        changes: Vec<AttributeChange>,
    },
    /// Delete the entry.
    Delete,
    /// Enable the account.
    Enable,
    /// Disable the account.
    Disable,
    /// Set the password (never logged).
    SetPassword {
        /// The new password.
        password: String,
    },
}

impl OrderKind {
    /// The kind's name, as in JSON (`create`, `update`, ..., `set-password`).
    pub fn name(&self) -> &'static str {
        match self {
            OrderKind::Create { .. } => "create",
            OrderKind::Update { .. } => "update",
            OrderKind::Delete => "delete",
            OrderKind::Enable => "enable",
            OrderKind::Disable => "disable",
            OrderKind::SetPassword { .. } => "set-password",
        }
    }
}

/// One provisioning order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct Order {
    /// Unique id; results are matched on it.
    pub id: String,
    /// Entity type (`entity-type`; `type` is accepted too, the name the export's lines give it).
    #[serde(alias = "type")]
    pub entity_type: String,
    /// The entry's key.
    pub key: String,
    /// What to do.
    #[serde(flatten)]
    pub kind: OrderKind,
}

/// How an order ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", content = "message", rename_all = "kebab-case")]
pub enum OrderOutcome {
    /// Carried out.
    Done,
    /// Carried out; the managed system keyed the new entry itself, with this key.
    Created(String),
    /// Not carried out; the message says why.
    Failed(String),
    /// Not carried out now; offer it again later.
    RetryLater(String),
}

/// The result of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderResult {
    /// The order's id.
    pub id: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: OrderOutcome,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        hex::decode(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}
