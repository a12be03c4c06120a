//! Status derivation (lifecycle §2-§5): the "Typical combinations" table of §3, the
//! rules of §3 one by one, the heartbeat rule of §4 and the viewer differences of §1.

use chrono::Duration;

use super::support::*;
use crate::instance::{
    fold, ComputeStatus, ServiceStatus, StatusInputs, Task, Viewer, AGENT_HEARTBEAT_EXPIRY,
};

const EXPIRY: Option<Duration> = Some(AGENT_HEARTBEAT_EXPIRY);

/// Inputs with a guest that reported just now and no backup.
fn inputs(task: Task, compute: Option<ComputeStatus>, service: ServiceStatus) -> StatusInputs {
    StatusInputs {
        task,
        compute,
        service,
        service_updated: now(),
        backup_running: false,
        deleted: false,
    }
}

/// `(status, operating_status)` as the show view sees them now.
fn shown(i: &StatusInputs) -> (&'static str, &'static str) {
    (
        i.status(Viewer::Show, false),
        i.operating_status(Viewer::Show, now(), EXPIRY),
    )
}

// ---- lifecycle §3 "Typical combinations" -----------------------------------------------

// A table: one row per combination the spec lists.
#[allow(clippy::too_many_lines)]
#[test]
fn typical_combinations_table() {
    use ComputeStatus as C;
    use ServiceStatus as S;
    let silent = StatusInputs {
        service_updated: now() - Duration::seconds(91),
        ..inputs(Task::None, Some(C::Active), S::Healthy)
    };
    let backup = StatusInputs {
        backup_running: true,
        ..inputs(Task::None, Some(C::Active), S::Healthy)
    };
    let rows: Vec<(&str, StatusInputs, &str, &str)> = vec![
        (
            "just created",
            inputs(Task::Building, None, S::New),
            "BUILD",
            "",
        ),
        (
            "guest preparing",
            inputs(Task::Building, None, S::Building),
            "BUILD",
            "",
        ),
        (
            "ready",
            inputs(Task::None, Some(C::Active), S::Healthy),
            "ACTIVE",
            "HEALTHY",
        ),
        (
            "ready, DB still starting",
            inputs(Task::None, Some(C::Active), S::Running),
            "ACTIVE",
            "ACTIVE",
        ),
        ("guest silent > 90 s", silent, "ACTIVE", "ERROR"),
        (
            "DB container stopped",
            inputs(Task::None, Some(C::Active), S::Shutdown),
            "ACTIVE",
            "SHUTDOWN",
        ),
        (
            "build failed",
            inputs(Task::BuildingErrorPort, None, S::New),
            "ERROR",
            "",
        ),
        (
            "build failed with a server",
            inputs(Task::BuildingErrorVolume, Some(C::Build), S::Building),
            "ERROR",
            "",
        ),
        (
            "build timed out",
            inputs(
                Task::BuildingErrorTimeoutGa,
                Some(C::Active),
                S::FailedTimeoutGuestagent,
            ),
            "ERROR",
            "",
        ),
        ("backup running", backup, "BACKUP", "HEALTHY"),
        (
            "config needs restart",
            inputs(Task::RestartRequired, Some(C::Active), S::Healthy),
            "RESTART_REQUIRED",
            "",
        ),
        (
            "restarting",
            inputs(Task::Rebooting, Some(C::Active), S::Restarting),
            "REBOOT",
            "",
        ),
        (
            "being deleted",
            inputs(Task::Deleting, Some(C::Active), S::Healthy),
            "SHUTDOWN",
            "",
        ),
        (
            "being deleted, server gone",
            inputs(Task::Deleting, None, S::Healthy),
            "SHUTDOWN",
            "",
        ),
        (
            "being deleted, VM in error",
            inputs(Task::Deleting, Some(C::Error), S::Healthy),
            "ERROR",
            "",
        ),
        (
            "compute server vanished",
            inputs(Task::None, None, S::Healthy),
            "SHUTDOWN",
            "",
        ),
        (
            "admin reset-status",
            inputs(Task::None, Some(C::Active), S::Unknown),
            "ACTIVE",
            "ERROR",
        ),
        (
            "upgrading",
            inputs(Task::Upgrading, Some(C::Active), S::Upgrading),
            "UPGRADE",
            "",
        ),
        (
            "detaching replica",
            inputs(Task::Detaching, Some(C::Active), S::Healthy),
            "DETACH",
            "",
        ),
        (
            "access update",
            inputs(Task::Updating, Some(C::Active), S::Healthy),
            "ACTIVE",
            "",
        ),
    ];
    for (situation, i, status, operating) in rows {
        assert_eq!(shown(&i), (status, operating), "{situation}");
        // Lists agree on every row (they differ only in the compute status of
        // build-error tasks, which rule 1 hides).
        assert_eq!(i.status(Viewer::List, false), status, "{situation} (list)");
        assert_eq!(
            i.operating_status(Viewer::List, now(), EXPIRY),
            operating,
            "{situation} (list)"
        );
    }
}

// ---- lifecycle §3 rule by rule ---------------------------------------------------------

#[test]
fn task_actions_map_to_their_status() {
    let active = Some(ComputeStatus::Active);
    for (task, status) in [
        (Task::Resizing, "RESIZE"),
        (Task::Promoting, "PROMOTE"),
        (Task::Ejecting, "EJECT"),
        (Task::Logging, "LOGGING"),
        (Task::Migrating, "ACTIVE"), // no rule of its own: falls through to compute
        (Task::PromotionError, "ERROR"),
        (Task::EjectionError, "ERROR"),
        (Task::GrowingError, "ERROR"),
        (Task::ShrinkingError, "ERROR"),
        (Task::UpgradingError, "ERROR"),
        (Task::UpdatingErrorAccess, "ERROR"),
        (Task::BuildingErrorDns, "ERROR"),
        (Task::BuildingErrorReplica, "ERROR"),
        (Task::BuildingErrorSecGroup, "ERROR"),
    ] {
        let i = inputs(task, active, ServiceStatus::Healthy);
        assert_eq!(i.status(Viewer::Show, false), status, "{task:?}");
    }
}

#[test]
fn compute_statuses_map_through_rules_13_to_15() {
    for (compute, status) in [
        (ComputeStatus::Build, "BUILD"),
        (ComputeStatus::Active, "ACTIVE"),
        (ComputeStatus::Error, "ERROR"),
        (ComputeStatus::Reboot, "REBOOT"),
        (ComputeStatus::Resize, "RESIZE"),
        (ComputeStatus::VerifyResize, "RESIZE"),
        (ComputeStatus::HardReboot, "UNKNOWN"),
        (ComputeStatus::Migrating, "UNKNOWN"),
        (ComputeStatus::Shutoff, "UNKNOWN"),
    ] {
        let i = inputs(Task::None, Some(compute), ServiceStatus::Healthy);
        assert_eq!(i.status(Viewer::Show, false), status, "{compute:?}");
        assert_eq!(i.status(Viewer::Command, false), status, "{compute:?}");
    }
}

#[test]
fn running_backup_does_not_hide_a_task() {
    let i = StatusInputs {
        backup_running: true,
        ..inputs(
            Task::RestartRequired,
            Some(ComputeStatus::Active),
            ServiceStatus::Healthy,
        )
    };
    assert_eq!(i.status(Viewer::Show, false), "RESTART_REQUIRED");
}

#[test]
fn deleted_instance_in_admin_view_is_shutdown() {
    let history = [ready(), deleted()].concat();
    let i = fold(&history).status_inputs();
    assert_eq!(i.status(Viewer::List, true), "SHUTDOWN");
    assert_eq!(i.status(Viewer::Show, true), "SHUTDOWN");
    // Rule 0 wins over an error task too.
    let failed = StatusInputs {
        deleted: true,
        ..inputs(Task::BuildingErrorServer, None, ServiceStatus::Deleted)
    };
    assert_eq!(failed.status(Viewer::Show, true), "SHUTDOWN");
    assert_eq!(failed.status(Viewer::Show, false), "ERROR");
}

#[test]
fn healthy_is_never_a_status() {
    let i = inputs(
        Task::None,
        Some(ComputeStatus::Active),
        ServiceStatus::Healthy,
    );
    for viewer in [Viewer::List, Viewer::Show, Viewer::Command] {
        assert_ne!(i.status(viewer, false), "HEALTHY");
        assert_ne!(i.status(viewer, true), "HEALTHY");
    }
}

// ---- lifecycle §1: what each viewer sees while building --------------------------------

#[test]
fn build_error_task_compute_status_differs_between_list_show_and_command() {
    let i = inputs(Task::BuildingErrorPort, None, ServiceStatus::New);
    assert_eq!(i.compute_status(Viewer::List), "SHUTDOWN");
    assert_eq!(i.compute_status(Viewer::Show), "BUILD");
    assert_eq!(i.compute_status(Viewer::Command), "SHUTDOWN");
    for viewer in [Viewer::List, Viewer::Show, Viewer::Command] {
        assert_eq!(i.status(viewer, false), "ERROR", "{viewer:?}");
    }
}

#[test]
fn timeout_task_is_not_a_building_action() {
    // BUILDING_ERROR_TIMEOUT_GA has action ERROR, so even show asks the compute status.
    let i = inputs(
        Task::BuildingErrorTimeoutGa,
        Some(ComputeStatus::Active),
        ServiceStatus::New,
    );
    assert_eq!(i.compute_status(Viewer::Show), "ACTIVE");
}

#[test]
fn building_task_reads_build_but_commands_see_the_real_server() {
    let failed_vm = inputs(
        Task::Building,
        Some(ComputeStatus::Error),
        ServiceStatus::New,
    );
    assert_eq!(failed_vm.compute_status(Viewer::List), "BUILD");
    assert_eq!(failed_vm.compute_status(Viewer::Show), "BUILD");
    assert_eq!(failed_vm.compute_status(Viewer::Command), "ERROR");
    assert_eq!(failed_vm.status(Viewer::List, false), "BUILD");
    assert_eq!(failed_vm.status(Viewer::Show, false), "BUILD");
    assert_eq!(failed_vm.status(Viewer::Command, false), "ERROR");

    let active_vm = inputs(
        Task::Building,
        Some(ComputeStatus::Active),
        ServiceStatus::Building,
    );
    assert_eq!(active_vm.compute_status(Viewer::Command), "ACTIVE");
    for viewer in [Viewer::List, Viewer::Show, Viewer::Command] {
        assert_eq!(active_vm.status(viewer, false), "BUILD", "{viewer:?}");
        assert_eq!(
            active_vm.operating_status(viewer, now(), EXPIRY),
            "",
            "{viewer:?}"
        );
    }
}

// ---- lifecycle §4: operating_status and the heartbeat rule -----------------------------

#[test]
fn operating_status_is_empty_unless_task_none_and_compute_active() {
    for i in [
        inputs(
            Task::RestartRequired,
            Some(ComputeStatus::Active),
            ServiceStatus::Healthy,
        ),
        inputs(
            Task::None,
            Some(ComputeStatus::Reboot),
            ServiceStatus::Healthy,
        ),
        inputs(Task::None, None, ServiceStatus::Healthy),
        inputs(
            Task::Updating,
            Some(ComputeStatus::Active),
            ServiceStatus::Healthy,
        ),
    ] {
        assert_eq!(i.operating_status(Viewer::Show, now(), EXPIRY), "");
    }
}

#[test]
fn operating_status_is_the_services_api_string() {
    for (service, api) in [
        (ServiceStatus::Running, "ACTIVE"),
        (ServiceStatus::Blocked, "BLOCKED"),
        (ServiceStatus::Paused, "SHUTDOWN"),
        (ServiceStatus::Crashed, "SHUTDOWN"),
        (ServiceStatus::Failed, "FAILED"),
        (ServiceStatus::InstanceReady, "BUILD"),
        (ServiceStatus::New, "NEW"),
        (ServiceStatus::RestartRequired, "RESTART_REQUIRED"),
        (ServiceStatus::Restarting, "RESTARTING"),
        (ServiceStatus::FailedTimeoutGuestagent, "ERROR"),
    ] {
        let i = inputs(Task::None, Some(ComputeStatus::Active), service);
        assert_eq!(
            i.operating_status(Viewer::Show, now(), EXPIRY),
            api,
            "{service:?}"
        );
    }
}

#[test]
fn silent_guest_reads_error_only_with_an_expiry() {
    let silent = StatusInputs {
        service_updated: now() - Duration::seconds(91),
        ..inputs(
            Task::None,
            Some(ComputeStatus::Active),
            ServiceStatus::Healthy,
        )
    };
    assert_eq!(
        silent.operating_status(Viewer::Show, now(), EXPIRY),
        "ERROR"
    );
    assert_eq!(
        silent.effective_service(now(), EXPIRY),
        ServiceStatus::FailedTimeoutGuestagent
    );
    // No guest agent sends heartbeats: the rule is off.
    assert_eq!(
        silent.operating_status(Viewer::Show, now(), None),
        "HEALTHY"
    );
    // Display only: the stored status and the status string are untouched.
    assert_eq!(silent.service, ServiceStatus::Healthy);
    assert_eq!(silent.status(Viewer::Show, false), "ACTIVE");
}

#[test]
fn heartbeat_exactly_at_the_expiry_is_still_fresh() {
    let at_limit = StatusInputs {
        service_updated: now() - Duration::seconds(90),
        ..inputs(
            Task::None,
            Some(ComputeStatus::Active),
            ServiceStatus::Healthy,
        )
    };
    assert_eq!(
        at_limit.operating_status(Viewer::Show, now(), EXPIRY),
        "HEALTHY"
    );
}

#[test]
fn silent_guest_needing_restart_keeps_its_status() {
    let silent = StatusInputs {
        service_updated: now() - Duration::hours(1),
        ..inputs(
            Task::None,
            Some(ComputeStatus::Active),
            ServiceStatus::RestartRequired,
        )
    };
    assert_eq!(
        silent.operating_status(Viewer::Show, now(), EXPIRY),
        "RESTART_REQUIRED"
    );
}

#[test]
fn ready_instance_reads_healthy_until_its_heartbeat_expires() {
    // `ready()` heard from the guest at `earlier()`.
    let i = fold(&ready()).status_inputs();
    assert_eq!(i.status(Viewer::Show, false), "ACTIVE");
    let fresh = earlier() + Duration::seconds(30);
    assert_eq!(i.operating_status(Viewer::Show, fresh, EXPIRY), "HEALTHY");
    assert_eq!(i.operating_status(Viewer::Show, now(), EXPIRY), "ERROR");
    assert_eq!(i.operating_status(Viewer::Show, now(), None), "HEALTHY");
}

// ---- lifecycle §2: the enumerations ----------------------------------------------------

#[test]
fn error_tasks_are_exactly_the_specs() {
    let all = [
        Task::None,
        Task::Deleting,
        Task::Rebooting,
        Task::Resizing,
        Task::Building,
        Task::Migrating,
        Task::RestartRequired,
        Task::Promoting,
        Task::Ejecting,
        Task::Logging,
        Task::Detaching,
        Task::Updating,
        Task::BuildingErrorDns,
        Task::BuildingErrorServer,
        Task::BuildingErrorVolume,
        Task::BuildingErrorSecGroup,
        Task::BuildingErrorReplica,
        Task::PromotionError,
        Task::EjectionError,
        Task::GrowingError,
        Task::ShrinkingError,
        Task::Upgrading,
        Task::UpgradingError,
        Task::BuildingErrorTimeoutGa,
        Task::BuildingErrorPort,
        Task::UpdatingErrorAccess,
    ];
    let errors: Vec<Task> = all.into_iter().filter(|t| t.is_error()).collect();
    assert_eq!(errors.len(), 13);
    assert!(all[..12].iter().all(|t| !t.is_error()));
    assert!(!Task::Upgrading.is_error());
    // Descriptions are distinct (task equality upstream is by description).
    let mut descriptions: Vec<&str> = all.iter().map(|t| t.description()).collect();
    descriptions.sort_unstable();
    descriptions.dedup();
    assert_eq!(descriptions.len(), all.len());
    assert_eq!(Task::BuildingErrorPort.description(), "Build error: Port.");
    assert_eq!(Task::BuildingErrorPort.action(), "BUILDING");
    assert_eq!(Task::BuildingErrorTimeoutGa.action(), "ERROR");
    assert_eq!(Task::UpdatingErrorAccess.action(), "UPDATING");
    assert_eq!(Task::UpgradingError.action(), "UPGRADING");
}

#[test]
fn action_allowed_service_statuses_are_the_specs() {
    use ServiceStatus::*;
    for s in [
        Running,
        Blocked,
        Shutdown,
        Crashed,
        RestartRequired,
        Healthy,
    ] {
        assert!(s.action_allowed(), "{s:?}");
    }
    for s in [
        Paused,
        Deleted,
        Failed,
        Building,
        Promoting,
        Ejecting,
        Logging,
        Unknown,
        New,
        FailedTimeoutGuestagent,
        InstanceReady,
        Upgrading,
        Restarting,
    ] {
        assert!(!s.action_allowed(), "{s:?}");
    }
    assert_eq!(FailedTimeoutGuestagent.description(), "guestagent error");
    assert_eq!(Upgrading.api_status(), "UPGRADING");
}
