//! The Backup aggregate: one stream `backup-<uuid>` per backup of an instance's data
//! (issue #14; upstream `trove/backup/models.py`, spec `supporting-resources.md` §4).
//!
//! - [`event`]: `BackupCreated` (NEW), `BackupStarted` (BUILDING), `BackupCompleted`,
//!   `BackupFailed`, `BackupDeleted`, `BackupArtifactRemoved`, `BackupDeletionFailed`
//!   (DELETE_FAILED); versioned like the instance events, documented in
//!   `docs/events.md`.
//! - [`command`]: what users ask (`CreateBackup`, `DeleteBackup`) and what the saga
//!   reports.
//! - [`state`]: the folded [`Backup`] and [`evolve`].
//! - [`decide()`]: the rules. Facts of other aggregates (the instance, the parent
//!   backup, live children, quota) are read by the shell under the instance's keyed
//!   lock and passed in through [`DecideCtx`].
//!
//! The instance's `BACKUP` status is not recorded on the instance: it is derived from
//! the backups that run (as upstream), see `docs/adr/0008-backups.md`.

pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod state;
#[cfg(test)]
mod tests;

pub use command::*;
pub use decide::{decide, DecideCtx, InstanceFacts, ParentFacts, MAX_ATTEMPTS};
pub use error::BackupError;
pub use event::*;
pub use state::*;

use uuid::Uuid;

/// The stream that holds a backup's events.
pub fn stream_name(id: Uuid) -> String {
    format!("backup-{id}")
}

/// The backup id of a stream name, if it is a backup stream.
pub fn backup_id_of_stream(stream: &str) -> Option<Uuid> {
    stream
        .strip_prefix("backup-")
        .and_then(|s| Uuid::parse_str(s).ok())
}
