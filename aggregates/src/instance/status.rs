//! Trove's status model (spec `instance-lifecycle.md`): task statuses, service (guest)
//! statuses, compute statuses, and the rules that derive the user-visible `status` and
//! `operating_status` from them. Everything here is a pure function of its inputs; the
//! heartbeat rule takes `now` as an argument.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// The instance's task (spec lifecycle §2.1). Stored by name; codes are upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Task {
    #[default]
    None,
    Deleting,
    Rebooting,
    Resizing,
    Building,
    Migrating,
    RestartRequired,
    Promoting,
    Ejecting,
    Logging,
    Detaching,
    Updating,
    BuildingErrorDns,
    BuildingErrorServer,
    BuildingErrorVolume,
    BuildingErrorSecGroup,
    BuildingErrorReplica,
    PromotionError,
    EjectionError,
    GrowingError,
    ShrinkingError,
    Upgrading,
    UpgradingError,
    BuildingErrorTimeoutGa,
    BuildingErrorPort,
    UpdatingErrorAccess,
}

impl Task {
    /// What status derivation and error messages use.
    pub fn action(self) -> &'static str {
        use Task::*;
        match self {
            None => "NONE",
            Deleting => "DELETING",
            Rebooting => "REBOOTING",
            Resizing => "RESIZING",
            Building
            | BuildingErrorDns
            | BuildingErrorServer
            | BuildingErrorVolume
            | BuildingErrorSecGroup
            | BuildingErrorReplica
            | BuildingErrorPort => "BUILDING",
            Migrating => "MIGRATING",
            RestartRequired => "RESTART_REQUIRED",
            Promoting | PromotionError => "PROMOTING",
            Ejecting | EjectionError => "EJECTING",
            Logging => "LOGGING",
            Detaching => "DETACHING",
            Updating | UpdatingErrorAccess => "UPDATING",
            GrowingError => "GROWING",
            ShrinkingError => "SHRINKING",
            Upgrading | UpgradingError => "UPGRADING",
            BuildingErrorTimeoutGa => "ERROR",
        }
    }

    /// What the admin views show as `task_description`.
    pub fn description(self) -> &'static str {
        use Task::*;
        match self {
            None => "No tasks for the instance.",
            Deleting => "Deleting the instance.",
            Rebooting => "Rebooting the instance.",
            Resizing => "Resizing the instance.",
            Building => "The instance is building.",
            Migrating => "Migrating the instance.",
            RestartRequired => "Instance requires a restart.",
            Promoting => "Promoting the instance to replica source.",
            Ejecting => "Ejecting the replica source.",
            Logging => "Transferring guest logs.",
            Detaching => "Detaching the instance from replica source.",
            Updating => "Updating the instance.",
            BuildingErrorDns => "Build error: DNS.",
            BuildingErrorServer => "Build error: Server.",
            BuildingErrorVolume => "Build error: Volume.",
            BuildingErrorSecGroup => "Build error: Secgroup or rule.",
            BuildingErrorReplica => "Build error: Replica.",
            PromotionError => "Replica Promotion Error.",
            EjectionError => "Replica Source Ejection Error.",
            GrowingError => "Growing Cluster Error.",
            ShrinkingError => "Shrinking Cluster Error.",
            Upgrading => "Upgrading the instance.",
            UpgradingError => "Upgrading Cluster Error.",
            BuildingErrorTimeoutGa => "Build error: guestagent timeout.",
            BuildingErrorPort => "Build error: Port.",
            UpdatingErrorAccess => "Update error: Access.",
        }
    }

    /// Error tasks make `status` = `ERROR`.
    pub fn is_error(self) -> bool {
        use Task::*;
        matches!(
            self,
            BuildingErrorDns
                | BuildingErrorServer
                | BuildingErrorVolume
                | BuildingErrorSecGroup
                | BuildingErrorReplica
                | PromotionError
                | EjectionError
                | GrowingError
                | ShrinkingError
                | UpgradingError
                | BuildingErrorTimeoutGa
                | BuildingErrorPort
                | UpdatingErrorAccess
        )
    }
}

/// The guest's service status (spec lifecycle §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    Running,
    Blocked,
    Paused,
    Shutdown,
    Deleted,
    Crashed,
    Failed,
    Building,
    Promoting,
    Ejecting,
    Logging,
    Unknown,
    #[default]
    New,
    FailedTimeoutGuestagent,
    InstanceReady,
    RestartRequired,
    Healthy,
    // Upstream reads UPGRADING back as RESTARTING (shared code 0x22); we keep them apart.
    Upgrading,
    Restarting,
}

impl ServiceStatus {
    /// The string `operating_status` and the admin `service_status` show.
    pub fn api_status(self) -> &'static str {
        use ServiceStatus::*;
        match self {
            Running => "ACTIVE",
            Blocked => "BLOCKED",
            Paused | Shutdown | Crashed => "SHUTDOWN",
            Deleted => "DELETED",
            Failed => "FAILED",
            Building | InstanceReady => "BUILD",
            Promoting => "PROMOTE",
            Ejecting => "EJECT",
            Logging => "LOGGING",
            Unknown | FailedTimeoutGuestagent => "ERROR",
            New => "NEW",
            RestartRequired => "RESTART_REQUIRED",
            Healthy => "HEALTHY",
            Upgrading => "UPGRADING",
            Restarting => "RESTARTING",
        }
    }

    /// What the admin `guest_status.state_description` shows.
    pub fn description(self) -> &'static str {
        use ServiceStatus::*;
        match self {
            Running => "running",
            Blocked => "blocked",
            Paused => "paused",
            Shutdown => "shutdown",
            Deleted => "deleted",
            Crashed => "crashed",
            Failed => "failed to spawn",
            Building => "building",
            Promoting => "promoting replica",
            Ejecting => "ejecting replica source",
            Logging => "transferring guest logs",
            Unknown => "unknown",
            New => "new",
            FailedTimeoutGuestagent => "guestagent error",
            InstanceReady => "instance ready",
            RestartRequired => "restart required",
            Healthy => "healthy",
            Upgrading => "upgrading",
            Restarting => "restarting",
        }
    }

    /// Feeds the "can perform action" gate (lifecycle §5.1 rule 3).
    pub fn action_allowed(self) -> bool {
        use ServiceStatus::*;
        matches!(
            self,
            Running | Blocked | Shutdown | Crashed | RestartRequired | Healthy
        )
    }
}

/// The compute server's status, as the compute service reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComputeStatus {
    Build,
    Active,
    Error,
    Reboot,
    HardReboot,
    Resize,
    VerifyResize,
    Migrating,
    Shutoff,
}

impl ComputeStatus {
    /// The compute service's status string.
    pub fn as_str(self) -> &'static str {
        use ComputeStatus::*;
        match self {
            Build => "BUILD",
            Active => "ACTIVE",
            Error => "ERROR",
            Reboot => "REBOOT",
            HardReboot => "HARD_REBOOT",
            Resize => "RESIZE",
            VerifyResize => "VERIFY_RESIZE",
            Migrating => "MIGRATING",
            Shutoff => "SHUTOFF",
        }
    }
}

/// Upstream `agent_heartbeat_expiry`: a guest silent for longer reads as `ERROR`.
pub const AGENT_HEARTBEAT_EXPIRY: Duration = Duration::seconds(90);

/// Who is looking: reads use the synthetic compute status `BUILD` while building
/// (lists only for the exact `BUILDING` task, show for every building action); commands
/// see the real compute status (lifecycle §1 and §3 rule 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// List views (`GET /instances`, `/instances/detail`, `/mgmt/instances`).
    List,
    /// Show views (`GET /instances/{id}`, `/mgmt/instances/{id}`).
    Show,
    /// The command path (gates of §5).
    Command,
}

/// The inputs of status derivation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusInputs {
    pub task: Task,
    /// `None` when no compute server exists (reads as `SHUTDOWN`).
    pub compute: Option<ComputeStatus>,
    pub service: ServiceStatus,
    pub service_updated: DateTime<Utc>,
    pub backup_running: bool,
    pub deleted: bool,
}

impl StatusInputs {
    /// The compute status string the given viewer sees.
    pub fn compute_status(&self, viewer: Viewer) -> &'static str {
        let synthetic_build = match viewer {
            Viewer::List => self.task == Task::Building,
            Viewer::Show => self.task.action() == "BUILDING",
            Viewer::Command => false,
        };
        if synthetic_build {
            return "BUILD";
        }
        match self.compute {
            Some(c) => c.as_str(),
            None => "SHUTDOWN",
        }
    }

    /// Derives `status` (lifecycle §3). `admin_view` enables rule 0 (deleted → SHUTDOWN).
    pub fn status(&self, viewer: Viewer, admin_view: bool) -> &'static str {
        let compute = self.compute_status(viewer);
        let action = self.task.action();
        if admin_view && self.deleted {
            return "SHUTDOWN";
        }
        if self.task.is_error() {
            return "ERROR";
        }
        match action {
            "BUILDING" => return if compute == "ERROR" { "ERROR" } else { "BUILD" },
            "REBOOTING" => return "REBOOT",
            "RESIZING" => return "RESIZE",
            "UPGRADING" => return "UPGRADE",
            "RESTART_REQUIRED" => return "RESTART_REQUIRED",
            "PROMOTING" => return "PROMOTE",
            "EJECTING" => return "EJECT",
            "LOGGING" => return "LOGGING",
            "DETACHING" => return "DETACH",
            "DELETING" => {
                return if matches!(compute, "ACTIVE" | "SHUTDOWN" | "DELETED") {
                    "SHUTDOWN"
                } else {
                    "ERROR"
                }
            }
            _ => {}
        }
        if self.backup_running {
            return "BACKUP";
        }
        match compute {
            "BUILD" | "ERROR" | "REBOOT" | "RESIZE" | "ACTIVE" | "SHUTDOWN" => compute,
            "VERIFY_RESIZE" => "RESIZE",
            _ => "UNKNOWN",
        }
    }

    /// The service status after the heartbeat rule (lifecycle §4): display only.
    /// `expiry` `None` disables the rule (no guest agent sends heartbeats).
    pub fn effective_service(&self, now: DateTime<Utc>, expiry: Option<Duration>) -> ServiceStatus {
        let expired = expiry.is_some_and(|e| now - self.service_updated > e);
        if self.task == Task::None && self.service != ServiceStatus::RestartRequired && expired {
            ServiceStatus::FailedTimeoutGuestagent
        } else {
            self.service
        }
    }

    /// Derives `operating_status` (lifecycle §4): `""` unless task NONE and compute ACTIVE.
    pub fn operating_status(
        &self,
        viewer: Viewer,
        now: DateTime<Utc>,
        expiry: Option<Duration>,
    ) -> &'static str {
        if self.task != Task::None || self.compute_status(viewer) != "ACTIVE" {
            return "";
        }
        self.effective_service(now, expiry).api_status()
    }
}
