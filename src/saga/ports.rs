//! Provider ports: the narrow, async seam between the saga runner and a cloud.
//!
//! The simulated cloud (`crate::sim`) implements them today; real clouds (OpenStack
//! Nova/Cinder, Kubernetes) later. Every call that creates something takes an
//! idempotency key derived from the instance and the step: calling it again with the
//! same key returns the resource created the first time instead of a second one, so a
//! step retried after a crash or a lost answer never duplicates anything. Deletes are
//! idempotent too (deleting what is gone succeeds).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying (timeouts, transient API errors, injected transient faults).
    #[error("{0}")]
    Transient(String),
    /// Will not get better by retrying (no capacity, bad request, injected permanent
    /// faults): the workflow fails with this message as the fault.
    #[error("{0}")]
    Permanent(String),
    /// The resource does not exist (a status or usage query after it vanished).
    #[error("{0} not found")]
    NotFound(String),
}

/// Identifies one effect: the same key always means the same resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    /// The key of `step` for instance `instance` (e.g. `instance-<id>/volume`).
    pub fn new(instance: Uuid, step: &str) -> IdempotencyKey {
        IdempotencyKey(format!("instance-{instance}/{step}"))
    }
}

/// A data volume to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub instance_id: Uuid,
    /// GB.
    pub size: u64,
    pub volume_type: Option<String>,
    pub availability_zone: Option<String>,
    /// Instance name, for fault injection by name pattern and for operators.
    pub instance_name: String,
}

/// A volume as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub instance_id: Uuid,
    pub size: u64,
    pub volume_type: Option<String>,
    pub availability_zone: String,
    /// `available`, `in-use`, `deleting`, ...
    pub status: String,
    /// Server it is attached to.
    pub attached_to: Option<String>,
}

/// Filesystem usage of a volume, GB.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumeUsage {
    pub used_gb: f64,
    pub total_gb: f64,
}

/// A compute server to create.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub instance_id: Uuid,
    pub instance_name: String,
    pub flavor_id: String,
    pub vcpus: u32,
    /// MB.
    pub ram: u32,
    pub availability_zone: Option<String>,
    /// The user network, if one was requested.
    pub network_id: Option<String>,
    /// Whether the user port gets a floating (public) address.
    pub public: bool,
    /// The data volume to attach.
    pub volume_id: Option<String>,
}

/// An address of a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAddress {
    pub address: String,
    /// `private` or `public`.
    pub kind: String,
    pub network: Option<String>,
    /// The database's TCP port, when it is not the datastore's default.
    #[serde(default)]
    pub port: Option<u16>,
}

/// A server as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub id: String,
    pub instance_id: Uuid,
    /// `BUILD`, `ACTIVE`, `ERROR`, ...
    pub status: String,
    pub availability_zone: String,
    pub addresses: Vec<ServerAddress>,
}

/// Creates, inspects and deletes data volumes.
#[async_trait]
pub trait VolumeProvider: Send + Sync {
    async fn create_volume(
        &self,
        key: &IdempotencyKey,
        spec: &VolumeSpec,
    ) -> Result<Volume, ProviderError>;
    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError>;
    async fn detach_volume(&self, volume_id: &str) -> Result<(), ProviderError>;
    async fn delete_volume(&self, volume_id: &str) -> Result<(), ProviderError>;
    async fn volume_usage(&self, volume_id: &str) -> Result<VolumeUsage, ProviderError>;
    /// The live volume created under `key`, if any: how teardown finds a volume whose
    /// creation was never recorded (a crash between the call and the event). A real
    /// cloud answers it by name or metadata (`trove-<instance id>`).
    async fn find_volume(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError>;
}

/// Creates, inspects and deletes compute servers.
#[async_trait]
pub trait ComputeProvider: Send + Sync {
    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> Result<Server, ProviderError>;
    async fn server(&self, server_id: &str) -> Result<Server, ProviderError>;
    /// Makes the user port public or private (adds or removes the floating address).
    async fn set_public(&self, server_id: &str, public: bool) -> Result<Server, ProviderError>;
    async fn delete_server(&self, server_id: &str) -> Result<(), ProviderError>;
    /// The live server created under `key`, if any (see [`VolumeProvider::find_volume`]).
    async fn find_server(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError>;
}

/// What the guest is asked to prepare.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareRequest {
    pub instance_id: Uuid,
    pub instance_name: String,
    pub server_id: String,
    pub datastore_manager: String,
    pub datastore_version: String,
    pub databases: Vec<String>,
    /// The create's users; passwords unsealed for the guest only.
    pub users: Vec<PrepareUser>,
    pub configuration: Option<serde_json::Value>,
    /// The primary to replicate from, for replicas.
    pub replica_of: Option<Uuid>,
    /// `access.allowed_cidrs`: the IPv4 CIDRs network logins may come from (empty: any).
    #[serde(default)]
    pub allowed_cidrs: Vec<String>,
    /// `restorePoint`: the data comes from this backup instead of an empty database;
    /// the request's databases and users are created on top of it.
    #[serde(default)]
    pub restore: Option<RestoreRequest>,
}

/// The backup a new instance is built from (`restorePoint.backupRef`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The backup asked for.
    pub backup_id: Uuid,
    /// Its artifacts in the order they apply: the full backup first, then each
    /// incremental down to the one asked for (just one for a full backup).
    pub chain: Vec<ArtifactRef>,
}

/// A stored backup artifact, as a restore reads it back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub backup_id: Uuid,
    /// Where the backup store keeps it ([`crate::backup_store::BackupStore::get`]).
    pub location: String,
    /// Lower-case hex SHA-256 of the artifact's bytes: a restore refuses any other.
    pub checksum: String,
}

/// A backup to take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequest {
    pub backup_id: Uuid,
    pub instance_id: Uuid,
    /// Instance name, for fault injection by name pattern and for operators.
    pub instance_name: String,
    /// The instance's server (the provider's id).
    pub server_id: String,
    pub datastore_manager: String,
    pub datastore_version: String,
    /// The storage location name (`swift_container`; the default container otherwise).
    pub container: String,
    /// For an incremental backup: its parent (what the changes are counted from).
    pub parent: Option<ParentArtifact>,
}

/// The parent of an incremental backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentArtifact {
    pub backup_id: Uuid,
    pub location: String,
    /// Where in the engine's log the parent ended (MariaDB: its `to_lsn`), as the
    /// parent's [`Artifact::engine_position`] recorded it.
    pub engine_position: Option<String>,
}

/// A backup artifact once stored and committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub location: String,
    /// Bytes stored.
    pub size: u64,
    /// Lower-case hex SHA-256 of the stored bytes.
    pub checksum: String,
    /// Where in the engine's log the backup ends, for a later incremental (MariaDB:
    /// the `to_lsn` of its checkpoints); `None` where the engine has no incrementals.
    pub engine_position: Option<String>,
}

/// Takes backups of running instances (restores are part of
/// [`GuestAgent::prepare`], [`PrepareRequest::restore`]).
#[async_trait]
pub trait BackupAgent: Send + Sync {
    /// Whether this provider can back up `manager` at all (upstream: a backup strategy
    /// is configured for it); the API refuses a create (422) where it cannot.
    fn supports_backups(&self, _manager: &str) -> bool {
        true
    }

    /// Whether this provider can take incremental backups of `manager` at `version`;
    /// the API refuses `incremental` (400) where it cannot.
    fn supports_incremental(&self, manager: &str, version: &str) -> bool;

    /// Copies the instance's data, consistent as of one moment while the database keeps
    /// serving, into the backup store (streamed, never whole in memory) and commits it
    /// there. Idempotent per `backup_id`: a call after a crash starts over and replaces
    /// whatever the interrupted one left; a failed call leaves no artifact.
    async fn take_backup(&self, req: &BackupRequest) -> Result<Artifact, ProviderError>;
}

/// A user the guest creates.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareUser {
    pub name: String,
    /// The host pattern given at create (`%` when none was).
    pub host: String,
    /// Unsealed for the guest only: never logged (`Debug` blanks it).
    pub password: String,
    /// The databases this user gets (by name); no others.
    pub databases: Vec<String>,
}

impl std::fmt::Debug for PrepareUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrepareUser")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("password", &"<hidden>")
            .field("databases", &self.databases)
            .finish()
    }
}

/// The guest's status as its agent reports it (lifecycle §2.2 names: `HEALTHY`,
/// `BUILDING`, `FAILED`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestReport {
    pub status: String,
}

/// The database agent inside a server.
#[async_trait]
pub trait GuestAgent: Send + Sync {
    async fn prepare(
        &self,
        key: &IdempotencyKey,
        req: &PrepareRequest,
    ) -> Result<(), ProviderError>;
    async fn status(&self, server_id: &str) -> Result<GuestReport, ProviderError>;
    async fn upgrade(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        version: &str,
    ) -> Result<(), ProviderError>;
    async fn apply_configuration(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        values: Option<&serde_json::Value>,
    ) -> Result<(), ProviderError>;
    async fn detach_replica(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
    ) -> Result<(), ProviderError>;
    /// Lets network logins come from `allowed_cidrs` only (empty: from anywhere), after
    /// an access update; idempotent. The default does nothing: a cloud whose network
    /// filters addresses (security groups) has nothing to tell the guest.
    async fn restrict_access(
        &self,
        _server_id: &str,
        _allowed_cidrs: &[String],
    ) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Whether [`GuestAgent::apply_configuration`] puts every value in force, restarting
    /// the database server where a value needs it: then an instance that waits in
    /// RESTART_REQUIRED for its configuration is idle again once it is applied. No by
    /// default: upstream (and the simulated cloud) leave the restart to the user.
    fn restarts_for_configuration(&self) -> bool {
        false
    }

    // ---- replica set: promote / eject (issue #15; `super::replica_actions`) -----------
    /// Makes `set.new_primary` the writable source of the set once it has every
    /// transaction the old source committed (the old source stops taking writes first),
    /// then makes the old source and the other replicas follow it. Idempotent: a retry
    /// finds the switch made. The default refuses: a provider without it cannot promote.
    async fn promote_to_replica_source(
        &self,
        _key: &IdempotencyKey,
        _set: &ReplicaSetServers,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::Permanent(
            "this provider cannot promote a replica".into(),
        ))
    }

    /// Elects the most current of `set.replicas` (the failed old source is left
    /// alone), makes it the writable source and the other replicas follow it; returns
    /// the elected instance. Idempotent: a retry elects the same replica.
    async fn eject_replica_source(
        &self,
        _key: &IdempotencyKey,
        _set: &ReplicaSetServers,
    ) -> Result<Uuid, ProviderError> {
        Err(ProviderError::Permanent(
            "this provider cannot eject a replica source".into(),
        ))
    }

    // ---- instance actions: restart, resize ------------------------------------------
    /// Restarts the database server (`action restart`); committed data is kept. Once
    /// per key: a retry with the same key does not restart it again. The saga then asks
    /// [`GuestAgent::status`] until the guest is healthy.
    async fn restart(&self, key: &IdempotencyKey, server_id: &str) -> Result<(), ProviderError>;

    /// Moves the server to another flavor and restarts the database with the memory
    /// settings of its RAM (`action resize` with `flavorRef`). Once per key.
    async fn resize_flavor(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        flavor: &FlavorSpec,
    ) -> Result<(), ProviderError>;

    /// Grows the server's data volume `volume_id` to `size_gb` and its file system with
    /// it, so the database sees the space (`action resize` with `volume`). Never
    /// shrinks; idempotent (a volume already that large is left as it is).
    async fn resize_volume(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        volume_id: &str,
        size_gb: u64,
    ) -> Result<(), ProviderError>;
}

/// The servers of a replica set being switched, each with its instance id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSetServers {
    /// The source before the switch.
    pub old_primary: (Uuid, String),
    /// The replica to promote; `None` for an eject (the provider elects one).
    pub new_primary: Option<(Uuid, String)>,
    /// The old source's other replicas (for an eject: all of them), ascending.
    pub replicas: Vec<(Uuid, String)>,
}

/// The flavor a server is resized to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavorSpec {
    pub flavor_id: String,
    pub vcpus: u32,
    /// MB.
    pub ram: u32,
}

/// What a provider's own persistent state looked like before it was opened (checked at
/// start, before opening creates anything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredState {
    /// There is none: a first start, or the state was lost.
    Missing,
    /// It exists but holds no resource it ever created: emptied, or recreated.
    Empty,
    /// It holds resources (live or deleted).
    Present,
}

impl StoredState {
    /// How an operator reads it: "is missing", "holds no resources".
    pub fn describe(self) -> &'static str {
        match self {
            StoredState::Missing => "is missing",
            StoredState::Empty => "holds no resources",
            StoredState::Present => "is present",
        }
    }
}

/// Servers and volumes, by provider id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceIds {
    pub servers: Vec<String>,
    pub volumes: Vec<String>,
}

impl ResourceIds {
    /// Neither a server nor a volume.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.volumes.is_empty()
    }
}

/// Reconciliation: which resources the log says exist are really still there. Every
/// provider answers it from its own state (the simulated cloud from `cloud.db`, a real
/// cloud from a listing, the local provider from its processes and directories).
#[async_trait]
pub trait ResourceInventory: Send + Sync {
    /// Which of `claimed` the provider does not have (deleted, or never known to this
    /// state). An operator's question, not a workflow step: no injected latency or
    /// faults; a storage failure is `Transient`.
    async fn gone(&self, claimed: &ResourceIds) -> Result<ResourceIds, ProviderError>;
    /// Where the provider keeps its state, for messages (e.g. the path of `cloud.db`).
    fn state_location(&self) -> String;
}
