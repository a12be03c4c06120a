//! `decide`: the rules of backup commands, in upstream's order where it has them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::{BackupCommand, CreateBackup};
use super::error::BackupError;
use super::event::{BackupCreated, BackupEvent};
use super::state::{Backup, BackupStatus};
use crate::instance::{can_perform_action, Caller, DomainError, Instance};

/// Starts of a copy before the saga gives up on it (each start after the first is a
/// restart of troved in the middle of the copy).
pub const MAX_ATTEMPTS: u32 = 3;

/// The instance a create names, as the shell found it.
#[derive(Clone, Debug)]
pub struct InstanceFacts<'a> {
    /// Its folded state (`None`: it never existed).
    pub state: Option<&'a Instance>,
    /// Whether a backup of it runs now (its status is `BACKUP`).
    pub backup_running: bool,
    /// Whether its provider can back up its datastore version at all, and take
    /// increments of it.
    pub backups_supported: bool,
    pub incremental_supported: bool,
}

/// The parent a create names (`parent_id`) or implies (`incremental`: the instance's
/// last completed backup).
#[derive(Clone, Debug, PartialEq)]
pub struct ParentFacts {
    pub id: Uuid,
    pub project_id: String,
    pub instance_id: Uuid,
    pub status: BackupStatus,
    /// The datastore version it was taken from.
    pub version_id: Uuid,
}

/// What `decide` may not fetch itself.
pub struct DecideCtx<'a> {
    /// The clock reading for this command.
    pub now: DateTime<Utc>,
    /// The backup the command addresses (the stream's id).
    pub backup_id: Uuid,
    pub caller: &'a Caller,
    /// Create: the instance named.
    pub instance: InstanceFacts<'a>,
    /// Create: the parent given by `parent_id` (`None`: not found), or the last
    /// completed backup of the instance when only `incremental` is set.
    pub parent: Option<ParentFacts>,
    /// Create: the caller's project's live backups and its limit (-1: unlimited).
    pub quota: (i64, i64),
    /// The default storage location name.
    pub default_container: &'a str,
    /// Delete: the live backups whose parent is this one.
    pub children: Vec<Uuid>,
}

/// Decides one command.
pub fn decide(
    state: &Backup,
    cmd: &BackupCommand,
    ctx: &DecideCtx,
) -> Result<Vec<BackupEvent>, BackupError> {
    let at = ctx.now;
    match cmd {
        BackupCommand::CreateBackup(c) => create(state, c, ctx).map(|e| vec![e]),
        BackupCommand::DeleteBackup => delete(state, ctx),
        report => decide_report(state, report, at),
    }
}

fn create(state: &Backup, c: &CreateBackup, ctx: &DecideCtx) -> Result<BackupEvent, BackupError> {
    if state.exists() {
        return Err(BackupError::AlreadyExists(ctx.backup_id));
    }
    let not_found = || DomainError::ResourceNotFound(c.instance_id.to_string());
    let instance = ctx
        .instance
        .state
        .filter(|i| i.is_live() && ctx.caller.can_see(&i.project_id))
        .ok_or_else(not_found)?;
    can_perform_action(instance, c.instance_id, ctx.instance.backup_running)?;
    let datastore = instance.datastore.clone().ok_or_else(not_found)?;
    if !ctx.instance.backups_supported {
        return Err(BackupError::NotSupported {
            operation: "backup_create",
            datastore: datastore.datastore_name,
        });
    }
    let parent = if c.parent_id.is_some() || c.incremental {
        if !ctx.instance.incremental_supported {
            return Err(BackupError::IncrementalNotSupported {
                datastore: datastore.datastore_name,
                version: datastore.version_name,
            });
        }
        parent(c, ctx)?
    } else {
        None
    };
    let (used, limit) = ctx.quota;
    if limit >= 0 && used + 1 > limit {
        return Err(DomainError::QuotaExceeded(vec!["backups".into()]).into());
    }
    Ok(BackupEvent::BackupCreated(Box::new(BackupCreated {
        backup_id: ctx.backup_id,
        project_id: instance.project_id.clone(),
        user_id: ctx.caller.user_id.clone(),
        instance_id: c.instance_id,
        name: c.name.clone(),
        description: c.description.clone(),
        parent_id: parent,
        datastore,
        container: c
            .container
            .clone()
            .unwrap_or_else(|| ctx.default_container.to_string()),
        at: ctx.now,
    })))
}

/// The parent of an incremental create: the one given (visible, of the same instance,
/// completed), or the last completed one (none: a full backup, as upstream).
fn parent(c: &CreateBackup, ctx: &DecideCtx) -> Result<Option<Uuid>, BackupError> {
    let Some(given) = c.parent_id else {
        return Ok(ctx.parent.as_ref().map(|p| p.id));
    };
    let p = ctx
        .parent
        .as_ref()
        .filter(|p| p.id == given && ctx.caller.can_see(&p.project_id))
        .ok_or(BackupError::NotFound(given))?;
    if p.instance_id != c.instance_id {
        return Err(BackupError::ParentOfOtherInstance {
            parent: given,
            instance: c.instance_id,
        });
    }
    if p.status != BackupStatus::Completed {
        return Err(BackupError::ParentNotCompleted {
            id: given,
            state: p.status.as_str(),
        });
    }
    if Some(p.version_id)
        != ctx
            .instance
            .state
            .and_then(|i| i.datastore.as_ref())
            .map(|d| d.version_id)
    {
        return Err(BackupError::ParentOfOtherVersion { parent: given });
    }
    Ok(Some(given))
}

fn delete(state: &Backup, ctx: &DecideCtx) -> Result<Vec<BackupEvent>, BackupError> {
    let id = match state.id {
        Some(id) if state.is_live() && ctx.caller.can_see(&state.project_id) => id,
        _ => return Err(BackupError::NotFound(ctx.backup_id)),
    };
    if state.status.is_running() {
        return Err(BackupError::DeleteRunning(id));
    }
    if !ctx.children.is_empty() {
        let children: Vec<String> = ctx.children.iter().map(Uuid::to_string).collect();
        return Err(BackupError::HasChildren {
            id,
            children: children.join(", "),
        });
    }
    Ok(vec![BackupEvent::BackupDeleted { at: ctx.now }])
}

/// The saga's reports: idempotent (a fact already recorded gives no event), refused when
/// they do not fit the state.
fn decide_report(
    state: &Backup,
    cmd: &BackupCommand,
    at: DateTime<Utc>,
) -> Result<Vec<BackupEvent>, BackupError> {
    let unexpected = || BackupError::UnexpectedReport {
        id: state.id.unwrap_or_default(),
        state: state.status.as_str(),
        report: cmd.name(),
    };
    if !state.exists() {
        return Err(unexpected());
    }
    let running = state.status.is_running() && !state.deleted;
    let event = match cmd {
        BackupCommand::StartBackup { attempt } if *attempt <= state.attempts => return Ok(vec![]),
        BackupCommand::StartBackup { attempt } if running => BackupEvent::BackupStarted {
            attempt: *attempt,
            at,
        },
        BackupCommand::CompleteBackup { artifact } if state.status == BackupStatus::Completed => {
            return if state.artifact.as_ref() == Some(artifact) {
                Ok(vec![])
            } else {
                Err(unexpected())
            };
        }
        // A copy that ends after the backup was failed (abandoned by an admin's
        // `reset_status`): too late, the backup stays FAILED; the saga removes what the
        // copy stored.
        BackupCommand::CompleteBackup { .. } if state.status == BackupStatus::Failed => {
            return Ok(vec![])
        }
        BackupCommand::CompleteBackup { artifact } if running => BackupEvent::BackupCompleted {
            artifact: artifact.clone(),
            at,
        },
        BackupCommand::FailBackup { .. } if state.status == BackupStatus::Failed => {
            return Ok(vec![])
        }
        BackupCommand::FailBackup { fault } if running => BackupEvent::BackupFailed {
            fault: fault.clone(),
            at,
        },
        BackupCommand::RecordArtifactRemoved if state.artifact_removed => return Ok(vec![]),
        BackupCommand::RecordArtifactRemoved if state.artifact_to_remove() => {
            BackupEvent::BackupArtifactRemoved { at }
        }
        BackupCommand::FailBackupDeletion { .. } if !state.deleted => return Ok(vec![]),
        BackupCommand::FailBackupDeletion { fault } if state.artifact_to_remove() => {
            BackupEvent::BackupDeletionFailed {
                fault: fault.clone(),
                at,
            }
        }
        _ => return Err(unexpected()),
    };
    Ok(vec![event])
}
