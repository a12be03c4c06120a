//! The command path of promote and eject (issue #15), which span a replica set: the
//! instance named by the request records the switch, then every other member records
//! that it joined it (each member's stream holds its own events).
//!
//! ADR 0006: the rule reads the other members through the read models, so the keyed
//! locks of every member are held until the read models show the result; two promotes
//! in one set (or a promote and a delete, resize, detach of a member) cannot
//! interleave. The members are read before the locks are taken, so they are read again
//! under the locks, and the locks taken again if the set changed meanwhile.

use aggregates::instance::{Caller, InstanceCommand, InstanceEvent};
use uuid::Uuid;

use super::codec::CommandMeta;
use super::commands::{CommandBus, CommandError, Executed};

/// Set changes tolerated between reading the members and holding their locks.
const MEMBERSHIP_ATTEMPTS: usize = 3;

impl CommandBus {
    /// Runs `PromoteToReplicaSource` or `EjectReplicaSource` (`cmd`) on instance `id`
    /// and joins the other members of its replica set to the switch.
    pub async fn switch_replica_set(
        &self,
        id: Uuid,
        cmd: InstanceCommand,
        caller: &Caller,
        meta: &CommandMeta,
    ) -> Result<Executed, CommandError> {
        let mut members = self.replica_set_of(id, &cmd);
        for _ in 0..MEMBERSHIP_ATTEMPTS {
            let keys = members.iter().map(|m| format!("instance:{m}")).collect();
            let _guards = self.lock_keys(keys).await;
            let now = self.replica_set_of(id, &cmd);
            if now != members {
                members = now;
                continue;
            }
            let done = self
                .execute_locked(id, std::slice::from_ref(&cmd), caller, meta)
                .await?;
            self.join_members(id, &done, caller, meta).await;
            return Ok(done);
        }
        Err(CommandError::Conflict(aggregates::instance::stream_name(
            id,
        )))
    }

    /// The instances a switch requested on `id` touches, ascending: `id`, its source (a
    /// promote) and the source's replicas, as the read models show them.
    fn replica_set_of(&self, id: Uuid, cmd: &InstanceCommand) -> Vec<Uuid> {
        let models = &self.lookups().models;
        let source = match cmd {
            InstanceCommand::PromoteToReplicaSource => {
                models.instance(id).and_then(|i| i.replica_of)
            }
            _ => Some(id),
        };
        let mut all = vec![id];
        if let Some(source) = source {
            all.push(source);
            all.extend(models.live_replicas(source));
        }
        all.sort();
        all.dedup();
        all
    }

    /// Records the accepted switch on every other member. A member that refuses (it
    /// cannot: its state was checked under the same locks) or a store failure is left
    /// to the saga, whose first step joins the members again and fails the switch for a
    /// member that cannot join: the request itself was accepted.
    async fn join_members(&self, id: Uuid, done: &Executed, caller: &Caller, meta: &CommandMeta) {
        let joined = done.events.iter().find_map(|e| match e {
            InstanceEvent::ReplicaSourcePromotionRequested { switch, .. } => {
                Some((switch.clone(), false))
            }
            InstanceEvent::ReplicaSourceEjectionRequested { switch, .. } => {
                Some((switch.clone(), true))
            }
            _ => None,
        });
        let Some((switch, eject)) = joined else {
            return;
        };
        for member in switch.members().into_iter().filter(|m| *m != id) {
            let cmd = InstanceCommand::JoinReplicaSetSwitch {
                switch: switch.clone(),
                eject,
            };
            if let Err(e) = self
                .execute_locked(member, std::slice::from_ref(&cmd), caller, meta)
                .await
            {
                tracing::warn!(instance = %member, coordinator = %id, error = %e,
                    "a member did not join the replica set switch; the saga tries again");
            }
        }
    }
}
