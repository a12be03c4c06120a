//! The saga's side of promote and eject (issue #15): the step `SwitchReplicaSet` of the
//! coordinator (the promoted replica, or the ejected source) and the recording of its
//! end on every other member of the set.
//!
//! Crash-resumable like every workflow: the plan asks for the step as long as the
//! coordinator is PROMOTING/EJECTING. The step first makes sure every member joined (a
//! crash may have come between the request and the joins), then asks the provider,
//! whose switch is idempotent; the end (done or failed) is recorded on the other members
//! first and on the coordinator last, so until the coordinator's end is in the log the
//! step is taken again and finds its work done. It must not decide anything the
//! aggregate decides: each member's `decide` accepts or ignores the report.

use aggregates::instance::{FaultInfo, Instance, InstanceCommand, ReplicaSetSwitch, Task};
use uuid::Uuid;

use super::ports::{IdempotencyKey, ProviderError, ReplicaSetServers};
use super::{saga_caller, Outcome, SagaRunner, StepError, SAGA_NS};
use crate::runtime::codec::{Actor, CommandMeta};
use crate::runtime::commands::CommandError;

impl SagaRunner {
    /// Step `SwitchReplicaSet` on coordinator `id`.
    pub(super) async fn switch_replica_set(
        &self,
        id: Uuid,
        s: &Instance,
    ) -> Result<Outcome, StepError> {
        let Some(switch) = s.replica_switch.clone() else {
            return Ok(Outcome::Wait); // not planned without a switch
        };
        let eject = s.task == Task::Ejecting;
        if let Some(refusal) = self.join_members(id, s, &switch, eject).await? {
            return Ok(Outcome::Record(InstanceCommand::FailReplicaSetSwitch {
                fault: refusal,
                switch: switch.id(),
            }));
        }
        let set = self.servers_of(&switch).await?;
        let guests = &self.providers.guests;
        let key = switch_key(id, s, &switch, eject);
        let new_primary_id = if eject {
            guests.eject_replica_source(&key, &set).await?
        } else {
            guests.promote_to_replica_source(&key, &set).await?;
            id
        };
        Ok(Outcome::Record(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id,
            switch: switch.id(),
        }))
    }

    /// Records the switch on every member that has not recorded it; a member that
    /// cannot join (it started something else) fails the switch, before anything on
    /// the servers changed. A member that ended this switch already (a crash came
    /// between the members' ends and the coordinator's) is skipped: it must not join
    /// again (its own `decide` refuses to, too).
    async fn join_members(
        &self,
        id: Uuid,
        s: &Instance,
        switch: &ReplicaSetSwitch,
        eject: bool,
    ) -> Result<Option<FaultInfo>, StepError> {
        for member in switch.members().into_iter().filter(|m| *m != id) {
            if self.ended(member, switch).await? {
                continue;
            }
            let cmd = InstanceCommand::JoinReplicaSetSwitch {
                switch: switch.clone(),
                eject,
            };
            match self.record_on(member, id, s, cmd).await {
                Ok(()) => {}
                Err(StepError::Command(CommandError::Domain(e))) => {
                    return Ok(Some(FaultInfo {
                        message: format!("Instance {member} of the replica set cannot switch."),
                        details: e.to_string(),
                    }))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Whether `member` ended `switch` already, as its stream says.
    async fn ended(&self, member: Uuid, switch: &ReplicaSetSwitch) -> Result<bool, StepError> {
        if switch.requested_at == 0 {
            return Ok(false); // an old body: unknown, its decide tells
        }
        let folded = self.bus.folded(member, None).await?;
        Ok(folded.is_some_and(|f| f.state.switch_ended.as_deref() == Some(&switch.id())))
    }

    /// The server of every member, as their streams say.
    async fn servers_of(&self, switch: &ReplicaSetSwitch) -> Result<ReplicaSetServers, StepError> {
        let mut servers = Vec::new();
        for member in switch.members() {
            let folded = self.bus.folded(member, None).await?;
            let sid = folded
                .and_then(|f| f.state.server_id.clone())
                .ok_or_else(|| {
                    super::ports::ProviderError::Permanent(format!(
                        "instance {member} of the replica set has no server"
                    ))
                })?;
            servers.push((member, sid));
        }
        let old_primary = servers.remove(0);
        let new_primary = switch
            .new_primary_id
            .and_then(|n| servers.iter().position(|(m, _)| *m == n))
            .map(|i| servers.remove(i));
        Ok(ReplicaSetServers {
            old_primary,
            new_primary,
            replicas: servers,
        })
    }

    /// Before coordinator `id` records the end of its switch (`cmd`), every other
    /// member records it too. Other commands pass through.
    pub(super) async fn members_follow(
        &self,
        id: Uuid,
        s: &Instance,
        cmd: &InstanceCommand,
    ) -> Result<(), StepError> {
        let ends = matches!(
            cmd,
            InstanceCommand::CompleteReplicaSetSwitch { .. }
                | InstanceCommand::FailReplicaSetSwitch { .. }
        );
        let Some(switch) = s.replica_switch.as_ref().filter(|_| ends) else {
            return Ok(());
        };
        for member in switch.members().into_iter().filter(|m| *m != id) {
            match self.record_on(member, id, s, cmd.clone()).await {
                // A member deleted meanwhile (DELETE is refused during a switch, but an
                // admin's reset_status ends it on the member, which may then go) has
                // nothing to record; retrying could never succeed.
                Err(StepError::Command(CommandError::Domain(e))) => {
                    tracing::warn!(instance = %member, coordinator = %id, error = %e,
                        "a member of the replica set did not record the end of its switch");
                }
                done => done?,
            }
        }
        Ok(())
    }

    /// Records `cmd` on `member` as the saga, with event ids derived from the member,
    /// the coordinator's state and the command: a retried step appends the same ids.
    async fn record_on(
        &self,
        member: Uuid,
        coordinator: Uuid,
        s: &Instance,
        cmd: InstanceCommand,
    ) -> Result<(), StepError> {
        let caller = saga_caller();
        let base = Uuid::new_v5(
            &SAGA_NS,
            format!("{member}/{coordinator}/{}/{}", s.version, cmd.name()).as_bytes(),
        );
        let meta = CommandMeta {
            actor: Actor::from(&caller),
            request_id: "saga:switch_replica_set".into(),
            causation_id: base,
            correlation_id: coordinator,
            derived_ids: Some(base),
        };
        self.bus
            .execute(member, std::slice::from_ref(&cmd), &caller, &meta)
            .await?;
        Ok(())
    }
}

/// The provider call's idempotency key on coordinator `id`: one per switch (the
/// revision of its request), so that a retried step repeats the call and a later switch
/// of the same set (a promote back and forth names the same old source again) is a new
/// one. A switch recorded before `requested_at` existed keeps the key it had.
fn switch_key(id: Uuid, s: &Instance, switch: &ReplicaSetSwitch, eject: bool) -> IdempotencyKey {
    let name = match (eject, switch.requested_at) {
        (true, 0) => format!("eject/{}", s.version),
        (false, 0) => format!("promote/{}", switch.old_primary_id),
        (true, at) => format!("eject/{at}"),
        (false, at) => format!("promote/{}/{at}", switch.old_primary_id),
    };
    IdempotencyKey::new(id, &name)
}

/// The fault message of a switch that failed for good: upstream's words for an eject or
/// a promote.
pub(super) fn failure_message(id: Uuid, task: Task, e: &ProviderError) -> String {
    if task == Task::Ejecting {
        format!("Failed to eject replica source {id}\n{e}")
    } else {
        format!("Failed to promote instance {id} to replica source\n{e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promote(old: u128, at: u64) -> ReplicaSetSwitch {
        ReplicaSetSwitch {
            old_primary_id: Uuid::from_u128(old),
            new_primary_id: Some(Uuid::from_u128(1)),
            replica_ids: vec![Uuid::from_u128(1)],
            requested_at: at,
        }
    }

    #[test]
    fn each_promote_request_gets_its_own_provider_key() {
        let (me, s) = (Uuid::from_u128(1), Instance::default());
        // The same coordinator and old source, promoted again later (after a promote
        // back): a new call, not the first one's remembered answer.
        let first = switch_key(me, &s, &promote(2, 7), false);
        let again = switch_key(me, &s, &promote(2, 7), false);
        let later = switch_key(me, &s, &promote(2, 12), false);
        assert_eq!(first, again, "a retried step repeats the call");
        assert_ne!(first, later, "a later request is a new call");
        // An eject of the same request revision is another call too.
        assert_ne!(first, switch_key(me, &s, &promote(2, 7), true));
    }
}
