//! Agents: their reports, hello, timings.

use serde::{Deserialize, Serialize};

/// A connection an agent owns, as it reports it when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConnectionReport {
    /// The connection's name.
    pub name: String,
    /// Its connector's name.
    pub connector: String,
    /// The connector's version.
    pub version: String,
    /// The operations the connector supports.
    pub operations: Vec<String>,
    /// The contract version the connector implements.
    #[serde(default)]
    pub contract: String,
    /// What the connector's manifest asks for, one line each.
    #[serde(default)]
    pub asks: Vec<String>,
    /// What the connection grants it, one line each (no secrets).
    #[serde(default)]
    pub grants: Vec<String>,
    /// The package digest of its connector (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Who signed that package, when the agent requires signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
}

/// `POST /api/v1/agent/hello`: sent when an agent starts and when its connections change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Hello {
    /// The agent's version.
    pub version: String,
    /// Every connection the agent serves now.
    pub connections: Vec<ConnectionReport>,
    /// True on the first hello after the agent process started: tasks it held before are no
    /// longer running and go back to the queue at once (or are marked lost).
    #[serde(default)]
    pub restarted: bool,
    /// Connection files the agent refused, with why (at most [`REFUSED_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedConnection>,
    /// The connectors its connection files name, loaded or not: the server offers the
    /// packages it holds for them (at most [`REFUSED_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub wants: Vec<String>,
    /// Packages the server offered that the agent would not load, with why (at most
    /// [`REFUSED_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub refused_packages: Vec<crate::RefusedPackage>,
}

/// Most refused connection files a hello may list.
pub const REFUSED_MAX: usize = 100;
/// Longest reason kept for a refused connection file, in bytes.
pub const REASON_MAX: usize = 1000;

/// A connection file an agent refused (bad TOML, unknown connector, settings that do not fit,
/// overlapping grants); it serves the file's previous version, if it had one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefusedConnection {
    /// The file's name in the agent's connections folder.
    pub file: String,
    /// Why, as the agent's log says it.
    pub reason: String,
}

/// The server's timings and limits, answered to a hello.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Timings {
    /// The largest upload chunk the server takes, in bytes.
    pub chunk_bytes: u64,
    /// How long a lease lasts without a heartbeat, in ms.
    pub lease_ms: u64,
    /// How often to send heartbeats, in ms.
    pub heartbeat_ms: u64,
    /// The longest the server holds a poll, in ms.
    pub poll_wait_ms: u64,
    /// How long a claimed task waits for its first heartbeat (its acknowledgement), in ms.
    pub ack_ms: u64,
}

/// An agent as administrators see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Whether it has enrolled.
    pub enrolled: bool,
    /// When it last polled or reported, ms since the epoch.
    pub last_seen_ms: Option<i64>,
    /// Its connections, as last reported.
    pub connections: Vec<ConnectionReport>,
    /// Connection files it refused, as last reported.
    #[serde(default)]
    pub refused: Vec<RefusedConnection>,
    /// The version it last reported.
    #[serde(default)]
    pub version: Option<String>,
    /// Packages offered to it that it refused, as last reported.
    #[serde(default)]
    pub refused_packages: Vec<crate::RefusedPackage>,
    /// Tasks it holds now (claimed or running).
    #[serde(default)]
    pub running: u64,
}

/// `POST /api/v1/agents`: create an agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// Its name: 1 to 64 lower-case letters, digits, `-` and `_`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9_-]{1,64}$"))]
    pub name: String,
}

/// A new agent and its one-time enrolment token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewAgentAnswer {
    /// The agent.
    pub agent: AgentView,
    /// The enrolment token (shown once; valid until `expires_ms`).
    pub enrolment_token: String,
    /// When the token expires, ms since the epoch.
    pub expires_ms: i64,
}

/// `POST /api/v1/admin-tokens`: a new administrator token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAdminToken {
    /// For people: whose or what for (`ci`, `alice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Seconds until it stops working (absent: until revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_s: Option<u64>,
}

/// An administrator token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminTokenView {
    /// Its id: the first hex digits of its SHA-256, what `DELETE /api/v1/admin-tokens/{id}` takes.
    pub id: String,
    /// Its name, if it was given one.
    pub name: Option<String>,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// When it stops working (absent: until revoked).
    pub expires_ms: Option<i64>,
}

/// The answer to [`NewAdminToken`]: the token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewAdminTokenAnswer {
    /// The token.
    pub token: String,
    /// How it is listed.
    #[serde(flatten)]
    pub view: AdminTokenView,
}
