//! The event codec: every variant round-trips through `encode` → `decode`, the version
//! catalog lists every variant exactly once, and unknown or future events are refused.

use std::collections::BTreeSet;

use super::support::*;
use crate::instance::{
    current_version, decode, Access, Address, ComputeStatus, DecodeError, FaultInfo, FlavorRef,
    InstanceEvent, Nic, ServiceStatus, Task, UserSpec, EVENT_VERSIONS,
};

fn fault() -> FaultInfo {
    FaultInfo {
        message: "Failed to create server for instance".into(),
        details: "Traceback ...".into(),
    }
}

fn access() -> Access {
    Access {
        is_public: true,
        allowed_cidrs: vec!["10.0.0.0/8".into(), "192.168.1.1".into()],
    }
}

/// One event of every variant, with non-default data everywhere it matters. The
/// exhaustive match in [`variant_number`] makes adding a variant a compile error here.
// A table: one literal value per event variant.
#[allow(clippy::too_many_lines)]
fn one_of_each() -> Vec<InstanceEvent> {
    use InstanceEvent::*;
    let at = now();
    vec![
        created_now(|c| {
            c.users = vec![UserSpec {
                name: "app".into(),
                host: "%".into(),
                password: sealed("pw"),
                databases: vec!["orders".into()],
            }];
            c.nics = vec![Nic {
                network_id: Some("net".into()),
                subnet_id: None,
                ip_address: None,
            }];
            c.replica_of = Some(PRIMARY);
            c.configuration_id = Some(CFG_MYSQL80);
            c.access = Some(serde_json::json!({"is_public": true, "extra": [1, 2]}));
            c.root_password = Some(sealed("root"));
            c.restore_backup_id = Some(BK_OK);
        }),
        InstanceRenamed {
            name: "db2".into(),
            at,
        },
        ConfigurationAttached {
            configuration_id: CFG_MYSQL80,
            restart_required: true,
            revision: 0,
            at,
        },
        ConfigurationDetached {
            configuration_id: CFG_MYSQL80,
            restart_required: false,
            at,
        },
        DatastoreVersionUpgradeRequested {
            from: version_ref(V_MYSQL_80),
            to: version_ref(V_MYSQL_57),
            at,
        },
        DatastoreVersionUpgraded { at },
        DatastoreVersionUpgradeFailed { fault: fault(), at },
        ReplicaDetachRequested { at },
        ReplicaDetached {
            primary_id: PRIMARY,
            at,
        },
        ReplicaDetachFailed { fault: fault(), at },
        AccessUpdateRequested {
            access: access(),
            at,
        },
        AccessUpdated {
            access: access(),
            at,
        },
        AccessUpdateFailed { fault: fault(), at },
        InstanceDeletionRequested { at },
        InstanceDeleted { at },
        VolumeCreated {
            volume_id: "vol".into(),
            size: 7,
            volume_type: Some("ssd".into()),
            at,
        },
        ServerCreated {
            server_id: "srv".into(),
            at,
        },
        ComputeStatusChanged {
            status: ComputeStatus::VerifyResize,
            at,
        },
        GuestStatusReported {
            status: ServiceStatus::FailedTimeoutGuestagent,
            at,
        },
        AddressesAssigned {
            addresses: vec![
                Address {
                    address: "10.1.0.62".into(),
                    kind: "private".into(),
                    network: Some("net".into()),
                    port: None,
                },
                Address {
                    address: "172.24.5.114".into(),
                    kind: "public".into(),
                    network: None,
                    port: None,
                },
            ],
            at,
        },
        ProvisioningCompleted { at },
        ProvisioningFailed {
            task: Task::BuildingErrorTimeoutGa,
            fault: fault(),
            at,
        },
        ConfigurationRevisionApplied {
            configuration_id: CFG_MYSQL80,
            revision: 3,
            restart_required: true,
            at,
        },
        GuestPrepared { at },
        VolumeUsageReported {
            used: 0.12,
            total: 4.9,
            at,
        },
        GuestConfigurationApplied {
            configuration_id: Some(CFG_MYSQL80),
            revision: 2,
            in_force: false,
            at,
        },
        ServerDeleted {
            server_id: "srv-1".into(),
            at,
        },
        VolumeDeleted {
            volume_id: "vol-1".into(),
            at,
        },
        ResourcesReleased { at },
        InstanceSecretsLost {
            reason: "secrets.db is missing".into(),
            at,
        },
        InstanceResourcesLost {
            server_id: Some("srv-1".into()),
            volume_id: None,
            fault: fault(),
            at,
        },
        GuestFailed { fault: fault(), at },
        GuestConfigurationRefused {
            configuration_id: Some(uuid::Uuid::from_u128(7)),
            revision: 2,
            fault: fault(),
            at,
        },
        ReplicaSourcePromotionRequested {
            switch: switch(),
            at,
        },
        ReplicaSourcePromoted {
            new_primary_id: PRIMARY,
            old_primary_id: uuid::Uuid::from_u128(8),
            at,
        },
        ReplicaSourcePromotionFailed { fault: fault(), at },
        ReplicaSourceEjectionRequested {
            switch: switch(),
            at,
        },
        ReplicaSourceEjected {
            new_primary_id: PRIMARY,
            old_primary_id: uuid::Uuid::from_u128(8),
            at,
        },
        ReplicaSourceEjectionFailed { fault: fault(), at },
        // instance actions
        InstanceRestartRequested { at },
        InstanceRestarted { at },
        InstanceRestartFailed { fault: fault(), at },
        FlavorResizeRequested {
            from: FlavorRef {
                id: "7".into(),
                ram: 2048,
            },
            to: FlavorRef {
                id: "8".into(),
                ram: 4096,
            },
            at,
        },
        FlavorResized {
            flavor: FlavorRef {
                id: "8".into(),
                ram: 4096,
            },
            at,
        },
        FlavorResizeFailed { fault: fault(), at },
        VolumeResizeRequested { from: 5, to: 8, at },
        VolumeResized { size: 8, at },
        VolumeResizeFailed { fault: fault(), at },
        InstanceStatusReset {
            task: crate::instance::Task::Building,
            at,
        },
        // ---- databases, users and root ----
        DatabasesCreated {
            databases: vec![crate::instance::DatabaseSpec {
                name: "shop".into(),
                character_set: Some("utf8mb4".into()),
                collate: None,
            }],
            at,
        },
        DatabaseDeleted {
            name: "shop".into(),
            at,
        },
        UsersCreated {
            users: vec![crate::instance::UserSpec {
                name: "app".into(),
                host: "%".into(),
                password: sealed("pw"),
                databases: vec!["shop".into()],
            }],
            at,
        },
        UserDeleted {
            name: "app".into(),
            host: "%".into(),
            at,
        },
        UserAttributesUpdated {
            name: "app".into(),
            host: "%".into(),
            new_name: Some("app2".into()),
            new_host: None,
            password: Some(sealed("pw2")),
            at,
        },
        UserPasswordsChanged {
            users: vec![crate::instance::UserPassword {
                name: "app".into(),
                host: "%".into(),
                password: sealed("pw3"),
            }],
            at,
        },
        UserAccessGranted {
            name: "app".into(),
            host: "%".into(),
            databases: vec!["shop".into()],
            at,
        },
        UserAccessRevoked {
            name: "app".into(),
            host: "%".into(),
            database: "shop".into(),
            at,
        },
        RootEnabled {
            password: sealed("root"),
            user_id: "alice".into(),
            at,
        },
        RootDisabled { at },
        GuestChangeApplied { seq: 1, at },
        GuestChangeFailed {
            seq: 2,
            fault: fault(),
            at,
        },
    ]
}

fn switch() -> crate::instance::ReplicaSetSwitch {
    crate::instance::ReplicaSetSwitch {
        old_primary_id: uuid::Uuid::from_u128(8),
        new_primary_id: Some(PRIMARY),
        replica_ids: vec![PRIMARY, uuid::Uuid::from_u128(9)],
        requested_at: 3,
    }
}

/// Exhaustive on purpose: a new variant must be added to [`one_of_each`].
fn variant_number(e: &InstanceEvent) -> usize {
    use InstanceEvent::*;
    match e {
        InstanceCreated(_) => 0,
        InstanceRenamed { .. } => 1,
        ConfigurationAttached { .. } => 2,
        ConfigurationDetached { .. } => 3,
        DatastoreVersionUpgradeRequested { .. } => 4,
        DatastoreVersionUpgraded { .. } => 5,
        DatastoreVersionUpgradeFailed { .. } => 6,
        ReplicaDetachRequested { .. } => 7,
        ReplicaDetached { .. } => 8,
        ReplicaDetachFailed { .. } => 9,
        AccessUpdateRequested { .. } => 10,
        AccessUpdated { .. } => 11,
        AccessUpdateFailed { .. } => 12,
        InstanceDeletionRequested { .. } => 13,
        InstanceDeleted { .. } => 14,
        VolumeCreated { .. } => 15,
        ServerCreated { .. } => 16,
        ComputeStatusChanged { .. } => 17,
        GuestStatusReported { .. } => 18,
        AddressesAssigned { .. } => 19,
        ProvisioningCompleted { .. } => 20,
        ProvisioningFailed { .. } => 21,
        ConfigurationRevisionApplied { .. } => 22,
        GuestPrepared { .. } => 23,
        VolumeUsageReported { .. } => 24,
        GuestConfigurationApplied { .. } => 25,
        ServerDeleted { .. } => 26,
        VolumeDeleted { .. } => 27,
        ResourcesReleased { .. } => 28,
        InstanceSecretsLost { .. } => 29,
        InstanceResourcesLost { .. } => 30,
        GuestFailed { .. } => 31,
        GuestConfigurationRefused { .. } => 32,
        ReplicaSourcePromotionRequested { .. } => 33,
        ReplicaSourcePromoted { .. } => 34,
        ReplicaSourcePromotionFailed { .. } => 35,
        ReplicaSourceEjectionRequested { .. } => 36,
        ReplicaSourceEjected { .. } => 37,
        ReplicaSourceEjectionFailed { .. } => 38,
        // instance actions
        InstanceRestartRequested { .. } => 39,
        InstanceRestarted { .. } => 40,
        InstanceRestartFailed { .. } => 41,
        FlavorResizeRequested { .. } => 42,
        FlavorResized { .. } => 43,
        FlavorResizeFailed { .. } => 44,
        VolumeResizeRequested { .. } => 45,
        VolumeResized { .. } => 46,
        VolumeResizeFailed { .. } => 47,
        InstanceStatusReset { .. } => 48,
        DatabasesCreated { .. } => 49,
        DatabaseDeleted { .. } => 50,
        UsersCreated { .. } => 51,
        UserDeleted { .. } => 52,
        UserAttributesUpdated { .. } => 53,
        UserPasswordsChanged { .. } => 54,
        UserAccessGranted { .. } => 55,
        UserAccessRevoked { .. } => 56,
        RootEnabled { .. } => 57,
        RootDisabled { .. } => 58,
        GuestChangeApplied { .. } => 59,
        GuestChangeFailed { .. } => 60,
    }
}

#[test]
fn samples_cover_every_variant_once() {
    let numbers: Vec<usize> = one_of_each().iter().map(variant_number).collect();
    assert_eq!(numbers, (0..61).collect::<Vec<_>>());
}

#[test]
fn every_event_round_trips_through_encode_and_decode() {
    for event in one_of_each() {
        let (event_type, version, data) = event.encode();
        assert_eq!(event_type, event.event_type());
        assert_eq!(version, event.version());
        assert!(data.is_object(), "{event_type}: body is a JSON object");
        let back = decode(event_type, version, data).expect("decodes");
        assert_eq!(back, event, "{event_type}");
        assert_eq!(back.at(), now());
    }
}

#[test]
fn encoded_body_survives_a_trip_through_bytes() {
    // The store keeps the body as bytes; the JSON text must carry everything.
    for event in one_of_each() {
        let (event_type, version, data) = event.encode();
        let bytes = serde_json::to_vec(&data).unwrap();
        let data: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(decode(event_type, version, data).unwrap(), event);
    }
}

#[test]
fn event_versions_list_every_variant_exactly_once() {
    let listed: Vec<&str> = EVENT_VERSIONS.iter().map(|(t, _)| *t).collect();
    let unique: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(unique.len(), listed.len(), "no name listed twice");
    let produced: BTreeSet<&str> = one_of_each().iter().map(|e| e.event_type()).collect();
    assert_eq!(produced.len(), 61, "event_type() is distinct per variant");
    assert_eq!(
        produced, unique,
        "the list has neither missing nor extra names"
    );
    for (t, v) in EVENT_VERSIONS {
        assert_eq!(current_version(t), Some(*v));
        assert!(*v >= 1);
    }
}

#[test]
fn event_type_is_the_variant_name_in_the_json_tag() {
    for event in one_of_each() {
        let tagged = serde_json::to_value(&event).unwrap();
        assert_eq!(tagged["type"], event.event_type());
    }
}

#[test]
fn unknown_event_type_does_not_decode() {
    let err = decode("InstanceExploded", 1, serde_json::json!({})).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownType(ref t) if t == "InstanceExploded"));
    assert_eq!(err.to_string(), "unknown event type InstanceExploded");
}

#[test]
fn future_version_does_not_decode() {
    let (t, v, data) = InstanceEvent::InstanceDeleted { at: now() }.encode();
    let err = decode(t, v + 1, data).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::FutureVersion { ref event_type, version, known }
            if event_type == "InstanceDeleted" && version == v + 1 && known == v
    ));
}

#[test]
fn malformed_body_does_not_decode() {
    let err = decode("InstanceRenamed", 1, serde_json::json!({"name": 7})).unwrap_err();
    assert!(
        matches!(err, DecodeError::Malformed { ref event_type, version: 1, .. }
        if event_type == "InstanceRenamed")
    );
}

#[test]
fn statuses_are_stored_by_name() {
    let (_, _, data) = InstanceEvent::ProvisioningFailed {
        task: Task::BuildingErrorPort,
        fault: fault(),
        at: now(),
    }
    .encode();
    assert_eq!(data["task"], "BUILDING_ERROR_PORT");
    let (_, _, data) = InstanceEvent::GuestStatusReported {
        status: ServiceStatus::FailedTimeoutGuestagent,
        at: now(),
    }
    .encode();
    assert_eq!(data["status"], "FAILED_TIMEOUT_GUESTAGENT");
}

#[test]
fn events_written_before_revisions_were_recorded_still_decode() {
    // v1 bodies from before `revision` / `configuration_revision` existed.
    let attached = serde_json::json!({
        "configuration_id": CFG_MYSQL80, "restart_required": true, "at": "2026-01-01T00:00:00Z"
    });
    match decode("ConfigurationAttached", 1, attached).expect("decodes") {
        InstanceEvent::ConfigurationAttached { revision, .. } => assert_eq!(revision, 0),
        other => panic!("{other:?}"),
    }
    let (_, _, mut created) = InstanceEvent::InstanceCreated(Box::new(instance_created())).encode();
    created
        .as_object_mut()
        .unwrap()
        .remove("configuration_revision");
    match decode("InstanceCreated", 1, created).expect("decodes") {
        InstanceEvent::InstanceCreated(c) => assert_eq!(c.configuration_revision, 0),
        other => panic!("{other:?}"),
    }
}
