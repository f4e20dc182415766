//! Enrolment and the agent's tokens.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/enrol`: an agent trades its one-time enrolment token for credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The token `idgard-server agent add` printed.
    pub token: String,
}

/// The credentials an agent keeps; the server stores only a hash of the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolAnswer {
    /// The agent's id.
    pub agent_id: i64,
    /// The agent's name.
    pub agent_name: String,
    /// The client secret (shown once).
    pub client_secret: String,
    /// The server's token-signing public key (PEM), which the agent pins to check the launches
    /// it is handed.
    #[serde(default)]
    pub signing_key: Option<String>,
}

/// `POST /api/v1/agent/token`: credentials for a short-lived access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The agent's id.
    pub agent_id: i64,
    /// Its client secret.
    pub client_secret: String,
}

/// A signed access token (RS256 JWT).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenAnswer {
    /// The token, sent as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// `GET /api/v1/agent/signing-key`: the server's token-signing public key, for an agent that
/// enrolled before agents pinned it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SigningKeyAnswer {
    /// The public key, PEM (SubjectPublicKeyInfo).
    pub signing_key: String,
}
