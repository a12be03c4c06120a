//! The command path of the Backup aggregate (streams `backup-<uuid>`), beside the
//! instance one in [`commands`](super::commands).
//!
//! A backup's rules read other aggregates through the read models (the instance and
//! whether a backup of it runs, the parent, the live children, the project's backups),
//! so users' commands hold the instance's keyed lock (the one instance actions hold:
//! a backup create and an upgrade of the same instance cannot both pass) and the
//! project's backup-quota lock, until the read models show the result.

use aggregates::backup::{
    self, Backup, BackupCommand, BackupError, BackupEvent, DecideCtx, InstanceFacts, ParentFacts,
};
use aggregates::instance::Caller;
use chrono::Utc;
use uuid::Uuid;

use super::codec::{self, CodecError, CommandMeta};
use super::commands::{CommandBus, CommandError, StreamCommand};
use super::lookups::Lookups;
use crate::backup_store::DEFAULT_CONTAINER;
use crate::metrics::CommandOutcome;
use crate::store::{NewEvent, RecordedEvent};

/// What the provider can do for a create: decided by the shell from the provider's
/// ports, passed to `decide`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackupSupport {
    /// Backups of the instance's datastore version at all.
    pub backups: bool,
    /// Incremental backups of it.
    pub incremental: bool,
}

impl CommandBus {
    /// Runs one command on backup `id`: fold, decide, append, wait for the read models.
    /// Returns the backup after it. `support` matters to creates only.
    pub async fn execute_backup(
        &self,
        id: Uuid,
        cmd: &BackupCommand,
        caller: &Caller,
        meta: &CommandMeta,
        support: BackupSupport,
    ) -> Result<Backup, CommandError> {
        let lookups = self.lookups();
        let instance = match cmd {
            BackupCommand::CreateBackup(c) => Some(c.instance_id),
            BackupCommand::DeleteBackup => lookups.backups.state(id).map(|b| b.instance_id),
            _ => None,
        };
        let mut keys = Vec::new();
        if let Some(instance) = instance {
            keys.push(format!("instance:{instance}"));
            if let Some(i) = lookups.models.instance(instance) {
                keys.push(format!("backup-quota:{}", i.project_id));
            }
        }
        let _guards = self.lock_keys(keys).await;
        let command = BackupCommandRun {
            id,
            cmd,
            caller,
            meta,
            lookups,
            support,
        };
        let done = self.run(&backup::stream_name(id), None, &command).await;
        crate::metrics::global().commands([cmd.name()], CommandOutcome::from(&done));
        Ok(done?.state)
    }

    /// Backup `id`'s stream, folded (`None`: no such stream).
    pub async fn folded_backup(&self, id: Uuid) -> Result<Option<Backup>, CommandError> {
        let records = self.store().read_stream(&backup::stream_name(id)).await?;
        if records.is_empty() {
            return Ok(None);
        }
        fold_backup(&records).map(Some)
    }
}

/// One command on a backup, as the command path performs it.
struct BackupCommandRun<'a> {
    id: Uuid,
    cmd: &'a BackupCommand,
    caller: &'a Caller,
    meta: &'a CommandMeta,
    lookups: &'a Lookups,
    support: BackupSupport,
}

impl BackupCommandRun<'_> {
    /// The parent a create names, or the instance's last completed backup for a bare
    /// `incremental`.
    fn parent(&self) -> Option<ParentFacts> {
        let BackupCommand::CreateBackup(c) = self.cmd else {
            return None;
        };
        let found = match c.parent_id {
            Some(p) => self.lookups.backups.state(p).filter(Backup::is_live),
            // Only of the version the instance runs now: after an upgrade, a full one.
            None if c.incremental => {
                let now = self
                    .lookups
                    .models
                    .instance(c.instance_id)
                    .and_then(|i| i.datastore)
                    .map(|d| d.version_id);
                self.lookups
                    .backups
                    .last_completed(c.instance_id)
                    .filter(|b| Some(b.datastore.version_id) == now)
            }
            None => None,
        }?;
        Some(ParentFacts {
            id: found.id?,
            project_id: found.project_id,
            instance_id: found.instance_id,
            status: found.status,
            version_id: found.datastore.version_id,
        })
    }
}

impl StreamCommand for BackupCommandRun<'_> {
    type State = Backup;
    type Event = BackupEvent;

    fn fold(&self, records: &[RecordedEvent]) -> Result<Backup, CommandError> {
        fold_backup(records)
    }

    fn decide(&self, state: &Backup) -> Result<Vec<BackupEvent>, CommandError> {
        // Read at each attempt, under the instance's lock (see the module doc).
        let instance_id = match self.cmd {
            BackupCommand::CreateBackup(c) => c.instance_id,
            _ => state.instance_id,
        };
        let instance = self.lookups.models.instance(instance_id);
        let project = instance
            .as_ref()
            .map(|i| i.project_id.clone())
            .unwrap_or_default();
        let ctx = DecideCtx {
            now: Utc::now(),
            backup_id: self.id,
            caller: self.caller,
            instance: InstanceFacts {
                state: instance.as_ref(),
                backup_running: self.lookups.backups.running().any(instance_id),
                backups_supported: self.support.backups,
                incremental_supported: self.support.incremental,
            },
            parent: self.parent(),
            quota: (
                self.lookups.backups.count_live(&project) as i64,
                self.lookups.quotas.limit_or(
                    &project,
                    "backups",
                    self.lookups.catalog.limits.quota_backups,
                ),
            ),
            default_container: DEFAULT_CONTAINER,
            children: self.lookups.backups.children(self.id),
        };
        backup::decide(state, self.cmd, &ctx).map_err(rejected)
    }

    fn encode(&self, event: &BackupEvent, _index: usize) -> NewEvent {
        let (event_type, version, data) = event.encode();
        codec::encode_parts(event_type, version, &data, event.at(), self.meta)
    }

    fn evolve(&self, state: Backup, event: &BackupEvent) -> Backup {
        backup::state::evolve(state, event)
    }
}

/// A refusal of the backup aggregate, in its Trove fault class.
fn rejected(e: BackupError) -> CommandError {
    CommandError::Rejected(e.fault(), e.to_string())
}

/// Folds a backup stream (the source of truth for a command).
pub fn fold_backup(records: &[RecordedEvent]) -> Result<Backup, CommandError> {
    let mut state = Backup::default();
    for r in records {
        let event = codec::decode_parts(r)
            .and_then(|(data, meta)| Ok(backup::decode(&r.event_type, meta.schema_version, data)?));
        let event = event.map_err(|e: CodecError| CommandError::unreadable(r, e))?;
        state = backup::state::evolve(state, &event);
    }
    Ok(state)
}
