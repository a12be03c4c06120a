//! The simulated cloud: the default implementation of the provider ports
//! ([`VolumeProvider`], [`ComputeProvider`], [`GuestAgent`]).
//!
//! Responsibility: behave like an external cloud that the saga drives, with state the
//! event log does not own. Its servers, volumes, guests and idempotency keys live in
//! their own SQLite file (`cloud.db` in the data directory, WAL, `synchronous=NORMAL`), so
//! after a SIGKILL a crash test can compare what the cloud holds with what the log says
//! and find duplicates and leaks. It must not read or write the event store, and it
//! knows nothing about instances beyond what the calls tell it.
//!
//! Behaviour, in the order a call sees it:
//! 1. every call first sleeps the configured latency (`tokio::time::sleep`; none when
//!    zero);
//! 2. fault injection ([`fault`]) may fail it, hang it, or let the effect happen and
//!    lose the answer;
//! 3. the effect runs as one SQLite transaction on a blocking thread, one at a time.
//!
//! Idempotency: a create with a key already used returns the resource made the first
//! time (also across restarts, the key is in the file). A create with the key of a
//! resource that was deleted fails with `ProviderError::Permanent` instead of
//! resurrecting it: the saga never reuses a key after deleting, so a second life would
//! only hide a bug. Deletes of what is gone succeed.
//!
//! Status progressions (a status call observes the cloud when it arrives, before its
//! latency sleep; "one latency period" is `SimConfig::latency`):
//! * server: `BUILD` from `create_server` until one latency period after it was
//!   created, then `ACTIVE`; `ERROR` under a permanent `server_status` fault, `BUILD`
//!   forever under a hang; gone (`NotFound`) once deleted;
//! * guest: `NEW` before `prepare`, `BUILDING` for one latency period after it, then
//!   `HEALTHY`; `UPGRADING` for one latency period after `upgrade`; `FAILED` under a
//!   permanent `guest_status` fault, its in-progress status forever under a hang;
//! * volume: `available`, `in-use` while attached (deleting its server detaches it).
//!
//! With zero latency a server is `ACTIVE` and a guest `HEALTHY` at the first poll.

mod backup;
mod db;
pub mod fault;
mod inventory;
mod replica;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

use self::db::{GuestOp, OpError, OpResult, Report, Settings};
pub use self::fault::{FaultMode, FaultSpec};
use self::fault::{FaultPlan, Injected, Step};
pub use self::inventory::{
    SimGuest, SimGuestOperation, SimInventory, SimServer, SimVolume, ZoneUsage,
};
use crate::saga::ports::{
    ComputeProvider, GuestAgent, GuestReport, IdempotencyKey, PrepareRequest, ProviderError,
    ReplicaSetServers, ResourceIds, ResourceInventory, Server, ServerSpec, StoredState, Volume,
    VolumeProvider, VolumeSpec, VolumeUsage,
};

/// The file name of the simulated cloud in the data directory.
pub const FILE_NAME: &str = "cloud.db";
/// Per-call latency when none is configured: a few hundred ms, like a real cloud API.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(300);
/// The zone used when a request names none.
pub const DEFAULT_ZONE: &str = "nova";
pub use self::db::{DEFAULT_NETWORK, PUBLIC_NETWORK};

/// Where the simulated cloud of a data directory lives.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// What one availability zone can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneCapacity {
    pub vcpus: u64,
    pub ram_mb: u64,
    pub volume_gb: u64,
}

/// 256 vCPU, 1 TiB RAM, 10 TiB of volumes: hundreds of test instances fit.
impl Default for ZoneCapacity {
    fn default() -> ZoneCapacity {
        ZoneCapacity {
            vcpus: 256,
            ram_mb: 1024 * 1024,
            volume_gb: 10 * 1024,
        }
    }
}

impl ZoneCapacity {
    /// Parses `NAME[:vcpus=N][:ram_mb=N][:volume_gb=N]` (omitted values take the
    /// defaults), e.g. `nova:vcpus=4:ram_mb=8192`, for a repeatable CLI flag.
    pub fn parse_zone(s: &str) -> Result<(String, ZoneCapacity), String> {
        let mut parts = s.trim().split(':');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() || name.contains('=') {
            return Err(format!(
                "zone {s:?} must start with its name: NAME[:vcpus=N][:ram_mb=N][:volume_gb=N]"
            ));
        }
        let mut cap = ZoneCapacity::default();
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} in zone {s:?} is not key=value"))?;
            let value: u64 = value
                .parse()
                .map_err(|_| format!("{key}={value:?} in zone {s:?} is not a number"))?;
            match key {
                "vcpus" => cap.vcpus = value,
                "ram_mb" => cap.ram_mb = value,
                "volume_gb" => cap.volume_gb = value,
                _ => {
                    return Err(format!(
                        "unknown key {key:?} in zone {s:?} (expected vcpus, ram_mb, volume_gb)"
                    ))
                }
            }
        }
        Ok((name.to_string(), cap))
    }
}

/// How the simulated cloud behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Slept at the start of every call; also how long a new server stays `BUILD` and
    /// a guest `BUILDING`/`UPGRADING`. Zero for benchmarks.
    pub latency: Duration,
    /// Seed of fault injection: the same seed and rules give the same failures.
    pub seed: u64,
    /// Fault rules, checked in order; the first that fires wins.
    pub faults: Vec<FaultSpec>,
    /// Availability zones and what each can hold; a request for another zone fails.
    pub zones: BTreeMap<String, ZoneCapacity>,
    /// The zone of requests that name none; must be one of `zones`.
    pub default_zone: String,
    /// Bytes of a simulated backup artifact after its header.
    pub backup_bytes: u64,
}

/// [`DEFAULT_LATENCY`], seed 0, no faults, one zone `nova` with the default capacity.
impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            latency: DEFAULT_LATENCY,
            seed: 0,
            faults: Vec::new(),
            zones: BTreeMap::from([(DEFAULT_ZONE.to_string(), ZoneCapacity::default())]),
            default_zone: DEFAULT_ZONE.to_string(),
            backup_bytes: backup::SIM_ARTIFACT_BYTES,
        }
    }
}

impl SimConfig {
    /// The defaults with zero latency (benchmarks and most tests).
    pub fn instant() -> SimConfig {
        SimConfig {
            latency: Duration::ZERO,
            ..SimConfig::default()
        }
    }
}

/// Why the simulated cloud could not be opened or listed. Provider calls report
/// [`ProviderError`] instead.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulated cloud configuration: {0}")]
    Config(String),
    #[error("no simulated cloud at {0} (the server creates it on first start)")]
    Missing(PathBuf),
    #[error("simulated cloud {path}: {message}")]
    Storage { path: PathBuf, message: String },
    #[error("simulated cloud {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("the simulated cloud's worker failed: {0}")]
    Worker(String),
}

impl SimError {
    fn from_op(path: &Path, e: OpError) -> SimError {
        let path = path.to_path_buf();
        match e {
            OpError::Db(e) => SimError::Storage {
                path,
                message: e.to_string(),
            },
            OpError::Corrupt(message) => SimError::Corrupt { path, message },
            OpError::Provider(e) => SimError::Storage {
                path,
                message: e.to_string(),
            },
            OpError::Worker(e) => SimError::Worker(e),
        }
    }
}

/// Prints the inventory of the simulated cloud in `data_dir` as pretty JSON
/// (`{"servers": [...], "volumes": [...]}`), for `troved sim list`.
///
/// Opens `cloud.db` for reading only, so a running server may keep using it (WAL lets
/// both proceed). Blocking: call it from `main` or `spawn_blocking`.
pub fn list_json(data_dir: &Path) -> Result<String, SimError> {
    let path = db_path(data_dir);
    if !path.is_file() {
        return Err(SimError::Missing(path));
    }
    let conn = db::open_reader(&path).map_err(|e| SimError::from_op(&path, e))?;
    let inventory =
        inventory::inventory(&conn, wall_ms()).map_err(|e| SimError::from_op(&path, e))?;
    serde_json::to_string_pretty(&inventory).map_err(|e| SimError::Corrupt {
        path,
        message: e.to_string(),
    })
}

/// What `cloud.db` in `data_dir` holds before the server opens it (opening creates a
/// missing file, so the start-up check asks first): missing, empty (no server or volume
/// was ever created in it: emptied or recreated), or present. Blocking.
pub fn probe(data_dir: &Path) -> Result<StoredState, SimError> {
    let path = db_path(data_dir);
    if !path.exists() {
        return Ok(StoredState::Missing);
    }
    let conn = db::open_reader(&path).map_err(|e| SimError::from_op(&path, e))?;
    let held = db::ever_held_resources(&conn).map_err(|e| SimError::from_op(&path, e))?;
    Ok(if held {
        StoredState::Present
    } else {
        StoredState::Empty
    })
}

/// Which of `claimed` the simulated cloud in `data_dir` does not have, read only (also
/// while troved runs), for `troved sim check`. Blocking.
pub fn gone_in(data_dir: &Path, claimed: &ResourceIds) -> Result<ResourceIds, SimError> {
    let path = db_path(data_dir);
    if !path.is_file() {
        return Err(SimError::Missing(path));
    }
    let conn = db::open_reader(&path).map_err(|e| SimError::from_op(&path, e))?;
    let gone = |table, ids: &[String]| {
        db::not_live(&conn, table, ids).map_err(|e| SimError::from_op(&path, e))
    };
    Ok(ResourceIds {
        servers: gone(db::Table::Servers, &claimed.servers)?,
        volumes: gone(db::Table::Volumes, &claimed.volumes)?,
    })
}

/// Milliseconds since the Unix epoch by the system clock.
fn wall_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The cloud's notion of now: the wall clock at open plus tokio's monotonic time since.
/// Timestamps in the file stay meaningful across restarts, and tests that pause tokio
/// time see servers and guests settle as virtual time advances.
struct Clock {
    wall_at_open: i64,
    opened: tokio::time::Instant,
}

impl Clock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.opened.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall_at_open.saturating_add(elapsed)
    }
}

/// The simulated cloud; cheap to clone (clones share the file and the fault counters).
#[derive(Clone)]
pub struct SimCloud {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The only connection. An async mutex so waiting callers queue without holding a
    /// blocking thread; the holder runs its transaction on `spawn_blocking`.
    conn: Arc<Mutex<Connection>>,
    settings: Arc<Settings>,
    latency: Duration,
    faults: FaultPlan,
    clock: Clock,
    /// Where simulated backup artifacts go ([`SimCloud::attach_backup_store`]).
    backup_store: std::sync::OnceLock<Arc<dyn crate::backup_store::BackupStore>>,
    /// Bytes of a simulated backup artifact after its header.
    backup_bytes: u64,
}

/// Which resource an id-addressed call is about, for fault targeting.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Server(&'a str),
    Volume(&'a str),
}

impl SimCloud {
    /// Opens the simulated cloud stored at `path` (created if missing), e.g.
    /// `db_path(data_dir)`.
    ///
    /// Synchronous (opening, WAL recovery and schema creation take milliseconds); needs
    /// no tokio runtime, but the provider calls do.
    pub fn open(path: &Path, config: SimConfig) -> Result<SimCloud, SimError> {
        if !config.zones.contains_key(&config.default_zone) {
            return Err(SimError::Config(format!(
                "the default availability zone '{}' is not one of the zones ({})",
                config.default_zone,
                config.zones.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let conn = db::open_writer(path).map_err(|e| SimError::from_op(path, e))?;
        let settle_ms = i64::try_from(config.latency.as_millis()).unwrap_or(i64::MAX);
        Ok(SimCloud {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Arc::new(Mutex::new(conn)),
                settings: Arc::new(Settings {
                    zones: config.zones,
                    default_zone: config.default_zone,
                    settle_ms,
                }),
                latency: config.latency,
                faults: FaultPlan::new(config.seed, config.faults),
                clock: Clock {
                    wall_at_open: wall_ms(),
                    opened: tokio::time::Instant::now(),
                },
                backup_store: std::sync::OnceLock::new(),
                backup_bytes: config.backup_bytes,
            }),
        })
    }

    /// Opens `cloud.db` in `data_dir`.
    pub fn open_in(data_dir: &Path, config: SimConfig) -> Result<SimCloud, SimError> {
        SimCloud::open(&db_path(data_dir), config)
    }

    /// The file this cloud is stored in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Every live server and volume (no latency, no faults).
    pub async fn list(&self) -> Result<SimInventory, SimError> {
        let at = self.now();
        self.run(move |conn, _| inventory::inventory(conn, at))
            .await
            .map_err(|e| SimError::from_op(self.path(), e))
    }

    /// Capacity and use of every configured zone (no latency, no faults).
    pub async fn zones(&self) -> Result<Vec<ZoneUsage>, SimError> {
        self.run(|conn, settings| inventory::zones(conn, &settings.zones))
            .await
            .map_err(|e| SimError::from_op(self.path(), e))
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    async fn pause(&self) {
        if !self.inner.latency.is_zero() {
            tokio::time::sleep(self.inner.latency).await;
        }
    }

    /// Runs `f` on a blocking thread with the connection. A caller that gives up
    /// (timeout, cancelled saga) does not cancel it: the transaction commits or rolls
    /// back as a whole either way.
    async fn run<T, F>(&self, f: F) -> OpResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Settings) -> OpResult<T> + Send + 'static,
    {
        let mut conn = Arc::clone(&self.inner.conn).lock_owned().await;
        let settings = Arc::clone(&self.inner.settings);
        tokio::task::spawn_blocking(move || f(&mut conn, &settings))
            .await
            .map_err(|e| OpError::Worker(e.to_string()))?
    }

    async fn call<T, F>(&self, f: F) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Settings) -> OpResult<T> + Send + 'static,
    {
        self.run(f).await.map_err(OpError::into_provider)
    }

    /// The fault verdict for a call about an existing resource: looks up whose it is
    /// (only when a rule targets `step`). `key` is the identity of keyed calls.
    async fn inject_on(
        &self,
        step: Step,
        subject: Subject<'_>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<Injected>, ProviderError> {
        if !self.inner.faults.targets(step) {
            return Ok(None);
        }
        let owner = match subject {
            Subject::Server(id) => {
                let id = id.to_string();
                self.call(move |conn, _| db::server_subject(conn, &id))
                    .await?
            }
            Subject::Volume(id) => {
                let id = id.to_string();
                self.call(move |conn, _| db::volume_subject(conn, &id))
                    .await?
            }
        };
        let resource_id = match subject {
            Subject::Server(id) | Subject::Volume(id) => id,
        };
        let identity = match (key, &owner) {
            (Some(key), _) => key.0.clone(),
            (None, Some((instance_id, _))) => instance_id.to_string(),
            (None, None) => resource_id.to_string(),
        };
        let name = owner.as_ref().map(|(_, name)| name.as_str());
        Ok(self.inner.faults.check(step, name, &identity))
    }

    /// The verdict for a keyed create about instance `name`.
    fn inject_create(&self, step: Step, name: &str, key: &IdempotencyKey) -> Option<Injected> {
        self.inner.faults.check(step, Some(name), &key.0)
    }
}

/// Applies a verdict to a call with an effect: fails it now, never answers, or lets the
/// effect run and returns the error to report afterwards (a lost answer).
async fn before_effect(verdict: Option<Injected>) -> Result<Option<ProviderError>, ProviderError> {
    match verdict {
        None | Some(Injected::Broken) => Ok(None),
        Some(Injected::Fail(e)) => Err(e),
        Some(Injected::Lost(e)) => Ok(Some(e)),
        Some(Injected::Hang) => match std::future::pending::<Infallible>().await {},
    }
}

/// The answer of a call with an effect, unless its answer is to be lost.
fn after_effect<T>(
    result: Result<T, ProviderError>,
    lost: Option<ProviderError>,
) -> Result<T, ProviderError> {
    match (result, lost) {
        (Ok(_), Some(e)) => Err(e),
        (result, _) => result,
    }
}

/// How a status call reports under a verdict.
fn report(verdict: Option<Injected>) -> Result<Report, ProviderError> {
    match verdict {
        None | Some(Injected::Lost(_)) => Ok(Report::Truth),
        Some(Injected::Fail(e)) => Err(e),
        Some(Injected::Hang) => Ok(Report::Stuck),
        Some(Injected::Broken) => Ok(Report::Broken),
    }
}

#[async_trait]
impl VolumeProvider for SimCloud {
    async fn create_volume(
        &self,
        key: &IdempotencyKey,
        spec: &VolumeSpec,
    ) -> Result<Volume, ProviderError> {
        self.pause().await;
        let lost =
            before_effect(self.inject_create(Step::CreateVolume, &spec.instance_name, key)).await?;
        let (key, spec, now) = (key.0.clone(), spec.clone(), self.now());
        let result = self
            .call(move |conn, s| db::create_volume(conn, s, &key, &spec, now))
            .await;
        after_effect(result, lost)
    }

    async fn find_volume(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError> {
        let key = key.0.clone();
        self.call(move |conn, _| db::find_live_by_key(conn, &key, false))
            .await
    }

    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(Step::AttachVolume, Subject::Volume(volume_id), None)
            .await?;
        let lost = before_effect(verdict).await?;
        let (volume_id, server_id) = (volume_id.to_string(), server_id.to_string());
        let result = self
            .call(move |conn, _| db::attach_volume(conn, &volume_id, &server_id))
            .await;
        after_effect(result, lost)
    }

    async fn detach_volume(&self, volume_id: &str) -> Result<(), ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(Step::DetachVolume, Subject::Volume(volume_id), None)
            .await?;
        let lost = before_effect(verdict).await?;
        let volume_id = volume_id.to_string();
        let result = self
            .call(move |conn, _| db::detach_volume(conn, &volume_id))
            .await;
        after_effect(result, lost)
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(Step::DeleteVolume, Subject::Volume(volume_id), None)
            .await?;
        let lost = before_effect(verdict).await?;
        let (volume_id, now) = (volume_id.to_string(), self.now());
        let result = self
            .call(move |conn, _| db::delete_volume(conn, &volume_id, now))
            .await;
        after_effect(result, lost)
    }

    async fn volume_usage(&self, volume_id: &str) -> Result<VolumeUsage, ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(Step::VolumeUsage, Subject::Volume(volume_id), None)
            .await?;
        before_effect(verdict).await?;
        let volume_id = volume_id.to_string();
        self.call(move |conn, _| db::volume_usage(conn, &volume_id))
            .await
    }
}

#[async_trait]
impl ResourceInventory for SimCloud {
    async fn gone(&self, claimed: &ResourceIds) -> Result<ResourceIds, ProviderError> {
        let claimed = claimed.clone();
        self.call(move |conn, _| {
            Ok(ResourceIds {
                servers: db::not_live(conn, db::Table::Servers, &claimed.servers)?,
                volumes: db::not_live(conn, db::Table::Volumes, &claimed.volumes)?,
            })
        })
        .await
    }

    fn state_location(&self) -> String {
        self.path().display().to_string()
    }
}

#[async_trait]
impl ComputeProvider for SimCloud {
    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> Result<Server, ProviderError> {
        self.pause().await;
        let lost =
            before_effect(self.inject_create(Step::CreateServer, &spec.instance_name, key)).await?;
        let (key, spec, now) = (key.0.clone(), spec.clone(), self.now());
        let result = self
            .call(move |conn, s| db::create_server(conn, s, &key, &spec, now))
            .await;
        after_effect(result, lost)
    }

    async fn find_server(&self, key: &IdempotencyKey) -> Result<Option<String>, ProviderError> {
        let key = key.0.clone();
        self.call(move |conn, _| db::find_live_by_key(conn, &key, true))
            .await
    }

    async fn server(&self, server_id: &str) -> Result<Server, ProviderError> {
        let arrived = self.now();
        self.pause().await;
        let verdict = self
            .inject_on(Step::ServerStatus, Subject::Server(server_id), None)
            .await?;
        let report = report(verdict)?;
        let server_id = server_id.to_string();
        self.call(move |conn, _| db::server(conn, &server_id, arrived, report))
            .await
    }

    async fn set_public(&self, server_id: &str, public: bool) -> Result<Server, ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(Step::SetPublic, Subject::Server(server_id), None)
            .await?;
        let lost = before_effect(verdict).await?;
        let (server_id, now) = (server_id.to_string(), self.now());
        let result = self
            .call(move |conn, _| db::set_public(conn, &server_id, public, now))
            .await;
        after_effect(result, lost)
    }

    async fn delete_server(&self, server_id: &str) -> Result<(), ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(Step::DeleteServer, Subject::Server(server_id), None)
            .await?;
        let lost = before_effect(verdict).await?;
        let (server_id, now) = (server_id.to_string(), self.now());
        let result = self
            .call(move |conn, _| db::delete_server(conn, &server_id, now))
            .await;
        after_effect(result, lost)
    }
}

/// Records each change of a guest's databases, users or root in `guest_operations`
/// (without passwords); fault step `guest_change`.
#[async_trait]
impl crate::saga::guest_admin::GuestAdmin for SimCloud {
    async fn apply_change(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        _manager: &str,
        change: &crate::saga::guest_admin::GuestChange,
    ) -> Result<(), ProviderError> {
        let op = GuestOp::GuestChange(change.public_detail());
        self.guest_op(Step::GuestChange, key, server_id, op).await
    }
}

impl SimCloud {
    /// The shared path of upgrade, apply_configuration, detach_replica and guest changes.
    async fn guest_op(
        &self,
        step: Step,
        key: &IdempotencyKey,
        server_id: &str,
        op: GuestOp,
    ) -> Result<(), ProviderError> {
        self.pause().await;
        let verdict = self
            .inject_on(step, Subject::Server(server_id), Some(key))
            .await?;
        let lost = before_effect(verdict).await?;
        let (key, server_id, now) = (key.0.clone(), server_id.to_string(), self.now());
        let result = self
            .call(move |conn, s| db::guest_operation(conn, s, &key, &server_id, op, now))
            .await;
        after_effect(result, lost)
    }
}

#[async_trait]
impl GuestAgent for SimCloud {
    async fn prepare(
        &self,
        key: &IdempotencyKey,
        req: &PrepareRequest,
    ) -> Result<(), ProviderError> {
        self.pause().await;
        let lost =
            before_effect(self.inject_create(Step::Prepare, &req.instance_name, key)).await?;
        if let Some(restore) = &req.restore {
            self.check_restore(restore).await?;
        }
        let (key, req, now) = (key.0.clone(), req.clone(), self.now());
        let result = self
            .call(move |conn, s| db::prepare(conn, s, &key, &req, now))
            .await;
        after_effect(result, lost)
    }

    async fn status(&self, server_id: &str) -> Result<GuestReport, ProviderError> {
        let arrived = self.now();
        self.pause().await;
        let verdict = self
            .inject_on(Step::GuestStatus, Subject::Server(server_id), None)
            .await?;
        let report = report(verdict)?;
        let server_id = server_id.to_string();
        let status = self
            .call(move |conn, _| db::guest_status(conn, &server_id, arrived, report))
            .await?;
        Ok(GuestReport { status })
    }

    async fn upgrade(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        version: &str,
    ) -> Result<(), ProviderError> {
        let op = GuestOp::Upgrade(version.to_string());
        self.guest_op(Step::Upgrade, key, server_id, op).await
    }

    async fn apply_configuration(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        values: Option<&serde_json::Value>,
    ) -> Result<(), ProviderError> {
        let op = GuestOp::ApplyConfiguration(values.cloned());
        self.guest_op(Step::ApplyConfiguration, key, server_id, op)
            .await
    }

    async fn detach_replica(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
    ) -> Result<(), ProviderError> {
        self.guest_op(Step::DetachReplica, key, server_id, GuestOp::DetachReplica)
            .await
    }

    /// Nothing to tell a simulated guest (the cloud's network would filter addresses);
    /// only fault injection (`restrict_access`) acts here, so that a failed access
    /// update can be exercised. No pause: without a fault it stays free, as before.
    async fn restrict_access(
        &self,
        server_id: &str,
        _allowed_cidrs: &[String],
    ) -> Result<(), ProviderError> {
        let verdict = self
            .inject_on(Step::RestrictAccess, Subject::Server(server_id), None)
            .await?;
        let lost = before_effect(verdict).await?;
        after_effect(Ok(()), lost)
    }

    async fn promote_to_replica_source(
        &self,
        key: &IdempotencyKey,
        set: &ReplicaSetServers,
    ) -> Result<(), ProviderError> {
        self.switch_replica_set(Step::Promote, key, set)
            .await
            .map(|_| ())
    }

    async fn eject_replica_source(
        &self,
        key: &IdempotencyKey,
        set: &ReplicaSetServers,
    ) -> Result<Uuid, ProviderError> {
        self.switch_replica_set(Step::Eject, key, set).await
    }

    // instance actions
    async fn restart(&self, key: &IdempotencyKey, server_id: &str) -> Result<(), ProviderError> {
        self.guest_op(Step::Restart, key, server_id, GuestOp::Restart)
            .await
    }

    async fn resize_flavor(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        flavor: &crate::saga::ports::FlavorSpec,
    ) -> Result<(), ProviderError> {
        let op = GuestOp::ResizeFlavor {
            flavor_id: flavor.flavor_id.clone(),
            vcpus: flavor.vcpus,
            ram_mb: flavor.ram,
        };
        self.guest_op(Step::Resize, key, server_id, op).await
    }

    async fn resize_volume(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        _volume_id: &str,
        size_gb: u64,
    ) -> Result<(), ProviderError> {
        let op = GuestOp::ResizeVolume { size_gb };
        self.guest_op(Step::Resize, key, server_id, op).await
    }
}
