//! Given events / when command / then events (or refusal) for the Backup aggregate.

use uuid::Uuid;

use super::*;
use crate::fault::Fault;
use crate::instance::tests::support::{
    admin, deleted, earlier, now, other_project, owner, ready, ready_then, INSTANCE,
};
use crate::instance::{fold as fold_instance, Caller, FaultInfo, Instance, InstanceEvent};

const BACKUP: Uuid = Uuid::from_u128(0xb001);
const PARENT: Uuid = Uuid::from_u128(0xb000);
const OTHER_INSTANCE: Uuid = Uuid::from_u128(0x9999);

/// The facts a test varies; [`World::decide`] builds the context from them.
struct World {
    instance: Option<Instance>,
    backup_running: bool,
    supported: bool,
    incremental: bool,
    parent: Option<ParentFacts>,
    quota: (i64, i64),
    children: Vec<Uuid>,
    caller: Caller,
}

impl World {
    fn new() -> World {
        World {
            instance: Some(fold_instance(&ready())),
            backup_running: false,
            supported: true,
            incremental: true,
            parent: None,
            quota: (0, 50),
            children: vec![],
            caller: owner(),
        }
    }

    fn decide(
        &self,
        given: &[BackupEvent],
        cmd: &BackupCommand,
    ) -> Result<Vec<BackupEvent>, BackupError> {
        let ctx = DecideCtx {
            now: now(),
            backup_id: BACKUP,
            caller: &self.caller,
            instance: InstanceFacts {
                state: self.instance.as_ref(),
                backup_running: self.backup_running,
                backups_supported: self.supported,
                incremental_supported: self.incremental,
            },
            parent: self.parent.clone(),
            quota: self.quota,
            default_container: "database_backups",
            children: self.children.clone(),
        };
        decide(&fold(given), cmd, &ctx)
    }
}

fn create_cmd(f: impl FnOnce(&mut CreateBackup)) -> BackupCommand {
    let mut c = CreateBackup {
        name: "nightly".into(),
        description: Some("before the upgrade".into()),
        instance_id: INSTANCE,
        parent_id: None,
        incremental: false,
        container: None,
    };
    f(&mut c);
    BackupCommand::CreateBackup(Box::new(c))
}

fn created() -> Vec<BackupEvent> {
    World::new().decide(&[], &create_cmd(|_| {})).unwrap()
}

fn artifact() -> BackupArtifact {
    BackupArtifact {
        location: "file:///b/database_backups/x".into(),
        size_bytes: 1 << 30,
        checksum: "ab".repeat(32),
        engine_position: None,
    }
}

fn completed() -> Vec<BackupEvent> {
    let mut e = created();
    e.push(BackupEvent::BackupStarted {
        attempt: 1,
        at: earlier(),
    });
    e.push(BackupEvent::BackupCompleted {
        artifact: artifact(),
        at: earlier(),
    });
    e
}

fn fault() -> FaultInfo {
    FaultInfo {
        message: "copy failed".into(),
        details: "exit 1".into(),
    }
}

fn refusal(r: Result<Vec<BackupEvent>, BackupError>) -> (Fault, String) {
    let e = r.unwrap_err();
    (e.fault(), e.to_string())
}

#[test]
fn a_create_records_the_instance_datastore_and_the_default_container() {
    let events = created();
    let [BackupEvent::BackupCreated(c)] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(c.instance_id, INSTANCE);
    assert_eq!(c.container, "database_backups");
    assert_eq!(c.parent_id, None);
    assert_eq!(c.user_id, "alice");
    assert_eq!(Some(c.datastore.clone()), fold_instance(&ready()).datastore);
    let b = fold(&events);
    assert_eq!(b.status, BackupStatus::New);
    assert!(b.status.is_running());
}

#[test]
fn instances_that_cannot_be_backed_up_are_refused_as_upstream() {
    let mut w = World::new();
    w.caller = other_project();
    assert_eq!(
        refusal(w.decide(&[], &create_cmd(|_| {}))).0,
        Fault::ItemNotFound
    );
    let mut w = World::new();
    w.instance = None;
    assert_eq!(
        refusal(w.decide(&[], &create_cmd(|_| {}))).0,
        Fault::ItemNotFound
    );
    let mut w = World::new();
    w.instance = Some(fold_instance(&ready_then(&deleted())));
    assert_eq!(
        refusal(w.decide(&[], &create_cmd(|_| {}))).0,
        Fault::ItemNotFound
    );
    // Another backup runs: the instance is in BACKUP.
    let mut w = World::new();
    w.backup_running = true;
    let (fault, message) = refusal(w.decide(&[], &create_cmd(|_| {})));
    assert_eq!(fault, Fault::UnprocessableEntity);
    assert!(
        message.ends_with("(instance status was BACKUP)."),
        "{message}"
    );
    // Not ACTIVE (rebooting guest, shut down...).
    let mut w = World::new();
    w.instance = Some(fold_instance(&ready_then(&[
        InstanceEvent::ComputeStatusChanged {
            status: crate::instance::ComputeStatus::Shutoff,
            at: earlier(),
        },
    ])));
    assert_eq!(
        refusal(w.decide(&[], &create_cmd(|_| {}))).0,
        Fault::UnprocessableEntity
    );
    // Admins may back up any project's instance.
    let mut w = World::new();
    w.caller = admin();
    assert!(w.decide(&[], &create_cmd(|_| {})).is_ok());
}

#[test]
fn unsupported_datastores_quota_and_replays_are_refused() {
    let mut w = World::new();
    w.supported = false;
    let (fault, message) = refusal(w.decide(&[], &create_cmd(|_| {})));
    assert_eq!(fault, Fault::UnprocessableEntity);
    assert!(
        message.starts_with("The 'backup_create' operation is not supported"),
        "{message}"
    );
    let mut w = World::new();
    w.quota = (50, 50);
    assert_eq!(
        refusal(w.decide(&[], &create_cmd(|_| {}))),
        (
            Fault::OverLimit,
            "Quota exceeded for resources: ['backups'].".into()
        )
    );
    w.quota = (50, -1);
    assert!(w.decide(&[], &create_cmd(|_| {})).is_ok());
    assert_eq!(
        refusal(World::new().decide(&created(), &create_cmd(|_| {}))).0,
        Fault::Conflict
    );
}

#[test]
fn incremental_backups_need_a_completed_parent_of_the_same_instance() {
    let version = fold_instance(&ready()).datastore.unwrap().version_id;
    let parent = |instance, status| ParentFacts {
        id: PARENT,
        project_id: "proj-owner".into(),
        instance_id: instance,
        status,
        version_id: version,
    };
    let given = create_cmd(|c| c.parent_id = Some(PARENT));
    let mut w = World::new();
    w.parent = Some(parent(INSTANCE, BackupStatus::Completed));
    w.parent.as_mut().unwrap().project_id = fold_instance(&ready()).project_id;
    let events = w.decide(&[], &given).unwrap();
    assert_eq!(fold(&events).parent_id, Some(PARENT));
    // Missing parent: 404 with upstream's message.
    let mut w = World::new();
    assert_eq!(
        refusal(w.decide(&[], &given)),
        (
            Fault::ItemNotFound,
            format!("Resource {PARENT} cannot be found.")
        )
    );
    let project = fold_instance(&ready()).project_id;
    w.parent = Some(ParentFacts {
        project_id: project.clone(),
        ..parent(OTHER_INSTANCE, BackupStatus::Completed)
    });
    assert_eq!(refusal(w.decide(&[], &given)).0, Fault::BadRequest);
    w.parent = Some(ParentFacts {
        project_id: project.clone(),
        ..parent(INSTANCE, BackupStatus::Failed)
    });
    assert_eq!(refusal(w.decide(&[], &given)).0, Fault::Conflict);
    // Another project's parent is not found.
    w.parent = Some(ParentFacts {
        project_id: "someone-else".into(),
        ..parent(INSTANCE, BackupStatus::Completed)
    });
    assert_eq!(refusal(w.decide(&[], &given)).0, Fault::ItemNotFound);
    // `incremental` without a parent: the last completed one, or a full backup.
    let mut w = World::new();
    let inc = create_cmd(|c| c.incremental = true);
    assert_eq!(fold(&w.decide(&[], &inc).unwrap()).parent_id, None);
    w.parent = Some(ParentFacts {
        project_id: project,
        ..parent(INSTANCE, BackupStatus::Completed)
    });
    assert_eq!(fold(&w.decide(&[], &inc).unwrap()).parent_id, Some(PARENT));
    // A parent taken before an upgrade: 400.
    let mut other = World::new();
    other.parent = Some(ParentFacts {
        project_id: fold_instance(&ready()).project_id,
        version_id: Uuid::from_u128(0xdead),
        ..parent(INSTANCE, BackupStatus::Completed)
    });
    assert_eq!(refusal(other.decide(&[], &given)).0, Fault::BadRequest);
    // Engines without increments: 400, whichever way it was asked.
    w.incremental = false;
    assert_eq!(refusal(w.decide(&[], &inc)).0, Fault::BadRequest);
    assert_eq!(refusal(w.decide(&[], &given)).0, Fault::BadRequest);
}

#[test]
fn the_saga_moves_a_backup_through_its_states_idempotently() {
    let w = World::new();
    let mut given = created();
    let start = BackupCommand::StartBackup { attempt: 1 };
    given.extend(w.decide(&given, &start).unwrap());
    assert_eq!(fold(&given).status, BackupStatus::Building);
    assert!(
        w.decide(&given, &start).unwrap().is_empty(),
        "a repeated start"
    );
    let complete = BackupCommand::CompleteBackup {
        artifact: artifact(),
    };
    given.extend(w.decide(&given, &complete).unwrap());
    let b = fold(&given);
    assert_eq!(b.status, BackupStatus::Completed);
    assert!(!b.status.is_running());
    assert_eq!(b.size_gb(), Some(1.0));
    assert!(
        w.decide(&given, &complete).unwrap().is_empty(),
        "a repeated completion"
    );
    // A failure report after the completion does not fit.
    assert_eq!(
        refusal(w.decide(&given, &BackupCommand::FailBackup { fault: fault() })).0,
        Fault::Conflict
    );
    // A restart of troved mid-copy: the next attempt, then a failure.
    let mut given = created();
    given.push(BackupEvent::BackupStarted {
        attempt: 1,
        at: earlier(),
    });
    given.extend(
        w.decide(&given, &BackupCommand::StartBackup { attempt: 2 })
            .unwrap(),
    );
    assert_eq!(fold(&given).attempts, 2);
    given.extend(
        w.decide(&given, &BackupCommand::FailBackup { fault: fault() })
            .unwrap(),
    );
    let b = fold(&given);
    assert_eq!((b.status, b.artifact.clone()), (BackupStatus::Failed, None));
    assert!(w
        .decide(&given, &BackupCommand::FailBackup { fault: fault() })
        .unwrap()
        .is_empty());
}

/// An admin's `reset_status` abandons a running backup (the saga records the failure);
/// the copy that answers afterwards is too late: no event, the backup stays FAILED with
/// no artifact registered.
#[test]
fn a_completion_after_the_backup_failed_changes_nothing() {
    let w = World::new();
    let mut given = created();
    given.push(BackupEvent::BackupStarted {
        attempt: 1,
        at: earlier(),
    });
    given.extend(
        w.decide(&given, &BackupCommand::FailBackup { fault: fault() })
            .unwrap(),
    );
    let late = BackupCommand::CompleteBackup {
        artifact: artifact(),
    };
    assert_eq!(w.decide(&given, &late), Ok(vec![]));
    let b = fold(&given);
    assert_eq!(
        (b.status, b.artifact, b.status.is_running()),
        (BackupStatus::Failed, None, false)
    );
    // Nor does a late start bring it back.
    assert_eq!(
        refusal(w.decide(&given, &BackupCommand::StartBackup { attempt: 2 })).0,
        Fault::Conflict
    );
}

#[test]
fn deletes_are_refused_while_running_or_with_children_then_remove_the_artifact() {
    let w = World::new();
    let running = created();
    let (class, message) = refusal(w.decide(&running, &BackupCommand::DeleteBackup));
    assert_eq!(class, Fault::UnprocessableEntity);
    assert_eq!(
        message,
        format!("Backup {BACKUP} cannot be deleted because it is running.")
    );
    let mut w = World::new();
    w.children = vec![PARENT];
    let (class, message) = refusal(w.decide(&completed(), &BackupCommand::DeleteBackup));
    assert_eq!(class, Fault::UnprocessableEntity);
    assert!(message.contains(&PARENT.to_string()), "{message}");
    let mut w = World::new();
    w.caller = other_project();
    assert_eq!(
        refusal(w.decide(&completed(), &BackupCommand::DeleteBackup)).0,
        Fault::ItemNotFound
    );

    let w = World::new();
    let mut given = completed();
    given.extend(w.decide(&given, &BackupCommand::DeleteBackup).unwrap());
    let b = fold(&given);
    assert!(!b.is_live() && b.artifact_to_remove());
    // Deleted: a second DELETE is a 404, as upstream.
    assert_eq!(
        refusal(w.decide(&given, &BackupCommand::DeleteBackup)).0,
        Fault::ItemNotFound
    );
    // The store refused: DELETE_FAILED, visible again, and it may be deleted again.
    let mut failed = given.clone();
    failed.extend(
        w.decide(
            &failed,
            &BackupCommand::FailBackupDeletion { fault: fault() },
        )
        .unwrap(),
    );
    let b = fold(&failed);
    assert!(b.is_live());
    assert_eq!(b.status, BackupStatus::DeleteFailed);
    assert_eq!(
        w.decide(&failed, &BackupCommand::DeleteBackup)
            .unwrap()
            .len(),
        1
    );
    // Removed: recorded once.
    given.extend(
        w.decide(&given, &BackupCommand::RecordArtifactRemoved)
            .unwrap(),
    );
    assert!(!fold(&given).artifact_to_remove());
    assert!(w
        .decide(&given, &BackupCommand::RecordArtifactRemoved)
        .unwrap()
        .is_empty());
}

#[test]
fn every_event_round_trips_through_its_stored_form() {
    let mut events = completed();
    events.push(BackupEvent::BackupFailed {
        fault: fault(),
        at: earlier(),
    });
    events.push(BackupEvent::BackupDeleted { at: earlier() });
    events.push(BackupEvent::BackupArtifactRemoved { at: earlier() });
    events.push(BackupEvent::BackupDeletionFailed {
        fault: fault(),
        at: earlier(),
    });
    let mut types: Vec<&str> = events.iter().map(BackupEvent::event_type).collect();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), EVENT_VERSIONS.len(), "every type is covered");
    for e in events {
        let (t, v, data) = e.encode();
        assert_eq!(decode(t, v, data.clone()).unwrap(), e);
        let bytes = serde_json::to_vec(&data).unwrap();
        assert_eq!(decode_slice(t, v, &bytes).unwrap(), e);
    }
    assert!(matches!(
        decode("BackupCreated", 2, serde_json::json!({})),
        Err(DecodeError::FutureVersion { .. })
    ));
}
