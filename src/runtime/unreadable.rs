//! Events of the log that this build cannot decode ("unreadable": a damaged or edited
//! file, a bad restore), and where they are, so that commands, show and history can
//! name them, `/metrics` counts them and the log reports each one once, whether the
//! read models came from a snapshot or from the log.
//!
//! Who finds them: the projector (the replay at start and the live projector, for the
//! events it applies) and, after a start from a read-model snapshot, [`scan`] for the
//! events before the snapshot's position, which the start did not replay (the file may
//! have been changed since the snapshot was written). An event once found stays listed
//! until the process exits: the log is append-only, so it cannot heal by itself.
//!
//! Must not: decide what a caller does about an unreadable event (commands refuse,
//! history marks, show reports; see the callers).

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use aggregates::configuration::configuration_id_of_stream;
use aggregates::instance::instance_id_of_stream;

use super::codec::{self, CodecError};
use crate::store::{EventStore, Position, RecordedEvent, StoreError};

/// Events read per page by [`scan`].
const SCAN_PAGE: usize = 4096;

/// An event that does not decode, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "event {revision} ({event_type}) of stream {stream} at position {position} cannot be read: {error}"
)]
pub struct UnreadableEvent {
    pub stream: String,
    /// Its revision within the stream.
    pub revision: u64,
    pub position: Position,
    /// Its type as stored.
    pub event_type: String,
    /// Why it does not decode (the codec's message).
    pub error: String,
    /// The project of the caller who caused it, from its envelope if that still
    /// decodes: for a broken `InstanceCreated`, the instance's project, so its owner
    /// (not only an admin) is told about the damage instead of a 404.
    pub project: Option<String>,
}

impl UnreadableEvent {
    /// Describes `r`, which failed to decode with `error`.
    pub fn new(r: &RecordedEvent, error: &CodecError) -> UnreadableEvent {
        let project = serde_json::from_slice::<codec::EventMetadata>(&r.metadata)
            .ok()
            .map(|m| m.actor.project_id);
        UnreadableEvent {
            stream: r.stream.clone(),
            revision: r.revision,
            position: r.position,
            event_type: r.event_type.clone(),
            error: error.to_string(),
            project,
        }
    }

    /// What a client is told: where the damage is and what to run, not the codec's
    /// detail (that is logged).
    pub fn client_message(&self) -> String {
        format!(
            "Event {} ({}) of stream {} at position {} cannot be read: the event log may be \
             damaged; run `troved audit verify` and see docs/operations.md, \"An unreadable \
             event\".",
            self.revision, self.event_type, self.stream, self.position.commit
        )
    }
}

/// Checks that `r` decodes, for the categories troved reads (instances, configuration
/// groups); `None` when it does or when it is of another category.
pub fn check(r: &RecordedEvent) -> Option<UnreadableEvent> {
    let decoded = if instance_id_of_stream(&r.stream).is_some() {
        codec::decode_event(r).map(drop)
    } else if configuration_id_of_stream(&r.stream).is_some() {
        codec::decode_configuration_event(r).map(drop)
    } else {
        Ok(())
    };
    decoded.err().map(|e| UnreadableEvent::new(r, &e))
}

/// The unreadable events found so far, by position.
#[derive(Debug, Default)]
pub struct UnreadableEvents {
    by_position: RwLock<BTreeMap<Position, UnreadableEvent>>,
}

impl UnreadableEvents {
    /// Records `event`; the first time, logs it as an error and updates
    /// `troved_unreadable_events`. Redelivery is harmless.
    pub fn record(&self, event: UnreadableEvent) {
        let count = {
            let mut map = self
                .by_position
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if map.contains_key(&event.position) {
                return;
            }
            tracing::error!(
                stream = %event.stream,
                revision = event.revision,
                position = %event.position,
                event_type = %event.event_type,
                error = %event.error,
                "unreadable event in the log: the read models skip it and commands on its \
                 stream are refused; run `troved audit verify`"
            );
            map.insert(event.position, event);
            map.len()
        };
        crate::metrics::global().unreadable_events(count as u64);
    }

    /// The first unreadable event of `stream`, if any.
    pub fn first_in(&self, stream: &str) -> Option<UnreadableEvent> {
        let map = self
            .by_position
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.values().find(|e| e.stream == stream).cloned()
    }

    /// How many were found.
    pub fn len(&self) -> usize {
        self.by_position
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none were found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes every event of `$all` up to `upto` (the position a read-model snapshot was
/// loaded at) and records the unreadable ones: the events the start did not replay.
/// Runs in the background after a start from a snapshot, on the blocking pool, one page
/// at a time (about as much work as the replay it replaces, without the models).
pub async fn scan(
    store: &dyn EventStore,
    upto: Position,
    found: &std::sync::Arc<UnreadableEvents>,
) -> Result<u64, StoreError> {
    let mut from = Position::START;
    let mut scanned = 0u64;
    while from < upto {
        let page = store.read_all(from, SCAN_PAGE).await?;
        let Some(last) = page.last().map(|r| r.position) else {
            break;
        };
        scanned += page.len() as u64;
        let bad = tokio::task::spawn_blocking(move || {
            page.iter()
                .filter(|r| r.position <= upto)
                .filter_map(check)
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Io(format!("checking the log's events failed: {e}")))?;
        for event in bad {
            found.record(event);
        }
        from = last;
    }
    Ok(scanned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn record(stream: &str, position: u64, data: &[u8]) -> RecordedEvent {
        RecordedEvent {
            id: Uuid::new_v4(),
            stream: stream.to_string(),
            revision: 2,
            position: Position {
                commit: position,
                prepare: position,
            },
            event_type: "InstanceRenamed".into(),
            data: data.to_vec(),
            metadata: br#"{"schema_version":1}"#.to_vec(),
        }
    }

    #[test]
    fn undecodable_events_are_found_named_and_recorded_once() {
        let stream = format!("instance-{}", Uuid::new_v4());
        let bad = check(&record(&stream, 7, b"{not json")).expect("undecodable");
        assert_eq!((bad.revision, bad.position.commit), (2, 7));
        let message = bad.client_message();
        assert!(message.contains(&stream) && message.contains("position 7"));
        assert!(message.contains("troved audit verify"));
        // Other categories are not troved's to judge.
        assert_eq!(check(&record("other-x", 8, b"{not json")), None);

        let found = UnreadableEvents::default();
        assert!(found.is_empty() && found.first_in(&stream).is_none());
        found.record(bad.clone());
        found.record(bad.clone());
        assert_eq!(found.len(), 1);
        assert_eq!(found.first_in(&stream), Some(bad));
        assert_eq!(found.first_in("instance-other"), None);
    }
}
