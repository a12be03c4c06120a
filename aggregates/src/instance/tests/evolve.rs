//! `evolve`: what each event does to the state (lifecycle §7), beyond what the
//! given/when/then tests of each command already check.

use chrono::Duration;

use super::support::*;
use crate::instance::{
    evolve, fold, Address, ComputeStatus, FaultInfo, Instance, InstanceEvent, ServiceStatus, Task,
    UserSpec,
};

#[test]
fn empty_history_is_a_non_existing_instance() {
    let s = fold(&[]);
    assert_eq!(s, Instance::default());
    assert!(!s.exists());
    assert!(!s.is_live());
    assert_eq!(s.version, 0);
}

#[test]
fn version_counts_folded_events() {
    assert_eq!(fold(&ready()).version, ready().len() as u64);
    assert_eq!(fold(&[created()]).version, 1);
}

#[test]
fn created_state_holds_the_requests_facts() {
    let s = fold(&[created_with(|c| {
        c.users = vec![UserSpec {
            name: "app".into(),
            host: "%".into(),
            password: sealed("pw"),
            databases: vec![],
        }];
        c.replica_of = Some(PRIMARY);
        c.configuration_id = Some(CFG_MYSQL80);
        c.access = Some(serde_json::json!({"is_public": false}));
    })]);
    assert_eq!(s.id, Some(INSTANCE));
    assert_eq!(s.project_id, OWNER_PROJECT);
    assert_eq!(s.user_id, "alice");
    assert_eq!(s.task, Task::Building);
    assert_eq!(s.service, ServiceStatus::New);
    assert_eq!(s.service_updated, earlier());
    assert_eq!((s.created, s.updated), (earlier(), earlier()));
    let users: Vec<(&str, &str)> = s
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.host.as_str()))
        .collect();
    assert_eq!(users, [("app", "%")]);
    assert_eq!(s.replica_of, Some(PRIMARY));
    assert_eq!(s.configuration_id, Some(CFG_MYSQL80));
    assert_eq!(s.datastore, Some(version_ref(V_MYSQL_80)));
    assert_eq!(s.access, Some(serde_json::json!({"is_public": false})));
    assert_eq!(s.quota_ram(), 2048);
    assert_eq!(s.quota_volume(), 5);
    assert_eq!(s.server_id, None);
}

#[test]
fn ready_history_is_active_and_healthy() {
    let s = fold(&ready());
    assert_eq!(s.task, Task::None);
    assert_eq!(s.compute, Some(ComputeStatus::Active));
    assert_eq!(s.service, ServiceStatus::Healthy);
    assert_eq!(s.server_id.as_deref(), Some("server-1"));
    assert_eq!(s.volume_id.as_deref(), Some("volume-1"));
    assert_eq!(s.command_status(), "ACTIVE");
}

#[test]
fn compute_status_and_addresses_do_not_touch_updated() {
    let s = fold(&ready());
    let later = now();
    let s2 = evolve(
        s.clone(),
        &InstanceEvent::ComputeStatusChanged {
            status: ComputeStatus::Reboot,
            at: later,
        },
    );
    assert_eq!(s2.compute, Some(ComputeStatus::Reboot));
    assert_eq!(s2.updated, s.updated);
    let s3 = evolve(
        s2,
        &InstanceEvent::AddressesAssigned {
            addresses: vec![Address {
                address: "172.24.5.114".into(),
                kind: "public".into(),
                network: None,
                port: None,
            }],
            at: later,
        },
    );
    assert_eq!(s3.updated, s.updated);
    assert_eq!(s3.addresses.len(), 1);
}

#[test]
fn heartbeat_refreshes_service_time_but_not_updated() {
    let s = fold(&ready());
    let s2 = evolve(
        s.clone(),
        &InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Running,
            at: now(),
        },
    );
    assert_eq!(s2.service, ServiceStatus::Running);
    assert_eq!(s2.service_updated, now());
    assert_eq!(s2.updated, s.updated);
}

#[test]
fn heartbeats_are_ignored_while_restart_is_required_but_still_refresh_time() {
    let s = fold(&ready_then(&[guest(ServiceStatus::RestartRequired)]));
    let s2 = evolve(
        s,
        &InstanceEvent::GuestStatusReported {
            status: ServiceStatus::Healthy,
            at: now(),
        },
    );
    assert_eq!(s2.service, ServiceStatus::RestartRequired);
    assert_eq!(s2.service_updated, now());
}

#[test]
fn late_provisioning_completion_keeps_an_error_task() {
    let s = fold(&[
        created(),
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorDns,
            fault: FaultInfo {
                message: "Error creating DNS entry".into(),
                details: String::new(),
            },
            at: earlier(),
        },
        InstanceEvent::ProvisioningCompleted { at: now() },
    ]);
    assert_eq!(s.task, Task::BuildingErrorDns);
    assert_eq!(s.command_status(), "ERROR");
}

#[test]
fn newer_fault_overwrites_the_older_one() {
    let f = |m: &str| FaultInfo {
        message: m.into(),
        details: "d".into(),
    };
    let s = fold(
        &[
            ready_replica(),
            vec![
                InstanceEvent::ReplicaDetachRequested { at: earlier() },
                InstanceEvent::ReplicaDetachFailed {
                    fault: f("first"),
                    at: earlier(),
                },
                InstanceEvent::AccessUpdateRequested {
                    access: Default::default(),
                    at: now(),
                },
                InstanceEvent::AccessUpdateFailed {
                    fault: f("second"),
                    at: now(),
                },
            ],
        ]
        .concat(),
    );
    let fault = s.fault.expect("a fault");
    assert_eq!(fault.message, "second");
    assert_eq!(fault.created, now());
}

#[test]
fn successful_upgrade_does_not_clear_a_fault() {
    let s = fold(&ready_then(&[
        InstanceEvent::ReplicaDetachFailed {
            fault: FaultInfo {
                message: "old".into(),
                details: String::new(),
            },
            at: earlier(),
        },
        upgrade_requested(V_MYSQL_57),
        InstanceEvent::DatastoreVersionUpgraded { at: now() },
    ]));
    assert!(
        s.fault.is_some(),
        "faults are never cleared by later success"
    );
    assert_eq!(s.task, Task::None);
}

#[test]
fn upgrade_request_sets_the_guest_upgrading() {
    let s = fold(&ready_then(&[upgrade_requested(V_MYSQL_57)]));
    assert_eq!(s.service, ServiceStatus::Upgrading);
    assert_eq!(s.task, Task::Upgrading);
    let i = s.status_inputs();
    assert_eq!(
        i.operating_status(crate::instance::Viewer::Show, now(), None),
        ""
    );
}

#[test]
fn deletion_request_with_server_in_error_reads_error() {
    let s = fold(&ready_then(&[
        compute(ComputeStatus::Error),
        InstanceEvent::InstanceDeletionRequested { at: now() },
    ]));
    assert_eq!(s.task, Task::Deleting);
    assert_eq!(s.command_status(), "ERROR");
}

#[test]
fn completed_deletion_clears_references() {
    let s = fold(
        &[
            ready_replica(),
            vec![
                attached(CFG_MYSQL80_LIVE, false),
                InstanceEvent::AddressesAssigned {
                    addresses: vec![Address {
                        address: "10.0.0.1".into(),
                        kind: "private".into(),
                        network: Some("n".into()),
                        port: None,
                    }],
                    at: earlier(),
                },
            ],
            deleted(),
        ]
        .concat(),
    );
    assert!(s.deleted);
    assert!(s.exists());
    assert_eq!(s.deleted_at, Some(earlier()));
    assert_eq!(s.task, Task::None);
    assert_eq!(s.datastore, None);
    assert_eq!(s.configuration_id, None);
    assert_eq!(s.replica_of, None);
    assert_eq!(s.compute, None);
    assert_eq!(s.service, ServiceStatus::Deleted);
    assert!(s.addresses.is_empty());
}

#[test]
fn volume_created_records_the_actual_volume() {
    let s = fold(&[
        created(),
        InstanceEvent::VolumeCreated {
            volume_id: "v-9".into(),
            size: 6,
            volume_type: Some("ssd".into()),
            at: now(),
        },
    ]);
    assert_eq!(s.volume_id.as_deref(), Some("v-9"));
    assert_eq!(s.quota_volume(), 6);
    assert_eq!(s.updated, now());
}

#[test]
fn rename_changes_updated_but_not_service_time() {
    let s = fold(&ready_then(&[InstanceEvent::InstanceRenamed {
        name: "x".into(),
        at: now() + Duration::seconds(1),
    }]));
    assert_eq!(s.updated, now() + Duration::seconds(1));
    assert_eq!(s.service_updated, earlier());
}
