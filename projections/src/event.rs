//! The input of the read models: one recorded instance event, already decoded by the
//! shell, with the two coordinates idempotence needs (global position, stream revision).
//!
//! Decoding store records (bytes, type names, upcasting) is the shell's job; this module
//! only names what the models consume and what applying one event did.

use aggregates::instance::{instance_id_of_stream, InstanceEvent};
use uuid::Uuid;

use crate::Position;

/// One instance event as the projector hands it to [`crate::InstanceModels::apply`].
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectedEvent {
    /// Position in `$all`: the idempotence key (a redelivery carries the same one).
    pub position: Position,
    /// The instance the event belongs to (from the stream name `instance-<uuid>`).
    pub instance_id: Uuid,
    /// Revision within the instance stream, from 0: detects missed or repeated events.
    pub revision: u64,
    /// The decoded (and upcast) event.
    pub event: InstanceEvent,
}

impl ProjectedEvent {
    /// Builds the input from a store record's coordinates; `None` when `stream` is not
    /// an instance stream (the projector then only calls
    /// [`crate::InstanceModels::advance_to`] so read-your-writes waits still progress).
    pub fn from_stream(
        stream: &str,
        revision: u64,
        position: Position,
        event: InstanceEvent,
    ) -> Option<ProjectedEvent> {
        Some(ProjectedEvent {
            position,
            instance_id: instance_id_of_stream(stream)?,
            revision,
            event,
        })
    }
}

/// What [`crate::InstanceModels::apply`] did with an event. Only the gap case deserves a
/// warning in the projector's log; every variant leaves the models consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The event changed the models.
    Applied,
    /// At or below the last applied position (globally or for its instance): a
    /// redelivery. Nothing changed.
    AlreadyApplied,
    /// The instance already folded this revision (seen under another position, e.g. a
    /// store that re-posted it). Nothing changed except the global position.
    StaleRevision {
        /// The revision the instance expected next.
        expected: u64,
        /// The revision the event carried.
        actual: u64,
    },
    /// Applied, but earlier revisions of the stream were never seen: the projector
    /// skipped events, and the record may be wrong until a rebuild.
    AppliedAfterGap {
        /// The revision the instance expected next.
        expected: u64,
        /// The revision the event carried.
        actual: u64,
    },
}
