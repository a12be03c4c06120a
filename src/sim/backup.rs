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

    /// The copy takes the simulated latency in the middle of the artifact's bytes, as a
    /// real one spends its time streaming: a troved stopped during it leaves a partial
    /// artifact behind for the store to clear.
    async fn take_backup(&self, req: &BackupRequest) -> Result<Artifact, ProviderError> {
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
        let bytes = std::io::Cursor::new(format!("{header}\n").into_bytes())
            .chain(tokio::io::repeat(b'.').take(self.inner.backup_bytes));
        let body: Body = Box::new(Midway {
            head: 1 + self.inner.backup_bytes / 2,
            pause: Some(Box::pin(tokio::time::sleep(self.inner.latency))),
            inner: bytes,
        });
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

/// A body that stops for `pause` after its first `head` bytes.
struct Midway<R> {
    head: u64,
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    inner: R,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Midway<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        if self.head == 0 {
            if let Some(pause) = self.pause.as_mut() {
                if std::future::Future::poll(pause.as_mut(), cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
            }
            return std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let room = usize::try_from(self.head)
            .unwrap_or(usize::MAX)
            .min(buf.remaining())
            .min(64 * 1024);
        let mut chunk = vec![0u8; room];
        let mut limited = tokio::io::ReadBuf::new(&mut chunk);
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.put_slice(limited.filled());
        self.head -= n as u64;
        polled
    }
}
