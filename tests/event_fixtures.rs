//! Golden event fixtures: every event version troved ever wrote stays readable.
//!
//! `tests/fixtures/events/` holds one frozen JSON file per event type and version (plus
//! the older shapes of a version, `*.early.json`), written by hand as the store holds
//! them: type, version, body and metadata envelope. These tests read them with the
//! production decoders only (`troved::runtime::codec`, `aggregates::instance::decode`,
//! `aggregates::configuration::decode`), check that the set covers every entry of both
//! `EVENT_VERSIONS` catalogs, and fold the instance and configuration stories the
//! fixtures tell into today's state. See the folder's README.md: never edit a fixture;
//! a new version gets a new file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aggregates::backup::{self, BackupEvent, BackupStatus};
use aggregates::configuration::{self, ConfigurationEvent};
use aggregates::instance::{
    self, ComputeStatus, DecodeError, Instance, InstanceEvent, ServiceStatus, Task,
};
use aggregates::quota::{self, QuotaEvent};
use chrono::{DateTime, Utc};
use projections::{InstanceModels, Position, ProjectedEvent};
use serde_json::{json, Value};
use troved::runtime::codec::{self, EventMetadata};
use troved::store::RecordedEvent;
use uuid::Uuid;

/// The instance of the main story (`orders-db`).
const INSTANCE: &str = "6f1d2c3b-4a59-4e8d-9c7b-1a2b3c4d5e6f";
/// The replica written by an early build.
const REPLICA: &str = "8a7b6c5d-4e3f-4a1b-9c2d-0e1f2a3b4c5d";
/// The replica's primary (not in the fixtures).
const REPLICA_PRIMARY: &str = "0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b";
/// The group the instance is created with.
const CFG_A: &str = "c0ffee00-1a2b-4c3d-8e4f-5a6b7c8d9e01";
/// The group it attaches later, whose life the configuration fixtures tell.
const CFG_B: &str = "c0ffee00-1a2b-4c3d-8e4f-5a6b7c8d9e02";
const MYSQL_80: &str = "3c9e1a7b-5d2f-4b8e-a6c4-1f0d9e8b7a63";
/// The backup of the instance, whose life the backup fixtures tell.
const BACKUP: &str = "b4c1c0de-0b1e-4a2c-9d3e-5f6a7b8c9d01";
const MYSQL_84: &str = "7e2d4f6a-8b1c-4e3d-9f5a-2c6b8d0e4a17";

// ---- loading ---------------------------------------------------------------------------

/// One fixture file.
#[derive(Clone, Debug)]
struct Fixture {
    file: String,
    event_type: String,
    version: u32,
    data: Value,
    metadata: Value,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

fn load(file: &str) -> Fixture {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    let doc: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {file} is not JSON: {e}"));
    let field = |k: &str| {
        doc.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("fixture {file} has no `{k}`"))
    };
    let event_type = field("type")
        .as_str()
        .unwrap_or_else(|| panic!("fixture {file}: `type` is not a string"))
        .to_string();
    let version = field("version")
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or_else(|| panic!("fixture {file}: `version` is not a small integer"));
    Fixture {
        file: file.to_string(),
        event_type,
        version,
        data: field("data"),
        metadata: field("metadata"),
    }
}

/// Every `*.json` file of the folder, by name.
fn all_fixtures() -> Vec<Fixture> {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir().display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir().display());
    files.iter().map(|f| load(f)).collect()
}

/// `(type, version)` from `<Type>.v<N>.json` or `<Type>.v<N>.<variant>.json`.
fn parse_file_name(file: &str) -> Option<(String, u32)> {
    let stem = file.strip_suffix(".json")?;
    let mut parts = stem.split('.');
    let event_type = parts.next()?.to_string();
    let version = parts.next()?.strip_prefix('v')?.parse().ok()?;
    match (parts.next(), parts.next()) {
        (None, _) | (Some(_), None) => Some((event_type, version)),
        (Some(_), Some(_)) => None,
    }
}

/// Which aggregate's catalog knows a type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aggregate {
    Instance,
    Configuration,
    Backup,
    Quota,
}

fn aggregate_of(event_type: &str) -> Option<(Aggregate, u32)> {
    instance::current_version(event_type)
        .map(|v| (Aggregate::Instance, v))
        .or_else(|| {
            configuration::current_version(event_type).map(|v| (Aggregate::Configuration, v))
        })
        .or_else(|| backup::current_version(event_type).map(|v| (Aggregate::Backup, v)))
        .or_else(|| quota::current_version(event_type).map(|v| (Aggregate::Quota, v)))
}

/// The fixture as the store would hand it back.
fn recorded(f: &Fixture, stream: &str, revision: u64) -> RecordedEvent {
    RecordedEvent {
        id: Uuid::new_v5(&Uuid::NAMESPACE_URL, f.file.as_bytes()),
        stream: stream.to_string(),
        revision,
        position: Position {
            commit: revision + 1,
            prepare: revision + 1,
        },
        event_type: f.event_type.clone(),
        data: serde_json::to_vec(&f.data).expect("a JSON value serializes"),
        metadata: serde_json::to_vec(&f.metadata).expect("a JSON value serializes"),
    }
}

/// Decodes an instance fixture the way the runtime reads the store, through both the
/// command path's decoder and the projector's fast path, which must agree.
fn decode_instance(f: &Fixture) -> (InstanceEvent, EventMetadata) {
    let r = recorded(f, &format!("instance-{INSTANCE}"), 0);
    let decoded = codec::decode(&r).unwrap_or_else(|e| panic!("{} does not decode: {e}", f.file));
    let fast = codec::decode_event(&r)
        .unwrap_or_else(|e| panic!("{} does not decode on the fast path: {e}", f.file));
    assert_eq!(fast, decoded.0, "{}: the two decoders disagree", f.file);
    decoded
}

/// Decodes a configuration fixture the way the runtime reads the store.
fn decode_configuration(f: &Fixture) -> (ConfigurationEvent, EventMetadata) {
    let r = recorded(f, &format!("configuration-{CFG_B}"), 0);
    let (data, meta) =
        codec::decode_parts(&r).unwrap_or_else(|e| panic!("{} envelope: {e}", f.file));
    let event = configuration::decode(&r.event_type, meta.schema_version, data)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", f.file));
    let fast = codec::decode_configuration_event(&r)
        .unwrap_or_else(|e| panic!("{} does not decode on the fast path: {e}", f.file));
    assert_eq!(fast, event, "{}: the two decoders disagree", f.file);
    (event, meta)
}

/// Decodes a backup fixture the way the runtime reads the store.
fn decode_backup(f: &Fixture) -> (BackupEvent, EventMetadata) {
    let r = recorded(f, &format!("backup-{BACKUP}"), 0);
    let (data, meta) =
        codec::decode_parts(&r).unwrap_or_else(|e| panic!("{} envelope: {e}", f.file));
    let event = backup::decode(&r.event_type, meta.schema_version, data)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", f.file));
    let fast = codec::decode_backup_event(&r)
        .unwrap_or_else(|e| panic!("{} does not decode on the fast path: {e}", f.file));
    assert_eq!(fast, event, "{}: the two decoders disagree", f.file);
    (event, meta)
}

/// Decodes a quota fixture the way the runtime reads the store.
fn decode_quota(f: &Fixture) -> (QuotaEvent, EventMetadata) {
    let r = recorded(f, "quota-proj-alpha", 0);
    let (data, meta) =
        codec::decode_parts(&r).unwrap_or_else(|e| panic!("{} envelope: {e}", f.file));
    let event = quota::decode(&r.event_type, meta.schema_version, data)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", f.file));
    let fast = codec::decode_quota_event(&r)
        .unwrap_or_else(|e| panic!("{} does not decode on the fast path: {e}", f.file));
    assert_eq!(fast, event, "{}: the two decoders disagree", f.file);
    (event, meta)
}

fn backup_event(file: &str) -> BackupEvent {
    decode_backup(&load(file)).0
}

fn event(file: &str) -> InstanceEvent {
    decode_instance(&load(file)).0
}

fn configuration_event(file: &str) -> ConfigurationEvent {
    decode_configuration(&load(file)).0
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("a UUID")
}

/// Every key of `expected` is in `actual` with the same value (recursively for objects):
/// re-encoding lost or changed nothing the fixture holds.
fn assert_subset(file: &str, path: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => assert_subset(file, &p, v, av),
                    None => panic!("{file}: re-encoding drops {p}"),
                }
            }
        }
        _ => assert_eq!(expected, actual, "{file}: re-encoding changes {path}"),
    }
}

// ---- the fixture set -------------------------------------------------------------------

#[test]
fn every_event_version_has_a_golden_fixture() {
    let present: BTreeSet<String> = all_fixtures().into_iter().map(|f| f.file).collect();
    let catalogs = [
        (
            "aggregates::instance::EVENT_VERSIONS",
            instance::EVENT_VERSIONS,
        ),
        (
            "aggregates::configuration::EVENT_VERSIONS",
            configuration::EVENT_VERSIONS,
        ),
        ("aggregates::backup::EVENT_VERSIONS", backup::EVENT_VERSIONS),
        ("aggregates::quota::EVENT_VERSIONS", quota::EVENT_VERSIONS),
    ];
    let mut missing = Vec::new();
    for (catalog, entries) in catalogs {
        for (event_type, current) in entries {
            // Every version ever written, not only today's: old logs hold them all.
            for v in 1..=*current {
                let file = format!("{event_type}.v{v}.json");
                if !present.contains(&file) {
                    missing.push(format!("{file} (from {catalog}: {event_type} v{current})"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "missing golden event fixtures in tests/fixtures/events/:\n  {}\n\
         An event type was added or its version bumped: write the JSON this build stores \
         for that version (type, version, data, metadata) by hand as \
         tests/fixtures/events/<Type>.v<N>.json, keep the older files, and never edit a \
         fixture afterwards (see the folder's README.md).",
        missing.join("\n  ")
    );
}

#[test]
fn event_type_names_never_collide_across_aggregates() {
    let mut seen = BTreeSet::new();
    for catalog in [
        instance::EVENT_VERSIONS,
        configuration::EVENT_VERSIONS,
        backup::EVENT_VERSIONS,
        quota::EVENT_VERSIONS,
    ] {
        for (t, _) in catalog {
            assert!(seen.insert(*t), "{t} is an event type of two aggregates");
        }
    }
}

#[test]
fn every_fixture_is_named_after_a_known_type_and_version() {
    for f in all_fixtures() {
        let (name_type, name_version) = parse_file_name(&f.file).unwrap_or_else(|| {
            panic!(
                "{}: fixture names are <Type>.v<N>.json or <Type>.v<N>.<variant>.json",
                f.file
            )
        });
        assert_eq!(f.event_type, name_type, "{}: `type` vs file name", f.file);
        assert_eq!(
            f.version, name_version,
            "{}: `version` vs file name",
            f.file
        );
        assert_eq!(
            f.metadata.get("schema_version").and_then(Value::as_u64),
            Some(u64::from(f.version)),
            "{}: metadata.schema_version is the body's version",
            f.file
        );
        let (_, current) = aggregate_of(&f.event_type).unwrap_or_else(|| {
            panic!(
                "{}: event type {} is in neither EVENT_VERSIONS (a type that was ever \
                 written must stay decodable)",
                f.file, f.event_type
            )
        });
        assert!(
            (1..=current).contains(&f.version),
            "{}: version {} is not between 1 and the current {current}",
            f.file,
            f.version
        );
    }
}

#[test]
fn every_fixture_decodes_with_the_production_decoders() {
    let mut decoded = BTreeMap::new();
    for f in all_fixtures() {
        let Some((aggregate, current)) = aggregate_of(&f.event_type) else {
            panic!("{}: unknown type {}", f.file, f.event_type);
        };
        let (event_type, version, body, at, meta) = match aggregate {
            Aggregate::Instance => {
                let (e, meta) = decode_instance(&f);
                let (t, v, body) = e.encode();
                (t, v, body, e.at(), meta)
            }
            Aggregate::Configuration => {
                let (e, meta) = decode_configuration(&f);
                let (t, v, body) = e.encode();
                (t, v, body, e.at(), meta)
            }
            Aggregate::Backup => {
                let (e, meta) = decode_backup(&f);
                let (t, v, body) = e.encode();
                (t, v, body, e.at(), meta)
            }
            Aggregate::Quota => {
                let (e, meta) = decode_quota(&f);
                let (t, v, body) = e.encode();
                (t, v, body, e.at(), meta)
            }
        };
        assert_eq!(event_type, f.event_type, "{}: decoded type", f.file);
        assert_eq!(
            version, current,
            "{}: re-encoded at today's version",
            f.file
        );
        assert_eq!(meta.schema_version, f.version, "{}: envelope", f.file);
        assert_eq!(
            meta.time, at,
            "{}: metadata.time is the event's `at`",
            f.file
        );
        assert!(
            ["req-", "saga:", "startup:", "reconcile:"]
                .iter()
                .any(|p| meta.request_id.starts_with(p)),
            "{}: request_id {:?} is req-<uuid>, saga:<step>, startup:<check> or reconcile:periodic",
            f.file,
            meta.request_id
        );
        if meta.request_id.starts_with("saga:") {
            assert_eq!(meta.actor.user_id, "troved-saga", "{}: saga actor", f.file);
            assert_eq!(meta.actor.roles, vec!["admin".to_string()], "{}", f.file);
        }
        if meta.request_id.starts_with("startup:") || meta.request_id.starts_with("reconcile:") {
            assert_eq!(
                meta.actor.user_id, "troved-reconcile",
                "{}: start-up actor",
                f.file
            );
        }
        if f.version == current {
            // Today's shape: decoding then encoding keeps every field the fixture holds
            // (it may add fields that got a default since).
            assert_subset(&f.file, "data", &f.data, &body);
        }
        decoded.insert(f.file.clone(), event_type);
    }
    assert!(decoded.len() >= instance::EVENT_VERSIONS.len());
}

#[test]
fn a_version_newer_than_the_build_is_refused_not_misread() {
    for f in all_fixtures() {
        let newer = f.version + 1;
        let err = match aggregate_of(&f.event_type) {
            Some((Aggregate::Instance, _)) => {
                instance::decode(&f.event_type, newer, f.data.clone()).err()
            }
            Some((Aggregate::Configuration, _)) => {
                configuration::decode(&f.event_type, newer, f.data.clone()).err()
            }
            Some((Aggregate::Backup, _)) => {
                backup::decode(&f.event_type, newer, f.data.clone()).err()
            }
            Some((Aggregate::Quota, _)) => {
                quota::decode(&f.event_type, newer, f.data.clone()).err()
            }
            None => panic!("{}: unknown type", f.file),
        };
        assert!(
            matches!(err, Some(DecodeError::FutureVersion { .. })),
            "{}: v{newer} must be refused as a future version, got {err:?}",
            f.file
        );
    }
}

#[test]
fn early_bodies_read_the_later_optional_fields_as_zero() {
    let InstanceEvent::InstanceCreated(c) = event("InstanceCreated.v1.early.json") else {
        panic!("InstanceCreated.v1.early.json is an InstanceCreated");
    };
    assert!(load("InstanceCreated.v1.early.json")
        .data
        .get("configuration_revision")
        .is_none());
    assert_eq!(c.configuration_revision, 0);
    assert_eq!(c.instance_id, uuid(REPLICA));

    let early = load("ConfigurationAttached.v1.early.json");
    assert!(early.data.get("revision").is_none());
    assert_eq!(
        decode_instance(&early).0,
        InstanceEvent::ConfigurationAttached {
            configuration_id: uuid(CFG_A),
            restart_required: false,
            revision: 0,
            at: ts("2023-11-20T10:00:00Z"),
        }
    );

    // The current shapes carry them.
    let InstanceEvent::InstanceCreated(c) = event("InstanceCreated.v1.json") else {
        panic!("InstanceCreated.v1.json is an InstanceCreated");
    };
    assert_eq!(c.configuration_revision, 2);
    assert!(matches!(
        event("ConfigurationAttached.v1.json"),
        InstanceEvent::ConfigurationAttached { revision: 1, .. }
    ));
}

#[test]
fn a_guest_configuration_put_in_force_says_so_and_older_bodies_do_not() {
    let old = load("GuestConfigurationApplied.v1.json");
    assert!(old.data.get("in_force").is_none());
    assert!(matches!(
        decode_instance(&old).0,
        InstanceEvent::GuestConfigurationApplied {
            in_force: false,
            ..
        }
    ));
    assert_eq!(
        event("GuestConfigurationApplied.v1.in_force.json"),
        InstanceEvent::GuestConfigurationApplied {
            configuration_id: Some(uuid(CFG_A)),
            revision: 2,
            in_force: true,
            at: ts("2024-03-01T09:01:40Z"),
        }
    );
}

// ---- folding into today's state --------------------------------------------------------

/// The main story of `orders-db`, in order.
const STORY: &[&str] = &[
    "InstanceCreated.v1.json",
    "VolumeCreated.v1.json",
    "ServerCreated.v1.json",
    "ComputeStatusChanged.v1.json",
    "AddressesAssigned.v1.json",
    "GuestPrepared.v1.json",
    "GuestConfigurationApplied.v1.json",
    "GuestStatusReported.v1.json",
    "VolumeUsageReported.v1.json",
    "ProvisioningCompleted.v1.json",
    "InstanceRenamed.v1.json",
    "ConfigurationRevisionApplied.v1.json",
    "ConfigurationDetached.v1.json",
    "ConfigurationAttached.v1.json",
    "AccessUpdateRequested.v1.json",
    "AccessUpdated.v1.json",
    "DatastoreVersionUpgradeRequested.v1.json",
    "DatastoreVersionUpgraded.v1.json",
    "InstanceDeletionRequested.v1.json",
    "ServerDeleted.v1.json",
    "VolumeDeleted.v1.json",
    "InstanceDeleted.v1.json",
];

/// Folds fixture files in order.
fn fold_files(files: &[&str]) -> Instance {
    let events: Vec<InstanceEvent> = files.iter().map(|f| event(f)).collect();
    instance::fold(&events)
}

/// The story up to and including `last`.
fn story_until(last: &str) -> Vec<&'static str> {
    let end = STORY
        .iter()
        .position(|f| *f == last)
        .unwrap_or_else(|| panic!("{last} is not in the story"));
    STORY[..=end].to_vec()
}

/// The story's events as the projector hands them to the read models.
fn projected(files: &[&str], stream_id: &str) -> Vec<ProjectedEvent> {
    files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let r = recorded(&load(f), &format!("instance-{stream_id}"), n as u64);
            let (e, _) = codec::decode(&r).unwrap_or_else(|err| panic!("{f}: {err}"));
            ProjectedEvent::from_stream(&r.stream, r.revision, r.position, e)
                .expect("an instance stream")
        })
        .collect()
}

#[test]
fn the_instance_story_folds_into_todays_state() {
    let id = uuid(INSTANCE);
    let mut s = Instance::default();
    let step = |s: Instance, file: &str| instance::evolve(s, &event(file));

    s = step(s, "InstanceCreated.v1.json");
    assert_eq!(s.id, Some(id));
    assert_eq!(s.project_id, "proj-alpha");
    assert_eq!(s.user_id, "alice");
    assert_eq!(s.name, "orders-db");
    assert_eq!((s.flavor.id.as_str(), s.flavor.ram), ("7", 2048));
    assert_eq!(s.volume.as_ref().map(|v| v.size), Some(5));
    assert_eq!(
        s.datastore
            .as_ref()
            .map(|d| (d.version_id, d.version_name.as_str())),
        Some((uuid(MYSQL_80), "8.0"))
    );
    assert_eq!(
        (s.task, s.service, s.compute),
        (Task::Building, ServiceStatus::New, None)
    );
    assert_eq!(
        (s.configuration_id, s.configuration_revision),
        (Some(uuid(CFG_A)), 2)
    );
    let users: Vec<(&str, &str)> = s
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.host.as_str()))
        .collect();
    assert_eq!(users, [("app", "%")]);
    assert_eq!(s.databases.len(), 1);
    assert_eq!(s.nics[0].network_id.as_deref(), Some("net-private"));
    assert_eq!(s.availability_zone.as_deref(), Some("nova"));
    assert_eq!(
        s.access,
        Some(json!({"is_public": false, "allowed_cidrs": ["10.0.0.0/8"]}))
    );
    assert_eq!(s.created, ts("2024-03-01T09:00:00Z"));
    assert_eq!(s.command_status(), "BUILD");
    assert_no_secrets(&s);

    for f in &STORY[1..10] {
        s = step(s, f);
    }
    assert_eq!(s.task, Task::None, "provisioning completed");
    assert_eq!(s.compute, Some(ComputeStatus::Active));
    assert_eq!(s.service, ServiceStatus::Healthy);
    assert_eq!(s.server_id.as_deref(), Some("srv-6f1d2c3b"));
    assert_eq!(s.volume_id.as_deref(), Some("vol-6f1d2c3b"));
    assert_eq!(s.addresses.len(), 2);
    assert_eq!(s.addresses[0].kind, "private");
    assert!(s.guest_prepared);
    assert_eq!(s.guest_configuration, Some((Some(uuid(CFG_A)), 2)));
    assert_eq!(s.volume_usage, Some((0.19, 4.9)));
    assert_eq!(s.command_status(), "ACTIVE");

    s = step(s, "InstanceRenamed.v1.json");
    assert_eq!(s.name, "orders-primary");
    assert_eq!(s.updated, ts("2024-03-01T10:15:00Z"));

    s = step(s, "ConfigurationRevisionApplied.v1.json");
    assert_eq!(
        (s.configuration_id, s.configuration_revision),
        (Some(uuid(CFG_A)), 3)
    );
    assert_eq!(s.task, Task::None);

    s = step(s, "ConfigurationDetached.v1.json");
    assert_eq!((s.configuration_id, s.configuration_revision), (None, 0));

    s = step(s, "ConfigurationAttached.v1.json");
    assert_eq!(
        (s.configuration_id, s.configuration_revision),
        (Some(uuid(CFG_B)), 1)
    );
    assert_eq!(s.task, Task::RestartRequired);
    assert_eq!(s.command_status(), "RESTART_REQUIRED");

    s = step(s, "AccessUpdateRequested.v1.json");
    assert_eq!(s.task, Task::Updating);
    assert!(s.pending_access.as_ref().is_some_and(|a| a.is_public));
    s = step(s, "AccessUpdated.v1.json");
    assert_eq!(s.task, Task::None);
    assert_eq!(s.pending_access, None);
    assert_eq!(
        s.access,
        Some(json!({"is_public": true, "allowed_cidrs": ["203.0.113.0/24"]}))
    );

    s = step(s, "DatastoreVersionUpgradeRequested.v1.json");
    assert_eq!(
        (s.task, s.service),
        (Task::Upgrading, ServiceStatus::Upgrading)
    );
    assert_eq!(
        s.datastore
            .as_ref()
            .map(|d| (d.version_id, d.version_number.as_str())),
        Some((uuid(MYSQL_84), "8.4.0"))
    );
    assert_eq!(
        s.upgrade_requested.as_deref().map(|(at, _)| *at),
        Some(ts("2024-03-01T13:00:00Z"))
    );
    s = step(s, "DatastoreVersionUpgraded.v1.json");
    assert_eq!((s.task, s.service), (Task::None, ServiceStatus::Healthy));
    assert_eq!(s.command_status(), "ACTIVE");

    s = step(s, "InstanceDeletionRequested.v1.json");
    assert_eq!(s.task, Task::Deleting);
    assert_eq!(s.configuration_id, None);
    assert_eq!(s.command_status(), "SHUTDOWN");
    s = step(s, "ServerDeleted.v1.json");
    assert_eq!((s.server_id.as_deref(), s.compute), (None, None));
    assert!(s.addresses.is_empty());
    s = step(s, "VolumeDeleted.v1.json");
    assert_eq!((s.volume_id.as_deref(), s.volume_usage), (None, None));
    s = step(s, "InstanceDeleted.v1.json");
    assert!(s.deleted && !s.is_live());
    assert_eq!(s.deleted_at, Some(ts("2024-03-01T15:00:30Z")));
    assert_eq!(s.service, ServiceStatus::Deleted);
    assert_eq!(s.datastore, None);
    assert_eq!(s.name, "orders-primary", "the name stays readable");
    assert_eq!(s.version, STORY.len() as u64);

    // The same state, folded at once.
    assert_eq!(fold_files(STORY), s);
}

#[test]
fn the_read_models_project_the_story_like_the_fold() {
    let id = uuid(INSTANCE);
    // Live, before the deletion: listed and charged.
    let live = story_until("DatastoreVersionUpgraded.v1.json");
    let models = InstanceModels::from_events(&projected(&live, INSTANCE));
    assert_eq!(models.instance(id), Some(fold_files(&live)));
    let page = models.list_page("proj-alpha", None, 20);
    assert_eq!(page.instances, vec![fold_files(&live)]);
    let q = models.quota_usage("proj-alpha");
    assert_eq!((q.instances, q.ram, q.volumes), (1, 2048, 5));

    // Deleted: gone from the list and the quota, still a record.
    let models = InstanceModels::from_events(&projected(STORY, INSTANCE));
    assert_eq!(models.instance(id), Some(fold_files(STORY)));
    assert!(models
        .list_page("proj-alpha", None, 20)
        .instances
        .is_empty());
    assert_eq!(models.quota_usage("proj-alpha"), Default::default());
}

#[test]
fn the_failed_branches_of_the_story_fold() {
    let mut files = story_until("DatastoreVersionUpgradeRequested.v1.json");
    files.push("DatastoreVersionUpgradeFailed.v1.json");
    let s = fold_files(&files);
    assert_eq!(s.task, Task::BuildingErrorServer);
    assert_eq!(s.command_status(), "ERROR");
    let fault = s.fault.expect("a fault");
    assert_eq!(fault.message, "Upgrade of the datastore version failed.");
    assert_eq!(fault.created, ts("2024-03-01T13:10:00Z"));
    assert_eq!(s.datastore.map(|d| d.version_id), Some(uuid(MYSQL_84)));

    let mut files = story_until("AccessUpdateRequested.v1.json");
    files.push("AccessUpdateFailed.v1.json");
    let s = fold_files(&files);
    assert_eq!(s.task, Task::UpdatingErrorAccess);
    assert_eq!(s.pending_access, None);
    assert_eq!(
        s.access,
        Some(json!({"is_public": false, "allowed_cidrs": ["10.0.0.0/8"]})),
        "the stored access is unchanged"
    );
    assert_eq!(
        s.fault.map(|f| f.details),
        Some("floating IP pool exhausted".into())
    );
}

#[test]
fn the_lost_state_branch_of_the_story_folds() {
    // The vault and then the cloud's state were lost after the access update.
    let mut files = story_until("AccessUpdated.v1.json");
    files.push("InstanceSecretsLost.v1.json");
    let s = fold_files(&files);
    assert!(s.has_sealed_secrets && s.secrets_lost);
    assert_eq!(
        s.command_status(),
        "ACTIVE",
        "the database keeps its passwords"
    );
    files.push("InstanceResourcesLost.v1.json");
    let s = fold_files(&files);
    assert_eq!(s.task, Task::BuildingErrorServer);
    assert_eq!(s.command_status(), "ERROR");
    assert_eq!(
        (s.server_id, s.volume_id, s.volume_usage),
        (None, None, None)
    );
    assert!(s.addresses.is_empty());
    assert_eq!(s.service, ServiceStatus::Shutdown);
    assert_eq!(s.fault.map(|f| f.created), Some(ts("2024-03-01T14:00:01Z")));
}

#[test]
fn the_early_replica_folds() {
    let created = "InstanceCreated.v1.early.json";
    let s = fold_files(&[created, "ConfigurationAttached.v1.early.json"]);
    assert_eq!(s.id, Some(uuid(REPLICA)));
    assert_eq!(s.name, "orders-replica");
    assert_eq!(s.replica_of, Some(uuid(REPLICA_PRIMARY)));
    assert_eq!(
        (s.configuration_id, s.configuration_revision),
        (Some(uuid(CFG_A)), 0)
    );
    assert_eq!(
        s.task,
        Task::Building,
        "a non-restarting group leaves the task"
    );
    assert_no_secrets(&s);

    let s = fold_files(&[
        created,
        "ProvisioningFailed.v1.json",
        "ResourcesReleased.v1.json",
    ]);
    assert_eq!(s.task, Task::BuildingErrorTimeoutGa);
    assert_eq!(s.service, ServiceStatus::FailedTimeoutGuestagent);
    assert!(s.build_failed && s.resources_released);
    assert_eq!(s.command_status(), "ERROR");
    assert_eq!(
        s.fault.map(|f| f.message),
        Some("Build error: guestagent timeout.".into())
    );

    let s = fold_files(&[
        created,
        "ReplicaDetachRequested.v1.json",
        "ReplicaDetachFailed.v1.json",
    ]);
    assert_eq!(s.task, Task::None);
    assert_eq!(s.replica_of, Some(uuid(REPLICA_PRIMARY)), "still a replica");
    assert!(s.fault.is_some());

    let requested = fold_files(&[created, "ReplicaDetachRequested.v1.json"]);
    assert_eq!(requested.task, Task::Detaching);
    let s = fold_files(&[
        created,
        "ReplicaDetachRequested.v1.json",
        "ReplicaDetached.v1.json",
    ]);
    assert_eq!((s.task, s.replica_of), (Task::None, None));
    assert_eq!(s.updated, ts("2023-12-01T12:30:45Z"));
}

#[test]
fn the_replica_set_switches_of_the_early_replica_fold() {
    let created = "InstanceCreated.v1.early.json";
    let promoting = fold_files(&[created, "ReplicaSourcePromotionRequested.v1.json"]);
    assert_eq!(promoting.task, Task::Promoting);
    assert_eq!(
        promoting.replica_switch.as_ref().map(|w| w.coordinator()),
        Some(uuid(REPLICA)),
        "the promoted replica coordinates"
    );
    let s = fold_files(&[
        created,
        "ReplicaSourcePromotionRequested.v1.json",
        "ReplicaSourcePromoted.v1.json",
    ]);
    assert_eq!((s.task, s.replica_of), (Task::None, None), "the source now");
    assert_eq!(s.replica_switch, None);
    let s = fold_files(&[
        created,
        "ReplicaSourcePromotionRequested.v1.json",
        "ReplicaSourcePromotionFailed.v1.json",
    ]);
    assert_eq!(s.task, Task::PromotionError);
    assert_eq!(s.command_status(), "ERROR");
    assert_eq!(
        s.replica_of,
        Some(uuid(REPLICA_PRIMARY)),
        "topology as before"
    );

    let ejecting = fold_files(&[created, "ReplicaSourceEjectionRequested.v1.json"]);
    assert_eq!(ejecting.task, Task::Ejecting);
    assert_eq!(
        ejecting.replica_switch.as_ref().map(|w| w.coordinator()),
        Some(uuid(REPLICA_PRIMARY)),
        "the ejected source coordinates"
    );
    let s = fold_files(&[
        created,
        "ReplicaSourceEjectionRequested.v1.json",
        "ReplicaSourceEjected.v1.json",
    ]);
    assert_eq!((s.task, s.replica_of), (Task::None, None), "elected");
    let s = fold_files(&[
        created,
        "ReplicaSourceEjectionRequested.v1.json",
        "ReplicaSourceEjectionFailed.v1.json",
    ]);
    assert_eq!(s.task, Task::EjectionError);
}

/// The state keeps user names only: no sealed password ever reaches it.
fn assert_no_secrets(s: &Instance) {
    let text = serde_json::to_string(s).expect("the state serializes");
    assert!(
        !text.contains("ciphertext"),
        "no sealed secret in the state"
    );
}

#[test]
fn the_configuration_group_story_folds() {
    let created = configuration_event("ConfigurationCreated.v1.json");
    let updated = configuration_event("ConfigurationUpdated.v1.json");
    let deleted = configuration_event("ConfigurationDeleted.v1.json");

    let s = configuration::fold([&created]);
    assert_eq!(s.id, Some(uuid(CFG_B)));
    assert_eq!(
        (s.project_id.as_str(), s.name.as_str()),
        ("proj-alpha", "orders-tuning")
    );
    assert_eq!(s.datastore.version_id, uuid(MYSQL_80));
    assert_eq!(s.values.get("max_connections"), Some(&json!(200)));
    assert_eq!(s.values.get("long_query_time"), Some(&json!(2.5)));
    assert_eq!(
        s.values.get("character_set_server"),
        Some(&json!("utf8mb4"))
    );
    assert_eq!(s.created, ts("2024-02-28T16:00:00Z"));
    assert_eq!(s.updated, s.created);
    assert_eq!((s.version, s.restart_required_since), (1, 0));
    assert!(s.restart_required(), "character_set_server needs a restart");

    let s = configuration::fold([&created, &updated]);
    assert_eq!(s.description, None);
    assert_eq!(s.values.get("max_connections"), Some(&json!(500)));
    assert_eq!(
        s.values.get("innodb_buffer_pool_size"),
        Some(&json!(1_073_741_824u64))
    );
    assert_eq!(s.values.len(), 5);
    assert_eq!(s.version, 2);
    assert_eq!(
        s.restart_required_since, 2,
        "the update changed innodb_buffer_pool_size, which needs a restart"
    );
    assert!(s.is_live());

    let s = configuration::fold([&created, &updated, &deleted]);
    assert!(s.deleted && !s.is_live());
    assert_eq!(s.deleted_at, Some(ts("2024-03-05T17:00:00Z")));
    assert_eq!(s.name, "orders-tuning", "the name stays readable");
    assert_eq!(s.version, 3);
}

#[test]
fn the_backup_story_folds() {
    let created = backup_event("BackupCreated.v1.json");
    let started = backup_event("BackupStarted.v1.json");
    let completed = backup_event("BackupCompleted.v1.json");
    let failed = backup_event("BackupFailed.v1.json");
    let deleted = backup_event("BackupDeleted.v1.json");
    let removed = backup_event("BackupArtifactRemoved.v1.json");
    let deletion_failed = backup_event("BackupDeletionFailed.v1.json");

    let s = backup::fold([&created]);
    assert_eq!(s.id, Some(uuid(BACKUP)));
    assert_eq!(s.instance_id, uuid(INSTANCE));
    assert_eq!(
        (s.name.as_str(), s.container.as_str()),
        ("nightly", "database_backups")
    );
    assert_eq!(s.datastore.version_id, uuid(MYSQL_80));
    assert_eq!(s.status, BackupStatus::New);
    assert!(s.status.is_running());

    let s = backup::fold([&created, &started, &completed]);
    assert_eq!((s.status, s.attempts), (BackupStatus::Completed, 1));
    let a = s.artifact.clone().expect("the artifact");
    assert_eq!(a.size_bytes, 52_428_800);
    assert_eq!(a.engine_position.as_deref(), Some("1895623"));
    assert_eq!(s.updated, ts("2024-03-06T02:03:00Z"));

    let s = backup::fold([&created, &started, &failed]);
    assert_eq!(s.status, BackupStatus::Failed);
    assert!(s.artifact.is_none() && s.fault.is_some());

    let s = backup::fold([&created, &started, &completed, &deleted]);
    assert!(!s.is_live() && s.artifact_to_remove());
    let gone = backup::fold([&created, &started, &completed, &deleted, &removed]);
    assert!(!gone.artifact_to_remove());
    let kept = backup::fold([&created, &started, &completed, &deleted, &deletion_failed]);
    assert!(kept.is_live());
    assert_eq!(kept.status, BackupStatus::DeleteFailed);
    assert_eq!(kept.version, 5);
}

#[test]
fn the_quota_fixture_folds_into_the_overrides_it_names() {
    let (event, meta) = decode_quota(&load("QuotaLimitsUpdated.v1.json"));
    assert_eq!(meta.actor.user_id, "ops", "who changed it");
    assert_eq!(meta.actor.roles, vec!["admin".to_string()]);
    let state = quota::evolve(quota::Quota::default(), &event);
    assert_eq!(state.limits.get("instances"), Some(&3));
    assert_eq!(state.limits.get("backups"), Some(&-1));
    assert_eq!(state.limits.get("ram"), None, "not named: the default");
    let models = projections::quotas::QuotaModels::default();
    models.apply("proj-alpha", &event);
    assert_eq!(models.limit_or("proj-alpha", "instances", 10), 3);
    assert_eq!(models.limit_or("proj-alpha", "volumes", 40), 40);
}

#[test]
fn the_action_branches_of_the_story_fold() {
    let live = story_until("DatastoreVersionUpgraded.v1.json");
    let with = |more: &[&'static str]| {
        let mut files = live.clone();
        files.extend_from_slice(more);
        fold_files(&files)
    };
    let s = with(&["InstanceRestartRequested.v1.json"]);
    assert_eq!((s.task, s.command_status()), (Task::Rebooting, "REBOOT"));
    let s = with(&[
        "InstanceRestartRequested.v1.json",
        "InstanceRestarted.v1.json",
    ]);
    assert_eq!((s.task, s.service), (Task::None, ServiceStatus::Healthy));
    let s = with(&[
        "InstanceRestartRequested.v1.json",
        "InstanceRestartFailed.v1.json",
    ]);
    assert_eq!(s.task, Task::None);
    assert!(s.fault.is_some());

    let s = with(&["FlavorResizeRequested.v1.json"]);
    assert_eq!((s.task, s.command_status()), (Task::Resizing, "RESIZE"));
    assert_eq!(s.quota_ram(), 4096);
    let s = with(&["FlavorResizeRequested.v1.json", "FlavorResized.v1.json"]);
    assert_eq!((s.flavor.id.as_str(), s.flavor.ram), ("8", 4096));
    let s = with(&[
        "FlavorResizeRequested.v1.json",
        "FlavorResizeFailed.v1.json",
    ]);
    assert_eq!((s.flavor.id.as_str(), s.quota_ram()), ("7", 2048));

    let s = with(&["VolumeResizeRequested.v1.json", "VolumeResized.v1.json"]);
    assert_eq!(s.volume.as_ref().map(|v| v.size), Some(8));
    let s = with(&[
        "VolumeResizeRequested.v1.json",
        "VolumeResizeFailed.v1.json",
    ]);
    assert_eq!(s.volume.as_ref().map(|v| v.size), Some(5));
    assert_eq!(s.quota_volume(), 5);

    let s = with(&[
        "VolumeResizeRequested.v1.json",
        "InstanceStatusReset.v1.json",
    ]);
    assert_eq!((s.task, s.service), (Task::None, ServiceStatus::Unknown));
    assert_eq!(s.quota_volume(), 5, "the abandoned resize is not charged");
}

/// Databases, users and root (ADR 0010), after the story's provisioning: in the order of
/// the files, each a change queued for the guest until its outcome.
const GUEST_CHANGES: &[&str] = &[
    "DatabasesCreated.v1.json",
    "GuestChangeApplied.v1.json",
    "UsersCreated.v1.json",
    "UserAccessGranted.v1.json",
    "UserAccessRevoked.v1.json",
    "UserAttributesUpdated.v1.json",
    "UserPasswordsChanged.v1.json",
    "RootEnabled.v1.json",
    "RootDisabled.v1.json",
    "DatabaseDeleted.v1.json",
    "UserDeleted.v1.json",
    "GuestChangeFailed.v1.json",
];

#[test]
fn the_guest_changes_fold_into_todays_lists() {
    let mut files = story_until("ProvisioningCompleted.v1.json");
    let before = fold_files(&files).databases.len();
    files.extend_from_slice(&GUEST_CHANGES[..9]);
    let s = fold_files(&files);
    let dbs: Vec<&str> = s.databases.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(dbs.len(), before + 2);
    assert!(dbs.contains(&"invoices") && dbs.contains(&"archive"));
    let auditor = s
        .users
        .iter()
        .find(|u| u.name == "auditor")
        .expect("renamed");
    assert_eq!(auditor.databases, ["archive"]);
    assert!(!s.root_enabled);
    // The story's create enabled root (`root_password`): the history is the create's.
    assert_eq!(
        s.root_enabled_history.as_deref(),
        Some(&(ts("2024-03-01T09:00:00Z"), "alice".to_string()))
    );
    assert_eq!(s.guest_changes.len(), 7, "change 1 applied, 2-8 pending");

    files.extend_from_slice(&GUEST_CHANGES[9..]);
    let s = fold_files(&files);
    // Change 10 (the user's drop) failed: the user is back, the drop of `archive` stays.
    assert!(s.users.iter().any(|u| u.name == "auditor"));
    assert!(!s.databases.iter().any(|d| d.name == "archive"));
    assert_eq!(s.failed_guest_change.map(|n| n.get()), Some(10));
    assert!(s.fault.is_some());
}
