//! What the heartbeat supervisor ([`crate::saga::heartbeat`]) asks of the local provider:
//! a server's health, and to start again a server whose process is gone.

use async_trait::async_trait;

use super::{provider_error, LocalProvider};
use crate::local::Health;
use crate::saga::heartbeat::{Beat, Supervised};
use crate::saga::ports::{ProviderError, VolumeProvider};

#[async_trait]
impl Supervised for LocalProvider {
    async fn check(&self, server_id: &str) -> Result<Beat, ProviderError> {
        let rec = self.live_server(server_id).await?;
        let Some(engine) = self.engine_of(&rec).filter(|_| rec.prepared) else {
            return Ok(Beat::NotReady);
        };
        Ok(match engine.health(&self.instance(&rec)).await {
            Health::Healthy => Beat::Healthy,
            Health::Unresponsive(why) => Beat::Unresponsive(why),
            Health::Down => Beat::Down,
        })
    }

    /// Starts the server again (a server that runs already is adopted), under the
    /// server's lock: never at the same time as a step of the saga on it, and never
    /// after a delete (the record is gone: `NotFound`).
    async fn revive(&self, server_id: &str) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let engine = self
            .engine_of(&rec)
            .filter(|_| rec.prepared)
            .ok_or_else(|| ProviderError::Permanent(format!("server {server_id} is not set up")))?;
        engine
            .start(&self.instance(&rec))
            .await
            .map(|_| ())
            .map_err(provider_error)
    }

    async fn usage(&self, server_id: &str) -> Option<(f64, f64)> {
        let volume = self.live_server(server_id).await.ok()?.volume_id?;
        let u = VolumeProvider::volume_usage(self, &volume).await.ok()?;
        Some((u.used_gb, u.total_gb))
    }
}
