//! An access update reaching a prepared server: the new `allowed_cidrs` are recorded,
//! then applied by the engine (`crate::local::access` has the rules), on a server that
//! runs (one that is down is started first). The binding
//! (public or private address) changes in `set_public`, a step before.

use super::{provider_error, LocalProvider};
use crate::local::{access, running};
use crate::saga::ports::ProviderError;

impl LocalProvider {
    /// The guest port's `restrict_access`, under the server's lock.
    pub(super) async fn restrict_access_now(
        &self,
        server_id: &str,
        allowed_cidrs: &[String],
    ) -> Result<(), ProviderError> {
        let allowed = access::parse_all(allowed_cidrs).map_err(provider_error)?;
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        self.live_server(server_id).await?;
        let rec = self
            .change(|st| {
                let s = st
                    .servers
                    .get_mut(server_id)
                    .ok_or_else(|| ProviderError::NotFound(format!("server {server_id}")))?;
                s.allowed_cidrs = allowed_cidrs.to_vec();
                Ok(s.clone())
            })
            .await?;
        // Not prepared yet: prepare applies the CIDRs of its request.
        let (true, Some(engine)) = (rec.prepared, self.engine_of(&rec)) else {
            return Ok(());
        };
        let inst = self.instance(&rec);
        // MariaDB keeps its rules in its own tables, changed only while it runs: a server
        // that is down (until the supervisor starts it again) is started first, as the
        // supervisor would. A start that fails is worth a retry of the step.
        if running(&inst).is_none() {
            engine.start(&inst).await.map_err(|e| {
                ProviderError::Transient(format!("start the server to apply access: {e}"))
            })?;
        }
        engine
            .restrict_network(&inst, &allowed, &rec.users)
            .await
            .map_err(provider_error)
    }
}
