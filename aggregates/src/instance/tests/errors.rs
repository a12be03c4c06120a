//! Every refusal's fault class (spec `instances-api.md` §4.2 and the per-endpoint
//! tables), and the messages not already asserted next to their command.

use uuid::Uuid;

use super::support::*;
use crate::fault::Fault;
use crate::instance::DomainError;

/// The status code the spec gives each refusal. Exhaustive on purpose: a new variant
/// does not compile until its class is written down here.
fn expected_status(e: &DomainError) -> u16 {
    use DomainError::*;
    match e {
        ResourceNotFound(_) => 404,
        DatastoreNotFound(_) => 404,
        DatastoreVersionIdNotFound => 404,
        CreateConfigurationNotFound(_) => 404,
        AttachConfigurationNotFound(_) => 404,
        ReplicaWithFlavor => 400,
        ReplicaWithDatastore => 400,
        ReplicaWithVolume => 400,
        ReplicaWithLocality => 400,
        ReplicaCountWithoutReplicaOf(_) => 400,
        NoDefaultDatastore => 400,
        DefaultDatastoreNotFound(_) => 400,
        DefaultVersionNotFound(_) => 400,
        DatastoreVersionNotFound(_) => 400,
        DatastoreVersionAmbiguous(_) => 400,
        DatastoreVersionInactive(_) => 400,
        ReservedDatabase(_) => 400,
        DuplicateDatabases => 400,
        ReservedUser(_) => 400,
        DuplicateUsers => 400,
        UserDatabaseNotListed { .. } => 400,
        ReplicaWithUsersOrDatabases => 400,
        ReplicaNicWithIp => 400,
        NicWithoutNetwork => 400,
        NicIpWithoutSubnet => 400,
        InvalidLocality(_) => 400,
        FlavorNotSupported { .. } => 400,
        FlavorNotFound(_) => 400,
        VolumeTypeRequired(_) => 400,
        VolumeTypeInvalid { .. } => 400,
        VolumeSizeMissing => 400,
        BackupDatastoreMismatch { .. } => 400,
        ReplicationNotSupported(_) => 400,
        RegionNotServed { .. } => 400,
        ConfigurationAlreadyAttached { .. } => 400,
        ConfigurationInvalidState(_) => 400,
        ConfigurationDatastoreMismatch { .. } => 400,
        NotAReplica(_) => 400,
        InvalidReport(_) => 400,
        ReplicaOfReplica(_) => 401,
        ReplicaSourceDeleteForbidden => 403,
        BackupTooLarge { .. } => 403,
        BackupNotCompleted { .. } => 409,
        InstanceAlreadyExists(_) => 409,
        VolumeTooLarge { .. } => 413,
        QuotaExceeded(_) => 413,
        InstanceNotReady(_) => 422,
        InstanceBuilding(_) => 422,
        NotAvailableForAction { .. } => 422,
        VolumeNotSupported => 501,
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
    ]
}

#[test]
fn every_refusal_maps_to_the_specs_fault_class() {
    let all = one_of_each();
    assert_eq!(all.len(), 50);
    for e in &all {
        assert_eq!(e.fault().status(), expected_status(e), "{e:?}");
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
    for (fault, status, name) in [
        (Fault::BadRequest, 400, "badRequest"),
        (Fault::Unauthorized, 401, "unauthorized"),
        (Fault::Forbidden, 403, "forbidden"),
        (Fault::ItemNotFound, 404, "itemNotFound"),
        (Fault::Conflict, 409, "conflict"),
        (Fault::OverLimit, 413, "overLimit"),
        (Fault::UnprocessableEntity, 422, "unprocessableEntity"),
        (Fault::NotImplemented, 501, "notImplemented"),
    ] {
        assert_eq!(fault.status(), status);
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
