//! `DeleteInstance` (spec `instances-api.md` §12, lifecycle §5.3 and §7.2).

use super::support::*;
use crate::fault::Fault;
use crate::instance::{
    ComputeStatus, DomainError, FaultInfo, InstanceCommand, InstanceEvent, ReplicaSetSwitch, Task,
};

fn delete() -> InstanceCommand {
    InstanceCommand::DeleteInstance
}

fn deletion_requested() -> InstanceEvent {
    InstanceEvent::InstanceDeletionRequested { at: now() }
}

fn failed(task: Task) -> InstanceEvent {
    InstanceEvent::ProvisioningFailed {
        task,
        fault: FaultInfo {
            message: "Failed to create server".into(),
            details: "trace".into(),
        },
        at: earlier(),
    }
}

#[test]
fn ready_instance_delete_is_requested() {
    let state = given(&ready_then(&[attached(CFG_MYSQL80_LIVE, false)]))
        .when(delete())
        .then(&[deletion_requested()]);
    assert_eq!(state.task, Task::Deleting);
    assert_eq!(
        state.configuration_id, None,
        "the group is detached at once"
    );
    assert_eq!(state.command_status(), "SHUTDOWN");
    assert!(!state.deleted, "soft-deleted only when teardown completes");
}

#[test]
fn building_instance_delete_is_unprocessable() {
    let err = given(&[created()])
        .when(delete())
        .then_err(DomainError::InstanceBuilding(INSTANCE));
    assert_eq!(
        err.to_string(),
        format!("Instance {INSTANCE} is not ready. (Status is BUILD).")
    );
    assert_eq!(err.fault(), Fault::UnprocessableEntity);
}

#[test]
fn building_instance_with_active_server_delete_is_unprocessable() {
    given(&building_with_server(ComputeStatus::Active))
        .when(delete())
        .then_err(DomainError::InstanceBuilding(INSTANCE));
}

#[test]
fn building_instance_whose_server_failed_may_be_deleted() {
    // Lifecycle §3 rule 2: commands see the real compute status, ERROR → status ERROR.
    given(&building_with_server(ComputeStatus::Error))
        .when(delete())
        .then(&[deletion_requested()]);
}

#[test]
fn build_error_task_may_be_deleted_with_or_without_server() {
    for history in [
        vec![created(), failed(Task::BuildingErrorPort)],
        [
            building_with_server(ComputeStatus::Build),
            vec![failed(Task::BuildingErrorServer)],
        ]
        .concat(),
        vec![created(), failed(Task::BuildingErrorTimeoutGa)],
    ] {
        given(&history).when(delete()).then(&[deletion_requested()]);
    }
}

#[test]
fn every_non_build_status_may_be_deleted() {
    let histories = [
        ready_then(&[upgrade_requested(V_MYSQL_57)]),
        ready_then(&[attached(CFG_MYSQL80, true)]),
        ready_then(&[InstanceEvent::ReplicaDetachRequested { at: earlier() }]),
        ready_then(&[compute(ComputeStatus::Reboot)]),
        ready_then(&[compute(ComputeStatus::Shutoff)]),
        ready_then(&[compute(ComputeStatus::Error)]),
    ];
    for h in histories {
        given(&h).when(delete()).then(&[deletion_requested()]);
    }
}

#[test]
fn deleting_instance_delete_again_is_a_no_op() {
    given(&ready_then(&[InstanceEvent::InstanceDeletionRequested {
        at: earlier(),
    }]))
    .when(delete())
    .then_nothing();
}

#[test]
fn deleted_instance_delete_is_not_found() {
    let err = given(&[ready(), deleted()].concat())
        .when(delete())
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
    assert_eq!(err.fault(), Fault::ItemNotFound);
}

#[test]
fn missing_instance_delete_is_not_found() {
    given(&[])
        .when(delete())
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn other_projects_instance_delete_is_not_found() {
    given(&ready())
        .caller(other_project())
        .when(delete())
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn admin_may_delete_another_projects_instance() {
    given(&ready())
        .caller(admin())
        .when(delete())
        .then(&[deletion_requested()]);
}

#[test]
fn primary_with_live_replicas_delete_is_forbidden() {
    let err = given(&ready())
        .catalog(|c| c.live_replicas = vec![(INSTANCE, 2)])
        .when(delete())
        .then_err(DomainError::ReplicaSourceDeleteForbidden);
    assert_eq!(
        err.to_string(),
        "Detach replicas before deleting replica source."
    );
    assert_eq!(err.fault(), Fault::Forbidden);
}

#[test]
fn replica_itself_may_be_deleted() {
    given(&ready_replica())
        .when(delete())
        .then(&[deletion_requested()]);
}

#[test]
fn build_wins_over_replicas() {
    given(&[created()])
        .catalog(|c| c.live_replicas = vec![(INSTANCE, 1)])
        .when(delete())
        .then_err(DomainError::InstanceBuilding(INSTANCE));
}

#[test]
fn delete_without_server_is_fine_once_not_building() {
    // DELETE, unlike PUT, does not need a compute server (lifecycle §5.4).
    given(&[created(), failed(Task::BuildingErrorVolume)])
        .when(delete())
        .then(&[deletion_requested()]);
}

#[test]
fn a_member_of_a_switching_replica_set_delete_is_unprocessable() {
    // Stricter than upstream: the set would be left half switched. reset_status first.
    let switch = ReplicaSetSwitch {
        old_primary_id: PRIMARY,
        new_primary_id: Some(INSTANCE),
        replica_ids: vec![INSTANCE],
        requested_at: 6,
    };
    let histories = [
        (
            InstanceEvent::ReplicaSourcePromotionRequested {
                switch: switch.clone(),
                at: earlier(),
            },
            "PROMOTING",
        ),
        (
            InstanceEvent::ReplicaSourceEjectionRequested {
                switch,
                at: earlier(),
            },
            "EJECTING",
        ),
    ];
    for (requested, value) in histories {
        let history = ready_then(&[requested]);
        let e = given(&history)
            .when(delete())
            .then_err(DomainError::NotAvailableForAction {
                id: INSTANCE,
                kind: "task",
                value: value.into(),
            });
        assert_eq!(e.fault(), Fault::UnprocessableEntity);
        // An admin's reset_status is the way out.
        let reset = InstanceEvent::InstanceStatusReset {
            task: Task::Promoting,
            at: earlier(),
        };
        given(&[history, vec![reset]].concat())
            .when(delete())
            .then(&[deletion_requested()]);
    }
}
