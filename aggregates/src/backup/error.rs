//! Refusals of the Backup aggregate with Trove's messages and fault classes.

use uuid::Uuid;

use crate::fault::Fault;
use crate::instance::DomainError;

/// Why `decide` refused a backup command.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BackupError {
    /// A refusal about the instance (not found, cannot perform an action, quota), with
    /// the instance's message and class.
    #[error(transparent)]
    Instance(#[from] DomainError),
    /// Missing, deleted, or another project's backup: upstream's `NotFound(uuid=...)`.
    #[error("Resource {0} cannot be found.")]
    NotFound(Uuid),
    /// Upstream's `DatastoreOperationNotSupported`.
    #[error("The '{operation}' operation is not supported for the '{datastore}' datastore.")]
    NotSupported {
        operation: &'static str,
        datastore: String,
    },
    #[error("Incremental backups are not supported for datastore {datastore} {version}.")]
    IncrementalNotSupported { datastore: String, version: String },
    /// Stricter than upstream (ADR 0002): an increment of another instance's backup
    /// could never be restored.
    #[error("Backup {parent} is not a backup of instance {instance}.")]
    ParentOfOtherInstance { parent: Uuid, instance: Uuid },
    /// An increment applies to data of the version its parent was taken from only.
    #[error("Backup {parent} was taken from another datastore version than the instance runs now; take a full backup.")]
    ParentOfOtherVersion { parent: Uuid },
    #[error("Unable to create backup because parent backup {id} is not completed. Actual state: {state}.")]
    ParentNotCompleted { id: Uuid, state: &'static str },
    /// Upstream: 422 `UnprocessableEntity`.
    #[error("Backup {0} cannot be deleted because it is running.")]
    DeleteRunning(Uuid),
    /// Upstream deletes the children too; we refuse (docs/api.md).
    #[error("Backup {id} cannot be deleted because incremental backups depend on it: {children}. Delete them first.")]
    HasChildren { id: Uuid, children: String },
    /// The backup id is taken (the shell picks fresh ids, so only a replayed create).
    #[error("Backup {0} already exists.")]
    AlreadyExists(Uuid),
    /// A saga report that does not fit the backup's state (stale or reordered).
    #[error("Backup {id} is {state}: {report} does not apply.")]
    UnexpectedReport {
        id: Uuid,
        state: &'static str,
        report: &'static str,
    },
}

impl BackupError {
    /// The Trove fault class (HTTP status and body key) of this refusal.
    pub fn fault(&self) -> Fault {
        use BackupError::*;
        match self {
            Instance(e) => e.fault(),
            NotFound(_) => Fault::ItemNotFound,
            NotSupported { .. } | DeleteRunning(_) | HasChildren { .. } => {
                Fault::UnprocessableEntity
            }
            IncrementalNotSupported { .. }
            | ParentOfOtherInstance { .. }
            | ParentOfOtherVersion { .. } => Fault::BadRequest,
            ParentNotCompleted { .. } | AlreadyExists(_) | UnexpectedReport { .. } => {
                Fault::Conflict
            }
        }
    }
}
