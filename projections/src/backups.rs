//! Read models of backups (being written).

/// Backup read models.
#[derive(Debug, Default)]
pub struct BackupModels {}
