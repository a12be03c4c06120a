//! troved: an event-sourced control plane speaking the OpenStack Trove v1.0 Instances API.
//!
//! Layout (read `docs/architecture.md` for the why):
//! - [`cli`]: operator and auditor commands (`history`, `audit verify`, `projections
//!   rebuild|verify`).
//! - [`config`]: the command line and environment (clap).
//! - [`http`]: axum routes, identity, Trove error bodies; one module per resource.
//! - [`metrics`]: the counters and histograms (`prometheus-client`) behind `GET /metrics`.
//! - [`net`]: the HTTP listener: accept loop, timeouts for slow and idle clients, the
//!   connection limit, the bounded drain at shutdown.
//! - [`policy`]: oslo.policy-style authorization rules: the language, upstream Trove's
//!   defaults, the `--policy-file` (enforced per route by `http::policy`).
//! - [`retry`]: [`retry::Backoff`], the one retry policy type every retrying caller names.
//! - [`runtime`]: the command path (load → decide → append → wait for projections), the
//!   projector that feeds the read models, and the event codec (metadata envelope).
//! - [`store`]: the `EventStore` port and the embedded SQLite adapter (group commit).
//! - [`saga`]: the saga runner that provisions instances in a simulated cloud and
//!   records each step as events.
//! - [`sim`]: the simulated cloud behind the provider ports (persisted apart from the log).
//! - [`local`]: the local provider's engines (issue #13): real PostgreSQL and MariaDB
//!   servers on this machine, run as an unprivileged user; discovery of what is installed.
//! - [`reconcile`]: lost state files: the start-up checks of the vault and the provider's
//!   state, and the reconciliation of the log with what the provider still has.
//! - [`secrets`]: per-instance keys that seal passwords before they reach the log.
//! - [`catalog`]: flavors, datastores, limits; the lookups `decide` consults.
//! - [`timeline`]: an instance's timeline from its stream (who, what, when) and its state
//!   as of a moment; served as *history* by `troved history` and the HTTP extension.
//! - [`server`]: assembly of the above around a bound listener.
//!
//! The pure domain lives in the `aggregates` crate, the read models in `projections`.
#![forbid(unsafe_code)]
// Functions stay short enough to read at once: the threshold (80 lines) is in clippy.toml.
#![warn(clippy::too_many_lines)]

pub mod backup_store;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod http;
pub mod local;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod reconcile;
pub mod retry;
pub mod runtime;
pub mod saga;
pub mod secrets;
pub mod server;
pub mod sim;
pub mod store;
pub mod timeline;

#[cfg(test)]
mod module_graph;
