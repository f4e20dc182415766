//! The domain's one error type: a stable [`ErrorCode`] and a message for people. It knows
//! nothing of HTTP; `http::error` maps codes to statuses in one place. Internal details
//! (database errors, faults) are logged where they happen, never sent.

pub use idgard_protocol::ErrorCode;

/// Why the domain said no.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// Stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

/// Results of the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    /// The request is malformed or breaks a rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
    /// Missing or wrong credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    /// No such thing (or not one the caller may see).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, what)
    }
    /// The caller's lease is not the current one.
    pub fn stale(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::StaleLease, message)
    }
    /// The thing is not in a state that allows this.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    /// Too many failed sign-ins.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RateLimited, message)
    }
    /// Over a limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }
    /// A finished upload that is not valid connector output.
    pub fn bad_upload(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUpload, message)
    }
    /// Whether the caller's request itself is at fault (not the server, not the moment).
    pub fn is_caller_fault(&self) -> bool {
        !self.code.is_transient()
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!("database error: {e}");
        Self::new(
            ErrorCode::Unavailable,
            "the database did not answer; try again",
        )
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!("internal error: {e:#}");
        Self::new(ErrorCode::Internal, "internal error (see the server's log)")
    }
}
