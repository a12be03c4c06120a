//! What the heartbeat supervisor reports (docs/providers.md "Heartbeats"): status changes
//! only, and `RecordGuestFailure` when it gives up restarting a database server.

use super::support::*;
use crate::instance::{
    ComputeStatus, DomainError, FaultInfo, InstanceCommand, InstanceEvent, ServiceStatus, Task,
    Viewer,
};

fn fault() -> FaultInfo {
    FaultInfo {
        message: "The database server keeps crashing: 5 restarts failed.".into(),
        details: "postgres: could not open configuration file".into(),
    }
}

fn failure() -> InstanceCommand {
    InstanceCommand::RecordGuestFailure { fault: fault() }
}

fn failed() -> InstanceEvent {
    InstanceEvent::GuestFailed {
        fault: fault(),
        at: earlier(),
    }
}

#[test]
fn a_heartbeat_without_a_change_records_nothing() {
    given(&ready())
        .when(InstanceCommand::RecordGuestStatus {
            status: ServiceStatus::Healthy,
        })
        .then_nothing();
}

#[test]
fn a_server_that_died_reads_shutdown_then_healthy_again() {
    let down = InstanceEvent::GuestStatusReported {
        status: ServiceStatus::Shutdown,
        at: earlier(),
    };
    let state = given(&ready_then(&[]))
        .when(InstanceCommand::RecordGuestStatus {
            status: ServiceStatus::Shutdown,
        })
        .then(&[InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Shutdown,
            at: now(),
        }]);
    let inputs = state.status_inputs();
    assert_eq!(inputs.status(Viewer::Show, false), "ACTIVE");
    assert_eq!(
        inputs.operating_status(Viewer::Show, now(), None),
        "SHUTDOWN"
    );
    let state = given(&ready_then(&[down]))
        .when(InstanceCommand::RecordGuestStatus {
            status: ServiceStatus::Healthy,
        })
        .then(&[InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Healthy,
            at: now(),
        }]);
    assert_eq!(
        state
            .status_inputs()
            .operating_status(Viewer::Show, now(), None),
        "HEALTHY"
    );
}

#[test]
fn giving_up_puts_the_instance_in_error_with_the_fault() {
    let state = given(&ready())
        .when(failure())
        .then(&[InstanceEvent::GuestFailed {
            fault: fault(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::None, "the task is left alone");
    assert_eq!(state.compute, Some(ComputeStatus::Error));
    assert_eq!(state.service, ServiceStatus::Failed);
    assert_eq!(state.status_inputs().status(Viewer::Show, false), "ERROR");
    let recorded = state.fault.expect("a fault");
    assert_eq!(recorded.message, fault().message);
    assert_eq!(recorded.created, now());
}

#[test]
fn giving_up_twice_records_once() {
    given(&ready_then(&[failed()]))
        .when(failure())
        .then_nothing();
}

#[test]
fn a_failed_instance_recovers_on_a_good_check_and_keeps_its_fault() {
    let state = given(&ready_then(&[failed()]))
        .when_all(&[
            InstanceCommand::RecordComputeStatus {
                status: ComputeStatus::Active,
            },
            InstanceCommand::RecordGuestStatus {
                status: ServiceStatus::Healthy,
            },
        ])
        .then(&[
            InstanceEvent::ComputeStatusChanged {
                status: ComputeStatus::Active,
                at: now(),
            },
            InstanceEvent::GuestStatusReported {
                status: ServiceStatus::Healthy,
                at: now(),
            },
        ]);
    let inputs = state.status_inputs();
    assert_eq!(inputs.status(Viewer::Show, false), "ACTIVE");
    assert_eq!(
        inputs.operating_status(Viewer::Show, now(), None),
        "HEALTHY"
    );
    assert!(state.fault.is_some(), "the fault stays as the last error");
}

#[test]
fn a_failed_instance_can_still_be_deleted() {
    let state = given(&ready_then(&[failed()]))
        .when(InstanceCommand::DeleteInstance)
        .then(&[InstanceEvent::InstanceDeletionRequested { at: now() }]);
    assert_eq!(state.task, Task::Deleting);
}

#[test]
fn a_failure_is_not_recorded_while_a_workflow_runs() {
    // Deleting (or building, upgrading…) belongs to the saga.
    given(&ready_then(&[InstanceEvent::InstanceDeletionRequested {
        at: earlier(),
    }]))
    .when(failure())
    .then_nothing();
}

#[test]
fn a_failure_before_a_server_exists_is_an_invalid_report() {
    given(&[created()])
        .when(failure())
        .then_err(DomainError::InvalidReport(
            "guest failure reported before a server exists".into(),
        ));
}
