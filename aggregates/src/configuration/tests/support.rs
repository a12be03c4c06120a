//! The test helper: a catalog over plain fields, fixed time and callers, event builders,
//! and `given(..).when(..).then(..)`.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::catalog::{
    Backup, Catalog, ConfigurationGroup, Datastore, DatastoreVersion, Flavor, QuotaUsage,
};
use crate::configuration::{
    decide, fold, ConfigurationCommand, ConfigurationCreated, ConfigurationError,
    ConfigurationEvent, CreateConfiguration, DecideCtx, UpdateMode, Values,
};
use crate::instance::{Caller, DatastoreRef, DatastoreRequest, Instance};

/// The group every scenario addresses.
pub const GROUP: Uuid = Uuid::from_u128(0xc0c0);

pub const DS_MYSQL: Uuid = Uuid::from_u128(0xd1);
pub const DS_PG: Uuid = Uuid::from_u128(0xd2);
pub const DS_MARIADB: Uuid = Uuid::from_u128(0xd3);
pub const DS_REDIS: Uuid = Uuid::from_u128(0xd4);
pub const V_MYSQL_57: Uuid = Uuid::from_u128(0xd157);
pub const V_MYSQL_80: Uuid = Uuid::from_u128(0xd180);
pub const V_MYSQL_56: Uuid = Uuid::from_u128(0xd156);
pub const V_PG_13: Uuid = Uuid::from_u128(0xd213);
/// Two mariadb versions share the name `10.4` (numbers `10.4.1` / `10.4.2`).
pub const V_MARIADB_A: Uuid = Uuid::from_u128(0xd3a);
pub const V_MARIADB_B: Uuid = Uuid::from_u128(0xd3b);
pub const V_REDIS_7: Uuid = Uuid::from_u128(0xd47);

pub const OWNER_PROJECT: &str = "proj-owner";
pub const OTHER_PROJECT: &str = "proj-other";

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_714_564_800, 0).unwrap() // 2024-05-01T12:00:00Z
}

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

/// A [`Catalog`] with only datastores (all a configuration group consults).
#[derive(Clone, Debug)]
pub struct TestCatalog {
    pub datastores: Vec<Datastore>,
    pub default_datastore: Option<String>,
}

impl Catalog for TestCatalog {
    fn region(&self) -> &str {
        "RegionOne"
    }
    fn max_volume_size(&self) -> u64 {
        10
    }
    fn flavor(&self, _id: &str) -> Option<Flavor> {
        None
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
    fn configuration_group(&self, _id: Uuid) -> Option<ConfigurationGroup> {
        None
    }
    fn instance(&self, _id: Uuid) -> Option<Instance> {
        None
    }
    fn live_replicas(&self, _id: Uuid) -> usize {
        0
    }
    fn backup(&self, _id: Uuid) -> Option<Backup> {
        None
    }
    fn quota(&self, _project_id: &str) -> QuotaUsage {
        QuotaUsage::default()
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

/// mysql (5.7, 8.0, inactive 5.6; default 8.0), postgresql (13, default), mariadb (two
/// versions named `10.4`, no default), redis (7, a manager without a catalogue);
/// default datastore `mysql`.
pub fn catalog() -> TestCatalog {
    let mut mysql56 = version(V_MYSQL_56, "5.6", "5.6.51", "mysql");
    mysql56.active = false;
    TestCatalog {
        datastores: vec![
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
                versions: vec![version(V_PG_13, "13", "13.14", "postgresql")],
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
                versions: vec![version(V_REDIS_7, "7", "7.0.15", "redis")],
            },
        ],
        default_datastore: Some("mysql".into()),
    }
}

/// The denormalized reference of a version of [`catalog`].
pub fn version_ref(version_id: Uuid) -> DatastoreRef {
    let cat = catalog();
    let (ds, v) = cat
        .datastores
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

/// Values from a JSON object literal.
pub fn values(v: serde_json::Value) -> Values {
    serde_json::from_value(v).expect("a JSON object of values")
}

// ---- commands and events ---------------------------------------------------------------

/// The default create: `group1`, mysql 8.0 by name, `connect_timeout` 200.
pub fn create_cmd() -> CreateConfiguration {
    CreateConfiguration {
        name: "group1".into(),
        description: None,
        values: values(json!({"connect_timeout": 200})),
        datastore: DatastoreRequest {
            datastore_type: Some("mysql".into()),
            version: Some("8.0".into()),
            version_number: None,
        },
    }
}

/// The default create with changes, as a command.
pub fn create(f: impl FnOnce(&mut CreateConfiguration)) -> ConfigurationCommand {
    let mut c = create_cmd();
    f(&mut c);
    ConfigurationCommand::CreateConfiguration(Box::new(c))
}

/// The facts the default create decides, at [`now`].
pub fn configuration_created() -> ConfigurationCreated {
    ConfigurationCreated {
        configuration_id: GROUP,
        project_id: OWNER_PROJECT.into(),
        user_id: "alice".into(),
        name: "group1".into(),
        description: None,
        datastore: version_ref(V_MYSQL_80),
        values: values(json!({"connect_timeout": 200})),
        at: now(),
    }
}

/// `ConfigurationCreated` as decided now, with changes.
pub fn created_now(f: impl FnOnce(&mut ConfigurationCreated)) -> ConfigurationEvent {
    let mut c = configuration_created();
    f(&mut c);
    ConfigurationEvent::ConfigurationCreated(Box::new(c))
}

/// `ConfigurationCreated` in a history ([`earlier`]), with changes.
pub fn created_with(f: impl FnOnce(&mut ConfigurationCreated)) -> ConfigurationEvent {
    created_now(|c| {
        c.at = earlier();
        f(c);
    })
}

/// The default group exists (owner's project, mysql 8.0, `connect_timeout` 200).
pub fn created() -> ConfigurationEvent {
    created_with(|_| {})
}

pub fn deleted() -> ConfigurationEvent {
    ConfigurationEvent::ConfigurationDeleted { at: earlier() }
}

pub fn put(
    name: Option<&str>,
    description: Option<&str>,
    v: Option<serde_json::Value>,
) -> ConfigurationCommand {
    ConfigurationCommand::UpdateConfiguration {
        name: name.map(str::to_string),
        description: description.map(str::to_string),
        values: v.map(values),
        mode: UpdateMode::Replace,
    }
}

pub fn patch(v: serde_json::Value) -> ConfigurationCommand {
    ConfigurationCommand::UpdateConfiguration {
        name: None,
        description: None,
        values: Some(values(v)),
        mode: UpdateMode::Merge,
    }
}

pub fn updated(name: &str, description: Option<&str>, v: serde_json::Value) -> ConfigurationEvent {
    ConfigurationEvent::ConfigurationUpdated {
        name: name.into(),
        description: description.map(str::to_string),
        values: values(v),
        at: now(),
    }
}

// ---- given / when / then ---------------------------------------------------------------

pub struct Given {
    state: crate::configuration::Configuration,
    catalog: TestCatalog,
    caller: Caller,
    attached_instances: usize,
}

/// A history of [`GROUP`], the default catalog, the owner calling, no instance using it.
pub fn given(events: &[ConfigurationEvent]) -> Given {
    Given {
        state: fold(events),
        catalog: catalog(),
        caller: owner(),
        attached_instances: 0,
    }
}

impl Given {
    pub fn catalog(mut self, f: impl FnOnce(&mut TestCatalog)) -> Self {
        f(&mut self.catalog);
        self
    }

    pub fn caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// `n` live instances have the group attached.
    pub fn attached_to(mut self, n: usize) -> Self {
        self.attached_instances = n;
        self
    }

    pub fn when(self, cmd: ConfigurationCommand) -> Then {
        let ctx = DecideCtx {
            now: now(),
            configuration_id: GROUP,
            caller: &self.caller,
            catalog: &self.catalog,
            attached_instances: self.attached_instances,
        };
        let result = decide(&self.state, &cmd, &ctx);
        Then {
            state: self.state,
            result,
        }
    }
}

pub struct Then {
    state: crate::configuration::Configuration,
    result: Result<Vec<ConfigurationEvent>, ConfigurationError>,
}

impl Then {
    /// Exactly these events; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: &[ConfigurationEvent]) -> crate::configuration::Configuration {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "decided events");
                events.iter().fold(self.state, crate::configuration::evolve)
            }
            Err(e) => panic!("expected events {expected:#?}, got refusal {e:?} ({e})"),
        }
    }

    /// Refused with exactly this error; returns it for message/fault checks.
    #[track_caller]
    pub fn then_err(self, expected: ConfigurationError) -> ConfigurationError {
        match self.result {
            Ok(events) => panic!("expected refusal {expected:?}, got events {events:#?}"),
            Err(e) => {
                assert_eq!(e, expected, "refusal");
                e
            }
        }
    }
}
