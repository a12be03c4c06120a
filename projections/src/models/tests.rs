//! Model tests: paging, isolation, mgmt filters, replicas, quota, idempotence and the
//! rebuild invariant.

use aggregates::instance::{InstanceEvent, Task};
use chrono::Duration;
use uuid::Uuid;

use super::*;
use crate::testkit::{creation, sample_addresses, ts, Script};

fn id(n: u128) -> Uuid {
    // The first byte is `n` (n < 256), so ids differ in their first characters.
    Uuid::from_u128(n << 120 | n)
}

fn at(minutes: i64) -> DateTime<Utc> {
    ts("2024-01-01T00:00:00") + Duration::minutes(minutes)
}

fn created_in(
    script: &mut Script,
    m: &InstanceModels,
    n: u128,
    project: &str,
    minute: i64,
) -> Uuid {
    let i = id(n);
    script.create(m, creation(i, project, at(minute)));
    i
}

#[test]
fn read_models_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<InstanceModels>();
}

#[test]
fn list_pages_follow_ids_with_marker_and_limit() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    // Created in reverse id order so created-desc output differs from id order.
    let mut ids: Vec<Uuid> = (1..=45)
        .map(|n| created_in(&mut s, &m, n, "a", 100 - n as i64))
        .collect();
    for n in 46..=48 {
        created_in(&mut s, &m, n, "b", 0);
    }
    ids.sort();

    let p1 = m.list_page("a", None, 20);
    assert_eq!(p1.instances.len(), 20);
    assert_eq!(p1.next_marker, Some(ids[19]));
    assert!(p1.has_more());
    let mut page_ids: Vec<Uuid> = p1.instances.iter().filter_map(|i| i.id).collect();
    // Output is newest first; as a set it is the 20 smallest ids.
    let created: Vec<_> = p1.instances.iter().map(|i| i.created).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "created desc");
    page_ids.sort();
    assert_eq!(page_ids, ids[..20]);

    let marker = p1.next_marker.map(|u| u.to_string());
    let p2 = m.list_page("a", marker.as_deref(), 20);
    assert_eq!(p2.next_marker, Some(ids[39]));
    let marker = p2.next_marker.map(|u| u.to_string());
    let p3 = m.list_page("a", marker.as_deref(), 20);
    assert_eq!(p3.instances.len(), 5);
    assert_eq!(p3.next_marker, None);
    let mut p3_ids: Vec<Uuid> = p3.instances.iter().filter_map(|i| i.id).collect();
    p3_ids.sort();
    assert_eq!(p3_ids, ids[40..]);

    // Exactly `limit` rows left: no next page.
    let marker = ids[39].to_string();
    assert_eq!(m.list_page("a", Some(&marker), 5).next_marker, None);
    assert_eq!(
        m.list_page("a", Some(&marker), 4).next_marker,
        Some(ids[43])
    );
}

#[test]
fn list_limit_is_capped_at_twenty_and_at_least_one() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    for n in 1..=25 {
        created_in(&mut s, &m, n, "a", 0);
    }
    assert_eq!(m.list_page("a", None, 1000).instances.len(), LIST_PAGE_MAX);
    assert_eq!(m.list_page("a", None, 0).instances.len(), 1);
    assert_eq!(m.list_page("a", None, 3).instances.len(), 3);
}

#[test]
fn list_marker_is_compared_as_a_string() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let ids: Vec<Uuid> = (1..=3).map(|n| created_in(&mut s, &m, n, "a", 0)).collect();
    // id(1) = "01000000-..." < "01g" < "02000000-..." = id(2).
    let page = m.list_page("a", Some("01g"), 20);
    let got: BTreeSet<_> = page.instances.iter().filter_map(|i| i.id).collect();
    assert_eq!(got, ids[1..].iter().copied().collect());
    assert_eq!(m.list_page("a", Some("02"), 20).instances.len(), 2);
    assert!(m.list_page("a", Some("zzz"), 20).instances.is_empty());
    assert_eq!(m.list_page("a", Some(""), 20).instances.len(), 3);
}

use std::collections::BTreeSet;

#[test]
fn projects_are_isolated_in_lists() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    let b = created_in(&mut s, &m, 2, "b", 0);
    let only = |p: &str| -> Vec<Uuid> {
        m.list_page(p, None, 20)
            .instances
            .iter()
            .filter_map(|i| i.id)
            .collect()
    };
    assert_eq!(only("a"), vec![a]);
    assert_eq!(only("b"), vec![b]);
    assert!(only("c").is_empty());
    assert!(m.instance_visible_to(b, "a", false).is_none());
    assert!(m.instance_visible_to(b, "a", true).is_some());
    assert!(m.instance_visible_to(b, "b", false).is_some());
}

#[test]
fn deleting_instances_stay_listed_until_deleted() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    s.provision(&m, a, at(1), sample_addresses());
    s.apply(
        &m,
        a,
        InstanceEvent::InstanceDeletionRequested { at: at(2) },
    );
    assert_eq!(m.list_page("a", None, 20).instances.len(), 1);
    assert!(m.instance_visible_to(a, "a", false).is_some());
    s.apply(&m, a, InstanceEvent::InstanceDeleted { at: at(3) });
    assert!(m.list_page("a", None, 20).instances.is_empty());
    assert!(m.instance_visible_to(a, "a", false).is_none());
    assert!(m.instance(a).is_some_and(|i| i.deleted), "kept for admins");
    assert_eq!(m.len(), 1);
    assert!(m.snapshot().lists.is_empty(), "empty project entry removed");
}

/// Project a: 1 (live), 2 (deleted); project b: 3 (live), 4 (deleted).
/// `updated` order, newest first: 4, 1, 3, 2. `created` order, newest first: 3, 4, 2, 1.
fn mgmt_fixture() -> (InstanceModels, [Uuid; 4]) {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let i1 = created_in(&mut s, &m, 1, "a", 0);
    let i2 = created_in(&mut s, &m, 2, "a", 1);
    let i3 = created_in(&mut s, &m, 3, "b", 3);
    let i4 = created_in(&mut s, &m, 4, "b", 2);
    let rename = |at| InstanceEvent::InstanceRenamed {
        name: "x".into(),
        at,
    };
    s.apply(
        &m,
        i2,
        InstanceEvent::InstanceDeletionRequested { at: at(10) },
    );
    s.apply(&m, i2, InstanceEvent::InstanceDeleted { at: at(11) });
    s.apply(&m, i3, rename(at(12)));
    s.apply(&m, i1, rename(at(13)));
    s.apply(
        &m,
        i4,
        InstanceEvent::InstanceDeletionRequested { at: at(13) },
    );
    s.apply(&m, i4, InstanceEvent::InstanceDeleted { at: at(14) });
    (m, [i1, i2, i3, i4])
}

fn ids_of(v: &[Instance]) -> Vec<Uuid> {
    v.iter().filter_map(|i| i.id).collect()
}

#[test]
fn mgmt_filters_by_deleted_and_project() {
    let (m, [i1, i2, i3, i4]) = mgmt_fixture();
    let page = |deleted, project: Option<&str>| {
        let f = MgmtFilter {
            deleted,
            project: project.map(str::to_string),
        };
        ids_of(&m.mgmt_page(&f, 0, 20))
    };
    // Re-sorted by created desc for output.
    assert_eq!(page(None, None), vec![i3, i4, i2, i1]);
    assert_eq!(page(Some(true), None), vec![i4, i2]);
    assert_eq!(page(Some(false), None), vec![i3, i1]);
    assert_eq!(page(None, Some("a")), vec![i2, i1]);
    assert_eq!(page(Some(true), Some("b")), vec![i4]);
    assert_eq!(page(Some(false), Some("b")), vec![i3]);
    assert!(page(None, Some("zzz")).is_empty());
}

#[test]
fn mgmt_pages_are_cut_by_updated_desc_with_offset() {
    let (m, [i1, i2, i3, i4]) = mgmt_fixture();
    let all = MgmtFilter::default();
    // updated desc: 4, 1, 3, 2 → pages of 2: {4, 1} and {3, 2}, each re-sorted by created.
    assert_eq!(ids_of(&m.mgmt_page(&all, 0, 2)), vec![i4, i1]);
    assert_eq!(ids_of(&m.mgmt_page(&all, 2, 2)), vec![i3, i2]);
    assert!(m.mgmt_page(&all, 4, 2).is_empty());
    assert_eq!(ids_of(&m.mgmt_page(&all, 1, 1)), vec![i1]);
}

#[test]
fn replicas_index_tracks_live_replicas() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let p = created_in(&mut s, &m, 1, "a", 0);
    let replica = |s: &mut Script, n: u128| {
        let mut c = creation(id(n), "a", at(1));
        c.replica_of = Some(p);
        s.create(&m, c);
        id(n)
    };
    let r1 = replica(&mut s, 2);
    let r2 = replica(&mut s, 3);
    let r3 = replica(&mut s, 4);
    assert_eq!(m.live_replicas(p), vec![r1, r2, r3]);
    assert_eq!(m.live_replica_count(p), 3);

    s.apply(&m, r1, InstanceEvent::ReplicaDetachRequested { at: at(2) });
    assert_eq!(
        m.live_replica_count(p),
        3,
        "still a replica while detaching"
    );
    s.apply(
        &m,
        r1,
        InstanceEvent::ReplicaDetached {
            primary_id: p,
            at: at(3),
        },
    );
    s.apply(
        &m,
        r2,
        InstanceEvent::InstanceDeletionRequested { at: at(3) },
    );
    assert_eq!(m.live_replicas(p), vec![r2, r3], "deleting still counts");
    s.apply(&m, r2, InstanceEvent::InstanceDeleted { at: at(4) });
    assert_eq!(m.live_replicas(p), vec![r3]);
    assert!(m.live_replicas(r3).is_empty());
}

#[test]
fn quota_is_charged_at_create_and_released_at_deletion_request() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    let mut big = creation(id(2), "a", at(0));
    big.flavor.ram = 4096;
    big.volume = Some(aggregates::instance::VolumeSpec {
        size: 5,
        volume_type: None,
    });
    s.create(&m, big);
    let mut no_volume = creation(id(3), "b", at(0));
    no_volume.volume = None;
    s.create(&m, no_volume);
    let usage = |instances, ram, volumes| QuotaInUse {
        instances,
        ram,
        volumes,
    };
    assert_eq!(m.quota_usage("a"), usage(2, 6144, 6));
    assert_eq!(m.quota_usage("b"), usage(1, 2048, 0));
    assert_eq!(m.quota_usage("nobody"), QuotaInUse::default());

    s.apply(
        &m,
        a,
        InstanceEvent::InstanceDeletionRequested { at: at(1) },
    );
    assert_eq!(m.quota_usage("a"), usage(1, 4096, 5), "released at request");
    // A repeated request and a late failure report must not charge it again.
    s.apply(
        &m,
        a,
        InstanceEvent::InstanceDeletionRequested { at: at(2) },
    );
    s.apply(
        &m,
        a,
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorServer,
            fault: aggregates::instance::FaultInfo {
                message: "late".into(),
                details: "late".into(),
            },
            at: at(3),
        },
    );
    assert_eq!(m.quota_usage("a"), usage(1, 4096, 5));
    s.apply(&m, a, InstanceEvent::InstanceDeleted { at: at(4) });
    assert_eq!(
        m.quota_usage("a"),
        usage(1, 4096, 5),
        "deleted changes nothing more"
    );
}

#[test]
fn redelivered_events_change_nothing() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    s.provision(&m, a, at(1), sample_addresses());
    let before = m.snapshot();
    for ev in s.log.clone() {
        assert_eq!(m.apply(&ev), ApplyOutcome::AlreadyApplied);
    }
    assert_eq!(m.snapshot(), before);
    assert_eq!(
        m.position(),
        s.log.last().map(|e| e.position).unwrap_or_default()
    );
}

#[test]
fn a_repeated_revision_at_a_new_position_is_skipped() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    let mut again = s.push(
        a,
        InstanceEvent::InstanceRenamed {
            name: "x".into(),
            at: at(1),
        },
    );
    again.revision = 0;
    let before = m.snapshot();
    assert_eq!(
        m.apply(&again),
        ApplyOutcome::StaleRevision {
            expected: 1,
            actual: 0
        }
    );
    assert_eq!(m.snapshot().records, before.records);
    assert_eq!(m.position(), again.position, "position still advances");
}

#[test]
fn a_revision_gap_is_applied_and_reported() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    let mut skipped = s.push(
        a,
        InstanceEvent::InstanceRenamed {
            name: "x".into(),
            at: at(1),
        },
    );
    skipped.revision = 5;
    assert_eq!(
        m.apply(&skipped),
        ApplyOutcome::AppliedAfterGap {
            expected: 1,
            actual: 5
        }
    );
    assert_eq!(m.instance(a).map(|i| i.name), Some("x".to_string()));
}

#[test]
fn events_of_an_uncreated_instance_leave_no_record() {
    let m = InstanceModels::new();
    let mut s = Script::new();
    let ev = s.push(id(9), InstanceEvent::InstanceDeleted { at: at(0) });
    assert_eq!(m.apply(&ev), ApplyOutcome::Applied);
    assert!(m.is_empty());
    assert!(m.instance(id(9)).is_none());
    assert_eq!(m.position(), ev.position);
}

#[test]
fn advance_to_moves_every_model_forward_only() {
    let m = InstanceModels::new();
    let p = |n| Position {
        commit: n,
        prepare: n,
    };
    m.advance_to(p(7));
    assert_eq!(m.position(), p(7));
    m.advance_to(p(3));
    assert_eq!(m.position(), p(7));
    let positions = m.positions();
    assert_eq!(positions.lists, p(7));
    assert_eq!(positions.quota, p(7));
}

/// A busy mixed log: several projects, replicas, failures, renames, deletions.
fn busy_log(m: &InstanceModels) -> Script {
    let mut s = Script::new();
    let p = created_in(&mut s, m, 1, "a", 0);
    let q = created_in(&mut s, m, 2, "b", 0);
    let mut rc = creation(id(3), "a", at(1));
    rc.replica_of = Some(p);
    s.create(m, rc);
    s.provision(m, p, at(2), sample_addresses());
    s.provision(m, id(3), at(2), vec![]);
    s.apply(
        m,
        q,
        InstanceEvent::ProvisioningFailed {
            task: Task::BuildingErrorPort,
            fault: aggregates::instance::FaultInfo {
                message: "Failed to create User port".into(),
                details: "trace".into(),
            },
            at: at(3),
        },
    );
    s.apply(
        m,
        p,
        InstanceEvent::InstanceRenamed {
            name: "renamed".into(),
            at: at(4),
        },
    );
    s.apply(
        m,
        id(3),
        InstanceEvent::ReplicaDetached {
            primary_id: p,
            at: at(5),
        },
    );
    s.apply(m, q, InstanceEvent::InstanceDeletionRequested { at: at(6) });
    s.apply(m, q, InstanceEvent::InstanceDeleted { at: at(7) });
    for n in 10..30 {
        created_in(&mut s, m, n, if n % 2 == 0 { "a" } else { "c" }, n as i64);
    }
    s
}

#[test]
fn rebuild_from_the_log_equals_the_incremental_models() {
    let m = InstanceModels::new();
    let s = busy_log(&m);
    // Redeliver a tail, as a projector restarting from an older checkpoint would.
    for ev in &s.log[s.log.len() / 2..] {
        m.apply(ev);
    }
    let rebuilt = InstanceModels::from_events(&s.log);
    assert_eq!(m.snapshot(), rebuilt.snapshot());
    assert_eq!(rebuilt.len(), 23);
    assert_eq!(rebuilt.snapshot().lists.get("c").map(Vec::len), Some(10));
}

#[test]
fn record_memory_stays_small() {
    // The benchmark budget is 2 KiB per instance across all models (measured ~1.7 KiB).
    // The record is the bulk; guard its inline size against an accidental blow-up
    // (1032 since the instance's boxed `reset_on`, what fails its running backups).
    let inline = std::mem::size_of::<Record>();
    assert!(inline <= 1032, "Record is {inline} bytes inline");
}

#[test]
fn a_rebuilt_set_is_swapped_in_only_at_the_same_position() {
    let live = InstanceModels::new();
    let fresh = InstanceModels::new();
    let event = |n: u64| ProjectedEvent {
        position: Position {
            commit: n,
            prepare: n,
        },
        instance_id: id(n as u128),
        revision: 0,
        event: InstanceEvent::InstanceCreated(Box::new(creation(id(n as u128), "p", at(n as i64)))),
    };
    let events: Vec<ProjectedEvent> = (1..=3).map(event).collect();
    for e in &events {
        live.apply(e);
    }
    fresh.apply(&events[0]);
    assert!(!live.swap_in(&fresh), "behind: not swapped");
    assert_eq!(live.len(), 3);
    for e in &events[1..] {
        fresh.apply(e);
    }
    assert!(live.swap_in(&fresh), "caught up: swapped");
    assert_eq!(live.snapshot(), fresh.snapshot());
    // The projector goes on applying to the swapped-in set.
    live.apply(&event(4));
    assert_eq!(live.len(), 4);
    assert_eq!(live.list_page("p", None, 20).instances.len(), 4);
}

#[test]
fn older_log_reset_after_delete_charges_the_live_instance_again_once() {
    // Logs from before a reset was refused while DELETING: the reset brought the
    // instance back live, so it is charged; the next DELETE releases it once.
    let m = InstanceModels::new();
    let mut s = Script::new();
    let a = created_in(&mut s, &m, 1, "a", 0);
    let charged = m.quota_usage("a");
    s.apply(
        &m,
        a,
        InstanceEvent::InstanceDeletionRequested { at: at(1) },
    );
    assert_eq!(m.quota_usage("a"), QuotaInUse::default());
    s.apply(
        &m,
        a,
        InstanceEvent::InstanceStatusReset {
            task: Task::Deleting,
            at: at(2),
        },
    );
    assert_eq!(m.quota_usage("a"), charged, "live again: charged");
    s.apply(
        &m,
        a,
        InstanceEvent::InstanceDeletionRequested { at: at(3) },
    );
    s.apply(&m, a, InstanceEvent::InstanceDeleted { at: at(4) });
    assert_eq!(m.quota_usage("a"), QuotaInUse::default());
}
