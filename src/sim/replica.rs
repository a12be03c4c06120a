//! Promote and eject on the simulated cloud (issue #15): the guests' `replica_of` is
//! switched in one transaction, so a retried call finds the switch made. Fault injection
//! (`--sim-fault promote...`, `eject...`) acts on the coordinator's idempotency key.
//!
//! The simulated guests keep no replication positions: an eject elects the replica
//! that a retried call already elected, else the first replica (the set's replicas come
//! ascending by instance id), which is deterministic.

use rusqlite::{params, Connection};
use uuid::Uuid;

use super::db::{self, OpError, OpResult};
use super::fault::Step;
use super::{after_effect, before_effect, SimCloud, Subject};
use crate::saga::ports::{IdempotencyKey, ProviderError, ReplicaSetServers};

impl SimCloud {
    /// The shared path of promote and eject; returns the new source's instance.
    pub(super) async fn switch_replica_set(
        &self,
        step: Step,
        key: &IdempotencyKey,
        set: &ReplicaSetServers,
    ) -> Result<Uuid, ProviderError> {
        self.pause().await;
        let subject = match (&set.new_primary, step) {
            (Some((_, sid)), Step::Promote) => sid.clone(),
            _ => set.old_primary.1.clone(),
        };
        let verdict = self
            .inject_on(step, Subject::Server(&subject), Some(key))
            .await?;
        let lost = before_effect(verdict).await?;
        let set = set.clone();
        let result = self
            .call(move |conn, _| switch(conn, step == Step::Eject, &set))
            .await;
        after_effect(result, lost)
    }
}

/// Switches the guests' topology: the new source follows nobody, the others follow it;
/// an ejected source keeps what it had (it is left out of the set).
fn switch(conn: &mut Connection, eject: bool, set: &ReplicaSetServers) -> OpResult<Uuid> {
    let tx = conn.transaction()?;
    let mut all = set.replicas.clone();
    all.extend(set.new_primary.clone());
    if !eject {
        all.push(set.old_primary.clone());
    }
    for (_, sid) in &all {
        if db::load_guest(&tx, sid)?.is_none() {
            return Err(OpError::Provider(ProviderError::Permanent(format!(
                "The guest on server {sid} has not been prepared."
            ))));
        }
    }
    let (new_id, new_sid) = match &set.new_primary {
        Some(p) => p.clone(),
        None => elect(&tx, &set.replicas)?,
    };
    for (_, sid) in &all {
        let follows = (*sid != new_sid).then(|| new_id.to_string());
        tx.execute(
            "UPDATE guests SET replica_of = ?2 WHERE server_id = ?1",
            params![sid, follows],
        )?;
    }
    tx.commit()?;
    Ok(new_id)
}

/// The replica an eject makes the source: one a retried call made it already, else the
/// first.
fn elect(conn: &Connection, replicas: &[(Uuid, String)]) -> OpResult<(Uuid, String)> {
    for (id, sid) in replicas {
        if db::load_guest(conn, sid)?.is_some_and(|g| g.replica_of.is_none()) {
            return Ok((*id, sid.clone()));
        }
    }
    replicas.first().cloned().ok_or_else(|| {
        OpError::Provider(ProviderError::Permanent(
            "the replica source has no replicas to elect".into(),
        ))
    })
}
