//! The ConfigurationGroup aggregate: one stream `configuration-<uuid>` per group of
//! database parameter overrides (spec `supporting-resources.md` §3).
//!
//! - [`command`]: `CreateConfiguration`, `UpdateConfiguration` (PUT replaces the values,
//!   PATCH merges them), `DeleteConfiguration`, already schema-checked by the shell.
//! - [`event`]: `ConfigurationCreated`, `ConfigurationUpdated`, `ConfigurationDeleted`,
//!   versioned like the instance events.
//! - [`state`]: the folded [`Configuration`].
//! - [`decide()`] and [`evolve()`]: the two pure functions; `decide` resolves the
//!   datastore version and validates values against [`parameters`].
//! - [`parameters`]: the per-manager parameter catalogue (pure data).
//!
//! Which instances use a group is not this aggregate's state (attach and detach are
//! instance events); the shell counts them in a read model and passes the count in
//! through [`DecideCtx`].

pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod evolve;
pub mod parameters;
pub mod state;
#[cfg(test)]
mod tests;

pub use command::*;
pub use decide::{decide, resolve_datastore_version, validate_values, DecideCtx};
pub use error::ConfigurationError;
pub use event::*;
pub use evolve::{evolve, fold};
pub use state::*;

use uuid::Uuid;

/// The stream that holds a configuration group's events.
pub fn stream_name(id: Uuid) -> String {
    format!("configuration-{id}")
}

/// The group id of a stream name, if it is a configuration stream.
pub fn configuration_id_of_stream(stream: &str) -> Option<Uuid> {
    stream
        .strip_prefix("configuration-")
        .and_then(|s| Uuid::parse_str(s).ok())
}
