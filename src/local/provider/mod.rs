//! The local provider: the saga's ports ([`VolumeProvider`], [`ComputeProvider`],
//! [`GuestAgent`], [`ResourceInventory`]) over real database servers on this machine
//! (issue #13).
//!
//! Mapping: a *volume* is one of [`crate::local::volume`]'s (a loop-mounted ext4 image of
//! the requested size, or a directory) under `<local root>/volumes/`; a *server* is a TCP port
//! reserved from `--local-ports` and an engine instance directory on its volume
//! (`<volume>/server`); *prepare* initializes the data from the version's template,
//! starts the server, creates the request's databases and users and sets a generated
//! superuser password; the guest *status* is a real connection's answer. What it must
//! not do: read the event log, log passwords, or touch a server it did not record
//! (every process it signals is checked against its data directory, `crate::local`).
//!
//! State: `state.json` ([`state`]), written before each effect it describes, so that
//! a crash leaves at worst a recorded resource whose effect a retry (same idempotency
//! key) completes. Calls about one server are serialized by a per-server lock; `prepare`
//! runs in its own task, so a saga call that times out does not cut it short (the
//! retry waits for it on the lock, then finds the work done).

mod access_update;
mod actions;
mod admin;
mod backup;
mod config_restart;
mod grants;
mod guest_admin;
mod port_range;
mod replica;
pub mod setup;
pub mod state;
mod storage;
mod supervisor;
mod switchover;
mod upgrade;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

pub use self::port_range::PortRange;
use self::state::{ServerRec, State, VolumeRec};
use super::{
    access, engine, ConfigOutcome, Engine, EngineOptions, Health, Installation, Instance,
    LocalError,
};
use crate::local::volume::Volumes;
use crate::saga::ports::{
    ComputeProvider, GuestAgent, GuestReport, IdempotencyKey, PrepareRequest, ProviderError,
    ReplicaSetServers, ResourceIds, ResourceInventory, Server, ServerAddress, ServerSpec,
    StoredState, Volume, VolumeProvider, VolumeSpec, VolumeUsage,
};
use crate::secrets::Vault;

/// The zone every local resource is in.
pub const ZONE: &str = "local";
/// The network name of the addresses.
pub const NETWORK: &str = "local";

/// How the local provider runs.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Its directory: `state.json`, `templates/`, `volumes/`, `servers/`.
    pub root: PathBuf,
    pub ports: PortRange,
    /// The address public servers bind.
    pub public_bind: IpAddr,
    /// Which installation runs each catalog version: (manager, version name).
    pub versions: Vec<(String, String, Installation)>,
    /// The user servers run as.
    pub user: super::DbUser,
    /// Longest wait for one engine operation (a start, a stop, one tool).
    pub timeout: Duration,
}

/// The local provider; cheap to clone.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: LocalConfig,
    /// Seals the superuser passwords.
    vault: Arc<Vault>,
    state: Mutex<State>,
    volumes: Volumes,
    engines: HashMap<(String, String), Arc<dyn Engine>>,
    /// One lock per server id: its calls never overlap.
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Configuration values whose restart failed, per server ([`config_restart`]).
    refused_configs: config_restart::RefusedConfigs,
    /// Where backups are stored and restores read from ([`backup`]).
    backups: Arc<dyn crate::backup_store::BackupStore>,
}

impl LocalProvider {
    /// Opens the provider in `cfg.root` (created, 0711; `state.json` created empty if
    /// missing: the start-up check has looked at it before, [`state::probe`]).
    /// `vault` seals the servers' superuser passwords ([`admin`]); plaintext ones an
    /// older troved wrote are sealed here. Backups go to `backups` ([`backup`]).
    pub async fn open(
        cfg: LocalConfig,
        vault: Arc<Vault>,
        backups: Arc<dyn crate::backup_store::BackupStore>,
    ) -> Result<LocalProvider, LocalError> {
        storage::traversable_dir(&cfg.root)?;
        cfg.user.check_reachable(&cfg.root.join("volumes"))?;
        let loaded = state::load(&cfg.root)?;
        let state = match loaded {
            Some(mut s) => {
                if admin::seal_plaintext(&mut s, &vault)? {
                    state::save(&cfg.root, &s)?;
                }
                s
            }
            None => {
                let s = State::default();
                state::save(&cfg.root, &s)?;
                s
            }
        };
        let volumes = Volumes::open(&cfg.root, None).await?;
        tracing::info!(mode = %volumes.mode(), reason = volumes.reason(), "local volumes");
        let options = EngineOptions {
            user: cfg.user.clone(),
            templates: cfg.root.join("templates"),
            timeout: cfg.timeout,
        };
        let engines = cfg
            .versions
            .iter()
            .filter_map(|(manager, name, inst)| {
                let e: Arc<dyn Engine> = engine(inst, options.clone())?.into();
                Some(((manager.clone(), name.clone()), e))
            })
            .collect();
        Ok(LocalProvider {
            inner: Arc::new(Inner {
                cfg,
                vault,
                state: Mutex::new(state),
                volumes,
                engines,
                locks: std::sync::Mutex::new(HashMap::new()),
                refused_configs: Default::default(),
                backups,
            }),
        })
    }

    /// The file of its state.
    pub fn state_path(&self) -> PathBuf {
        state::path(&self.inner.cfg.root)
    }

    /// Changes the state and writes it before answering (the effect it records comes
    /// after): `f` returns its answer or an error that leaves the state unwritten.
    async fn change<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let mut guard = self.inner.state.lock().await;
        let mut next = guard.clone();
        let out = f(&mut next)?;
        state::save(&self.inner.cfg.root, &next).map_err(transient)?;
        *guard = next;
        Ok(out)
    }

    async fn live_server(&self, id: &str) -> Result<ServerRec, ProviderError> {
        let st = self.inner.state.lock().await;
        st.servers
            .get(id)
            .filter(|s| !s.deleted)
            .cloned()
            .ok_or_else(|| ProviderError::NotFound(format!("server {id}")))
    }

    async fn live_volume(&self, id: &str) -> Result<VolumeRec, ProviderError> {
        let st = self.inner.state.lock().await;
        st.volumes
            .get(id)
            .filter(|v| !v.deleted)
            .cloned()
            .ok_or_else(|| ProviderError::NotFound(format!("volume {id}")))
    }

    fn lock_of(&self, server_id: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .inner
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(server_id.to_string()).or_default().clone()
    }

    /// The engine instance of a server record.
    fn instance(&self, rec: &ServerRec) -> Instance {
        Instance {
            dir: rec.dir.clone(),
            port: rec.port,
            bind: rec.bind(self.inner.cfg.public_bind),
            ram_mb: Some(rec.ram_mb),
        }
    }

    fn engine_of(&self, rec: &ServerRec) -> Option<Arc<dyn Engine>> {
        let key = rec.datastore.clone()?;
        self.inner.engines.get(&key).cloned()
    }

    /// The server as the compute port reports it: ACTIVE (its port is reserved) with
    /// its addresses, each with the server's port.
    fn server_view(&self, id: &str, rec: &ServerRec) -> Server {
        let mut addresses = vec![ServerAddress {
            address: Ipv4Addr::LOCALHOST.to_string(),
            kind: "private".into(),
            network: Some(NETWORK.into()),
            port: Some(rec.port),
        }];
        if rec.public {
            addresses.push(ServerAddress {
                address: shown_public(self.inner.cfg.public_bind).to_string(),
                kind: "public".into(),
                network: None,
                port: Some(rec.port),
            });
        }
        Server {
            id: id.to_string(),
            instance_id: rec.instance_id,
            status: "ACTIVE".into(),
            availability_zone: ZONE.into(),
            addresses,
        }
    }
}

/// The address clients reach a public server at: the bind address, or for a wildcard
/// bind this machine's address towards the outside (found by routing, nothing is sent).
fn shown_public(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| {
            s.connect((Ipv4Addr::new(192, 0, 2, 1), 9))?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(bind)
}

fn transient(e: LocalError) -> ProviderError {
    ProviderError::Transient(e.to_string())
}

/// Local errors as provider errors: a file or a wait that failed may work next time;
/// a refused name, a missing binary or a server that does not start will not.
fn provider_error(e: LocalError) -> ProviderError {
    match e {
        LocalError::Io { .. } | LocalError::Timeout(..) => ProviderError::Transient(e.to_string()),
        // PostgreSQL's interlock found a segment of the same device and inode still
        // attached: processes of an earlier server on a reused loop device that have not
        // exited yet. They do exit: worth a retry.
        LocalError::StartFailed(ref log) if log.contains("pre-existing shared memory block") => {
            ProviderError::Transient(e.to_string())
        }
        _ => ProviderError::Permanent(e.to_string()),
    }
}

/// A create under a key whose resource was deleted is refused, as the simulated cloud
/// does: the saga never reuses a key, so a second life would only hide a bug.
fn reused_key(key: &IdempotencyKey) -> ProviderError {
    ProviderError::Permanent(format!(
        "idempotency key {} belongs to a deleted resource",
        key.0
    ))
}

/// Configuration values (a group's JSON object) as the engines take them.
fn config_values(values: Option<&serde_json::Value>) -> Vec<(String, String)> {
    let Some(serde_json::Value::Object(map)) = values else {
        return Vec::new();
    };
    map.iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// A fresh superuser password: 128 random bits (UUIDv4 comes from the OS generator).
fn generate_password() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

#[async_trait]
impl VolumeProvider for LocalProvider {
    async fn create_volume(
        &self,
        key: &IdempotencyKey,
        spec: &VolumeSpec,
    ) -> Result<Volume, ProviderError> {
        let volumes = &self.inner.volumes;
        let (id, rec) = self
            .change(|st| {
                if let Some((id, v)) = st.volumes.iter().find(|(_, v)| v.key == key.0) {
                    return if v.deleted {
                        Err(reused_key(key))
                    } else {
                        Ok((id.clone(), v.clone()))
                    };
                }
                let id = format!("vol-{}", Uuid::new_v4().simple());
                let rec = VolumeRec {
                    key: key.0.clone(),
                    instance_id: spec.instance_id,
                    instance_name: spec.instance_name.clone(),
                    size: spec.size,
                    volume_type: spec.volume_type.clone(),
                    path: volumes.mount_point(&id),
                    attached_to: None,
                    deleted: false,
                };
                st.volumes.insert(id.clone(), rec.clone());
                Ok((id, rec))
            })
            .await?;
        volumes
            .create(&id, rec.size)
            .await
            .map_err(provider_error)?;
        Ok(volume_view(&id, &rec))
    }

    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        self.live_volume(volume_id).await?;
        self.change(|st| {
            if let Some(v) = st.volumes.get_mut(volume_id) {
                v.attached_to = Some(server_id.to_string());
            }
            Ok(())
        })
        .await
    }

    async fn detach_volume(&self, volume_id: &str) -> Result<(), ProviderError> {
        self.change(|st| {
            if let Some(v) = st.volumes.get_mut(volume_id) {
                v.attached_to = None;
            }
            Ok(())
        })
        .await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), ProviderError> {
        let Ok(_) = self.live_volume(volume_id).await else {
            return Ok(());
        };
        self.inner
            .volumes
            .delete(volume_id)
            .await
            .map_err(provider_error)?;
        self.change(|st| {
            if let Some(v) = st.volumes.get_mut(volume_id) {
                v.deleted = true;
                v.attached_to = None;
            }
            Ok(())
        })
        .await
    }

    async fn volume_usage(&self, volume_id: &str) -> Result<VolumeUsage, ProviderError> {
        self.live_volume(volume_id).await?;
        let u = self
            .inner
            .volumes
            .usage(volume_id)
            .await
            .map_err(|e| ProviderError::NotFound(format!("volume {volume_id}: {e}")))?;
        let gb = |b: u64| b as f64 / f64::from(1u32 << 30);
        Ok(VolumeUsage {
            used_gb: gb(u.used_bytes),
            total_gb: gb(u.total_bytes),
        })
    }

    async fn find_volume(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError> {
        let st = self.inner.state.lock().await;
        Ok(st
            .volumes
            .iter()
            .find(|(_, v)| v.key == key.0 && !v.deleted)
            .map(|(id, _)| id.clone()))
    }
}

fn volume_view(id: &str, rec: &VolumeRec) -> Volume {
    Volume {
        id: id.to_string(),
        instance_id: rec.instance_id,
        size: rec.size,
        volume_type: rec.volume_type.clone(),
        availability_zone: ZONE.into(),
        status: if rec.attached_to.is_some() {
            "in-use".into()
        } else {
            "available".into()
        },
        attached_to: rec.attached_to.clone(),
    }
}

#[async_trait]
impl ComputeProvider for LocalProvider {
    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> Result<Server, ProviderError> {
        let cfg = &self.inner.cfg;
        let (id, rec) = self
            .change(|st| {
                if let Some((id, s)) = st.servers.iter().find(|(_, s)| s.key == key.0) {
                    return if s.deleted {
                        Err(reused_key(key))
                    } else {
                        Ok((id.clone(), s.clone()))
                    };
                }
                let reserved: HashSet<u16> = st
                    .servers
                    .values()
                    .filter(|s| !s.deleted)
                    .map(|s| s.port)
                    .collect();
                let port = cfg
                    .ports
                    .free_port(&reserved, cfg.public_bind)
                    .ok_or_else(|| {
                        ProviderError::Permanent(format!(
                            "no free port left in --local-ports {}",
                            cfg.ports
                        ))
                    })?;
                let id = format!("srv-{}", Uuid::new_v4().simple());
                let dir = match spec.volume_id.as_ref().and_then(|v| st.volumes.get(v)) {
                    Some(v) => v.path.join("server"),
                    None => cfg.root.join("servers").join(&id),
                };
                if let Some(v) = spec.volume_id.as_ref().and_then(|v| st.volumes.get_mut(v)) {
                    v.attached_to = Some(id.clone());
                }
                let rec = ServerRec {
                    key: key.0.clone(),
                    instance_id: spec.instance_id,
                    instance_name: spec.instance_name.clone(),
                    port,
                    public: spec.public,
                    ram_mb: spec.ram,
                    volume_id: spec.volume_id.clone(),
                    dir,
                    datastore: None,
                    prepared: false,
                    admin_password: None,
                    sealed_admin_password: None,
                    deleted: false,
                    upgrade: None,
                    users: Vec::new(),
                    allowed_cidrs: Vec::new(),
                    last_action_key: None,
                    resize_from: None,
                };
                st.servers.insert(id.clone(), rec.clone());
                Ok((id, rec))
            })
            .await?;
        Ok(self.server_view(&id, &rec))
    }

    async fn server(&self, server_id: &str) -> Result<Server, ProviderError> {
        let rec = self.live_server(server_id).await?;
        Ok(self.server_view(server_id, &rec))
    }

    async fn set_public(&self, server_id: &str, public: bool) -> Result<Server, ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let before = self.live_server(server_id).await?;
        let rec = self
            .change(|st| {
                let s = st
                    .servers
                    .get_mut(server_id)
                    .ok_or_else(|| ProviderError::NotFound(format!("server {server_id}")))?;
                s.public = public;
                Ok(s.clone())
            })
            .await?;
        // The server binds one address: a change of access is a restart on the other.
        if before.public != public && rec.prepared {
            if let Some(engine) = self.engine_of(&rec) {
                engine
                    .restart(&self.instance(&rec))
                    .await
                    .map_err(provider_error)?;
            }
        }
        Ok(self.server_view(server_id, &rec))
    }

    /// In its own task, as `prepare`: a saga call that times out (a server that takes
    /// its whole shutdown grace, then SIGKILL) must not cut the stop short; the retry
    /// waits for it on the lock, then finds the server gone.
    async fn delete_server(&self, server_id: &str) -> Result<(), ProviderError> {
        let (this, id) = (self.clone(), server_id.to_string());
        tokio::spawn(async move { this.delete_server_now(&id).await })
            .await
            .map_err(|e| ProviderError::Transient(format!("delete task: {e}")))?
    }

    async fn find_server(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError> {
        let st = self.inner.state.lock().await;
        Ok(st
            .servers
            .iter()
            .find(|(_, s)| s.key == key.0 && !s.deleted)
            .map(|(id, _)| id.clone()))
    }
}

impl LocalProvider {
    async fn delete_server_now(&self, server_id: &str) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let Ok(rec) = self.live_server(server_id).await else {
            return Ok(());
        };
        let inst = self.instance(&rec);
        match self.engine_of(&rec) {
            Some(engine) => engine.destroy(&inst).await.map_err(provider_error)?,
            None => remove_dir(&inst.dir).await.map_err(provider_error)?,
        }
        self.change(|st| {
            if let Some(s) = st.servers.get_mut(server_id) {
                s.deleted = true;
                s.admin_password = None;
                s.sealed_admin_password = None;
            }
            for v in st.volumes.values_mut() {
                if v.attached_to.as_deref() == Some(server_id) {
                    v.attached_to = None;
                }
            }
            Ok(())
        })
        .await
    }
}

async fn remove_dir(dir: &Path) -> Result<(), LocalError> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LocalError::io("remove the instance directory", e))
        }
        _ => Ok(()),
    }
}

impl LocalProvider {
    /// The work of `prepare`, under the server's lock (see the module docs).
    async fn prepare_now(&self, req: PrepareRequest) -> Result<(), ProviderError> {
        let sid = req.server_id.clone();
        let lock = self.lock_of(&sid);
        let _held = lock.lock().await;
        let datastore = (req.datastore_manager.clone(), req.datastore_version.clone());
        let engine = self.inner.engines.get(&datastore).cloned().ok_or_else(|| {
            ProviderError::Permanent(format!(
                "datastore {} version {} is not installed on this machine",
                datastore.0, datastore.1
            ))
        })?;
        let (admin_pw, sealed) = self.admin_password(&self.live_server(&sid).await?).await?;
        let rec = self
            .change(|st| {
                let s = st
                    .servers
                    .get_mut(&sid)
                    .filter(|s| !s.deleted)
                    .ok_or_else(|| ProviderError::NotFound(format!("server {sid}")))?;
                s.datastore = Some(datastore.clone());
                s.users = grants::accounts(&req.users);
                s.allowed_cidrs = req.allowed_cidrs.clone();
                if let Some(sealed) = sealed {
                    s.sealed_admin_password = Some(sealed);
                }
                Ok(s.clone())
            })
            .await?;
        if let Some(v) = &rec.volume_id {
            // Mounted again if it is not (a reboot, a crash): created at its size by
            // create_volume, so the size given here only matters for a lost volume.
            let size = self
                .inner
                .state
                .lock()
                .await
                .volumes
                .get(v)
                .map_or(1, |r| r.size);
            self.inner
                .volumes
                .create(v, size)
                .await
                .map_err(provider_error)?;
        }
        match req.replica_of {
            Some(primary) => {
                self.set_up_replica(engine.as_ref(), (&sid, &rec), &req, primary)
                    .await?
            }
            None if req.restore.is_some() => {
                self.set_up_restored(engine.as_ref(), (&sid, &rec), &req, &admin_pw)
                    .await?
            }
            None => set_up(engine.as_ref(), &self.instance(&rec), &req, &rec, &admin_pw)
                .await
                .map_err(provider_error)?,
        }
        self.change(|st| {
            if let Some(s) = st.servers.get_mut(&sid) {
                s.prepared = true;
            }
            Ok(())
        })
        .await
    }
}

/// Initializes, configures and starts the server, then creates the request's databases
/// and users (each user gets the databases it names, [`grants::user_spec`]), sets the
/// superuser password and restricts network logins to the allowed CIDRs
/// ([`crate::local::access`]). Every step is idempotent.
async fn set_up(
    engine: &dyn Engine,
    inst: &Instance,
    req: &PrepareRequest,
    rec: &ServerRec,
    admin_password: &str,
) -> Result<(), LocalError> {
    let allowed = access::parse_all(&req.allowed_cidrs)?;
    engine.init(inst).await?;
    // PostgreSQL's rules are in force from the first start on.
    engine.restrict_network(inst, &allowed, &[]).await?;
    let values = config_values(req.configuration.as_ref());
    if !values.is_empty() {
        engine.apply_config(inst, &values).await?;
    }
    engine.start(inst).await?;
    for db in &req.databases {
        engine.create_database(inst, db).await?;
    }
    for user in &req.users {
        engine
            .create_user(inst, &grants::user_spec(user, &req.databases))
            .await?;
    }
    engine.set_admin_password(inst, admin_password).await?;
    engine.restrict_network(inst, &allowed, &rec.users).await
}

#[async_trait]
impl GuestAgent for LocalProvider {
    async fn prepare(
        &self,
        _key: &IdempotencyKey,
        req: &PrepareRequest,
    ) -> Result<(), ProviderError> {
        let this = self.clone();
        let req = req.clone();
        tokio::spawn(async move { this.prepare_now(req).await })
            .await
            .map_err(|e| ProviderError::Transient(format!("prepare task: {e}")))?
    }

    async fn status(&self, server_id: &str) -> Result<GuestReport, ProviderError> {
        let rec = self.live_server(server_id).await?;
        let status = match (rec.prepared, self.engine_of(&rec)) {
            (false, _) => "NEW",
            (true, None) => "FAILED",
            (true, Some(engine)) => match engine.health(&self.instance(&rec)).await {
                Health::Healthy => "HEALTHY",
                Health::Unresponsive(_) => "UNKNOWN",
                Health::Down => "SHUTDOWN",
            },
        };
        Ok(GuestReport {
            status: status.into(),
        })
    }

    async fn upgrade(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        version: &str,
    ) -> Result<(), ProviderError> {
        // In its own task, as prepare: a call that times out does not cut it short.
        let (this, key, sid, version) = (
            self.clone(),
            key.clone(),
            server_id.to_string(),
            version.to_string(),
        );
        tokio::spawn(async move { this.upgrade_now(&key, &sid, &version).await })
            .await
            .map_err(|e| ProviderError::Transient(format!("upgrade task: {e}")))?
    }

    /// In its own task, as `prepare`: a restart it makes must not be cut short between
    /// the stop and the start by a saga call that gives up.
    async fn apply_configuration(
        &self,
        _key: &IdempotencyKey,
        server_id: &str,
        values: Option<&serde_json::Value>,
    ) -> Result<(), ProviderError> {
        let (this, id, values) = (self.clone(), server_id.to_string(), values.cloned());
        tokio::spawn(async move { this.apply_configuration_now(&id, values.as_ref()).await })
            .await
            .map_err(|e| ProviderError::Transient(format!("configuration task: {e}")))?
    }

    fn restarts_for_configuration(&self) -> bool {
        true
    }

    async fn detach_replica(
        &self,
        _key: &IdempotencyKey,
        server_id: &str,
    ) -> Result<(), ProviderError> {
        self.promote(server_id).await
    }

    async fn restrict_access(
        &self,
        server_id: &str,
        allowed_cidrs: &[String],
    ) -> Result<(), ProviderError> {
        self.restrict_access_now(server_id, allowed_cidrs).await
    }

    async fn promote_to_replica_source(
        &self,
        _key: &IdempotencyKey,
        set: &ReplicaSetServers,
    ) -> Result<(), ProviderError> {
        self.promote_set(set).await
    }

    async fn eject_replica_source(
        &self,
        _key: &IdempotencyKey,
        set: &ReplicaSetServers,
    ) -> Result<Uuid, ProviderError> {
        self.eject_set(set).await
    }

    // instance actions (`actions`): under the server's lock, each in its own task.
    async fn restart(&self, key: &IdempotencyKey, server_id: &str) -> Result<(), ProviderError> {
        self.restart_server(key, server_id).await
    }

    async fn resize_flavor(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        flavor: &crate::saga::ports::FlavorSpec,
    ) -> Result<(), ProviderError> {
        self.resize_server(key, server_id, flavor).await
    }

    async fn resize_volume(
        &self,
        _key: &IdempotencyKey,
        server_id: &str,
        volume_id: &str,
        size_gb: u64,
    ) -> Result<(), ProviderError> {
        self.grow_volume(server_id, volume_id, size_gb).await
    }
}

impl LocalProvider {
    async fn apply_configuration_now(
        &self,
        server_id: &str,
        values: Option<&serde_json::Value>,
    ) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let Some(engine) = self.engine_of(&rec) else {
            // Not prepared yet: prepare applies the request's configuration.
            return Ok(());
        };
        let inst = self.instance(&rec);
        let values = config_values(values);
        self.inner.refused_configs.check(server_id, &values)?;
        let before = config_restart::ConfigFiles::snapshot(&inst);
        let outcome = engine
            .apply_config(&inst, &values)
            .await
            .map_err(provider_error)?;
        tracing::info!(server = server_id, ?outcome, "configuration applied");
        // A value the running server cannot take (PostgreSQL's `max_connections`) is
        // put in force now rather than left for a restart the API cannot ask for.
        // If it does not start with them, the previous values are put back and started.
        if outcome == ConfigOutcome::RestartRequired {
            self.restart_for_configuration(server_id, engine.as_ref(), &inst, &before, &values)
                .await?;
            tracing::info!(server = server_id, "restarted for its configuration");
        }
        Ok(())
    }
}

#[async_trait]
impl ResourceInventory for LocalProvider {
    async fn gone(&self, claimed: &ResourceIds) -> Result<ResourceIds, ProviderError> {
        let st = self.inner.state.lock().await;
        Ok(gone_from(&st, claimed))
    }

    fn state_location(&self) -> String {
        self.state_path().display().to_string()
    }
}

/// Which of `claimed` `st` does not have: unknown, deleted, or whose files are gone (a
/// prepared server without its directory, a volume without its directory).
fn gone_from(st: &State, claimed: &ResourceIds) -> ResourceIds {
    let servers = claimed
        .servers
        .iter()
        .filter(|id| match st.servers.get(*id) {
            Some(s) => s.deleted || (s.prepared && !s.dir.is_dir()),
            None => true,
        })
        .cloned()
        .collect();
    let volumes = claimed
        .volumes
        .iter()
        .filter(|id| match st.volumes.get(*id) {
            Some(v) => v.deleted || !v.path.is_dir(),
            None => true,
        })
        .cloned()
        .collect();
    ResourceIds { servers, volumes }
}

/// What `state.json` in `root` holds before the server opens it. Blocking.
pub fn probe(root: &Path) -> Result<StoredState, LocalError> {
    state::probe(root)
}

/// The inventory of the local provider in `root` as pretty JSON (`{"servers": [...],
/// "volumes": [...]}`, live resources only), for `troved local list`. Read only, also
/// while troved runs. Blocking.
pub fn list_json(root: &Path) -> Result<String, LocalError> {
    let st = state::load(root)?.ok_or_else(|| {
        LocalError::Unusable(format!(
            "no local provider state at {} (troved --provider local creates it)",
            state::path(root).display()
        ))
    })?;
    let servers: Vec<serde_json::Value> = st
        .servers
        .iter()
        .filter(|(_, s)| !s.deleted)
        .map(|(id, s)| server_json(id, s))
        .collect();
    let volumes: Vec<serde_json::Value> = st
        .volumes
        .iter()
        .filter(|(_, v)| !v.deleted)
        .map(|(id, v)| {
            json!({
                "id": id, "instance_id": v.instance_id, "instance_name": v.instance_name,
                "status": if v.attached_to.is_some() { "in-use" } else { "available" },
                "size": v.size, "path": v.path, "attached_to": v.attached_to,
            })
        })
        .collect();
    let out = json!({ "servers": servers, "volumes": volumes });
    serde_json::to_string_pretty(&out).map_err(|e| LocalError::Unusable(e.to_string()))
}

/// One server of `troved local list`: its process (from `server.json`, checked against
/// the process table) and its status: `running`, `stopped` or `reserved` (a port, not
/// prepared yet).
fn server_json(id: &str, s: &ServerRec) -> serde_json::Value {
    let inst = Instance {
        dir: s.dir.clone(),
        port: s.port,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ram_mb: None,
    };
    let record = super::ServerRecord::load(&inst);
    let running = record.as_ref().is_some_and(super::ServerRecord::is_running);
    let status = match (&record, running) {
        (_, true) => "running",
        (Some(_), false) => "stopped",
        (None, _) if s.prepared => "stopped",
        (None, _) => "reserved",
    };
    let (datastore, version) = s.datastore.clone().unzip();
    json!({
        "id": id, "instance_id": s.instance_id, "instance_name": s.instance_name,
        "status": status, "pid": record.as_ref().filter(|_| running).map(|r| r.pid),
        "port": s.port, "public": s.public, "path": s.dir,
        "data_dir": inst.data_dir(), "datastore": datastore, "version": version,
        "volume_id": s.volume_id,
    })
}
