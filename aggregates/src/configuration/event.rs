//! Configuration group events: what happened, in past tense, one fact each.
//!
//! The log is forever: every type has a stable name and a version
//! ([`ConfigurationEvent::version`]), and [`decode`] reads every version ever written.
//! Documented in `docs/events.md` ("Configuration group events"). Values are stored
//! with the JSON type they were validated as, so views render them without the
//! catalogue.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::instance::DatastoreRef;
pub use crate::instance::DecodeError;

/// A group's parameter values: key (the catalogue's lower-case name) → JSON scalar.
/// A B-tree so that equal sets compare and serialize equal.
pub type Values = BTreeMap<String, serde_json::Value>;

/// The facts of a new group (`ConfigurationCreated` v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationCreated {
    pub configuration_id: Uuid,
    pub project_id: String,
    /// The user who created it.
    pub user_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The datastore version it is bound to, names as of the event.
    pub datastore: DatastoreRef,
    pub values: Values,
    #[serde(deserialize_with = "crate::time::deserialize")]
    pub at: DateTime<Utc>,
}

/// Everything that can happen to a configuration group.
///
/// Adjacently tagged (`{"type": ..., "data": ...}`), like the instance events, so the
/// store keeps the type name and the body apart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ConfigurationEvent {
    /// The group exists.
    ConfigurationCreated(Box<ConfigurationCreated>),
    /// A PUT or PATCH was applied: the group's name, description and complete value set
    /// afterwards (a PATCH's merge is already resolved), so replay never needs the
    /// request.
    ConfigurationUpdated {
        name: String,
        description: Option<String>,
        values: Values,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The group is soft-deleted: gone from lists and lookups.
    ConfigurationDeleted {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
}

/// Every event type name with its current version.
pub const EVENT_VERSIONS: &[(&str, u32)] = &[
    ("ConfigurationCreated", 1),
    ("ConfigurationUpdated", 1),
    ("ConfigurationDeleted", 1),
];

impl ConfigurationEvent {
    /// The stable type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            ConfigurationEvent::ConfigurationCreated(_) => "ConfigurationCreated",
            ConfigurationEvent::ConfigurationUpdated { .. } => "ConfigurationUpdated",
            ConfigurationEvent::ConfigurationDeleted { .. } => "ConfigurationDeleted",
        }
    }

    /// The schema version this build writes for this event type.
    pub fn version(&self) -> u32 {
        current_version(self.event_type()).unwrap_or(1)
    }

    /// When it happened (domain time, from the context's clock).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            ConfigurationEvent::ConfigurationCreated(c) => c.at,
            ConfigurationEvent::ConfigurationUpdated { at, .. }
            | ConfigurationEvent::ConfigurationDeleted { at } => *at,
        }
    }

    /// Splits the event into its type name, version and JSON body for storage.
    pub fn encode(&self) -> (&'static str, u32, serde_json::Value) {
        (
            self.event_type(),
            self.version(),
            crate::tagged::data_of(self),
        )
    }
}

/// The version this build writes for `event_type`, if it is a configuration event.
pub fn current_version(event_type: &str) -> Option<u32> {
    crate::tagged::version_in(EVENT_VERSIONS, event_type)
}

/// Turns a stored (type, version, body) back into an event, upcasting old versions
/// (all types are at version 1: the identity today).
pub fn decode(
    event_type: &str,
    version: u32,
    data: serde_json::Value,
) -> Result<ConfigurationEvent, DecodeError> {
    crate::tagged::decode_current(event_type, version, data, current_version(event_type))
}

/// [`decode`] from the stored JSON bytes. A body at the current version is deserialized
/// straight from them, without building a `serde_json::Value` tree first (the replay of
/// the log at start-up decodes every event; this is most of its cost); an older version
/// goes through [`decode`] and its upcasting.
pub fn decode_slice(
    event_type: &str,
    version: u32,
    data: &[u8],
) -> Result<ConfigurationEvent, DecodeError> {
    crate::tagged::decode_slice_with(
        event_type,
        version,
        data,
        current_version(event_type),
        decode,
    )
}
