//! What an instance needs next: a pure function of its folded state, the state of its
//! configuration group, the clock and the policy. The runner ([`super::SagaRunner`]) performs
//! the step through the provider ports and records its outcome as an event, then asks
//! again: the workflow is the sequence of states, so it resumes from the log after any
//! crash.

use aggregates::configuration::Configuration;
use aggregates::instance::{ComputeStatus, Instance, ServiceStatus, Task};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Timeouts and compensation policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// A build not finished after this fails with `Polling request timed out.`
    /// (upstream `usage_timeout`).
    pub build_timeout: Duration,
    /// An upgrade not finished after this fails (upstream waits 600 s).
    pub upgrade_timeout: Duration,
    /// A restart or flavor resize whose guest is not healthy this long after the
    /// request fails (upstream's `reboot_time_out` and `resize_time_out` are 600 s).
    pub action_timeout: Duration,
    /// Keep what a failed build created, for inspection, instead of releasing it.
    pub keep_failed_resources: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            build_timeout: Duration::seconds(1800),
            upgrade_timeout: Duration::seconds(600),
            action_timeout: Duration::seconds(600),
            keep_failed_resources: false,
        }
    }
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    // ---- build (task BUILDING) ------------------------------------------------------
    /// Create the data volume.
    CreateVolume,
    /// Create the compute server (with the volume attached).
    CreateServer,
    /// Ask the compute service for the server's status (and addresses).
    PollServer,
    /// Send "prepare" to the guest (databases, users, configuration, replication).
    Prepare,
    /// Ask the guest for its status until it is healthy.
    PollGuest,
    /// Ask the guest for the volume's usage.
    ReportUsage,
    /// Everything is up: task NONE.
    CompleteBuild,
    /// The build cannot succeed: record the error task and the fault.
    FailBuild {
        task: Task,
        message: String,
    },
    // ---- compensation of a failed build ---------------------------------------------
    /// Delete the server a failed build left (unless kept for inspection).
    ReleaseServer {
        server_id: String,
    },
    /// Delete the volume a failed build left.
    ReleaseVolume {
        volume_id: String,
    },
    /// Delete what a failed build created without recording it (found by idempotency
    /// key), then record the compensation as finished.
    FinishRelease,
    // ---- delete (task DELETING) -----------------------------------------------------
    DeleteServer {
        server_id: String,
    },
    DeleteVolume {
        volume_id: String,
    },
    /// Delete what was created without being recorded (found by idempotency key), then
    /// soft-delete the record.
    FinishDeletion,
    // ---- other workflows ------------------------------------------------------------
    /// Upgrade the guest to the instance's (already switched) datastore version and wait
    /// until it is healthy.
    Upgrade,
    /// The upgrade did not finish in time.
    FailUpgrade {
        message: String,
    },
    /// Stop replicating from the primary.
    DetachReplica,
    /// Make the user port public or private.
    SetPublic {
        public: bool,
    },
    /// The access change is applied.
    CompleteAccessUpdate,
    /// Record that the attached group has a newer revision (no guest call).
    AdoptRevision {
        configuration_id: Uuid,
        revision: u64,
        restart_required: bool,
    },
    /// Make the guest run the attached configuration (or none).
    ApplyConfiguration {
        configuration_id: Option<Uuid>,
        revision: u64,
    },
    // ---- replica set: promote / eject (issue #15) -----------------------------------
    /// The coordinator of a switch (the promoted replica, the ejected source) switches
    /// the set through the provider; every member then records the end.
    SwitchReplicaSet,
    // ---- instance actions (task REBOOTING, RESIZING; `super::actions`) ---------------
    /// Restart the database server, then wait until the guest is healthy.
    Restart,
    /// Move the server to the pending flavor (the database restarts with its memory).
    ResizeFlavor {
        flavor_id: String,
        ram: u32,
    },
    /// Grow the volume (and its file system) to the pending size.
    ResizeVolume {
        volume_id: String,
        size: u64,
    },
    /// The resize cannot be done (nothing to resize, or not done in time): record it
    /// as failed.
    FailResize {
        message: String,
    },
    /// The restart did not end in time: record it as failed.
    FailRestart {
        message: String,
    },
    // ---- databases, users and root (ADR 0010) ----------------------------------------
    /// Apply the instance's queued change number `seq` to the guest.
    ApplyGuestChange {
        seq: u64,
    },
}

/// The next step for `s`, if any.
pub fn plan(
    s: &Instance,
    group: Option<&Configuration>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Option<Step> {
    let id = s.id?;
    if s.deleted {
        return None;
    }
    match s.task {
        Task::Deleting => Some(teardown(s)),
        Task::Building => Some(build(id, s, now, policy)),
        Task::Upgrading => Some(if now - upgrade_started(s) > policy.upgrade_timeout {
            Step::FailUpgrade {
                message: format!("Upgrade of instance {id} timed out."),
            }
        } else {
            Step::Upgrade
        }),
        Task::Detaching => Some(Step::DetachReplica),
        // Only the coordinator acts; the other members wait for it to record the end.
        Task::Promoting | Task::Ejecting => s
            .replica_switch
            .as_ref()
            .filter(|w| w.coordinator() == id)
            .map(|_| Step::SwitchReplicaSet),
        Task::Updating => {
            let want = s.pending_access.as_ref().is_some_and(|a| a.is_public);
            let has = s.addresses.iter().any(|a| a.kind == "public");
            Some(if want != has && s.server_id.is_some() {
                Step::SetPublic { public: want }
            } else {
                Step::CompleteAccessUpdate
            })
        }
        // Queued changes of databases and users wait for the configuration to be applied.
        Task::None | Task::RestartRequired => super::actions::after_reset(s)
            .or_else(|| configuration(s, group))
            .or_else(|| {
                super::guest_admin::next_change(s).map(|seq| Step::ApplyGuestChange { seq })
            }),
        Task::Rebooting | Task::Resizing => super::actions::next_step(id, s, now, policy),
        // Only a failed build releases what it created; a failed upgrade or access
        // update keeps the instance's server and data until the user deletes it.
        t if t.is_error() && s.build_failed => compensation(s, policy),
        _ => None,
    }
}

/// When the current upgrade was asked for (a rename must not restart its deadline).
fn upgrade_started(s: &Instance) -> DateTime<Utc> {
    s.upgrade_requested
        .as_deref()
        .map_or(s.updated, |(at, _)| *at)
}

fn build(id: Uuid, s: &Instance, now: DateTime<Utc>, policy: &Policy) -> Step {
    if now - s.created > policy.build_timeout {
        return Step::FailBuild {
            task: Task::BuildingErrorTimeoutGa,
            message: "Polling request timed out.".into(),
        };
    }
    if s.volume.is_some() && s.volume_id.is_none() {
        return Step::CreateVolume;
    }
    if s.server_id.is_none() {
        return Step::CreateServer;
    }
    match s.compute {
        Some(ComputeStatus::Error) => {
            return Step::FailBuild {
                task: Task::BuildingErrorTimeoutGa,
                message: format!(
                    "Server not active, status: ERROR, fault message: the compute service \
                     reports server {} of instance {id} in ERROR",
                    s.server_id.as_deref().unwrap_or("?")
                ),
            }
        }
        Some(ComputeStatus::Active) if !s.addresses.is_empty() => {}
        _ => return Step::PollServer,
    }
    if !s.guest_prepared {
        return Step::Prepare;
    }
    match s.service {
        ServiceStatus::Healthy | ServiceStatus::Running | ServiceStatus::InstanceReady => {}
        ServiceStatus::Failed | ServiceStatus::Shutdown | ServiceStatus::Crashed => {
            return Step::FailBuild {
                task: Task::BuildingErrorTimeoutGa,
                message: format!("Service not active, status: {}", s.service.description()),
            }
        }
        _ => return Step::PollGuest,
    }
    if s.volume_id.is_some() && s.volume_usage.is_none() {
        return Step::ReportUsage;
    }
    let desired = (s.configuration_id, s.configuration_revision);
    if s.guest_configuration != Some(desired) {
        return Step::ApplyConfiguration {
            configuration_id: desired.0,
            revision: desired.1,
        };
    }
    Step::CompleteBuild
}

fn teardown(s: &Instance) -> Step {
    if let Some(server_id) = &s.server_id {
        return Step::DeleteServer {
            server_id: server_id.clone(),
        };
    }
    if let Some(volume_id) = &s.volume_id {
        return Step::DeleteVolume {
            volume_id: volume_id.clone(),
        };
    }
    Step::FinishDeletion
}

fn compensation(s: &Instance, policy: &Policy) -> Option<Step> {
    if policy.keep_failed_resources {
        return None;
    }
    if let Some(server_id) = &s.server_id {
        return Some(Step::ReleaseServer {
            server_id: server_id.clone(),
        });
    }
    if let Some(volume_id) = &s.volume_id {
        return Some(Step::ReleaseVolume {
            volume_id: volume_id.clone(),
        });
    }
    (!s.resources_released).then_some(Step::FinishRelease)
}

/// An idle instance follows its group: first adopt a newer revision (RESTART_REQUIRED
/// when a changed key needs it), then make the guest run what is attached.
fn configuration(s: &Instance, group: Option<&Configuration>) -> Option<Step> {
    if let Some(g) = group.filter(|g| g.id.is_some() && g.id == s.configuration_id) {
        if g.version > s.configuration_revision {
            return Some(Step::AdoptRevision {
                configuration_id: s.configuration_id.unwrap_or_default(),
                revision: g.version,
                restart_required: g.restart_required_since > s.configuration_revision,
            });
        }
    }
    let desired = (s.configuration_id, s.configuration_revision);
    // An instance that never had a guest configuration and has no group needs nothing.
    let current = s.guest_configuration.unwrap_or((None, 0));
    // A refused configuration is not tried again until the group or attachment changes.
    let refused = s.refused_configuration == Some(desired);
    // A guest never prepared (a build abandoned by `reset_status`) has nothing to apply
    // a configuration to.
    let ready = s.server_id.is_some() && s.guest_prepared;
    (ready && current != desired && !refused).then_some(Step::ApplyConfiguration {
        configuration_id: desired.0,
        revision: desired.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::instance::{
        evolve, Address, DatastoreRef, FaultInfo, FlavorRef, InstanceCreated, InstanceEvent as E,
        VolumeSpec,
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn created() -> E {
        E::InstanceCreated(Box::new(InstanceCreated {
            instance_id: Uuid::from_u128(1),
            project_id: "p".into(),
            user_id: "u".into(),
            name: "db".into(),
            flavor: FlavorRef {
                id: "2".into(),
                ram: 2048,
            },
            volume: Some(VolumeSpec {
                size: 1,
                volume_type: None,
            }),
            datastore: DatastoreRef::default(),
            databases: vec![],
            users: vec![],
            nics: vec![],
            availability_zone: None,
            region: "RegionOne".into(),
            modules: vec![],
            restore_backup_id: None,
            replica_of: None,
            locality: None,
            configuration_id: None,
            configuration_revision: 0,
            access: None,
            root_password: None,
            at: t(0),
        }))
    }

    fn state(events: &[E]) -> Instance {
        events.iter().fold(Instance::default(), evolve)
    }

    fn next(events: &[E], now: i64) -> Option<Step> {
        plan(&state(events), None, t(now), &Policy::default())
    }

    #[test]
    fn a_build_walks_volume_server_guest_usage_configuration_then_completes() {
        let mut log = vec![created()];
        assert_eq!(next(&log, 1), Some(Step::CreateVolume));
        log.push(E::VolumeCreated {
            volume_id: "v".into(),
            size: 1,
            volume_type: None,
            at: t(1),
        });
        assert_eq!(next(&log, 1), Some(Step::CreateServer));
        log.push(E::ServerCreated {
            server_id: "s".into(),
            at: t(2),
        });
        assert_eq!(next(&log, 2), Some(Step::PollServer));
        log.push(E::ComputeStatusChanged {
            status: ComputeStatus::Active,
            at: t(3),
        });
        assert_eq!(
            next(&log, 3),
            Some(Step::PollServer),
            "addresses still unknown"
        );
        let address = Address {
            address: "10.0.0.1".into(),
            kind: "private".into(),
            network: None,
            port: None,
        };
        log.push(E::AddressesAssigned {
            addresses: vec![address],
            at: t(3),
        });
        assert_eq!(next(&log, 3), Some(Step::Prepare));
        log.push(E::GuestPrepared { at: t(4) });
        assert_eq!(next(&log, 4), Some(Step::PollGuest));
        log.push(E::GuestStatusReported {
            status: ServiceStatus::Healthy,
            at: t(5),
        });
        assert_eq!(next(&log, 5), Some(Step::ReportUsage));
        log.push(E::VolumeUsageReported {
            used: 0.1,
            total: 1.0,
            at: t(5),
        });
        assert_eq!(
            next(&log, 5),
            Some(Step::ApplyConfiguration {
                configuration_id: None,
                revision: 0
            })
        );
        log.push(E::GuestConfigurationApplied {
            configuration_id: None,
            revision: 0,
            in_force: false,
            at: t(5),
        });
        assert_eq!(next(&log, 5), Some(Step::CompleteBuild));
        log.push(E::ProvisioningCompleted { at: t(6) });
        assert_eq!(
            next(&log, 6),
            None,
            "an idle, healthy instance needs nothing"
        );
    }

    #[test]
    fn a_build_past_its_deadline_times_out() {
        let step = next(&[created()], 1801);
        assert_eq!(
            step,
            Some(Step::FailBuild {
                task: Task::BuildingErrorTimeoutGa,
                message: "Polling request timed out.".into()
            })
        );
    }

    #[test]
    fn a_failed_build_releases_server_then_volume_then_records_it() {
        let fault = FaultInfo {
            message: "m".into(),
            details: "d".into(),
        };
        let mut log = vec![
            created(),
            E::VolumeCreated {
                volume_id: "v".into(),
                size: 1,
                volume_type: None,
                at: t(1),
            },
            E::ServerCreated {
                server_id: "s".into(),
                at: t(2),
            },
            E::ProvisioningFailed {
                task: Task::BuildingErrorServer,
                fault,
                at: t(3),
            },
        ];
        assert_eq!(
            next(&log, 4),
            Some(Step::ReleaseServer {
                server_id: "s".into()
            })
        );
        log.push(E::ServerDeleted {
            server_id: "s".into(),
            at: t(4),
        });
        assert_eq!(
            next(&log, 4),
            Some(Step::ReleaseVolume {
                volume_id: "v".into()
            })
        );
        log.push(E::VolumeDeleted {
            volume_id: "v".into(),
            at: t(4),
        });
        assert_eq!(next(&log, 4), Some(Step::FinishRelease));
        log.push(E::ResourcesReleased { at: t(5) });
        assert_eq!(next(&log, 5), None);
        let keep = Policy {
            keep_failed_resources: true,
            ..Policy::default()
        };
        assert_eq!(plan(&state(&log[..4]), None, t(4), &keep), None);
    }

    #[test]
    fn a_delete_tears_down_server_then_volume_then_finishes() {
        let mut log = vec![
            created(),
            E::VolumeCreated {
                volume_id: "v".into(),
                size: 1,
                volume_type: None,
                at: t(1),
            },
            E::ServerCreated {
                server_id: "s".into(),
                at: t(2),
            },
            E::InstanceDeletionRequested { at: t(3) },
        ];
        assert_eq!(
            next(&log, 3),
            Some(Step::DeleteServer {
                server_id: "s".into()
            })
        );
        log.push(E::ServerDeleted {
            server_id: "s".into(),
            at: t(4),
        });
        assert_eq!(
            next(&log, 4),
            Some(Step::DeleteVolume {
                volume_id: "v".into()
            })
        );
        log.push(E::VolumeDeleted {
            volume_id: "v".into(),
            at: t(4),
        });
        assert_eq!(next(&log, 4), Some(Step::FinishDeletion));
        log.push(E::InstanceDeleted { at: t(5) });
        assert_eq!(next(&log, 5), None);
    }

    #[test]
    fn only_the_coordinator_of_a_replica_set_switch_plans_it_until_its_end_is_recorded() {
        use aggregates::instance::ReplicaSetSwitch;
        let me = Uuid::from_u128(1);
        let switch = |new: Option<Uuid>| ReplicaSetSwitch {
            old_primary_id: Uuid::from_u128(9),
            new_primary_id: new,
            replica_ids: vec![me, Uuid::from_u128(10)],
            requested_at: 1,
        };
        let requested = |new| E::ReplicaSourcePromotionRequested {
            switch: switch(new),
            at: t(1),
        };
        // The promoted replica coordinates: the step is planned again after any crash,
        // until the end is in its log.
        let log = vec![created(), requested(Some(me))];
        assert_eq!(next(&log, 2), Some(Step::SwitchReplicaSet));
        let mut done = log.clone();
        done.push(E::ReplicaSourcePromoted {
            new_primary_id: me,
            old_primary_id: Uuid::from_u128(9),
            at: t(3),
        });
        assert_ne!(next(&done, 4), Some(Step::SwitchReplicaSet));
        // Another member waits.
        let sibling = vec![created(), requested(Some(Uuid::from_u128(10)))];
        assert_eq!(next(&sibling, 2), None);
        // An eject is coordinated by the ejected source, not by its replicas.
        let eject = vec![
            created(),
            E::ReplicaSourceEjectionRequested {
                switch: switch(None),
                at: t(1),
            },
        ];
        assert_eq!(next(&eject, 2), None);
        // A failed switch plans nothing (no compensation: the servers keep their data).
        let mut failed = log;
        failed.push(E::ReplicaSourcePromotionFailed {
            fault: FaultInfo {
                message: "no".into(),
                details: String::new(),
            },
            at: t(3),
        });
        assert_eq!(next(&failed, 4), None);
    }
}
