//! Read models of troved, built only by applying recorded events. No I/O.
//!
//! Layout:
//! - [`Position`] (re-exported from `aggregates`): the global order of `$all`.
//! - [`event`]: [`ProjectedEvent`], the decoded instance event the projector applies,
//!   and [`ApplyOutcome`].
//! - [`models`]: [`InstanceModels`], the in-memory models (instance records, per-project
//!   lists, the admin list, the replicas index, quota usage) and their queries.
//! - [`views`]: pure rendering of the Trove instance JSON (basic, detail, create, show,
//!   admin list and show) from a folded instance.
//!
//! The crate is a functional core: no tokio, no clock (the caller passes `now`), no
//! logging. The projector task in the shell feeds [`InstanceModels::apply`]; HTTP handlers
//! query the models and render views, sharing one `Arc<InstanceModels>`.
#![forbid(unsafe_code)]
// Functions stay short enough to read at once: the threshold (80 lines) is in clippy.toml.
#![warn(clippy::too_many_lines)]

pub mod backups;
pub mod configurations;
pub mod event;
pub mod models;
pub mod quotas;
pub mod running;
pub mod views;

#[cfg(test)]
pub(crate) mod testkit;

pub use aggregates::Position;
pub use event::{ApplyOutcome, ProjectedEvent};
pub use models::{
    InstanceModels, ListPage, MgmtFilter, ModelPositions, QuotaInUse, Snapshot, LIST_PAGE_MAX,
};
pub use views::{ModelLookup, ViewCtx};
