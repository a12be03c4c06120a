//! Replicas on the local provider: `prepare` with `replica_of` copies the primary and
//! follows it; `detach_replica` promotes ([`crate::local::replication`]).
//!
//! The primary is found by its instance id among the live server records. While a
//! replica is made, the primary's lock is held too (after the replica's: no path takes
//! them the other way round), so that no restart or configuration change of the primary
//! cuts the copy short. A replica has no databases or users of its own (the create
//! request may not name any): they come with the copy, as does the superuser's password,
//! which the replica's record takes over from the primary's, with the primary's list of
//! users. Access (`allowed_cidrs`) is the replica's own: its rules replace the copied
//! ones once it follows, and an access update of either server changes that server only
//! (MariaDB: the account statements stay out of the binary log).

use uuid::Uuid;

use super::state::ServerRec;
use super::{config_values, provider_error, LocalProvider};
use crate::local::{access, running, Engine, Instance};
use crate::saga::ports::{PrepareRequest, ProviderError};

impl LocalProvider {
    /// The live server record of instance `primary`, with its id.
    async fn primary_server(&self, primary: Uuid) -> Result<(String, ServerRec), ProviderError> {
        let st = self.inner.state.lock().await;
        st.servers
            .iter()
            .find(|(_, s)| s.instance_id == primary && !s.deleted)
            .map(|(id, s)| (id.clone(), s.clone()))
            .ok_or_else(|| {
                ProviderError::Permanent(format!(
                    "the primary instance {primary} has no server on this machine"
                ))
            })
    }

    /// The work of `prepare` for a replica of instance `primary`, under the replica's
    /// lock: copy, configure, start, follow; then the primary's superuser password.
    pub(super) async fn set_up_replica(
        &self,
        engine: &dyn Engine,
        replica: (&str, &ServerRec),
        req: &PrepareRequest,
        primary: Uuid,
    ) -> Result<(), ProviderError> {
        let (sid, rec) = replica;
        let repl = engine.replication().ok_or_else(|| {
            ProviderError::Permanent(format!(
                "datastore {} does not replicate on this machine",
                req.datastore_manager
            ))
        })?;
        let (pid, prec) = self.primary_server(primary).await?;
        if prec.datastore != rec.datastore {
            return Err(ProviderError::Permanent(format!(
                "the primary instance {primary} runs another datastore version"
            )));
        }
        let lock = self.lock_of(&pid);
        let _held = lock.lock().await;
        let pinst = self.instance(&prec);
        // A primary still being prepared, or down until the supervisor restarts it, is
        // worth waiting for.
        if !prec.prepared || running(&pinst).is_none() {
            return Err(ProviderError::Transient(format!(
                "the primary instance {primary} is not running yet"
            )));
        }
        let inst: Instance = self.instance(rec);
        repl.init_replica(&inst, &pinst)
            .await
            .map_err(provider_error)?;
        let values = config_values(req.configuration.as_ref());
        if !values.is_empty() {
            engine
                .apply_config(&inst, &values)
                .await
                .map_err(provider_error)?;
        }
        engine.start(&inst).await.map_err(provider_error)?;
        repl.follow(&inst, &pinst).await.map_err(provider_error)?;
        // The copy has the primary's superuser password: the replica keeps it, sealed
        // with its own instance's key; and the primary's users, whose accounts the
        // replica's own access rules apply to.
        let (password, _) = self.admin_password(&prec).await?;
        let sealed = self.seal_admin_password(rec.instance_id, password).await?;
        let rec = self
            .change(|st| {
                let s = st
                    .servers
                    .get_mut(sid)
                    .ok_or_else(|| ProviderError::NotFound(format!("server {sid}")))?;
                s.sealed_admin_password = Some(sealed);
                s.users = prec.users.clone();
                Ok(s.clone())
            })
            .await?;
        // Access is the replica's own (as upstream's security group is per instance):
        // the copy came with the primary's rules, replaced here.
        let allowed = access::parse_all(&rec.allowed_cidrs).map_err(provider_error)?;
        engine
            .restrict_network(&inst, &allowed, &rec.users)
            .await
            .map_err(provider_error)
    }

    /// The work of `detach_replica`: the server (started if it is down) is promoted.
    pub(super) async fn promote(&self, server_id: &str) -> Result<(), ProviderError> {
        let lock = self.lock_of(server_id);
        let _held = lock.lock().await;
        let rec = self.live_server(server_id).await?;
        let engine = self.engine_of(&rec).ok_or_else(|| {
            ProviderError::Permanent(format!("server {server_id} runs no database"))
        })?;
        let repl = engine.replication().ok_or_else(|| {
            ProviderError::Permanent(format!("server {server_id} does not replicate"))
        })?;
        let inst = self.instance(&rec);
        engine.start(&inst).await.map_err(provider_error)?;
        repl.promote(&inst).await.map_err(provider_error)
    }
}
