//! The instance actions on the local provider: restart, flavor resize and volume resize
//! of a real database server.
//!
//! - Restart: the server is stopped (a clean, fast shutdown: committed data is on disk)
//!   and started again on the same data directory.
//! - Flavor resize: the new flavor's RAM is recorded in `state.json` first, then the
//!   server restarts; each engine derives its memory settings from that RAM at start
//!   (PostgreSQL's `shared_buffers`, MariaDB's `innodb_buffer_pool_size`, as at
//!   create). A server that does not start with them goes back to the old RAM and is
//!   started again, and the resize fails with the server's reason. The old RAM is
//!   recorded with the new one (`resize_from`), so a step retried after a crash rolls
//!   back to it, not to the new RAM `state.json` already holds.
//! - Volume resize: the image grows and ext4 grows with it, online when troved may
//!   (`Volumes::grows_online`); otherwise the server is stopped for the growth and
//!   started again. A volume already that large is left as it is (a retried step).
//!
//! Each runs in its own task under the server's lock, as upgrade does: a saga call that
//! gives up must not cut a restart short between the stop and the start. The key of the
//! last restart or resize done is kept in the server's record (`last_action_key`), so a
//! retried step does not restart the server again.

use super::{provider_error, LocalProvider};
use crate::saga::ports::{FlavorSpec, IdempotencyKey, ProviderError};

impl LocalProvider {
    /// Runs `f` in its own task (see the module docs).
    async fn in_task<F, Fut>(&self, what: &'static str, f: F) -> Result<(), ProviderError>
    where
        F: FnOnce(LocalProvider) -> Fut,
        Fut: std::future::Future<Output = Result<(), ProviderError>> + Send + 'static,
    {
        tokio::spawn(f(self.clone()))
            .await
            .map_err(|e| ProviderError::Transient(format!("{what} task: {e}")))?
    }

    /// `GuestAgent::restart`.
    pub(super) async fn restart_server(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
    ) -> Result<(), ProviderError> {
        let (sid, key) = (server_id.to_string(), key.0.clone());
        self.in_task("restart", |this| async move {
            this.restart_now(&key, &sid).await
        })
        .await
    }

    /// `GuestAgent::resize_flavor`.
    pub(super) async fn resize_server(
        &self,
        key: &IdempotencyKey,
        server_id: &str,
        flavor: &FlavorSpec,
    ) -> Result<(), ProviderError> {
        let (sid, key, ram) = (server_id.to_string(), key.0.clone(), flavor.ram);
        self.in_task("resize", |this| async move {
            this.resize_now(&key, &sid, ram).await
        })
        .await
    }

    /// `GuestAgent::resize_volume`.
    pub(super) async fn grow_volume(
        &self,
        server_id: &str,
        volume_id: &str,
        size_gb: u64,
    ) -> Result<(), ProviderError> {
        let (sid, vid) = (server_id.to_string(), volume_id.to_string());
        self.in_task("resize", |this| async move {
            this.grow_now(&sid, &vid, size_gb).await
        })
        .await
    }

    async fn restart_now(&self, key: &str, server_id: &str) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let engine = self.engine_of(&rec).ok_or_else(|| not_set_up(server_id))?;
        let inst = self.instance(&rec);
        if rec.last_action_key.as_deref() == Some(key) {
            // Done under this key (a retried step): the server only has to run (a
            // start of a running server changes nothing).
            engine.start(&inst).await.map_err(provider_error)?;
            return Ok(());
        }
        engine.restart(&inst).await.map_err(provider_error)?;
        self.set_done(server_id, key, rec.ram_mb).await?;
        tracing::info!(server = server_id, "database server restarted");
        Ok(())
    }

    async fn resize_now(
        &self,
        key: &str,
        server_id: &str,
        ram_mb: u32,
    ) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let engine = self.engine_of(&rec).ok_or_else(|| not_set_up(server_id))?;
        let old_ram = ram_before(&rec, key);
        if rec.last_action_key.as_deref() == Some(key) {
            engine
                .start(&self.instance(&rec))
                .await
                .map_err(provider_error)?;
            return Ok(());
        }
        // Recorded before the restart: a crash in between restarts on the new RAM (the
        // retried step then restarts once more, harmlessly, and still knows the old RAM).
        self.set_resizing(server_id, key, ram_mb, old_ram).await?;
        let mut resized = rec.clone();
        resized.ram_mb = ram_mb;
        engine
            .stop(&self.instance(&rec))
            .await
            .map_err(provider_error)?;
        let err = match engine.start(&self.instance(&resized)).await {
            Ok(_) => {
                self.set_done(server_id, key, ram_mb).await?;
                tracing::info!(server = server_id, ram_mb, "database server resized");
                return Ok(());
            }
            Err(e) => e,
        };
        tracing::warn!(server = server_id, error = %err, "the server did not start with its new memory; back to the old");
        self.set_done(server_id, "", old_ram).await?;
        let mut back = rec.clone();
        back.ram_mb = old_ram;
        if let Err(again) = engine.start(&self.instance(&back)).await {
            return Err(ProviderError::Permanent(format!(
                "the server did not start with the memory of {ram_mb} MB ({err}), nor \
                 again with its old {old_ram} MB: {again}"
            )));
        }
        Err(ProviderError::Permanent(format!(
            "the server did not start with the memory of {ram_mb} MB; it runs with its \
             old {old_ram} MB again: {err}"
        )))
    }

    /// Records the server's RAM and the key of the action done (`""`: none yet); no
    /// resize is in progress any more.
    async fn set_done(&self, server_id: &str, key: &str, ram_mb: u32) -> Result<(), ProviderError> {
        let (sid, key) = (server_id.to_string(), key.to_string());
        self.change(move |st| {
            if let Some(s) = st.servers.get_mut(&sid) {
                s.ram_mb = ram_mb;
                s.last_action_key = (!key.is_empty()).then_some(key);
                s.resize_from = None;
            }
            Ok(())
        })
        .await
    }

    /// Records a flavor resize begun under `key`: the new RAM, and the old one to roll
    /// back to.
    async fn set_resizing(
        &self,
        server_id: &str,
        key: &str,
        ram_mb: u32,
        old_ram: u32,
    ) -> Result<(), ProviderError> {
        let (sid, key) = (server_id.to_string(), key.to_string());
        self.change(move |st| {
            if let Some(s) = st.servers.get_mut(&sid) {
                s.ram_mb = ram_mb;
                s.last_action_key = None;
                s.resize_from = Some((key, old_ram));
            }
            Ok(())
        })
        .await
    }

    async fn grow_now(
        &self,
        server_id: &str,
        volume_id: &str,
        size_gb: u64,
    ) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let vol = self.live_volume(volume_id).await?;
        if vol.size < size_gb {
            let volumes = &self.inner.volumes;
            let offline = !volumes.grows_online();
            let engine = self.engine_of(&rec).filter(|_| offline);
            if let Some(e) = &engine {
                e.stop(&self.instance(&rec)).await.map_err(provider_error)?;
            }
            let grown = volumes.grow(volume_id, size_gb).await;
            if let Some(e) = &engine {
                e.start(&self.instance(&rec))
                    .await
                    .map_err(provider_error)?;
            }
            grown.map_err(provider_error)?;
            let vid = volume_id.to_string();
            self.change(move |st| {
                if let Some(v) = st.volumes.get_mut(&vid) {
                    v.size = v.size.max(size_gb);
                }
                Ok(())
            })
            .await?;
            tracing::info!(volume = volume_id, size_gb, offline, "volume grown");
        }
        Ok(())
    }
}

/// The RAM the server had before the flavor resize under `key`: the one recorded when
/// that resize began (a retried step: `ram_mb` is already the new RAM), else the
/// current one.
fn ram_before(rec: &super::state::ServerRec, key: &str) -> u32 {
    match &rec.resize_from {
        Some((k, old)) if k == key => *old,
        _ => rec.ram_mb,
    }
}

fn not_set_up(server_id: &str) -> ProviderError {
    ProviderError::Permanent(format!("server {server_id} is not set up"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::provider::state::ServerRec;

    fn server(ram_mb: u32, resize_from: Option<(&str, u32)>) -> ServerRec {
        let mut rec: ServerRec = serde_json::from_value(serde_json::json!({
            "key": "k", "instance_id": "00000000-0000-0000-0000-000000000000",
            "instance_name": "n", "port": 30000, "public": false, "ram_mb": ram_mb,
            "volume_id": null, "dir": "/x", "datastore": ["postgresql", "15"],
            "prepared": true, "deleted": false
        }))
        .unwrap();
        rec.resize_from = resize_from.map(|(k, r)| (k.to_string(), r));
        rec
    }

    #[test]
    fn a_resize_retried_after_a_crash_rolls_back_to_the_ram_before_it() {
        // No resize begun: the server's RAM is the old one.
        assert_eq!(ram_before(&server(2048, None), "i/resize/7"), 2048);
        // Begun under this key (state.json already says 4096): the old one is 2048.
        let crashed = server(4096, Some(("i/resize/7", 2048)));
        assert_eq!(ram_before(&crashed, "i/resize/7"), 2048);
        // Another request's leftover does not name this resize's old RAM.
        assert_eq!(ram_before(&crashed, "i/resize/9"), 4096);
    }
}
