//! Losses found outside the log (issue #12): the vault's key of an instance's sealed
//! passwords, and the cloud's server or volume of an instance. Each is recorded once,
//! never about a resource the instance no longer claims, and never in the middle of a
//! teardown (which takes "already gone" as done on its own).

use super::support::*;
use crate::instance::{
    ComputeStatus, DomainError, FaultInfo, InstanceCommand, InstanceEvent, ServiceStatus, Task,
    UserSpec, Viewer,
};

fn fault() -> FaultInfo {
    FaultInfo {
        message: "The cloud no longer has server server-1 of this instance.".into(),
        details: "found by the reconciliation at start".into(),
    }
}

fn server_lost() -> InstanceCommand {
    InstanceCommand::RecordResourcesLost {
        server_id: Some("server-1".into()),
        volume_id: None,
        fault: fault(),
    }
}

fn both_lost() -> InstanceCommand {
    InstanceCommand::RecordResourcesLost {
        server_id: Some("server-1".into()),
        volume_id: Some("volume-1".into()),
        fault: fault(),
    }
}

fn with_user() -> InstanceEvent {
    created_with(|c| {
        c.users = vec![UserSpec {
            name: "app".into(),
            host: "%".into(),
            password: sealed("pw"),
            databases: vec![],
        }]
    })
}

fn secrets_lost() -> InstanceCommand {
    InstanceCommand::RecordSecretsLost {
        reason: "secrets.db is missing".into(),
    }
}

#[test]
fn lost_secrets_of_an_instance_with_sealed_passwords_are_recorded_once() {
    let event = InstanceEvent::InstanceSecretsLost {
        reason: "secrets.db is missing".into(),
        at: now(),
    };
    let state = given(&ready_from(with_user()))
        .when(secrets_lost())
        .then(std::slice::from_ref(&event));
    assert!(state.secrets_lost);
    // Nothing else changes: the running database still has its passwords.
    assert_eq!(state.command_status(), "ACTIVE");
    given(&[ready_from(with_user()), vec![event]].concat())
        .when(secrets_lost())
        .then_nothing();
}

#[test]
fn lost_secrets_of_an_instance_without_sealed_passwords_decide_nothing() {
    given(&ready()).when(secrets_lost()).then_nothing();
}

#[test]
fn lost_secrets_of_a_missing_or_deleted_instance() {
    given(&[])
        .when(secrets_lost())
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
    given(&[ready_from(with_user()), deleted()].concat())
        .when(secrets_lost())
        .then_nothing();
}

#[test]
fn a_lost_server_of_a_ready_instance_puts_it_in_error_without_addresses() {
    let state = given(&ready())
        .when(both_lost())
        .then(&[InstanceEvent::InstanceResourcesLost {
            server_id: Some("server-1".into()),
            volume_id: Some("volume-1".into()),
            fault: fault(),
            at: now(),
        }]);
    assert_eq!(state.server_id, None);
    assert_eq!(state.volume_id, None);
    assert_eq!(state.compute, None);
    assert!(state.addresses.is_empty());
    assert_eq!(state.volume_usage, None);
    assert_eq!(state.service, ServiceStatus::Shutdown);
    assert_eq!(state.task, Task::BuildingErrorServer);
    assert!(!state.build_failed, "nothing to compensate");
    assert_eq!(state.command_status(), "ERROR");
    assert_eq!(state.status_inputs().status(Viewer::List, false), "ERROR");
    assert_eq!(
        state.fault.as_ref().map(|f| f.message.as_str()),
        Some(fault().message.as_str())
    );
}

#[test]
fn a_lost_server_is_recorded_once_and_only_the_claimed_resource_is_named() {
    let history = ready_then(&[InstanceEvent::InstanceResourcesLost {
        server_id: Some("server-1".into()),
        volume_id: None,
        fault: fault(),
        at: earlier(),
    }]);
    given(&history).when(server_lost()).then_nothing();
    // The volume is still claimed: a later check that finds it gone records that alone.
    given(&history)
        .when(both_lost())
        .then(&[InstanceEvent::InstanceResourcesLost {
            server_id: None,
            volume_id: Some("volume-1".into()),
            fault: fault(),
            at: now(),
        }]);
    // A server the instance does not claim (an old id) is no loss of this instance.
    given(&ready())
        .when(InstanceCommand::RecordResourcesLost {
            server_id: Some("server-0".into()),
            volume_id: None,
            fault: fault(),
        })
        .then_nothing();
}

#[test]
fn a_lost_instance_can_be_deleted_and_teardown_has_nothing_left_to_delete() {
    let history = ready_then(&[InstanceEvent::InstanceResourcesLost {
        server_id: Some("server-1".into()),
        volume_id: Some("volume-1".into()),
        fault: fault(),
        at: earlier(),
    }]);
    given(&history)
        .when(InstanceCommand::DeleteInstance)
        .then(&[InstanceEvent::InstanceDeletionRequested { at: now() }]);
}

#[test]
fn a_loss_seen_during_teardown_or_compensation_decides_nothing() {
    let deleting = ready_then(&[InstanceEvent::InstanceDeletionRequested { at: earlier() }]);
    given(&deleting).when(both_lost()).then_nothing();
    let failed = [
        building_with_server(ComputeStatus::Error),
        vec![InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorTimeoutGa,
            fault: fault(),
            at: earlier(),
        }],
    ]
    .concat();
    given(&failed).when(server_lost()).then_nothing();
}

#[test]
fn a_loss_during_a_build_fails_the_build_so_its_remains_are_released() {
    let building = building_with_server(ComputeStatus::Build);
    let state =
        given(&building)
            .when(server_lost())
            .then(&[InstanceEvent::InstanceResourcesLost {
                server_id: Some("server-1".into()),
                volume_id: None,
                fault: fault(),
                at: now(),
            }]);
    assert!(state.build_failed);
    assert_eq!(state.task, Task::BuildingErrorServer);
    // Late saga reports of the build change nothing any more.
    given(
        &[
            building,
            vec![InstanceEvent::InstanceResourcesLost {
                server_id: Some("server-1".into()),
                volume_id: None,
                fault: fault(),
                at: earlier(),
            }],
        ]
        .concat(),
    )
    .when(InstanceCommand::CompleteProvisioning)
    .then_nothing();
}

#[test]
fn a_loss_of_a_deleted_instance_decides_nothing() {
    given(&[ready(), deleted()].concat())
        .when(both_lost())
        .then_nothing();
}
