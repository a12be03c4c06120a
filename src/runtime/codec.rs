//! Turning domain events into stored events and back: the JSON body, the type name, and
//! the metadata envelope every event carries (who, why, when, which schema version).

use aggregates::instance::{self, Caller, DecodeError, InstanceEvent};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{NewEvent, RecordedEvent};

/// The actor of an event: the caller of the command that produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub project_id: String,
    pub roles: Vec<String>,
}

impl From<&Caller> for Actor {
    fn from(c: &Caller) -> Self {
        Actor {
            user_id: c.user_id.clone(),
            project_id: c.project_id.clone(),
            roles: c.roles.clone(),
        }
    }
}

/// The envelope stored as an event's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Schema version of the event body (see `docs/events.md`).
    pub schema_version: u32,
    /// The command (or request) that caused this event.
    pub causation_id: Uuid,
    /// Groups every event of one workflow (a create and all its provisioning steps).
    pub correlation_id: Uuid,
    pub actor: Actor,
    /// The `x-openstack-request-id` of the HTTP request, or the saga step's name.
    pub request_id: String,
    /// When the event was decided.
    pub time: DateTime<Utc>,
}

/// Why a stored event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("metadata of event {id} does not decode: {source}")]
    Metadata { id: Uuid, source: serde_json::Error },
    #[error("body of event {id} is not JSON: {source}")]
    Body { id: Uuid, source: serde_json::Error },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Where a command came from, copied onto every event it produces.
#[derive(Clone, Debug)]
pub struct CommandMeta {
    pub actor: Actor,
    pub request_id: String,
    pub causation_id: Uuid,
    pub correlation_id: Uuid,
    /// `None`: random event ids (user commands). `Some(base)`: the n-th event decided
    /// gets `v5(base, n)`, so a step retried after an unknown outcome appends the same
    /// ids and the store deduplicates it (saga steps).
    pub derived_ids: Option<Uuid>,
}

impl CommandMeta {
    /// The envelope of a user request: the request is both the cause and the start of
    /// the workflow it triggers; event ids are random.
    pub fn for_request(caller: &Caller, request_id: &str) -> CommandMeta {
        let cause = Uuid::new_v4();
        CommandMeta {
            actor: Actor::from(caller),
            request_id: request_id.to_string(),
            causation_id: cause,
            correlation_id: cause,
            derived_ids: None,
        }
    }

    /// The id of the `n`-th event of this command.
    pub fn event_id(&self, n: usize) -> Uuid {
        match self.derived_ids {
            Some(base) => Uuid::new_v5(&base, &(n as u64).to_be_bytes()),
            None => Uuid::new_v4(),
        }
    }
}

/// Encodes the `n`-th event a command decided, for the store.
pub fn encode(event: &InstanceEvent, meta: &CommandMeta, n: usize) -> NewEvent {
    let (event_type, version, data) = event.encode();
    let mut e = encode_parts(event_type, version, &data, event.at(), meta);
    e.id = meta.event_id(n);
    e
}

/// Decodes a stored instance event with its envelope.
pub fn decode(r: &RecordedEvent) -> Result<(InstanceEvent, EventMetadata), CodecError> {
    let meta: EventMetadata = serde_json::from_slice(&r.metadata)
        .map_err(|source| CodecError::Metadata { id: r.id, source })?;
    let data: serde_json::Value =
        serde_json::from_slice(&r.data).map_err(|source| CodecError::Body { id: r.id, source })?;
    let event = instance::decode(&r.event_type, meta.schema_version, data)?;
    Ok((event, meta))
}

/// Decodes a stored instance event for the read models: the body and, of the envelope,
/// only its schema version (the projector needs nothing else of it). The replay at
/// start-up does this for every event of the log, so it avoids what [`decode`] spends on
/// the rest of the envelope and on a `serde_json::Value` of the body.
pub fn decode_event(r: &RecordedEvent) -> Result<InstanceEvent, CodecError> {
    let version = schema_version(r)?;
    Ok(instance::decode_slice(&r.event_type, version, &r.data)?)
}

/// [`decode_event`] for configuration-group events.
pub fn decode_configuration_event(
    r: &RecordedEvent,
) -> Result<aggregates::configuration::ConfigurationEvent, CodecError> {
    let version = schema_version(r)?;
    Ok(aggregates::configuration::decode_slice(
        &r.event_type,
        version,
        &r.data,
    )?)
}

/// Decodes a stored backup event (streams `backup-<uuid>`).
pub fn decode_backup_event(
    r: &RecordedEvent,
) -> Result<aggregates::backup::BackupEvent, CodecError> {
    let version = schema_version(r)?;
    Ok(aggregates::backup::decode_slice(
        &r.event_type,
        version,
        &r.data,
    )?)
}

/// Decodes a stored quota event (streams `quota-<project>`).
pub fn decode_quota_event(r: &RecordedEvent) -> Result<aggregates::quota::QuotaEvent, CodecError> {
    let version = schema_version(r)?;
    Ok(aggregates::quota::decode_slice(
        &r.event_type,
        version,
        &r.data,
    )?)
}

/// The `schema_version` of a stored event's envelope. [`encode_parts`] writes it as the
/// first key, so it is read from there without parsing the rest; any other layout (an
/// envelope written by another tool, reordered keys) is parsed as JSON for that one key.
pub fn schema_version(r: &RecordedEvent) -> Result<u32, CodecError> {
    if let Some(v) = leading_schema_version(&r.metadata) {
        return Ok(v);
    }
    #[derive(Deserialize)]
    struct Envelope {
        schema_version: u32,
    }
    serde_json::from_slice::<Envelope>(&r.metadata)
        .map(|e| e.schema_version)
        .map_err(|source| CodecError::Metadata { id: r.id, source })
}

/// `N` of a metadata that starts `{"schema_version":N,` (or `...:N}`), N at most 9 digits.
fn leading_schema_version(metadata: &[u8]) -> Option<u32> {
    let rest = metadata.strip_prefix(b"{\"schema_version\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 || (digits > 1 && rest[0] == b'0') {
        return None;
    }
    if !matches!(rest.get(digits), Some(b',' | b'}')) {
        return None;
    }
    rest[..digits].iter().try_fold(0u32, |n, d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Encodes an event of any aggregate from its parts (type name, version, JSON body,
/// domain time) with a fresh random event id: the envelope is the same on every stream.
pub fn encode_parts(
    event_type: &str,
    version: u32,
    data: &serde_json::Value,
    at: DateTime<Utc>,
    meta: &CommandMeta,
) -> NewEvent {
    let metadata = EventMetadata {
        schema_version: version,
        causation_id: meta.causation_id,
        correlation_id: meta.correlation_id,
        actor: meta.actor.clone(),
        request_id: meta.request_id.clone(),
        time: at,
    };
    NewEvent {
        id: Uuid::new_v4(),
        event_type: event_type.to_string(),
        // Serializing a Value or a plain derived struct to bytes cannot fail.
        data: serde_json::to_vec(data).unwrap_or_default(),
        metadata: serde_json::to_vec(&metadata).unwrap_or_default(),
    }
}

/// Splits a stored event of any aggregate into its JSON body and its envelope; the
/// aggregate's own `decode` then turns (type, `schema_version`, body) into its event.
pub fn decode_parts(r: &RecordedEvent) -> Result<(serde_json::Value, EventMetadata), CodecError> {
    let meta: EventMetadata = serde_json::from_slice(&r.metadata)
        .map_err(|source| CodecError::Metadata { id: r.id, source })?;
    let data: serde_json::Value =
        serde_json::from_slice(&r.data).map_err(|source| CodecError::Body { id: r.id, source })?;
    Ok((data, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(metadata: &[u8], event_type: &str, data: &[u8]) -> RecordedEvent {
        RecordedEvent {
            id: Uuid::nil(),
            stream: format!("instance-{}", Uuid::nil()),
            revision: 0,
            position: crate::store::Position::START,
            event_type: event_type.into(),
            data: data.to_vec(),
            metadata: metadata.to_vec(),
        }
    }

    #[test]
    fn the_schema_version_is_read_from_the_envelope_whatever_its_layout() {
        let caller = Caller {
            user_id: "u".into(),
            project_id: "p".into(),
            roles: vec![],
        };
        let meta = CommandMeta::for_request(&caller, "req");
        let event = InstanceEvent::InstanceRenamed {
            name: "n".into(),
            at: Utc::now(),
        };
        let e = encode(&event, &meta, 0);
        let r = recorded(&e.metadata, &e.event_type, &e.data);
        assert!(leading_schema_version(&r.metadata).is_some(), "fast path");
        assert_eq!(schema_version(&r).unwrap(), 1);
        assert_eq!(decode_event(&r).unwrap(), decode(&r).unwrap().0);
        for (metadata, want) in [
            (&br#"{"request_id":"r","schema_version":3}"#[..], Some(3)),
            (br#"{ "schema_version" : 2 }"#, Some(2)),
            (br#"{"schema_version":7}"#, Some(7)),
            (br#"{"schema_version":07}"#, None),
            (br#"{"schema_version":99999999999}"#, None),
            (br#"{"schema_version":-1,"x":1}"#, None),
            (br#"{"schema_version":1"#, None),
            (b"not json", None),
        ] {
            let r = recorded(metadata, "InstanceRenamed", b"{}");
            assert_eq!(
                schema_version(&r).ok(),
                want,
                "{}",
                String::from_utf8_lossy(metadata)
            );
        }
    }
}
