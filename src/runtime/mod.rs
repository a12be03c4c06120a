//! The runtime between HTTP and the store:
//! - [`commands`]: the command path (fold, decide, append, retry, read your writes) and
//!   the instance commands on it; [`configurations`]: the configuration groups' commands;
//! - [`lookups`]: what `decide` consults (the catalog and the live read models);
//! - [`projector`]: follows `$all` and applies each event to the read models;
//! - [`rebuild`]: the live rebuild of the read models, swapped in without downtime;
//! - [`snapshot`]: the read-model snapshot saved for a fast restart;
//! - [`codec`]: the events' store encoding and their metadata envelope;
//! - [`unreadable`]: the events of the log that do not decode, where they are.

pub mod backups;
pub mod codec;
pub mod commands;
pub mod configurations;
pub mod lookups;
pub mod projector;
pub mod quotas;
pub mod rebuild;
pub mod replica_actions;
pub mod snapshot;
pub mod unreadable;
