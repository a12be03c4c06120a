//! The local provider's engines: real PostgreSQL and MariaDB servers on this machine
//! (issue #13, foundation; the saga wiring comes next).
//!
//! Responsibility: for one *instance directory*, make a data directory (a copy of a
//! per-version template initialized once), start the server on a given address and port
//! with its socket in a private directory, create databases and users, set the admin
//! password, apply configuration values, report health from a real connection, and stop
//! it. Servers run as an unprivileged user ([`user::DbUser`]), in their own process group,
//! and outlive troved: each start records the pid ([`ServerRecord`]), and a later start
//! adopts a server that still runs instead of starting a second one on the same data.
//!
//! What it must not do: choose ports or directories (the caller does), know about
//! instances, events or the saga, or touch any system-wide database service (it never
//! reads `/etc/postgresql`, `/etc/mysql` or the default sockets).
//!
//! Layout of an instance directory (0700, owned by the database user):
//! `data/` (the server's data), `run/` (its socket; MariaDB's pid file), `server.log`
//! (its output), `server.json` ([`ServerRecord`]), and the engine's configuration file
//! (`data/troved.conf` for PostgreSQL, `my.cnf` for MariaDB).

pub mod access;
pub mod backup;
pub mod discover;
pub mod guestdb;
pub mod mariadb;
pub mod postgres;
pub mod proc;
pub mod quote;
pub mod replication;
pub mod sockets;
pub mod user;
pub mod volume;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use discover::{Datastore, Installation};
pub use user::DbUser;

// The saga's ports over the engines (kept apart from the engine modules above).
pub mod provider;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool exited unsuccessfully; `stderr` has the secrets of the call blanked out.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        program: String,
        status: String,
        stderr: String,
    },
    /// A tool or a wait did not finish in time.
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    /// A name or value that cannot be used (too long, NUL, unknown parameter).
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// The machine cannot run the server (user, directories, binaries).
    #[error("{0}")]
    Unusable(String),
    /// The server exited or never answered while starting; the text ends with its log.
    #[error("the server did not start: {0}")]
    StartFailed(String),
}

impl LocalError {
    pub(crate) fn io(what: &str, source: std::io::Error) -> LocalError {
        LocalError::Io {
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> LocalError {
        LocalError::Invalid {
            what,
            why: why.into(),
        }
    }
}

/// One database server's place and shape, chosen by the caller.
#[derive(Clone, Debug)]
pub struct Instance {
    /// Its private directory (see the module docs); created by `init`.
    pub dir: PathBuf,
    /// The TCP port it listens on.
    pub port: u16,
    /// The address it binds (`127.0.0.1`, or a public address).
    pub bind: IpAddr,
    /// The flavor's RAM in MB, which sizes the server's memory; `None` keeps the server's
    /// defaults.
    pub ram_mb: Option<u32>,
}

impl Instance {
    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// The directory of its Unix socket and pid file (private: only its user and root
    /// reach it): `run/` in the instance directory, or a short one when sockets there
    /// would not fit a socket path ([`sockets`]).
    pub fn run_dir(&self) -> PathBuf {
        sockets::run_dir_for(self.dir.join("run"))
    }
    /// Its standard output and error.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }
    /// Where its [`ServerRecord`] is kept.
    pub fn record_path(&self) -> PathBuf {
        self.dir.join("server.json")
    }
}

/// What a start recorded: enough to find (and signal) the server again after troved
/// restarts. Kept in `server.json` in the instance directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// `postgresql` or `mariadb`.
    pub datastore: String,
    /// The server's full version.
    pub version: String,
    /// The pid of the postmaster / mariadbd.
    pub pid: u32,
    pub port: u16,
    pub bind: IpAddr,
    /// The data directory, as it appears on the server's command line.
    pub data_dir: PathBuf,
}

impl ServerRecord {
    /// The record in `inst`'s directory, if one was written.
    pub fn load(inst: &Instance) -> Option<ServerRecord> {
        let text = std::fs::read(inst.record_path()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Whether the recorded pid is still this server (alive and serving this data
    /// directory; a reused pid is not).
    pub fn is_running(&self) -> bool {
        proc::serves(self.pid, &self.data_dir)
    }

    fn save(&self, inst: &Instance) -> Result<(), LocalError> {
        let path = inst.record_path();
        let tmp = path.with_extension("json.tmp");
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| LocalError::io("record", e.into()))?;
        std::fs::write(&tmp, text).map_err(|e| LocalError::io("write server.json", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LocalError::io("write server.json", e))
    }
}

/// The server of `inst` if it is running (recorded and still that process).
pub fn running(inst: &Instance) -> Option<ServerRecord> {
    ServerRecord::load(inst).filter(ServerRecord::is_running)
}

/// Adopts a server that runs on `inst`'s data directory although no record names it
/// (troved was killed between starting it and recording it, which happens after the
/// server answers): records it and waits until it answers, as a start would. Without
/// this, the next start would spawn a second server on the same data, which either
/// fails on the first one's lock (PostgreSQL) or waits for it while the first answers
/// in its place (MariaDB), leaving the real server unrecorded. `None` if there is no
/// such server or it exited while being adopted.
async fn adopt_unrecorded<F, Fut>(
    inst: &Instance,
    (datastore, version): (&str, &str),
    limit: Duration,
    ready: F,
) -> Result<Option<ServerRecord>, LocalError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let data_dir = inst.data_dir();
    let Some(pid) = proc::find_serving(&data_dir) else {
        return Ok(None);
    };
    tracing::warn!(pid, dir = %data_dir.display(), "adopting an unrecorded server");
    let record = ServerRecord {
        datastore: datastore.into(),
        version: version.into(),
        pid,
        port: inst.port,
        bind: inst.bind,
        data_dir,
    };
    record.save(inst)?;
    let deadline = std::time::Instant::now() + limit;
    while !ready().await {
        if !record.is_running() {
            return Ok(None);
        }
        if std::time::Instant::now() >= deadline {
            return Err(LocalError::StartFailed(format!(
                "the unrecorded server {pid} did not answer within {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Some(record))
}

/// What a health check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// A real connection ran `SELECT 1`.
    Healthy,
    /// The process runs but the query failed or timed out (starting, overloaded, full).
    Unresponsive(String),
    /// No server process for this data directory (stopped, crashed, killed).
    Down,
}

/// Whether applied configuration values are in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigOutcome {
    /// In effect now (reloaded) or at the next start (the server was stopped).
    Applied,
    /// Written, but some values take effect only after a restart (Trove's
    /// `RESTART_REQUIRED`).
    RestartRequired,
}

/// A database user to create.
#[derive(Clone, Debug)]
pub struct UserSpec {
    pub name: String,
    /// MariaDB's host pattern (`%`); PostgreSQL restricts hosts in `pg_hba.conf` instead.
    pub host: String,
    pub password: String,
    /// Databases the user gets all privileges on.
    pub databases: Vec<String>,
}

/// How an engine runs its processes.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The user servers and tools run as.
    pub user: DbUser,
    /// Where per-version templates are kept (created on first use).
    pub templates: PathBuf,
    /// Longest wait for a start, a stop or one tool.
    pub timeout: Duration,
}

/// A datastore's server operations on one instance directory. Every operation is
/// idempotent (a retried step finds its work done), which the saga's ports require.
#[async_trait]
pub trait Engine: Send + Sync {
    /// The installation this engine runs.
    fn installation(&self) -> &Installation;
    /// The superuser [`Engine::set_admin_password`] sets (`postgres`, `root`).
    fn admin_user(&self) -> &'static str;
    /// Creates the instance directory and its data (from the template; the template is
    /// initialized on first use). Data that exists already is kept.
    async fn init(&self, inst: &Instance) -> Result<(), LocalError>;
    /// Starts the server and waits until it answers; adopts a server that already runs
    /// on this data directory instead of starting another.
    async fn start(&self, inst: &Instance) -> Result<ServerRecord, LocalError>;
    /// Stops the server (fast shutdown, then SIGKILL after the timeout); stopping a
    /// stopped server succeeds.
    async fn stop(&self, inst: &Instance) -> Result<(), LocalError>;
    /// Whether a real connection to the server works.
    async fn health(&self, inst: &Instance) -> Health;
    async fn create_database(&self, inst: &Instance, name: &str) -> Result<(), LocalError>;
    /// Creates the user (or resets its password) and grants it its databases.
    async fn create_user(&self, inst: &Instance, user: &UserSpec) -> Result<(), LocalError>;
    /// Sets the superuser's password, for network logins as [`Engine::admin_user`].
    async fn set_admin_password(&self, inst: &Instance, password: &str) -> Result<(), LocalError>;
    /// Lets network logins come from `allowed` only (empty: from anywhere), for the
    /// users `(name, host)` created earlier and the superuser ([`access`] has the
    /// rules). Idempotent; in effect at once on a running server. PostgreSQL's rules are
    /// a file, also written while the server is stopped; MariaDB's are accounts, so a
    /// stopped MariaDB is left as it is (prepare applies them once its users exist).
    async fn restrict_network(
        &self,
        inst: &Instance,
        allowed: &[access::Cidr],
        users: &[(String, String)],
    ) -> Result<(), LocalError>;
    /// Replaces the configuration values (`max_connections`…) and makes them effective
    /// where the server allows it without a restart. Unknown parameters are refused and
    /// leave the previous values in place.
    async fn apply_config(
        &self,
        inst: &Instance,
        values: &[(String, String)],
    ) -> Result<ConfigOutcome, LocalError>;

    /// Its replication operations, if the datastore replicates ([`replication`]).
    fn replication(&self) -> Option<&dyn replication::Replication> {
        None
    }

    /// Its backup operations, if troved backs the datastore up ([`backup`]).
    fn backups(&self) -> Option<&dyn backup::Backups> {
        None
    }

    /// Its databases and users after prepare ([`guestdb`]), if it has them.
    fn guest_db(&self) -> Option<&dyn guestdb::GuestDb> {
        None
    }

    /// Stop, then start.
    async fn restart(&self, inst: &Instance) -> Result<ServerRecord, LocalError> {
        self.stop(inst).await?;
        self.start(inst).await
    }

    /// Stops the server and removes the instance directory (and its run directory, when
    /// that was moved out of it).
    async fn destroy(&self, inst: &Instance) -> Result<(), LocalError> {
        self.stop(inst).await?;
        let run = inst.run_dir();
        let mut dirs = vec![inst.dir.clone()];
        if sockets::is_moved(&inst.dir, &run) {
            dirs.push(run);
        }
        for dir in dirs {
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(LocalError::io("remove the instance directory", e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The engine for an installation, if troved can run that datastore.
pub fn engine(installation: &Installation, options: EngineOptions) -> Option<Box<dyn Engine>> {
    match installation.datastore {
        Datastore::Postgresql => Some(Box::new(postgres::Postgres::new(
            installation.clone(),
            options,
        ))),
        Datastore::Mariadb => Some(Box::new(mariadb::Mariadb::new(
            installation.clone(),
            options,
        ))),
        Datastore::Mysql => None,
    }
}

/// Copies a data directory, keeping modes and owners (`cp -a`), through a temporary name
/// so that a copy cut short by a crash is never taken for a complete one. The temporary
/// name is unique to this copy: a `cp` left running by a troved killed mid-copy must not
/// write into the copy of the troved that resumed the build (a shared name let the two
/// interleave, and MariaDB then refused its data files). Copies of earlier attempts are
/// removed first (an orphaned `cp` writing into one fails, as its directory is gone).
async fn copy_data(from: &Path, to: &Path, limit: Duration) -> Result<(), LocalError> {
    remove_earlier_copies(to).await;
    let partial = scratch_name(to);
    let mut cp = tokio::process::Command::new("cp");
    cp.arg("-a").arg("--").arg(from).arg(&partial);
    if let Err(e) = proc::run(cp, None, &[], limit).await {
        let _ = tokio::fs::remove_dir_all(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, to)
        .await
        .map_err(|e| LocalError::io("rename the copied data directory", e))
}

/// Removes the scratch copies ([`scratch_name`]) of `to` left by interrupted copies.
async fn remove_earlier_copies(to: &Path) {
    let (Some(parent), Some(name)) = (to.parent(), to.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = tokio::fs::remove_dir_all(e.path()).await;
        }
    }
}

/// The template data directory `dir/data` of an engine, made once: under `lock`, `make`
/// initializes a private scratch directory, which is then published by rename (a crash
/// mid-way never leaves a half template under the final name). `marker` is a file only a
/// complete data directory holds (`PG_VERSION`, `mysql`).
async fn template_once<F, Fut>(
    opts: &EngineOptions,
    lock: &tokio::sync::Mutex<()>,
    dir: &Path,
    marker: &str,
    make: F,
) -> Result<PathBuf, LocalError>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<(), LocalError>>,
{
    let data = dir.join("data");
    if data.join(marker).exists() {
        return Ok(data);
    }
    let _guard = lock.lock().await;
    if data.join(marker).exists() {
        return Ok(data);
    }
    user::private_dir(&opts.user, &opts.templates)?;
    let tmp = user::private_dir(&opts.user, &scratch_name(dir))?;
    if let Err(e) = make(tmp.join("data")).await {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(e);
    }
    publish_template(&tmp, dir).await?;
    Ok(data)
}

/// Makes an instance's directory and its socket directory, private to the database
/// user (which must be able to reach them).
fn prepare_dirs(user: &DbUser, inst: &Instance) -> Result<(), LocalError> {
    user.check_reachable(&inst.dir)?;
    user::private_dir(user, &inst.dir)?;
    let run = inst.run_dir();
    if sockets::is_moved(&inst.dir, &run) {
        sockets::ensure_base(&run)?;
    }
    user::private_dir(user, &run)?;
    Ok(())
}

/// Publishes a freshly initialized template directory under its final name; when another
/// process won the race, its template is kept and ours removed.
async fn publish_template(tmp: &Path, dir: &Path) -> Result<(), LocalError> {
    match tokio::fs::rename(tmp, dir).await {
        Ok(()) => Ok(()),
        Err(_) if dir.exists() => {
            let _ = tokio::fs::remove_dir_all(tmp).await;
            Ok(())
        }
        Err(e) => Err(LocalError::io("publish the template", e)),
    }
}

/// A fresh, unique scratch name next to `dir` (same file system, so `rename` works).
fn scratch_name(dir: &Path) -> PathBuf {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    dir.with_file_name(format!(".{name}.{}", uuid::Uuid::new_v4().simple()))
}

/// Opens the server's log for appending; it becomes the server's stdout and stderr.
fn open_log(inst: &Instance, user: &DbUser) -> Result<std::fs::File, LocalError> {
    let path = inst.log_path();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| LocalError::io("open server.log", e))?;
    user.own(&path)?;
    Ok(file)
}

/// The last lines of the server's log, for a start failure.
fn log_tail(inst: &Instance) -> String {
    let text = std::fs::read_to_string(inst.log_path()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// Stops the recorded server with `first` (the server's fast-shutdown signal), then
/// SIGKILL if it has not exited within `limit`.
async fn stop_server(
    inst: &Instance,
    first: rustix::process::Signal,
    limit: Duration,
) -> Result<(), LocalError> {
    // A server no record names (see `adopt_unrecorded`) is stopped too: it would
    // otherwise outlive its deleted instance.
    let unrecorded = || {
        let data_dir = inst.data_dir();
        proc::find_serving(&data_dir).map(|pid| (pid, data_dir))
    };
    let Some((pid, data_dir)) = running(inst)
        .map(|r| (r.pid, r.data_dir))
        .or_else(unrecorded)
    else {
        return Ok(());
    };
    proc::signal(pid, first);
    if proc::wait_gone(pid, &data_dir, limit).await {
        return Ok(());
    }
    tracing::warn!(pid, "server ignored its shutdown signal; killing it");
    // With its process group (a server troved started leads one): no child of it (a
    // PostgreSQL backend) lingers attached to its shared memory.
    proc::signal_group(pid, rustix::process::Signal::KILL);
    proc::signal(pid, rustix::process::Signal::KILL);
    if proc::wait_gone(pid, &data_dir, limit).await {
        return Ok(());
    }
    Err(LocalError::Timeout(format!("stopping pid {pid}"), limit))
}

/// Spawns a server in its own process group (a Ctrl-C to troved's terminal must not reach
/// it), output to its log, then polls `ready` until it answers; a server that exits or
/// does not answer within `limit` fails the start (and is killed, in the second case).
async fn spawn_server<F, Fut>(
    mut cmd: tokio::process::Command,
    inst: &Instance,
    user: &DbUser,
    limit: Duration,
    ready: F,
) -> Result<u32, LocalError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let log = open_log(inst, user)?;
    let err = log
        .try_clone()
        .map_err(|e| LocalError::io("server.log", e))?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| LocalError::io("spawn the server", e))?;
    let pid = child.id().unwrap_or_default();
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LocalError::StartFailed(format!(
                "it exited ({status}):\n{}",
                log_tail(inst)
            )));
        }
        if ready().await {
            // The child handle is dropped, not the process: tokio reaps it when it exits.
            return Ok(pid);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.start_kill();
            return Err(LocalError::StartFailed(format!(
                "no answer within {limit:?}:\n{}",
                log_tail(inst)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
