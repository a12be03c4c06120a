//! PUT/PATCH: rename, attach/detach configuration, upgrade, detach replica, access
//! (spec `instances-api.md` §11, lifecycle §5 and §7.3-§7.7).

use uuid::Uuid;

use super::support::*;
use crate::fault::Fault;
use crate::instance::{
    Access, ComputeStatus, DomainError, FaultInfo, InstanceCommand, InstanceEvent, ServiceStatus,
    Task,
};

fn rename(name: &str) -> InstanceCommand {
    InstanceCommand::RenameInstance { name: name.into() }
}

fn renamed(name: &str) -> InstanceEvent {
    InstanceEvent::InstanceRenamed {
        name: name.into(),
        at: now(),
    }
}

fn attach(id: Uuid) -> InstanceCommand {
    InstanceCommand::AttachConfiguration {
        configuration_id: id.to_string(),
    }
}

fn upgrade(version: &str) -> InstanceCommand {
    InstanceCommand::UpgradeDatastoreVersion {
        version: version.into(),
    }
}

fn upgrade_event(to: Uuid) -> InstanceEvent {
    InstanceEvent::DatastoreVersionUpgradeRequested {
        from: version_ref(V_MYSQL_80),
        to: version_ref(to),
        at: now(),
    }
}

fn fault() -> FaultInfo {
    FaultInfo {
        message: "boom".into(),
        details: "trace".into(),
    }
}

fn not_ready() -> DomainError {
    DomainError::InstanceNotReady(INSTANCE)
}

fn invalid_state(value: &str) -> DomainError {
    DomainError::ConfigurationInvalidState(value.into())
}

fn not_available(kind: &'static str, value: &str) -> DomainError {
    DomainError::NotAvailableForAction {
        id: INSTANCE,
        kind,
        value: value.into(),
    }
}

fn access(is_public: bool, cidrs: &[&str]) -> Access {
    Access {
        is_public,
        allowed_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
    }
}

// ---- visibility and the compute server (§11.2, lifecycle §5.4) -------------------------

#[test]
fn every_update_command_on_a_missing_instance_is_not_found() {
    for cmd in [
        rename("x"),
        attach(CFG_MYSQL80),
        InstanceCommand::DetachConfiguration,
        upgrade("5.7"),
        InstanceCommand::DetachReplica,
        InstanceCommand::UpdateAccess {
            access: access(true, &[]),
        },
    ] {
        let err = given(&[])
            .when(cmd)
            .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
        assert_eq!(
            err.to_string(),
            format!("Resource {INSTANCE} cannot be found.")
        );
        assert_eq!(err.fault(), Fault::ItemNotFound);
    }
}

#[test]
fn other_projects_instance_update_is_not_found() {
    given(&ready())
        .caller(other_project())
        .when(rename("x"))
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn other_projects_instance_without_server_is_still_not_found() {
    // Lookup (404) comes before the compute-server check (422).
    given(&[created()])
        .caller(other_project())
        .when(rename("x"))
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn admin_may_update_another_projects_instance() {
    given(&ready())
        .caller(admin())
        .when(rename("x"))
        .then(&[renamed("x")]);
}

#[test]
fn deleted_instance_rename_is_not_found() {
    given(&[ready(), deleted()].concat())
        .when(rename("x"))
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn every_update_command_without_a_compute_server_is_not_ready() {
    for cmd in [
        rename("x"),
        attach(CFG_MYSQL80),
        InstanceCommand::DetachConfiguration,
        upgrade("5.7"),
        InstanceCommand::DetachReplica,
        InstanceCommand::UpdateAccess {
            access: access(true, &[]),
        },
    ] {
        let err = given(&[created()]).when(cmd).then_err(not_ready());
        assert_eq!(
            err.to_string(),
            format!("Instance {INSTANCE} is not ready.")
        );
        assert_eq!(err.fault(), Fault::UnprocessableEntity);
    }
}

#[test]
fn build_failed_before_server_rename_is_not_ready() {
    given(&[
        created(),
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorPort,
            fault: fault(),
            at: earlier(),
        },
    ])
    .when(rename("x"))
    .then_err(not_ready());
}

// ---- rename (§11.3, lifecycle §7.3) ----------------------------------------------------

#[test]
fn ready_instance_rename_records_new_name() {
    let state = given(&ready()).when(rename("db2")).then(&[renamed("db2")]);
    assert_eq!(state.name, "db2");
    assert_eq!(state.updated, now());
    assert_eq!(state.task, Task::None);
}

#[test]
fn rename_works_in_any_status_once_a_server_exists() {
    let histories = [
        building_with_server(ComputeStatus::Build),
        [
            building_with_server(ComputeStatus::Build),
            vec![InstanceEvent::ProvisioningFailed {
                task: Task::BuildingErrorServer,
                fault: fault(),
                at: earlier(),
            }],
        ]
        .concat(),
        ready_then(&[upgrade_requested(V_MYSQL_57)]),
        ready_then(&[attached(CFG_MYSQL80, true)]),
        ready_then(&[InstanceEvent::InstanceDeletionRequested { at: earlier() }]),
        ready_then(&[compute(ComputeStatus::Error)]),
    ];
    for h in histories {
        given(&h).when(rename("db2")).then(&[renamed("db2")]);
    }
}

#[test]
fn rename_to_the_same_name_is_still_recorded() {
    given(&ready()).when(rename("db1")).then(&[renamed("db1")]);
}

// ---- attach configuration (§11.4) ------------------------------------------------------

#[test]
fn ready_instance_attach_restart_group_requires_restart() {
    let state =
        given(&ready())
            .when(attach(CFG_MYSQL80))
            .then(&[InstanceEvent::ConfigurationAttached {
                configuration_id: CFG_MYSQL80,
                restart_required: true,
                revision: 0,
                at: now(),
            }]);
    assert_eq!(state.configuration_id, Some(CFG_MYSQL80));
    assert_eq!(state.task, Task::RestartRequired);
    assert_eq!(state.command_status(), "RESTART_REQUIRED");
}

#[test]
fn a_configuration_put_in_force_ends_restart_required() {
    let attached = InstanceEvent::ConfigurationAttached {
        configuration_id: CFG_MYSQL80,
        restart_required: true,
        revision: 0,
        at: earlier(),
    };
    let applied = |in_force| InstanceCommand::RecordGuestConfiguration {
        configuration_id: Some(CFG_MYSQL80),
        revision: 0,
        in_force,
    };
    // Applied without a restart (the simulated cloud): the restart is still required.
    let state = given(&ready_then(std::slice::from_ref(&attached)))
        .when(applied(false))
        .then(&[InstanceEvent::GuestConfigurationApplied {
            configuration_id: Some(CFG_MYSQL80),
            revision: 0,
            in_force: false,
            at: now(),
        }]);
    assert_eq!(state.command_status(), "RESTART_REQUIRED");
    // Put in force (the local provider restarted the server): ACTIVE again.
    let state = given(&ready_then(&[attached])).when(applied(true)).then(&[
        InstanceEvent::GuestConfigurationApplied {
            configuration_id: Some(CFG_MYSQL80),
            revision: 0,
            in_force: true,
            at: now(),
        },
    ]);
    assert_eq!(state.task, Task::None);
    assert_eq!(state.command_status(), "ACTIVE");
    assert_eq!(state.updated, now());
}

#[test]
fn a_stale_configuration_put_in_force_keeps_restart_required() {
    // The guest applied no group while a restart-only group is attached: still waiting.
    let state = given(&ready_then(&[InstanceEvent::ConfigurationAttached {
        configuration_id: CFG_MYSQL80,
        restart_required: true,
        revision: 0,
        at: earlier(),
    }]))
    .when(InstanceCommand::RecordGuestConfiguration {
        configuration_id: None,
        revision: 0,
        in_force: true,
    })
    .then(&[InstanceEvent::GuestConfigurationApplied {
        configuration_id: None,
        revision: 0,
        in_force: true,
        at: now(),
    }]);
    assert_eq!(state.task, Task::RestartRequired);
}

#[test]
fn ready_instance_attach_live_group_keeps_task_none() {
    let state = given(&ready()).when(attach(CFG_MYSQL80_LIVE)).then(&[
        InstanceEvent::ConfigurationAttached {
            configuration_id: CFG_MYSQL80_LIVE,
            restart_required: false,
            revision: 0,
            at: now(),
        },
    ]);
    assert_eq!(state.configuration_id, Some(CFG_MYSQL80_LIVE));
    assert_eq!(state.task, Task::None);
    assert_eq!(state.command_status(), "ACTIVE");
}

#[test]
fn admin_may_attach_another_projects_group() {
    given(&ready())
        .caller(admin())
        .when(attach(CFG_OTHER_PROJECT))
        .then(&[InstanceEvent::ConfigurationAttached {
            configuration_id: CFG_OTHER_PROJECT,
            restart_required: true,
            revision: 0,
            at: now(),
        }]);
}

#[test]
fn already_attached_is_refused_before_anything_else() {
    // Even with a bad state (RESTART_REQUIRED) and an unknown group.
    let err = given(&ready_then(&[attached(CFG_MYSQL80, true)]))
        .when(InstanceCommand::AttachConfiguration {
            configuration_id: "missing".into(),
        })
        .then_err(DomainError::ConfigurationAlreadyAttached {
            id: INSTANCE,
            current: CFG_MYSQL80,
        });
    assert_eq!(
        err.to_string(),
        format!("Instance {INSTANCE} already has a Configuration Group attached: {CFG_MYSQL80}.")
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn restart_required_instance_attach_is_refused() {
    // Attached live, then detached needing a restart: task RESTART_REQUIRED, no group.
    let history = ready_then(&[InstanceEvent::ConfigurationDetached {
        configuration_id: CFG_MYSQL80,
        restart_required: true,
        at: earlier(),
    }]);
    let err = given(&history)
        .when(attach(CFG_MYSQL80))
        .then_err(invalid_state("RESTART_REQUIRED"));
    assert_eq!(
        err.to_string(),
        "The operation you have requested cannot be executed because the instance status is \
         currently: RESTART_REQUIRED."
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn building_instance_with_active_server_attach_names_the_task() {
    let err = given(&building_with_server(ComputeStatus::Active))
        .when(attach(CFG_MYSQL80))
        .then_err(invalid_state("BUILDING"));
    assert_eq!(
        err.to_string(),
        "The operation you have requested cannot be executed because the instance status is \
         currently: BUILDING."
    );
}

#[test]
fn building_server_attach_names_the_compute_status() {
    given(&building_with_server(ComputeStatus::Build))
        .when(attach(CFG_MYSQL80))
        .then_err(invalid_state("BUILD"));
}

#[test]
fn stopped_server_attach_names_the_compute_status() {
    given(&ready_then(&[compute(ComputeStatus::Shutoff)]))
        .when(attach(CFG_MYSQL80))
        .then_err(invalid_state("SHUTOFF"));
}

#[test]
fn guest_in_unknown_state_may_still_attach() {
    // Lifecycle §8: the configuration gate checks only compute status and task.
    given(&ready_then(&[guest(ServiceStatus::Unknown)]))
        .when(attach(CFG_MYSQL80_LIVE))
        .then(&[InstanceEvent::ConfigurationAttached {
            configuration_id: CFG_MYSQL80_LIVE,
            restart_required: false,
            revision: 0,
            at: now(),
        }]);
}

#[test]
fn busy_instance_attach_names_the_task_action() {
    for (event, value) in [
        (upgrade_requested(V_MYSQL_57), "UPGRADING"),
        (
            InstanceEvent::ReplicaDetachRequested { at: earlier() },
            "DETACHING",
        ),
        (
            InstanceEvent::InstanceDeletionRequested { at: earlier() },
            "DELETING",
        ),
        (
            InstanceEvent::AccessUpdateRequested {
                access: access(true, &[]),
                at: earlier(),
            },
            "UPDATING",
        ),
    ] {
        given(&ready_then(&[event]))
            .when(attach(CFG_MYSQL80))
            .then_err(invalid_state(value));
    }
}

#[test]
fn bad_state_wins_over_unknown_group() {
    given(&building_with_server(ComputeStatus::Active))
        .when(InstanceCommand::AttachConfiguration {
            configuration_id: "missing".into(),
        })
        .then_err(invalid_state("BUILDING"));
}

#[test]
fn unknown_group_attach_is_not_found() {
    let missing = Uuid::from_u128(0xcfff);
    let err =
        given(&ready())
            .when(attach(missing))
            .then_err(DomainError::AttachConfigurationNotFound(
                missing.to_string(),
            ));
    assert_eq!(
        err.to_string(),
        format!("Configuration group id: {missing} could not be found.")
    );
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn malformed_group_id_attach_is_not_found() {
    given(&ready())
        .when(InstanceCommand::AttachConfiguration {
            configuration_id: "abc".into(),
        })
        .then_err(DomainError::AttachConfigurationNotFound("abc".into()));
}

#[test]
fn other_projects_group_attach_is_not_found() {
    given(&ready()).when(attach(CFG_OTHER_PROJECT)).then_err(
        DomainError::AttachConfigurationNotFound(CFG_OTHER_PROJECT.to_string()),
    );
}

#[test]
fn group_of_another_version_attach_is_refused() {
    let err = given(&ready()).when(attach(CFG_PG13)).then_err(
        DomainError::ConfigurationDatastoreMismatch {
            group: V_PG_13,
            instance: V_MYSQL_80,
        },
    );
    assert_eq!(
        err.to_string(),
        format!(
            "Datastore Version on Configuration {V_PG_13} does not match the Datastore \
             Version on the instance {V_MYSQL_80}."
        )
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

// ---- detach configuration (§11.4) ------------------------------------------------------

#[test]
fn nothing_attached_detach_is_a_no_op() {
    given(&ready())
        .when(InstanceCommand::DetachConfiguration)
        .then_nothing();
}

#[test]
fn nothing_attached_detach_is_a_no_op_even_in_a_bad_state() {
    given(&building_with_server(ComputeStatus::Active))
        .when(InstanceCommand::DetachConfiguration)
        .then_nothing();
}

#[test]
fn attached_restart_group_detach_requires_restart() {
    let state = given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .catalog(|c| {
            c.configuration_groups
                .iter_mut()
                .for_each(|g| g.restart_required = true)
        })
        .when(InstanceCommand::DetachConfiguration)
        .then(&[InstanceEvent::ConfigurationDetached {
            configuration_id: CFG_MYSQL80_LIVE,
            restart_required: true,
            at: now(),
        }]);
    assert_eq!(state.configuration_id, None);
    assert_eq!(state.task, Task::RestartRequired);
}

#[test]
fn attached_live_group_detach_keeps_task_none() {
    let state = given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .when(InstanceCommand::DetachConfiguration)
        .then(&[InstanceEvent::ConfigurationDetached {
            configuration_id: CFG_MYSQL80_LIVE,
            restart_required: false,
            at: now(),
        }]);
    assert_eq!(state.configuration_id, None);
    assert_eq!(state.task, Task::None);
}

#[test]
fn vanished_group_detach_assumes_a_restart() {
    given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .catalog(|c| c.configuration_groups.clear())
        .when(InstanceCommand::DetachConfiguration)
        .then(&[InstanceEvent::ConfigurationDetached {
            configuration_id: CFG_MYSQL80_LIVE,
            restart_required: true,
            at: now(),
        }]);
}

#[test]
fn restart_required_instance_detach_is_refused() {
    let err = given(&ready_then(&[attached(CFG_MYSQL80, true)]))
        .when(InstanceCommand::DetachConfiguration)
        .then_err(invalid_state("RESTART_REQUIRED"));
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn server_in_error_detach_is_refused() {
    given(&ready_then(&[
        attached(CFG_MYSQL80_LIVE, false),
        compute(ComputeStatus::Error),
    ]))
    .when(InstanceCommand::DetachConfiguration)
    .then_err(invalid_state("ERROR"));
}

// ---- upgrade (§11.6) -------------------------------------------------------------------

#[test]
fn upgrade_by_version_name_switches_at_once() {
    let state = given(&ready())
        .when(upgrade("5.7"))
        .then(&[upgrade_event(V_MYSQL_57)]);
    assert_eq!(state.datastore, Some(version_ref(V_MYSQL_57)));
    assert_eq!(state.task, Task::Upgrading);
    assert_eq!(state.command_status(), "UPGRADE");
}

#[test]
fn upgrade_by_version_id_is_accepted() {
    given(&ready())
        .when(upgrade(&V_MYSQL_57.to_string()))
        .then(&[upgrade_event(V_MYSQL_57)]);
}

#[test]
fn upgrade_to_an_inactive_version_is_a_bad_request() {
    // Deviation: upstream accepts it; an inactive version cannot run (docs/api.md).
    let err = given(&ready())
        .when(upgrade("5.6"))
        .then_err(DomainError::DatastoreVersionInactive("5.6".into()));
    assert_eq!(err.to_string(), "Datastore version '5.6' is not active.");
    assert_eq!(err.fault(), Fault::BadRequest);
    // By id too, and before the gate (a busy instance is told the version is inactive).
    given(&ready())
        .when(upgrade(&V_MYSQL_56.to_string()))
        .then_err(DomainError::DatastoreVersionInactive("5.6".into()));
    given(&ready_then(&[upgrade_requested(V_MYSQL_57)]))
        .when(upgrade("5.6"))
        .then_err(DomainError::DatastoreVersionInactive("5.6".into()));
}

#[test]
fn upgrade_to_the_current_version_is_allowed() {
    given(&ready())
        .when(upgrade("8.0"))
        .then(&[upgrade_event(V_MYSQL_80)]);
}

#[test]
fn unknown_version_name_upgrade_is_a_bad_request() {
    let err = given(&ready())
        .when(upgrade("9.9"))
        .then_err(DomainError::DatastoreVersionNotFound("9.9".into()));
    assert_eq!(err.to_string(), "Datastore version '9.9' cannot be found.");
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn version_name_of_another_datastore_upgrade_is_a_bad_request() {
    // `13` is a postgresql version; upgrade looks only inside mysql.
    given(&ready())
        .when(upgrade("13"))
        .then_err(DomainError::DatastoreVersionNotFound("13".into()));
}

#[test]
fn version_uuid_of_another_datastore_upgrade_is_not_found() {
    let err = given(&ready())
        .when(upgrade(&V_PG_13.to_string()))
        .then_err(DomainError::DatastoreVersionIdNotFound);
    assert_eq!(err.to_string(), "DBDatastoreVersion Not Found");
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn shared_version_name_upgrade_is_ambiguous() {
    let history = ready_from(created_with(|c| c.datastore = version_ref(V_MARIADB_A)));
    let err = given(&history)
        .when(upgrade("10.4"))
        .then_err(DomainError::DatastoreVersionAmbiguous("10.4".into()));
    assert_eq!(err.fault(), Fault::BadRequest);
    given(&history)
        .when(upgrade(&V_MARIADB_B.to_string()))
        .then(&[InstanceEvent::DatastoreVersionUpgradeRequested {
            from: version_ref(V_MARIADB_A),
            to: version_ref(V_MARIADB_B),
            at: now(),
        }]);
}

#[test]
fn busy_instance_upgrade_is_unprocessable() {
    let err = given(&ready_then(&[upgrade_requested(V_MYSQL_57)]))
        .when(upgrade("5.7"))
        .then_err(not_available("task", "UPGRADING"));
    assert_eq!(
        err.to_string(),
        format!(
            "Instance {INSTANCE} is not currently available for an action to be performed \
             (task status was UPGRADING)."
        )
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn building_instance_upgrade_is_unprocessable() {
    given(&building_with_server(ComputeStatus::Build))
        .when(upgrade("5.7"))
        .then_err(not_available("instance", "BUILD"));
}

#[test]
fn version_lookup_wins_over_the_upgrade_gate() {
    given(&building_with_server(ComputeStatus::Build))
        .when(upgrade("9.9"))
        .then_err(DomainError::DatastoreVersionNotFound("9.9".into()));
}

// ---- detach replica (§11.5) ------------------------------------------------------------

#[test]
fn ready_replica_detach_is_requested() {
    let state = given(&ready_replica())
        .when(InstanceCommand::DetachReplica)
        .then(&[InstanceEvent::ReplicaDetachRequested { at: now() }]);
    assert_eq!(state.task, Task::Detaching);
    assert_eq!(state.command_status(), "DETACH");
    assert_eq!(state.replica_of, Some(PRIMARY)); // until the guest has detached
}

#[test]
fn replica_needing_restart_may_detach() {
    given(&[ready_replica(), vec![attached(CFG_MYSQL80, true)]].concat())
        .when(InstanceCommand::DetachReplica)
        .then(&[InstanceEvent::ReplicaDetachRequested { at: now() }]);
}

#[test]
fn not_a_replica_detach_is_refused() {
    let err = given(&ready())
        .when(InstanceCommand::DetachReplica)
        .then_err(DomainError::NotAReplica(INSTANCE));
    assert_eq!(
        err.to_string(),
        format!("Instance {INSTANCE} is not a replica.")
    );
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn busy_replica_detach_names_the_task() {
    let history = [ready_replica(), vec![upgrade_requested(V_MYSQL_57)]].concat();
    let err = given(&history)
        .when(InstanceCommand::DetachReplica)
        .then_err(not_available("task", "UPGRADING"));
    assert_eq!(
        err.to_string(),
        format!(
            "Instance {INSTANCE} is not currently available for an action to be performed \
             (task status was UPGRADING)."
        )
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn detaching_replica_detach_again_is_unprocessable() {
    let history = [
        ready_replica(),
        vec![InstanceEvent::ReplicaDetachRequested { at: earlier() }],
    ]
    .concat();
    given(&history)
        .when(InstanceCommand::DetachReplica)
        .then_err(not_available("task", "DETACHING"));
}

#[test]
fn replica_with_server_in_error_detach_names_the_compute_status() {
    let history = [ready_replica(), vec![compute(ComputeStatus::Error)]].concat();
    given(&history)
        .when(InstanceCommand::DetachReplica)
        .then_err(not_available("instance", "ERROR"));
}

#[test]
fn replica_whose_guest_cannot_act_detach_names_the_derived_status() {
    // Lifecycle §5.1 rule 3: after an admin reset-status (service UNKNOWN) the message
    // says `(instance status was ACTIVE)`.
    let history = [ready_replica(), vec![guest(ServiceStatus::Unknown)]].concat();
    let err = given(&history)
        .when(InstanceCommand::DetachReplica)
        .then_err(not_available("instance", "ACTIVE"));
    assert!(err.to_string().ends_with("(instance status was ACTIVE)."));
}

#[test]
fn silent_guest_may_still_detach() {
    // The heartbeat rule is display-only (lifecycle §4): the stored HEALTHY counts.
    let history = [
        ready_replica(),
        vec![InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Healthy,
            at: now() - chrono::Duration::hours(5),
        }],
    ]
    .concat();
    given(&history)
        .when(InstanceCommand::DetachReplica)
        .then(&[InstanceEvent::ReplicaDetachRequested { at: now() }]);
}

#[test]
fn building_non_replica_detach_fails_the_gate_first() {
    given(&building_with_server(ComputeStatus::Active))
        .when(InstanceCommand::DetachReplica)
        .then_err(not_available("task", "BUILDING"));
}

// ---- access (§11.7) --------------------------------------------------------------------

#[test]
fn ready_instance_access_update_is_requested() {
    let a = access(true, &["10.0.0.0/8"]);
    let state = given(&ready())
        .when(InstanceCommand::UpdateAccess { access: a.clone() })
        .then(&[InstanceEvent::AccessUpdateRequested {
            access: a.clone(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::Updating);
    assert_eq!(state.pending_access, Some(a));
    // UPDATING has no status string of its own: status stays ACTIVE.
    assert_eq!(state.command_status(), "ACTIVE");
}

#[test]
fn busy_instance_access_update_is_unprocessable() {
    let a = access(false, &[]);
    given(&ready_then(&[InstanceEvent::AccessUpdateRequested {
        access: a.clone(),
        at: earlier(),
    }]))
    .when(InstanceCommand::UpdateAccess { access: a })
    .then_err(not_available("task", "UPDATING"));
}

// ---- decide_all: a PUT with rename + one more operation, all or nothing ----------------

#[test]
fn rename_with_failing_attach_decides_nothing() {
    given(&ready())
        .when_all(&[rename("db2"), attach(CFG_PG13)])
        .then_err(DomainError::ConfigurationDatastoreMismatch {
            group: V_PG_13,
            instance: V_MYSQL_80,
        });
}

#[test]
fn rename_with_successful_detach_decides_both_in_order() {
    given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .when_all(&[rename("db2"), InstanceCommand::DetachConfiguration])
        .then(&[
            renamed("db2"),
            InstanceEvent::ConfigurationDetached {
                configuration_id: CFG_MYSQL80_LIVE,
                restart_required: false,
                at: now(),
            },
        ]);
}

#[test]
fn later_commands_see_the_effects_of_earlier_ones() {
    // Attaching a restart group sets RESTART_REQUIRED, so a detach in the same batch
    // fails the configuration gate, and the whole batch decides nothing.
    given(&ready())
        .when_all(&[attach(CFG_MYSQL80), InstanceCommand::DetachConfiguration])
        .then_err(invalid_state("RESTART_REQUIRED"));
}

#[test]
fn empty_batch_decides_nothing() {
    given(&ready()).when_all(&[]).then_nothing();
}

// ---- a later revision of the attached group (saga report) ----------------------------

fn apply_revision(id: Uuid, revision: u64, restart_required: bool) -> InstanceCommand {
    InstanceCommand::ApplyConfigurationRevision {
        configuration_id: id,
        revision,
        restart_required,
    }
}

#[test]
fn a_newer_revision_needing_a_restart_requires_one() {
    let state = given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .when(apply_revision(CFG_MYSQL80_LIVE, 2, true))
        .then(&[InstanceEvent::ConfigurationRevisionApplied {
            configuration_id: CFG_MYSQL80_LIVE,
            revision: 2,
            restart_required: true,
            at: now(),
        }]);
    assert_eq!(state.configuration_revision, 2);
    assert_eq!(state.command_status(), "RESTART_REQUIRED");
}

#[test]
fn a_newer_revision_applied_live_keeps_the_instance_active() {
    let state = given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .when(apply_revision(CFG_MYSQL80_LIVE, 2, false))
        .then(&[InstanceEvent::ConfigurationRevisionApplied {
            configuration_id: CFG_MYSQL80_LIVE,
            revision: 2,
            restart_required: false,
            at: now(),
        }]);
    assert_eq!(state.command_status(), "ACTIVE");
}

#[test]
fn an_old_revision_or_another_group_is_ignored() {
    let history = ready_then(&[
        attached(CFG_MYSQL80_LIVE, false),
        InstanceEvent::ConfigurationRevisionApplied {
            configuration_id: CFG_MYSQL80_LIVE,
            revision: 3,
            restart_required: false,
            at: earlier(),
        },
    ]);
    given(&history)
        .when(apply_revision(CFG_MYSQL80_LIVE, 3, true))
        .then_nothing();
    given(&history)
        .when(apply_revision(CFG_MYSQL80, 9, true))
        .then_nothing();
}
