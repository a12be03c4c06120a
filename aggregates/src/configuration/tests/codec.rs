//! The event codec: stable type names, versions, round trips and the v1 body shape.

use serde_json::json;

use super::support::*;
use crate::configuration::{
    current_version, decode, ConfigurationEvent, DecodeError, EVENT_VERSIONS,
};

fn all_events() -> Vec<ConfigurationEvent> {
    vec![
        created(),
        updated(
            "n",
            Some("d"),
            json!({"connect_timeout": 5, "sql_mode": "ANSI"}),
        ),
        deleted(),
    ]
}

#[test]
fn every_event_round_trips_and_is_listed_with_its_version() {
    let events = all_events();
    assert_eq!(events.len(), EVENT_VERSIONS.len(), "one sample per type");
    for e in events {
        let (t, v, data) = e.encode();
        assert_eq!(current_version(t), Some(v), "{t} listed");
        assert_eq!(decode(t, v, data).expect("decodes"), e);
    }
}

#[test]
fn created_v1_body_has_stable_field_names() {
    let (t, v, data) = created().encode();
    assert_eq!((t, v), ("ConfigurationCreated", 1));
    let keys: Vec<&str> = data
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "at",
            "configuration_id",
            "datastore",
            "description",
            "name",
            "project_id",
            "user_id",
            "values"
        ]
    );
    assert_eq!(data["values"], json!({"connect_timeout": 200}));
}

#[test]
fn golden_v1_bodies_decode() {
    let updated = decode(
        "ConfigurationUpdated",
        1,
        json!({"name": "g", "description": null, "values": {"wait_timeout": 60},
               "at": "2024-05-01T12:00:00Z"}),
    )
    .expect("decodes");
    assert_eq!(updated.at(), now());
    let deleted = decode(
        "ConfigurationDeleted",
        1,
        json!({"at": "2024-05-01T12:00:00Z"}),
    )
    .expect("decodes");
    assert_eq!(
        deleted,
        ConfigurationEvent::ConfigurationDeleted { at: now() }
    );
}

#[test]
fn unknown_future_and_malformed_events_are_refused() {
    assert!(matches!(
        decode("InstanceCreated", 1, json!({})),
        Err(DecodeError::UnknownType(_))
    ));
    assert!(matches!(
        decode(
            "ConfigurationDeleted",
            2,
            json!({"at": "2024-05-01T12:00:00Z"})
        ),
        Err(DecodeError::FutureVersion { known: 1, .. })
    ));
    assert!(matches!(
        decode("ConfigurationDeleted", 1, json!({"when": 1})),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn stream_names_round_trip() {
    let s = crate::configuration::stream_name(GROUP);
    assert_eq!(s, format!("configuration-{GROUP}"));
    assert_eq!(
        crate::configuration::configuration_id_of_stream(&s),
        Some(GROUP)
    );
    assert_eq!(
        crate::configuration::configuration_id_of_stream(&format!("instance-{GROUP}")),
        None
    );
}
