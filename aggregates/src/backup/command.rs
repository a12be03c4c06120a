//! Backup commands: what users ask (already checked against the JSON schema by the
//! shell) and what the saga reports.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::BackupArtifact;
use crate::instance::FaultInfo;

/// `POST /backups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateBackup {
    pub name: String,
    pub description: Option<String>,
    /// `instance` of the body (an id; an href's last segment, resolved by the shell).
    pub instance_id: Uuid,
    /// `parent_id`: take an increment of this backup.
    pub parent_id: Option<Uuid>,
    /// `incremental`: an increment of the instance's last completed backup, if any.
    pub incremental: bool,
    /// `swift_container`: the storage location name (`None`: the default).
    pub container: Option<String>,
}

/// Everything one can ask of a backup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BackupCommand {
    /// `POST /backups`.
    CreateBackup(Box<CreateBackup>),
    /// `DELETE /backups/{id}`.
    DeleteBackup,
    /// Saga: the copy begins (attempt `attempt`).
    StartBackup { attempt: u32 },
    /// Saga: the artifact is stored.
    CompleteBackup { artifact: BackupArtifact },
    /// Saga: the copy failed; nothing is stored.
    FailBackup { fault: FaultInfo },
    /// Saga: a deleted backup's artifact is gone from the store.
    RecordArtifactRemoved,
    /// Saga: a deleted backup's artifact could not be removed.
    FailBackupDeletion { fault: FaultInfo },
}

impl BackupCommand {
    /// Stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            BackupCommand::CreateBackup(_) => "CreateBackup",
            BackupCommand::DeleteBackup => "DeleteBackup",
            BackupCommand::StartBackup { .. } => "StartBackup",
            BackupCommand::CompleteBackup { .. } => "CompleteBackup",
            BackupCommand::FailBackup { .. } => "FailBackup",
            BackupCommand::RecordArtifactRemoved => "RecordArtifactRemoved",
            BackupCommand::FailBackupDeletion { .. } => "FailBackupDeletion",
        }
    }

    /// Whether the saga sends it (a report), rather than a user.
    pub fn is_report(&self) -> bool {
        !matches!(
            self,
            BackupCommand::CreateBackup(_) | BackupCommand::DeleteBackup
        )
    }
}
