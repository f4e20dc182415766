//! The idgard server's HTTP API, as types.
//!
//! Every body is JSON. Errors answer with an [`ApiError`] and a 4xx or 5xx status; the `code`
//! is stable, the `message` is for people. The endpoints, states and timeouts are described in
//! `docs/protocol.md`.

use serde::{Deserialize, Serialize};

pub use idgard_model::contract as model;
pub use idgard_model::errors::chain as error_chain;
pub use idgard_model::frames;

/// The version of this API, in every path: `/api/v1/...`.
pub const API: &str = "/api/v1";

/// How the server says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable and machine-readable: callers decide on it, never on the HTTP status.
    pub code: ErrorCode,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
}

/// The stable codes of the API's errors. The HTTP status follows from the code (one table in
/// the server); callers decide on the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or breaks a documented rule (400).
    Invalid,
    /// No credentials, or credentials that are not valid (401).
    Unauthorized,
    /// Valid credentials without the right to do this (403).
    Forbidden,
    /// No such thing, or not one the caller may see (404).
    NotFound,
    /// The caller's lease on a task is not the current one: nothing was recorded (409).
    StaleLease,
    /// The thing is not in a state that allows this (409).
    Conflict,
    /// The body or a count is over a limit (413).
    TooLarge,
    /// The body is not JSON where JSON is expected (415).
    UnsupportedMediaType,
    /// A finished upload is not valid connector output (422).
    BadUpload,
    /// Too many failed sign-ins from this address or for this agent: wait (429).
    RateLimited,
    /// The server cannot answer now (its database): try again later (503).
    Unavailable,
    /// A fault in the server; its log says more (500).
    Internal,
    /// A code this build does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::StaleLease => "stale_lease",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::BadUpload => "bad_upload",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// Whether the same request may succeed later without being changed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

mod agents;
mod enrol;
mod jobs;
mod launches;
mod orders;
mod overview;
mod packages;
mod repository;
mod tasks;

pub use agents::*;
pub use enrol::*;
pub use jobs::*;
pub use launches::*;
pub use orders::*;
pub use overview::*;
pub use packages::*;
pub use repository::*;
pub use tasks::*;
