//! Assembly: opens the stores, rebuilds the read models from the log, starts the
//! projector and the saga runner, and serves HTTP until shutdown.
//!
//! [`Server::start`] takes an already bound listener and returns a handle, so the binary
//! stays thin. Lifecycle rules: one process per data directory (an exclusive lock on
//! the directory); if the projector or the saga runner stops on its own, the server stops with an
//! error (serving stale reads forever would be worse); on shutdown, HTTP stops first
//! (at once for new connections; requests in flight get `--shutdown-grace-secs`), then
//! the background tasks are signalled and awaited, then the store drains its queue.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::catalog::{CatalogError, Limits, StaticCatalog};
use crate::config::ServeConfig;
use crate::http::auth::AuthMode;
use crate::http::{self, AppState};
use crate::local::provider::setup::{choose, Choice};
use crate::local::provider::{LocalConfig, LocalProvider};
use crate::net::{self, NetConfig};
use crate::reconcile::{self, LostStateError, Reconciler};
use crate::runtime::commands::CommandBus;
use crate::runtime::lookups::Lookups;
use crate::runtime::projector::{self, ReadModels};
use crate::runtime::rebuild::Rebuilder;
use crate::runtime::snapshot;
use crate::saga::heartbeat::{HeartbeatConfig, Supervisor};
use crate::saga::{Policy, Providers, SagaRunner, SagaRunnerDeps};
use crate::secrets::{Vault, VaultError};
use crate::sim::{FaultSpec, SimCloud, SimConfig, SimError, ZoneCapacity};
use crate::store::{EventStore, Position, StoreError, StoreUrl};
use projections::views::Heartbeats;
use projections::InstanceModels;

/// Why the server could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0} is in use by another troved process")]
    Locked(PathBuf),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("secret vault: {0}")]
    Vault(#[from] VaultError),
    #[error("http server: {0}")]
    Http(std::io::Error),
    #[error("{0} stopped unexpectedly")]
    TaskDied(&'static str),
    #[error("simulated cloud: {0}")]
    Sim(#[from] SimError),
    #[error(transparent)]
    LostState(#[from] LostStateError),
}

/// Start-up step 5b: the vault and the provider's state, checked against the log (the
/// read models) before opening them creates what is missing (`crate::reconcile`). Also
/// returns the instances whose secrets the operator accepted as lost.
async fn open_vault_and_provider(
    cfg: &ServeConfig,
    models: &InstanceModels,
    choice: Choice,
) -> Result<Opened, ServerError> {
    let (vault, lost_secrets) =
        reconcile::check_vault(&cfg.secrets_path(), models, cfg.accept_lost_secrets)?;
    let vault = Arc::new(vault);
    let backup_store = crate::backup_store::open(&cfg.backup_store_url())
        .await
        .map_err(ServerError::Config)?;
    tracing::info!(url = %backup_store.url(), "backup store");
    let (providers, state_file, local) = match choice {
        Choice::Sim => {
            let cloud = Arc::new(open_cloud(cfg, models)?);
            cloud.attach_backup_store(backup_store.clone());
            (sim_providers(&cloud), cfg.cloud_path(), None)
        }
        Choice::Local(local) => {
            let opened = open_local(cfg, models, local, vault.clone(), backup_store.clone());
            let provider = Arc::new(opened.await?);
            let state_file = provider.state_path();
            (local_providers(&provider), state_file, Some(provider))
        }
    };
    Ok(Opened {
        vault,
        lost_secrets,
        providers,
        state_file,
        local,
        backup_store,
    })
}

/// The local provider, after its state was checked against the log. Its root must be
/// reachable by the database user: when it is inside the data directory, that becomes
/// 0711 (traversable, not listable; the files in it stay 0600).
async fn open_local(
    cfg: &ServeConfig,
    models: &InstanceModels,
    local: LocalConfig,
    vault: Arc<Vault>,
    backups: Arc<dyn crate::backup_store::BackupStore>,
) -> Result<LocalProvider, ServerError> {
    if local.root.starts_with(&cfg.data_dir) {
        restrict_permissions(&cfg.data_dir, 0o711);
    }
    let found = crate::local::provider::probe(&local.root)
        .map_err(|e| ServerError::Config(format!("local provider: {e}")))?;
    reconcile::check_provider_state(
        found,
        &crate::local::provider::state::path(&local.root)
            .display()
            .to_string(),
        models,
        cfg.accept_lost_cloud_state,
    )?;
    LocalProvider::open(local, vault, backups)
        .await
        .map_err(|e| ServerError::Config(format!("local provider: {e}")))
}

/// Every provider port, served by the local provider.
fn local_providers(local: &Arc<LocalProvider>) -> Providers {
    Providers {
        volumes: local.clone(),
        compute: local.clone(),
        guests: local.clone(),
        inventory: local.clone(),
        backups: local.clone(),
        guest_admin: local.clone(),
    }
}

/// What [`open_vault_and_provider`] opened.
struct Opened {
    vault: Arc<Vault>,
    /// Instances whose secrets the operator accepted as lost (to be recorded).
    lost_secrets: Vec<uuid::Uuid>,
    /// Every provider port (one provider serves them all).
    providers: Providers,
    /// Where backup artifacts are kept.
    backup_store: Arc<dyn crate::backup_store::BackupStore>,
    /// The provider's own state file (`cloud.db`, the local `state.json`).
    state_file: PathBuf,
    /// The local provider, whose servers the heartbeat supervisor looks after.
    local: Option<Arc<LocalProvider>>,
}

/// The provider behind the saga: the simulated cloud (the only one for now), after its
/// state was checked against the log (`crate::reconcile`).
fn open_cloud(cfg: &ServeConfig, models: &InstanceModels) -> Result<SimCloud, ServerError> {
    let config = sim_config(cfg)?;
    let found = crate::sim::probe(&cfg.data_dir)?;
    reconcile::check_provider_state(
        found,
        &cfg.cloud_path().display().to_string(),
        models,
        cfg.accept_lost_cloud_state,
    )?;
    Ok(SimCloud::open_in(&cfg.data_dir, config)?)
}

/// The simulated cloud's configuration from the flags.
fn sim_config(cfg: &ServeConfig) -> Result<SimConfig, ServerError> {
    let faults = cfg
        .sim_faults
        .iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            FaultSpec::parse(f).map_err(|e| ServerError::Config(format!("--sim-fault {f}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = SimConfig {
        latency: Duration::from_millis(cfg.sim_latency_ms),
        seed: cfg.sim_seed,
        faults,
        backup_bytes: cfg.sim_backup_kb.saturating_mul(1024),
        ..SimConfig::default()
    };
    let zones = cfg
        .sim_zones
        .iter()
        .filter(|z| !z.trim().is_empty())
        .map(|z| {
            ZoneCapacity::parse_zone(z)
                .map_err(|e| ServerError::Config(format!("--sim-zone {z}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((first, _)) = zones.first() {
        config.default_zone = first.clone();
        config.zones = zones.into_iter().collect();
    }
    Ok(config)
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    http: JoinHandle<std::io::Result<()>>,
    /// Projector and saga runner; each task returns its name when it ends.
    tasks: JoinSet<&'static str>,
    stop_tasks: watch::Sender<bool>,
    store: Arc<dyn EventStore>,
    /// Held for the process's lifetime: the exclusive lock on the data directory (and on
    /// an embedded store's directory when that is elsewhere).
    _lock: (File, Option<File>),
}

/// Takes the exclusive lock on the data directory (one process per data directory: a
/// second one would serve reads that never see the first one's writes).
fn lock_data_dir(cfg: &ServeConfig) -> Result<File, ServerError> {
    lock_dir(&cfg.data_dir)
}

/// Takes an exclusive lock on the directory `dir` itself, creating it (mode 0700) if need
/// be; held until the returned handle is dropped. The lock is an OS lock (`flock`) on an
/// open descriptor of the directory, so it cannot be lost by deleting a file in it (a lock
/// file, once deleted, would let a second process lock a new one). `troved migrate` takes
/// it on an embedded store's directory too, so it never copies from or into a store a
/// server is using.
pub fn lock_dir(dir: &std::path::Path) -> Result<File, ServerError> {
    let dir = &dir.to_path_buf();
    let io = |source| ServerError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    restrict_permissions(dir, 0o700);
    let lock = File::open(dir).map_err(io)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::Locked(dir.clone())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// The data directory and its files are the operator's alone: the log holds every
/// instance's history and `secrets.db` its keys.
fn restrict_permissions(path: &std::path::Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            tracing::warn!(path = %path.display(), error = %e, "could not restrict permissions");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

impl Server {
    /// Opens everything under `cfg.data_dir`, replays the log into the read models, and
    /// starts serving on `listener`. Requests are accepted only after the replay.
    pub async fn start(
        cfg: &ServeConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Server, ServerError> {
        let (auth, addr) = check_auth(cfg, &listener).await?;
        let policy = load_policy(cfg)?;
        let (catalog, choice) = choose(cfg, load_catalog(cfg)?)
            .await
            .map_err(ServerError::Config)?;
        let catalog = Arc::new(catalog);
        let lock = lock_data_dir(cfg)?;
        let store_url = cfg.store_url().map_err(ServerError::Config)?;
        let store_lock = lock_store_dir(cfg, &store_url)?;
        let dyn_store = store_url.open().await?;
        tracing::info!(event_store = %store_url.redacted(), "event store opened");
        let (all, from, reached) = rebuild_read_models(cfg, dyn_store.as_ref()).await?;
        let models = all.instances.clone();
        let opened = open_vault_and_provider(cfg, &models, choice).await?;
        restrict_private_files(cfg, &store_url, &opened.state_file);
        let (applied_tx, applied_rx) = watch::channel(reached);
        let bus = command_bus(cfg, &dyn_store, &catalog, &all, applied_rx);

        let (stop_tasks, stop_rx) = watch::channel(false);
        // The projector applies each event under this gate; a live rebuild holds it for
        // its last catch-up and the swap.
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let mut tasks = JoinSet::new();
        tasks.spawn(run_projector(
            dyn_store.clone(),
            all.clone(),
            reached,
            applied_tx,
            stop_rx.clone(),
            gate.clone(),
        ));
        // Losses are recorded (the projector applies them) before the saga starts, so it
        // never works on an instance whose resources or secrets are gone.
        let reconciler =
            reconcile_at_start(cfg, &bus, &models, &opened, &mut tasks, &stop_rx).await?;
        let (runner, backups) = sagas(cfg, &bus, &opened, &catalog, &all, &stop_rx);
        tasks.spawn(run_saga_runner(runner, dyn_store.clone(), models.clone()));
        tasks.spawn(run_backup_runner(backups, dyn_store.clone()));
        // Read-model snapshots: periodically and at shutdown (runtime::snapshot).
        tasks.spawn(snapshot::keep(
            cfg.data_dir.clone(),
            all.clone(),
            gate.clone(),
            from,
            stop_rx.clone(),
        ));

        // Events before a snapshot are checked in the background (runtime::unreadable).
        if from > Position::START {
            tokio::spawn(scan_before_snapshot(dyn_store.clone(), from, all.clone()));
        }
        let (heartbeats, heartbeat_expiry) =
            start_supervisor(cfg, &bus, &models, &opened, &mut tasks, &stop_rx);
        let rebuilder = Arc::new(Rebuilder::new(dyn_store.clone(), models.clone(), gate));
        let state = AppState {
            rebuilder,
            reconciler,
            bus,
            models,
            configurations: all.configurations.clone(),
            backups: all.backups.clone(),
            unreadable: all.unreadable.clone(),
            catalog,
            vault: opened.vault.clone(),
            auth: Arc::new(auth),
            policy: Arc::new(policy),
            public_url: cfg.public_url.clone(),
            heartbeat_expiry,
            heartbeats,
            backup_agent: opened.providers.backups.clone(),
            backup_store: opened.backup_store.clone(),
        };
        let http = serve_api(cfg, listener, state, shutdown);
        tracing::info!(%addr, "troved serving");
        Ok(Server {
            addr,
            http,
            tasks,
            stop_tasks,
            store: dyn_store,
            _lock: (lock, store_lock),
        })
    }

    /// Runs until the shutdown future resolves (then stops in order: HTTP, background
    /// tasks, store) or until a background task dies (an error: the process should exit
    /// and be restarted; the log is intact).
    pub async fn wait(mut self) -> Result<(), ServerError> {
        let outcome = tokio::select! {
            served = &mut self.http => served
                .map_err(|e| ServerError::Http(std::io::Error::other(e)))
                .and_then(|r| r.map_err(ServerError::Http)),
            ended = self.tasks.join_next() => Err(ServerError::TaskDied(
                ended.and_then(Result::ok).unwrap_or("a background task"),
            )),
        };
        if outcome.is_err() {
            self.http.abort();
        }
        let _ = self.stop_tasks.send(true);
        let drained = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drained)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
        self.store.shutdown().await;
        outcome
    }
}

/// The command bus, deciding with the catalog and the live read models; it waits for
/// the projector (`applied`) so that a client reads its own writes.
fn command_bus(
    cfg: &ServeConfig,
    store: &Arc<dyn EventStore>,
    catalog: &Arc<StaticCatalog>,
    all: &ReadModels,
    applied: watch::Receiver<Position>,
) -> CommandBus {
    let lookups = Lookups {
        catalog: catalog.clone(),
        models: all.instances.clone(),
        configurations: all.configurations.clone(),
        backups: all.backups.clone(),
        quotas: all.quotas.clone(),
    };
    CommandBus::new(
        store.clone(),
        lookups,
        applied,
        Duration::from_millis(cfg.read_your_writes_timeout_ms),
    )
}

/// Start-up step 1: the auth mode and the listening address; `--auth noauth` is refused on
/// a non-loopback address unless the operator insists; `--auth keystone` asks Keystone
/// for troved's service token once (`http::keystone::connect`).
async fn check_auth(
    cfg: &ServeConfig,
    listener: &TcpListener,
) -> Result<(AuthMode, std::net::SocketAddr), ServerError> {
    let auth = if cfg.auth == "keystone" {
        AuthMode::Keystone(
            http::keystone::connect(cfg)
                .await
                .map_err(ServerError::Config)?,
        )
    } else {
        AuthMode::from_flag(&cfg.auth).map_err(|e| ServerError::Config(e.to_string()))?
    };
    let addr = listener.local_addr().map_err(ServerError::Http)?;
    if auth.is_noauth() && !addr.ip().is_loopback() && !cfg.allow_insecure_noauth {
        return Err(ServerError::Config(format!(
            "refusing to serve --auth noauth on the non-loopback address {addr}: anyone who can reach it could act as any project; use --auth tokens:FILE, or --allow-insecure-noauth if you really mean it"
        )));
    }
    Ok((auth, addr))
}

/// Start-up step 1b: the authorization rules; any mistake in the policy file stops troved.
fn load_policy(cfg: &ServeConfig) -> Result<crate::policy::Policy, ServerError> {
    match &cfg.policy_file {
        None => Ok(crate::policy::Policy::defaults()),
        Some(path) => {
            crate::policy::Policy::load(path).map_err(|e| ServerError::Config(e.to_string()))
        }
    }
}

/// Start-up step 2: the flavors and datastores catalog, with the operator's limits.
fn load_catalog(cfg: &ServeConfig) -> Result<StaticCatalog, ServerError> {
    Ok(StaticCatalog::load(
        cfg.catalog.as_deref(),
        Limits {
            region: cfg.region.clone(),
            max_volume_size: cfg.max_volume_size,
            quota_instances: cfg.quota_instances,
            quota_ram: cfg.quota_ram,
            quota_volumes: cfg.quota_volumes,
            quota_backups: cfg.quota_backups,
        },
    )?)
}

/// Start-up step 3: an embedded store elsewhere than the data directory has its
/// directory locked too, so no second server appends to it unseen by this one's
/// projector. `None` when there is nothing more to lock.
fn lock_store_dir(cfg: &ServeConfig, store_url: &StoreUrl) -> Result<Option<File>, ServerError> {
    match store_url {
        StoreUrl::Sqlite(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            std::fs::create_dir_all(&dir).map_err(|source| ServerError::DataDir {
                path: dir.clone(),
                source,
            })?;
            let same =
                std::fs::canonicalize(&dir).ok() == std::fs::canonicalize(&cfg.data_dir).ok();
            if same {
                Ok(None)
            } else {
                Ok(Some(lock_dir(&dir)?))
            }
        }
        StoreUrl::Esdb(_) => Ok(None),
    }
}

/// Start-up step 4, after opening: the vault, the simulated cloud's state and an
/// embedded log are readable by the operator only.
fn restrict_private_files(cfg: &ServeConfig, store_url: &StoreUrl, provider_state: &Path) {
    let mut private = vec![cfg.secrets_path(), provider_state.to_path_buf()];
    if let StoreUrl::Sqlite(path) = store_url {
        private.push(path.clone());
    }
    for f in private {
        // SQLite creates a database's `-wal` and `-shm` with the database's mode; those a
        // version before the umask (main.rs) left readable are restricted here.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = f.clone().into_os_string();
            name.push(suffix);
            let file = PathBuf::from(name);
            if suffix.is_empty() || file.exists() {
                restrict_permissions(&file, 0o600);
            }
        }
    }
}

/// Start-up step 5: the read models, from the snapshot (unless `--no-snapshot`) and the
/// log after it. Returns them, where the replay started and where it reached.
async fn rebuild_read_models(
    cfg: &ServeConfig,
    store: &dyn EventStore,
) -> Result<(ReadModels, Position, Position), ServerError> {
    let all = ReadModels::default();
    let started = std::time::Instant::now();
    // Read-model snapshot (runtime::snapshot): load it if valid, replay what follows.
    let from = if cfg.no_snapshot {
        tracing::info!("--no-snapshot: replaying the whole log");
        Position::START
    } else {
        snapshot::restore(store, &cfg.data_dir, &all).await.position
    };
    let reached = projector::catch_up(store, &all, from).await?;
    tracing::info!(position = %reached, instances = all.instances.len(), elapsed_ms = started.elapsed().as_millis() as u64, "read models rebuilt from the log");
    Ok((all, from, reached))
}

/// Background task after a start from a read-model snapshot: decodes the events before
/// the snapshot's position, which the start did not replay, and records the unreadable
/// ones (logged as errors, `troved_unreadable_events`), as the replay would have. Ends
/// by itself.
async fn scan_before_snapshot(store: Arc<dyn EventStore>, upto: Position, all: ReadModels) {
    let started = std::time::Instant::now();
    match crate::runtime::unreadable::scan(store.as_ref(), upto, &all.unreadable).await {
        Ok(events) => tracing::info!(
            events,
            unreadable = all.unreadable.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checked that the events before the read-model snapshot decode"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not check the events before the read-model snapshot")
        }
    }
}

/// Background task: the projector, following the log into the read models; returns its
/// name when it ends.
async fn run_projector(
    store: Arc<dyn EventStore>,
    all: ReadModels,
    reached: Position,
    applied_tx: watch::Sender<Position>,
    stop: watch::Receiver<bool>,
    gate: Arc<tokio::sync::Mutex<()>>,
) -> &'static str {
    if let Err(e) = projector::run(store, all, reached, applied_tx, stop, gate).await {
        tracing::error!(error = %e, "projector stopped");
    }
    "the projector"
}

/// Every provider port, served by the simulated cloud.
fn sim_providers(cloud: &Arc<SimCloud>) -> Providers {
    Providers {
        volumes: cloud.clone(),
        compute: cloud.clone(),
        guests: cloud.clone(),
        inventory: cloud.clone(),
        backups: cloud.clone(),
        guest_admin: cloud.clone(),
    }
}

/// Start-up step 6, once the projector runs: records the secrets the operator accepted
/// as lost, then reconciles the log with the provider (recording instances whose
/// resources are gone), and starts the periodic reconciliation among `tasks` (unless
/// `--reconcile-interval-secs 0`). Returns the reconciler for on-demand runs.
async fn reconcile_at_start(
    cfg: &ServeConfig,
    bus: &CommandBus,
    models: &Arc<InstanceModels>,
    opened: &Opened,
    tasks: &mut JoinSet<&'static str>,
    stop: &watch::Receiver<bool>,
) -> Result<Arc<Reconciler>, ServerError> {
    let reconciler = Arc::new(Reconciler::new(
        bus.clone(),
        models.clone(),
        opened.providers.inventory.clone(),
    ));
    if cfg.reconcile_interval_secs > 0 {
        let every = cfg.reconcile_interval_secs;
        tasks.spawn(reconcile_periodically(
            every,
            reconciler.clone(),
            stop.clone(),
        ));
    }
    reconcile::record_secrets_lost(bus, &opened.lost_secrets, &cfg.secrets_path()).await?;
    let report = reconciler
        .run(&reconcile::service_caller(), "startup:reconcile")
        .await?;
    if report.lost.is_empty() {
        tracing::info!(
            checked = report.checked,
            "reconciliation: the provider has every resource the log claims"
        );
    } else {
        tracing::warn!(checked = report.checked, lost = report.lost.len(), "reconciliation: instances recorded as lost (ERROR); see docs/operations.md, \"Lost state files\"");
    }
    Ok(reconciler)
}

/// Background task: a reconciliation every `every` until shutdown. A failed one (the
/// provider unreachable) is logged and tried again next time.
async fn reconcile_periodically(
    every_secs: u64,
    reconciler: Arc<Reconciler>,
    mut stop: watch::Receiver<bool>,
) -> &'static str {
    let every = Duration::from_secs(every_secs);
    let caller = reconcile::service_caller();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return "the reconciliation",
        }
        match reconciler.run(&caller, "reconcile:periodic").await {
            Ok(report) if !report.lost.is_empty() => {
                tracing::warn!(
                    lost = report.lost.len(),
                    "reconciliation: instances recorded as lost (ERROR)"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciliation failed; trying again later"),
        }
    }
}

/// The saga runner over the providers, with the operator's timeouts.
fn saga_runner(
    cfg: &ServeConfig,
    bus: &CommandBus,
    opened: &Opened,
    catalog: &Arc<StaticCatalog>,
    all: &ReadModels,
    shutdown: watch::Receiver<bool>,
) -> SagaRunner {
    SagaRunner::new(SagaRunnerDeps {
        bus: bus.clone(),
        vault: opened.vault.clone(),
        providers: opened.providers.clone(),
        catalog: catalog.clone(),
        configurations: all.configurations.clone(),
        backups: all.backups.clone(),
        policy: Policy {
            build_timeout: chrono::Duration::seconds(cfg.build_timeout_secs),
            upgrade_timeout: chrono::Duration::seconds(cfg.upgrade_timeout_secs),
            action_timeout: chrono::Duration::seconds(cfg.action_timeout_secs),
            keep_failed_resources: cfg.keep_failed_resources,
        },
        poll_interval: Duration::from_millis(cfg.sim_latency_ms.clamp(20, 1000)),
        call_timeout: Duration::from_millis(cfg.provider_timeout_ms),
        shutdown,
    })
}

/// The heartbeat supervisor of the local provider's servers (`saga::heartbeat`), and
/// the expiry the views apply; the simulated cloud sends no heartbeats (no expiry).
fn start_supervisor(
    cfg: &ServeConfig,
    bus: &CommandBus,
    models: &Arc<InstanceModels>,
    opened: &Opened,
    tasks: &mut JoinSet<&'static str>,
    stop_rx: &watch::Receiver<bool>,
) -> (Heartbeats, Option<chrono::Duration>) {
    let beats = Heartbeats::new();
    let Some(local) = &opened.local else {
        return (beats, None);
    };
    let hb = HeartbeatConfig::every(
        Duration::from_secs(cfg.heartbeat_secs),
        Duration::from_millis(cfg.provider_timeout_ms),
    );
    let expiry = hb.expiry();
    tracing::info!(
        every_secs = cfg.heartbeat_secs,
        expiry_secs = expiry.num_seconds(),
        "heartbeats on"
    );
    let supervisor = Supervisor::new(
        bus.clone(),
        models.clone(),
        local.clone(),
        beats.clone(),
        hb,
        stop_rx.clone(),
    );
    tasks.spawn(async move {
        supervisor.run().await;
        "the heartbeat supervisor"
    });
    (beats, Some(expiry))
}

/// Background task: the saga runner; returns its name when it ends.
/// The API on `listener`, with the operator's body limits and connection settings.
fn serve_api(
    cfg: &ServeConfig,
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let limits = http::BodyLimits {
        max_bytes: cfg.max_body_bytes,
        read_timeout: Duration::from_secs(cfg.body_read_timeout_secs),
    };
    let auth = state.auth.clone();
    let router = http::router(state, limits);
    let router = match &*auth {
        AuthMode::Keystone(keystone) => http::keystone::with_challenge(router, keystone),
        _ => router,
    };
    serve_http(listener, router, net_config(cfg), shutdown)
}

/// The instance saga and the backup saga.
fn sagas(
    cfg: &ServeConfig,
    bus: &CommandBus,
    opened: &Opened,
    catalog: &Arc<StaticCatalog>,
    all: &ReadModels,
    stop_rx: &watch::Receiver<bool>,
) -> (SagaRunner, crate::saga::backups::BackupRunner) {
    (
        saga_runner(cfg, bus, opened, catalog, all, stop_rx.clone()),
        backup_runner(cfg, bus, opened, all, stop_rx.clone()),
    )
}

/// The backup saga over the provider's backup agent and the backup store.
fn backup_runner(
    cfg: &ServeConfig,
    bus: &CommandBus,
    opened: &Opened,
    all: &ReadModels,
    shutdown: watch::Receiver<bool>,
) -> crate::saga::backups::BackupRunner {
    crate::saga::backups::BackupRunner::new(crate::saga::backups::BackupRunnerDeps {
        bus: bus.clone(),
        agent: opened.providers.backups.clone(),
        store: opened.backup_store.clone(),
        backups: all.backups.clone(),
        instances: all.instances.clone(),
        copy_timeout: Duration::from_secs(cfg.backup_timeout_secs),
        shutdown,
    })
}

async fn run_backup_runner(
    runner: crate::saga::backups::BackupRunner,
    store: Arc<dyn EventStore>,
) -> &'static str {
    if let Err(e) = runner.run(store).await {
        tracing::error!(error = %e, "the backup saga stopped");
    }
    "the backup saga"
}

async fn run_saga_runner(
    runner: SagaRunner,
    store: Arc<dyn EventStore>,
    models: Arc<projections::InstanceModels>,
) -> &'static str {
    if let Err(e) = runner.run(store, models).await {
        tracing::error!(error = %e, "saga runner stopped");
    }
    "the saga runner"
}

/// The listener's timeouts and limits, from the flags.
fn net_config(cfg: &ServeConfig) -> NetConfig {
    NetConfig {
        header_read_timeout: Duration::from_secs(cfg.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
        shutdown_grace: Duration::from_secs(cfg.shutdown_grace_secs),
        max_connections: usize::try_from(cfg.max_connections).unwrap_or(usize::MAX),
    }
}

/// Serves HTTP on `listener` until `shutdown` resolves; then requests in flight get the
/// grace period to finish, and what remains is closed (`crate::net`).
fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    cfg: NetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(net::serve(listener, app, cfg, shutdown))
}
