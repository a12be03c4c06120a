//! Read-only facts `decide` may consult but not fetch: the catalog (flavors, datastores
//! and their versions), configuration groups, other instances, and quota usage.
//!
//! The shell implements [`Catalog`] over its read models and configuration; tests
//! implement it over plain vectors. Lookups are synchronous and side-effect free.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::instance::Instance;

/// A compute flavor (spec `supporting-resources.md` §1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flavor {
    /// The raw id, always kept as a string (clients may send it as an integer).
    pub id: String,
    pub name: String,
    /// RAM in MB: charged to the `ram` quota and drives default configuration values.
    pub ram: u32,
    pub vcpus: u32,
    /// Root disk, GB.
    pub disk: u32,
    /// Ephemeral disk, GB.
    pub ephemeral: u32,
}

/// A datastore (e.g. `mysql`) with its versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datastore {
    pub id: Uuid,
    pub name: String,
    pub default_version_id: Option<Uuid>,
    pub versions: Vec<DatastoreVersion>,
}

/// One version of a datastore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreVersion {
    pub id: Uuid,
    /// Version name, e.g. `8.0`; not unique on its own (the pair with `version` is).
    pub name: String,
    /// Version number, e.g. `8.0.36`.
    pub version: String,
    /// The engine: selects templates, volume support and replication.
    pub manager: String,
    pub active: bool,
    /// When set, only these flavor ids may be used with this version.
    pub allowed_flavors: Option<Vec<String>>,
    /// When set, only these volume types may be used with this version.
    pub allowed_volume_types: Option<Vec<String>>,
    /// Whether instances of this version get a data volume.
    pub volume_support: bool,
    /// Whether replicas can be made.
    pub replication: bool,
    /// Whether a root password is generated at create.
    pub root_on_create: bool,
}

/// A configuration group as `decide` needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigurationGroup {
    pub id: Uuid,
    pub name: String,
    pub project_id: String,
    pub datastore_version_id: Uuid,
    /// True when any of the group's keys needs a database restart to apply.
    pub restart_required: bool,
    /// The group's revision (events folded); instances record the one they run.
    pub revision: u64,
    /// The revision of the last change that needs a restart to apply (0: none).
    pub restart_required_since: u64,
}

/// A backup as instance create needs it (restore).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub id: Uuid,
    pub project_id: String,
    /// `NEW`, `BUILDING`, `SAVING`, `COMPLETED`, `FAILED`, `DELETE_FAILED`, `RESTORED`.
    pub state: String,
    /// GB: what a restore writes, the whole chain for an increment.
    pub size: Option<f64>,
    pub datastore_name: Option<String>,
    /// The datastore version it was taken from (id, name), when known.
    #[serde(default)]
    pub datastore_version: Option<(Uuid, String)>,
}

/// Per-project usage and limits of the quota-tracked resources. Limit -1 = unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QuotaUsage {
    pub instances: i64,
    pub instances_limit: i64,
    pub ram: i64,
    pub ram_limit: i64,
    pub volumes: i64,
    pub volumes_limit: i64,
}

/// The read-only lookups available to `decide`.
pub trait Catalog {
    /// The single region this service serves (default `RegionOne`).
    fn region(&self) -> &str;
    /// Largest accepted volume, GB (upstream `max_accepted_volume_size`, default 10).
    fn max_volume_size(&self) -> u64;
    /// A flavor by its string id.
    fn flavor(&self, id: &str) -> Option<Flavor>;
    /// A datastore by id or, failing that, by name.
    fn datastore(&self, id_or_name: &str) -> Option<Datastore>;
    /// The operator's default datastore name, if any.
    fn default_datastore(&self) -> Option<String>;
    /// A configuration group, if it exists and is not deleted.
    fn configuration_group(&self, id: Uuid) -> Option<ConfigurationGroup>;
    /// Another instance's current state (for `replica_of`); `None` if it never existed.
    fn instance(&self, id: Uuid) -> Option<Instance>;
    /// Number of non-deleted instances replicating from `id`.
    fn live_replicas(&self, id: Uuid) -> usize;
    /// A backup, if it exists and is not deleted.
    fn backup(&self, id: Uuid) -> Option<Backup>;
    /// Current usage and limits of a project.
    fn quota(&self, project_id: &str) -> QuotaUsage;
    /// Whether a backup of instance `id` runs now (its status is `BACKUP`): actions
    /// on it are refused meanwhile (upstream's `Backup.running`).
    fn backup_running(&self, _id: Uuid) -> bool {
        false
    }
    /// The ids of the non-deleted instances replicating from `id` (promote / eject).
    /// Catalogs that never decide those may keep the default, none.
    fn replica_ids(&self, _id: Uuid) -> Vec<Uuid> {
        Vec::new()
    }
}
