//! Instance actions: restart, flavor resize, volume resize, reset status (spec
//! `instance-lifecycle.md` §5.1, §7.8, §8; upstream `Instance.restart`, `resize_flavor`,
//! `resize_volume`, `reset_status`).

use super::support::*;
use crate::fault::Fault;
use crate::instance::{
    ComputeStatus, DomainError, FaultInfo, FlavorRef, InstanceCommand as C, InstanceEvent as E,
    ServiceStatus, Task,
};

fn fault() -> FaultInfo {
    FaultInfo {
        message: "boom".into(),
        details: "trace".into(),
    }
}

fn flavor(id: &str, ram: u32) -> FlavorRef {
    FlavorRef { id: id.into(), ram }
}

fn resize_flavor(id: &str) -> C {
    C::ResizeFlavor {
        flavor_ref: id.into(),
    }
}

fn resize_volume(size: u64) -> C {
    C::ResizeVolume { size }
}

fn not_available(kind: &'static str, value: &str) -> DomainError {
    DomainError::NotAvailableForAction {
        id: INSTANCE,
        kind,
        value: value.into(),
    }
}

fn restart_requested() -> E {
    E::InstanceRestartRequested { at: earlier() }
}

fn flavor_resize_requested() -> E {
    E::FlavorResizeRequested {
        from: flavor("7", 2048),
        to: flavor("8", 4096),
        at: earlier(),
    }
}

fn volume_resize_requested() -> E {
    E::VolumeResizeRequested {
        from: 5,
        to: 8,
        at: earlier(),
    }
}

// ---- restart ---------------------------------------------------------------------------

#[test]
fn ready_instance_restart_is_rebooting_then_healthy() {
    let s = given(&ready())
        .when(C::RestartInstance)
        .then(&[E::InstanceRestartRequested { at: now() }]);
    assert_eq!(s.task, Task::Rebooting);
    assert_eq!(s.service, ServiceStatus::Restarting);
    assert_eq!(s.command_status(), "REBOOT");
    let s = given(&ready_then(&[restart_requested()]))
        .when(C::CompleteRestart)
        .then(&[E::InstanceRestarted { at: now() }]);
    assert_eq!(s.command_status(), "ACTIVE");
    assert_eq!(s.service, ServiceStatus::Healthy);
}

#[test]
fn failed_restart_is_idle_again_with_a_fault() {
    let s = given(&ready_then(&[restart_requested()]))
        .when(C::FailRestart { fault: fault() })
        .then(&[E::InstanceRestartFailed {
            fault: fault(),
            at: now(),
        }]);
    assert_eq!(s.task, Task::None);
    assert_eq!(s.command_status(), "ACTIVE");
    assert_eq!(s.fault.map(|f| f.message), Some("boom".to_string()));
}

#[test]
fn building_instance_restart_is_refused_by_the_gate() {
    given(&building_with_server(ComputeStatus::Active))
        .when(C::RestartInstance)
        .then_err(not_available("task", "BUILDING"));
    given(&[created()])
        .when(C::RestartInstance)
        .then_err(not_available("instance", "SHUTDOWN"));
}

#[test]
fn errored_instance_actions_are_refused() {
    let failed = E::ProvisioningFailed {
        task: Task::BuildingErrorServer,
        fault: fault(),
        at: earlier(),
    };
    let e = given(&ready_then(&[failed]))
        .when(resize_volume(8))
        .then_err(not_available("task", "BUILDING"));
    assert_eq!(e.fault(), Fault::UnprocessableEntity);
}

#[test]
fn rebooting_instance_second_restart_is_refused() {
    given(&ready_then(&[restart_requested()]))
        .when(C::RestartInstance)
        .then_err(not_available("task", "REBOOTING"));
}

#[test]
fn other_projects_instance_action_is_not_found() {
    given(&ready())
        .caller(other_project())
        .when(C::RestartInstance)
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
    given(&ready())
        .caller(other_project())
        .when(C::ResetStatus)
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn late_restart_report_changes_nothing() {
    given(&ready()).when(C::CompleteRestart).then_nothing();
    given(&ready())
        .when(C::FailResize { fault: fault() })
        .then_nothing();
}

// ---- flavor resize ---------------------------------------------------------------------

#[test]
fn flavor_resize_is_resizing_then_runs_on_the_new_flavor() {
    let s = given(&ready())
        .when(resize_flavor("8"))
        .then(&[E::FlavorResizeRequested {
            from: flavor("7", 2048),
            to: flavor("8", 4096),
            at: now(),
        }]);
    assert_eq!(s.command_status(), "RESIZE");
    assert_eq!(
        s.quota_ram(),
        4096,
        "the larger flavor is charged meanwhile"
    );
    let s = given(&ready_then(&[flavor_resize_requested()]))
        .when(C::CompleteResize)
        .then(&[E::FlavorResized {
            flavor: flavor("8", 4096),
            at: now(),
        }]);
    assert_eq!(s.flavor, flavor("8", 4096));
    assert_eq!(s.task, Task::None);
    assert_eq!(s.quota_ram(), 4096);
}

#[test]
fn failed_flavor_resize_keeps_the_old_flavor_and_its_charge() {
    let s = given(&ready_then(&[flavor_resize_requested()]))
        .when(C::FailResize { fault: fault() })
        .then(&[E::FlavorResizeFailed {
            fault: fault(),
            at: now(),
        }]);
    assert_eq!(s.flavor, flavor("7", 2048));
    assert_eq!(s.quota_ram(), 2048);
    assert_eq!(s.command_status(), "ACTIVE");
    assert!(s.fault.is_some());
}

#[test]
fn flavor_resize_to_the_same_flavor_is_a_bad_request() {
    let e = given(&ready())
        .when(resize_flavor("7"))
        .then_err(DomainError::ResizeToSameFlavor("7".into()));
    assert_eq!(e.fault(), Fault::BadRequest);
    assert_eq!(
        e.to_string(),
        "The new flavor id must be different than the current flavor id of '7'."
    );
}

#[test]
fn flavor_resize_to_an_unknown_flavor_is_refused() {
    given(&ready())
        .when(resize_flavor("99"))
        .then_err(DomainError::FlavorNotFound("99".into()));
}

#[test]
fn flavor_resize_beyond_the_ram_quota_is_over_limit() {
    let e = given(&ready())
        .catalog(|c| {
            c.quota.ram = 2048;
            c.quota.ram_limit = 4000;
        })
        .when(resize_flavor("8"))
        .then_err(DomainError::QuotaExceeded(vec!["ram".into()]));
    assert_eq!(e.fault(), Fault::OverLimit);
}

// ---- volume resize ---------------------------------------------------------------------

#[test]
fn volume_resize_is_resizing_then_has_the_new_size() {
    let s = given(&ready())
        .when(resize_volume(8))
        .then(&[E::VolumeResizeRequested {
            from: 5,
            to: 8,
            at: now(),
        }]);
    assert_eq!(s.command_status(), "RESIZE");
    assert_eq!(s.quota_volume(), 8);
    let s = given(&ready_then(&[volume_resize_requested()]))
        .when(C::CompleteResize)
        .then(&[E::VolumeResized { size: 8, at: now() }]);
    assert_eq!(s.volume.map(|v| v.size), Some(8));
    assert_eq!(s.task, Task::None);
}

#[test]
fn failed_volume_resize_keeps_the_old_size() {
    let s = given(&ready_then(&[volume_resize_requested()]))
        .when(C::FailResize { fault: fault() })
        .then(&[E::VolumeResizeFailed {
            fault: fault(),
            at: now(),
        }]);
    assert_eq!(s.volume.map(|v| v.size), Some(5));
    assert_eq!(s.pending_volume_size, None);
}

#[test]
fn shrinking_or_same_size_volume_is_a_bad_request() {
    for size in [5, 3] {
        let e = given(&ready())
            .when(resize_volume(size))
            .then_err(DomainError::VolumeMustGrow(5));
        assert_eq!(
            e.to_string(),
            "The new volume 'size' must be larger than the current volume size of '5'."
        );
    }
}

#[test]
fn volume_resize_without_a_volume_is_a_bad_request() {
    let history = [
        created_with(|c| c.volume = None),
        server_created(),
        compute(ComputeStatus::Active),
        guest(ServiceStatus::Healthy),
        provisioned(),
    ];
    given(&history)
        .when(resize_volume(8))
        .then_err(DomainError::NoVolume(INSTANCE));
}

#[test]
fn volume_resize_beyond_the_maximum_or_the_quota_is_over_limit() {
    given(&ready())
        .when(resize_volume(11))
        .then_err(DomainError::VolumeTooLarge { max: 10, size: 11 });
    given(&ready())
        .catalog(|c| {
            c.quota.volumes = 38;
            c.quota.volumes_limit = 40;
        })
        .when(resize_volume(8))
        .then_err(DomainError::QuotaExceeded(vec!["volumes".into()]));
}

// ---- reset status ----------------------------------------------------------------------

/// A reset records when it happened: the backups of the instance created before it and
/// still running are abandoned by the backup saga (upstream's `fail_for_instance`).
#[test]
fn reset_status_records_when_for_the_running_backups() {
    assert_eq!(crate::instance::fold(&ready()).reset_on, None);
    let s = given(&ready())
        .when(C::ResetStatus)
        .then(&[E::InstanceStatusReset {
            task: Task::None,
            at: now(),
        }]);
    assert_eq!(s.reset_on.as_deref(), Some(&now()));
}

/// Who may reset is the policy's call, made by the shell before the command is decided
/// (`instance:reset_status`, or `instance:force_delete` as upstream): the aggregate
/// resets for whoever the policy let through, e.g. an owner allowed `force_delete`.
#[test]
fn reset_status_is_decided_for_whoever_the_policy_let_through() {
    let events = given(&ready()).when(C::ResetStatus).events();
    assert!(
        matches!(events.as_slice(), [E::InstanceStatusReset { .. }]),
        "{events:?}"
    );
}

#[test]
fn stuck_build_reset_status_then_delete_is_accepted() {
    let history = building_with_server(ComputeStatus::Build);
    given(&history)
        .when(C::DeleteInstance)
        .then_err(DomainError::InstanceBuilding(INSTANCE));
    let s = given(&history)
        .caller(admin())
        .when(C::ResetStatus)
        .then(&[E::InstanceStatusReset {
            task: Task::Building,
            at: now(),
        }]);
    assert_eq!(s.task, Task::None);
    assert_eq!(s.service, ServiceStatus::Unknown);
    let reset = E::InstanceStatusReset {
        task: Task::Building,
        at: earlier(),
    };
    let mut after = history.clone();
    after.push(reset);
    given(&after)
        .when(C::DeleteInstance)
        .then(&[E::InstanceDeletionRequested { at: now() }]);
    // A late report of the abandoned build changes nothing.
    given(&after).when(C::CompleteProvisioning).then_nothing();
}

#[test]
fn repeated_reset_status_records_nothing() {
    let reset = E::InstanceStatusReset {
        task: Task::None,
        at: earlier(),
    };
    given(&ready_then(&[reset]))
        .caller(admin())
        .when(C::ResetStatus)
        .then_nothing();
}

#[test]
fn reset_status_during_a_resize_drops_the_pending_change() {
    let s = given(&ready_then(&[flavor_resize_requested()]))
        .caller(admin())
        .when(C::ResetStatus)
        .then(&[E::InstanceStatusReset {
            task: Task::Resizing,
            at: now(),
        }]);
    assert_eq!(s.pending_flavor, None);
    assert_eq!(s.quota_ram(), 2048);
    // Actions wait for the next heartbeat (service UNKNOWN), as upstream.
    let reset = E::InstanceStatusReset {
        task: Task::Resizing,
        at: earlier(),
    };
    given(&ready_then(&[flavor_resize_requested(), reset]))
        .when(C::RestartInstance)
        .then_err(not_available("instance", "ACTIVE"));
}

#[test]
fn deleting_instance_reset_status_is_refused_and_the_deletion_continues() {
    let deleting = ready_then(&[E::InstanceDeletionRequested { at: earlier() }]);
    let e = given(&deleting)
        .caller(admin())
        .when(C::ResetStatus)
        .then_err(DomainError::ResetWhileDeleting(INSTANCE));
    assert_eq!(e.fault(), Fault::UnprocessableEntity);
    assert!(e.to_string().contains("is being deleted"), "{e}");
    given(&deleting)
        .when(C::CompleteDeletion)
        .then(&[E::InstanceDeleted { at: now() }]);
}

#[test]
fn reset_ends_once_the_guest_is_healthy_or_a_workflow_begins() {
    let reset = E::InstanceStatusReset {
        task: Task::None,
        at: earlier(),
    };
    let s = crate::instance::fold(&ready_then(std::slice::from_ref(&reset)));
    assert!(s.status_reset);
    // A later UNKNOWN (the guest stops answering) is not the reset's any more.
    let healthy = E::GuestStatusReported {
        status: ServiceStatus::Healthy,
        at: earlier(),
    };
    let s = crate::instance::fold(&ready_then(&[reset.clone(), healthy]));
    assert!(!s.status_reset, "healthy again");
    // An UNKNOWN report does not end it (the saga keeps asking).
    let unknown = E::GuestStatusReported {
        status: ServiceStatus::Unknown,
        at: earlier(),
    };
    assert!(crate::instance::fold(&ready_then(&[reset.clone(), unknown])).status_reset);
    // A new workflow ends it.
    let s = crate::instance::fold(&ready_then(&[reset, restart_requested()]));
    assert!(!s.status_reset, "a restart began");
}
