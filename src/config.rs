//! The one place that reads the command line and the environment.
//!
//! Every flag also has an environment variable (`TROVED_…`); every default works on a
//! fresh machine with no configuration and no server besides troved itself.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};

use crate::store::StoreUrl;

/// troved: an event-sourced control plane for the OpenStack Trove v1.0 Instances API.
#[derive(Debug, Parser)]
#[command(name = "troved", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server (embedded event store, simulated cloud).
    Serve(Box<ServeConfig>),
    /// Inspect the simulated cloud.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Inspect the local provider (real database servers on this machine).
    #[command(subcommand)]
    Local(LocalCommand),
    /// An instance's full history (who did what, when), or its state at a moment.
    History(HistoryArgs),
    /// Check the event store's tamper evidence.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Rebuild or check the read models from the log.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Copy every event from one event store to another (e.g. the embedded SQLite store
    /// to EventStoreDB), resumably, and verify the copy.
    Migrate(MigrateArgs),
    /// Database backups: check their stored artifacts.
    #[command(subcommand)]
    Backups(BackupsCommand),
}

/// `troved backups ...`.
#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// Reads every completed backup's artifact (or those named) back from the backup
    /// store and checks its SHA-256 against the one recorded when it was taken; fails
    /// if any is missing or differs.
    Verify {
        /// Only these backups (ids); default: every live backup with an artifact.
        ids: Vec<uuid::Uuid>,
        /// The data directory holding the event store.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// An event store URL instead of the data directory: `sqlite:///path/events.db`
        /// or `esdb://HOST:2113?tls=false`.
        #[arg(long, env = "TROVED_EVENT_STORE", hide_env_values = true)]
        event_store: Option<StoreUrlArg>,
        /// The backup store, as `troved serve --backup-store` (default
        /// `file://<data dir>/backups`).
        #[arg(long, env = "TROVED_BACKUP_STORE")]
        backup_store: Option<String>,
    },
}

/// `troved migrate --from URL --to URL`.
///
/// The URLs may hold credentials: their environment variables keep them off the command
/// line, and their values are never shown in `--help` or in messages.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The store to copy from: `sqlite://PATH` (a stopped server's `events.db`) or
    /// `esdb://HOST:2113?tls=false`.
    #[arg(
        long,
        env = "TROVED_MIGRATE_FROM",
        value_name = "URL",
        hide_env_values = true
    )]
    pub from: StoreUrlArg,
    /// The store to copy into (created if missing): `sqlite://PATH` or
    /// `esdb://HOST:2113?tls=false`. It must be empty or hold a prefix of the source
    /// (an interrupted migration, which this run then resumes).
    #[arg(
        long,
        env = "TROVED_MIGRATE_TO",
        value_name = "URL",
        hide_env_values = true
    )]
    pub to: StoreUrlArg,
    /// Events read from the source per request (and at most that many per append).
    #[arg(
        long,
        env = "TROVED_MIGRATE_BATCH_SIZE",
        value_name = "N",
        default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=100_000)
    )]
    pub batch_size: u64,
    /// Copy nothing: only compare both stores (event counts and SHA-256 digests) and
    /// fail if they differ.
    #[arg(long, env = "TROVED_MIGRATE_VERIFY_ONLY")]
    pub verify_only: bool,
    /// A store that is unavailable (lost connection, leader election) is tried again
    /// 6 times, first after this many milliseconds, then twice as long each time (at
    /// most 5 s); then the migration stops, and a second run resumes it.
    #[arg(
        long,
        env = "TROVED_MIGRATE_RETRY_DELAY_MS",
        value_name = "MS",
        default_value_t = 200
    )]
    pub retry_delay_ms: u64,
}

/// `troved projections ...`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild every read model from the log, with progress (position, events/s, ETA).
    Rebuild {
        /// The data directory holding the event store.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// An event store URL instead of the data directory: `sqlite:///path/events.db`
        /// or `esdb://HOST:2113?tls=false`.
        #[arg(long, env = "TROVED_EVENT_STORE", hide_env_values = true)]
        event_store: Option<StoreUrlArg>,
    },
    /// Rebuild into scratch models and compare them with an independent fold of every
    /// stream; report any difference.
    Verify {
        /// The data directory holding the event store.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// An event store URL instead of the data directory: `sqlite:///path/events.db`
        /// or `esdb://HOST:2113?tls=false`.
        #[arg(long, env = "TROVED_EVENT_STORE", hide_env_values = true)]
        event_store: Option<StoreUrlArg>,
    },
}

/// `troved history INSTANCE_ID`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The instance's id.
    pub instance_id: String,
    /// The data directory holding the event store.
    #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// An event store URL instead of the data directory: `sqlite:///path/events.db` or
    /// `esdb://HOST:2113?tls=false`.
    #[arg(long, env = "TROVED_EVENT_STORE", hide_env_values = true)]
    pub event_store: Option<StoreUrlArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,
    /// Instead of the timeline, print the instance's detail view as it was at this
    /// moment (RFC 3339, e.g. `2026-11-26T14:02:00Z`).
    #[arg(long)]
    pub as_of: Option<String>,
}

/// How `troved history` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
}

/// `troved audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every hash chain of the event store and report the first bad position.
    Verify {
        /// The data directory holding the event store.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// `troved sim ...`.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Print the simulated cloud's servers and volumes as JSON
    /// (`{"servers": [...], "volumes": [...]}`); works while the server runs.
    List {
        /// The data directory of the server whose cloud to list.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Compare the log with the simulated cloud: print the instances whose server or
    /// volume it no longer has (`{"checked": N, "lost": [...]}`) and fail if there are
    /// any. Read only, also while the server runs; the server records such losses
    /// (docs/operations.md, "Lost state files").
    Check {
        /// The data directory of the server.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// An event store URL instead of the data directory's `events.db`.
        #[arg(long, env = "TROVED_EVENT_STORE", hide_env_values = true)]
        event_store: Option<StoreUrlArg>,
    },
}

/// `troved local ...`.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Print the local provider's servers and volumes as JSON
    /// (`{"servers": [...], "volumes": [...]}`, with pids, ports and paths); works while
    /// the server runs.
    List {
        /// The data directory of the server.
        #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The local provider's root, if not `<data dir>/local`.
        #[arg(long, env = "TROVED_LOCAL_ROOT")]
        local_root: Option<PathBuf>,
    },
}

/// `troved serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on. The default is loopback: noauth identity must never be
    /// reachable from other machines by accident.
    #[arg(long, env = "TROVED_LISTEN", default_value = "127.0.0.1:8779")]
    pub listen: SocketAddr,

    /// Directory holding the event store (`events.db`) and the secret keys
    /// (`secrets.db`). Created if missing.
    #[arg(long, env = "TROVED_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The event store: `sqlite://PATH` or an EventStoreDB/KurrentDB connection string
    /// such as `esdb://HOST:2113?tls=false` (docs/event-stores.md). Default: the
    /// embedded store `<data dir>/events.db`. May hold credentials: its value is never
    /// shown in `--help` or in messages.
    #[arg(long, env = "TROVED_EVENT_STORE", hide_env_values = true)]
    pub event_store: Option<StoreUrlArg>,

    /// Identity: `noauth` (`X-Auth-Token: user:project`; only on a loopback address
    /// unless `--allow-insecure-noauth`) or `tokens:FILE` (static tokens, see
    /// docs/api.md).
    #[arg(long, env = "TROVED_AUTH", default_value = "noauth")]
    pub auth: String,

    /// Authorization rules overriding upstream Trove's defaults, per rule name: a YAML
    /// (or JSON) file as oslo.policy's, e.g. `"instance:delete": "role:admin"`
    /// (docs/security.md). Any mistake in it stops troved at start-up.
    #[arg(long, env = "TROVED_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,

    /// `--auth keystone`: Keystone's identity API, e.g. `http://127.0.0.1:5000/v3`.
    /// troved's service user (it needs Keystone's `service` role) comes only from the
    /// environment: `TROVED_KEYSTONE_USER`, `TROVED_KEYSTONE_PASSWORD`,
    /// `TROVED_KEYSTONE_PROJECT`, `TROVED_KEYSTONE_USER_DOMAIN` and
    /// `TROVED_KEYSTONE_PROJECT_DOMAIN` (domain names, default `Default`).
    #[arg(long, env = "TROVED_KEYSTONE_URL", value_name = "URL")]
    pub keystone_url: Option<String>,

    /// `--auth keystone`: how long a validated token is trusted without asking Keystone
    /// again (never beyond the token's own expiry), so a revoked token keeps working at
    /// most this long; 0 asks Keystone on every request.
    #[arg(
        long,
        env = "TROVED_TOKEN_CACHE_SECS",
        value_name = "SECS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(0..=86400)
    )]
    pub token_cache_secs: u64,

    /// Allow `--auth noauth` on a non-loopback address (anyone who can reach the port
    /// can then act as any project, admin included).
    #[arg(long, env = "TROVED_ALLOW_INSECURE_NOAUTH")]
    pub allow_insecure_noauth: bool,

    /// Base URL for the links in responses (e.g. `https://db.example.com:8779`);
    /// by default `https://<Host header>`, as upstream.
    #[arg(long, env = "TROVED_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Flavors and datastores catalog (TOML); the built-in catalog when absent.
    #[arg(long, env = "TROVED_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Largest accepted request body, bytes.
    #[arg(long, env = "TROVED_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,

    /// A request's head (request line and headers) must be complete within this many
    /// seconds of the connection opening, or of its first byte on a kept-alive
    /// connection; otherwise the connection is closed, unanswered.
    #[arg(
        long,
        env = "TROVED_HEADER_READ_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub header_read_timeout_secs: u64,

    /// A request's whole body must arrive within this many seconds of its head;
    /// otherwise the answer is 408 `requestTimeout` and the connection is closed.
    #[arg(
        long,
        env = "TROVED_BODY_READ_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub body_read_timeout_secs: u64,

    /// A kept-alive connection with no request for this many seconds is closed.
    #[arg(
        long,
        env = "TROVED_IDLE_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=86400)
    )]
    pub idle_timeout_secs: u64,

    /// On SIGTERM or Ctrl-C: stop accepting at once, close idle connections, give the
    /// requests in flight this many seconds to finish, then close every connection left
    /// (the background tasks and the store are stopped after that).
    #[arg(
        long,
        env = "TROVED_SHUTDOWN_GRACE_SECS",
        value_name = "SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub shutdown_grace_secs: u64,

    /// Most client connections open at once; lowered to fit under the limit of open
    /// files (raised to its hard limit at start) with room for the store. At the limit
    /// the connection idle the longest is closed to make room; when every connection is
    /// busy, the excess is answered 503 with `Retry-After`.
    #[arg(
        long,
        env = "TROVED_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub max_connections: u64,

    /// Region this service serves; creates naming another region are refused.
    #[arg(long, env = "TROVED_REGION", default_value = "RegionOne")]
    pub region: String,

    /// Largest accepted volume in GB (upstream `max_accepted_volume_size`).
    #[arg(long, env = "TROVED_MAX_VOLUME_SIZE", default_value_t = 10)]
    pub max_volume_size: u64,

    /// Per-project instance quota (-1 = unlimited).
    #[arg(
        long,
        env = "TROVED_QUOTA_INSTANCES",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub quota_instances: i64,

    /// Per-project RAM quota in MB (-1 = unlimited).
    #[arg(long, env = "TROVED_QUOTA_RAM", default_value_t = -1, allow_negative_numbers = true)]
    pub quota_ram: i64,

    /// Per-project volume quota in GB (-1 = unlimited).
    #[arg(
        long,
        env = "TROVED_QUOTA_VOLUMES",
        default_value_t = 40,
        allow_negative_numbers = true
    )]
    pub quota_volumes: i64,

    /// Where backup artifacts are kept: `file:///absolute/dir` or
    /// `s3://bucket/prefix` (endpoint and credentials from the AWS_* environment). Default:
    /// `file://<data dir>/backups`.
    #[arg(long, env = "TROVED_BACKUP_STORE")]
    pub backup_store: Option<String>,

    /// Longest one backup copy may take before it counts as failed (and is retried).
    #[arg(long, env = "TROVED_BACKUP_TIMEOUT_SECS", default_value_t = 6 * 3600)]
    pub backup_timeout_secs: u64,

    /// Per-project backup quota: live backups (-1 = unlimited; upstream's
    /// `max_backups_per_tenant`).
    #[arg(
        long,
        env = "TROVED_QUOTA_BACKUPS",
        default_value_t = 50,
        allow_negative_numbers = true
    )]
    pub quota_backups: i64,

    /// Where instances are provisioned: `sim`, the simulated cloud persisted in
    /// `cloud.db` in the data directory; `local`, real PostgreSQL and MariaDB servers
    /// on this machine (docs/providers.md); `auto`, `local` when at least one of their
    /// server binaries is installed, else `sim` (the start-up log says which and why).
    #[arg(long, env = "TROVED_PROVIDER", default_value = "auto")]
    pub provider: String,

    /// Local provider: the directory of its state (`state.json`), templates, volumes
    /// and database servers. Default `<data dir>/local`. Every ancestor must be
    /// searchable by the database user (`troved-db` when troved runs as root).
    #[arg(long, env = "TROVED_LOCAL_ROOT")]
    pub local_root: Option<PathBuf>,

    /// Local provider: the TCP ports its database servers may listen on, `FIRST-LAST`.
    #[arg(long, env = "TROVED_LOCAL_PORTS", default_value = "30000-30999")]
    pub local_ports: String,

    /// Local provider: the address a server binds when its instance is public
    /// (`access.is_public`); private ones bind 127.0.0.1 only.
    #[arg(long, env = "TROVED_LOCAL_PUBLIC_BIND", default_value = "0.0.0.0")]
    pub local_public_bind: std::net::IpAddr,

    /// Local provider: seconds between two health checks (heartbeats) of each database
    /// server. A server found down is restarted with backoff; only status changes are
    /// recorded; `operating_status` reads ERROR after 3 intervals (at least 10 s) without
    /// an answer (docs/providers.md "Heartbeats").
    #[arg(
        long,
        env = "TROVED_HEARTBEAT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub heartbeat_secs: u64,

    /// Simulated cloud: delay of each provider call, in milliseconds.
    #[arg(long, env = "TROVED_SIM_LATENCY_MS", default_value_t = 200)]
    pub sim_latency_ms: u64,

    /// Simulated cloud: inject faults, e.g. `create_server:rate=0.3` or
    /// `prepare:name=crash-*:permanent` (repeatable; see docs/sagas.md).
    #[arg(long = "sim-fault", env = "TROVED_SIM_FAULTS", value_delimiter = ';')]
    pub sim_faults: Vec<String>,

    /// Simulated cloud: an availability zone and its capacity,
    /// `NAME[:vcpus=N][:ram_mb=N][:volume_gb=N]` (repeatable; replaces the default zone
    /// `nova` with 256 vCPU, 1 TiB RAM, 10 TiB volumes; the first is the default zone).
    #[arg(long = "sim-zone", env = "TROVED_SIM_ZONES", value_delimiter = ';')]
    pub sim_zones: Vec<String>,

    /// Simulated cloud: size of a simulated backup artifact, KiB (streamed, never held
    /// in memory: a large one exercises the store and the restore's size check).
    #[arg(long, env = "TROVED_SIM_BACKUP_KB", default_value_t = 64)]
    pub sim_backup_kb: u64,

    /// Simulated cloud: seed of the fault injection (same seed, same failures).
    #[arg(long, env = "TROVED_SIM_SEED", default_value_t = 1)]
    pub sim_seed: u64,

    /// A provider call without an answer after this many milliseconds is retried.
    #[arg(long, env = "TROVED_PROVIDER_TIMEOUT_MS", default_value_t = 30_000)]
    pub provider_timeout_ms: u64,

    /// A build not finished after this many seconds fails (upstream `usage_timeout`).
    #[arg(long, env = "TROVED_BUILD_TIMEOUT_SECS", default_value_t = 1800)]
    pub build_timeout_secs: i64,

    /// An upgrade not finished after this many seconds fails.
    #[arg(long, env = "TROVED_UPGRADE_TIMEOUT_SECS", default_value_t = 600)]
    pub upgrade_timeout_secs: i64,

    /// A restart or flavor resize whose database is not healthy this many seconds after
    /// the request fails (rolled back to ACTIVE with a fault; upstream waits 600 s).
    #[arg(long, env = "TROVED_ACTION_TIMEOUT_SECS", default_value_t = 600)]
    pub action_timeout_secs: i64,

    /// Keep the server and volume of a failed build for inspection instead of
    /// releasing them (they are released when the instance is deleted).
    #[arg(long, env = "TROVED_KEEP_FAILED_RESOURCES")]
    pub keep_failed_resources: bool,

    /// How long a command's answer waits for the read models to show its change.
    #[arg(
        long,
        env = "TROVED_READ_YOUR_WRITES_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub read_your_writes_timeout_ms: u64,

    /// Start even though the secret vault (`secrets.db`) is missing or lacks the keys of
    /// instances whose passwords the log holds sealed: their passwords are recorded as
    /// lost for good (`InstanceSecretsLost`), and builds that still need them fail.
    /// Restoring the vault from a backup is the better way (docs/operations.md, "Lost
    /// state files"); pass this once, not permanently.
    #[arg(long, env = "TROVED_ACCEPT_LOST_SECRETS")]
    pub accept_lost_secrets: bool,

    /// Start even though the provider's state (`cloud.db` for the simulated cloud) is
    /// missing or holds no resources while the log holds instances owning servers or
    /// volumes: the start-up reconciliation records those instances as lost (ERROR).
    /// Restoring it from a backup is the better way; pass this once, not permanently.
    #[arg(long, env = "TROVED_ACCEPT_LOST_CLOUD_STATE")]
    pub accept_lost_cloud_state: bool,

    /// Every this many seconds, check that the provider still has every server and
    /// volume the log says exists, and record the instances whose resources are gone
    /// (0 = only at start and on demand, `POST /v1.0/{project}/mgmt/reconcile`).
    #[arg(long, env = "TROVED_RECONCILE_INTERVAL_SECS", default_value_t = 300)]
    pub reconcile_interval_secs: u64,

    /// Start by replaying the whole event log, ignoring the read-model snapshot in the
    /// data directory (`read-models.snapshot`; a new one is still written at shutdown).
    #[arg(long, env = "TROVED_NO_SNAPSHOT")]
    pub no_snapshot: bool,
}

impl ServeConfig {
    /// The embedded event store's default file.
    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// The event store to use: `--event-store`, or the embedded default.
    pub fn store_url(&self) -> Result<StoreUrl, String> {
        match &self.event_store {
            Some(url) => url.parse().map_err(|e| format!("--event-store: {e}")),
            None => Ok(StoreUrl::Sqlite(self.events_path())),
        }
    }

    /// The simulated cloud's own state (an external cloud's, as far as troved knows).
    pub fn cloud_path(&self) -> PathBuf {
        self.data_dir.join("cloud.db")
    }

    /// The local provider's root directory (`--local-root`, default `<data dir>/local`).
    pub fn local_root(&self) -> PathBuf {
        self.local_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("local"))
    }

    /// The secret-key file (kept apart from the log; see docs/security.md).
    pub fn secrets_path(&self) -> PathBuf {
        self.data_dir.join("secrets.db")
    }

    /// The backup store's URL (`--backup-store`, default `file://<data dir>/backups`,
    /// the data directory made absolute).
    pub fn backup_store_url(&self) -> String {
        match &self.backup_store {
            Some(url) => url.clone(),
            None => {
                let dir = std::path::absolute(&self.data_dir).unwrap_or(self.data_dir.clone());
                format!("file://{}", dir.join("backups").display())
            }
        }
    }
}

/// Where and as whom `--auth keystone` validates tokens: `--keystone-url`,
/// `--token-cache-secs` and the service user's credentials, which only the environment
/// gives (never the command line, where any local user could read them).
#[derive(Debug, Clone)]
pub struct KeystoneSettings {
    /// The identity API's base URL, without a trailing `/` (`http://host:5000/v3`).
    pub url: String,
    pub user: String,
    pub password: Password,
    pub project: String,
    pub user_domain: String,
    pub project_domain: String,
    /// `--token-cache-secs`; zero turns the cache off.
    pub cache_secs: u64,
}

/// A secret (the service user's password): `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// A password given by a test.
    #[cfg(test)]
    pub(crate) fn for_tests(secret: &str) -> Password {
        Password(secret.to_string())
    }

    /// The secret itself: for the request that needs it only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl ServeConfig {
    /// The settings of `--auth keystone`, or the error naming every missing one.
    pub fn keystone_settings(&self) -> Result<KeystoneSettings, String> {
        KeystoneSettings::from_lookup(self, |name| std::env::var(name).ok())
    }
}

impl KeystoneSettings {
    /// Reads the credentials through `lookup` (the environment, or a test's map).
    fn from_lookup(
        cfg: &ServeConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<KeystoneSettings, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut missing = Vec::new();
        let url = cfg.keystone_url.clone().filter(|u| !u.trim().is_empty());
        if url.is_none() {
            missing.push("--keystone-url (TROVED_KEYSTONE_URL)");
        }
        let mut required = |name: &'static str| {
            let value = get(name);
            if value.is_none() {
                missing.push(name);
            }
            value.unwrap_or_default()
        };
        let user = required("TROVED_KEYSTONE_USER");
        let password = Password(required("TROVED_KEYSTONE_PASSWORD"));
        let project = required("TROVED_KEYSTONE_PROJECT");
        if !missing.is_empty() {
            return Err(format!(
                "--auth keystone needs {} (the service user's credentials come only from the environment)",
                missing.join(", ")
            ));
        }
        let domain = |name: &str| get(name).unwrap_or_else(|| "Default".to_string());
        Ok(KeystoneSettings {
            url: url.unwrap_or_default().trim_end_matches('/').to_string(),
            user,
            password,
            project,
            user_domain: domain("TROVED_KEYSTONE_USER_DOMAIN"),
            project_domain: domain("TROVED_KEYSTONE_PROJECT_DOMAIN"),
            cache_secs: cfg.token_cache_secs,
        })
    }
}

/// An event store URL as given (`--event-store`, `--from`, `--to`, or their environment
/// variables). It may hold credentials (`esdb://admin:password@host:2113`), so it is
/// kept apart from plain strings: `Debug` shows it without its user info, and it is
/// parsed only when used ([`StoreUrl::parse`] never repeats it in an error). clap's own
/// parse error would echo the value, which is why this one cannot fail.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrlArg(String);

impl StoreUrlArg {
    /// The URL as given, credentials included: for opening the store only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parsed URL.
    pub fn parse(&self) -> Result<StoreUrl, String> {
        StoreUrl::parse(&self.0)
    }
}

impl FromStr for StoreUrlArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<StoreUrlArg, Self::Err> {
        Ok(StoreUrlArg(s.to_string()))
    }
}

impl fmt::Debug for StoreUrlArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.parse() {
            Ok(url) => fmt::Debug::fmt(&url, f),
            Err(_) => f.write_str("StoreUrlArg(<unparsed, not shown>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeConfig {
        let cli = Cli::try_parse_from([&["troved", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(cfg) => *cfg,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keystone_settings_name_what_is_missing_and_hide_the_password() {
        let cfg = serve_args(&[]);
        let e = KeystoneSettings::from_lookup(&cfg, |_| None).unwrap_err();
        for name in [
            "--keystone-url",
            "TROVED_KEYSTONE_USER",
            "TROVED_KEYSTONE_PASSWORD",
            "TROVED_KEYSTONE_PROJECT",
        ] {
            assert!(e.contains(name), "{e}");
        }
        let cfg = serve_args(&["--keystone-url", "http://ks:5000/v3/"]);
        let env = |name: &str| match name {
            "TROVED_KEYSTONE_USER" => Some("troved".to_string()),
            "TROVED_KEYSTONE_PASSWORD" => Some("pw-secret-9".to_string()),
            "TROVED_KEYSTONE_PROJECT" => Some("service".to_string()),
            _ => None,
        };
        let s = KeystoneSettings::from_lookup(&cfg, env).unwrap();
        assert_eq!(s.url, "http://ks:5000/v3");
        assert_eq!((s.user_domain.as_str(), s.cache_secs), ("Default", 300));
        assert_eq!(s.password.expose(), "pw-secret-9");
        assert!(!format!("{s:?}").contains("pw-secret-9"));
    }

    #[test]
    fn a_store_url_argument_never_debug_prints_its_credentials() {
        for raw in [
            "esdb://admin:pw-123@node1:2113?tls=false",
            "kurrentdb+discover://admin:pw-123@a:2113,b:2113",
            "postgres://admin:pw-123@db/troved",
            "esdb://admin:pw-123@[::1",
        ] {
            let arg: StoreUrlArg = raw.parse().unwrap();
            let shown = format!("{arg:?} {:?}", arg.parse());
            assert!(!shown.contains("pw-123"), "{shown}");
            assert_eq!(arg.as_str(), raw);
        }
    }
}
