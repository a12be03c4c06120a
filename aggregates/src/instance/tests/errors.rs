//! Every refusal's fault class (spec `instances-api.md` §4.2 and the per-endpoint
//! tables), and the messages not already asserted next to their command.

use uuid::Uuid;

use super::support::*;
use crate::fault::Fault;
use crate::instance::DomainError;

/// The fault class the spec gives each refusal (its status is the HTTP layer's).
/// Exhaustive on purpose: a new variant does not compile until its class is written
/// down here.
fn expected_fault(e: &DomainError) -> Fault {
    use DomainError::*;
    match e {
        ResourceNotFound(_) => Fault::ItemNotFound,
        DatastoreNotFound(_) => Fault::ItemNotFound,
        DatastoreVersionIdNotFound => Fault::ItemNotFound,
        CreateConfigurationNotFound(_) => Fault::ItemNotFound,
        AttachConfigurationNotFound(_) => Fault::ItemNotFound,
        ReplicaWithFlavor => Fault::BadRequest,
        ReplicaWithDatastore => Fault::BadRequest,
        ReplicaWithVolume => Fault::BadRequest,
        ReplicaWithLocality => Fault::BadRequest,
        ReplicaCountWithoutReplicaOf(_) => Fault::BadRequest,
        NoDefaultDatastore => Fault::BadRequest,
        DefaultDatastoreNotFound(_) => Fault::BadRequest,
        DefaultVersionNotFound(_) => Fault::BadRequest,
        DatastoreVersionNotFound(_) => Fault::BadRequest,
        DatastoreVersionAmbiguous(_) => Fault::BadRequest,
        DatastoreVersionInactive(_) => Fault::BadRequest,
        ReservedDatabase(_) => Fault::BadRequest,
        DuplicateDatabases => Fault::BadRequest,
        ReservedUser(_) => Fault::BadRequest,
        DuplicateUsers => Fault::BadRequest,
        UserDatabaseNotListed { .. } => Fault::BadRequest,
        ReplicaWithUsersOrDatabases => Fault::BadRequest,
        ReplicaNicWithIp => Fault::BadRequest,
        NicWithoutNetwork => Fault::BadRequest,
        NicIpWithoutSubnet => Fault::BadRequest,
        InvalidLocality(_) => Fault::BadRequest,
        FlavorNotSupported { .. } => Fault::BadRequest,
        FlavorNotFound(_) => Fault::BadRequest,
        VolumeTypeRequired(_) => Fault::BadRequest,
        VolumeTypeInvalid { .. } => Fault::BadRequest,
        VolumeSizeMissing => Fault::BadRequest,
        BackupDatastoreMismatch { .. } => Fault::BadRequest,
        BackupVersionMismatch { .. } => Fault::BadRequest,
        ReplicationNotSupported(_) => Fault::BadRequest,
        RegionNotServed { .. } => Fault::BadRequest,
        ConfigurationAlreadyAttached { .. } => Fault::BadRequest,
        ConfigurationInvalidState(_) => Fault::BadRequest,
        ConfigurationDatastoreMismatch { .. } => Fault::BadRequest,
        NotAReplica(_) => Fault::BadRequest,
        InvalidReport(_) => Fault::BadRequest,
        ReplicaOfReplica(_) => Fault::Unauthorized,
        ReplicaSourceDeleteForbidden => Fault::Forbidden,
        BackupTooLarge { .. } => Fault::Forbidden,
        BackupNotCompleted { .. } => Fault::Conflict,
        InstanceAlreadyExists(_) => Fault::Conflict,
        VolumeTooLarge { .. } => Fault::OverLimit,
        QuotaExceeded(_) => Fault::OverLimit,
        InstanceNotReady(_) => Fault::UnprocessableEntity,
        InstanceBuilding(_) => Fault::UnprocessableEntity,
        NotAvailableForAction { .. } => Fault::UnprocessableEntity,
        VolumeNotSupported => Fault::NotImplemented,
        NotAReplicaSource(_) => Fault::BadRequest,
        ReplicaSourceHeartbeatCurrent(_) => Fault::BadRequest,
        SwitchMemberReset { .. } => Fault::UnprocessableEntity,
        // instance actions
        ResizeToSameFlavor(_) => Fault::BadRequest,
        VolumeMustGrow(_) => Fault::BadRequest,
        NoVolume(_) => Fault::BadRequest,
        ResetWhileDeleting(_) => Fault::UnprocessableEntity,
        UserNotFound(_) => Fault::ItemNotFound,
        DatabaseNotFound(_) => Fault::ItemNotFound,
        RootNeverEnabled => Fault::ItemNotFound,
        InvalidGuestInput(_) => Fault::BadRequest,
        DatabaseAlreadyExists(_) => Fault::BadRequest,
        UserAlreadyExists(_) => Fault::BadRequest,
        GuestOperationNotSupported(_) => Fault::UnprocessableEntity,
        GuestNotRunning { .. } => Fault::UnprocessableEntity,
        GuestChangeOnReplica(_) => Fault::UnprocessableEntity,
    }
}

/// One value of every variant.
// A table: one literal value per error variant.
#[allow(clippy::too_many_lines)]
fn one_of_each() -> Vec<DomainError> {
    use DomainError::*;
    let id = INSTANCE;
    vec![
        ResourceNotFound(id.to_string()),
        DatastoreNotFound("foo".into()),
        DatastoreVersionIdNotFound,
        CreateConfigurationNotFound("c".into()),
        AttachConfigurationNotFound("c".into()),
        ReplicaWithFlavor,
        ReplicaWithDatastore,
        ReplicaWithVolume,
        ReplicaWithLocality,
        ReplicaCountWithoutReplicaOf(3),
        NoDefaultDatastore,
        DefaultDatastoreNotFound("x".into()),
        DefaultVersionNotFound("x".into()),
        DatastoreVersionNotFound("x".into()),
        DatastoreVersionAmbiguous("x".into()),
        DatastoreVersionInactive("x".into()),
        ReservedDatabase("mysql".into()),
        DuplicateDatabases,
        ReservedUser("root".into()),
        DuplicateUsers,
        UserDatabaseNotListed {
            user: "u".into(),
            database: "d".into(),
        },
        ReplicaWithUsersOrDatabases,
        ReplicaNicWithIp,
        NicWithoutNetwork,
        NicIpWithoutSubnet,
        InvalidLocality("x".into()),
        FlavorNotSupported {
            flavor: "7".into(),
            version_id: V_MYSQL_80,
        },
        FlavorNotFound("7".into()),
        VolumeTypeRequired(V_MYSQL_80),
        VolumeTypeInvalid {
            volume_type: "t".into(),
            version_id: V_MYSQL_80,
        },
        VolumeSizeMissing,
        BackupDatastoreMismatch {
            backup: "a".into(),
            target: "b".into(),
        },
        BackupVersionMismatch {
            backup: "a".into(),
            target: "b".into(),
        },
        ReplicationNotSupported("redis".into()),
        RegionNotServed {
            requested: "RegionTwo".into(),
            served: "RegionOne".into(),
        },
        ConfigurationAlreadyAttached {
            id,
            current: CFG_MYSQL80,
        },
        ConfigurationInvalidState("BUILD".into()),
        ConfigurationDatastoreMismatch {
            group: V_PG_13,
            instance: V_MYSQL_80,
        },
        NotAReplica(id),
        InvalidReport("x".into()),
        ReplicaOfReplica(PRIMARY),
        ReplicaSourceDeleteForbidden,
        BackupTooLarge {
            backup: 1.5,
            available: 1,
        },
        BackupNotCompleted {
            id: BK_RUNNING,
            state: "NEW".into(),
        },
        InstanceAlreadyExists(id),
        VolumeTooLarge { max: 10, size: 11 },
        QuotaExceeded(vec!["instances".into()]),
        InstanceNotReady(id),
        InstanceBuilding(id),
        NotAvailableForAction {
            id,
            kind: "instance",
            value: "BUILD".into(),
        },
        VolumeNotSupported,
        NotAReplicaSource(id),
        ReplicaSourceHeartbeatCurrent(id),
        SwitchMemberReset {
            id,
            coordinator: id,
        },
        ResizeToSameFlavor("7".into()),
        VolumeMustGrow(5),
        NoVolume(id),
        ResetWhileDeleting(id),
        UserNotFound("u".into()),
        DatabaseNotFound("d".into()),
        RootNeverEnabled,
        InvalidGuestInput("bad".into()),
        DatabaseAlreadyExists("d".into()),
        UserAlreadyExists("u".into()),
        GuestOperationNotSupported("redis".into()),
        GuestNotRunning {
            id,
            status: "BUILD".into(),
        },
        GuestChangeOnReplica(id),
    ]
}

#[test]
fn every_refusal_maps_to_the_specs_fault_class() {
    let all = one_of_each();
    assert_eq!(all.len(), 67);
    for e in &all {
        assert_eq!(e.fault(), expected_fault(e), "{e:?}");
    }
}

#[test]
fn every_refusal_has_a_non_empty_message() {
    for e in one_of_each() {
        assert!(!e.to_string().trim().is_empty(), "{e:?}");
    }
}

#[test]
fn fault_classes_have_troves_body_keys() {
    for (fault, name) in [
        (Fault::BadRequest, "badRequest"),
        (Fault::Unauthorized, "unauthorized"),
        (Fault::Forbidden, "forbidden"),
        (Fault::ItemNotFound, "itemNotFound"),
        (Fault::Conflict, "conflict"),
        (Fault::OverLimit, "overLimit"),
        (Fault::UnprocessableEntity, "unprocessableEntity"),
        (Fault::NotImplemented, "notImplemented"),
    ] {
        assert_eq!(fault.name(), name);
    }
}

#[test]
fn messages_not_asserted_elsewhere() {
    let id = Uuid::from_u128(0xabc);
    assert_eq!(
        DomainError::InstanceAlreadyExists(id).to_string(),
        format!("Instance {id} already exists.")
    );
    assert_eq!(
        DomainError::RegionNotServed {
            requested: "RegionTwo".into(),
            served: "RegionOne".into()
        }
        .to_string(),
        "Region 'RegionTwo' is not served here; this service serves only region 'RegionOne'."
    );
    assert_eq!(
        DomainError::NotAvailableForAction {
            id,
            kind: "instance",
            value: "BUILD".into()
        }
        .to_string(),
        format!(
            "Instance {id} is not currently available for an action to be performed \
             (instance status was BUILD)."
        )
    );
    assert_eq!(
        DomainError::QuotaExceeded(vec!["instances".into(), "ram".into(), "volumes".into()])
            .to_string(),
        "Quota exceeded for resources: ['instances', 'ram', 'volumes']."
    );
    assert_eq!(DomainError::InvalidReport("why".into()).to_string(), "why");
}
