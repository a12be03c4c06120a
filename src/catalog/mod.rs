//! The built-in catalog: flavors, datastores and their versions, quotas and limits.
//!
//! A small fixed catalog for now (the next issue makes it a TOML file served at
//! `/flavors` and `/datastores`). Datastore and version ids are UUIDv5 of their names,
//! so they are the same on every start: events reference them forever.

use aggregates::catalog::{Datastore, DatastoreVersion, Flavor};
use uuid::Uuid;

/// Namespace of the catalog's name-derived ids.
const CATALOG_NS: Uuid = Uuid::from_u128(0x6f0e_4a3c_9b1d_4c7e_8a25_3d1f_0b9e_7c41);

/// Limits and quotas applied at create.
#[derive(Clone, Debug)]
pub struct Limits {
    pub region: String,
    pub max_volume_size: u64,
    pub quota_instances: i64,
    pub quota_ram: i64,
    pub quota_volumes: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            region: "RegionOne".into(),
            max_volume_size: 10,
            quota_instances: 10,
            quota_ram: -1,
            quota_volumes: 40,
        }
    }
}

/// Flavors and datastores.
#[derive(Clone, Debug)]
pub struct StaticCatalog {
    pub flavors: Vec<Flavor>,
    pub datastores: Vec<Datastore>,
    pub default_datastore: Option<String>,
    pub limits: Limits,
}

fn flavor(id: &str, name: &str, ram: u32, vcpus: u32, disk: u32) -> Flavor {
    Flavor {
        id: id.into(),
        name: name.into(),
        ram,
        vcpus,
        disk,
        ephemeral: 0,
    }
}

fn version(ds: &str, name: &str, number: &str, active: bool) -> DatastoreVersion {
    DatastoreVersion {
        id: Uuid::new_v5(&CATALOG_NS, format!("{ds}/{name}/{number}").as_bytes()),
        name: name.into(),
        version: number.into(),
        manager: ds.into(),
        active,
        allowed_flavors: None,
        allowed_volume_types: None,
        volume_support: true,
        replication: true,
        root_on_create: false,
    }
}

fn datastore(name: &str, versions: Vec<DatastoreVersion>, default: &str) -> Datastore {
    let default_version_id = versions.iter().find(|v| v.name == default).map(|v| v.id);
    Datastore {
        id: Uuid::new_v5(&CATALOG_NS, name.as_bytes()),
        name: name.into(),
        default_version_id,
        versions,
    }
}

impl StaticCatalog {
    /// The built-in default: a handful of flavors; mysql, mariadb and postgresql with
    /// several versions each, one inactive per datastore.
    pub fn builtin(limits: Limits) -> StaticCatalog {
        StaticCatalog {
            flavors: vec![
                flavor("1", "m1.tiny", 512, 1, 1),
                flavor("2", "m1.small", 2048, 1, 20),
                flavor("3", "m1.medium", 4096, 2, 40),
                flavor("4", "m1.large", 8192, 4, 80),
                flavor("5", "m1.xlarge", 16384, 8, 160),
                flavor("6", "ds1G", 1024, 1, 10),
            ],
            datastores: vec![
                datastore(
                    "mysql",
                    vec![
                        version("mysql", "5.7", "5.7.29", true),
                        version("mysql", "8.0", "8.0.36", true),
                        version("mysql", "5.6", "5.6.51", false),
                    ],
                    "8.0",
                ),
                datastore(
                    "mariadb",
                    vec![
                        version("mariadb", "10.6", "10.6.18", true),
                        version("mariadb", "10.11", "10.11.8", true),
                        version("mariadb", "10.3", "10.3.39", false),
                    ],
                    "10.11",
                ),
                datastore(
                    "postgresql",
                    vec![
                        version("postgresql", "13", "13.15", true),
                        version("postgresql", "16", "16.3", true),
                        version("postgresql", "12", "12.19", false),
                    ],
                    "16",
                ),
            ],
            default_datastore: None,
            limits,
        }
    }

    /// A flavor by id.
    pub fn flavor(&self, id: &str) -> Option<&Flavor> {
        self.flavors.iter().find(|f| f.id == id)
    }

    /// A datastore by id, then by name (upstream's lookup order).
    pub fn datastore(&self, id_or_name: &str) -> Option<&Datastore> {
        let by_id = Uuid::parse_str(id_or_name)
            .ok()
            .and_then(|id| self.datastores.iter().find(|d| d.id == id));
        by_id.or_else(|| self.datastores.iter().find(|d| d.name == id_or_name))
    }
}
