//! The Instance aggregate: one stream `instance-<uuid>` per database instance.
//!
//! - [`command`]: what callers ask for (`CreateInstance`, `RenameInstance`, ...), already
//!   schema-validated by the shell.
//! - [`event`]: what happened, versioned and serializable; the log is forever.
//! - [`state`]: the folded state, [`Instance`].
//! - [`decide()`] and [`evolve()`]: the two pure functions.
//! - [`status`]: Trove's task, compute and service statuses and the derivation of
//!   `status` / `operating_status` (spec `instance-lifecycle.md` §2-§5).

mod actions;
pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod evolve;
pub mod guestdb;
pub mod state;
pub mod status;
#[cfg(test)]
pub(crate) mod tests;

pub use command::*;
pub use decide::{can_perform_action, decide, decide_all, Caller, DecideCtx};
pub use error::DomainError;
pub use event::*;
pub use evolve::{evolve, evolve_in_place, fold};
pub use state::*;
pub use status::*;

use uuid::Uuid;

/// The stream that holds an instance's events.
pub fn stream_name(id: Uuid) -> String {
    format!("instance-{id}")
}

/// The instance id of a stream name, if it is an instance stream.
pub fn instance_id_of_stream(stream: &str) -> Option<Uuid> {
    stream
        .strip_prefix("instance-")
        .and_then(|s| Uuid::parse_str(s).ok())
}
