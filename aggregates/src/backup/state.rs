//! The folded state of one backup, and `evolve`. `Backup::default()` means "does not
//! exist".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::{BackupArtifact, BackupEvent};
use crate::instance::{DatastoreRef, FaultInfo};

/// A backup's state (spec `supporting-resources.md` §4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BackupStatus {
    /// Accepted, not started (running).
    #[default]
    New,
    /// Being copied (running).
    Building,
    /// Being written to storage (running; upstream's guest reports it, ours never do:
    /// the copy streams into the store).
    Saving,
    /// Usable for a restore.
    Completed,
    /// The backup failed.
    Failed,
    /// A delete failed; the backup is kept.
    DeleteFailed,
    /// Restored into an instance; still usable for another restore.
    Restored,
}

impl BackupStatus {
    /// The wire name, e.g. `COMPLETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::New => "NEW",
            BackupStatus::Building => "BUILDING",
            BackupStatus::Saving => "SAVING",
            BackupStatus::Completed => "COMPLETED",
            BackupStatus::Failed => "FAILED",
            BackupStatus::DeleteFailed => "DELETE_FAILED",
            BackupStatus::Restored => "RESTORED",
        }
    }

    /// `NEW`, `BUILDING`, `SAVING`: a running backup puts its instance in `BACKUP`.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            BackupStatus::New | BackupStatus::Building | BackupStatus::Saving
        )
    }
}

/// The state of one backup, folded from its stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    /// `None` until `BackupCreated`: the backup does not exist.
    pub id: Option<Uuid>,
    pub project_id: String,
    pub user_id: String,
    pub instance_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub parent_id: Option<Uuid>,
    pub datastore: DatastoreRef,
    pub container: String,
    pub status: BackupStatus,
    /// Starts of the copy so far.
    pub attempts: u32,
    /// The stored artifact, once completed (kept after a delete until it is removed).
    pub artifact: Option<BackupArtifact>,
    /// Why it failed, or why its deletion failed.
    pub fault: Option<FaultInfo>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    /// Deleted by a user: invisible everywhere.
    pub deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The artifact of a deleted backup is gone from the store.
    pub artifact_removed: bool,
    /// Number of events folded: the stream revision to expect next is `version - 1`.
    pub version: u64,
}

impl Backup {
    /// True once created, deleted or not.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// True when created and not deleted.
    pub fn is_live(&self) -> bool {
        self.exists() && !self.deleted
    }

    /// Deleted, with an artifact still to remove from the store.
    pub fn artifact_to_remove(&self) -> bool {
        self.deleted && self.artifact.is_some() && !self.artifact_removed
    }

    /// The size in GB, as the views show it (`size`).
    pub fn size_gb(&self) -> Option<f64> {
        self.artifact
            .as_ref()
            .map(|a| a.size_bytes as f64 / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Applies one event. Total: an event is a fact.
pub fn evolve(mut s: Backup, event: &BackupEvent) -> Backup {
    s.version += 1;
    match event {
        BackupEvent::BackupCreated(c) => {
            return Backup {
                id: Some(c.backup_id),
                project_id: c.project_id.clone(),
                user_id: c.user_id.clone(),
                instance_id: c.instance_id,
                name: c.name.clone(),
                description: c.description.clone(),
                parent_id: c.parent_id,
                datastore: c.datastore.clone(),
                container: c.container.clone(),
                created: c.at,
                updated: c.at,
                version: s.version,
                ..Backup::default()
            };
        }
        BackupEvent::BackupStarted { attempt, at } => {
            s.status = BackupStatus::Building;
            s.attempts = *attempt;
            s.updated = *at;
        }
        BackupEvent::BackupCompleted { artifact, at } => {
            s.status = BackupStatus::Completed;
            s.artifact = Some(artifact.clone());
            s.fault = None;
            s.updated = *at;
        }
        BackupEvent::BackupFailed { fault, at } => {
            s.status = BackupStatus::Failed;
            s.fault = Some(fault.clone());
            s.updated = *at;
        }
        BackupEvent::BackupDeleted { at } => {
            s.deleted = true;
            s.deleted_at = Some(*at);
            s.updated = *at;
        }
        BackupEvent::BackupArtifactRemoved { at } => {
            s.artifact_removed = true;
            s.updated = *at;
        }
        BackupEvent::BackupDeletionFailed { fault, at } => {
            s.deleted = false;
            s.deleted_at = None;
            s.status = BackupStatus::DeleteFailed;
            s.fault = Some(fault.clone());
            s.updated = *at;
        }
    }
    s
}

/// Folds a sequence of events from the empty state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a BackupEvent>) -> Backup {
    events.into_iter().fold(Backup::default(), evolve)
}
