//! Backup events: what happened to a backup, in past tense, one fact each.
//!
//! The log is forever: every type has a stable name and a version
//! ([`BackupEvent::version`]), and [`decode`] reads every version ever written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::instance::DecodeError;
use crate::instance::{DatastoreRef, FaultInfo};

/// The facts of a new backup (`BackupCreated` v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupCreated {
    pub backup_id: Uuid,
    pub project_id: String,
    /// The user who asked for it.
    pub user_id: String,
    pub instance_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// The backup it is an increment of (given, or the last completed one for
    /// `incremental`); `None` for a full backup.
    pub parent_id: Option<Uuid>,
    /// The instance's datastore version when the backup was asked for.
    pub datastore: DatastoreRef,
    /// The storage location name (`swift_container`, or the default).
    pub container: String,
    #[serde(deserialize_with = "crate::time::deserialize")]
    pub at: DateTime<Utc>,
}

/// A stored artifact (`BackupCompleted` v1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupArtifact {
    /// Where the backup store keeps it (`locationRef`).
    pub location: String,
    /// Bytes stored.
    pub size_bytes: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub checksum: String,
    /// Where in the engine's log the backup ends, for an incremental taken from it.
    pub engine_position: Option<String>,
}

/// Everything that can happen to a backup.
///
/// Adjacently tagged (`{"type": ..., "data": ...}`), like the other events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BackupEvent {
    /// Asked for and accepted (NEW): the instance shows `BACKUP` from now on.
    BackupCreated(Box<BackupCreated>),
    /// The saga began copying (BUILDING); `attempt` counts the starts, a start after a
    /// crash of troved being the next one.
    BackupStarted {
        attempt: u32,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The artifact is stored and committed (COMPLETED).
    BackupCompleted {
        artifact: BackupArtifact,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The copy failed (FAILED); no artifact is left.
    BackupFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A user deleted it: gone from lists and lookups; its artifact, if any, is removed
    /// next ([`BackupEvent::BackupArtifactRemoved`]).
    BackupDeleted {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The artifact of a deleted backup is gone from the store.
    BackupArtifactRemoved {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The artifact could not be removed (DELETE_FAILED): the backup is visible again,
    /// its data still stored, and may be deleted again.
    BackupDeletionFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
}

/// Every event type name with its current version.
pub const EVENT_VERSIONS: &[(&str, u32)] = &[
    ("BackupCreated", 1),
    ("BackupStarted", 1),
    ("BackupCompleted", 1),
    ("BackupFailed", 1),
    ("BackupDeleted", 1),
    ("BackupArtifactRemoved", 1),
    ("BackupDeletionFailed", 1),
];

impl BackupEvent {
    /// The stable type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            BackupEvent::BackupCreated(_) => "BackupCreated",
            BackupEvent::BackupStarted { .. } => "BackupStarted",
            BackupEvent::BackupCompleted { .. } => "BackupCompleted",
            BackupEvent::BackupFailed { .. } => "BackupFailed",
            BackupEvent::BackupDeleted { .. } => "BackupDeleted",
            BackupEvent::BackupArtifactRemoved { .. } => "BackupArtifactRemoved",
            BackupEvent::BackupDeletionFailed { .. } => "BackupDeletionFailed",
        }
    }

    /// The schema version this build writes for this event type.
    pub fn version(&self) -> u32 {
        current_version(self.event_type()).unwrap_or(1)
    }

    /// When it happened (domain time, from the context's clock).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            BackupEvent::BackupCreated(c) => c.at,
            BackupEvent::BackupStarted { at, .. }
            | BackupEvent::BackupCompleted { at, .. }
            | BackupEvent::BackupFailed { at, .. }
            | BackupEvent::BackupDeleted { at }
            | BackupEvent::BackupArtifactRemoved { at }
            | BackupEvent::BackupDeletionFailed { at, .. } => *at,
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

/// The version this build writes for `event_type`, if it is a backup event.
pub fn current_version(event_type: &str) -> Option<u32> {
    crate::tagged::version_in(EVENT_VERSIONS, event_type)
}

/// Turns a stored (type, version, body) back into an event (all types are at
/// version 1: no upcasting yet).
pub fn decode(
    event_type: &str,
    version: u32,
    data: serde_json::Value,
) -> Result<BackupEvent, DecodeError> {
    crate::tagged::decode_current(event_type, version, data, current_version(event_type))
}

/// [`decode`] from the stored JSON bytes.
pub fn decode_slice(
    event_type: &str,
    version: u32,
    data: &[u8],
) -> Result<BackupEvent, DecodeError> {
    crate::tagged::decode_slice_with(
        event_type,
        version,
        data,
        current_version(event_type),
        decode,
    )
}
