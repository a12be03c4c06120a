//! Backups in the simulated cloud: the same workflow as a real provider's, with
//! simulated artifacts (a header naming the backup and a fixed-size body) written to the
//! real backup store, so that backups at scale, their faults (`--sim-fault backup:...`)
//! and the store's behaviour are testable without database servers. A restore reads
//! every artifact of its chain back through the checksum check.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use super::fault::Step;
use super::{after_effect, before_effect, db, SimCloud, Subject};
use crate::backup_store::{verified, BackupStore, Body};
use crate::saga::ports::{
    Artifact, BackupAgent, BackupRequest, IdempotencyKey, ProviderError, RestoreRequest,
};

/// Bytes of a simulated artifact after its header, unless `--sim-backup-kb` says.
pub const SIM_ARTIFACT_BYTES: u64 = 64 * 1024;

impl SimCloud {
    /// Gives the cloud a backup store (once; later calls are ignored).
    pub fn attach_backup_store(&self, store: Arc<dyn BackupStore>) {
        let _ = self.inner.backup_store.set(store);
    }

    fn backup_store(&self) -> Result<&Arc<dyn BackupStore>, ProviderError> {
        self.inner
            .backup_store
            .get()
            .ok_or_else(|| ProviderError::Permanent("no backup store is configured".into()))
    }

    /// Reads every artifact of a restore's chain back, checking its checksum.
    pub(super) async fn check_restore(
        &self,
        restore: &RestoreRequest,
    ) -> Result<(), ProviderError> {
        let store = self.backup_store()?;
        for a in &restore.chain {
            let failed = |e: String| {
                ProviderError::Permanent(format!(
                    "restoring backup {} from {}: {e}",
                    a.backup_id, a.location
                ))
            };
            let body = store
                .get(&a.location)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let mut body = verified(body, &a.checksum);
            tokio::io::copy(&mut body, &mut tokio::io::sink())
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl BackupAgent for SimCloud {
    fn supports_incremental(&self, _manager: &str, _version: &str) -> bool {
        true
    }

    async fn take_backup(&self, req: &BackupRequest) -> Result<Artifact, ProviderError> {
        self.pause().await;
        let key = IdempotencyKey(format!("backup-{}", req.backup_id));
        let verdict = self
            .inject_on(Step::Backup, Subject::Server(&req.server_id), Some(&key))
            .await?;
        let lost = before_effect(verdict).await?;
        let server = req.server_id.clone();
        if self
            .call(move |conn, _| db::server_subject(conn, &server))
            .await?
            .is_none()
        {
            return Err(ProviderError::NotFound(format!("server {}", req.server_id)));
        }
        let header = serde_json::json!({
            "simulated_backup": req.backup_id,
            "instance_id": req.instance_id,
            "server_id": req.server_id,
            "datastore": [&req.datastore_manager, &req.datastore_version],
            "parent": req.parent.as_ref().map(|p| p.backup_id),
        });
        let body: Body = Box::new(
            std::io::Cursor::new(format!("{header}\n").into_bytes())
                .chain(tokio::io::repeat(b'.').take(self.inner.backup_bytes)),
        );
        let stored = self
            .backup_store()?
            .put(&req.container, &req.backup_id.to_string(), body)
            .await
            .map(|s| Artifact {
                location: s.location,
                size: s.size,
                checksum: s.checksum,
                engine_position: Some(req.backup_id.to_string()),
            });
        after_effect(stored, lost)
    }
}
