//! The test helper: a catalog over plain fields, fixed time and callers, event builders
//! for common histories, and `given(..).when(..).then(..)`. Deliberately small: a test
//! that needs something unusual edits the catalog's fields in place.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::catalog::{
    Backup, Catalog, ConfigurationGroup, Datastore, DatastoreVersion, Flavor, QuotaUsage,
};
use crate::instance::{
    decide, decide_all, evolve, fold, Caller, ComputeStatus, CreateInstance, DatastoreRef,
    DecideCtx, DomainError, FlavorRef, Instance, InstanceCommand, InstanceCreated, InstanceEvent,
    SealedSecret, ServiceStatus, VolumeRequest, VolumeSpec,
};

// ---- ids -------------------------------------------------------------------------------

/// The instance every scenario addresses.
pub const INSTANCE: Uuid = Uuid::from_u128(0x1111);
/// A ready mysql 8.0 primary of the owner's project (flavor 8, 3 GB `ssd` volume).
pub const PRIMARY: Uuid = Uuid::from_u128(0x2001);
/// A ready replica of [`PRIMARY`].
pub const PRIMARY_REPLICA: Uuid = Uuid::from_u128(0x2002);
/// A primary still building (no server yet).
pub const PRIMARY_BUILDING: Uuid = Uuid::from_u128(0x2003);
/// A ready primary of another project.
pub const PRIMARY_OTHER_PROJECT: Uuid = Uuid::from_u128(0x2004);
/// A primary that was deleted.
pub const PRIMARY_DELETED: Uuid = Uuid::from_u128(0x2005);
/// A ready redis primary (no replication support).
pub const PRIMARY_REDIS: Uuid = Uuid::from_u128(0x2006);
/// A ready primary being upgraded (task UPGRADING).
pub const PRIMARY_UPGRADING: Uuid = Uuid::from_u128(0x2007);
/// No such instance anywhere.
pub const NOWHERE: Uuid = Uuid::from_u128(0x2fff);

pub const DS_MYSQL: Uuid = Uuid::from_u128(0xd1);
pub const DS_PG: Uuid = Uuid::from_u128(0xd2);
pub const DS_MARIADB: Uuid = Uuid::from_u128(0xd3);
pub const DS_REDIS: Uuid = Uuid::from_u128(0xd4);
pub const V_MYSQL_57: Uuid = Uuid::from_u128(0xd157);
pub const V_MYSQL_80: Uuid = Uuid::from_u128(0xd180);
pub const V_MYSQL_56: Uuid = Uuid::from_u128(0xd156);
pub const V_PG_12: Uuid = Uuid::from_u128(0xd212);
pub const V_PG_13: Uuid = Uuid::from_u128(0xd213);
/// Two mariadb versions share the name `10.4` (numbers `10.4.1` / `10.4.2`).
pub const V_MARIADB_A: Uuid = Uuid::from_u128(0xd3a);
pub const V_MARIADB_B: Uuid = Uuid::from_u128(0xd3b);
pub const V_REDIS_7: Uuid = Uuid::from_u128(0xd47);

/// mysql 8.0, owner's project, needs a restart.
pub const CFG_MYSQL80: Uuid = Uuid::from_u128(0xc1);
/// mysql 8.0, owner's project, applied live.
pub const CFG_MYSQL80_LIVE: Uuid = Uuid::from_u128(0xc2);
/// postgresql 13, owner's project.
pub const CFG_PG13: Uuid = Uuid::from_u128(0xc3);
/// mysql 8.0, another project.
pub const CFG_OTHER_PROJECT: Uuid = Uuid::from_u128(0xc4);

/// COMPLETED, 2 GB, mysql, owner.
pub const BK_OK: Uuid = Uuid::from_u128(0xb1);
/// SAVING (still running).
pub const BK_RUNNING: Uuid = Uuid::from_u128(0xb2);
/// COMPLETED, 6.5 GB, mysql.
pub const BK_BIG: Uuid = Uuid::from_u128(0xb3);
/// COMPLETED, postgresql.
pub const BK_PG: Uuid = Uuid::from_u128(0xb4);
/// COMPLETED, another project.
pub const BK_OTHER_PROJECT: Uuid = Uuid::from_u128(0xb5);
/// RESTORED, 1 GB, mysql.
pub const BK_RESTORED: Uuid = Uuid::from_u128(0xb6);
/// COMPLETED, 2 GB, redis.
pub const BK_REDIS: Uuid = Uuid::from_u128(0xb7);

pub const OWNER_PROJECT: &str = "proj-owner";
pub const OTHER_PROJECT: &str = "proj-other";

// ---- time and callers ------------------------------------------------------------------

/// The clock reading of every decided command.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).unwrap() // 2024-05-01T12:00:00Z
}

/// When histories happened: ten minutes before [`now`].
pub fn earlier() -> DateTime<Utc> {
    now() - Duration::minutes(10)
}

pub fn owner() -> Caller {
    Caller {
        user_id: "alice".into(),
        project_id: OWNER_PROJECT.into(),
        roles: vec!["member".into()],
    }
}

pub fn other_project() -> Caller {
    Caller {
        user_id: "mallory".into(),
        project_id: OTHER_PROJECT.into(),
        roles: vec!["member".into()],
    }
}

pub fn admin() -> Caller {
    Caller {
        user_id: "cloud-admin".into(),
        project_id: "proj-admin".into(),
        roles: vec!["member".into(), "admin".into()],
    }
}

// ---- the catalog -----------------------------------------------------------------------

/// A [`Catalog`] over plain fields; tests change fields to set up their case.
#[derive(Clone, Debug)]
pub struct TestCatalog {
    pub region: String,
    pub max_volume_size: u64,
    pub flavors: Vec<Flavor>,
    pub datastores: Vec<Datastore>,
    pub default_datastore: Option<String>,
    pub configuration_groups: Vec<ConfigurationGroup>,
    /// Other instances (for `replica_of`), as folded states.
    pub instances: Vec<Instance>,
    /// `(primary, live replica count)`; absent = 0.
    pub live_replicas: Vec<(Uuid, usize)>,
    /// `(primary, its live replicas)` for promote / eject; absent = none.
    pub replica_ids: Vec<(Uuid, Vec<Uuid>)>,
    pub backups: Vec<Backup>,
    pub quota: QuotaUsage,
}

impl TestCatalog {
    pub fn version_mut(&mut self, id: Uuid) -> &mut DatastoreVersion {
        self.datastores
            .iter_mut()
            .flat_map(|d| d.versions.iter_mut())
            .find(|v| v.id == id)
            .expect("version in the test catalog")
    }

    pub fn backup_mut(&mut self, id: Uuid) -> &mut Backup {
        self.backups
            .iter_mut()
            .find(|b| b.id == id)
            .expect("backup in the test catalog")
    }
}

impl Catalog for TestCatalog {
    fn region(&self) -> &str {
        &self.region
    }
    fn max_volume_size(&self) -> u64 {
        self.max_volume_size
    }
    fn flavor(&self, id: &str) -> Option<Flavor> {
        self.flavors.iter().find(|f| f.id == id).cloned()
    }
    fn datastore(&self, id_or_name: &str) -> Option<Datastore> {
        let by_id = self
            .datastores
            .iter()
            .find(|d| d.id.to_string() == id_or_name);
        by_id
            .or_else(|| self.datastores.iter().find(|d| d.name == id_or_name))
            .cloned()
    }
    fn default_datastore(&self) -> Option<String> {
        self.default_datastore.clone()
    }
    fn configuration_group(&self, id: Uuid) -> Option<ConfigurationGroup> {
        self.configuration_groups
            .iter()
            .find(|g| g.id == id)
            .cloned()
    }
    fn instance(&self, id: Uuid) -> Option<Instance> {
        self.instances.iter().find(|i| i.id == Some(id)).cloned()
    }
    fn live_replicas(&self, id: Uuid) -> usize {
        self.live_replicas
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(0, |(_, n)| *n)
    }
    fn backup(&self, id: Uuid) -> Option<Backup> {
        self.backups.iter().find(|b| b.id == id).cloned()
    }
    fn quota(&self, _project_id: &str) -> QuotaUsage {
        self.quota
    }
    fn replica_ids(&self, id: Uuid) -> Vec<Uuid> {
        self.replica_ids
            .iter()
            .find(|(p, _)| *p == id)
            .map_or_else(Vec::new, |(_, r)| r.clone())
    }
}

fn version(id: Uuid, name: &str, number: &str, manager: &str) -> DatastoreVersion {
    DatastoreVersion {
        id,
        name: name.into(),
        version: number.into(),
        manager: manager.into(),
        active: true,
        allowed_flavors: None,
        allowed_volume_types: None,
        volume_support: true,
        replication: true,
        root_on_create: false,
    }
}

fn flavor(id: &str, ram: u32, disk: u32) -> Flavor {
    Flavor {
        id: id.into(),
        name: format!("flavor-{id}"),
        ram,
        vcpus: 1,
        disk,
        ephemeral: 0,
    }
}

fn group(id: Uuid, project: &str, version: Uuid, restart_required: bool) -> ConfigurationGroup {
    ConfigurationGroup {
        id,
        name: format!("group-{id}"),
        project_id: project.into(),
        datastore_version_id: version,
        restart_required,
        revision: 0,
        restart_required_since: 0,
    }
}

fn backup(id: Uuid, project: &str, state: &str, size: f64, datastore: &str) -> Backup {
    Backup {
        id,
        project_id: project.into(),
        state: state.into(),
        size: Some(size),
        datastore_name: Some(datastore.into()),
        datastore_version: None,
    }
}

/// Datastores mysql (5.7, 8.0, inactive 5.6; default 8.0), postgresql (12, 13; default
/// 13), mariadb (two versions named `10.4`, numbers `10.4.1`/`10.4.2`, no default) and
/// redis (7; no volumes, no replication).
pub fn datastores() -> Vec<Datastore> {
    let mut mysql56 = version(V_MYSQL_56, "5.6", "5.6.51", "mysql");
    mysql56.active = false;
    let mut redis7 = version(V_REDIS_7, "7", "7.0.15", "redis");
    redis7.volume_support = false;
    redis7.replication = false;
    vec![
        Datastore {
            id: DS_MYSQL,
            name: "mysql".into(),
            default_version_id: Some(V_MYSQL_80),
            versions: vec![
                version(V_MYSQL_57, "5.7", "5.7.29", "mysql"),
                version(V_MYSQL_80, "8.0", "8.0.36", "mysql"),
                mysql56,
            ],
        },
        Datastore {
            id: DS_PG,
            name: "postgresql".into(),
            default_version_id: Some(V_PG_13),
            versions: vec![
                version(V_PG_12, "12", "12.18", "postgresql"),
                version(V_PG_13, "13", "13.14", "postgresql"),
            ],
        },
        Datastore {
            id: DS_MARIADB,
            name: "mariadb".into(),
            default_version_id: None,
            versions: vec![
                version(V_MARIADB_A, "10.4", "10.4.1", "mariadb"),
                version(V_MARIADB_B, "10.4", "10.4.2", "mariadb"),
            ],
        },
        Datastore {
            id: DS_REDIS,
            name: "redis".into(),
            default_version_id: Some(V_REDIS_7),
            versions: vec![redis7],
        },
    ]
}

/// The default world: [`datastores`]; flavors 7 (2 GB RAM, 20 GB disk) and 8 (4 GB,
/// 40 GB); the configuration groups, backups and other instances of the constants
/// above; region `RegionOne`; max volume 10 GB; quota 0 of 10 instances, 0 of 40 GB,
/// RAM unlimited; default datastore `mysql`.
// A fixture: the one literal catalog every test reads.
#[allow(clippy::too_many_lines)]
pub fn catalog() -> TestCatalog {
    let mut cat = TestCatalog {
        region: "RegionOne".into(),
        max_volume_size: 10,
        flavors: vec![flavor("7", 2048, 20), flavor("8", 4096, 40)],
        datastores: datastores(),
        default_datastore: Some("mysql".into()),
        configuration_groups: vec![
            group(CFG_MYSQL80, OWNER_PROJECT, V_MYSQL_80, true),
            group(CFG_MYSQL80_LIVE, OWNER_PROJECT, V_MYSQL_80, false),
            group(CFG_PG13, OWNER_PROJECT, V_PG_13, true),
            group(CFG_OTHER_PROJECT, OTHER_PROJECT, V_MYSQL_80, true),
        ],
        instances: vec![],
        live_replicas: vec![(PRIMARY, 1)],
        replica_ids: vec![],
        backups: vec![
            backup(BK_OK, OWNER_PROJECT, "COMPLETED", 2.0, "mysql"),
            backup(BK_RUNNING, OWNER_PROJECT, "SAVING", 2.0, "mysql"),
            backup(BK_BIG, OWNER_PROJECT, "COMPLETED", 6.5, "mysql"),
            backup(BK_PG, OWNER_PROJECT, "COMPLETED", 2.0, "postgresql"),
            backup(BK_OTHER_PROJECT, OTHER_PROJECT, "COMPLETED", 2.0, "mysql"),
            backup(BK_RESTORED, OWNER_PROJECT, "RESTORED", 1.0, "mysql"),
            backup(BK_REDIS, OWNER_PROJECT, "COMPLETED", 2.0, "redis"),
        ],
        quota: QuotaUsage {
            instances: 0,
            instances_limit: 10,
            ram: 0,
            ram_limit: -1,
            volumes: 0,
            volumes_limit: 40,
        },
    };
    let primary = |id: Uuid| {
        created_with(|c| {
            c.instance_id = id;
            c.flavor = FlavorRef {
                id: "8".into(),
                ram: 4096,
            };
            c.volume = Some(VolumeSpec {
                size: 3,
                volume_type: Some("ssd".into()),
            });
        })
    };
    // Provisioning recorded the primary's volume as 3 GB `ssd`.
    let ready_primary = |id: Uuid| {
        let mut events = ready_from(primary(id));
        events[1] = InstanceEvent::VolumeCreated {
            volume_id: format!("volume-{id}"),
            size: 3,
            volume_type: Some("ssd".into()),
            at: earlier(),
        };
        events
    };
    cat.instances = vec![
        fold(&ready_primary(PRIMARY)),
        fold(&ready_from(created_with(|c| {
            c.instance_id = PRIMARY_REPLICA;
            c.replica_of = Some(PRIMARY);
        }))),
        fold(&[primary(PRIMARY_BUILDING)]),
        fold(&ready_from(created_with(|c| {
            c.instance_id = PRIMARY_OTHER_PROJECT;
            c.project_id = OTHER_PROJECT.into();
        }))),
        fold(&[ready_primary(PRIMARY_DELETED), deleted()].concat()),
        fold(&ready_from(created_with(|c| {
            c.instance_id = PRIMARY_REDIS;
            c.datastore = version_ref(V_REDIS_7);
            c.volume = None;
        }))),
        fold(
            &[
                ready_primary(PRIMARY_UPGRADING),
                vec![upgrade_requested(V_MYSQL_57)],
            ]
            .concat(),
        ),
    ];
    cat
}

/// The denormalized reference of a version of [`datastores`].
pub fn version_ref(version_id: Uuid) -> DatastoreRef {
    let all = datastores();
    let (ds, v) = all
        .iter()
        .find_map(|d| {
            d.versions
                .iter()
                .find(|v| v.id == version_id)
                .map(|v| (d, v))
        })
        .expect("version in the test catalog");
    DatastoreRef {
        datastore_id: ds.id,
        datastore_name: ds.name.clone(),
        version_id: v.id,
        version_name: v.name.clone(),
        version_number: v.version.clone(),
        manager: v.manager.clone(),
    }
}

// ---- events ----------------------------------------------------------------------------

pub fn sealed(text: &str) -> SealedSecret {
    SealedSecret {
        key_id: "key-1".into(),
        nonce: "bm9uY2U=".into(),
        ciphertext: format!("sealed:{text}"),
    }
}

/// The facts of the default create (what `create_cmd()` decides): `db1`, flavor 7,
/// 5 GB volume, mysql 8.0, owner's project, at [`now`].
pub fn instance_created() -> InstanceCreated {
    InstanceCreated {
        instance_id: INSTANCE,
        project_id: OWNER_PROJECT.into(),
        user_id: "alice".into(),
        name: "db1".into(),
        flavor: FlavorRef {
            id: "7".into(),
            ram: 2048,
        },
        volume: Some(VolumeSpec {
            size: 5,
            volume_type: None,
        }),
        datastore: version_ref(V_MYSQL_80),
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
        at: now(),
    }
}

/// `InstanceCreated` as decided now, with changes.
pub fn created_now(f: impl FnOnce(&mut InstanceCreated)) -> InstanceEvent {
    let mut c = instance_created();
    f(&mut c);
    InstanceEvent::InstanceCreated(Box::new(c))
}

/// `InstanceCreated` in a history ([`earlier`]), with changes.
pub fn created_with(f: impl FnOnce(&mut InstanceCreated)) -> InstanceEvent {
    created_now(|c| {
        c.at = earlier();
        f(c);
    })
}

/// The default instance was created (task BUILDING, service NEW, no server).
pub fn created() -> InstanceEvent {
    created_with(|_| {})
}

pub fn server_created() -> InstanceEvent {
    InstanceEvent::ServerCreated {
        server_id: "server-1".into(),
        at: earlier(),
    }
}

pub fn volume_created() -> InstanceEvent {
    InstanceEvent::VolumeCreated {
        volume_id: "volume-1".into(),
        size: 5,
        volume_type: None,
        at: earlier(),
    }
}

pub fn compute(status: ComputeStatus) -> InstanceEvent {
    InstanceEvent::ComputeStatusChanged {
        status,
        at: earlier(),
    }
}

pub fn guest(status: ServiceStatus) -> InstanceEvent {
    InstanceEvent::GuestStatusReported {
        status,
        at: earlier(),
    }
}

pub fn provisioned() -> InstanceEvent {
    InstanceEvent::ProvisioningCompleted { at: earlier() }
}

/// created → volume → server → compute ACTIVE → guest HEALTHY → provisioning done.
pub fn ready_from(created: InstanceEvent) -> Vec<InstanceEvent> {
    vec![
        created,
        volume_created(),
        server_created(),
        compute(ComputeStatus::Active),
        guest(ServiceStatus::Healthy),
        provisioned(),
    ]
}

/// The default instance, ready: task NONE, compute ACTIVE, guest HEALTHY.
pub fn ready() -> Vec<InstanceEvent> {
    ready_from(created())
}

/// `ready()` followed by more events.
pub fn ready_then(more: &[InstanceEvent]) -> Vec<InstanceEvent> {
    [ready(), more.to_vec()].concat()
}

/// A ready replica of [`PRIMARY`].
pub fn ready_replica() -> Vec<InstanceEvent> {
    ready_from(created_with(|c| c.replica_of = Some(PRIMARY)))
}

/// Created and with a server, but the build is still running (task BUILDING).
pub fn building_with_server(status: ComputeStatus) -> Vec<InstanceEvent> {
    vec![created(), server_created(), compute(status)]
}

/// Deletion requested then completed.
pub fn deleted() -> Vec<InstanceEvent> {
    vec![
        InstanceEvent::InstanceDeletionRequested { at: earlier() },
        InstanceEvent::InstanceDeleted { at: earlier() },
    ]
}

pub fn upgrade_requested(to: Uuid) -> InstanceEvent {
    InstanceEvent::DatastoreVersionUpgradeRequested {
        from: version_ref(V_MYSQL_80),
        to: version_ref(to),
        at: earlier(),
    }
}

pub fn attached(configuration_id: Uuid, restart_required: bool) -> InstanceEvent {
    InstanceEvent::ConfigurationAttached {
        configuration_id,
        restart_required,
        revision: 0,
        at: earlier(),
    }
}

// ---- commands --------------------------------------------------------------------------

/// The default create: `db1`, flavor 7, 5 GB volume, mysql 8.0 by name.
pub fn create_cmd() -> CreateInstance {
    CreateInstance {
        instance_id: INSTANCE,
        name: "db1".into(),
        flavor_ref: Some("7".into()),
        volume: Some(VolumeRequest {
            size: 5,
            volume_type: None,
        }),
        datastore: Some(crate::instance::DatastoreRequest {
            datastore_type: Some("mysql".into()),
            version: Some("8.0".into()),
            version_number: None,
        }),
        databases: vec![],
        users: vec![],
        nics: vec![],
        availability_zone: None,
        region_name: None,
        modules: vec![],
        restore_backup_id: None,
        replica_of: None,
        replica_count: None,
        locality: None,
        configuration: None,
        access: None,
        root_password: None,
    }
}

/// The default create with changes, as a command.
pub fn create(f: impl FnOnce(&mut CreateInstance)) -> InstanceCommand {
    let mut c = create_cmd();
    f(&mut c);
    InstanceCommand::CreateInstance(Box::new(c))
}

/// A replica create as the CLI sends it: no flavor, volume or datastore.
pub fn create_replica(of: Uuid, f: impl FnOnce(&mut CreateInstance)) -> InstanceCommand {
    create(|c| {
        c.flavor_ref = None;
        c.volume = None;
        c.datastore = None;
        c.replica_of = Some(of);
        c.replica_count = Some(1);
        f(c);
    })
}

// ---- given / when / then ---------------------------------------------------------------

pub struct Given {
    state: Instance,
    catalog: TestCatalog,
    caller: Caller,
}

/// A history of the instance [`INSTANCE`], the default catalog and the owner calling.
pub fn given(events: &[InstanceEvent]) -> Given {
    Given {
        state: fold(events),
        catalog: catalog(),
        caller: owner(),
    }
}

impl Given {
    /// Changes the catalog.
    pub fn catalog(mut self, f: impl FnOnce(&mut TestCatalog)) -> Self {
        f(&mut self.catalog);
        self
    }

    /// Another caller than the owner.
    pub fn caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    pub fn when(self, cmd: InstanceCommand) -> Then {
        self.decide(|state, ctx| decide(state, &cmd, ctx))
    }

    /// Several commands, all or nothing ([`decide_all`]).
    pub fn when_all(self, cmds: &[InstanceCommand]) -> Then {
        self.decide(|state, ctx| decide_all(state, cmds, ctx))
    }

    fn decide(
        self,
        f: impl FnOnce(&Instance, &DecideCtx) -> Result<Vec<InstanceEvent>, DomainError>,
    ) -> Then {
        let ctx = DecideCtx {
            now: now(),
            instance_id: INSTANCE,
            caller: &self.caller,
            catalog: &self.catalog,
        };
        let result = f(&self.state, &ctx);
        Then {
            state: self.state,
            result,
        }
    }
}

pub struct Then {
    state: Instance,
    result: Result<Vec<InstanceEvent>, DomainError>,
}

impl Then {
    /// Exactly these events; returns the state after them for further checks.
    #[track_caller]
    pub fn then(self, expected: &[InstanceEvent]) -> Instance {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "decided events");
                events.iter().fold(self.state, evolve)
            }
            Err(e) => panic!("expected events {expected:#?}, got refusal {e:?} ({e})"),
        }
    }

    /// Refused with exactly this error; returns it for message/fault checks.
    #[track_caller]
    pub fn then_err(self, expected: DomainError) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected refusal {expected:?}, got events {events:#?}"),
            Err(e) => {
                assert_eq!(e, expected, "refusal");
                e
            }
        }
    }

    /// Accepted, but nothing to record (a no-op, e.g. a repeated report).
    #[track_caller]
    pub fn then_nothing(self) {
        self.then(&[]);
    }

    /// The events, for tests that check a property instead of the exact list.
    #[track_caller]
    pub fn events(self) -> Vec<InstanceEvent> {
        match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected events, got refusal {e:?} ({e})"),
        }
    }
}
