//! Promote and eject on the local provider (issue #15): the order of the engine steps
//! ([`crate::local::replication::Replication`]) over the servers of a replica set.
//!
//! Promote: the old source stops taking writes (`freeze`), the candidate and the
//! siblings apply everything it committed (`catch_up`), the candidate becomes a source
//! (`become_source`) and is promoted (writable), the siblings follow it (`repoint`), and
//! the old source becomes its read-only replica (`demote`). If a replica cannot catch up,
//! the old source takes writes again (`thaw`) before the error is returned: nothing has
//! switched. From `become_source` on it stays frozen whatever fails (the candidate may
//! already take writes, e.g. a `pg_promote` that timed out goes on): the retry, or an
//! admin's reset and a later promote, finishes the switch. Eject: the old source is
//! failed and left alone (stopped if it still runs, so that it cannot take writes
//! nobody replicates); the replica that applied the most is elected and promoted, and
//! the others follow it.
//!
//! Each call is idempotent, as the saga may repeat it after a crash: once the new
//! source is promoted (it is no replica any more), only the steps after the promotion
//! run again. Every server's lock is held (in sorted order; no other path takes more
//! than a replica's and then its primary's, and the command path refuses those while
//! the set switches: a member's actions and DELETE, and a new replica of a switching
//! source). The work runs in a task of its own, so that a saga call that
//! times out does not cut it short: the retry waits for the locks and finds it done.

use uuid::Uuid;

use super::{provider_error, LocalProvider};
use crate::local::replication::Replication;
use crate::local::{running, Engine, Instance, LocalError};
use crate::saga::ports::{ProviderError, ReplicaSetServers};

/// One member of the set: instance id, server id, engine instance.
type Member = (Uuid, String, Instance);

/// The first steps of a promote after the freeze of the old source: every replica
/// applies what the old source committed (MariaDB's new source starts its binary log at
/// the position it applied, so a sibling behind it could not follow it). Nothing has
/// switched while this fails, so the old source may take writes again.
async fn catch_up_all(
    repl: &dyn Replication,
    new: &Member,
    siblings: &[Member],
    position: &str,
) -> Result<(), LocalError> {
    repl.catch_up(&new.2, position).await?;
    for s in siblings {
        repl.catch_up(&s.2, position).await?;
    }
    Ok(())
}

impl LocalProvider {
    /// `promote_to_replica_source` (see the module docs).
    pub(super) async fn promote_set(&self, set: &ReplicaSetServers) -> Result<(), ProviderError> {
        let this = self.clone();
        let set = set.clone();
        tokio::spawn(async move { this.promote_set_now(&set).await })
            .await
            .map_err(|e| ProviderError::Transient(format!("promote task: {e}")))?
    }

    /// `eject_replica_source` (see the module docs); the elected instance.
    pub(super) async fn eject_set(&self, set: &ReplicaSetServers) -> Result<Uuid, ProviderError> {
        let this = self.clone();
        let set = set.clone();
        tokio::spawn(async move { this.eject_set_now(&set).await })
            .await
            .map_err(|e| ProviderError::Transient(format!("eject task: {e}")))?
    }

    async fn promote_set_now(&self, set: &ReplicaSetServers) -> Result<(), ProviderError> {
        let new = set.new_primary.clone().ok_or_else(|| {
            ProviderError::Permanent("a promote names the replica to promote".into())
        })?;
        let locks = self.lock_all(set).await;
        let (engine, old) = self.member(&set.old_primary).await?;
        let (_, new) = self.member(&new).await?;
        let mut siblings = Vec::new();
        for r in &set.replicas {
            siblings.push(self.member(r).await?.1);
        }
        let repl = replication(engine.as_ref())?;
        let e = provider_error;
        if repl.is_replica(&new.2).await.map_err(e)? {
            let position = repl.freeze(&old.2).await.map_err(e)?;
            if let Err(err) = catch_up_all(repl, &new, &siblings, &position).await {
                // Nothing switched yet: the old source must not stay frozen (shut down,
                // or read-only) while the switch fails or waits for its retry.
                if let Err(t) = repl.thaw(&old.2).await {
                    tracing::warn!(old = %old.0, error = %t,
                        "the old source could not take writes again after a failed promote");
                }
                return Err(e(err));
            }
            // From here the candidate may already take writes (a `pg_promote` that timed
            // out goes on): the old source stays frozen, never thawed into a second
            // writable source; a retry finds the candidate no replica and goes on.
            repl.become_source(&new.2).await.map_err(e)?;
            repl.promote(&new.2).await.map_err(e)?;
        }
        for s in &siblings {
            repl.repoint(&s.2, &new.2).await.map_err(e)?;
        }
        repl.demote(&old.2, &new.2).await.map_err(e)?;
        drop(locks);
        tracing::info!(new = %new.0, old = %old.0, "replica set switched: promoted");
        Ok(())
    }

    async fn eject_set_now(&self, set: &ReplicaSetServers) -> Result<Uuid, ProviderError> {
        let locks = self.lock_all(set).await;
        let (engine, old) = self.member(&set.old_primary).await?;
        let mut replicas = Vec::new();
        for r in &set.replicas {
            replicas.push(self.member(r).await?.1);
        }
        let repl = replication(engine.as_ref())?;
        let e = provider_error;
        // The ejected source must not take writes the set never sees.
        if running(&old.2).is_some() {
            if let Err(err) = engine.stop(&old.2).await {
                tracing::warn!(old = %old.0, error = %err, "the ejected source did not stop");
            }
        }
        let elected = self.elect(repl, &replicas).await?;
        let new = &replicas[elected];
        if repl.is_replica(&new.2).await.map_err(e)? {
            repl.become_source(&new.2).await.map_err(e)?;
            repl.promote(&new.2).await.map_err(e)?;
        }
        for (_, r) in replicas.iter().enumerate().filter(|(i, _)| *i != elected) {
            repl.repoint(&r.2, &new.2).await.map_err(e)?;
        }
        drop(locks);
        tracing::info!(new = %new.0, old = %old.0, "replica set switched: ejected");
        Ok(new.0)
    }

    /// The replica an eject promotes: one a repeated call promoted already, else the
    /// one that applied the most (the first of equals).
    async fn elect(
        &self,
        repl: &dyn Replication,
        replicas: &[Member],
    ) -> Result<usize, ProviderError> {
        let mut best: Option<(usize, u64)> = None;
        for (i, r) in replicas.iter().enumerate() {
            if !repl.is_replica(&r.2).await.map_err(provider_error)? {
                return Ok(i);
            }
            let applied = repl.applied(&r.2).await.map_err(provider_error)?;
            if best.is_none_or(|(_, b)| applied > b) {
                best = Some((i, applied));
            }
        }
        best.map(|(i, _)| i).ok_or_else(|| {
            ProviderError::Permanent("the replica source has no replicas to elect".into())
        })
    }

    /// The engine and the member of `(instance, server)`.
    async fn member(
        &self,
        (id, sid): &(Uuid, String),
    ) -> Result<(std::sync::Arc<dyn Engine>, Member), ProviderError> {
        let rec = self.live_server(sid).await?;
        let engine = self
            .engine_of(&rec)
            .ok_or_else(|| ProviderError::Permanent(format!("server {sid} runs no database")))?;
        Ok((engine, (*id, sid.clone(), self.instance(&rec))))
    }

    /// The locks of every server of the set, in sorted order.
    async fn lock_all(&self, set: &ReplicaSetServers) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut sids: Vec<String> = set
            .replicas
            .iter()
            .chain(set.new_primary.iter())
            .chain(std::iter::once(&set.old_primary))
            .map(|(_, sid)| sid.clone())
            .collect();
        sids.sort();
        sids.dedup();
        let mut held = Vec::new();
        for sid in sids {
            held.push(self.lock_of(&sid).lock_owned().await);
        }
        held
    }
}

fn replication(engine: &dyn Engine) -> Result<&dyn Replication, ProviderError> {
    engine
        .replication()
        .ok_or_else(|| ProviderError::Permanent("this datastore does not replicate".into()))
}
