//! The Quota aggregate: one stream `quota-<project>` per project whose limits an admin
//! changed (issue #15; upstream `trove/extensions/mgmt/quota/service.py`).
//!
//! The operator's flags (`--quota-*`) stay the defaults; this aggregate records the
//! per-project overrides, so every change is an event with its actor (who changed which
//! limit when). Usage is not recorded here: it is derived from the instance and backup
//! read models, as before. See `docs/adr/0009-quotas.md`.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::fault::Fault;
use crate::instance::Caller;
pub use crate::instance::DecodeError;

/// The quota-tracked resources, in upstream's registration order (`trove/quota/quota.py`).
pub const RESOURCES: [&str; 4] = ["instances", "ram", "backups", "volumes"];

/// The stream that holds a project's quota changes.
pub fn stream_name(project_id: &str) -> String {
    format!("quota-{project_id}")
}

/// The project of a stream name, if it is a quota stream.
pub fn project_of_stream(stream: &str) -> Option<&str> {
    stream.strip_prefix("quota-").filter(|p| !p.is_empty())
}

/// `PUT /mgmt/quotas/{project}`: the `quotas` object of the body, each value as sent
/// (the shell only checks that the body is an object; the rules are here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateQuotas {
    pub project_id: String,
    /// (resource, value) in the body's order; a `null` value is skipped (as upstream).
    pub limits: Vec<(String, serde_json::Value)>,
}

/// Everything that can happen to a project's quotas.
///
/// Adjacently tagged (`{"type": ..., "data": ...}`), like the other events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum QuotaEvent {
    /// An admin set these limits (-1: unlimited) for the project; the resources not
    /// named keep their limit.
    QuotaLimitsUpdated {
        project_id: String,
        limits: BTreeMap<String, i64>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
}

/// Every quota event type with the version this build writes.
pub const EVENT_VERSIONS: &[(&str, u32)] = &[("QuotaLimitsUpdated", 1)];

impl QuotaEvent {
    /// The stable type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            QuotaEvent::QuotaLimitsUpdated { .. } => "QuotaLimitsUpdated",
        }
    }

    /// When it happened (domain time, from the context's clock).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            QuotaEvent::QuotaLimitsUpdated { at, .. } => *at,
        }
    }

    /// Splits the event into its type name, version and JSON body for storage.
    pub fn encode(&self) -> (&'static str, u32, serde_json::Value) {
        let t = self.event_type();
        (
            t,
            current_version(t).unwrap_or(1),
            crate::tagged::data_of(self),
        )
    }
}

/// The version this build writes for `event_type`, if it is a quota event.
pub fn current_version(event_type: &str) -> Option<u32> {
    crate::tagged::version_in(EVENT_VERSIONS, event_type)
}

/// Turns a stored (type, version, body) back into an event.
pub fn decode(
    event_type: &str,
    version: u32,
    data: serde_json::Value,
) -> Result<QuotaEvent, DecodeError> {
    crate::tagged::decode_current(event_type, version, data, current_version(event_type))
}

/// [`decode`] from the stored JSON bytes.
pub fn decode_slice(
    event_type: &str,
    version: u32,
    data: &[u8],
) -> Result<QuotaEvent, DecodeError> {
    crate::tagged::decode_slice_with(
        event_type,
        version,
        data,
        current_version(event_type),
        decode,
    )
}

/// A project's quota overrides, folded from its stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Resource → limit, for the resources an admin set (the others use the defaults).
    pub limits: BTreeMap<String, i64>,
}

/// Folds one event into the state.
pub fn evolve(mut quota: Quota, event: &QuotaEvent) -> Quota {
    match event {
        QuotaEvent::QuotaLimitsUpdated { limits, .. } => {
            quota
                .limits
                .extend(limits.iter().map(|(k, v)| (k.clone(), *v)));
        }
    }
    quota
}

/// Why an update is refused; each maps to upstream's class and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Upstream's `admin_context` (`Forbidden`, 401).
    #[error("User does not have admin privileges.")]
    NotAdmin,
    /// Upstream's `QuotaResourceUnknown` (a `NotFound`: 404).
    #[error("Unknown quota resources {0}.")]
    UnknownResource(String),
    /// Upstream's `QuotaLimitTooSmall` (upstream answers 500; we 400).
    #[error("Quota limit '{limit}' for '{resource}' is too small - must be at least '-1'.")]
    TooSmall { resource: String, limit: i64 },
    /// A value that is not an integer (upstream fails with a 500; we 400).
    #[error("Quota limit for '{0}' must be an integer.")]
    NotAnInteger(String),
}

impl QuotaError {
    /// The Trove fault class of the refusal.
    pub fn fault(&self) -> Fault {
        match self {
            QuotaError::NotAdmin => Fault::Unauthorized,
            QuotaError::UnknownResource(_) => Fault::ItemNotFound,
            QuotaError::TooSmall { .. } | QuotaError::NotAnInteger(_) => Fault::BadRequest,
        }
    }
}

/// What `decide` needs besides the state: the clock and the caller.
pub struct DecideCtx<'a> {
    pub now: DateTime<Utc>,
    pub caller: &'a Caller,
}

/// The rules of `UpdateQuotas`: admins only; every named resource known and every value
/// an integer >= -1, checked for the whole body before anything is recorded (upstream
/// saves each row as it goes, so a bad second entry left the first applied). A body
/// that names nothing (or only `null`s) records nothing.
pub fn decide(
    _quota: &Quota,
    cmd: &UpdateQuotas,
    ctx: &DecideCtx,
) -> Result<Vec<QuotaEvent>, QuotaError> {
    if !ctx.caller.is_admin() {
        return Err(QuotaError::NotAdmin);
    }
    let mut limits = BTreeMap::new();
    for (resource, value) in &cmd.limits {
        if value.is_null() {
            continue;
        }
        let limit = value
            .as_i64()
            .ok_or_else(|| QuotaError::NotAnInteger(resource.clone()))?;
        if limit < -1 {
            return Err(QuotaError::TooSmall {
                resource: resource.clone(),
                limit,
            });
        }
        if !RESOURCES.contains(&resource.as_str()) {
            return Err(QuotaError::UnknownResource(resource.clone()));
        }
        limits.insert(resource.clone(), limit);
    }
    if limits.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![QuotaEvent::QuotaLimitsUpdated {
        project_id: cmd.project_id.clone(),
        limits,
        at: ctx.now,
    }])
}
