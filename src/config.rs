//! The one place that reads the command line and the environment.
//!
//! Every flag also has an environment variable (`TROVED_…`); every default works on a
//! fresh machine with no configuration and no server besides troved itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Serve(ServeConfig),
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

    /// Identity: `noauth` (`X-Auth-Token: user:project`; only on a loopback address
    /// unless `--allow-insecure-noauth`) or `tokens:FILE` (static tokens, see
    /// docs/api.md).
    #[arg(long, env = "TROVED_AUTH", default_value = "noauth")]
    pub auth: String,

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

    /// Simulated cloud: delay of each provisioning step, in milliseconds.
    #[arg(long, env = "TROVED_SIM_LATENCY_MS", default_value_t = 200)]
    pub sim_latency_ms: u64,

    /// How long a command's answer waits for the read models to show its change.
    #[arg(
        long,
        env = "TROVED_READ_YOUR_WRITES_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub read_your_writes_timeout_ms: u64,
}

impl ServeConfig {
    /// The event store file.
    pub fn events_path(&self) -> PathBuf {
        self.data_dir.join("events.db")
    }

    /// The secret-key file (kept apart from the log; see docs/security.md).
    pub fn secrets_path(&self) -> PathBuf {
        self.data_dir.join("secrets.db")
    }
}
