//! The instance action body (`POST /instances/{id}/action`): exactly one action key,
//! each with its own object (upstream's `apischema` for `resize`; `restart` and
//! `reset_status` take an empty object, whose keys are ignored; upstream leaves the
//! values of `promote_to_replica_source` and `eject_replica_source` unchecked).
//!
//! Deviation: upstream answers an unknown action key with a 500 (no handler is found)
//! and takes the last of several keys; we answer both with a 400 in Trove's format. An
//! empty body is upstream's 400 "Invalid request body.".

use aggregates::instance::InstanceCommand;
use axum::http::HeaderValue;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::instance::{FlavorRef, VolumeSize};
use super::{objects_only, parse_json, present, validation_error, RequestBody};
use crate::http::error::{ApiError, ApiResult};

objects_only!(InstanceActionBody, ResizeRequest, ResizeVolume);

/// The action keys this service knows, in the order messages list them.
pub const ACTIONS: [&str; 5] = [
    "restart",
    "resize",
    "reset_status",
    "promote_to_replica_source",
    "eject_replica_source",
];

/// `POST /instances/{id}/action`: one of the keys.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"resize": {"volume": {"size": 4}}}))]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct InstanceActionBody {
    /// Restart the database service (`{}`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub restart: Option<EmptyObject>,
    /// Resize the flavor (`flavorRef`) or grow the volume (`volume.size`).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub resize: Option<ResizeRequest>,
    /// Admin only: task NONE, service UNKNOWN (the way out of a stuck state).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub reset_status: Option<EmptyObject>,
    /// Promote this replica to the source of its replica set.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub promote_to_replica_source: Option<Value>,
    /// Eject this failed replica source; its most current replica takes over.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub eject_replica_source: Option<Value>,
}

/// What an action body asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum InstanceAction {
    /// One command on the instance's own aggregate (restart, resize, reset_status).
    Command(InstanceCommand),
    /// Promote the replica to the source of its set (several streams: see
    /// `http::replica_actions`).
    PromoteToReplicaSource,
    /// Eject the failed source of the set.
    EjectReplicaSource,
}

impl RequestBody for InstanceActionBody {
    /// Not one key: the body is the object of keys (see [`decode_action`]).
    const ROOT: &'static str = "action";
}

/// `resize`: exactly one of `flavorRef` and `volume`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct ResizeRequest {
    #[serde(rename = "flavorRef", default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub flavor_ref: Option<FlavorRef>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub volume: Option<ResizeVolume>,
}

/// `resize.volume`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(remote = "Self")]
pub struct ResizeVolume {
    /// The new size, GB (larger than the current one).
    #[schema(value_type = u64)]
    pub size: VolumeSize,
}

/// An object whose keys are ignored (`{}`).
#[derive(Debug)]
pub struct EmptyObject;

impl<'de> Deserialize<'de> for EmptyObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(_) => Ok(EmptyObject),
            _ => Err(serde::de::Error::custom("is not of type 'object'")),
        }
    }
}

/// Parses the action body: a JSON object with exactly one known action key.
pub fn decode_action(
    content_type: Option<&HeaderValue>,
    bytes: &[u8],
) -> ApiResult<InstanceAction> {
    let body = parse_json(content_type, bytes)?.unwrap_or(Value::Null);
    match body.as_object().map_or(0, |o| o.len()) {
        0 => return Err(ApiError::BadRequest("Invalid request body.".into())),
        1 => {}
        _ => {
            return Err(ApiError::BadRequest(format!(
                "Only one action can be performed at a time, one of: {}.",
                ACTIONS.join(", ")
            )))
        }
    }
    let parsed: InstanceActionBody = serde_path_to_error::deserialize(&body)
        .map_err(|e| validation_error::<InstanceActionBody>(&body, &e))?;
    parsed.command()
}

impl InstanceActionBody {
    fn command(self) -> ApiResult<InstanceAction> {
        if self.restart.is_some() {
            return Ok(InstanceAction::Command(InstanceCommand::RestartInstance));
        }
        if self.reset_status.is_some() {
            return Ok(InstanceAction::Command(InstanceCommand::ResetStatus));
        }
        if self.promote_to_replica_source.is_some() {
            return Ok(InstanceAction::PromoteToReplicaSource);
        }
        if self.eject_replica_source.is_some() {
            return Ok(InstanceAction::EjectReplicaSource);
        }
        match self.resize {
            Some(r) => r.command().map(InstanceAction::Command),
            None => Err(ApiError::BadRequest("Invalid request body.".into())),
        }
    }
}

impl ResizeRequest {
    /// Upstream `_action_resize`: both or neither of its keys is a 400.
    fn command(self) -> ApiResult<InstanceCommand> {
        match (self.flavor_ref, self.volume) {
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "Not allowed to resize volume and flavor at the same time.".into(),
            )),
            (Some(FlavorRef(flavor_ref)), None) => Ok(InstanceCommand::ResizeFlavor { flavor_ref }),
            (None, Some(v)) => Ok(InstanceCommand::ResizeVolume { size: v.size.0 }),
            (None, None) => Err(ApiError::BadRequest("Missing resize arguments.".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(body: Value) -> ApiResult<InstanceAction> {
        let ct = HeaderValue::from_static("application/json");
        decode_action(Some(&ct), body.to_string().as_bytes())
    }

    #[test]
    fn each_action_becomes_its_command() {
        let cases = [
            (json!({"restart": {}}), InstanceCommand::RestartInstance),
            (json!({"reset_status": {}}), InstanceCommand::ResetStatus),
            (
                json!({"resize": {"flavorRef": "https://h/v1.0/p/flavors/8"}}),
                InstanceCommand::ResizeFlavor {
                    flavor_ref: "8".into(),
                },
            ),
            (
                json!({"resize": {"flavorRef": 8}}),
                InstanceCommand::ResizeFlavor {
                    flavor_ref: "8".into(),
                },
            ),
            (
                json!({"resize": {"volume": {"size": "4"}}}),
                InstanceCommand::ResizeVolume { size: 4 },
            ),
        ];
        for (body, cmd) in cases {
            assert_eq!(decode(body).unwrap(), InstanceAction::Command(cmd));
        }
        assert_eq!(
            decode(json!({"promote_to_replica_source": {}})).unwrap(),
            InstanceAction::PromoteToReplicaSource
        );
        assert_eq!(
            decode(json!({"eject_replica_source": null})).unwrap(),
            InstanceAction::EjectReplicaSource
        );
    }

    #[test]
    fn bad_bodies_are_bad_requests_in_trove_words() {
        for (body, message) in [
            (
                json!({"reboot": {}}),
                "Validation error: Additional properties are not allowed ('reboot' was unexpected)",
            ),
            (
                json!({"restart": {}, "reset_status": {}}),
                "Only one action can be performed at a time, one of: restart, resize, \
                 reset_status, promote_to_replica_source, eject_replica_source.",
            ),
            (json!({}), "Invalid request body."),
            (json!({"resize": {}}), "Missing resize arguments."),
            (
                json!({"resize": {"flavorRef": "7", "volume": {"size": 2}}}),
                "Not allowed to resize volume and flavor at the same time.",
            ),
            (
                json!({"resize": {"volume": {"size": 0}}}),
                "Validation error: resize['volume']['size'] 0 is not valid under any of the given schemas; 0 is less than the minimum of 1",
            ),
            (
                json!({"restart": 1}),
                "Validation error: restart 1 is not of type 'object'",
            ),
        ] {
            let e = decode(body).unwrap_err();
            assert_eq!(e.status_code(), 400);
            assert_eq!(e.to_string(), message);
        }
    }
}
