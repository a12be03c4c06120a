//! The HTTP error type: the only place a status code is chosen for a failure, and the
//! only type with `IntoResponse` for errors. Bodies have Trove's shape
//! `{"<faultName>": {"code": <status>, "message": "..."}}`.
//!
//! Turning an error into a response has no side effect: a 5xx carries what is to be
//! logged as a response extension ([`ServerError`]), and [`log_server_error`], called
//! by the per-request middleware inside the request's span, logs it once (the pattern
//! of axum's `examples/error-handling`).

use aggregates::fault::Fault;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use uuid::Uuid;

use crate::runtime::commands::CommandError;
use crate::runtime::unreadable::UnreadableEvent;
use crate::secrets::VaultError;
use crate::store::StoreError;

/// A failed request, ready to be rendered in Trove's error format. Each variant's
/// `Display` is the body's message (except [`ApiError::Internal`], whose body is generic).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 400 `badRequest`: a parameter or value the server refuses.
    #[error("{0}")]
    BadRequest(String),
    /// 400 `badRequest` for a body that breaks upstream's JSON schema; the message is
    /// `<path> <reason>`, written after upstream's prefix.
    #[error("Validation error: {0}")]
    Validation(String),
    /// 401 `unauthorized`: no or unknown token, or an admin-only operation.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: another project's URL, or the policy forbids it.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `itemNotFound`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `conflict`: a concurrent change; the client may retry.
    #[error("{0}")]
    Conflict(String),
    /// 413 `overLimit`: the request body is too large.
    #[error("{0}")]
    OverLimit(String),
    /// 408 `requestTimeout`: the request body did not arrive in time. The answer closes
    /// the connection (`Connection: close`): the rest of the body may still be coming.
    #[error("{0}")]
    RequestTimeout(String),
    /// 415 `badMediaType`: a Content-Type other than JSON.
    #[error("Unsupported Content-Type")]
    BadMediaType,
    /// 503 `serviceUnavailable` with `Retry-After`; `cause` is logged, never shown.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: u64,
        cause: String,
    },
    /// 500 `instanceFault`: the cause is logged with an error id; the body shows only
    /// the id.
    #[error("internal error: {0}")]
    Internal(String),
    /// 500 `instanceFault` that names what is damaged: an event of the log that does
    /// not decode (the message says where, and what to run); the detail is logged.
    #[error("{message}")]
    Damaged { message: String, cause: String },
    /// A refusal of the domain, in the fault class the domain gave it.
    #[error("{message}")]
    Domain { fault: Fault, message: String },
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// The HTTP status of each failure: the one place statuses are chosen.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::OverLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::BadMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::Damaged { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            // Upstream's exception classes (spec `instances-api.md` §4.2).
            ApiError::Domain { fault, .. } => match fault {
                Fault::BadRequest => StatusCode::BAD_REQUEST,
                Fault::Unauthorized => StatusCode::UNAUTHORIZED,
                Fault::Forbidden => StatusCode::FORBIDDEN,
                Fault::ItemNotFound => StatusCode::NOT_FOUND,
                Fault::Conflict => StatusCode::CONFLICT,
                Fault::OverLimit => StatusCode::PAYLOAD_TOO_LARGE,
                Fault::UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
                Fault::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            },
        }
    }

    /// Trove's fault name, the key of the error body.
    pub fn fault_name(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation(_) => "badRequest",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "itemNotFound",
            ApiError::Conflict(_) => "conflict",
            ApiError::OverLimit(_) => "overLimit",
            ApiError::RequestTimeout(_) => "requestTimeout",
            ApiError::BadMediaType => "badMediaType",
            ApiError::Unavailable { .. } => "serviceUnavailable",
            ApiError::Internal(_) | ApiError::Damaged { .. } => "instanceFault",
            ApiError::Domain { fault, .. } => fault.name(),
        }
    }

    /// 404 for an id the caller cannot see (missing, deleted or another project's).
    pub fn resource_not_found(id: &str) -> ApiError {
        ApiError::NotFound(format!("Resource {id} cannot be found."))
    }

    /// 404 for a path no route matches.
    pub fn no_route() -> ApiError {
        ApiError::NotFound("The resource could not be found.".into())
    }

    /// 500 naming an unreadable event of the log.
    pub fn damaged(event: &UnreadableEvent) -> ApiError {
        ApiError::Damaged {
            message: event.client_message(),
            cause: event.to_string(),
        }
    }

    /// 500 for any cause that must not reach the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> ApiError {
        ApiError::Internal(cause.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => ApiError::Domain {
                fault: d.fault(),
                message: d.to_string(),
            },
            CommandError::Rejected(fault, message) => ApiError::Domain { fault, message },
            CommandError::Conflict(stream) => ApiError::Conflict(format!(
                "{stream} is being changed by too many requests at once; retry."
            )),
            CommandError::Store(s) => s.into(),
            CommandError::Codec(c) => ApiError::internal(&c),
            CommandError::Unreadable(u) => ApiError::damaged(&u),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => ApiError::Unavailable {
                message: "The service is temporarily unavailable; retry later.".into(),
                retry_after: 1,
                cause: e.to_string(),
            },
            // The disk is full: nothing was written, reads go on, writes resume by
            // themselves once an operator frees space (docs/operations.md).
            StoreError::Full(_) => ApiError::Unavailable {
                message: "The service cannot store changes right now; retry later.".into(),
                retry_after: 5,
                cause: e.to_string(),
            },
            StoreError::WrongExpectedVersion { .. } => {
                ApiError::Conflict("The instance changed concurrently; retry.".into())
            }
            StoreError::StreamDeleted(s) => ApiError::resource_not_found(&s),
            // Nothing was written; the request's data does not fit one append of the
            // store (EventStoreDB: 1 MiB by default).
            StoreError::TooLarge(_) => ApiError::BadRequest(
                "The change is too large for the event store; send less data at once.".into(),
            ),
            // An operator's problem (credentials, ACLs), not the caller's: 503 as for an
            // unreachable store, the cause logged.
            StoreError::Denied(_) => ApiError::Unavailable {
                message: "The service is temporarily unavailable; retry later.".into(),
                retry_after: 1,
                cause: e.to_string(),
            },
            other => ApiError::internal(&other),
        }
    }
}

impl From<VaultError> for ApiError {
    /// A full disk is 503 as for the event store (nothing was stored; retry once space
    /// is freed); any other vault failure is a 500.
    fn from(e: VaultError) -> Self {
        match &e {
            VaultError::Io(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DiskFull =>
            {
                StoreError::Full(e.to_string()).into()
            }
            _ => ApiError::internal(&e),
        }
    }
}

/// What a 5xx response carries for [`log_server_error`] (a response extension).
#[derive(Clone, Debug)]
pub struct ServerError {
    status: StatusCode,
    /// The id shown in a 500's body.
    error_id: Option<Uuid>,
    /// What went wrong, for the log only.
    cause: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let fault = self.fault_name();
        let (message, error_id) = match &self {
            ApiError::Internal(_) => {
                let id = Uuid::new_v4();
                let message = format!(
                    "Internal Server Error. Please keep this ID to help us figure out what went wrong: ({id})."
                );
                (message, Some(id))
            }
            other => (other.to_string(), None),
        };
        let body = json!({ fault: { "code": status.as_u16(), "message": message } });
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::Unavailable { retry_after, .. } = &self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if let ApiError::RequestTimeout(_) = &self {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status.is_server_error() {
            let cause = match self {
                ApiError::Internal(cause)
                | ApiError::Unavailable { cause, .. }
                | ApiError::Damaged { cause, .. } => cause,
                other => other.to_string(),
            };
            resp.extensions_mut().insert(ServerError {
                status,
                error_id,
                cause,
            });
        }
        resp
    }
}

/// Logs the server error a response carries, once; called inside the request's span.
pub fn log_server_error(resp: &mut Response) {
    let Some(e) = resp.extensions_mut().remove::<ServerError>() else {
        return;
    };
    match e.error_id {
        Some(id) => tracing::error!(error_id = %id, error = %e.cause, "internal error"),
        None => tracing::warn!(status = e.status.as_u16(), error = %e.cause, "server error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn each_fault_class_has_its_status_and_body_key() {
        for (fault, status, name) in [
            (Fault::BadRequest, 400, "badRequest"),
            (Fault::Unauthorized, 401, "unauthorized"),
            (Fault::Forbidden, 403, "forbidden"),
            (Fault::ItemNotFound, 404, "itemNotFound"),
            (Fault::Conflict, 409, "conflict"),
            (Fault::OverLimit, 413, "overLimit"),
            (Fault::UnprocessableEntity, 422, "unprocessableEntity"),
            (Fault::NotImplemented, 501, "notImplemented"),
        ] {
            let e = ApiError::Domain {
                fault,
                message: "m".into(),
            };
            assert_eq!(e.status_code(), status);
            assert_eq!(e.fault_name(), name);
        }
    }

    #[tokio::test]
    async fn bodies_have_troves_shape() {
        let resp =
            ApiError::Validation("instance 'name' is a required property".into()).into_response();
        assert_eq!(resp.status(), 400);
        assert!(resp.extensions().get::<ServerError>().is_none());
        assert_eq!(
            body(resp).await,
            json!({"badRequest": {"code": 400, "message":
                "Validation error: instance 'name' is a required property"}})
        );
        let resp = ApiError::BadMediaType.into_response();
        assert_eq!(
            body(resp).await,
            json!({"badMediaType": {"code": 415, "message": "Unsupported Content-Type"}})
        );
    }

    #[tokio::test]
    async fn a_503_says_when_to_retry_and_hides_its_cause() {
        let e: ApiError = StoreError::Unavailable("connection refused".into()).into();
        let resp = e.into_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert!(resp.extensions().get::<ServerError>().is_some());
        let text = body(resp).await.to_string();
        assert!(!text.contains("connection refused"), "{text}");
    }

    #[tokio::test]
    async fn a_500_shows_an_error_id_and_logs_the_cause_once() {
        let mut resp = ApiError::internal(&"disk on fire").into_response();
        assert_eq!(resp.status(), 500);
        let logged = resp
            .extensions()
            .get::<ServerError>()
            .cloned()
            .expect("to log");
        assert_eq!(logged.cause, "disk on fire");
        log_server_error(&mut resp);
        assert!(
            resp.extensions().get::<ServerError>().is_none(),
            "logged once"
        );
        let id = logged.error_id.expect("an id");
        assert_eq!(
            body(resp).await["instanceFault"]["message"],
            format!("Internal Server Error. Please keep this ID to help us figure out what went wrong: ({id}).")
        );
    }
}
