//! `decide`: checks a command against the state and the catalog, and answers with the
//! events that record it, or with the refusal Trove would give. Pure: time, identity and
//! lookups come in through [`DecideCtx`].
//!
//! The order of the checks follows upstream (spec `instances-api.md` §8.3, §11, §12) so
//! that the first failure a client sees is the one upstream would report.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{CreateInstance, DatastoreRequest, InstanceCommand};
use super::error::DomainError;
use super::event::{
    DatastoreRef, FaultInfo, FlavorRef, InstanceCreated, InstanceEvent, UserSpec, VolumeSpec,
};
use super::evolve::evolve;
use super::state::Instance;
use super::status::{ComputeStatus, ServiceStatus, Task, Viewer};
use crate::catalog::{Catalog, Datastore, DatastoreVersion};

pub(super) mod replica_set;

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: String,
    pub project_id: String,
    pub roles: Vec<String>,
}

impl Caller {
    /// Upstream's `context_is_admin = role:admin`.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }

    /// Whether this caller may see a resource of `project_id` (owner or admin).
    pub fn can_see(&self, project_id: &str) -> bool {
        self.is_admin() || self.project_id == project_id
    }
}

/// What `decide` may not fetch itself.
pub struct DecideCtx<'a> {
    /// The clock reading for this command.
    pub now: DateTime<Utc>,
    /// The id of the instance the command addresses (the stream's id).
    pub instance_id: Uuid,
    pub caller: &'a Caller,
    pub catalog: &'a dyn Catalog,
}

/// Decides one command.
pub fn decide(
    state: &Instance,
    cmd: &InstanceCommand,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    let at = ctx.now;
    match cmd {
        CreateInstance(c) => create(state, c, ctx).map(|e| vec![e]),
        RenameInstance { name } => {
            updatable(state, ctx)?;
            Ok(vec![InstanceEvent::InstanceRenamed {
                name: name.clone(),
                at,
            }])
        }
        AttachConfiguration { configuration_id } => attach(state, configuration_id, ctx),
        DetachConfiguration => detach(state, ctx),
        UpgradeDatastoreVersion { version } => upgrade(state, version, ctx),
        DetachReplica => {
            let id = updatable(state, ctx)?;
            can_perform_action(state, id, ctx.catalog.backup_running(id))?;
            if state.replica_of.is_none() {
                return Err(DomainError::NotAReplica(id));
            }
            Ok(vec![InstanceEvent::ReplicaDetachRequested { at }])
        }
        UpdateAccess { access } => {
            let id = updatable(state, ctx)?;
            // Upstream has no gate here and would overwrite a running task; we require
            // the instance to be able to act (spec §11.7 recommendation).
            can_perform_action(state, id, ctx.catalog.backup_running(id))?;
            Ok(vec![InstanceEvent::AccessUpdateRequested {
                access: access.clone(),
                at,
            }])
        }
        DeleteInstance => delete(state, ctx),
        PromoteToReplicaSource => replica_set::decide_promote(state, ctx),
        EjectReplicaSource { silent } => replica_set::decide_eject(state, *silent, ctx),
        JoinReplicaSetSwitch { .. }
        | CompleteReplicaSetSwitch { .. }
        | FailReplicaSetSwitch { .. } => replica_set::decide_member(state, cmd, ctx),
        // instance actions
        RestartInstance | ResizeFlavor { .. } | ResizeVolume { .. } | ResetStatus => {
            let id = visible(state, ctx)?;
            super::actions::decide_action(state, id, cmd, ctx)
        }
        c if c.is_guest_admin() => {
            let gctx = super::guestdb::GuestCtx {
                now: ctx.now,
                instance_id: ctx.instance_id,
                sees_instance: ctx.caller.can_see(&state.project_id),
                user_id: ctx.caller.user_id.clone(),
            };
            super::guestdb::decide_guest_admin(state, c, &gctx)
        }
        _ => report(state, cmd, ctx),
    }
}

/// Decides several commands in order against the evolving state, all or nothing: used
/// for a PUT that renames and does one more thing, so a refusal of the second leaves the
/// name unchanged too (upstream would keep the rename; we never half-apply a request).
pub fn decide_all(
    state: &Instance,
    cmds: &[InstanceCommand],
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let mut s = state.clone();
    let mut out = Vec::new();
    for cmd in cmds {
        let events = decide(&s, cmd, ctx)?;
        for e in &events {
            s = evolve(s, e);
        }
        out.extend(events);
    }
    Ok(out)
}

/// The instance exists, is live and the caller may see it; returns its id.
fn visible(state: &Instance, ctx: &DecideCtx) -> Result<Uuid, DomainError> {
    match state.id {
        Some(id) if !state.deleted && ctx.caller.can_see(&state.project_id) => Ok(id),
        _ => Err(DomainError::ResourceNotFound(ctx.instance_id.to_string())),
    }
}

/// PUT/PATCH load the instance together with its compute server (lifecycle §5.4).
fn updatable(state: &Instance, ctx: &DecideCtx) -> Result<Uuid, DomainError> {
    let id = visible(state, ctx)?;
    if state.server_id.is_none() {
        return Err(DomainError::InstanceNotReady(id));
    }
    Ok(id)
}

/// The "can perform action" gate (lifecycle §5.1); `backup_running`: a backup of the
/// instance runs (its status is `BACKUP`), upstream's last check.
pub fn can_perform_action(
    state: &Instance,
    id: Uuid,
    backup_running: bool,
) -> Result<(), DomainError> {
    let inputs = state.status_inputs();
    let compute = inputs.compute_status(Viewer::Command);
    let refuse = |kind, value: &str| DomainError::NotAvailableForAction {
        id,
        kind,
        value: value.to_string(),
    };
    if !matches!(compute, "ACTIVE" | "HEALTHY") {
        return Err(refuse("instance", compute));
    }
    if !matches!(state.task, Task::None | Task::RestartRequired) {
        return Err(refuse("task", state.task.action()));
    }
    if !state.service.action_allowed() {
        return Err(refuse("instance", inputs.status(Viewer::Command, false)));
    }
    if backup_running {
        return Err(refuse("instance", "BACKUP"));
    }
    Ok(())
}

/// The "can assign configuration" gate (lifecycle §5.2).
fn can_assign_configuration(state: &Instance) -> Result<(), DomainError> {
    let compute = state.status_inputs().compute_status(Viewer::Command);
    if compute != "ACTIVE" {
        return Err(DomainError::ConfigurationInvalidState(compute.into()));
    }
    if state.task != Task::None {
        return Err(DomainError::ConfigurationInvalidState(
            state.task.action().into(),
        ));
    }
    Ok(())
}

fn attach(
    state: &Instance,
    raw_id: &str,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let id = updatable(state, ctx)?;
    if let Some(current) = state.configuration_id {
        return Err(DomainError::ConfigurationAlreadyAttached { id, current });
    }
    can_assign_configuration(state)?;
    let not_found = || DomainError::AttachConfigurationNotFound(raw_id.to_string());
    let group = Uuid::parse_str(raw_id)
        .ok()
        .and_then(|gid| ctx.catalog.configuration_group(gid))
        .filter(|g| ctx.caller.can_see(&g.project_id))
        .ok_or_else(not_found)?;
    let instance_dsv = state
        .datastore
        .as_ref()
        .map(|d| d.version_id)
        .unwrap_or_default();
    if group.datastore_version_id != instance_dsv {
        return Err(DomainError::ConfigurationDatastoreMismatch {
            group: group.datastore_version_id,
            instance: instance_dsv,
        });
    }
    Ok(vec![InstanceEvent::ConfigurationAttached {
        configuration_id: group.id,
        restart_required: group.restart_required,
        revision: group.revision,
        at: ctx.now,
    }])
}

fn detach(state: &Instance, ctx: &DecideCtx) -> Result<Vec<InstanceEvent>, DomainError> {
    updatable(state, ctx)?;
    let Some(current) = state.configuration_id else {
        return Ok(vec![]); // nothing attached: a no-op 202, as upstream
    };
    can_assign_configuration(state)?;
    // A group that vanished from the catalog is treated as needing a restart: the safe
    // side, since we no longer know which keys it set.
    let restart_required = ctx
        .catalog
        .configuration_group(current)
        .is_none_or(|g| g.restart_required);
    Ok(vec![InstanceEvent::ConfigurationDetached {
        configuration_id: current,
        restart_required,
        at: ctx.now,
    }])
}

fn upgrade(
    state: &Instance,
    version: &str,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let id = updatable(state, ctx)?;
    let Some(from) = state.datastore.clone() else {
        return Err(DomainError::ResourceNotFound(id.to_string()));
    };
    let datastore = ctx
        .catalog
        .datastore(&from.datastore_id.to_string())
        .ok_or_else(|| DomainError::DatastoreNotFound(from.datastore_name.clone()))?;
    let target = find_version(&datastore, version, None)?;
    // Upstream accepts an inactive target; we refuse it as create does, before anything
    // is touched: an inactive version is one that cannot run (with `--provider local`,
    // one whose server binaries are missing), so the upgrade could only fail.
    if !target.active {
        return Err(DomainError::DatastoreVersionInactive(target.name.clone()));
    }
    // Upstream has no gate and would overwrite a running task (spec §11.6 recommends the
    // "can perform action" gate; we apply it).
    can_perform_action(state, id, ctx.catalog.backup_running(id))?;
    Ok(vec![InstanceEvent::DatastoreVersionUpgradeRequested {
        from,
        to: datastore_ref(&datastore, target),
        at: ctx.now,
    }])
}

fn delete(state: &Instance, ctx: &DecideCtx) -> Result<Vec<InstanceEvent>, DomainError> {
    let id = visible(state, ctx)?;
    if state.task == Task::Deleting {
        // A repeated DELETE is a no-op 202 (upstream would release the quota twice).
        return Ok(vec![]);
    }
    // After an admin's reset_status the instance may go even if its server still
    // reads BUILD: that is how an operator removes a stuck build (upstream's
    // `delete --force` = reset_status, then DELETE).
    if state.command_status() == "BUILD" && !state.status_reset {
        return Err(DomainError::InstanceBuilding(id));
    }
    // Stricter than upstream, as for BUILD: a member leaving during a promote or eject
    // would leave the set half switched (the coordinator's step would end without it).
    // An admin's reset_status is the way out of a stuck switch.
    if matches!(state.task, Task::Promoting | Task::Ejecting) {
        return Err(DomainError::NotAvailableForAction {
            id,
            kind: "task",
            value: state.task.action().to_string(),
        });
    }
    if ctx.catalog.live_replicas(id) > 0 {
        return Err(DomainError::ReplicaSourceDeleteForbidden);
    }
    Ok(vec![InstanceEvent::InstanceDeletionRequested {
        at: ctx.now,
    }])
}

// ---- create ------------------------------------------------------------------------------

/// Decides a create: upstream's checks in upstream's order (spec §8.3; the step numbers
/// are its), each in a function of its own, then the event that records the instance.
fn create(
    state: &Instance,
    c: &CreateInstance,
    ctx: &DecideCtx,
) -> Result<InstanceEvent, DomainError> {
    if state.exists() {
        return Err(DomainError::InstanceAlreadyExists(c.instance_id));
    }
    check_replica_request(c)?;
    let primary = find_primary(c, ctx)?;
    let region = served_region(c, ctx)?;
    // Step 4: datastore and version.
    let (datastore, version) = match &primary {
        Some((_, p)) => primary_datastore(p, ctx.catalog)?,
        None => resolve_datastore(c.datastore.as_ref(), ctx.catalog)?,
    };
    // Step 6: databases and users.
    check_databases_and_users(c, primary.is_some())?;
    check_reserved_accounts(c, &version.manager)?;
    check_nics(c, primary.is_some())?;
    check_locality(c)?;
    // Step 10: flavor.
    let flavor = match &primary {
        Some((_, p)) => p.flavor.clone(),
        None => decide_flavor(c, &version, ctx.catalog)?,
    };
    // Step 11: volume.
    let volume = match &primary {
        Some((_, p)) => p.volume.clone(),
        None => decide_volume(c, &version, ctx.catalog)?,
    };
    // Step 12: backup to restore.
    if let Some(bid) = c.restore_backup_id {
        let available = restore_target_size(volume.as_ref(), &flavor, ctx.catalog);
        check_backup(bid, (&datastore, &version), available, ctx)?;
    }
    // Step 13: replication.
    if let Some((pid, p)) = &primary {
        if !version.replication {
            return Err(DomainError::ReplicationNotSupported(datastore.name.clone()));
        }
        can_perform_action(p, *pid, ctx.catalog.backup_running(*pid))?;
    }
    // Step 14: quota.
    check_quota(
        &ctx.caller.project_id,
        &flavor,
        volume.as_ref(),
        quota_batch(c, primary.is_some()),
        ctx.catalog,
    )?;
    let configuration = decide_configuration(c, &version, ctx)?;
    let root_password = if version.root_on_create && c.restore_backup_id.is_none() {
        c.root_password.clone()
    } else {
        None
    };
    Ok(InstanceEvent::InstanceCreated(Box::new(InstanceCreated {
        instance_id: c.instance_id,
        project_id: ctx.caller.project_id.clone(),
        user_id: ctx.caller.user_id.clone(),
        name: c.name.clone(),
        flavor,
        volume,
        datastore: datastore_ref(&datastore, &version),
        databases: c.databases.clone(),
        users: user_specs(c),
        nics: c.nics.clone(),
        availability_zone: c.availability_zone.clone(),
        region,
        modules: c.modules.clone(),
        restore_backup_id: c.restore_backup_id,
        replica_of: c.replica_of,
        locality: c.locality.clone(),
        configuration_id: configuration.map(|(id, _)| id),
        configuration_revision: configuration.map_or(0, |(_, rev)| rev),
        access: c.access.clone(),
        root_password,
        at: ctx.now,
    })))
}

/// Create step 2: what a replica may not specify.
fn check_replica_request(c: &CreateInstance) -> Result<(), DomainError> {
    if c.replica_of.is_some() {
        if c.flavor_ref.is_some() {
            return Err(DomainError::ReplicaWithFlavor);
        }
        if c.datastore
            .as_ref()
            .is_some_and(|d| *d != DatastoreRequest::default())
        {
            return Err(DomainError::ReplicaWithDatastore);
        }
        if c.volume.is_some() {
            return Err(DomainError::ReplicaWithVolume);
        }
        if c.locality.is_some() {
            return Err(DomainError::ReplicaWithLocality);
        }
    } else if let Some(n) = c.replica_count.filter(|n| *n > 1) {
        return Err(DomainError::ReplicaCountWithoutReplicaOf(n));
    }
    Ok(())
}

/// Create step 3: the primary a replica copies (live, visible, not a replica itself).
fn find_primary(
    c: &CreateInstance,
    ctx: &DecideCtx,
) -> Result<Option<(Uuid, Instance)>, DomainError> {
    let Some(pid) = c.replica_of else {
        return Ok(None);
    };
    let p = ctx
        .catalog
        .instance(pid)
        .filter(|p| p.is_live() && ctx.caller.can_see(&p.project_id))
        .ok_or_else(|| DomainError::ResourceNotFound(pid.to_string()))?;
    if p.replica_of.is_some() {
        return Err(DomainError::ReplicaOfReplica(pid));
    }
    Ok(Some((pid, p)))
}

/// Create step 3, continued: the region, which must be the one this service serves.
fn served_region(c: &CreateInstance, ctx: &DecideCtx) -> Result<String, DomainError> {
    match &c.region_name {
        Some(r) if r != ctx.catalog.region() => Err(DomainError::RegionNotServed {
            requested: r.clone(),
            served: ctx.catalog.region().to_string(),
        }),
        _ => Ok(ctx.catalog.region().to_string()),
    }
}

/// Create step 4 for a replica: the primary's datastore and version.
fn primary_datastore(
    primary: &Instance,
    catalog: &dyn Catalog,
) -> Result<(Datastore, DatastoreVersion), DomainError> {
    let pref = primary.datastore.clone().unwrap_or_default();
    let ds = catalog
        .datastore(&pref.datastore_id.to_string())
        .ok_or(DomainError::DatastoreVersionIdNotFound)?;
    let v = ds
        .versions
        .iter()
        .find(|v| v.id == pref.version_id)
        .cloned()
        .ok_or(DomainError::DatastoreVersionIdNotFound)?;
    Ok((ds, v))
}

/// Create step 8: networks.
fn check_nics(c: &CreateInstance, replica: bool) -> Result<(), DomainError> {
    for nic in &c.nics {
        if replica && nic.ip_address.is_some() {
            return Err(DomainError::ReplicaNicWithIp);
        }
        if nic.network_id.is_none() && nic.subnet_id.is_none() {
            return Err(DomainError::NicWithoutNetwork);
        }
        if nic.ip_address.is_some() && nic.subnet_id.is_none() {
            return Err(DomainError::NicIpWithoutSubnet);
        }
    }
    Ok(())
}

/// Create step 9: locality.
fn check_locality(c: &CreateInstance) -> Result<(), DomainError> {
    if let Some(l) = &c.locality {
        if ![
            "affinity",
            "soft-affinity",
            "anti-affinity",
            "soft-anti-affinity",
        ]
        .contains(&l.as_str())
        {
            return Err(DomainError::InvalidLocality(l.clone()));
        }
    }
    Ok(())
}

/// Create step 10 for a non-replica: the requested flavor, which the version must allow.
fn decide_flavor(
    c: &CreateInstance,
    version: &DatastoreVersion,
    catalog: &dyn Catalog,
) -> Result<FlavorRef, DomainError> {
    // An omitted flavorRef becomes the literal "None" upstream, and fails lookup.
    let fid = c.flavor_ref.clone().unwrap_or_else(|| "None".into());
    if let Some(allowed) = &version.allowed_flavors {
        if !allowed.contains(&fid) {
            return Err(DomainError::FlavorNotSupported {
                flavor: fid,
                version_id: version.id,
            });
        }
    }
    let f = catalog
        .flavor(&fid)
        .ok_or(DomainError::FlavorNotFound(fid))?;
    Ok(FlavorRef {
        id: f.id,
        ram: f.ram,
    })
}

/// Create step 12: the size a restored backup must fit, the volume or, without volume
/// support, the flavor's root disk (upstream's `target_size`).
fn restore_target_size(
    volume: Option<&VolumeSpec>,
    flavor: &FlavorRef,
    catalog: &dyn Catalog,
) -> u64 {
    match volume {
        Some(v) => v.size,
        None => catalog.flavor(&flavor.id).map_or(0, |f| u64::from(f.disk)),
    }
}

/// Create step 14: how many instances the quota check charges. Replicas are charged like
/// any instance, and a batch of `replica_count` replicas is checked as a whole by its
/// first create (upstream charges a batch once, which lets it overshoot; the shell sends
/// each later create of the batch with the count still to come).
fn quota_batch(c: &CreateInstance, replica: bool) -> i64 {
    if replica {
        i64::from(c.replica_count.unwrap_or(1).max(1))
    } else {
        1
    }
}

/// Create step 15: the configuration group and its revision, validated before anything
/// is written (upstream writes the row first and leaves an orphan, spec §8.10).
fn decide_configuration(
    c: &CreateInstance,
    version: &DatastoreVersion,
    ctx: &DecideCtx,
) -> Result<Option<(Uuid, u64)>, DomainError> {
    let Some(raw) = c.configuration.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let group = Uuid::parse_str(raw)
        .ok()
        .and_then(|g| ctx.catalog.configuration_group(g))
        .filter(|g| ctx.caller.can_see(&g.project_id))
        .ok_or_else(|| DomainError::CreateConfigurationNotFound(raw.to_string()))?;
    // Stricter than upstream (spec §8.6 recommendation): the group must match.
    if group.datastore_version_id != version.id {
        return Err(DomainError::ConfigurationDatastoreMismatch {
            group: group.datastore_version_id,
            instance: version.id,
        });
    }
    Ok(Some((group.id, group.revision)))
}

/// The users to create, each with its host (`%`, any host, when none was given).
fn user_specs(c: &CreateInstance) -> Vec<UserSpec> {
    c.users
        .iter()
        .map(|u| UserSpec {
            name: u.name.clone(),
            host: u.host.clone().unwrap_or_else(|| "%".into()),
            password: u.password.clone(),
            databases: u.databases.clone(),
        })
        .collect()
}

const RESERVED_DATABASES: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];
const RESERVED_USERS: [&str; 2] = ["os_admin", "root"];

fn check_databases_and_users(c: &CreateInstance, replica: bool) -> Result<(), DomainError> {
    let mut db_names = HashSet::new();
    for db in &c.databases {
        if RESERVED_DATABASES.contains(&db.name.as_str()) {
            return Err(DomainError::ReservedDatabase(db.name.clone()));
        }
        if !db_names.insert(db.name.as_str()) {
            return Err(DomainError::DuplicateDatabases);
        }
    }
    let mut users = HashSet::new();
    for u in &c.users {
        if RESERVED_USERS.contains(&u.name.as_str()) {
            return Err(DomainError::ReservedUser(u.name.clone()));
        }
        if !users.insert((u.name.as_str(), u.host.as_deref().unwrap_or("%"))) {
            return Err(DomainError::DuplicateUsers);
        }
        if let Some(d) = u.databases.iter().find(|d| !db_names.contains(d.as_str())) {
            return Err(DomainError::UserDatabaseNotListed {
                user: u.name.clone(),
                database: d.clone(),
            });
        }
    }
    if replica && (!c.users.is_empty() || !c.databases.is_empty()) {
        return Err(DomainError::ReplicaWithUsersOrDatabases);
    }
    Ok(())
}

/// Beyond upstream's list: the accounts of the server and of troved (guestdb's
/// `Family::reserved_users`), which a user of the create would otherwise take over.
fn check_reserved_accounts(c: &CreateInstance, manager: &str) -> Result<(), DomainError> {
    let Some(family) = super::guestdb::Family::of(manager) else {
        return Ok(());
    };
    match c
        .users
        .iter()
        .find_map(|u| super::guestdb::reserved_user(family, &u.name))
    {
        Some(refusal) => Err(refusal),
        None => Ok(()),
    }
}

fn decide_volume(
    c: &CreateInstance,
    version: &DatastoreVersion,
    catalog: &dyn Catalog,
) -> Result<Option<VolumeSpec>, DomainError> {
    if !version.volume_support {
        return match c.volume {
            Some(_) => Err(DomainError::VolumeNotSupported),
            None => Ok(None),
        };
    }
    let volume_type = c.volume.as_ref().and_then(|v| v.volume_type.clone());
    if let Some(allowed) = &version.allowed_volume_types {
        match &volume_type {
            None => return Err(DomainError::VolumeTypeRequired(version.id)),
            Some(t) if !allowed.contains(t) => {
                return Err(DomainError::VolumeTypeInvalid {
                    volume_type: t.clone(),
                    version_id: version.id,
                })
            }
            Some(_) => {}
        }
    }
    let size = c
        .volume
        .as_ref()
        .map(|v| v.size)
        .ok_or(DomainError::VolumeSizeMissing)?;
    let max = catalog.max_volume_size();
    if size > max {
        return Err(DomainError::VolumeTooLarge { max, size });
    }
    Ok(Some(VolumeSpec { size, volume_type }))
}

fn check_backup(
    bid: Uuid,
    (datastore, version): (&Datastore, &DatastoreVersion),
    available: u64,
    ctx: &DecideCtx,
) -> Result<(), DomainError> {
    let b = ctx
        .catalog
        .backup(bid)
        .filter(|b| ctx.caller.can_see(&b.project_id))
        .ok_or_else(|| DomainError::ResourceNotFound(bid.to_string()))?;
    if !matches!(b.state.as_str(), "COMPLETED" | "RESTORED") {
        return Err(DomainError::BackupNotCompleted {
            id: bid,
            state: b.state,
        });
    }
    if let Some(size) = b.size {
        if size > available as f64 {
            return Err(DomainError::BackupTooLarge {
                backup: size,
                available,
            });
        }
    }
    if let Some(name) = b.datastore_name {
        if name != datastore.name {
            return Err(DomainError::BackupDatastoreMismatch {
                backup: name,
                target: datastore.name.clone(),
            });
        }
    }
    match b.datastore_version {
        Some((id, name)) if id != version.id => Err(DomainError::BackupVersionMismatch {
            backup: name,
            target: version.name.clone(),
        }),
        _ => Ok(()),
    }
}

fn check_quota(
    project: &str,
    flavor: &FlavorRef,
    volume: Option<&VolumeSpec>,
    count: i64,
    catalog: &dyn Catalog,
) -> Result<(), DomainError> {
    let q = catalog.quota(project);
    let exceeds =
        |used: i64, delta: i64, limit: i64| limit >= 0 && delta > 0 && used + delta > limit;
    let mut over = Vec::new();
    if exceeds(q.instances, count, q.instances_limit) {
        over.push("instances".to_string());
    }
    if exceeds(q.ram, count * i64::from(flavor.ram), q.ram_limit) {
        over.push("ram".to_string());
    }
    if exceeds(
        q.volumes,
        count * volume.map_or(0, |v| v.size as i64),
        q.volumes_limit,
    ) {
        over.push("volumes".to_string());
    }
    if over.is_empty() {
        Ok(())
    } else {
        over.sort();
        Err(DomainError::QuotaExceeded(over))
    }
}

/// Datastore resolution at create (spec `supporting-resources.md` §2.3).
fn resolve_datastore(
    req: Option<&DatastoreRequest>,
    catalog: &dyn Catalog,
) -> Result<(Datastore, DatastoreVersion), DomainError> {
    let req = req.cloned().unwrap_or_default();
    let datastore = match &req.datastore_type {
        Some(t) => catalog
            .datastore(t)
            .ok_or_else(|| DomainError::DatastoreNotFound(t.clone()))?,
        None => {
            let name = catalog
                .default_datastore()
                .ok_or(DomainError::NoDefaultDatastore)?;
            catalog
                .datastore(&name)
                .ok_or(DomainError::DefaultDatastoreNotFound(name))?
        }
    };
    let key = match (&req.version, datastore.default_version_id) {
        (Some(v), _) => v.clone(),
        (None, Some(id)) => id.to_string(),
        (None, None) => return Err(DomainError::DefaultVersionNotFound(datastore.name.clone())),
    };
    let version = find_version(&datastore, &key, req.version_number.as_deref())?.clone();
    if !version.active {
        return Err(DomainError::DatastoreVersionInactive(version.name.clone()));
    }
    Ok((datastore, version))
}

/// A version of `datastore` by UUID, or by name (and number when given).
fn find_version<'d>(
    datastore: &'d Datastore,
    key: &str,
    number: Option<&str>,
) -> Result<&'d DatastoreVersion, DomainError> {
    if let Ok(id) = Uuid::parse_str(key) {
        return datastore
            .versions
            .iter()
            .find(|v| v.id == id)
            .ok_or(DomainError::DatastoreVersionIdNotFound);
    }
    if let Some(n) = number {
        return datastore
            .versions
            .iter()
            .find(|v| v.name == key && v.version == n)
            .ok_or_else(|| DomainError::DatastoreVersionNotFound(n.to_string()));
    }
    let mut matches = datastore.versions.iter().filter(|v| v.name == key);
    match (matches.next(), matches.next()) {
        (Some(v), None) => Ok(v),
        (None, _) => Err(DomainError::DatastoreVersionNotFound(key.to_string())),
        (Some(_), Some(_)) => Err(DomainError::DatastoreVersionAmbiguous(key.to_string())),
    }
}

fn datastore_ref(ds: &Datastore, v: &DatastoreVersion) -> DatastoreRef {
    DatastoreRef {
        datastore_id: ds.id,
        datastore_name: ds.name.clone(),
        version_id: v.id,
        version_name: v.name.clone(),
        version_number: v.version.clone(),
        manager: v.manager.clone(),
    }
}

// ---- saga reports ------------------------------------------------------------------------

/// Reports from the provisioning saga. Each is idempotent: a fact the state already
/// holds, or a report about a step that is no longer running, decides no event.
///
/// Routes each report to the function for its family; the match stays exhaustive, so a
/// new command does not compile until it is routed.
fn report(
    state: &Instance,
    cmd: &InstanceCommand,
    ctx: &DecideCtx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    if !state.exists() {
        return Err(DomainError::ResourceNotFound(ctx.instance_id.to_string()));
    }
    if state.deleted {
        return Ok(vec![]); // late reports about a deleted instance change nothing
    }
    let at = ctx.now;
    match cmd {
        RecordVolumeCreated { .. }
        | RecordServerCreated { .. }
        | RecordGuestPrepared
        | RecordServerDeleted { .. }
        | RecordVolumeDeleted { .. }
        | RecordResourcesReleased => report_resource(state, cmd, at),
        RecordVolumeUsage { .. }
        | RecordGuestConfiguration { .. }
        | RecordComputeStatus { .. }
        | RecordGuestStatus { .. }
        | RecordGuestFailure { .. }
        | RecordConfigurationRefused { .. }
        | RecordAddresses { .. }
        | ApplyConfigurationRevision { .. } => report_live_status(state, cmd, at),
        CompleteProvisioning | FailProvisioning { .. } | CompleteDeletion => {
            report_provisioning_end(state, cmd, at)
        }
        CompleteUpgrade
        | FailUpgrade { .. }
        | CompleteReplicaDetach
        | FailReplicaDetach { .. }
        | CompleteAccessUpdate
        | FailAccessUpdate { .. } => report_task_end(state, cmd, at),
        RecordSecretsLost { .. } | RecordResourcesLost { .. } => report_loss(state, cmd, at),
        // instance actions
        CompleteRestart | FailRestart { .. } | CompleteResize | FailResize { .. } => {
            super::actions::report_action_end(state, cmd, at)
        }
        RestartInstance | ResizeFlavor { .. } | ResizeVolume { .. } | ResetStatus => {
            not_routed_here(cmd)
        }
        CreateInstance(_)
        | RenameInstance { .. }
        | AttachConfiguration { .. }
        | DetachConfiguration
        | UpgradeDatastoreVersion { .. }
        | DetachReplica
        | UpdateAccess { .. }
        | DeleteInstance
        | PromoteToReplicaSource
        | EjectReplicaSource { .. }
        | JoinReplicaSetSwitch { .. }
        | CompleteReplicaSetSwitch { .. }
        | FailReplicaSetSwitch { .. } => not_routed_here(cmd),
        // Databases, users and root: `guestdb::decide_guest_admin`.
        _ => not_routed_here(cmd),
    }
}

/// `e` when `cond` holds (the report is news), else no event.
fn event_if(cond: bool, e: InstanceEvent) -> Result<Vec<InstanceEvent>, DomainError> {
    Ok(if cond { vec![e] } else { vec![] })
}

// Each `report_*` function below is called by `report` with commands of its own family
// only; the catch-all arm that ends each match is never taken.

/// A cloud resource created, prepared, deleted or released by the saga.
fn report_resource(
    state: &Instance,
    cmd: &InstanceCommand,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    match cmd {
        RecordVolumeCreated {
            volume_id,
            size,
            volume_type,
        } => event_if(
            state.volume_id.as_ref() != Some(volume_id),
            E::VolumeCreated {
                volume_id: volume_id.clone(),
                size: *size,
                volume_type: volume_type.clone(),
                at,
            },
        ),
        RecordServerCreated { server_id } => event_if(
            state.server_id.as_ref() != Some(server_id),
            E::ServerCreated {
                server_id: server_id.clone(),
                at,
            },
        ),
        RecordGuestPrepared => event_if(!state.guest_prepared, E::GuestPrepared { at }),
        RecordServerDeleted { server_id } => event_if(
            state.server_id.as_ref() == Some(server_id),
            E::ServerDeleted {
                server_id: server_id.clone(),
                at,
            },
        ),
        RecordVolumeDeleted { volume_id } => event_if(
            state.volume_id.as_ref() == Some(volume_id),
            E::VolumeDeleted {
                volume_id: volume_id.clone(),
                at,
            },
        ),
        RecordResourcesReleased => event_if(
            state.build_failed && !state.resources_released,
            E::ResourcesReleased { at },
        ),
        _ => not_routed_here(cmd),
    }
}

/// Live data from the cloud and the guest: usage, statuses, addresses, configuration.
fn report_live_status(
    state: &Instance,
    cmd: &InstanceCommand,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    match cmd {
        RecordVolumeUsage { used, total } => event_if(
            state.volume_usage != Some((*used, *total)),
            E::VolumeUsageReported {
                used: *used,
                total: *total,
                at,
            },
        ),
        RecordGuestConfiguration {
            configuration_id,
            revision,
            in_force,
        } => event_if(
            state.guest_configuration != Some((*configuration_id, *revision)),
            E::GuestConfigurationApplied {
                configuration_id: *configuration_id,
                revision: *revision,
                in_force: *in_force,
                at,
            },
        ),
        RecordComputeStatus { status } => {
            if state.server_id.is_none() {
                return Err(DomainError::InvalidReport(
                    "compute status reported before a server exists".into(),
                ));
            }
            event_if(
                state.compute != Some(*status),
                E::ComputeStatusChanged {
                    status: *status,
                    at,
                },
            )
        }
        // Idempotent like every report: only a change is recorded. Periodic heartbeats
        // that find no change refresh an in-memory time, not the log (docs/providers.md).
        RecordGuestFailure { fault } => guest_failed(state, fault, at),
        RecordConfigurationRefused {
            configuration_id,
            revision,
            fault,
        } => configuration_refused(state, (*configuration_id, *revision), fault, at),
        RecordGuestStatus { status } => event_if(
            state.service != *status,
            E::GuestStatusReported {
                status: *status,
                at,
            },
        ),
        RecordAddresses { addresses } => event_if(
            state.addresses != *addresses,
            E::AddressesAssigned {
                addresses: addresses.clone(),
                at,
            },
        ),
        ApplyConfigurationRevision {
            configuration_id,
            revision,
            restart_required,
        } => event_if(
            state.configuration_id == Some(*configuration_id)
                && *revision > state.configuration_revision,
            E::ConfigurationRevisionApplied {
                configuration_id: *configuration_id,
                revision: *revision,
                restart_required: *restart_required,
                at,
            },
        ),
        _ => not_routed_here(cmd),
    }
}

/// The end of a build (done or failed) or of a deletion.
fn report_provisioning_end(
    state: &Instance,
    cmd: &InstanceCommand,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    match cmd {
        CompleteProvisioning => event_if(
            state.task == Task::Building,
            E::ProvisioningCompleted { at },
        ),
        FailProvisioning { task, fault } => {
            if !task.is_error() {
                return Err(DomainError::InvalidReport(format!(
                    "{} is not an error task",
                    task.description()
                )));
            }
            event_if(
                state.task == Task::Building,
                E::ProvisioningFailed {
                    task: *task,
                    fault: fault.clone(),
                    at,
                },
            )
        }
        CompleteDeletion => event_if(state.task == Task::Deleting, E::InstanceDeleted { at }),
        _ => not_routed_here(cmd),
    }
}

/// The heartbeat supervisor gave up restarting the database server: recorded once, and
/// only while no workflow runs (those belong to the saga).
fn guest_failed(
    state: &Instance,
    fault: &FaultInfo,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    if state.server_id.is_none() {
        return Err(DomainError::InvalidReport(
            "guest failure reported before a server exists".into(),
        ));
    }
    let failed =
        state.service == ServiceStatus::Failed && state.compute == Some(ComputeStatus::Error);
    event_if(
        state.task == Task::None && !failed,
        InstanceEvent::GuestFailed {
            fault: fault.clone(),
            at,
        },
    )
}

/// The guest refused `this` (group, revision): recorded only for what is attached now,
/// not applied, and not refused already.
fn configuration_refused(
    state: &Instance,
    this: (Option<Uuid>, u64),
    fault: &FaultInfo,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    event_if(
        (state.configuration_id, state.configuration_revision) == this
            && state.guest_configuration != Some(this)
            && state.refused_configuration != Some(this),
        InstanceEvent::GuestConfigurationRefused {
            configuration_id: this.0,
            revision: this.1,
            fault: fault.clone(),
            at,
        },
    )
}

/// The end (done or failed) of a task on a live instance: upgrade, replica detach,
/// access update.
fn report_task_end(
    state: &Instance,
    cmd: &InstanceCommand,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    match cmd {
        CompleteUpgrade => event_if(
            state.task == Task::Upgrading,
            E::DatastoreVersionUpgraded { at },
        ),
        FailUpgrade { fault } => event_if(
            state.task == Task::Upgrading,
            E::DatastoreVersionUpgradeFailed {
                fault: fault.clone(),
                at,
            },
        ),
        CompleteReplicaDetach => match (state.task, state.replica_of) {
            (Task::Detaching, Some(primary_id)) => Ok(vec![E::ReplicaDetached { primary_id, at }]),
            _ => Ok(vec![]),
        },
        FailReplicaDetach { fault } => event_if(
            state.task == Task::Detaching,
            E::ReplicaDetachFailed {
                fault: fault.clone(),
                at,
            },
        ),
        CompleteAccessUpdate => match (&state.task, &state.pending_access) {
            (Task::Updating, Some(access)) => Ok(vec![E::AccessUpdated {
                access: access.clone(),
                at,
            }]),
            _ => Ok(vec![]),
        },
        FailAccessUpdate { fault } => event_if(
            state.task == Task::Updating,
            E::AccessUpdateFailed {
                fault: fault.clone(),
                at,
            },
        ),
        _ => not_routed_here(cmd),
    }
}

/// A loss found outside the log: the vault's key, or the cloud's server or volume.
/// Idempotent like every report: a loss already recorded, or of a resource the instance
/// no longer claims, decides nothing. Teardown and the compensation of a failed build
/// are left alone: they delete these resources themselves and take "already gone" as
/// done, so a reconciliation that saw one of their deletions is no loss.
fn report_loss(
    state: &Instance,
    cmd: &InstanceCommand,
    at: DateTime<Utc>,
) -> Result<Vec<InstanceEvent>, DomainError> {
    use InstanceCommand::*;
    use InstanceEvent as E;
    match cmd {
        RecordSecretsLost { reason } => event_if(
            state.has_sealed_secrets && !state.secrets_lost,
            E::InstanceSecretsLost {
                reason: reason.clone(),
                at,
            },
        ),
        RecordResourcesLost {
            server_id,
            volume_id,
            fault,
        } => {
            if state.task == Task::Deleting || state.build_failed {
                return Ok(vec![]);
            }
            let claimed = |lost: &Option<String>, held: &Option<String>| {
                lost.clone().filter(|id| held.as_ref() == Some(id))
            };
            let server_id = claimed(server_id, &state.server_id);
            let volume_id = claimed(volume_id, &state.volume_id);
            event_if(
                server_id.is_some() || volume_id.is_some(),
                E::InstanceResourcesLost {
                    server_id,
                    volume_id,
                    fault: fault.clone(),
                    at,
                },
            )
        }
        _ => not_routed_here(cmd),
    }
}

/// `decide` routes user commands before calling `report`, and `report` routes each
/// report to its family; this keeps every function total without a panic path.
fn not_routed_here(cmd: &InstanceCommand) -> Result<Vec<InstanceEvent>, DomainError> {
    Err(DomainError::InvalidReport(format!(
        "{} is not a provisioning report",
        cmd.name()
    )))
}
