//! Instance commands: imperative requests, already checked against the JSON schema by
//! the shell (types, lengths, formats); `decide` enforces every rule that needs state or
//! the catalog. Secrets arrive sealed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{
    Access, DatabaseSpec, FaultInfo, Nic, ReplicaSetSwitch, SealedSecret, SwitchId, UserPassword,
};
use super::status::{ComputeStatus, ServiceStatus, Task};
use super::Address;

/// `datastore` of a create request.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DatastoreRequest {
    /// Datastore name or id.
    pub datastore_type: Option<String>,
    /// Version name or id.
    pub version: Option<String>,
    pub version_number: Option<String>,
}

/// `volume` of a create request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRequest {
    /// GB, already converted from the integer or digit-string form.
    pub size: u64,
    pub volume_type: Option<String>,
}

/// A user of a create request, password sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRequest {
    pub name: String,
    /// `None` = `%`.
    pub host: Option<String>,
    pub password: SealedSecret,
    pub databases: Vec<String>,
}

/// `CreateInstance`: everything of the create body (spec `instances-api.md` §8.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateInstance {
    /// Chosen by the shell (the stream name needs it before the append).
    pub instance_id: Uuid,
    pub name: String,
    /// The flavor id (last path segment of `flavorRef`), if given.
    pub flavor_ref: Option<String>,
    pub volume: Option<VolumeRequest>,
    pub datastore: Option<DatastoreRequest>,
    pub databases: Vec<DatabaseSpec>,
    pub users: Vec<UserRequest>,
    pub nics: Vec<Nic>,
    pub availability_zone: Option<String>,
    pub region_name: Option<String>,
    pub modules: Vec<Uuid>,
    /// `restorePoint.backupRef`.
    pub restore_backup_id: Option<Uuid>,
    pub replica_of: Option<Uuid>,
    pub replica_count: Option<u32>,
    pub locality: Option<String>,
    /// Configuration group id (last path segment of the value), if given.
    pub configuration: Option<String>,
    /// `access` as given (extra keys kept verbatim).
    pub access: Option<serde_json::Value>,
    /// A root password the shell generated and sealed; used only when the datastore
    /// version has `root_on_create` and the create does not restore a backup.
    pub root_password: Option<SealedSecret>,
}

/// A user to create on a running instance (`POST /users`), password sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestUserRequest {
    pub name: String,
    /// `%` when none was given.
    pub host: String,
    pub password: SealedSecret,
    pub databases: Vec<String>,
}

/// New attributes of a user (`PUT /users/{user}`); `None` keeps the current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserAttributes {
    pub name: Option<String>,
    pub host: Option<String>,
    pub password: Option<SealedSecret>,
}

/// Everything one can ask of an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InstanceCommand {
    /// `POST /instances`.
    CreateInstance(Box<CreateInstance>),
    /// PUT/PATCH `name`.
    RenameInstance { name: String },
    /// PUT/PATCH `configuration: <id>` (the raw id string; unknown or malformed → 404).
    AttachConfiguration { configuration_id: String },
    /// PUT/PATCH `configuration: null` or `{}`.
    DetachConfiguration,
    /// PUT/PATCH `datastore_version`: a version name or id within the instance's datastore.
    UpgradeDatastoreVersion { version: String },
    /// PUT/PATCH `replica_of` / `slave_of`.
    DetachReplica,
    /// PUT `access`.
    UpdateAccess { access: Access },
    /// `DELETE /instances/{id}`.
    DeleteInstance,

    // What the provisioning saga reports. Each is idempotent: reporting a fact the
    // state already holds decides no event, so a replayed saga step changes nothing.
    /// The data volume was created.
    RecordVolumeCreated {
        volume_id: String,
        size: u64,
        volume_type: Option<String>,
    },
    /// The compute server was created.
    RecordServerCreated { server_id: String },
    /// The guest accepted the prepare request.
    RecordGuestPrepared,
    /// The guest reported volume usage (GB).
    RecordVolumeUsage { used: f64, total: f64 },
    /// The guest applied this configuration (group and revision; `None`: no group).
    RecordGuestConfiguration {
        configuration_id: Option<Uuid>,
        revision: u64,
        /// Every value is in force (the guest restarted where a value needed it): a
        /// task RESTART_REQUIRED for this configuration ends.
        in_force: bool,
    },
    /// The compute server was deleted.
    RecordServerDeleted { server_id: String },
    /// The data volume was deleted.
    RecordVolumeDeleted { volume_id: String },
    /// A failed build released everything it created.
    RecordResourcesReleased,
    /// The compute server's status changed.
    RecordComputeStatus { status: ComputeStatus },
    /// The guest reported (a heartbeat).
    RecordGuestStatus { status: ServiceStatus },
    /// The supervisor gave up restarting the instance's database server.
    RecordGuestFailure { fault: FaultInfo },
    /// The guest refused to apply this configuration (a value its server rejects).
    RecordConfigurationRefused {
        configuration_id: Option<Uuid>,
        revision: u64,
        fault: FaultInfo,
    },
    /// Addresses were assigned.
    RecordAddresses { addresses: Vec<Address> },
    /// The attached group changed: apply its revision `revision` to the guest.
    ApplyConfigurationRevision {
        configuration_id: Uuid,
        revision: u64,
        restart_required: bool,
    },
    /// Provisioning finished successfully.
    CompleteProvisioning,
    /// A provisioning step failed for good: `task` must be an error task.
    FailProvisioning { task: Task, fault: FaultInfo },
    /// The upgrade finished.
    CompleteUpgrade,
    /// The upgrade failed.
    FailUpgrade { fault: FaultInfo },
    /// The replica is detached on the guest.
    CompleteReplicaDetach,
    /// Detaching the replica failed.
    FailReplicaDetach { fault: FaultInfo },
    /// The access change is applied.
    CompleteAccessUpdate,
    /// The access change failed.
    FailAccessUpdate { fault: FaultInfo },
    /// Teardown finished: soft-delete.
    CompleteDeletion,
    /// The vault holds no key for this instance's sealed passwords, and the operator
    /// accepted the loss (`--accept-lost-secrets`).
    RecordSecretsLost { reason: String },
    /// A reconciliation found the instance's server and/or volume gone from the cloud
    /// (each `Some` names the one that is gone).
    RecordResourcesLost {
        server_id: Option<String>,
        volume_id: Option<String>,
        fault: FaultInfo,
    },

    // ---- replica set: promote / eject (issue #15; `decide::replica_set`) ----------------------
    /// `POST .../action {"promote_to_replica_source": {}}` on a replica.
    PromoteToReplicaSource,
    /// `POST .../action {"eject_replica_source": {}}` on a replica source.
    EjectReplicaSource {
        /// The shell saw no heartbeat of the source within the heartbeat expiry.
        silent: bool,
    },
    /// The command path records the switch the named instance accepted on another
    /// member of its replica set (`eject`: an eject, else a promote).
    JoinReplicaSetSwitch {
        switch: ReplicaSetSwitch,
        eject: bool,
    },
    /// The saga switched the set (the switch `switch`): `new_primary_id` is its source
    /// now.
    CompleteReplicaSetSwitch {
        new_primary_id: Uuid,
        switch: SwitchId,
    },
    /// The switch `switch` failed (PROMOTION_ERROR / EJECTION_ERROR).
    FailReplicaSetSwitch { fault: FaultInfo, switch: SwitchId },
    // ---- instance actions: restart, resize, reset status ----------------------------
    /// `POST /instances/{id}/action {"restart": {}}`.
    RestartInstance,
    /// `POST .../action {"resize": {"flavorRef": ...}}`: the flavor id.
    ResizeFlavor { flavor_ref: String },
    /// `POST .../action {"resize": {"volume": {"size": N}}}`: the new size, GB.
    ResizeVolume { size: u64 },
    /// `POST .../action {"reset_status": {}}` (admin).
    ResetStatus,
    /// Saga report: the database server restarted and is healthy.
    CompleteRestart,
    /// Saga report: the restart failed for good.
    FailRestart { fault: FaultInfo },
    /// Saga report: the resize in progress (flavor or volume) is done.
    CompleteResize,
    /// Saga report: the resize in progress failed for good (rolled back).
    FailResize { fault: FaultInfo },
    // ---- databases, users and root (issue #15, ADR 0010) ---------------------------
    /// `POST /databases`.
    CreateDatabases { databases: Vec<DatabaseSpec> },
    /// `DELETE /databases/{name}`.
    DeleteDatabase { name: String },
    /// `POST /users`.
    CreateUsers { users: Vec<GuestUserRequest> },
    /// `DELETE /users/{user}`.
    DeleteUser { name: String, host: String },
    /// `PUT /users/{user}`.
    UpdateUserAttributes {
        name: String,
        host: String,
        update: UserAttributes,
    },
    /// `PUT /users`: new passwords.
    ChangeUserPasswords { users: Vec<UserPassword> },
    /// `PUT /users/{user}/databases`.
    GrantUserAccess {
        name: String,
        host: String,
        databases: Vec<String>,
    },
    /// `DELETE /users/{user}/databases/{name}`.
    RevokeUserAccess {
        name: String,
        host: String,
        database: String,
    },
    /// `POST /root`: the password generated (or given) by the shell, sealed.
    EnableRoot { password: SealedSecret },
    /// `DELETE /root`.
    DisableRoot,
    /// The guest applied change `seq` of the instance's databases, users or root.
    RecordGuestChangeApplied { seq: u64 },
    /// The guest refused change `seq` for good.
    RecordGuestChangeFailed { seq: u64, fault: FaultInfo },
}

impl InstanceCommand {
    /// Whether this is a databases/users/root command or report
    /// ([`super::guestdb::decide_guest_admin`] decides it).
    pub fn is_guest_admin(&self) -> bool {
        use InstanceCommand::*;
        matches!(
            self,
            CreateDatabases { .. }
                | DeleteDatabase { .. }
                | CreateUsers { .. }
                | DeleteUser { .. }
                | UpdateUserAttributes { .. }
                | ChangeUserPasswords { .. }
                | GrantUserAccess { .. }
                | RevokeUserAccess { .. }
                | EnableRoot { .. }
                | DisableRoot
                | RecordGuestChangeApplied { .. }
                | RecordGuestChangeFailed { .. }
        )
    }

    /// Stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        use InstanceCommand::*;
        match self {
            CreateInstance(_) => "CreateInstance",
            RenameInstance { .. } => "RenameInstance",
            AttachConfiguration { .. } => "AttachConfiguration",
            DetachConfiguration => "DetachConfiguration",
            UpgradeDatastoreVersion { .. } => "UpgradeDatastoreVersion",
            DetachReplica => "DetachReplica",
            UpdateAccess { .. } => "UpdateAccess",
            DeleteInstance => "DeleteInstance",
            RecordVolumeCreated { .. } => "RecordVolumeCreated",
            RecordServerCreated { .. } => "RecordServerCreated",
            RecordGuestPrepared => "RecordGuestPrepared",
            RecordVolumeUsage { .. } => "RecordVolumeUsage",
            RecordGuestConfiguration { .. } => "RecordGuestConfiguration",
            RecordServerDeleted { .. } => "RecordServerDeleted",
            RecordVolumeDeleted { .. } => "RecordVolumeDeleted",
            RecordResourcesReleased => "RecordResourcesReleased",
            RecordComputeStatus { .. } => "RecordComputeStatus",
            RecordGuestStatus { .. } => "RecordGuestStatus",
            RecordGuestFailure { .. } => "RecordGuestFailure",
            RecordConfigurationRefused { .. } => "RecordConfigurationRefused",
            RecordAddresses { .. } => "RecordAddresses",
            ApplyConfigurationRevision { .. } => "ApplyConfigurationRevision",
            CompleteProvisioning => "CompleteProvisioning",
            FailProvisioning { .. } => "FailProvisioning",
            CompleteUpgrade => "CompleteUpgrade",
            FailUpgrade { .. } => "FailUpgrade",
            CompleteReplicaDetach => "CompleteReplicaDetach",
            FailReplicaDetach { .. } => "FailReplicaDetach",
            CompleteAccessUpdate => "CompleteAccessUpdate",
            FailAccessUpdate { .. } => "FailAccessUpdate",
            CompleteDeletion => "CompleteDeletion",
            RecordSecretsLost { .. } => "RecordSecretsLost",
            RecordResourcesLost { .. } => "RecordResourcesLost",
            PromoteToReplicaSource => "PromoteToReplicaSource",
            EjectReplicaSource { .. } => "EjectReplicaSource",
            JoinReplicaSetSwitch { .. } => "JoinReplicaSetSwitch",
            CompleteReplicaSetSwitch { .. } => "CompleteReplicaSetSwitch",
            FailReplicaSetSwitch { .. } => "FailReplicaSetSwitch",
            // instance actions
            RestartInstance => "RestartInstance",
            ResizeFlavor { .. } => "ResizeFlavor",
            ResizeVolume { .. } => "ResizeVolume",
            ResetStatus => "ResetStatus",
            CompleteRestart => "CompleteRestart",
            FailRestart { .. } => "FailRestart",
            CompleteResize => "CompleteResize",
            FailResize { .. } => "FailResize",
            // ---- databases, users and root ----
            CreateDatabases { .. } => "CreateDatabases",
            DeleteDatabase { .. } => "DeleteDatabase",
            CreateUsers { .. } => "CreateUsers",
            DeleteUser { .. } => "DeleteUser",
            UpdateUserAttributes { .. } => "UpdateUserAttributes",
            ChangeUserPasswords { .. } => "ChangeUserPasswords",
            GrantUserAccess { .. } => "GrantUserAccess",
            RevokeUserAccess { .. } => "RevokeUserAccess",
            EnableRoot { .. } => "EnableRoot",
            DisableRoot => "DisableRoot",
            RecordGuestChangeApplied { .. } => "RecordGuestChangeApplied",
            RecordGuestChangeFailed { .. } => "RecordGuestChangeFailed",
        }
    }
}
