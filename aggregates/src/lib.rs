//! Pure domain of troved: commands, events, state, `decide` and `evolve`.
//!
//! Layout:
//! - [`catalog`]: the read-only facts `decide` may consult (flavors, datastore versions,
//!   configuration groups, other instances, quotas), passed in through [`instance::DecideCtx`].
//! - [`instance`]: the Instance aggregate: [`instance::InstanceCommand`],
//!   [`instance::InstanceEvent`], [`instance::Instance`] (state), [`instance::decide`],
//!   [`instance::evolve`], the status model of Trove (`status`, `operating_status`) and
//!   [`instance::DomainError`].
//! - [`configuration`]: the ConfigurationGroup aggregate (groups of database parameter
//!   overrides) and the per-manager parameter catalogue.
//! - [`quota`]: the per-project quota overrides an admin sets (stream `quota-<project>`).
//! - [`fault`]: the Trove fault classes every refusal maps to.
//! - [`position`]: [`Position`], the global order of the event log (`$all`): the store
//!   assigns it, the read models record the last one they applied. It lives here, in the
//!   lowest crate, so that both depend downward (docs/adr/0007-position-in-the-domain-crate.md).
//!
//! Nothing here does I/O, reads a clock or a random source, or logs: the shell passes
//! time, ids and identity in. That is what makes `decide` testable as given/when/then
//! and `evolve` replayable forever.
#![forbid(unsafe_code)]
// Functions stay short enough to read at once: the threshold (80 lines) is in clippy.toml.
#![warn(clippy::too_many_lines)]

pub mod backup;
pub mod catalog;
pub mod configuration;
pub mod fault;
pub mod instance;
pub mod position;
pub mod quota;
mod tagged;
mod time;

pub use position::Position;
