//! `evolve`: applies one event to the state. Total: an event is a fact, validated by
//! `decide` when it was made, so nothing here can fail or refuse.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::{FaultInfo, InstanceCreated, InstanceEvent};
use super::state::{Fault, Instance};
use super::status::{ComputeStatus, ServiceStatus, Task};

/// Applies one event.
pub fn evolve(mut s: Instance, event: &InstanceEvent) -> Instance {
    evolve_in_place(&mut s, event);
    s
}

/// [`evolve`] on a state the caller keeps (a read model's record): the same fold,
/// without moving the whole state in and out per event.
///
/// Routes each event to the function for its family; the match stays exhaustive, so a
/// new event type does not compile until it is routed.
pub fn evolve_in_place(s: &mut Instance, event: &InstanceEvent) {
    s.version += 1;
    let task_before = s.task;
    route(s, event);
    if s.status_reset {
        super::actions::end_of_reset(s, task_before, event);
    }
}

fn route(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        InstanceCreated(c) => *s = created(s.version, c),
        InstanceRenamed { name, at } => {
            s.name = name.clone();
            s.updated = *at;
        }
        ConfigurationAttached { .. }
        | ConfigurationRevisionApplied { .. }
        | ConfigurationDetached { .. } => configuration_changed(s, event),
        DatastoreVersionUpgradeRequested { .. }
        | DatastoreVersionUpgraded { .. }
        | DatastoreVersionUpgradeFailed { .. } => upgrade_progressed(s, event),
        ReplicaDetachRequested { .. } | ReplicaDetached { .. } | ReplicaDetachFailed { .. } => {
            replica_detach_progressed(s, event)
        }
        AccessUpdateRequested { .. } | AccessUpdated { .. } | AccessUpdateFailed { .. } => {
            access_update_progressed(s, event)
        }
        InstanceDeletionRequested { .. } | InstanceDeleted { .. } => deletion_progressed(s, event),
        VolumeCreated { .. }
        | ServerCreated { .. }
        | ResourcesReleased { .. }
        | GuestPrepared { .. }
        | ServerDeleted { .. }
        | VolumeDeleted { .. } => resources_changed(s, event),
        VolumeUsageReported { .. }
        | GuestConfigurationApplied { .. }
        | ComputeStatusChanged { .. }
        | GuestStatusReported { .. }
        | GuestFailed { .. }
        | GuestConfigurationRefused { .. }
        | AddressesAssigned { .. } => live_status_reported(s, event),
        ProvisioningCompleted { .. } | ProvisioningFailed { .. } => provisioning_ended(s, event),
        InstanceSecretsLost { at, .. } => {
            s.secrets_lost = true;
            s.updated = *at;
        }
        InstanceResourcesLost {
            server_id,
            volume_id,
            fault,
            at,
        } => resources_lost(s, server_id.as_deref(), volume_id.as_deref(), fault, *at),
        ReplicaSourcePromotionRequested { .. }
        | ReplicaSourcePromoted { .. }
        | ReplicaSourcePromotionFailed { .. }
        | ReplicaSourceEjectionRequested { .. }
        | ReplicaSourceEjected { .. }
        | ReplicaSourceEjectionFailed { .. } => replica_switch_progressed(s, event),
        // instance actions
        InstanceRestartRequested { .. }
        | InstanceRestarted { .. }
        | InstanceRestartFailed { .. }
        | FlavorResizeRequested { .. }
        | FlavorResized { .. }
        | FlavorResizeFailed { .. }
        | VolumeResizeRequested { .. }
        | VolumeResized { .. }
        | VolumeResizeFailed { .. }
        | InstanceStatusReset { .. } => super::actions::action_progressed(s, event),
        // ---- databases, users and root (ADR 0010) ----
        DatabasesCreated { .. }
        | DatabaseDeleted { .. }
        | UsersCreated { .. }
        | UserDeleted { .. }
        | UserAttributesUpdated { .. }
        | UserPasswordsChanged { .. }
        | UserAccessGranted { .. }
        | UserAccessRevoked { .. }
        | RootEnabled { .. }
        | RootDisabled { .. } => super::guestdb::record_change(s, event),
        GuestChangeApplied { seq, .. } => super::guestdb::record_outcome(s, *seq, None, event),
        GuestChangeFailed { seq, fault, .. } => {
            super::guestdb::record_outcome(s, *seq, Some(fault), event)
        }
    }
}

// Each function below is called by `evolve_in_place` with events of its own family only;
// the catch-all arm that ends each match is never taken.

/// A configuration group attached, detached, or a new revision of it adopted.
fn configuration_changed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        ConfigurationAttached {
            configuration_id,
            restart_required,
            revision,
            at,
        } => {
            s.configuration_id = Some(*configuration_id);
            s.configuration_revision = *revision;
            s.configuration_changed_at = s.version;
            if *restart_required {
                s.task = Task::RestartRequired;
            }
            s.updated = *at;
        }
        ConfigurationRevisionApplied {
            revision,
            restart_required,
            at,
            ..
        } => {
            s.configuration_revision = *revision;
            s.configuration_changed_at = s.version;
            if *restart_required && s.task == Task::None {
                s.task = Task::RestartRequired;
            }
            s.updated = *at;
        }
        ConfigurationDetached {
            restart_required,
            at,
            ..
        } => {
            s.configuration_id = None;
            s.configuration_revision = 0;
            s.configuration_changed_at = s.version;
            if *restart_required {
                s.task = Task::RestartRequired;
            }
            s.updated = *at;
        }
        _ => {}
    }
}

/// A datastore version upgrade requested, done or failed.
fn upgrade_progressed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        DatastoreVersionUpgradeRequested { to, at, .. } => {
            s.datastore = Some(to.clone());
            s.upgrade_requested = Some(Box::new((*at, s.version)));
            s.task = Task::Upgrading;
            s.service = ServiceStatus::Upgrading;
            s.service_updated = *at;
            s.updated = *at;
        }
        DatastoreVersionUpgraded { at } => {
            s.task = Task::None;
            s.service = ServiceStatus::Healthy;
            s.service_updated = *at;
            s.updated = *at;
        }
        DatastoreVersionUpgradeFailed { fault, at } => {
            s.task = Task::BuildingErrorServer;
            s.fault = Some(Fault::from_info(fault, *at));
            s.updated = *at;
        }
        _ => {}
    }
}

/// A replica's detach from its primary requested, done or failed.
fn replica_detach_progressed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        ReplicaDetachRequested { at } => {
            s.task = Task::Detaching;
            s.updated = *at;
        }
        ReplicaDetached { at, .. } => {
            s.replica_of = None;
            s.task = Task::None;
            s.updated = *at;
        }
        ReplicaDetachFailed { fault, at } => {
            s.task = Task::None;
            s.fault = Some(Fault::from_info(fault, *at));
            s.updated = *at;
        }
        _ => {}
    }
}

/// An access update requested, done or failed.
fn access_update_progressed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        AccessUpdateRequested { access, at } => {
            s.pending_access = Some(access.clone());
            s.task = Task::Updating;
            s.updated = *at;
        }
        AccessUpdated { access, at } => {
            s.access = Some(serde_json::json!({
                "is_public": access.is_public,
                "allowed_cidrs": access.allowed_cidrs,
            }));
            s.pending_access = None;
            s.task = Task::None;
            s.updated = *at;
        }
        AccessUpdateFailed { fault, at } => {
            s.pending_access = None;
            s.task = Task::UpdatingErrorAccess;
            s.fault = Some(Fault::from_info(fault, *at));
            s.updated = *at;
        }
        _ => {}
    }
}

/// The instance's deletion requested or done.
fn deletion_progressed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        InstanceDeletionRequested { at } => {
            s.task = Task::Deleting;
            s.configuration_id = None;
            s.configuration_revision = 0;
            s.updated = *at;
        }
        InstanceDeleted { at } => {
            s.deleted = true;
            s.deleted_at = Some(*at);
            s.task = Task::None;
            s.datastore = None;
            s.configuration_id = None;
            s.replica_of = None;
            s.compute = None;
            s.service = ServiceStatus::Deleted;
            s.service_updated = *at;
            s.addresses.clear();
            s.updated = *at;
        }
        _ => {}
    }
}

/// The saga created, prepared, deleted or released a cloud resource.
fn resources_changed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        VolumeCreated {
            volume_id,
            size,
            volume_type,
            at,
        } => {
            s.volume_id = Some(volume_id.clone());
            s.volume = Some(super::event::VolumeSpec {
                size: *size,
                volume_type: volume_type.clone(),
            });
            s.updated = *at;
        }
        ServerCreated { server_id, at } => {
            s.server_id = Some(server_id.clone());
            s.compute = Some(ComputeStatus::Build);
            s.updated = *at;
        }
        ResourcesReleased { at } => {
            s.resources_released = true;
            s.updated = *at;
        }
        GuestPrepared { at } => {
            s.guest_prepared = true;
            s.updated = *at;
        }
        ServerDeleted { server_id, at } => {
            if s.server_id.as_ref() == Some(server_id) {
                s.server_id = None;
                s.compute = None;
                s.addresses.clear();
            }
            s.updated = *at;
        }
        VolumeDeleted { volume_id, at } => {
            if s.volume_id.as_ref() == Some(volume_id) {
                s.volume_id = None;
                s.volume_usage = None;
            }
            s.updated = *at;
        }
        _ => {}
    }
}

/// Live data from the cloud and the guest: usage, statuses, addresses, the applied
/// configuration.
fn live_status_reported(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        VolumeUsageReported { used, total, .. } => {
            // Live data (like the compute status): `updated` stays.
            s.volume_usage = Some((*used, *total));
        }
        GuestConfigurationApplied {
            configuration_id,
            revision,
            in_force,
            at,
        } => {
            s.guest_configuration = Some((*configuration_id, *revision));
            // The restart the configuration needed has happened: the instance is idle
            // again (only when what runs is what is attached: a newer change may wait).
            let current = (s.configuration_id, s.configuration_revision);
            if *in_force
                && s.task == Task::RestartRequired
                && current == (*configuration_id, *revision)
            {
                s.task = Task::None;
                s.updated = *at;
            }
        }
        ComputeStatusChanged { status, .. } => {
            // The compute status is live data upstream (not a record change): `updated`
            // stays.
            s.compute = Some(*status);
        }
        GuestStatusReported { status, at } => {
            // Heartbeats are ignored while a restart is required (lifecycle §2.2).
            if s.service != ServiceStatus::RestartRequired {
                s.service = *status;
            }
            s.service_updated = *at;
        }
        GuestFailed { fault, at } => {
            s.compute = Some(ComputeStatus::Error);
            s.service = ServiceStatus::Failed;
            s.service_updated = *at;
            s.fault = Some(Fault::from_info(fault, *at));
            s.updated = *at;
        }
        GuestConfigurationRefused {
            configuration_id,
            revision,
            fault,
            at,
        } => {
            s.refused_configuration = Some((*configuration_id, *revision));
            s.fault = Some(Fault::from_info(fault, *at));
            s.updated = *at;
            // The server runs what it ran: no restart is pending for a refused change.
            if s.task == Task::RestartRequired {
                s.task = Task::None;
            }
        }
        AddressesAssigned { addresses, .. } => {
            s.addresses = addresses.clone();
        }
        _ => {}
    }
}

/// The build finished or failed.
fn provisioning_ended(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        ProvisioningCompleted { at } => {
            if s.task == Task::Building {
                s.task = Task::None;
            }
            s.updated = *at;
        }
        ProvisioningFailed { task, fault, at } => {
            s.task = *task;
            s.build_failed = true;
            // Lifecycle §7.1 step 7: a server in error, a guest that failed or a
            // timeout leave the guest status FAILED_TIMEOUT_GUESTAGENT.
            if *task == Task::BuildingErrorTimeoutGa {
                s.service = ServiceStatus::FailedTimeoutGuestagent;
            }
            s.fault = Some(Fault::from_info(fault, *at));
            s.updated = *at;
        }
        _ => {}
    }
}

/// The cloud no longer has the server and/or volume: stop claiming them, and put the
/// instance in ERROR with the fault (a deletion in progress just goes on; a build in
/// progress has failed, so what is left of it is released).
fn resources_lost(
    s: &mut Instance,
    server_id: Option<&str>,
    volume_id: Option<&str>,
    fault: &super::event::FaultInfo,
    at: chrono::DateTime<chrono::Utc>,
) {
    if server_id.is_some() && s.server_id.as_deref() == server_id {
        s.server_id = None;
        s.compute = None;
        s.addresses.clear();
        // No server, no database running on it.
        s.service = ServiceStatus::Shutdown;
        s.service_updated = at;
    }
    if volume_id.is_some() && s.volume_id.as_deref() == volume_id {
        s.volume_id = None;
        s.volume_usage = None;
    }
    match s.task {
        Task::Deleting => {}
        Task::Updating => {
            // The access change cannot reach a server that is gone.
            s.pending_access = None;
            s.task = Task::BuildingErrorServer;
        }
        Task::Building => {
            s.build_failed = true;
            s.task = Task::BuildingErrorServer;
        }
        _ => s.task = Task::BuildingErrorServer,
    }
    s.fault = Some(Fault::from_info(fault, at));
    s.updated = at;
}

/// The state an `InstanceCreated` event starts.
fn created(version: u64, c: &InstanceCreated) -> Instance {
    Instance {
        id: Some(c.instance_id),
        project_id: c.project_id.clone(),
        user_id: c.user_id.clone(),
        name: c.name.clone(),
        flavor: c.flavor.clone(),
        volume: c.volume.clone(),
        datastore: Some(c.datastore.clone()),
        task: Task::Building,
        compute: None,
        service: ServiceStatus::New,
        service_updated: c.at,
        created: c.at,
        updated: c.at,
        configuration_id: c.configuration_id,
        configuration_revision: c.configuration_revision,
        replica_of: c.replica_of,
        access: c.access.clone(),
        region: c.region.clone(),
        locality: c.locality.clone(),
        availability_zone: c.availability_zone.clone(),
        nics: c.nics.clone(),
        databases: c.databases.clone(),
        users: c
            .users
            .iter()
            .map(|u| super::state::GuestUser {
                name: u.name.clone(),
                host: u.host.clone(),
                databases: u.databases.clone(),
            })
            .collect(),
        root_enabled: c.root_password.is_some(),
        root_enabled_history: c
            .root_password
            .as_ref()
            .map(|_| Box::new((c.at, c.user_id.clone()))),
        modules: c.modules.clone(),
        restore_backup_id: c.restore_backup_id,
        has_sealed_secrets: !c.users.is_empty() || c.root_password.is_some(),
        version,
        configuration_changed_at: version,
        ..Instance::default()
    }
}

/// Folds a sequence of events from the empty state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a InstanceEvent>) -> Instance {
    events.into_iter().fold(Instance::default(), evolve)
}

/// A switch of the replica set's source (promote / eject) requested, done or failed:
/// the new topology (`switched`) or the error task.
fn replica_switch_progressed(s: &mut Instance, event: &InstanceEvent) {
    use InstanceEvent::*;
    match event {
        ReplicaSourcePromotionRequested { switch, at } => {
            s.task = Task::Promoting;
            s.replica_switch = Some(Box::new(switch.clone()));
            s.updated = *at;
        }
        ReplicaSourceEjectionRequested { switch, at } => {
            s.task = Task::Ejecting;
            s.replica_switch = Some(Box::new(switch.clone()));
            s.updated = *at;
        }
        ReplicaSourcePromoted {
            new_primary_id, at, ..
        } => switched(s, *new_primary_id, None, *at),
        ReplicaSourceEjected {
            new_primary_id,
            old_primary_id,
            at,
        } => switched(s, *new_primary_id, Some(*old_primary_id), *at),
        ReplicaSourcePromotionFailed { fault, at } => failed(s, Task::PromotionError, fault, *at),
        ReplicaSourceEjectionFailed { fault, at } => failed(s, Task::EjectionError, fault, *at),
        _ => {}
    }
}

/// The new topology: the new source replicates from nobody, the ejected one neither
/// (it is left out of the set), everyone else from the new source.
fn switched(s: &mut Instance, new_primary: Uuid, ejected: Option<Uuid>, at: DateTime<Utc>) {
    let me = s.id;
    s.replica_of = if me == Some(new_primary) || me == ejected {
        None
    } else {
        Some(new_primary)
    };
    s.task = Task::None;
    end_switch(s);
    s.updated = at;
}

/// The switch is over on this member: remembered as ended, so that it is not joined or
/// ended again.
fn end_switch(s: &mut Instance) {
    if let Some(switch) = s.replica_switch.take() {
        s.switch_ended = Some(Box::new(switch.id()));
    }
}

fn failed(s: &mut Instance, task: Task, fault: &FaultInfo, at: DateTime<Utc>) {
    s.task = task;
    end_switch(s);
    s.fault = Some(Fault::from_info(fault, at));
    s.updated = at;
}
