//! Test helpers shared by the model and view tests: a script that numbers events like
//! the store would (global positions, per-stream revisions) and builders for the usual
//! event sequences. Test-only.

use std::collections::HashMap;

use aggregates::instance::{
    Address, ComputeStatus, DatastoreRef, FlavorRef, InstanceCreated, InstanceEvent, ServiceStatus,
    VolumeSpec,
};
use chrono::{DateTime, NaiveDateTime, Utc};
use uuid::Uuid;

use crate::{ApplyOutcome, InstanceModels, Position, ProjectedEvent, ViewCtx};

/// `2019-12-23T20:58:35` → UTC time. Panics on a malformed literal (tests only).
pub fn ts(s: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("bad test timestamp {s}: {e}"))
        .and_utc()
}

/// A UUID literal. Panics on a malformed literal (tests only).
pub fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_else(|e| panic!("bad test uuid {s}: {e}"))
}

/// Numbers events as the store would and keeps the log for rebuild checks.
#[derive(Default)]
pub struct Script {
    next_commit: u64,
    revisions: HashMap<Uuid, u64>,
    /// Every event pushed, in global order.
    pub log: Vec<ProjectedEvent>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Appends `event` to `id`'s stream and returns it as the projector would see it.
    pub fn push(&mut self, id: Uuid, event: InstanceEvent) -> ProjectedEvent {
        self.next_commit += 1;
        let rev = self.revisions.entry(id).or_insert(0);
        let ev = ProjectedEvent {
            position: Position {
                commit: self.next_commit,
                prepare: self.next_commit,
            },
            instance_id: id,
            revision: *rev,
            event,
        };
        *rev += 1;
        self.log.push(ev.clone());
        ev
    }

    /// Pushes and applies, asserting the event was applied.
    pub fn apply(&mut self, models: &InstanceModels, id: Uuid, event: InstanceEvent) {
        let ev = self.push(id, event);
        assert_eq!(models.apply(&ev), ApplyOutcome::Applied, "{ev:?}");
    }

    /// Creates an instance from `c`.
    pub fn create(&mut self, models: &InstanceModels, c: InstanceCreated) {
        let id = c.instance_id;
        self.apply(models, id, InstanceEvent::InstanceCreated(Box::new(c)));
    }

    /// Runs a successful provisioning: volume, server, ACTIVE, HEALTHY, addresses,
    /// completed — all at `at`.
    pub fn provision(
        &mut self,
        models: &InstanceModels,
        id: Uuid,
        at: DateTime<Utc>,
        addresses: Vec<Address>,
    ) {
        let size = models
            .instance(id)
            .and_then(|i| i.volume)
            .map_or(1, |v| v.size);
        use InstanceEvent::*;
        for e in [
            VolumeCreated {
                volume_id: format!("vol-{id}"),
                size,
                volume_type: None,
                at,
            },
            ServerCreated {
                server_id: format!("srv-{id}"),
                at,
            },
            ComputeStatusChanged {
                status: ComputeStatus::Active,
                at,
            },
            GuestStatusReported {
                status: ServiceStatus::Healthy,
                at,
            },
            AddressesAssigned { addresses, at },
            ProvisioningCompleted { at },
        ] {
            self.apply(models, id, e);
        }
    }
}

/// A mysql 5.7 instance on flavor `6` (2048 MB) with a 1 GB volume in `RegionOne`.
pub fn creation(id: Uuid, project: &str, at: DateTime<Utc>) -> InstanceCreated {
    InstanceCreated {
        instance_id: id,
        project_id: project.to_string(),
        user_id: "user".into(),
        name: "test".into(),
        flavor: FlavorRef {
            id: "6".into(),
            ram: 2048,
        },
        volume: Some(VolumeSpec {
            size: 1,
            volume_type: None,
        }),
        datastore: mysql_57(),
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
        at,
    }
}

/// The datastore of the upstream samples.
pub fn mysql_57() -> DatastoreRef {
    DatastoreRef {
        datastore_id: Uuid::from_u128(0xd5),
        datastore_name: "mysql".into(),
        version_id: Uuid::from_u128(0x57),
        version_name: "5.7".into(),
        version_number: "5.7.29".into(),
        manager: "mysql".into(),
    }
}

/// The two addresses of the upstream samples: one fixed, one floating.
pub fn sample_addresses() -> Vec<Address> {
    vec![
        Address {
            address: "10.1.0.62".into(),
            kind: "private".into(),
            network: Some("3dc8f3c2-f335-11eb-878c-00224d6b7bc1".into()),
            port: None,
        },
        Address {
            address: "172.24.5.114".into(),
            kind: "public".into(),
            network: None,
            port: None,
        },
    ]
}

/// A request context on `127.0.0.1:8779` with the heartbeat rule off.
pub fn ctx(project: &str, admin: bool, now: DateTime<Utc>) -> ViewCtx {
    ViewCtx {
        base_url: "https://127.0.0.1:8779".into(),
        api_version: "1.0".into(),
        caller_project: project.into(),
        caller_is_admin: admin,
        now,
        heartbeat_expiry: None,
        heartbeats: Default::default(),
        running_backups: Default::default(),
    }
}
