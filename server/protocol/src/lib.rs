//! The idgard server's HTTP API, as types.
//!
//! Every body is JSON. Errors answer with an [`ApiError`] and a 4xx or 5xx status; the `code`
//! is stable, the `message` is for people. The endpoints, states and timeouts are described in
//! `docs/protocol.md`.

use serde::{Deserialize, Serialize};

pub use idgard_model::contract as model;
pub use idgard_model::frames;

/// The version of this API, in every path: `/api/v1/...`.
pub const API: &str = "/api/v1";

/// How the server says no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable: `bad_request`, `unauthorized`, `not_found`, `stale_lease`, ...
    pub code: String,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
}

/// The body of an error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

mod agents;
mod enrol;
mod jobs;
mod orders;
mod tasks;

pub use agents::*;
pub use enrol::*;
pub use jobs::*;
pub use orders::*;
pub use tasks::*;
