//! The instance action body (`POST /instances/{id}/action`): an object whose one key
//! names the action (`{"promote_to_replica_source": {}}`), and the action it becomes.
//!
//! Upstream picks the action by key presence and crashes (500) on a body that names
//! none; we answer 400 in Trove's shape instead: an unknown key as jsonschema words
//! it, several actions at once, or none, with upstream's "Invalid request body.".
//! Upstream's schemas leave the values of promote and eject unchecked (any JSON).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{objects_only, present, RequestBody};
use crate::http::error::ApiError;

objects_only!(ActionBody);

/// `POST /instances/{id}/action`: exactly one action key.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"promote_to_replica_source": {}}))]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ActionBody {
    /// Promote this replica to the source of its replica set.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub promote_to_replica_source: Option<Value>,
    /// Eject this failed replica source; its most current replica takes over.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub eject_replica_source: Option<Value>,
}

impl RequestBody for ActionBody {
    /// Unused: an action body has no common root key; messages name the action key.
    const ROOT: &'static str = "action";
}

/// An instance action the body asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceAction {
    PromoteToReplicaSource,
    EjectReplicaSource,
}

impl ActionBody {
    /// The one action named, or 400.
    pub fn action(self) -> Result<InstanceAction, ApiError> {
        let named = [
            self.promote_to_replica_source
                .map(|_| InstanceAction::PromoteToReplicaSource),
            self.eject_replica_source
                .map(|_| InstanceAction::EjectReplicaSource),
        ];
        let mut named = named.into_iter().flatten();
        match (named.next(), named.next()) {
            (Some(action), None) => Ok(action),
            (None, _) => Err(ApiError::BadRequest("Invalid request body.".into())),
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "Only one action can be performed at a time.".into(),
            )),
        }
    }
}

/// Parses an action body: see the module docs.
pub fn decode(
    content_type: Option<&HeaderValue>,
    bytes: &[u8],
) -> Result<InstanceAction, ApiError> {
    let body = super::parse_json(content_type, bytes)?.unwrap_or(Value::Null);
    if body.as_object().is_none_or(serde_json::Map::is_empty) {
        return Err(ApiError::BadRequest("Invalid request body.".into()));
    }
    let parsed: ActionBody = serde_path_to_error::deserialize(&body)
        .map_err(|e| super::validation_error::<ActionBody>(&body, &e))?;
    parsed.action()
}

/// The action of the request's body, or Trove's 400 / 415 (a handler's last argument).
pub struct ActionRequest(pub InstanceAction);

impl<S: Send + Sync> FromRequest<S> for ActionRequest {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        decode(content_type.as_ref(), &bytes)
            .map(ActionRequest)
            .map_err(IntoResponse::into_response)
    }
}
