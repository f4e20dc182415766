//! Domain errors as HTTP answers: the one table from [`ErrorCode`] to status, and the one body
//! shape `{ "error": { "code", "message" } }`.

use crate::error::{Error, ErrorCode};
use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use idgard_protocol::{ApiError, ErrorBody};

/// The status that answers a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Invalid => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::StaleLease | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::BadUpload => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let mut response = (
            status,
            Json(ErrorBody {
                error: ApiError {
                    code: self.code,
                    message: self.message,
                },
            }),
        )
            .into_response();
        match self.code {
            ErrorCode::Unavailable => {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("2"));
            }
            ErrorCode::RateLimited => {
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("60"));
            }
            _ => {}
        }
        response
    }
}
