//! Promote and eject (issue #15): the refusals upstream gives, the events recorded on
//! each member of the replica set, and the topology they fold to.

use uuid::Uuid;

use super::support::*;
use crate::fault::Fault;
use crate::instance::{
    fold, ComputeStatus, DomainError, FaultInfo, Instance, InstanceCommand, InstanceEvent,
    ReplicaSetSwitch, ServiceStatus, Task,
};

/// Another replica of [`PRIMARY`].
const SIBLING: Uuid = Uuid::from_u128(0x3001);

fn fault() -> FaultInfo {
    FaultInfo {
        message: "switch failed".into(),
        details: "the guest said no".into(),
    }
}

/// A ready instance `id`, with `f` applied to its creation.
fn ready_as(id: Uuid, replica_of: Option<Uuid>) -> Instance {
    fold(&ready_from(created_with(|c| {
        c.instance_id = id;
        c.replica_of = replica_of;
    })))
}

/// The catalog of a set: [`PRIMARY`] with replicas [`INSTANCE`] and [`SIBLING`].
fn replica_set(cat: &mut TestCatalog) {
    cat.instances.push(ready_as(SIBLING, Some(PRIMARY)));
    cat.replica_ids = vec![(PRIMARY, vec![SIBLING, INSTANCE])];
}

/// The coordinator's revision of the request: right after `ready()`.
const REQUESTED_AT: u64 = 6;

fn promotion() -> ReplicaSetSwitch {
    ReplicaSetSwitch {
        old_primary_id: PRIMARY,
        new_primary_id: Some(INSTANCE),
        replica_ids: vec![INSTANCE, SIBLING],
        requested_at: REQUESTED_AT,
    }
}

fn ejection() -> ReplicaSetSwitch {
    ReplicaSetSwitch {
        old_primary_id: INSTANCE,
        new_primary_id: None,
        replica_ids: vec![PRIMARY, SIBLING],
        requested_at: REQUESTED_AT,
    }
}

#[test]
fn ready_replica_promote_is_recorded_with_the_whole_set() {
    let s = given(&ready_replica())
        .catalog(replica_set)
        .when(InstanceCommand::PromoteToReplicaSource)
        .then(&[InstanceEvent::ReplicaSourcePromotionRequested {
            switch: promotion(),
            at: now(),
        }]);
    assert_eq!(s.task, Task::Promoting);
    assert_eq!(s.command_status(), "PROMOTE");
    assert_eq!(s.replica_switch.map(|w| w.coordinator()), Some(INSTANCE));
}

#[test]
fn non_replica_promote_is_refused_as_not_a_replica() {
    let e = given(&ready())
        .when(InstanceCommand::PromoteToReplicaSource)
        .then_err(DomainError::NotAReplica(INSTANCE));
    assert_eq!(e.fault(), Fault::BadRequest);
    assert_eq!(
        e.to_string(),
        format!("Instance {INSTANCE} is not a replica.")
    );
}

#[test]
fn promote_while_the_source_is_busy_is_refused_naming_the_source() {
    let e = given(&ready_replica())
        .catalog(|c| {
            replica_set(c);
            for i in c.instances.iter_mut().filter(|i| i.id == Some(PRIMARY)) {
                i.task = Task::Upgrading;
            }
        })
        .when(InstanceCommand::PromoteToReplicaSource)
        .then_err(DomainError::NotAvailableForAction {
            id: PRIMARY,
            kind: "task",
            value: "UPGRADING".into(),
        });
    assert_eq!(e.fault(), Fault::UnprocessableEntity);
}

#[test]
fn promote_while_a_sibling_is_building_is_refused_naming_the_sibling() {
    given(&ready_replica())
        .catalog(|c| {
            replica_set(c);
            c.instances.retain(|i| i.id != Some(SIBLING));
            c.instances.push(fold(&[
                created_with(|e| {
                    e.instance_id = SIBLING;
                    e.replica_of = Some(PRIMARY);
                }),
                server_created(),
                compute(ComputeStatus::Build),
            ]));
        })
        .when(InstanceCommand::PromoteToReplicaSource)
        .then_err(DomainError::NotAvailableForAction {
            id: SIBLING,
            kind: "instance",
            value: "BUILD".into(),
        });
}

#[test]
fn promote_of_a_replica_in_another_project_is_not_found() {
    given(&ready_replica())
        .catalog(replica_set)
        .caller(other_project())
        .when(InstanceCommand::PromoteToReplicaSource)
        .then_err(DomainError::ResourceNotFound(INSTANCE.to_string()));
}

#[test]
fn eject_of_an_instance_without_replicas_is_refused() {
    let e = given(&ready())
        .when(InstanceCommand::EjectReplicaSource { silent: true })
        .then_err(DomainError::NotAReplicaSource(INSTANCE));
    assert_eq!(e.fault(), Fault::BadRequest);
}

fn source_catalog(cat: &mut TestCatalog) {
    cat.instances.push(ready_as(SIBLING, Some(INSTANCE)));
    cat.replica_ids = vec![(INSTANCE, vec![SIBLING, PRIMARY])];
}

#[test]
fn eject_of_a_source_with_a_current_heartbeat_is_refused() {
    let e = given(&ready())
        .catalog(source_catalog)
        .when(InstanceCommand::EjectReplicaSource { silent: false })
        .then_err(DomainError::ReplicaSourceHeartbeatCurrent(INSTANCE));
    assert_eq!(e.fault(), Fault::BadRequest);
    assert_eq!(
        e.to_string(),
        format!("Replica Source {INSTANCE} cannot be ejected as it has a current heartbeat")
    );
}

#[test]
fn eject_of_a_silent_source_is_recorded_without_a_new_source_yet() {
    let s = given(&ready())
        .catalog(source_catalog)
        .when(InstanceCommand::EjectReplicaSource { silent: true })
        .then(&[InstanceEvent::ReplicaSourceEjectionRequested {
            switch: ejection(),
            at: now(),
        }]);
    assert_eq!(s.command_status(), "EJECT");
    assert_eq!(s.replica_switch.map(|w| w.coordinator()), Some(INSTANCE));
}

#[test]
fn eject_of_a_source_whose_guest_failed_is_accepted() {
    let failed = InstanceEvent::GuestFailed {
        fault: fault(),
        at: earlier(),
    };
    given(&ready_then(&[failed]))
        .catalog(source_catalog)
        .when(InstanceCommand::EjectReplicaSource { silent: false })
        .then(&[InstanceEvent::ReplicaSourceEjectionRequested {
            switch: ReplicaSetSwitch {
                requested_at: REQUESTED_AT + 1,
                ..ejection()
            },
            at: now(),
        }]);
}

#[test]
fn eject_while_a_replica_cannot_act_is_refused() {
    given(&ready_then(&[guest(ServiceStatus::Shutdown)]))
        .catalog(|c| {
            source_catalog(c);
            for i in c.instances.iter_mut().filter(|i| i.id == Some(SIBLING)) {
                i.compute = Some(ComputeStatus::Error);
            }
        })
        .when(InstanceCommand::EjectReplicaSource { silent: false })
        .then_err(DomainError::NotAvailableForAction {
            id: SIBLING,
            kind: "instance",
            value: "ERROR".into(),
        });
}

#[test]
fn a_member_joins_once_and_a_busy_member_refuses() {
    let join = InstanceCommand::JoinReplicaSetSwitch {
        switch: promotion(),
        eject: false,
    };
    let s = given(&ready()).when(join.clone()).then(&[
        InstanceEvent::ReplicaSourcePromotionRequested {
            switch: promotion(),
            at: now(),
        },
    ]);
    assert_eq!(s.task, Task::Promoting);
    let joined = ready_then(&[InstanceEvent::ReplicaSourcePromotionRequested {
        switch: promotion(),
        at: earlier(),
    }]);
    given(&joined).when(join.clone()).then_nothing();
    given(&ready_then(&[upgrade_requested(V_MYSQL_57)]))
        .when(join)
        .then_err(DomainError::NotAvailableForAction {
            id: INSTANCE,
            kind: "task",
            value: "UPGRADING".into(),
        });
}

#[test]
fn after_a_promote_the_old_source_follows_the_new_one() {
    let requested = InstanceEvent::ReplicaSourcePromotionRequested {
        switch: promotion(),
        at: earlier(),
    };
    // INSTANCE plays the old source here: a standalone instance in the set.
    let s = given(&ready_then(std::slice::from_ref(&requested)))
        .when(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id: SIBLING,
            switch: promotion().id(),
        })
        .then(&[InstanceEvent::ReplicaSourcePromoted {
            new_primary_id: SIBLING,
            old_primary_id: PRIMARY,
            at: now(),
        }]);
    assert_eq!((s.task, s.replica_of), (Task::None, Some(SIBLING)));
    assert_eq!(s.replica_switch, None);
    // The promoted replica replicates from nobody.
    let mut replica = ready_replica();
    replica.push(requested);
    let s = given(&replica)
        .when(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id: INSTANCE,
            switch: promotion().id(),
        })
        .events()
        .iter()
        .fold(fold(&replica), crate::instance::evolve);
    assert_eq!((s.task, s.replica_of), (Task::None, None));
    // A repeated report changes nothing.
    replica.push(InstanceEvent::ReplicaSourcePromoted {
        new_primary_id: INSTANCE,
        old_primary_id: PRIMARY,
        at: earlier(),
    });
    given(&replica)
        .when(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id: INSTANCE,
            switch: promotion().id(),
        })
        .then_nothing();
}

#[test]
fn after_an_eject_the_ejected_source_stands_alone() {
    let requested = InstanceEvent::ReplicaSourceEjectionRequested {
        switch: ejection(),
        at: earlier(),
    };
    let s = given(&ready_then(&[requested]))
        .when(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id: SIBLING,
            switch: promotion().id(),
        })
        .then(&[InstanceEvent::ReplicaSourceEjected {
            new_primary_id: SIBLING,
            old_primary_id: INSTANCE,
            at: now(),
        }]);
    assert_eq!((s.task, s.replica_of), (Task::None, None));
}

#[test]
fn a_failed_switch_leaves_every_member_in_error_with_the_fault() {
    let requested = InstanceEvent::ReplicaSourcePromotionRequested {
        switch: promotion(),
        at: earlier(),
    };
    let s = given(&[ready_replica(), vec![requested]].concat())
        .when(InstanceCommand::FailReplicaSetSwitch {
            fault: fault(),
            switch: promotion().id(),
        })
        .then(&[InstanceEvent::ReplicaSourcePromotionFailed {
            fault: fault(),
            at: now(),
        }]);
    assert_eq!(s.task, Task::PromotionError);
    assert_eq!(s.command_status(), "ERROR");
    assert_eq!(s.replica_of, Some(PRIMARY), "topology as before");
    assert_eq!(s.fault.map(|f| f.message), Some("switch failed".into()));
}

/// A member (here the old source) that recorded the end of `promotion()`.
fn ended_member() -> Vec<InstanceEvent> {
    ready_then(&[
        InstanceEvent::ReplicaSourcePromotionRequested {
            switch: promotion(),
            at: earlier(),
        },
        InstanceEvent::ReplicaSourcePromoted {
            new_primary_id: INSTANCE,
            old_primary_id: PRIMARY,
            at: earlier(),
        },
    ])
}

#[test]
fn a_member_that_ended_the_switch_does_not_join_it_again() {
    // The coordinator's step is retried after a crash between the members' ends and
    // its own: the member must not go back to PROMOTING.
    let join = InstanceCommand::JoinReplicaSetSwitch {
        switch: promotion(),
        eject: false,
    };
    let s = fold(&ended_member());
    assert_eq!(s.switch_ended.as_deref(), Some(&promotion().id()));
    given(&ended_member()).when(join.clone()).then_nothing();
    // Not even when it is busy with something else meanwhile (the coordinator must not
    // fail a switch that is done on this member).
    let busy = [ended_member(), vec![upgrade_requested(V_MYSQL_57)]].concat();
    given(&busy).when(join).then_nothing();
}

#[test]
fn an_end_report_of_another_switch_is_ignored() {
    // The member ended `promotion()` and joined a later switch: a late report of the
    // first one must not end the second.
    let later = ReplicaSetSwitch {
        requested_at: REQUESTED_AT + 10,
        ..promotion()
    };
    let history = [
        ended_member(),
        vec![InstanceEvent::ReplicaSourcePromotionRequested {
            switch: later.clone(),
            at: earlier(),
        }],
    ]
    .concat();
    given(&history)
        .when(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id: INSTANCE,
            switch: promotion().id(),
        })
        .then_nothing();
    given(&history)
        .when(InstanceCommand::FailReplicaSetSwitch {
            fault: fault(),
            switch: promotion().id(),
        })
        .then_nothing();
    given(&history)
        .when(InstanceCommand::CompleteReplicaSetSwitch {
            new_primary_id: INSTANCE,
            switch: later.id(),
        })
        .then(&[InstanceEvent::ReplicaSourcePromoted {
            new_primary_id: INSTANCE,
            old_primary_id: PRIMARY,
            at: now(),
        }]);
}

#[test]
fn a_switch_recorded_before_its_identity_still_ends() {
    // Bodies written before `requested_at` existed: identity (coordinator, 0).
    let old = ReplicaSetSwitch {
        requested_at: 0,
        ..promotion()
    };
    given(&ready_then(&[
        InstanceEvent::ReplicaSourcePromotionRequested {
            switch: old.clone(),
            at: earlier(),
        },
    ]))
    .when(InstanceCommand::CompleteReplicaSetSwitch {
        new_primary_id: INSTANCE,
        switch: old.id(),
    })
    .then(&[InstanceEvent::ReplicaSourcePromoted {
        new_primary_id: INSTANCE,
        old_primary_id: PRIMARY,
        at: now(),
    }]);
}

#[test]
fn a_replica_of_a_switching_source_is_refused() {
    // The new replica would follow a source that is about to stop being one, and the
    // switch would not know it.
    for (requested, value) in [
        (
            InstanceEvent::ReplicaSourcePromotionRequested {
                switch: ReplicaSetSwitch {
                    old_primary_id: PRIMARY,
                    new_primary_id: Some(PRIMARY_REPLICA),
                    replica_ids: vec![PRIMARY_REPLICA],
                    requested_at: REQUESTED_AT,
                },
                at: earlier(),
            },
            "PROMOTING",
        ),
        (
            InstanceEvent::ReplicaSourceEjectionRequested {
                switch: ReplicaSetSwitch {
                    old_primary_id: PRIMARY,
                    new_primary_id: None,
                    replica_ids: vec![PRIMARY_REPLICA],
                    requested_at: REQUESTED_AT,
                },
                at: earlier(),
            },
            "EJECTING",
        ),
    ] {
        let e = given(&[])
            .catalog(|cat| {
                for i in cat.instances.iter_mut().filter(|i| i.id == Some(PRIMARY)) {
                    crate::instance::evolve_in_place(i, &requested);
                }
            })
            .when(create_replica(PRIMARY, |_| {}))
            .then_err(DomainError::NotAvailableForAction {
                id: PRIMARY,
                kind: "task",
                value: value.into(),
            });
        assert_eq!(e.fault(), Fault::UnprocessableEntity);
    }
}

#[test]
fn a_member_reset_is_refused_while_its_coordinator_runs_the_switch() {
    // INSTANCE is the old source of a promote coordinated by SIBLING.
    let switch = ReplicaSetSwitch {
        old_primary_id: INSTANCE,
        new_primary_id: Some(SIBLING),
        replica_ids: vec![SIBLING],
        requested_at: REQUESTED_AT,
    };
    let requested = InstanceEvent::ReplicaSourcePromotionRequested {
        switch: switch.clone(),
        at: earlier(),
    };
    let member = ready_then(std::slice::from_ref(&requested));
    let coordinator = |cat: &mut TestCatalog| {
        let mut c = ready_as(SIBLING, Some(INSTANCE));
        crate::instance::evolve_in_place(&mut c, &requested);
        cat.instances.push(c);
    };
    let e = given(&member)
        .caller(admin())
        .catalog(coordinator)
        .when(InstanceCommand::ResetStatus)
        .then_err(DomainError::SwitchMemberReset {
            id: INSTANCE,
            coordinator: SIBLING,
        });
    assert_eq!(e.fault(), Fault::UnprocessableEntity);
    assert_eq!(
        e.to_string(),
        format!(
            "Instance {INSTANCE} is switching its replica set with instance {SIBLING}: \
             reset the status of {SIBLING} first."
        )
    );
    // Once the coordinator was reset (it runs no switch), the member may be reset.
    let s = given(&member)
        .caller(admin())
        .catalog(|cat| cat.instances.push(ready_as(SIBLING, Some(INSTANCE))))
        .when(InstanceCommand::ResetStatus)
        .then(&[InstanceEvent::InstanceStatusReset {
            task: Task::Promoting,
            at: now(),
        }]);
    assert_eq!((s.task, s.replica_switch), (Task::None, None));
    // The coordinator itself may always be reset.
    let mut coordinating = ready_replica();
    coordinating.push(InstanceEvent::ReplicaSourcePromotionRequested {
        switch: promotion(),
        at: earlier(),
    });
    given(&coordinating)
        .caller(admin())
        .catalog(replica_set)
        .when(InstanceCommand::ResetStatus)
        .then(&[InstanceEvent::InstanceStatusReset {
            task: Task::Promoting,
            at: now(),
        }]);
}
