//! Instance events: what happened, in past tense, one fact each.
//!
//! The log is forever. Every event type has a stable name (the variant name) and a
//! version ([`InstanceEvent::version`]); the JSON of every version ever written must stay
//! readable: [`decode`] upcasts old versions to today's shape. Every event is documented
//! in `docs/events.md`. Secrets never appear in plaintext: passwords arrive already
//! sealed ([`SealedSecret`]) by the shell.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::status::{ComputeStatus, ServiceStatus, Task};

/// A secret sealed by the shell with the instance's own key, kept outside the log.
/// Deleting that key (crypto-shredding) makes the ciphertext unreadable forever.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Which key sealed it (the instance's key id).
    pub key_id: String,
    /// Base64 nonce.
    pub nonce: String,
    /// Base64 ciphertext with its authentication tag.
    pub ciphertext: String,
}

/// The flavor an instance runs on, denormalized so the event stands on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FlavorRef {
    pub id: String,
    /// MB, kept so quota release and default configuration never need the catalog.
    pub ram: u32,
}

/// The datastore version an instance runs, denormalized (names as of the event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DatastoreRef {
    pub datastore_id: Uuid,
    /// Datastore name, e.g. `mysql` (views show it as `datastore.type`).
    pub datastore_name: String,
    pub version_id: Uuid,
    /// Version name (views: `datastore.version`).
    pub version_name: String,
    /// Version number (views: `datastore.version_number`).
    pub version_number: String,
    pub manager: String,
}

/// The data volume requested or created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// GB.
    pub size: u64,
    pub volume_type: Option<String>,
}

/// An initial database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSpec {
    pub name: String,
    pub character_set: Option<String>,
    pub collate: Option<String>,
}

/// An initial user; the password is sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    pub name: String,
    /// `%` when not given.
    pub host: String,
    pub password: SealedSecret,
    pub databases: Vec<String>,
}

/// A user's new password (`PUT /users`), sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPassword {
    pub name: String,
    pub host: String,
    pub password: SealedSecret,
}

/// The user network interface requested at create (at most one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Nic {
    pub network_id: Option<String>,
    pub subnet_id: Option<String>,
    pub ip_address: Option<String>,
}

/// An address of the instance as views show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub address: String,
    /// `private` or `public`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Network id; absent for floating (public) addresses.
    pub network: Option<String>,
    /// The TCP port the database listens on, when it is not the datastore's default
    /// (the local provider runs many servers on one host). Absent in events recorded
    /// before it existed, and for clouds whose servers listen on the default port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Access settings as applied by an access update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Access {
    pub is_public: bool,
    pub allowed_cidrs: Vec<String>,
}

/// An error recorded on the instance (lifecycle §6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultInfo {
    pub message: String,
    /// Diagnostic text, shown to admins only.
    pub details: String,
}

/// A switch of a replica set's source, as recorded on every member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSetSwitch {
    /// The source before the switch.
    pub old_primary_id: Uuid,
    /// The source after it: the promoted replica; `None` for an eject, whose new source
    /// the saga elects (the most current replica).
    pub new_primary_id: Option<Uuid>,
    /// The old source's replicas when the switch was accepted, ascending.
    pub replica_ids: Vec<Uuid>,
    /// The coordinator's stream revision of the request: with the coordinator, it names
    /// this switch among all of the set's (a member must not join or end a switch twice).
    /// 0 in bodies written before it was recorded: unknown (no request is revision 0).
    #[serde(default)]
    pub requested_at: u64,
}

/// Which switch: its coordinator and the revision of its request there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchId {
    pub coordinator: Uuid,
    /// [`ReplicaSetSwitch::requested_at`]; 0: unknown (an old body).
    pub requested_at: u64,
}

impl ReplicaSetSwitch {
    /// This switch's identity.
    pub fn id(&self) -> SwitchId {
        SwitchId {
            coordinator: self.coordinator(),
            requested_at: self.requested_at,
        }
    }

    /// The member whose saga performs the switch: the promoted replica, or the ejected
    /// source.
    pub fn coordinator(&self) -> Uuid {
        self.new_primary_id.unwrap_or(self.old_primary_id)
    }

    /// Every member: the old source, then its replicas.
    pub fn members(&self) -> Vec<Uuid> {
        let mut all = vec![self.old_primary_id];
        all.extend(&self.replica_ids);
        all
    }
}

/// The facts of a new instance (`InstanceCreated` v1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceCreated {
    pub instance_id: Uuid,
    pub project_id: String,
    /// The user who created it.
    pub user_id: String,
    pub name: String,
    pub flavor: FlavorRef,
    pub volume: Option<VolumeSpec>,
    pub datastore: DatastoreRef,
    pub databases: Vec<DatabaseSpec>,
    pub users: Vec<UserSpec>,
    pub nics: Vec<Nic>,
    pub availability_zone: Option<String>,
    pub region: String,
    pub modules: Vec<Uuid>,
    pub restore_backup_id: Option<Uuid>,
    pub replica_of: Option<Uuid>,
    pub locality: Option<String>,
    pub configuration_id: Option<Uuid>,
    /// Revision of that group at create (0 in events written before it was recorded).
    #[serde(default)]
    pub configuration_revision: u64,
    /// The `access` object as given at create (extra keys kept verbatim), if any.
    pub access: Option<serde_json::Value>,
    /// Generated root password, sealed; only when the datastore has `root_on_create`.
    pub root_password: Option<SealedSecret>,
    #[serde(deserialize_with = "crate::time::deserialize")]
    pub at: DateTime<Utc>,
}

/// Everything that can happen to an instance.
///
/// Serialized adjacently tagged (`{"type": ..., "data": ...}`) so the type name and the
/// body can be stored apart (the store keeps `event_type` and `data` separately).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InstanceEvent {
    /// A create was accepted: task BUILDING, service NEW.
    InstanceCreated(Box<InstanceCreated>),
    /// The name changed.
    InstanceRenamed {
        name: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A configuration group was attached; task RESTART_REQUIRED if `restart_required`.
    ConfigurationAttached {
        configuration_id: Uuid,
        restart_required: bool,
        /// The group's revision attached (0 in events written before it was recorded).
        #[serde(default)]
        revision: u64,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A later revision of the attached group was applied; task RESTART_REQUIRED if a
    /// key changed since the instance's revision needs a restart.
    ConfigurationRevisionApplied {
        configuration_id: Uuid,
        revision: u64,
        restart_required: bool,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The configuration group was detached; task RESTART_REQUIRED if `restart_required`.
    ConfigurationDetached {
        configuration_id: Uuid,
        restart_required: bool,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// An upgrade was accepted: the version switches at once, task UPGRADING.
    DatastoreVersionUpgradeRequested {
        from: DatastoreRef,
        to: DatastoreRef,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest runs the new version and is healthy: task NONE.
    DatastoreVersionUpgraded {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The upgrade failed: task BUILDING_ERROR_SERVER (status ERROR), fault recorded.
    DatastoreVersionUpgradeFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Detaching from the primary was accepted: task DETACHING.
    ReplicaDetachRequested {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The replica is standalone now: `replica_of` cleared, task NONE.
    ReplicaDetached {
        primary_id: Uuid,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Detaching failed: task NONE, still a replica, fault recorded.
    ReplicaDetachFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// An access change was accepted: task UPDATING.
    AccessUpdateRequested {
        access: Access,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The access change is applied: stored access replaced, task NONE.
    AccessUpdated {
        access: Access,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The access change failed: task UPDATING_ERROR_ACCESS (status ERROR), fault.
    AccessUpdateFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Delete was accepted: task DELETING, configuration cleared, quota released.
    InstanceDeletionRequested {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Teardown finished: the instance is soft-deleted (admin views only).
    InstanceDeleted {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Provisioning: the data volume exists.
    VolumeCreated {
        volume_id: String,
        size: u64,
        volume_type: Option<String>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Provisioning: the compute server exists.
    ServerCreated {
        server_id: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest agent accepted the prepare request (databases, users, configuration,
    /// replication source).
    GuestPrepared {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest reported the data volume's usage (GB): shown as `volume.used`.
    VolumeUsageReported {
        used: f64,
        total: f64,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest runs this configuration (group and revision; `None`: no group).
    GuestConfigurationApplied {
        configuration_id: Option<Uuid>,
        revision: u64,
        /// Every value is in force: the guest restarted its database server where a
        /// value needed it (the local provider), so a restart is no longer required.
        /// Absent (false) in bodies written before it existed, and when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        in_force: bool,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest refused this configuration (group and revision): its server rejected a
    /// value, and runs the configuration it ran before. Not tried again until the group
    /// or the attachment changes; the fault says why.
    GuestConfigurationRefused {
        configuration_id: Option<Uuid>,
        revision: u64,
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The compute server is gone (deleted by teardown or compensation).
    ServerDeleted {
        server_id: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The data volume is gone (deleted by teardown or compensation).
    VolumeDeleted {
        volume_id: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A failed build released everything it had created (compensation finished).
    ResourcesReleased {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The compute service reports a new server status.
    ComputeStatusChanged {
        status: ComputeStatus,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest agent reports its status (refreshes `service_status_updated`).
    GuestStatusReported {
        status: ServiceStatus,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The supervisor gave up keeping the instance's database server running: it kept
    /// crashing or could not be restarted. Compute ERROR (status ERROR), guest FAILED,
    /// the fault recorded; task unchanged (the instance can still be deleted). A later
    /// good check records `ComputeStatusChanged` ACTIVE and `GuestStatusReported`.
    GuestFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The instance's user-visible addresses are known.
    AddressesAssigned {
        addresses: Vec<Address>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Provisioning finished: task NONE.
    ProvisioningCompleted {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A provisioning step failed: the error task and the fault.
    ProvisioningFailed {
        task: Task,
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The secret vault no longer holds the key that sealed this instance's passwords
    /// (its file was lost, emptied or restored from an older backup) and the operator
    /// accepted the loss: the sealed passwords in the log can never be opened again. A
    /// build whose guest still needed them fails when it tries.
    InstanceSecretsLost {
        /// What was found, as the start-up check saw it.
        reason: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A reconciliation found that the cloud no longer has this instance's server and/or
    /// volume: the instance no longer claims them (no addresses, no volume usage), its
    /// task becomes BUILDING_ERROR_SERVER (status ERROR) with the fault; a build in
    /// progress counts as failed. A deletion in progress is left to finish.
    InstanceResourcesLost {
        /// The server that is gone, if it is.
        server_id: Option<String>,
        /// The volume that is gone, if it is.
        volume_id: Option<String>,
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },

    // ---- replica set: promote / eject (issue #15; `decide::replica_set`) ----------------------
    /// A promotion of `switch.new_primary_id` to the source of its replica set was
    /// accepted: task PROMOTING. Recorded on every member of the set.
    ReplicaSourcePromotionRequested {
        switch: ReplicaSetSwitch,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The promoted replica is the source: it replicates from nobody, the old source and
    /// the siblings from it; task NONE. Recorded on every member.
    ReplicaSourcePromoted {
        new_primary_id: Uuid,
        old_primary_id: Uuid,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The promotion failed: task PROMOTION_ERROR (status ERROR), fault; topology as
    /// before. Recorded on every member.
    ReplicaSourcePromotionFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// An eject of the failed source `switch.old_primary_id` was accepted: task
    /// EJECTING. Recorded on every member.
    ReplicaSourceEjectionRequested {
        switch: ReplicaSetSwitch,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The most current replica is the source; the other replicas follow it, the ejected
    /// source is left standalone; task NONE. Recorded on every member.
    ReplicaSourceEjected {
        new_primary_id: Uuid,
        old_primary_id: Uuid,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The eject failed: task EJECTION_ERROR (status ERROR), fault. Recorded on every
    /// member.
    ReplicaSourceEjectionFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    // ---- instance actions: restart, resize, reset status ----------------------------
    /// A restart was accepted: task REBOOTING, service RESTARTING (status REBOOT).
    InstanceRestartRequested {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The database server restarted and is healthy: task NONE.
    InstanceRestarted {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The restart failed: task NONE (as upstream), the fault recorded.
    InstanceRestartFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A flavor resize was accepted: task RESIZING (status RESIZE); the quota charges
    /// the larger of the two flavors' RAM until it ends.
    FlavorResizeRequested {
        from: FlavorRef,
        to: FlavorRef,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The instance runs on the new flavor: flavor replaced, task NONE.
    FlavorResized {
        flavor: FlavorRef,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The flavor resize failed and was rolled back: the old flavor stays, task NONE,
    /// the fault recorded (upstream reverts and returns to ACTIVE).
    FlavorResizeFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A volume resize was accepted (GB, grow only): task RESIZING (status RESIZE); the
    /// quota charges the new size from now on.
    VolumeResizeRequested {
        from: u64,
        to: u64,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The volume and its file system have the new size: task NONE.
    VolumeResized {
        size: u64,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The volume resize failed: the old size stays, task NONE, the fault recorded.
    VolumeResizeFailed {
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// An admin reset the status (`reset_status`): task NONE, service UNKNOWN, any
    /// workflow in progress abandoned (its pending change dropped). `task` is the task
    /// it had, for the audit trail.
    InstanceStatusReset {
        task: Task,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    // ---- databases, users and root (issue #15, ADR 0010) ---------------------------
    // Each is a change the guest applies in order (queued on the folded state until
    // `GuestChangeApplied` or `GuestChangeFailed` names its number).
    /// Databases were created (`POST /databases`).
    DatabasesCreated {
        databases: Vec<DatabaseSpec>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A database was dropped.
    DatabaseDeleted {
        name: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Users were created, passwords sealed.
    UsersCreated {
        users: Vec<UserSpec>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A user was dropped.
    UserDeleted {
        name: String,
        host: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A user's name, host and/or password changed (`PUT /users/{user}`).
    UserAttributesUpdated {
        name: String,
        host: String,
        new_name: Option<String>,
        new_host: Option<String>,
        /// The new password, sealed.
        password: Option<SealedSecret>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// Users' passwords changed (`PUT /users`), sealed.
    UserPasswordsChanged {
        users: Vec<UserPassword>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A user got access to databases.
    UserAccessGranted {
        name: String,
        host: String,
        databases: Vec<String>,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// A user lost access to a database.
    UserAccessRevoked {
        name: String,
        host: String,
        database: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The superuser was enabled with this password (sealed), shown once to the caller.
    RootEnabled {
        password: SealedSecret,
        /// Who enabled it (also the metadata's actor): upstream's `root_enabled_by`.
        user_id: String,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The superuser was disabled (its password replaced by one nobody knows).
    RootDisabled {
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest applied change number `seq`.
    GuestChangeApplied {
        seq: u64,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
    /// The guest refused change number `seq` for good: it is taken out of the lists and
    /// the fault recorded.
    GuestChangeFailed {
        seq: u64,
        fault: FaultInfo,
        #[serde(deserialize_with = "crate::time::deserialize")]
        at: DateTime<Utc>,
    },
}

/// Every event type name with its current version: the catalog `docs/events.md` lists.
pub const EVENT_VERSIONS: &[(&str, u32)] = &[
    ("InstanceCreated", 1),
    ("InstanceRenamed", 1),
    ("ConfigurationAttached", 1),
    ("ConfigurationRevisionApplied", 1),
    ("ConfigurationDetached", 1),
    ("DatastoreVersionUpgradeRequested", 1),
    ("DatastoreVersionUpgraded", 1),
    ("DatastoreVersionUpgradeFailed", 1),
    ("ReplicaDetachRequested", 1),
    ("ReplicaDetached", 1),
    ("ReplicaDetachFailed", 1),
    ("AccessUpdateRequested", 1),
    ("AccessUpdated", 1),
    ("AccessUpdateFailed", 1),
    ("InstanceDeletionRequested", 1),
    ("InstanceDeleted", 1),
    ("VolumeCreated", 1),
    ("ServerCreated", 1),
    ("GuestPrepared", 1),
    ("VolumeUsageReported", 1),
    ("GuestConfigurationApplied", 1),
    ("GuestConfigurationRefused", 1),
    ("ServerDeleted", 1),
    ("VolumeDeleted", 1),
    ("ResourcesReleased", 1),
    ("ComputeStatusChanged", 1),
    ("GuestStatusReported", 1),
    ("GuestFailed", 1),
    ("AddressesAssigned", 1),
    ("ProvisioningCompleted", 1),
    ("ProvisioningFailed", 1),
    ("InstanceSecretsLost", 1),
    ("InstanceResourcesLost", 1),
    ("ReplicaSourcePromotionRequested", 1),
    ("ReplicaSourcePromoted", 1),
    ("ReplicaSourcePromotionFailed", 1),
    ("ReplicaSourceEjectionRequested", 1),
    ("ReplicaSourceEjected", 1),
    ("ReplicaSourceEjectionFailed", 1),
    // instance actions
    ("InstanceRestartRequested", 1),
    ("InstanceRestarted", 1),
    ("InstanceRestartFailed", 1),
    ("FlavorResizeRequested", 1),
    ("FlavorResized", 1),
    ("FlavorResizeFailed", 1),
    ("VolumeResizeRequested", 1),
    ("VolumeResized", 1),
    ("VolumeResizeFailed", 1),
    ("InstanceStatusReset", 1),
    // ---- databases, users and root ----
    ("DatabasesCreated", 1),
    ("DatabaseDeleted", 1),
    ("UsersCreated", 1),
    ("UserDeleted", 1),
    ("UserAttributesUpdated", 1),
    ("UserPasswordsChanged", 1),
    ("UserAccessGranted", 1),
    ("UserAccessRevoked", 1),
    ("RootEnabled", 1),
    ("RootDisabled", 1),
    ("GuestChangeApplied", 1),
    ("GuestChangeFailed", 1),
];

/// Why stored bytes could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("event {event_type} has version {version}, newer than this build knows ({known})")]
    FutureVersion {
        event_type: String,
        version: u32,
        known: u32,
    },
    #[error("event {event_type} v{version} does not decode: {source}")]
    Malformed {
        event_type: String,
        version: u32,
        source: serde_json::Error,
    },
}

impl InstanceEvent {
    /// The stable type name stored with the event.
    pub fn event_type(&self) -> &'static str {
        use InstanceEvent::*;
        match self {
            InstanceCreated(_) => "InstanceCreated",
            InstanceRenamed { .. } => "InstanceRenamed",
            ConfigurationAttached { .. } => "ConfigurationAttached",
            ConfigurationRevisionApplied { .. } => "ConfigurationRevisionApplied",
            ConfigurationDetached { .. } => "ConfigurationDetached",
            DatastoreVersionUpgradeRequested { .. } => "DatastoreVersionUpgradeRequested",
            DatastoreVersionUpgraded { .. } => "DatastoreVersionUpgraded",
            DatastoreVersionUpgradeFailed { .. } => "DatastoreVersionUpgradeFailed",
            ReplicaDetachRequested { .. } => "ReplicaDetachRequested",
            ReplicaDetached { .. } => "ReplicaDetached",
            ReplicaDetachFailed { .. } => "ReplicaDetachFailed",
            AccessUpdateRequested { .. } => "AccessUpdateRequested",
            AccessUpdated { .. } => "AccessUpdated",
            AccessUpdateFailed { .. } => "AccessUpdateFailed",
            InstanceDeletionRequested { .. } => "InstanceDeletionRequested",
            InstanceDeleted { .. } => "InstanceDeleted",
            VolumeCreated { .. } => "VolumeCreated",
            ServerCreated { .. } => "ServerCreated",
            GuestPrepared { .. } => "GuestPrepared",
            VolumeUsageReported { .. } => "VolumeUsageReported",
            GuestConfigurationApplied { .. } => "GuestConfigurationApplied",
            GuestConfigurationRefused { .. } => "GuestConfigurationRefused",
            ServerDeleted { .. } => "ServerDeleted",
            VolumeDeleted { .. } => "VolumeDeleted",
            ResourcesReleased { .. } => "ResourcesReleased",
            ComputeStatusChanged { .. } => "ComputeStatusChanged",
            GuestStatusReported { .. } => "GuestStatusReported",
            GuestFailed { .. } => "GuestFailed",
            AddressesAssigned { .. } => "AddressesAssigned",
            ProvisioningCompleted { .. } => "ProvisioningCompleted",
            ProvisioningFailed { .. } => "ProvisioningFailed",
            InstanceSecretsLost { .. } => "InstanceSecretsLost",
            InstanceResourcesLost { .. } => "InstanceResourcesLost",
            ReplicaSourcePromotionRequested { .. } => "ReplicaSourcePromotionRequested",
            ReplicaSourcePromoted { .. } => "ReplicaSourcePromoted",
            ReplicaSourcePromotionFailed { .. } => "ReplicaSourcePromotionFailed",
            ReplicaSourceEjectionRequested { .. } => "ReplicaSourceEjectionRequested",
            ReplicaSourceEjected { .. } => "ReplicaSourceEjected",
            ReplicaSourceEjectionFailed { .. } => "ReplicaSourceEjectionFailed",
            // instance actions
            InstanceRestartRequested { .. } => "InstanceRestartRequested",
            InstanceRestarted { .. } => "InstanceRestarted",
            InstanceRestartFailed { .. } => "InstanceRestartFailed",
            FlavorResizeRequested { .. } => "FlavorResizeRequested",
            FlavorResized { .. } => "FlavorResized",
            FlavorResizeFailed { .. } => "FlavorResizeFailed",
            VolumeResizeRequested { .. } => "VolumeResizeRequested",
            VolumeResized { .. } => "VolumeResized",
            VolumeResizeFailed { .. } => "VolumeResizeFailed",
            InstanceStatusReset { .. } => "InstanceStatusReset",
            // ---- databases, users and root ----
            DatabasesCreated { .. } => "DatabasesCreated",
            DatabaseDeleted { .. } => "DatabaseDeleted",
            UsersCreated { .. } => "UsersCreated",
            UserDeleted { .. } => "UserDeleted",
            UserAttributesUpdated { .. } => "UserAttributesUpdated",
            UserPasswordsChanged { .. } => "UserPasswordsChanged",
            UserAccessGranted { .. } => "UserAccessGranted",
            UserAccessRevoked { .. } => "UserAccessRevoked",
            RootEnabled { .. } => "RootEnabled",
            RootDisabled { .. } => "RootDisabled",
            GuestChangeApplied { .. } => "GuestChangeApplied",
            GuestChangeFailed { .. } => "GuestChangeFailed",
        }
    }

    /// The schema version this build writes for this event type.
    pub fn version(&self) -> u32 {
        current_version(self.event_type()).unwrap_or(1)
    }

    /// When it happened (domain time, set by `decide` from the context's clock).
    pub fn at(&self) -> DateTime<Utc> {
        use InstanceEvent::*;
        match self {
            InstanceCreated(c) => c.at,
            InstanceRenamed { at, .. }
            | ConfigurationAttached { at, .. }
            | ConfigurationRevisionApplied { at, .. }
            | ConfigurationDetached { at, .. }
            | DatastoreVersionUpgradeRequested { at, .. }
            | DatastoreVersionUpgraded { at }
            | DatastoreVersionUpgradeFailed { at, .. }
            | ReplicaDetachRequested { at }
            | ReplicaDetached { at, .. }
            | ReplicaDetachFailed { at, .. }
            | AccessUpdateRequested { at, .. }
            | AccessUpdated { at, .. }
            | AccessUpdateFailed { at, .. }
            | InstanceDeletionRequested { at }
            | InstanceDeleted { at }
            | VolumeCreated { at, .. }
            | ServerCreated { at, .. }
            | GuestPrepared { at }
            | VolumeUsageReported { at, .. }
            | GuestConfigurationApplied { at, .. }
            | ServerDeleted { at, .. }
            | VolumeDeleted { at, .. }
            | ResourcesReleased { at }
            | ComputeStatusChanged { at, .. }
            | GuestStatusReported { at, .. }
            | GuestFailed { at, .. }
            | GuestConfigurationRefused { at, .. }
            | AddressesAssigned { at, .. }
            | ProvisioningCompleted { at }
            | ProvisioningFailed { at, .. }
            | InstanceSecretsLost { at, .. }
            | InstanceResourcesLost { at, .. }
            | ReplicaSourcePromotionRequested { at, .. }
            | ReplicaSourcePromoted { at, .. }
            | ReplicaSourcePromotionFailed { at, .. }
            | ReplicaSourceEjectionRequested { at, .. }
            | ReplicaSourceEjected { at, .. }
            | ReplicaSourceEjectionFailed { at, .. }
            // instance actions
            | InstanceRestartRequested { at }
            | InstanceRestarted { at }
            | InstanceRestartFailed { at, .. }
            | FlavorResizeRequested { at, .. }
            | FlavorResized { at, .. }
            | FlavorResizeFailed { at, .. }
            | VolumeResizeRequested { at, .. }
            | VolumeResized { at, .. }
            | VolumeResizeFailed { at, .. }
            | InstanceStatusReset { at, .. }
            | DatabasesCreated { at, .. }
            | DatabaseDeleted { at, .. }
            | UsersCreated { at, .. }
            | UserDeleted { at, .. }
            | UserAttributesUpdated { at, .. }
            | UserPasswordsChanged { at, .. }
            | UserAccessGranted { at, .. }
            | UserAccessRevoked { at, .. }
            | RootEnabled { at, .. }
            | RootDisabled { at }
            | GuestChangeApplied { at, .. }
            | GuestChangeFailed { at, .. } => *at,
        }
    }

    /// Splits the event into its type name, version and JSON body for storage.
    pub fn encode(&self) -> (&'static str, u32, serde_json::Value) {
        // Serializing a derived enum of plain data into a Value cannot fail (no maps with
        // non-string keys, no custom Serialize impls that error).
        let tagged = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let data = match tagged {
            serde_json::Value::Object(mut m) => m.remove("data").unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        (self.event_type(), self.version(), data)
    }
}

/// The version this build writes for `event_type`, if it knows the type.
pub fn current_version(event_type: &str) -> Option<u32> {
    crate::tagged::version_in(EVENT_VERSIONS, event_type)
}

/// Turns a stored (type, version, body) back into an event, upcasting old versions.
///
/// All types are at version 1 today, so upcasting is the identity; when a type gets a
/// v2, its v1 bodies are rewritten here before deserializing, and the v1 golden fixture
/// stays in `tests/fixtures/events/` to prove it.
pub fn decode(
    event_type: &str,
    version: u32,
    data: serde_json::Value,
) -> Result<InstanceEvent, DecodeError> {
    let known =
        current_version(event_type).ok_or_else(|| DecodeError::UnknownType(event_type.into()))?;
    if version > known {
        return Err(DecodeError::FutureVersion {
            event_type: event_type.into(),
            version,
            known,
        });
    }
    let tagged = serde_json::json!({ "type": event_type, "data": data });
    serde_json::from_value(tagged).map_err(|source| DecodeError::Malformed {
        event_type: event_type.into(),
        version,
        source,
    })
}

/// [`decode`] from the stored JSON bytes. A body at the current version is deserialized
/// straight from them, without building a `serde_json::Value` tree first (the replay of
/// the log at start-up decodes every event; this is most of its cost); an older version
/// goes through [`decode`] and its upcasting.
pub fn decode_slice(
    event_type: &str,
    version: u32,
    data: &[u8],
) -> Result<InstanceEvent, DecodeError> {
    crate::tagged::decode_slice_with(
        event_type,
        version,
        data,
        current_version(event_type),
        decode,
    )
}
