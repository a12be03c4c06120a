//! The HTTP error type: the only place a status code is chosen for a failure, and the
//! only type with `IntoResponse` for errors. Bodies have Trove's shape
//! `{"<faultName>": {"code": <status>, "message": "..."}}`.

use aggregates::fault::Fault;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::runtime::commands::CommandError;
use crate::store::StoreError;

/// A failed request, ready to be rendered in Trove's error format.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Trove's fault name, e.g. `badRequest`.
    pub fault: &'static str,
    pub message: String,
    /// Seconds, for 503 (and rate limits).
    pub retry_after: Option<u64>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, fault: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            fault,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `badRequest`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "badRequest", message)
    }

    /// 400 with the schema-violation prefix upstream uses.
    pub fn validation(message: impl AsRef<str>) -> ApiError {
        ApiError::bad_request(format!("Validation error: {}", message.as_ref()))
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `itemNotFound`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "itemNotFound", message)
    }

    /// 404 for an id the caller cannot see (missing, deleted or another project's).
    pub fn resource_not_found(id: &str) -> ApiError {
        ApiError::not_found(format!("Resource {id} cannot be found."))
    }

    /// 404 for a path no route matches.
    pub fn no_route() -> ApiError {
        ApiError::not_found("The resource could not be found.")
    }

    /// 413 `overLimit`.
    pub fn over_limit(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "overLimit", message)
    }

    /// 415 `badMediaType`.
    pub fn bad_media_type() -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "badMediaType",
            "Unsupported Content-Type",
        )
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 503 `serviceUnavailable` with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceUnavailable",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 500 `instanceFault`. The cause is logged here, once; the body stays generic.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "instanceFault",
            format!("Internal Server Error. Please keep this ID to help us figure out what went wrong: ({id})."),
        )
    }

    /// A domain refusal in its Trove fault class.
    pub fn from_fault(fault: Fault, message: String) -> ApiError {
        let status = StatusCode::from_u16(fault.status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, fault.name(), message)
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => ApiError::from_fault(d.fault(), d.to_string()),
            CommandError::Rejected(fault, message) => ApiError::from_fault(fault, message),
            CommandError::Conflict(stream) => ApiError::conflict(format!(
                "{stream} is being changed by too many requests at once; retry."
            )),
            CommandError::Store(s) => s.into(),
            CommandError::Codec(c) => ApiError::internal(&c),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "event store unavailable");
                ApiError::unavailable("The service is temporarily unavailable; retry later.")
            }
            StoreError::WrongExpectedVersion { .. } => {
                ApiError::conflict("The instance changed concurrently; retry.")
            }
            StoreError::StreamDeleted(s) => {
                ApiError::not_found(format!("Resource {s} cannot be found."))
            }
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ self.fault: { "code": self.status.as_u16(), "message": self.message } });
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
