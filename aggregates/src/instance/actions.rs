//! Instance actions (`POST /instances/{id}/action`): restart, flavor resize, volume
//! resize and the admin's reset status — their decisions, the saga's reports that end
//! them, and how their events change the state. Routed here from `decide` and `evolve`
//! so that the action family lives in one place.
//!
//! Upstream's order of checks (spec `instances-api.md`, Trove's `Instance.restart`,
//! `resize_flavor`, `resize_volume`, `reset_status`): load (404), policy (403), then the
//! "can perform action" gate (422) and the action's own refusals.

use chrono::{DateTime, Utc};

use super::command::InstanceCommand;
use super::error::DomainError;
use super::event::{FaultInfo, FlavorRef, InstanceEvent, VolumeSpec};
use super::state::{Fault, Instance};
use super::status::{ServiceStatus, Task};
use super::{can_perform_action, DecideCtx};

/// Decides a user's action on a visible instance (`id` checked by the caller).
pub(super) fn decide_action(
    state: &Instance,
    id: uuid::Uuid,
    cmd: &InstanceCommand,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    let at = ctx.now;
    match cmd {
        RestartInstance => {
            can_perform_action(state, id, ctx.catalog.backup_running(id))?;
            Ok(vec![InstanceEvent::InstanceRestartRequested { at }])
        }
        ResizeFlavor { flavor_ref } => resize_flavor(state, id, flavor_ref, ctx),
        ResizeVolume { size } => resize_volume(state, id, *size, ctx),
        ResetStatus => reset_status(state, id, ctx),
        _ => Err(DomainError::InvalidReport(format!(
            "{} is not an instance action",
            cmd.name()
        ))),
    }
}

/// Upstream `resize_flavor`: gate, not the same flavor, the flavor exists; then (ours,
/// as a create checks it) the RAM quota for the difference.
fn resize_flavor(
    state: &Instance,
    id: uuid::Uuid,
    flavor_ref: &str,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    can_perform_action(state, id, ctx.catalog.backup_running(id))?;
    if state.flavor.id == flavor_ref {
        return Err(DomainError::ResizeToSameFlavor(state.flavor.id.clone()));
    }
    let f = ctx
        .catalog
        .flavor(flavor_ref)
        .ok_or_else(|| DomainError::FlavorNotFound(flavor_ref.to_string()))?;
    let to = FlavorRef {
        id: f.id,
        ram: f.ram,
    };
    let grow = i64::from(to.ram) - i64::from(state.flavor.ram);
    check_quota(&state.project_id, "ram", grow, ctx)?;
    Ok(vec![InstanceEvent::FlavorResizeRequested {
        from: state.flavor.clone(),
        to,
        at: ctx.now,
    }])
}

/// Upstream `resize_volume`: an instance without a volume is refused first (before the
/// gate), then the gate, then "must be larger", then the maximum size and the quota.
fn resize_volume(
    state: &Instance,
    id: uuid::Uuid,
    size: u64,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let Some(current) = state.volume.as_ref().map(|v: &VolumeSpec| v.size) else {
        return Err(DomainError::NoVolume(id));
    };
    can_perform_action(state, id, ctx.catalog.backup_running(id))?;
    if size <= current {
        return Err(DomainError::VolumeMustGrow(current));
    }
    let max = ctx.catalog.max_volume_size();
    if size > max {
        return Err(DomainError::VolumeTooLarge { max, size });
    }
    check_quota(&state.project_id, "volumes", (size - current) as i64, ctx)?;
    Ok(vec![InstanceEvent::VolumeResizeRequested {
        from: current,
        to: size,
        at: ctx.now,
    }])
}

/// The project's quota of `resource` (`ram` MB or `volumes` GB) must take `delta` more.
fn check_quota(
    project: &str,
    resource: &str,
    delta: i64,
    ctx: &DecideCtx,
) -> Result<(), DomainError> {
    let q = ctx.catalog.quota(project);
    let (used, limit) = match resource {
        "ram" => (q.ram, q.ram_limit),
        _ => (q.volumes, q.volumes_limit),
    };
    if limit >= 0 && delta > 0 && used + delta > limit {
        return Err(DomainError::QuotaExceeded(vec![resource.to_string()]));
    }
    Ok(())
}

/// Upstream `reset_status`: who may is the policy's call (`instance:reset_status`,
/// `rule:admin` by default, or `instance:force_delete`, checked by the HTTP shell); task
/// NONE and service UNKNOWN whatever the instance was doing. Already reset (task NONE,
/// service UNKNOWN): nothing to record, a no-op 202. Ours: refused while DELETING — a
/// reset would bring back a live instance whose quota the DELETE already released, and
/// the teardown it would abandon is retried by the saga until it ends.
fn reset_status(
    state: &Instance,
    id: uuid::Uuid,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    if state.task == Task::Deleting {
        return Err(DomainError::ResetWhileDeleting(id));
    }
    super::decide::replica_set::check_member_reset(state, ctx)?;
    if state.task == Task::None && state.service == ServiceStatus::Unknown {
        return Ok(vec![]);
    }
    Ok(vec![InstanceEvent::InstanceStatusReset {
        task: state.task,
        at: ctx.now,
    }])
}

/// The saga's reports that end an action. Idempotent: a report about an action that
/// no longer runs (done, failed, or reset meanwhile) decides nothing.
pub(super) fn report_action_end(
    state: &Instance,
    cmd: &InstanceCommand,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    let resizing = state.task == Task::Resizing;
    let ev = match cmd {
        CompleteRestart if state.task == Task::Rebooting => E::InstanceRestarted { at },
        FailRestart { fault } if state.task == Task::Rebooting => E::InstanceRestartFailed {
            fault: fault.clone(),
            at,
        },
        CompleteResize if resizing => match (&state.pending_flavor, state.pending_volume_size) {
            (Some(flavor), _) => E::FlavorResized {
                flavor: (**flavor).clone(),
                at,
            },
            (None, Some(size)) => E::VolumeResized {
                size: size.get(),
                at,
            },
            (None, None) => return Ok(vec![]),
        },
        FailResize { fault } if resizing => match state.pending_flavor {
            Some(_) => E::FlavorResizeFailed {
                fault: fault.clone(),
                at,
            },
            None => E::VolumeResizeFailed {
                fault: fault.clone(),
                at,
            },
        },
        _ => return Ok(vec![]),
    };
    Ok(vec![ev])
}

/// How an action's event changes the state.
pub(super) fn action_progressed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        InstanceRestartRequested { at } => {
            s.action_requested_at = s.version;
            s.action_requested_on = Some(*at);
            s.task = Task::Rebooting;
            s.service = ServiceStatus::Restarting;
            s.service_updated = *at;
            s.updated = *at;
        }
        InstanceRestarted { at } => {
            s.task = Task::None;
            s.service = ServiceStatus::Healthy;
            s.service_updated = *at;
            s.updated = *at;
        }
        FlavorResizeRequested { to, at, .. } => {
            s.action_requested_at = s.version;
            s.action_requested_on = Some(*at);
            s.task = Task::Resizing;
            s.pending_flavor = Some(Box::new(to.clone()));
            s.updated = *at;
        }
        FlavorResized { flavor, at } => {
            s.flavor = flavor.clone();
            s.pending_flavor = None;
            s.task = Task::None;
            s.updated = *at;
        }
        VolumeResizeRequested { to, at, .. } => {
            s.action_requested_at = s.version;
            s.action_requested_on = Some(*at);
            s.task = Task::Resizing;
            s.pending_volume_size = std::num::NonZeroU64::new(*to);
            s.updated = *at;
        }
        VolumeResized { size, at } => {
            if let Some(v) = s.volume.as_mut() {
                v.size = *size;
            }
            s.pending_volume_size = None;
            s.task = Task::None;
            s.updated = *at;
        }
        InstanceRestartFailed { fault, at }
        | FlavorResizeFailed { fault, at }
        | VolumeResizeFailed { fault, at } => action_failed(s, fault, *at),
        InstanceStatusReset { at, .. } => status_reset(s, *at),
        _ => {}
    }
}

/// A failed action: rolled back, the instance idle again with the fault (upstream puts
/// a failed restart or resize back to task NONE).
fn action_failed(s: &mut Instance, fault: &FaultInfo, at: DateTime<Utc>) {
    s.task = Task::None;
    s.pending_flavor = None;
    s.pending_volume_size = None;
    // The service status stays what it was (RESTARTING after a failed restart) until
    // the guest is asked again (the saga's next status poll, or a heartbeat).
    s.fault = Some(Fault::from_info(fault, at));
    s.updated = at;
}

/// What ends the effect of a `reset_status` (`Instance::status_reset`): the guest
/// reported healthy again on a running server (nothing left to ask it), or a new
/// workflow began (its own steps take over; the next reset sets it again).
pub(super) fn end_of_reset(s: &mut Instance, task_before: Task, event: &InstanceEvent) {
    let healthy = matches!(
        event,
        InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Healthy,
            ..
        }
    ) && s.compute != Some(super::status::ComputeStatus::Build);
    let idle = |t: Task| matches!(t, Task::None | Task::RestartRequired);
    let workflow_began = idle(task_before) && !idle(s.task);
    if healthy || workflow_began {
        s.status_reset = false;
    }
}

/// `reset_status`: every workflow in progress is abandoned, so what it was changing
/// is dropped (a resize's new size and flavor, an access update's new access).
fn status_reset(s: &mut Instance, at: DateTime<Utc>) {
    s.task = Task::None;
    s.service = ServiceStatus::Unknown;
    s.service_updated = at;
    s.pending_flavor = None;
    s.pending_volume_size = None;
    s.pending_access = None;
    // A promote or eject in progress is abandoned too. Only its coordinator's reset is
    // accepted while the coordinator runs it (`replica_set::check_member_reset`); the
    // other members keep theirs until an admin resets them as well.
    s.replica_switch = None;
    s.status_reset = true;
    s.reset_on = Some(Box::new(at));
    s.updated = at;
}
