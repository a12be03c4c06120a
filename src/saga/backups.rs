//! The backup saga: takes the backups users asked for and removes the artifacts of
//! deleted ones, through the [`BackupAgent`] port and the backup store, recording each
//! outcome on the backup's stream (`backup-<uuid>`).
//!
//! Like the instance saga it is level-triggered and resumes from the log: at start it
//! picks up every backup with work left (running, or deleted with an artifact stored),
//! then follows `$all`. A backup found `BUILDING` by a worker that did not start it was
//! interrupted (troved stopped or crashed mid-copy): it is started again as the next
//! attempt, the copy replacing whatever the interrupted one left, and failed after
//! [`MAX_ATTEMPTS`]. A failed backup leaves no artifact: the store commits only complete
//! copies, and the expected location is removed before the failure is recorded.
//!
//! An admin's `reset_status` of the instance after the backup was asked for (the
//! instance's `reset_on`) abandons a running backup (upstream's `fail_for_instance`): a
//! copy in progress is dropped and the backup failed; a copy that answers after the
//! failure is not kept (the aggregate records nothing) and its artifact is removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::backup::{
    backup_id_of_stream, Backup, BackupArtifact, BackupCommand, BackupStatus, MAX_ATTEMPTS,
};
use aggregates::instance::FaultInfo;
use dashmap::DashMap;
use projections::backups::BackupModels;
use projections::InstanceModels;
use tokio::sync::watch;
use uuid::Uuid;

use super::ports::{
    ArtifactRef, BackupAgent, BackupRequest, ParentArtifact, ProviderError, RestoreRequest,
};
use super::saga_caller;
use crate::backup_store::BackupStore;
use crate::retry::Backoff;
use crate::runtime::backups::BackupSupport;
use crate::runtime::codec::{Actor, CommandMeta};
use crate::runtime::commands::{CommandBus, CommandError};
use crate::store::{EventStore, StoreError};

/// Namespace of the backup saga's deterministic event ids.
const BACKUP_SAGA_NS: Uuid = Uuid::from_u128(0x7c1e_9a40_2b6d_4f83_a51c_6e09_d2b4_38f7);

/// Transient failures of one copy or removal tolerated before it fails.
const TRANSIENT_ATTEMPTS: u32 = 6;

/// Pause after a transient failure, or after the store failed: 500 ms doubling to 10 s,
/// so the retries of a copy span ~25 s: enough for a database server that the local
/// provider's supervisor is starting again (after troved itself was restarted, say) to
/// answer. With 200 ms and 4 attempts (1.4 s) a backup resumed right after a restart
/// could fail before its server was back.
const RETRY: Backoff = Backoff::doubling(Duration::from_millis(500), Duration::from_secs(10));

/// How often a copy in progress looks whether its backup was abandoned meanwhile (an
/// admin's `reset_status` of its instance).
const ABANDON_POLL: Duration = Duration::from_millis(250);

/// What the backup saga needs.
pub struct BackupRunnerDeps {
    pub bus: CommandBus,
    pub agent: Arc<dyn BackupAgent>,
    pub store: Arc<dyn BackupStore>,
    pub backups: Arc<BackupModels>,
    pub instances: Arc<InstanceModels>,
    /// Longest a copy may take before it counts as a transient failure.
    pub copy_timeout: Duration,
    pub shutdown: watch::Receiver<bool>,
}

/// Runs backup workflows. Cheap to clone.
#[derive(Clone)]
pub struct BackupRunner {
    inner: Arc<BackupRunnerDeps>,
    /// Backups with a worker; `true` = new events arrived meanwhile, look again.
    running: Arc<DashMap<Uuid, bool>>,
}

/// What one look at a backup led to.
enum Next {
    /// Recorded something: look again.
    Moved,
    /// Nothing to do now.
    Idle,
    /// Try again after a pause.
    Retry(Duration),
}

impl BackupRunner {
    pub fn new(deps: BackupRunnerDeps) -> BackupRunner {
        BackupRunner {
            inner: Arc::new(deps),
            running: Arc::new(DashMap::new()),
        }
    }

    /// Picks up every backup with work left, then follows `$all` until the store closes
    /// or shutdown.
    pub async fn run(self, store: Arc<dyn EventStore>) -> Result<(), StoreError> {
        let from = self.inner.instances.position();
        for id in self.inner.backups.with_work() {
            self.poke(id);
        }
        let mut shutdown = self.inner.shutdown.clone();
        let mut sub = store.subscribe_all(from).await?;
        loop {
            tokio::select! {
                r = sub.next() => {
                    if let Some(id) = backup_id_of_stream(&r?.stream) {
                        self.poke(id);
                    }
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Makes sure a worker looks at backup `id`.
    pub fn poke(&self, id: Uuid) {
        use dashmap::mapref::entry::Entry;
        match self.running.entry(id) {
            Entry::Occupied(mut e) => *e.get_mut() = true,
            Entry::Vacant(e) => {
                e.insert(false);
                let me = self.clone();
                tokio::spawn(async move { me.work(id).await });
            }
        }
    }

    async fn work(self, id: Uuid) {
        let mut worker = Worker {
            runner: &self,
            id,
            started_here: false,
            failures: HashMap::new(),
        };
        loop {
            if *self.inner.shutdown.borrow() {
                self.running.remove(&id);
                return;
            }
            match worker.step().await {
                Ok(Next::Moved) => {}
                Ok(Next::Retry(pause)) => tokio::time::sleep(pause).await,
                Ok(Next::Idle) => {
                    if self.running.remove_if(&id, |_, again| !*again).is_some() {
                        return;
                    }
                    if let Some(mut again) = self.running.get_mut(&id) {
                        *again = false;
                    }
                }
                Err(e) => {
                    let n = worker.failures.entry("store").or_default();
                    *n += 1;
                    if *n % 10 == 1 {
                        tracing::warn!(backup = %id, error = %e, failures = *n, "backup step failed; retrying");
                    }
                    tokio::time::sleep(RETRY.delay(*n)).await;
                }
            }
        }
    }
}

/// One backup's worker.
struct Worker<'a> {
    runner: &'a BackupRunner,
    id: Uuid,
    /// Whether this worker recorded the current attempt's start (otherwise a
    /// `BUILDING` backup was interrupted).
    started_here: bool,
    /// Consecutive failures by kind.
    failures: HashMap<&'static str, u32>,
}

impl Worker<'_> {
    async fn step(&mut self) -> Result<Next, CommandError> {
        let deps = &self.runner.inner;
        let Some(b) = deps.bus.folded_backup(self.id).await? else {
            return Ok(Next::Idle);
        };
        if b.artifact_to_remove() {
            return self.remove_artifact(&b).await;
        }
        if !b.is_live() || !b.status.is_running() {
            return Ok(Next::Idle);
        }
        if let Some(at) = reset_since(deps, &b) {
            let why = format!(
                "Backup of instance {} abandoned: an admin reset the instance's status",
                b.instance_id
            );
            return self.fail(&b, why, format!("reset_status at {at}")).await;
        }
        match (b.status, self.started_here) {
            (BackupStatus::New, _) => self.start(&b, 1).await,
            (_, false) if b.attempts >= MAX_ATTEMPTS => {
                let why = format!(
                    "the copy was interrupted {} times (troved stopped during it)",
                    b.attempts
                );
                self.fail(&b, why, String::new()).await
            }
            (_, false) => self.start(&b, b.attempts + 1).await,
            (_, true) => self.copy(&b).await,
        }
    }

    async fn start(&mut self, b: &Backup, attempt: u32) -> Result<Next, CommandError> {
        self.started_here = true;
        self.record(b, BackupCommand::StartBackup { attempt }).await
    }

    /// Takes the copy through the agent and records its outcome.
    async fn copy(&mut self, b: &Backup) -> Result<Next, CommandError> {
        let deps = &self.runner.inner;
        let req = match self.request(b) {
            Ok(req) => req,
            Err(why) => return self.fail(b, why, String::new()).await,
        };
        let call = tokio::time::timeout(deps.copy_timeout, deps.agent.take_backup(&req));
        let taken = tokio::select! {
            r = call => r.unwrap_or_else(|_| {
                Err(ProviderError::Transient(format!(
                    "no answer within {} s",
                    deps.copy_timeout.as_secs()
                )))
            }),
            // The copy is dropped; the next step records the failure (and removes
            // whatever the copy left under the backup's name).
            () = until_abandoned(deps, b) => return Ok(Next::Moved),
        };
        match taken {
            Ok(a) => {
                let location = a.location.clone();
                let artifact = BackupArtifact {
                    location: a.location,
                    size_bytes: a.size,
                    checksum: a.checksum,
                    engine_position: a.engine_position,
                };
                let next = self
                    .record(b, BackupCommand::CompleteBackup { artifact })
                    .await?;
                self.remove_if_not_kept(&location).await?;
                Ok(next)
            }
            Err(e) => {
                let n = self.failures.entry("copy").or_default();
                *n += 1;
                tracing::warn!(backup = %self.id, attempt = *n, error = %e, "backup copy failed");
                if matches!(e, ProviderError::Transient(_)) && *n < TRANSIENT_ATTEMPTS {
                    return Ok(Next::Retry(RETRY.delay(*n)));
                }
                let details = format!("take_backup failed after {n} attempt(s): {e}");
                self.fail(
                    b,
                    format!("Backup of instance {} failed\n{e}", b.instance_id),
                    details,
                )
                .await
            }
        }
    }

    /// What the agent is asked, from the instance and the parent as the read models
    /// show them now; `Err` says why there is nothing to back up.
    fn request(&self, b: &Backup) -> Result<BackupRequest, String> {
        let deps = &self.runner.inner;
        let instance = deps
            .instances
            .instance(b.instance_id)
            .filter(|i| i.is_live())
            .ok_or_else(|| format!("instance {} was deleted", b.instance_id))?;
        let server_id = instance
            .server_id
            .clone()
            .ok_or_else(|| format!("instance {} has no server", b.instance_id))?;
        let parent = match b.parent_id {
            None => None,
            Some(p) => {
                let parent = deps.backups.state(p).filter(Backup::is_live);
                let artifact = parent
                    .and_then(|p| p.artifact)
                    .ok_or_else(|| format!("the parent backup {p} has no stored artifact"))?;
                Some(ParentArtifact {
                    backup_id: p,
                    location: artifact.location,
                    engine_position: artifact.engine_position,
                })
            }
        };
        Ok(BackupRequest {
            backup_id: self.id,
            instance_id: b.instance_id,
            instance_name: instance.name.clone(),
            server_id,
            datastore_manager: b.datastore.manager.clone(),
            datastore_version: b.datastore.version_name.clone(),
            container: b.container.clone(),
            parent,
        })
    }

    /// Removes whatever a copy may have left under the backup's name, then records the
    /// failure.
    async fn fail(
        &mut self,
        b: &Backup,
        message: String,
        details: String,
    ) -> Result<Next, CommandError> {
        let store = &self.runner.inner.store;
        let leftover = store.location(&b.container, &self.id.to_string());
        if let Err(e) = store.delete(&leftover).await {
            tracing::warn!(backup = %self.id, error = %e, "removing a failed backup's artifact failed; retrying");
            return Ok(Next::Retry(RETRY.delay(1)));
        }
        let fault = FaultInfo { message, details };
        self.record(b, BackupCommand::FailBackup { fault }).await
    }

    /// A completion the backup did not take (it was failed meanwhile: the aggregate
    /// ignores a late completion) leaves its artifact unregistered: removed, so that no
    /// orphan stays in the store.
    async fn remove_if_not_kept(&self, location: &str) -> Result<(), CommandError> {
        let deps = &self.runner.inner;
        let kept = deps.bus.folded_backup(self.id).await?.is_some_and(|b| {
            b.status == BackupStatus::Completed
                && b.artifact.is_some_and(|a| a.location == location)
        });
        if !kept {
            tracing::info!(backup = %self.id, "a copy ended after its backup failed; removing its artifact");
            if let Err(e) = deps.store.delete(location).await {
                tracing::warn!(backup = %self.id, error = %e, "removing the artifact of a late copy failed");
            }
        }
        Ok(())
    }

    async fn remove_artifact(&mut self, b: &Backup) -> Result<Next, CommandError> {
        let Some(artifact) = &b.artifact else {
            return Ok(Next::Idle);
        };
        match self.runner.inner.store.delete(&artifact.location).await {
            Ok(()) => self.record(b, BackupCommand::RecordArtifactRemoved).await,
            Err(e) => {
                let n = self.failures.entry("remove").or_default();
                *n += 1;
                if matches!(e, ProviderError::Transient(_)) && *n < TRANSIENT_ATTEMPTS {
                    return Ok(Next::Retry(RETRY.delay(*n)));
                }
                let fault = FaultInfo {
                    message: format!("Failed to delete the artifact of backup {}\n{e}", self.id),
                    details: format!("delete failed after {n} attempt(s): {e}"),
                };
                self.record(b, BackupCommand::FailBackupDeletion { fault })
                    .await
            }
        }
    }

    /// Records a report as the saga, with ids derived from the backup's revision.
    async fn record(&mut self, b: &Backup, cmd: BackupCommand) -> Result<Next, CommandError> {
        let caller = saga_caller();
        let meta = CommandMeta {
            actor: Actor::from(&caller),
            request_id: format!("saga:{}", cmd.name()),
            causation_id: self.id,
            correlation_id: self.id,
            derived_ids: Some(Uuid::new_v5(
                &BACKUP_SAGA_NS,
                format!("{}/{}/{}", self.id, b.version, cmd.name()).as_bytes(),
            )),
        };
        let any = BackupSupport {
            backups: true,
            incremental: true,
        };
        self.runner
            .inner
            .bus
            .execute_backup(self.id, &cmd, &caller, &meta, any)
            .await?;
        self.failures.clear();
        // Look again: the step decides on the stream as it is now.
        Ok(Next::Moved)
    }
}

/// When an admin reset the status of the backup's instance after the backup was asked
/// for, if so: the backup is abandoned (upstream's `fail_for_instance`). Read from the
/// instance's folded state, so a crash between the reset and the failure is resumed.
fn reset_since(deps: &BackupRunnerDeps, b: &Backup) -> Option<chrono::DateTime<chrono::Utc>> {
    deps.instances
        .instance(b.instance_id)
        .and_then(|i| i.reset_on)
        .map(|at| *at)
        .filter(|at| *at > b.created)
}

/// Ends once backup `b` should no longer be copied: its instance was reset, or the
/// backup is no longer running (failed or deleted by someone else).
async fn until_abandoned(deps: &BackupRunnerDeps, b: &Backup) {
    loop {
        tokio::time::sleep(ABANDON_POLL).await;
        let ended = deps
            .backups
            .state(b.id.unwrap_or_default())
            .is_some_and(|s| !s.is_live() || !s.status.is_running());
        if ended || reset_since(deps, b).is_some() {
            return;
        }
    }
}

/// What a restore of backup `id` reads: its artifacts from the full backup down to it.
/// `Err` says why it cannot be restored (deleted meanwhile, an artifact missing, a
/// chain that loops).
pub fn restore_chain(backups: &BackupModels, id: Uuid) -> Result<RestoreRequest, String> {
    let found = backups.chain(id);
    if found.first().is_none_or(|full| full.parent_id.is_some()) {
        return Err(format!(
            "the chain of backup {id} is broken (a backup of it is gone)"
        ));
    }
    let chain = found
        .into_iter()
        .map(|b| {
            let bid = b.id.unwrap_or_default();
            match b.artifact {
                Some(a) if b.is_live() => Ok(ArtifactRef {
                    backup_id: bid,
                    location: a.location,
                    checksum: a.checksum,
                }),
                Some(_) => Err(format!("backup {bid} (of the chain of {id}) was deleted")),
                None => Err(format!(
                    "backup {bid} (of the chain of {id}) has no stored artifact"
                )),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(RestoreRequest {
        backup_id: id,
        chain,
    })
}
