//! What the provisioning saga reports (lifecycle §7): each report is idempotent, late
//! reports about a finished step or a deleted instance decide nothing.

use super::support::*;
use crate::fault::Fault;
use crate::instance::{
    Access, Address, ComputeStatus, DomainError, FaultInfo, InstanceCommand, InstanceEvent,
    ServiceStatus, Task,
};

fn fault(message: &str) -> FaultInfo {
    FaultInfo {
        message: message.into(),
        details: "trace".into(),
    }
}

fn address() -> Address {
    Address {
        address: "10.1.0.62".into(),
        kind: "private".into(),
        network: Some("net-1".into()),
        port: None,
    }
}

fn access() -> Access {
    Access {
        is_public: true,
        allowed_cidrs: vec!["10.0.0.0/8".into()],
    }
}

/// Every saga report, for the "applies to any state" tests.
fn all_reports() -> Vec<InstanceCommand> {
    use InstanceCommand::*;
    vec![
        RecordVolumeCreated {
            volume_id: "volume-2".into(),
            size: 5,
            volume_type: None,
        },
        RecordServerCreated {
            server_id: "server-2".into(),
        },
        RecordComputeStatus {
            status: ComputeStatus::Error,
        },
        RecordGuestStatus {
            status: ServiceStatus::Running,
        },
        RecordAddresses {
            addresses: vec![address()],
        },
        CompleteProvisioning,
        FailProvisioning {
            task: Task::BuildingErrorServer,
            fault: fault("x"),
        },
        CompleteUpgrade,
        FailUpgrade { fault: fault("x") },
        CompleteReplicaDetach,
        FailReplicaDetach { fault: fault("x") },
        CompleteAccessUpdate,
        FailAccessUpdate { fault: fault("x") },
        CompleteDeletion,
    ]
}

#[test]
fn report_about_a_missing_instance_is_not_found() {
    for cmd in all_reports() {
        given(&[])
            .when(cmd)
            .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
    }
}

#[test]
fn late_reports_about_a_deleted_instance_decide_nothing() {
    let history = [ready(), deleted()].concat();
    for cmd in all_reports() {
        given(&history).when(cmd).then_nothing();
    }
    // Even a malformed one (a non-error task) is simply ignored.
    given(&history)
        .when(InstanceCommand::FailProvisioning {
            task: Task::None,
            fault: fault("x"),
        })
        .then_nothing();
}

// ---- volume, server, compute, guest, addresses -----------------------------------------

#[test]
fn volume_created_is_recorded_once() {
    let cmd = InstanceCommand::RecordVolumeCreated {
        volume_id: "volume-1".into(),
        size: 5,
        volume_type: Some("ssd".into()),
    };
    let state = given(&[created()])
        .when(cmd.clone())
        .then(&[InstanceEvent::VolumeCreated {
            volume_id: "volume-1".into(),
            size: 5,
            volume_type: Some("ssd".into()),
            at: now(),
        }]);
    assert_eq!(state.volume_id.as_deref(), Some("volume-1"));
    given(&[created(), volume_created()])
        .when(cmd)
        .then_nothing();
}

#[test]
fn server_created_is_recorded_once() {
    let cmd = InstanceCommand::RecordServerCreated {
        server_id: "server-1".into(),
    };
    let state = given(&[created()])
        .when(cmd.clone())
        .then(&[InstanceEvent::ServerCreated {
            server_id: "server-1".into(),
            at: now(),
        }]);
    assert_eq!(state.server_id.as_deref(), Some("server-1"));
    assert_eq!(state.compute, Some(ComputeStatus::Build));
    given(&[created(), server_created()])
        .when(cmd)
        .then_nothing();
}

#[test]
fn compute_status_change_is_recorded_once() {
    let cmd = InstanceCommand::RecordComputeStatus {
        status: ComputeStatus::Active,
    };
    given(&[created(), server_created()])
        .when(cmd.clone())
        .then(&[InstanceEvent::ComputeStatusChanged {
            status: ComputeStatus::Active,
            at: now(),
        }]);
    given(&building_with_server(ComputeStatus::Active))
        .when(cmd)
        .then_nothing();
}

#[test]
fn compute_status_before_a_server_exists_is_an_invalid_report() {
    let err = given(&[created()])
        .when(InstanceCommand::RecordComputeStatus {
            status: ComputeStatus::Active,
        })
        .then_err(DomainError::InvalidReport(
            "compute status reported before a server exists".into(),
        ));
    assert_eq!(err.fault(), Fault::BadRequest);
}

#[test]
fn an_unchanged_guest_status_is_not_recorded_again() {
    // Reports are idempotent: a retried or replayed step must not append again.
    // (Periodic heartbeats that only refresh the time are a separate, later concern.)
    given(&ready())
        .when(InstanceCommand::RecordGuestStatus {
            status: ServiceStatus::Healthy,
        })
        .then_nothing();
}

#[test]
fn a_changed_guest_status_is_recorded_with_its_time() {
    let state = given(&ready())
        .when(InstanceCommand::RecordGuestStatus {
            status: ServiceStatus::Shutdown,
        })
        .then(&[InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Shutdown,
            at: now(),
        }]);
    assert_eq!(state.service_updated, now());
}

#[test]
fn addresses_are_recorded_once() {
    let cmd = InstanceCommand::RecordAddresses {
        addresses: vec![address()],
    };
    let state = given(&ready())
        .when(cmd.clone())
        .then(&[InstanceEvent::AddressesAssigned {
            addresses: vec![address()],
            at: now(),
        }]);
    assert_eq!(state.addresses, vec![address()]);
    given(&ready_then(&[InstanceEvent::AddressesAssigned {
        addresses: vec![address()],
        at: earlier(),
    }]))
    .when(cmd)
    .then_nothing();
}

// ---- provisioning ----------------------------------------------------------------------

#[test]
fn building_instance_complete_provisioning_is_recorded_once() {
    let history = vec![
        created(),
        volume_created(),
        server_created(),
        compute(ComputeStatus::Active),
        guest(ServiceStatus::Healthy),
    ];
    let state = given(&history)
        .when(InstanceCommand::CompleteProvisioning)
        .then(&[InstanceEvent::ProvisioningCompleted { at: now() }]);
    assert_eq!(state.task, Task::None);
    assert_eq!(state.command_status(), "ACTIVE");
    given(&ready())
        .when(InstanceCommand::CompleteProvisioning)
        .then_nothing();
}

#[test]
fn build_error_complete_provisioning_decides_nothing() {
    given(&[
        created(),
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorPort,
            fault: fault("Failed to create User port"),
            at: earlier(),
        },
    ])
    .when(InstanceCommand::CompleteProvisioning)
    .then_nothing();
}

#[test]
fn deleting_instance_provisioning_reports_decide_nothing() {
    let history = vec![
        created(),
        server_created(),
        compute(ComputeStatus::Error),
        InstanceEvent::InstanceDeletionRequested { at: earlier() },
    ];
    given(&history)
        .when(InstanceCommand::CompleteProvisioning)
        .then_nothing();
    given(&history)
        .when(InstanceCommand::FailProvisioning {
            task: Task::BuildingErrorTimeoutGa,
            fault: fault("Polling request timed out."),
        })
        .then_nothing();
}

#[test]
fn building_instance_fail_provisioning_records_task_and_fault() {
    let f = fault("Failed to create server for instance");
    let cmd = InstanceCommand::FailProvisioning {
        task: Task::BuildingErrorServer,
        fault: f.clone(),
    };
    let state = given(&[created()])
        .when(cmd.clone())
        .then(&[InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorServer,
            fault: f.clone(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::BuildingErrorServer);
    assert_eq!(
        state.fault.as_ref().map(|x| x.message.as_str()),
        Some(f.message.as_str())
    );
    assert_eq!(state.command_status(), "ERROR");
    // A second identical report decides nothing.
    given(&[
        created(),
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorServer,
            fault: f,
            at: earlier(),
        },
    ])
    .when(cmd)
    .then_nothing();
}

#[test]
fn fail_provisioning_with_a_non_error_task_is_refused() {
    for task in [Task::None, Task::Building, Task::Deleting, Task::Upgrading] {
        let err = given(&[created()])
            .when(InstanceCommand::FailProvisioning {
                task,
                fault: fault("x"),
            })
            .then_err(DomainError::InvalidReport(format!(
                "{} is not an error task",
                task.description()
            )));
        assert_eq!(err.fault(), Fault::BadRequest);
    }
}

#[test]
fn ready_instance_fail_provisioning_decides_nothing() {
    given(&ready())
        .when(InstanceCommand::FailProvisioning {
            task: Task::BuildingErrorServer,
            fault: fault("late"),
        })
        .then_nothing();
}

// ---- upgrade ---------------------------------------------------------------------------

#[test]
fn upgrading_instance_complete_upgrade_is_recorded_once() {
    let history = ready_then(&[upgrade_requested(V_MYSQL_57)]);
    let state = given(&history)
        .when(InstanceCommand::CompleteUpgrade)
        .then(&[InstanceEvent::DatastoreVersionUpgraded { at: now() }]);
    assert_eq!(state.task, Task::None);
    assert_eq!(state.service, ServiceStatus::Healthy);
    assert_eq!(state.datastore, Some(version_ref(V_MYSQL_57)));
    let done = [
        history,
        vec![InstanceEvent::DatastoreVersionUpgraded { at: earlier() }],
    ]
    .concat();
    given(&done)
        .when(InstanceCommand::CompleteUpgrade)
        .then_nothing();
    given(&done)
        .when(InstanceCommand::FailUpgrade { fault: fault("x") })
        .then_nothing();
}

#[test]
fn upgrading_instance_fail_upgrade_is_an_error_and_keeps_the_new_version() {
    let f = fault("upgrade failed");
    let history = ready_then(&[upgrade_requested(V_MYSQL_57)]);
    let state = given(&history)
        .when(InstanceCommand::FailUpgrade { fault: f.clone() })
        .then(&[InstanceEvent::DatastoreVersionUpgradeFailed {
            fault: f.clone(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::BuildingErrorServer);
    assert_eq!(state.command_status(), "ERROR");
    assert_eq!(state.datastore, Some(version_ref(V_MYSQL_57)));
    assert!(state.fault.is_some());
    let failed = [
        history,
        vec![InstanceEvent::DatastoreVersionUpgradeFailed {
            fault: f.clone(),
            at: earlier(),
        }],
    ]
    .concat();
    given(&failed)
        .when(InstanceCommand::FailUpgrade { fault: f })
        .then_nothing();
}

#[test]
fn idle_instance_upgrade_reports_decide_nothing() {
    given(&ready())
        .when(InstanceCommand::CompleteUpgrade)
        .then_nothing();
    given(&ready())
        .when(InstanceCommand::FailUpgrade { fault: fault("x") })
        .then_nothing();
}

// ---- replica detach --------------------------------------------------------------------

#[test]
fn detaching_replica_complete_detach_clears_replica_of_once() {
    let history = [
        ready_replica(),
        vec![InstanceEvent::ReplicaDetachRequested { at: earlier() }],
    ]
    .concat();
    let state = given(&history)
        .when(InstanceCommand::CompleteReplicaDetach)
        .then(&[InstanceEvent::ReplicaDetached {
            primary_id: PRIMARY,
            at: now(),
        }]);
    assert_eq!(state.replica_of, None);
    assert_eq!(state.task, Task::None);
    let done = [
        history,
        vec![InstanceEvent::ReplicaDetached {
            primary_id: PRIMARY,
            at: earlier(),
        }],
    ]
    .concat();
    given(&done)
        .when(InstanceCommand::CompleteReplicaDetach)
        .then_nothing();
}

#[test]
fn detaching_replica_fail_detach_stays_a_replica_with_a_fault() {
    let f = fault("detach failed");
    let history = [
        ready_replica(),
        vec![InstanceEvent::ReplicaDetachRequested { at: earlier() }],
    ]
    .concat();
    let state = given(&history)
        .when(InstanceCommand::FailReplicaDetach { fault: f.clone() })
        .then(&[InstanceEvent::ReplicaDetachFailed {
            fault: f.clone(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::None);
    assert_eq!(state.replica_of, Some(PRIMARY));
    assert!(state.fault.is_some());
    let failed = [
        history,
        vec![InstanceEvent::ReplicaDetachFailed {
            fault: f.clone(),
            at: earlier(),
        }],
    ]
    .concat();
    given(&failed)
        .when(InstanceCommand::FailReplicaDetach { fault: f })
        .then_nothing();
}

#[test]
fn idle_replica_detach_reports_decide_nothing() {
    given(&ready_replica())
        .when(InstanceCommand::CompleteReplicaDetach)
        .then_nothing();
    given(&ready_replica())
        .when(InstanceCommand::FailReplicaDetach { fault: fault("x") })
        .then_nothing();
}

// ---- access ----------------------------------------------------------------------------

#[test]
fn updating_instance_complete_access_update_applies_the_pending_access_once() {
    let history = ready_then(&[InstanceEvent::AccessUpdateRequested {
        access: access(),
        at: earlier(),
    }]);
    let state = given(&history)
        .when(InstanceCommand::CompleteAccessUpdate)
        .then(&[InstanceEvent::AccessUpdated {
            access: access(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::None);
    assert_eq!(state.pending_access, None);
    assert_eq!(
        state.access,
        Some(serde_json::json!({"is_public": true, "allowed_cidrs": ["10.0.0.0/8"]}))
    );
    let done = [
        history,
        vec![InstanceEvent::AccessUpdated {
            access: access(),
            at: earlier(),
        }],
    ]
    .concat();
    given(&done)
        .when(InstanceCommand::CompleteAccessUpdate)
        .then_nothing();
}

#[test]
fn updating_instance_fail_access_update_is_an_error() {
    let f = fault("port failed");
    let history = ready_then(&[InstanceEvent::AccessUpdateRequested {
        access: access(),
        at: earlier(),
    }]);
    let state = given(&history)
        .when(InstanceCommand::FailAccessUpdate { fault: f.clone() })
        .then(&[InstanceEvent::AccessUpdateFailed {
            fault: f.clone(),
            at: now(),
        }]);
    assert_eq!(state.task, Task::UpdatingErrorAccess);
    assert_eq!(state.command_status(), "ERROR");
    assert_eq!(state.pending_access, None);
    let failed = [
        history,
        vec![InstanceEvent::AccessUpdateFailed {
            fault: f.clone(),
            at: earlier(),
        }],
    ]
    .concat();
    given(&failed)
        .when(InstanceCommand::FailAccessUpdate { fault: f })
        .then_nothing();
}

#[test]
fn idle_instance_access_reports_decide_nothing() {
    given(&ready())
        .when(InstanceCommand::CompleteAccessUpdate)
        .then_nothing();
    given(&ready())
        .when(InstanceCommand::FailAccessUpdate { fault: fault("x") })
        .then_nothing();
}

// ---- deletion --------------------------------------------------------------------------

#[test]
fn deleting_instance_complete_deletion_soft_deletes_once() {
    let history = ready_then(&[InstanceEvent::InstanceDeletionRequested { at: earlier() }]);
    let state = given(&history)
        .when(InstanceCommand::CompleteDeletion)
        .then(&[InstanceEvent::InstanceDeleted { at: now() }]);
    assert!(state.deleted);
    assert!(!state.is_live());
    assert_eq!(state.deleted_at, Some(now()));
    given(&[ready(), deleted()].concat())
        .when(InstanceCommand::CompleteDeletion)
        .then_nothing();
}

#[test]
fn live_instance_complete_deletion_decides_nothing() {
    given(&ready())
        .when(InstanceCommand::CompleteDeletion)
        .then_nothing();
}

// ---- provisioning steps added with the provider ports -------------------------------

#[test]
fn guest_prepared_is_recorded_once() {
    let history = vec![created(), volume_created(), server_created()];
    let state = given(&history)
        .when(InstanceCommand::RecordGuestPrepared)
        .then(&[InstanceEvent::GuestPrepared { at: now() }]);
    assert!(state.guest_prepared);
    let mut again = history.clone();
    again.push(InstanceEvent::GuestPrepared { at: earlier() });
    given(&again)
        .when(InstanceCommand::RecordGuestPrepared)
        .then_nothing();
}

#[test]
fn volume_usage_is_recorded_when_it_changes() {
    let cmd = InstanceCommand::RecordVolumeUsage {
        used: 0.12,
        total: 4.9,
    };
    let state = given(&ready())
        .when(cmd.clone())
        .then(&[InstanceEvent::VolumeUsageReported {
            used: 0.12,
            total: 4.9,
            at: now(),
        }]);
    assert_eq!(state.volume_usage, Some((0.12, 4.9)));
    given(&ready_then(&[InstanceEvent::VolumeUsageReported {
        used: 0.12,
        total: 4.9,
        at: earlier(),
    }]))
    .when(cmd)
    .then_nothing();
}

#[test]
fn deleting_the_server_and_volume_clears_them_once() {
    let state = given(&ready())
        .when(InstanceCommand::RecordServerDeleted {
            server_id: "server-1".into(),
        })
        .then(&[InstanceEvent::ServerDeleted {
            server_id: "server-1".into(),
            at: now(),
        }]);
    assert_eq!(state.server_id, None);
    assert!(state.addresses.is_empty());
    // Another server's deletion, or a repeated one, is not a fact about this instance.
    given(&ready())
        .when(InstanceCommand::RecordServerDeleted {
            server_id: "server-9".into(),
        })
        .then_nothing();
    let state = given(&ready())
        .when(InstanceCommand::RecordVolumeDeleted {
            volume_id: "volume-1".into(),
        })
        .then(&[InstanceEvent::VolumeDeleted {
            volume_id: "volume-1".into(),
            at: now(),
        }]);
    assert_eq!(state.volume_id, None);
}

#[test]
fn resources_released_only_after_a_failed_build_and_only_once() {
    given(&ready())
        .when(InstanceCommand::RecordResourcesReleased)
        .then_nothing();
    let failed = vec![
        created(),
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorVolume,
            fault: FaultInfo {
                message: "Failed to create volume".into(),
                details: "d".into(),
            },
            at: earlier(),
        },
    ];
    let state = given(&failed)
        .when(InstanceCommand::RecordResourcesReleased)
        .then(&[InstanceEvent::ResourcesReleased { at: now() }]);
    assert!(state.resources_released);
    assert_eq!(state.command_status(), "ERROR");
    let mut done = failed.clone();
    done.push(InstanceEvent::ResourcesReleased { at: earlier() });
    given(&done)
        .when(InstanceCommand::RecordResourcesReleased)
        .then_nothing();
}

#[test]
fn guest_configuration_is_recorded_when_it_changes() {
    let cmd = InstanceCommand::RecordGuestConfiguration {
        configuration_id: None,
        revision: 0,
        in_force: false,
    };
    let state =
        given(&ready())
            .when(cmd.clone())
            .then(&[InstanceEvent::GuestConfigurationApplied {
                configuration_id: None,
                revision: 0,
                in_force: false,
                at: now(),
            }]);
    assert_eq!(state.guest_configuration, Some((None, 0)));
    given(&ready_then(&[InstanceEvent::GuestConfigurationApplied {
        configuration_id: None,
        revision: 0,
        in_force: false,
        at: earlier(),
    }]))
    .when(cmd)
    .then_nothing();
}

// ---- configuration refused by the guest ------------------------------------------------

#[test]
fn a_refused_configuration_is_recorded_once_with_its_fault_and_ends_restart_required() {
    let group = uuid::Uuid::from_u128(0x6c);
    let cmd = InstanceCommand::RecordConfigurationRefused {
        configuration_id: Some(group),
        revision: 0,
        fault: fault("shared_buffers: invalid value \"lots\""),
    };
    let refused = InstanceEvent::GuestConfigurationRefused {
        configuration_id: Some(group),
        revision: 0,
        fault: fault("shared_buffers: invalid value \"lots\""),
        at: now(),
    };
    let state = given(&ready_then(&[attached(group, true)]))
        .when(cmd.clone())
        .then(std::slice::from_ref(&refused));
    assert_eq!(state.refused_configuration, Some((Some(group), 0)));
    assert_eq!(state.task, Task::None, "nothing waits for a restart");
    let shown = state.fault.expect("the fault is shown");
    assert!(shown.message.contains("lots"), "{shown:?}");
    // Idempotent, and only about what is attached now.
    given(&ready_then(&[attached(group, true), refused]))
        .when(cmd.clone())
        .then_nothing();
    given(&ready()).when(cmd).then_nothing();
}
