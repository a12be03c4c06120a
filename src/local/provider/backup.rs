//! Backups and restores on the local provider (issue #14): [`BackupAgent`] over the
//! engines' physical backups ([`crate::local::backup`]), streamed into the backup store;
//! and `prepare` with [`PrepareRequest::restore`], which builds the new server's data
//! from the stored artifacts instead of the template.
//!
//! A backup holds the server's lock (a delete, a restart or a configuration change waits
//! for it) and streams the tool's output straight into [`crate::backup_store::BackupStore::put`], which
//! commits only a complete artifact: a tool that fails leaves none. A restore reads each
//! artifact through [`verified`], unpacks them in a scratch directory beside the data
//! directory and moves the result into place by rename, so a failure (a missing or
//! corrupted artifact, a full volume) leaves no data directory; then the new server is
//! made its own: superuser password, access rules, configuration, no replication state
//! of the source, and the request's databases and users on top of the restored ones.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::state::ServerRec;
use super::{config_values, grants, provider_error, LocalProvider};
use crate::backup_store::{verified, Stored};
use crate::local::backup::Backups;
use crate::local::{
    access, prepare_dirs, remove_earlier_copies, running, scratch_name, user, Engine, Instance,
    LocalError,
};
use crate::saga::ports::{
    Artifact, BackupAgent, BackupRequest, PrepareRequest, ProviderError, RestoreRequest,
};

/// Longest a restore may take, as a multiple of the engine timeout (a tool that hangs
/// must not hold the server's lock for ever; an hour with the default minute). A
/// backup's copy is bounded by the saga (`--backup-timeout-secs`), which drops it.
const RESTORE_LIMIT_FACTOR: u32 = 60;

#[async_trait]
impl BackupAgent for LocalProvider {
    fn supports_backups(&self, manager: &str) -> bool {
        self.inner
            .engines
            .iter()
            .any(|((m, _), e)| m == manager && e.backups().is_some())
    }

    fn supports_incremental(&self, manager: &str, version: &str) -> bool {
        self.inner
            .engines
            .get(&(manager.to_string(), version.to_string()))
            .and_then(|e| e.backups().map(Backups::incremental))
            .unwrap_or(false)
    }

    /// In the caller's task: when the saga gives up on a copy (its timeout), dropping
    /// the call kills the tool, removes the store's partial artifact and releases what
    /// the backup held on the server ([`Release`]), so no copy outlives its backup and
    /// a later one never finds the server's lock taken.
    async fn take_backup(&self, req: &BackupRequest) -> Result<Artifact, ProviderError> {
        self.take_backup_now(req).await
    }
}

/// Releases what a backup holds on the server ([`Backups::finish`]: PostgreSQL's
/// replication slot) and its scratch directory if the copy is dropped before it ends.
struct Release {
    armed: Option<(std::sync::Arc<dyn Engine>, Instance, PathBuf)>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let Some((engine, inst, scratch)) = self.armed.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(backups) = engine.backups() {
                    let _ = backups.finish(&inst, &scratch).await;
                }
                let _ = tokio::fs::remove_dir_all(&scratch).await;
            });
        }
    }
}

impl LocalProvider {
    async fn take_backup_now(&self, req: &BackupRequest) -> Result<Artifact, ProviderError> {
        let sid = &req.server_id;
        let lock = self.lock_of(sid);
        let _held = lock.lock().await;
        let rec = self.live_server(sid).await?;
        let engine = self
            .engine_of(&rec)
            .filter(|_| rec.prepared)
            .ok_or_else(|| ProviderError::Permanent(format!("server {sid} runs no database")))?;
        let backups = engine.backups().ok_or_else(|| {
            ProviderError::Permanent(format!("the datastore of server {sid} takes no backups"))
        })?;
        let since = parent_position(backups, req)?;
        let inst = self.instance(&rec);
        if running(&inst).is_none() {
            // The supervisor starts it again.
            return Err(ProviderError::Transient(format!(
                "the database server of {sid} is not running"
            )));
        }
        let base = inst.dir.join("backup");
        remove_earlier_copies(&base).await;
        let scratch = user::private_dir(&self.inner.cfg.user, &scratch_name(&base))
            .map_err(provider_error)?;
        let mut release = Release {
            armed: Some((engine.clone(), inst.clone(), scratch.clone())),
        };
        let stored = self
            .stream_backup(backups, &inst, &scratch, since, req)
            .await;
        release.armed = None;
        let ended = backups.finish(&inst, &scratch).await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        let stored = stored?;
        let engine_position = match ended {
            Ok(position) => position,
            Err(e) => {
                // Complete but unusable for what follows: a failed call leaves nothing.
                let _ = self.inner.backups.delete(&stored.location).await;
                return Err(provider_error(e));
            }
        };
        tracing::info!(server = %sid, backup = %req.backup_id, size = stored.size, "backup stored");
        Ok(Artifact {
            location: stored.location,
            size: stored.size,
            checksum: stored.checksum,
            engine_position,
        })
    }

    /// Runs the engine's backup tool into the store. A tool that fails is a permanent
    /// failure quoting its standard error's end.
    async fn stream_backup(
        &self,
        backups: &dyn Backups,
        inst: &Instance,
        scratch: &Path,
        since: Option<&str>,
        req: &BackupRequest,
    ) -> Result<Stored, ProviderError> {
        let stream = backups
            .backup(inst, scratch, since)
            .await
            .map_err(|e| ProviderError::Permanent(e.to_string()))?;
        let failure = stream.failure();
        let name = req.backup_id.to_string();
        let put = self
            .inner
            .backups
            .put(&req.container, &name, Box::new(stream));
        match put.await {
            Ok(stored) => Ok(stored),
            Err(e) => Err(match failure.message() {
                // Not the tool's fault: the server went away under it (killed, restarted
                // by the supervisor); a retry starts over.
                Some(tool) if running(inst).is_none() => ProviderError::Transient(format!(
                    "the database server stopped during the backup: {tool}"
                )),
                Some(tool) => ProviderError::Permanent(format!("backup failed: {tool}")),
                None => e,
            }),
        }
    }
}

/// The position an incremental backup counts from; `None` for a full one.
fn parent_position<'r>(
    backups: &dyn Backups,
    req: &'r BackupRequest,
) -> Result<Option<&'r str>, ProviderError> {
    let Some(parent) = &req.parent else {
        return Ok(None);
    };
    if !backups.incremental() {
        return Err(ProviderError::Permanent(format!(
            "{} {} takes no incremental backups here",
            req.datastore_manager, req.datastore_version
        )));
    }
    parent.engine_position.as_deref().map(Some).ok_or_else(|| {
        ProviderError::Permanent(format!(
            "the parent backup {} recorded no position to count changes from",
            parent.backup_id
        ))
    })
}

impl LocalProvider {
    /// `prepare` of a server whose data comes from `req.restore` (see the module docs):
    /// restore, configure, start, make it the new instance's own, then the request's
    /// databases and users. Every step is idempotent, as `set_up`'s.
    pub(super) async fn set_up_restored(
        &self,
        engine: &dyn Engine,
        (sid, rec): (&str, &ServerRec),
        req: &PrepareRequest,
        admin_password: &str,
    ) -> Result<(), ProviderError> {
        let restore = req.restore.as_ref().ok_or_else(|| {
            ProviderError::Permanent("a restore without a backup to restore".into())
        })?;
        let backups = engine.backups().ok_or_else(|| {
            ProviderError::Permanent(format!(
                "{} {} takes no backups here",
                req.datastore_manager, req.datastore_version
            ))
        })?;
        let inst = self.instance(rec);
        self.restore_data(backups, &inst, restore).await?;
        let allowed = access::parse_all(&req.allowed_cidrs).map_err(provider_error)?;
        let inherited = start_restored(engine, backups, &inst, req, &allowed, admin_password)
            .await
            .map_err(provider_error)?;
        // The access rules apply to the users the data brought and to the request's.
        let mut users = inherited;
        for account in grants::accounts(&req.users) {
            if !users.contains(&account) {
                users.push(account);
            }
        }
        let recorded = users.clone();
        self.change(|st| {
            if let Some(s) = st.servers.get_mut(sid) {
                s.users = recorded;
            }
            Ok(())
        })
        .await?;
        engine
            .restrict_network(&inst, &allowed, &users)
            .await
            .map_err(provider_error)
    }

    /// Makes the data directory of `inst` from the artifacts of `restore`, unless an
    /// earlier attempt did (it appears only complete, by rename).
    async fn restore_data(
        &self,
        backups: &dyn Backups,
        inst: &Instance,
        restore: &RestoreRequest,
    ) -> Result<(), ProviderError> {
        let user = &self.inner.cfg.user;
        prepare_dirs(user, inst).map_err(provider_error)?;
        let data = inst.data_dir();
        if data.exists() {
            return Ok(());
        }
        let base = inst.dir.join("restore");
        remove_earlier_copies(&base).await;
        let work = user::private_dir(user, &scratch_name(&base)).map_err(provider_error)?;
        // Bounded as a backup is: a tool that hangs must not hold the server's lock for
        // ever (dropping the work kills the tools).
        let limit = self.inner.cfg.timeout * RESTORE_LIMIT_FACTOR;
        let made = tokio::time::timeout(limit, self.unpack_chain(backups, &work, restore))
            .await
            .unwrap_or_else(|_| {
                Err(ProviderError::Permanent(format!(
                    "the restore did not finish within {limit:?}"
                )))
            });
        let moved = match made {
            Ok(partial) => tokio::fs::rename(&partial, &data)
                .await
                .map_err(|e| provider_error(LocalError::io("move the restored data", e))),
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_dir_all(&work).await;
        moved
    }

    /// Unpacks each artifact of the chain into `work/<n>` and assembles them into
    /// `work/data`, which it returns.
    async fn unpack_chain(
        &self,
        backups: &dyn Backups,
        work: &Path,
        restore: &RestoreRequest,
    ) -> Result<PathBuf, ProviderError> {
        if restore.chain.is_empty() {
            return Err(ProviderError::Permanent(format!(
                "backup {} has no artifact to restore",
                restore.backup_id
            )));
        }
        let failed = |e: LocalError| {
            ProviderError::Permanent(format!("restoring backup {}: {e}", restore.backup_id))
        };
        let mut parts = Vec::new();
        for (i, artifact) in restore.chain.iter().enumerate() {
            let part = user::private_dir(&self.inner.cfg.user, &work.join(i.to_string()))
                .map_err(provider_error)?;
            let body = match self.inner.backups.get(&artifact.location).await {
                Ok(body) => body,
                Err(ProviderError::NotFound(_)) => {
                    return Err(ProviderError::Permanent(format!(
                        "restoring backup {}: the artifact of backup {} is missing ({})",
                        restore.backup_id, artifact.backup_id, artifact.location
                    )));
                }
                Err(e) => return Err(e),
            };
            backups
                .unpack(&part, verified(body, &artifact.checksum))
                .await
                .map_err(failed)?;
            parts.push(part);
        }
        let partial = work.join("data");
        backups.assemble(&parts, &partial).await.map_err(failed)?;
        Ok(partial)
    }
}

/// The restored server configured and started as the new instance's: its access rules
/// and configuration group (not the source's), then, running, the source's replication
/// state dropped, the request's databases and users created (a database that exists is
/// kept; a user that exists gets the request's password and grants) and its own
/// superuser password. Returns the users the data brought.
async fn start_restored(
    engine: &dyn Engine,
    backups: &dyn Backups,
    inst: &Instance,
    req: &PrepareRequest,
    allowed: &[access::Cidr],
    admin_password: &str,
) -> Result<Vec<(String, String)>, LocalError> {
    engine.restrict_network(inst, allowed, &[]).await?;
    let values = config_values(req.configuration.as_ref());
    if !values.is_empty() {
        engine.apply_config(inst, &values).await?;
    }
    engine.start(inst).await?;
    // First: until now the source's superuser password opens it.
    engine.set_admin_password(inst, admin_password).await?;
    let inherited = backups.adopt(inst).await?;
    for db in &req.databases {
        engine.create_database(inst, db).await?;
    }
    for user in &req.users {
        engine
            .create_user(inst, &grants::user_spec(user, &req.databases))
            .await?;
    }
    Ok(inherited)
}
