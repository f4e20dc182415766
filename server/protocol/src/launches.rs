//! Runs launched from the browser through the agent that owns the job.
//!
//! A signed-in person asks the server to run a declared job; the server records a *launch* and
//! hands the owning agent a short-lived token for it on the agent's held poll. The token is a JWT
//! signed RS256 with the server's signing key, whose public half the agent pinned when it
//! enrolled. The agent verifies it, checks its own allow-list, logs who launched what, and
//! answers; only an accepted launch starts the run.

use serde::{Deserialize, Serialize};

/// The issuer of every launch token.
pub const LAUNCH_ISSUER: &str = "idgard-server";

/// The audience of a launch token: the one agent it is for.
pub fn launch_audience(agent_id: i64) -> String {
    format!("idgard-agent:{agent_id}:launch")
}

/// What a launch token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LaunchClaims {
    /// [`LAUNCH_ISSUER`].
    pub iss: String,
    /// [`launch_audience`] of the agent.
    pub aud: String,
    /// Who launched it (the signed-in person's user name).
    pub sub: String,
    /// The launch's id: a token is good for one answer.
    pub jti: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires, seconds since the epoch.
    pub exp: u64,
    /// The declared job.
    pub job: String,
    /// An incremental run rather than a complete one.
    pub incremental: bool,
    /// A dry run.
    pub dry_run: bool,
}

/// A launch handed to an agent on its poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LaunchOffer {
    /// The launch's id (also the token's `jti`).
    pub id: String,
    /// The signed token.
    pub token: String,
}

/// `POST /api/v1/agent/launches/{id}`: the agent's answer to a launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LaunchAnswer {
    /// Whether the agent runs it.
    pub accept: bool,
    /// Why not, when it refuses.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Where a launch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LaunchState {
    /// Recorded; the agent has not polled since.
    Waiting,
    /// Handed to the agent, which has not answered yet.
    Delivered,
    /// The agent accepted it and the run started.
    Accepted,
    /// The agent refused it (the reason says why).
    Refused,
    /// Its token expired before the agent answered: the agent did not pick it up.
    NotPickedUp,
}

impl LaunchState {
    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchState::Waiting => "waiting",
            LaunchState::Delivered => "delivered",
            LaunchState::Accepted => "accepted",
            LaunchState::Refused => "refused",
            LaunchState::NotPickedUp => "not_picked_up",
        }
    }
}

/// A launch as the UI and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LaunchView {
    /// Id.
    pub id: String,
    /// The agent it is for.
    pub agent: String,
    /// The declared job.
    pub job: String,
    /// Incremental.
    pub incremental: bool,
    /// Dry run.
    pub dry_run: bool,
    /// Who launched it.
    pub user: String,
    /// Where it stands.
    pub state: LaunchState,
    /// Recorded, ms since the epoch.
    pub created_ms: i64,
    /// Its token's expiry, ms since the epoch.
    pub expires_ms: i64,
    /// When the agent answered.
    pub answered_ms: Option<i64>,
    /// The agent's reason for refusing, or why the run could not start.
    pub reason: Option<String>,
    /// The run it started.
    pub job_id: Option<i64>,
}
