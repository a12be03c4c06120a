//! The folded state of one instance. `Instance::default()` means "does not exist".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{
    Access, Address, DatabaseSpec, DatastoreRef, FaultInfo, FlavorRef, InstanceEvent, Nic,
    ReplicaSetSwitch, SwitchId, VolumeSpec,
};
use super::status::{ComputeStatus, ServiceStatus, StatusInputs, Task, Viewer};

/// A fault as recorded on the instance (one per instance, overwritten).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    pub message: String,
    pub details: String,
    /// When it was last written.
    pub created: DateTime<Utc>,
}

impl Fault {
    pub(crate) fn from_info(info: &FaultInfo, at: DateTime<Utc>) -> Fault {
        Fault {
            message: info.message.clone(),
            details: info.details.clone(),
            created: at,
        }
    }
}

/// The state of one instance, folded from its stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Instance {
    /// `None` until `InstanceCreated`: the instance does not exist.
    pub id: Option<Uuid>,
    pub project_id: String,
    /// Who created it.
    pub user_id: String,
    pub name: String,
    pub flavor: FlavorRef,
    /// Requested volume (size/type); `None` for datastores without volume support.
    pub volume: Option<VolumeSpec>,
    /// Set once provisioning created the volume.
    pub volume_id: Option<String>,
    /// Set once provisioning created the compute server; cleared when it is deleted.
    pub server_id: Option<String>,
    /// Whether the build failed (`ProvisioningFailed`): only then are the resources
    /// released by compensation (a failed upgrade or access update keeps them).
    pub build_failed: bool,
    /// Whether a failed build's resources were released (compensation finished).
    pub resources_released: bool,
    /// Number of events folded when the desired configuration last changed (create,
    /// attach, detach, new revision): names the guest apply that follows it.
    pub configuration_changed_at: u64,
    /// When the current upgrade was requested, and the number of events folded then:
    /// its deadline and the name of its guest call (a rename must not restart either).
    /// Boxed (serialized the same): rare, and the folded state is held per instance.
    pub upgrade_requested: Option<Box<(DateTime<Utc>, u64)>>,
    /// Whether the create sealed secrets (user or root passwords) with a key of the
    /// vault: the start-up check looks for that key.
    #[serde(default)]
    pub has_sealed_secrets: bool,
    /// Whether the loss of that key was recorded (`InstanceSecretsLost`).
    #[serde(default)]
    pub secrets_lost: bool,
    /// Whether the guest accepted its prepare request.
    pub guest_prepared: bool,
    /// Volume usage last reported by the guest: (used GB, total GB).
    pub volume_usage: Option<(f64, f64)>,
    /// The configuration the guest runs: (group, revision); `None` before any apply.
    pub guest_configuration: Option<(Option<Uuid>, u64)>,
    /// The last configuration the guest refused (`GuestConfigurationRefused`).
    #[serde(default)]
    pub refused_configuration: Option<(Option<Uuid>, u64)>,
    /// `None` only after deletion (the reference is cleared, as upstream does).
    pub datastore: Option<DatastoreRef>,
    pub task: Task,
    /// `None` while no compute server exists.
    pub compute: Option<ComputeStatus>,
    pub service: ServiceStatus,
    pub service_updated: DateTime<Utc>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub fault: Option<Fault>,
    pub configuration_id: Option<Uuid>,
    /// Revision of the attached group this instance runs (0: unknown / none).
    pub configuration_revision: u64,
    pub replica_of: Option<Uuid>,
    /// The stored access object (`None` when none was given and none applied).
    pub access: Option<serde_json::Value>,
    /// An access update accepted but not yet applied.
    pub pending_access: Option<Access>,
    pub region: String,
    pub locality: Option<String>,
    pub availability_zone: Option<String>,
    pub nics: Vec<Nic>,
    pub addresses: Vec<Address>,
    pub databases: Vec<DatabaseSpec>,
    /// The users (with their databases); passwords stay in the events, sealed. Includes
    /// the users of the create and every change since (ADR 0010).
    pub users: Vec<GuestUser>,
    /// Whether root is enabled (`RootEnabled` and no `RootDisabled` since).
    #[serde(default)]
    pub root_enabled: bool,
    /// Upstream's root history: when root was last enabled from disabled (or at create,
    /// with `root_on_create`) and by whom; kept after a disable (admin show).
    #[serde(default)]
    pub root_enabled_history: Option<Box<(DateTime<Utc>, String)>>,
    /// Changes of databases, users and root the guest has not applied yet, in order.
    #[serde(default)]
    pub guest_changes: Vec<PendingGuestChange>,
    /// Number of such changes ever recorded: the next one's `seq` is this plus one.
    #[serde(default)]
    pub guest_changes_made: u64,
    /// The last change the guest refused (`GuestChangeFailed`): the API answers the
    /// request that made it with the fault instead of 202.
    #[serde(default)]
    pub failed_guest_change: Option<std::num::NonZeroU64>,
    pub modules: Vec<Uuid>,
    pub restore_backup_id: Option<Uuid>,
    pub deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Number of events folded: the stream revision to expect next is `version - 1`.
    pub version: u64,
    /// The replica-set switch (promote / eject) in progress, while task PROMOTING or
    /// EJECTING (boxed, as the other rare workflow fields: the folded state is held per
    /// instance in the read models).
    #[serde(default)]
    pub replica_switch: Option<Box<ReplicaSetSwitch>>,
    /// The last switch this member ended (done or failed): a join or an end report of it
    /// that comes again (the coordinator's step retried after a crash) decides nothing
    /// (boxed: rare, and the folded state's inline size is capped).
    #[serde(default)]
    pub switch_ended: Option<Box<SwitchId>>,

    // ---- instance actions: restart, resize, reset status ----------------------------
    /// The flavor a resize in progress moves to (`FlavorResizeRequested`).
    #[serde(default)]
    pub pending_flavor: Option<Box<FlavorRef>>,
    /// The size (GB) a volume resize in progress grows to (`VolumeResizeRequested`;
    /// never 0: a volume only grows. Non-zero keeps the folded state's inline size
    /// within its cap; the JSON is the same as a plain number's).
    #[serde(default)]
    pub pending_volume_size: Option<std::num::NonZeroU64>,
    /// An admin reset the status (`InstanceStatusReset`) and neither has the guest been
    /// reported healthy on a running server since, nor has a new workflow begun: the
    /// instance may then be deleted even while its compute server still reads BUILD
    /// (the operator's way out of a stuck build), and the saga asks the guest for its
    /// status while it reads UNKNOWN.
    #[serde(default)]
    pub status_reset: bool,
    /// When an admin last reset the status (`InstanceStatusReset`): the backups of the
    /// instance created before it and still running are abandoned (failed by the backup
    /// saga, upstream's `fail_for_instance`). `None`: never reset (or folded before it
    /// existed). Boxed: rare, and the folded state's inline size is capped (the JSON is
    /// the same).
    #[serde(default)]
    pub reset_on: Option<Box<DateTime<Utc>>>,
    /// The number of events folded when the current restart or resize was requested:
    /// names its provider call (the same request, the same effect; the next request,
    /// a new one).
    #[serde(default)]
    pub action_requested_at: u64,
    /// When the current restart or resize was requested (the `at` of its `…Requested`
    /// event): its deadline (`Policy::action_timeout`). `None` in snapshots folded
    /// before it existed (the deadline then counts from `updated`).
    #[serde(default)]
    pub action_requested_on: Option<DateTime<Utc>>,
}

impl Instance {
    /// True once created, deleted or not.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// True when created and not soft-deleted.
    pub fn is_live(&self) -> bool {
        self.exists() && !self.deleted
    }

    /// The inputs of Trove's status derivation.
    pub fn status_inputs(&self) -> StatusInputs {
        StatusInputs {
            task: self.task,
            compute: self.compute,
            service: self.service,
            service_updated: self.service_updated,
            backup_running: false,
            deleted: self.deleted,
        }
    }

    /// `status` as the command path sees it (real compute status).
    pub fn command_status(&self) -> &'static str {
        self.status_inputs().status(Viewer::Command, false)
    }

    /// The id, or nil for a non-existing instance (only used in messages).
    pub fn id_or_nil(&self) -> Uuid {
        self.id.unwrap_or(Uuid::nil())
    }

    /// RAM charged to the quota while the instance is live: during a flavor resize the
    /// larger of both flavors (either may run when the resize ends).
    pub fn quota_ram(&self) -> i64 {
        let pending = self.pending_flavor.as_ref().map_or(0, |f| f.ram);
        i64::from(self.flavor.ram.max(pending))
    }

    /// Volume GB charged to the quota while the instance is live: during a volume resize
    /// the new size (a volume only grows).
    pub fn quota_volume(&self) -> i64 {
        let size = self.volume.as_ref().map_or(0, |v| v.size);
        size.max(self.pending_volume_size.map_or(0, |s| s.get())) as i64
    }
}

// ---- databases, users and root (ADR 0010; rules in `guestdb`) ----------------------

/// A user of the instance as the lists show it (passwords stay sealed in the events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestUser {
    pub name: String,
    /// `%` for any host (always for PostgreSQL, which has no hosts).
    pub host: String,
    /// The databases it has access to, in the order granted.
    pub databases: Vec<String>,
}

impl GuestUser {
    /// Upstream's `name@host` identity.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.host)
    }
}

/// What the lists held before a pending change: restored when the guest refuses it.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct GuestLists {
    pub databases: Vec<DatabaseSpec>,
    pub users: Vec<GuestUser>,
    pub root_enabled: bool,
    /// Upstream's root history: a refused `RootEnabled` takes its entry back too.
    /// Default: snapshots from before it was kept here restore none.
    #[serde(default)]
    pub root_enabled_history: Option<Box<(DateTime<Utc>, String)>>,
}

/// A recorded change the guest has not applied yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingGuestChange {
    /// 1, 2, ...: the change's number on this instance (`GuestChangeApplied { seq }`).
    pub seq: u64,
    /// The event that recorded it (its sealed passwords are what the guest sets).
    pub event: InstanceEvent,
    /// The lists before it, to take it back if the guest refuses it.
    pub before: GuestLists,
}
