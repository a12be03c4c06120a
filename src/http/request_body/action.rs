//! The instance action body (`POST /instances/{id}/action`): exactly one action key,
//! each with its own object (upstream's `apischema` for `resize`; `restart` and
//! `reset_status` take an empty object, whose keys are ignored).
//!
//! Deviation: upstream answers an unknown action key with a 500 (no handler is found)
//! and takes the last of several keys; we answer both with a 400 in Trove's format.

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
pub const ACTIONS: [&str; 3] = ["restart", "resize", "reset_status"];

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
) -> ApiResult<InstanceCommand> {
    let body = parse_json(content_type, bytes)?.unwrap_or(Value::Null);
    let keys = body.as_object().map_or(0, |o| o.len());
    if keys != 1 {
        return Err(ApiError::BadRequest(format!(
            "An action body has exactly one action key, one of: {}.",
            ACTIONS.join(", ")
        )));
    }
    let parsed: InstanceActionBody = serde_path_to_error::deserialize(&body)
        .map_err(|e| validation_error::<InstanceActionBody>(&body, &e))?;
    parsed.command()
}

impl InstanceActionBody {
    fn command(self) -> ApiResult<InstanceCommand> {
        if self.restart.is_some() {
            return Ok(InstanceCommand::RestartInstance);
        }
        if self.reset_status.is_some() {
            return Ok(InstanceCommand::ResetStatus);
        }
        match self.resize {
            Some(r) => r.command(),
            None => Err(ApiError::BadRequest("Missing action.".into())),
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

    fn decode(body: Value) -> ApiResult<InstanceCommand> {
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
            assert_eq!(decode(body).unwrap(), cmd);
        }
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
                "An action body has exactly one action key, one of: restart, resize, reset_status.",
            ),
            (
                json!({}),
                "An action body has exactly one action key, one of: restart, resize, reset_status.",
            ),
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
