//! Business refusals of the Instance aggregate, each with Trove's message (verbatim from
//! the spec where upstream's text is observable) and the fault class it maps to.

use uuid::Uuid;

use crate::fault::Fault;

/// Why `decide` refused a command.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DomainError {
    // ---- not found -------------------------------------------------------------------
    /// Instance (or replica source, or backup) missing, deleted, or another project's.
    #[error("Resource {0} cannot be found.")]
    ResourceNotFound(String),
    #[error("Datastore '{0}' cannot be found.")]
    DatastoreNotFound(String),
    /// A version looked up by UUID that does not exist (upstream's generic model error).
    #[error("DBDatastoreVersion Not Found")]
    DatastoreVersionIdNotFound,
    #[error("Configuration group with ID {0} could not be found.")]
    CreateConfigurationNotFound(String),
    #[error("Configuration group id: {0} could not be found.")]
    AttachConfigurationNotFound(String),
    #[error("User {0} cannot be found on the instance.")]
    UserNotFound(String),
    #[error("Database {0} cannot be found on the instance.")]
    DatabaseNotFound(String),
    #[error("Root user has never been enabled on the instance.")]
    RootNeverEnabled,

    // ---- bad request -----------------------------------------------------------------
    #[error("Cannot specify flavor when creating replicas.")]
    ReplicaWithFlavor,
    #[error("Cannot specify datastore when creating replicas.")]
    ReplicaWithDatastore,
    #[error("Cannot specify volume when creating replicas.")]
    ReplicaWithVolume,
    #[error("Cannot specify locality when creating replicas.")]
    ReplicaWithLocality,
    #[error("Replica count only valid when creating replicas. Cannot create {0} instances.")]
    ReplicaCountWithoutReplicaOf(u32),
    #[error("Please specify datastore. No default datastore is defined.")]
    NoDefaultDatastore,
    #[error("Please specify datastore. Default datastore '{0}' cannot be found.")]
    DefaultDatastoreNotFound(String),
    #[error("Default version for datastore '{0}' not found.")]
    DefaultVersionNotFound(String),
    #[error("Datastore version '{0}' cannot be found.")]
    DatastoreVersionNotFound(String),
    #[error("Multiple datastore versions found for '{0}', use an UUID or specify both the name and version number to be more specific.")]
    DatastoreVersionAmbiguous(String),
    #[error("Datastore version '{0}' is not active.")]
    DatastoreVersionInactive(String),
    #[error("Database name \"{0}\" is on the reserved list: ['mysql', 'information_schema', 'performance_schema', 'sys'].")]
    ReservedDatabase(String),
    #[error("Two or more databases share the same name in the initial databases list. Please correct the names or remove the duplicate entries.")]
    DuplicateDatabases,
    #[error("User name \"{0}\" is on the reserved list: ['os_admin', 'root'].")]
    ReservedUser(String),
    #[error("Two or more users share the same name and host in the initial users list. Please correct the names or remove the duplicate entries.")]
    DuplicateUsers,
    #[error("The request indicates that user {user} should have access to database {database}, but database {database} is not included in the initial databases list.")]
    UserDatabaseNotListed { user: String, database: String },
    #[error("Cannot create a replica with users or databases.")]
    ReplicaWithUsersOrDatabases,
    #[error("Cannot specify IP address when creating replicas.")]
    ReplicaNicWithIp,
    #[error("Instance network or subnet needs to be specified.")]
    NicWithoutNetwork,
    #[error("Instance subnet needs to be specified.")]
    NicIpWithoutSubnet,
    #[error("Invalid locality '{0}'. Must be one of ['affinity', 'soft-affinity', 'anti-affinity', 'soft-anti-affinity']")]
    InvalidLocality(String),
    #[error("Flavor {flavor} is not supported for datastore version {version_id}")]
    FlavorNotSupported { flavor: String, version_id: Uuid },
    /// Unknown flavor at create: 400, not 404 (upstream's `FlavorNotFound` is unmapped).
    #[error("Resource {0} cannot be found.")]
    FlavorNotFound(String),
    #[error("Only specific volume types are allowed for a datastore version {0}. You must specify a valid volume type.")]
    VolumeTypeRequired(Uuid),
    #[error("The volume type {volume_type} is not valid for datastore version {version_id}.")]
    VolumeTypeInvalid {
        volume_type: String,
        version_id: Uuid,
    },
    #[error("Volume size was not specified.")]
    VolumeSizeMissing,
    #[error("The datastore from which the backup was taken, {backup}, does not match the destination datastore of {target}.")]
    BackupDatastoreMismatch { backup: String, target: String },
    /// Stricter than upstream (ADR 0002): a physical backup starts only on the version
    /// it was taken from.
    #[error("The backup was taken from datastore version {backup}; it can be restored into an instance of that version only, not {target}.")]
    BackupVersionMismatch { backup: String, target: String },
    #[error("Replication is not supported for the '{0}' datastore.")]
    ReplicationNotSupported(String),
    /// Single-region service: another region is refused (upstream would try cross-region).
    #[error(
        "Region '{requested}' is not served here; this service serves only region '{served}'."
    )]
    RegionNotServed { requested: String, served: String },
    #[error("Instance {id} already has a Configuration Group attached: {current}.")]
    ConfigurationAlreadyAttached { id: Uuid, current: Uuid },
    #[error("The operation you have requested cannot be executed because the instance status is currently: {0}.")]
    ConfigurationInvalidState(String),
    #[error("Datastore Version on Configuration {group} does not match the Datastore Version on the instance {instance}.")]
    ConfigurationDatastoreMismatch { group: Uuid, instance: Uuid },
    #[error("Instance {0} is not a replica.")]
    NotAReplica(Uuid),
    /// A database or user name, host or password a datastore refuses (upstream's model
    /// checks; the message is upstream's).
    #[error("{0}")]
    InvalidGuestInput(String),
    #[error("A database with the name \"{0}\" already exists.")]
    DatabaseAlreadyExists(String),
    #[error("A user with the name \"{0}\" already exists.")]
    UserAlreadyExists(String),
    /// A saga report that does not fit the instance's state (e.g. not an error task).
    #[error("{0}")]
    InvalidReport(String),

    // ---- other classes ---------------------------------------------------------------
    /// 401: upstream raises its `Forbidden` class, which maps to 401.
    #[error("Cannot create a replica of a replica {0}")]
    ReplicaOfReplica(Uuid),
    /// 403.
    #[error("Detach replicas before deleting replica source.")]
    ReplicaSourceDeleteForbidden,
    /// 403.
    #[error("Backup is too large for given flavor or volume. Backup size: {backup} GBs. Available size: {available} GBs.")]
    BackupTooLarge { backup: f64, available: u64 },
    /// 409.
    #[error(
        "Unable to create instance because backup {id} is not completed. Actual state: {state}."
    )]
    BackupNotCompleted { id: Uuid, state: String },
    /// 409: the instance id is taken (a create replayed with another body).
    #[error("Instance {0} already exists.")]
    InstanceAlreadyExists(Uuid),
    /// 413.
    #[error("Volume 'size' cannot exceed maximum of {max} GB, {size} cannot be accepted.")]
    VolumeTooLarge { max: u64, size: u64 },
    /// 413: resource names sorted, rendered as a Python list.
    #[error("Quota exceeded for resources: [{}].", .0.iter().map(|r| format!("'{r}'")).collect::<Vec<_>>().join(", "))]
    QuotaExceeded(Vec<String>),
    /// 422: PUT/PATCH on an instance without a compute server.
    #[error("Instance {0} is not ready.")]
    InstanceNotReady(Uuid),
    /// 422: DELETE during BUILD.
    #[error("Instance {0} is not ready. (Status is BUILD).")]
    InstanceBuilding(Uuid),
    /// 422: the "can perform action" gate (lifecycle §5.1).
    #[error("Instance {id} is not currently available for an action to be performed ({kind} status was {value}).")]
    NotAvailableForAction {
        id: Uuid,
        kind: &'static str,
        value: String,
    },
    /// 422: databases, users and root exist for MySQL, MariaDB and PostgreSQL only.
    #[error("Operation not supported for datastore {0}.")]
    GuestOperationNotSupported(String),
    /// 422: upstream's `load_and_verify` (the datastore is not running).
    #[error("Instance {id} is not ready, status: {status}.")]
    GuestNotRunning { id: Uuid, status: String },
    /// 422: a replica's databases, users and root follow its source; a change made on
    /// the replica itself would diverge from it (on MariaDB: errant GTIDs that break a
    /// later switchover).
    #[error("Instance {0} is a replica: change its databases, users and root on its source.")]
    GuestChangeOnReplica(Uuid),
    /// 501.
    #[error("Volume support is not enabled.")]
    VolumeNotSupported,

    // ---- replica set: promote / eject (issue #15) -------------------------------------
    /// 400: eject on an instance without replicas.
    #[error("Instance {0} is not a replica source.")]
    NotAReplicaSource(Uuid),
    /// 400: eject of a source that is not failed.
    #[error("Replica Source {0} cannot be ejected as it has a current heartbeat")]
    ReplicaSourceHeartbeatCurrent(Uuid),
    /// 422: `reset_status` of a member of a promote or eject whose coordinator still runs
    /// it (the member would never learn the new topology).
    #[error("Instance {id} is switching its replica set with instance {coordinator}: reset the status of {coordinator} first.")]
    SwitchMemberReset { id: Uuid, coordinator: Uuid },
    // ---- instance actions: restart, resize, reset status ----------------------------
    /// 400: upstream's `BadRequest` for a flavor resize to the flavor the instance has.
    #[error("The new flavor id must be different than the current flavor id of '{0}'.")]
    ResizeToSameFlavor(String),
    /// 400: upstream's `BadRequest`; a volume resize may only grow it.
    #[error("The new volume 'size' must be larger than the current volume size of '{0}'.")]
    VolumeMustGrow(u64),
    /// 400: upstream's `BadRequest` for a volume resize of an instance without one.
    #[error("Instance {0} has no volume.")]
    NoVolume(Uuid),
    /// 422 (ours): `reset_status` of an instance being deleted. Upstream would take it
    /// back to a live instance whose quota was already released; the teardown is
    /// retried by the saga until it finishes, so there is nothing stuck to reset.
    #[error("Instance {0} is being deleted; its status cannot be reset. The deletion continues.")]
    ResetWhileDeleting(Uuid),
}

impl DomainError {
    /// The Trove fault class (HTTP status and body key) of this refusal.
    pub fn fault(&self) -> Fault {
        use DomainError::*;
        match self {
            ResourceNotFound(_)
            | DatastoreNotFound(_)
            | DatastoreVersionIdNotFound
            | CreateConfigurationNotFound(_)
            | AttachConfigurationNotFound(_)
            | UserNotFound(_)
            | DatabaseNotFound(_)
            | RootNeverEnabled => Fault::ItemNotFound,
            ReplicaOfReplica(_) => Fault::Unauthorized,
            ReplicaSourceDeleteForbidden | BackupTooLarge { .. } => Fault::Forbidden,
            BackupNotCompleted { .. } | InstanceAlreadyExists(_) => Fault::Conflict,
            VolumeTooLarge { .. } | QuotaExceeded(_) => Fault::OverLimit,
            InstanceNotReady(_)
            | InstanceBuilding(_)
            | NotAvailableForAction { .. }
            | GuestOperationNotSupported(_)
            | GuestNotRunning { .. }
            | SwitchMemberReset { .. }
            | ResetWhileDeleting(_)
            | GuestChangeOnReplica(_) => Fault::UnprocessableEntity,
            VolumeNotSupported => Fault::NotImplemented,
            // instance actions
            ResizeToSameFlavor(_) | VolumeMustGrow(_) | NoVolume(_) => Fault::BadRequest,
            _ => Fault::BadRequest,
        }
    }
}
