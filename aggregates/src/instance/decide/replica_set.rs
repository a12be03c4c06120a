//! Deciding the switch of a replica set's source: `promote_to_replica_source` (a replica becomes
//! the primary, the old primary and the siblings follow it) and `eject_replica_source`
//! (a failed primary is left behind, its most current replica takes over).
//!
//! Both span several instances. Each member's stream records its own events: the
//! instance the request names records the request (`decide_promote`, `decide_eject`),
//! the command path then records the same switch on every other member
//! (`JoinReplicaSetSwitch`) while it holds all their keyed locks (ADR 0006), and the
//! saga of the coordinator (the new primary for a promote, the ejected primary for an
//! eject) records the end on every member, itself last. Checks read the other members
//! through the read models ([`Catalog::instance`], [`Catalog::replica_ids`]).
//!
//! Pure, like the rest of the aggregate: no I/O, no clock. Its events are applied by
//! `evolve` (`replica_switch_progressed`).

use uuid::Uuid;

use super::{can_perform_action, DecideCtx};
use crate::catalog::Catalog;
use crate::instance::command::InstanceCommand;
use crate::instance::error::DomainError;
use crate::instance::event::{InstanceEvent, ReplicaSetSwitch, SwitchId};
use crate::instance::state::Instance;
use crate::instance::status::{ComputeStatus, ServiceStatus, Task};

/// `promote_to_replica_source` on replica `ctx.instance_id` (upstream's order: the
/// replica can act, it is a replica; then, stricter than upstream, which overwrites the
/// task of every member, the source and each sibling can act too).
pub(crate) fn decide_promote(
    state: &Instance,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let id = action_target(state, ctx)?;
    can_perform_action(state, id, ctx.catalog.backup_running(id))?;
    let Some(old_primary_id) = state.replica_of else {
        return Err(DomainError::NotAReplica(id));
    };
    let primary = live_member(old_primary_id, ctx.catalog)?;
    can_perform_action(
        &primary,
        old_primary_id,
        ctx.catalog.backup_running(old_primary_id),
    )?;
    let replica_ids = sorted(ctx.catalog.replica_ids(old_primary_id), Some(id));
    for sibling in replica_ids.iter().filter(|r| **r != id) {
        let s = live_member(*sibling, ctx.catalog)?;
        can_perform_action(&s, *sibling, ctx.catalog.backup_running(*sibling))?;
    }
    Ok(vec![InstanceEvent::ReplicaSourcePromotionRequested {
        switch: ReplicaSetSwitch {
            old_primary_id,
            new_primary_id: Some(id),
            replica_ids,
            requested_at: state.version,
        },
        at: ctx.now,
    }])
}

/// `eject_replica_source` on source `ctx.instance_id`: it has replicas, it is failed
/// (`silent`: the shell saw no heartbeat within the expiry; or the log shows its guest
/// down), no workflow runs on it, and every replica can act.
pub(crate) fn decide_eject(
    state: &Instance,
    silent: bool,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let id = action_target(state, ctx)?;
    // Upstream runs the whole "can perform action" gate here, which a failed source
    // passes there only because its stored guest status is stale. troved records a
    // failed guest (compute ERROR, guest FAILED), so only the task and backup checks
    // apply: a running workflow must not be overwritten.
    if !matches!(state.task, Task::None | Task::RestartRequired) {
        return Err(DomainError::NotAvailableForAction {
            id,
            kind: "task",
            value: state.task.action().to_string(),
        });
    }
    if ctx.catalog.backup_running(id) {
        return Err(DomainError::NotAvailableForAction {
            id,
            kind: "instance",
            value: "BACKUP".into(),
        });
    }
    let replica_ids = sorted(ctx.catalog.replica_ids(id), None);
    if replica_ids.is_empty() {
        return Err(DomainError::NotAReplicaSource(id));
    }
    if !(silent || source_failed(state)) {
        return Err(DomainError::ReplicaSourceHeartbeatCurrent(id));
    }
    for replica in &replica_ids {
        let r = live_member(*replica, ctx.catalog)?;
        can_perform_action(&r, *replica, ctx.catalog.backup_running(*replica))?;
    }
    Ok(vec![InstanceEvent::ReplicaSourceEjectionRequested {
        switch: ReplicaSetSwitch {
            old_primary_id: id,
            new_primary_id: None,
            replica_ids,
            requested_at: state.version,
        },
        at: ctx.now,
    }])
}

/// Whether the log shows the guest down: the supervisor recorded it failed, stopped or
/// crashed, or the compute server in error.
fn source_failed(state: &Instance) -> bool {
    matches!(
        state.service,
        ServiceStatus::Failed | ServiceStatus::Shutdown | ServiceStatus::Crashed
    ) || state.compute == Some(ComputeStatus::Error)
}

/// The commands of a switch in progress, on one member. An end report names its switch:
/// one this member is not in (ended already, reset, or another one) decides nothing.
pub(crate) fn decide_member(
    state: &Instance,
    cmd: &InstanceCommand,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    let Some(id) = state.id.filter(|_| !state.deleted) else {
        return Err(DomainError::ResourceNotFound(ctx.instance_id.to_string()));
    };
    let at = ctx.now;
    let eject = state.task == Task::Ejecting;
    let switching = matches!(state.task, Task::Promoting | Task::Ejecting);
    // The switch in progress here, if the report is about it.
    let current = |id: &SwitchId| {
        state
            .replica_switch
            .as_deref()
            .filter(|s| switching && s.id() == *id)
    };
    match cmd {
        JoinReplicaSetSwitch { switch, eject: ej } => join(state, id, switch, *ej, at),
        CompleteReplicaSetSwitch {
            new_primary_id,
            switch,
        } => Ok(current(switch).map_or_else(Vec::new, |s| {
            let (new_primary_id, old_primary_id) = (*new_primary_id, s.old_primary_id);
            vec![if eject {
                E::ReplicaSourceEjected {
                    new_primary_id,
                    old_primary_id,
                    at,
                }
            } else {
                E::ReplicaSourcePromoted {
                    new_primary_id,
                    old_primary_id,
                    at,
                }
            }]
        })),
        FailReplicaSetSwitch { fault, switch } => Ok(current(switch).map_or_else(Vec::new, |_| {
            let fault = fault.clone();
            vec![if eject {
                E::ReplicaSourceEjectionFailed { fault, at }
            } else {
                E::ReplicaSourcePromotionFailed { fault, at }
            }]
        })),
        // Not a member's command (routed here only for the three above).
        _ => Ok(vec![]),
    }
}

/// `JoinReplicaSetSwitch`: a member records the switch once; a switch it already ended
/// (a coordinator's step retried after a crash between the members' ends and its own)
/// is not joined again, even if the member is busy or idle again meanwhile.
fn join(
    state: &Instance,
    id: Uuid,
    switch: &ReplicaSetSwitch,
    eject: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let known = switch.requested_at != 0;
    if known && state.switch_ended.as_deref() == Some(&switch.id()) {
        return Ok(vec![]); // ended already
    }
    let switching = matches!(state.task, Task::Promoting | Task::Ejecting);
    if state.replica_switch.as_deref() == Some(switch) && switching {
        return Ok(vec![]); // joined already
    }
    if !matches!(state.task, Task::None | Task::RestartRequired) {
        return Err(DomainError::NotAvailableForAction {
            id,
            kind: "task",
            value: state.task.action().to_string(),
        });
    }
    let switch = switch.clone();
    Ok(vec![if eject {
        InstanceEvent::ReplicaSourceEjectionRequested { switch, at }
    } else {
        InstanceEvent::ReplicaSourcePromotionRequested { switch, at }
    }])
}

/// `reset_status` on a member of a switch in progress: refused while the switch's
/// coordinator (read through the read models) still runs it. Its saga records the end on
/// the members it finds in the switch; a member reset meanwhile would ignore that report
/// and never learn the new topology. The coordinator's reset abandons the switch: the
/// other members may be reset then. The coordinator itself may always be reset.
pub(crate) fn check_member_reset(state: &Instance, ctx: &DecideCtx) -> Result<(), DomainError> {
    let Some(switch) = state
        .replica_switch
        .as_deref()
        .filter(|_| matches!(state.task, Task::Promoting | Task::Ejecting))
    else {
        return Ok(());
    };
    let (id, coordinator) = (state.id_or_nil(), switch.coordinator());
    if state.id == Some(coordinator) {
        return Ok(());
    }
    let runs_it = ctx.catalog.instance(coordinator).is_some_and(|c| {
        c.is_live()
            && matches!(c.task, Task::Promoting | Task::Ejecting)
            && c.replica_switch.as_deref().map(ReplicaSetSwitch::id) == Some(switch.id())
    });
    if runs_it {
        return Err(DomainError::SwitchMemberReset { id, coordinator });
    }
    Ok(())
}

/// The instance an action names: live, visible, with a compute server.
fn action_target(state: &Instance, ctx: &DecideCtx) -> Result<Uuid, DomainError> {
    match state.id {
        Some(id) if !state.deleted && ctx.caller.can_see(&state.project_id) => {
            if state.server_id.is_none() {
                return Err(DomainError::InstanceNotReady(id));
            }
            Ok(id)
        }
        _ => Err(DomainError::ResourceNotFound(ctx.instance_id.to_string())),
    }
}

/// Another member, live (the read models may lag a deletion by nothing: the command
/// path holds its lock).
fn live_member(id: Uuid, catalog: &dyn Catalog) -> Result<Instance, DomainError> {
    catalog
        .instance(id)
        .filter(Instance::is_live)
        .ok_or_else(|| DomainError::ResourceNotFound(id.to_string()))
}

/// The replica ids ascending, with `must` among them (a lagging index must not drop
/// the replica that asks to be promoted).
fn sorted(mut ids: Vec<Uuid>, must: Option<Uuid>) -> Vec<Uuid> {
    ids.extend(must);
    ids.sort();
    ids.dedup();
    ids
}
