//! The catalog: flavors, datastores and their versions, quotas and limits.
//!
//! Loaded once at startup from a TOML file (`--catalog`, format in [`file`]) or, without
//! one, from the built-in `builtin.toml`; never changed while serving. Datastore and
//! version ids default to UUIDv5 of their names, so they are the same on every start:
//! events reference them forever.
//!
//! Layout:
//! - [`file`]: the TOML format, parsing and validation.
//! - [`defaults`]: default configuration templates (`GET /instances/{id}/configuration`).
//!
//! What it must not do: know about HTTP, or change after startup (decisions recorded in
//! events were made against it; a live edit would make them unexplainable).

pub mod defaults;
mod file;
pub mod installed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aggregates::catalog::{Datastore, DatastoreVersion, Flavor};
use uuid::Uuid;

/// Namespace of the catalog's name-derived ids.
const CATALOG_NS: Uuid = Uuid::from_u128(0x6f0e_4a3c_9b1d_4c7e_8a25_3d1f_0b9e_7c41);

/// The built-in catalog text, also the reference example of the format.
const BUILTIN: &str = include_str!("builtin.toml");

/// Limits and quotas applied at create.
#[derive(Clone, Debug)]
pub struct Limits {
    pub region: String,
    pub max_volume_size: u64,
    pub quota_instances: i64,
    pub quota_ram: i64,
    pub quota_volumes: i64,
    /// Live backups per project (upstream `max_backups_per_tenant`).
    pub quota_backups: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            region: "RegionOne".into(),
            max_volume_size: 10,
            quota_instances: 10,
            quota_ram: -1,
            quota_volumes: 40,
            quota_backups: 50,
        }
    }
}

/// What a datastore version carries beyond what `decide` needs: the admin-only fields
/// of the version view (spec `supporting-resources.md` §2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionExtras {
    /// Packages installed on the guest (upstream stores them comma-joined).
    pub packages: String,
    /// Image id, or `None` when the image is found by `image_tags`.
    pub image: Option<String>,
    /// Tags of the image to use when `image` is unset.
    pub image_tags: Vec<String>,
    /// The guest manager class.
    pub registry_ext: String,
    /// The replication strategy class; `None` when the version cannot replicate.
    pub repl_strategy: Option<String>,
    /// The local provider's binary directory of this version: from the file
    /// (`bin_dir`), or found by discovery (`installed`); `None` in sim mode.
    pub bin_dir: Option<PathBuf>,
}

/// Why a catalog could not be loaded. Startup stops on it.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog file {path}: {source}")]
    Io {
        /// The `--catalog` path.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a valid catalog (syntax or consistency).
    #[error("invalid catalog {origin}: {message}")]
    Invalid {
        /// The file path, or `built-in`.
        origin: String,
        /// What is wrong, naming the entry or the TOML position.
        message: String,
    },
}

/// Flavors and datastores.
#[derive(Clone, Debug)]
pub struct StaticCatalog {
    /// In file order (the order `GET /flavors` lists them).
    pub flavors: Vec<Flavor>,
    /// In file order, each with its versions in file order.
    pub datastores: Vec<Datastore>,
    /// Name or id of the datastore used when a create names none.
    pub default_datastore: Option<String>,
    pub limits: Limits,
    /// Admin-view fields of every version, by version id.
    pub version_extras: HashMap<Uuid, VersionExtras>,
}

impl StaticCatalog {
    /// The built-in default: a handful of flavors; mysql, mariadb and postgresql with
    /// several versions each, one inactive per datastore.
    pub fn builtin(limits: Limits) -> StaticCatalog {
        // The embedded text is validated by the `builtin_*` unit tests, so this cannot
        // fail in a tested build.
        StaticCatalog::from_toml(BUILTIN, "built-in", limits)
            .expect("the built-in catalog is valid")
    }

    /// The catalog of `--catalog`: the file when given, else the built-in one.
    pub fn load(path: Option<&Path>, limits: Limits) -> Result<StaticCatalog, CatalogError> {
        match path {
            None => Ok(StaticCatalog::builtin(limits)),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| CatalogError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                StaticCatalog::from_toml(&text, &p.display().to_string(), limits)
            }
        }
    }

    /// Parses and validates a catalog text; `origin` names it in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        limits: Limits,
    ) -> Result<StaticCatalog, CatalogError> {
        let parsed = file::parse(text).map_err(|message| CatalogError::Invalid {
            origin: origin.to_string(),
            message,
        })?;
        Ok(StaticCatalog {
            flavors: parsed.flavors,
            datastores: parsed.datastores,
            default_datastore: parsed.default_datastore,
            limits,
            version_extras: parsed.version_extras,
        })
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

    /// A version by id, in any datastore, with its datastore.
    pub fn version(&self, id: Uuid) -> Option<(&Datastore, &DatastoreVersion)> {
        self.datastores
            .iter()
            .find_map(|d| d.versions.iter().find(|v| v.id == id).map(|v| (d, v)))
    }

    /// The admin-view fields of a version (defaults if the version is unknown).
    pub fn version_extras(&self, id: Uuid) -> VersionExtras {
        self.version_extras.get(&id).cloned().unwrap_or_default()
    }

    /// The flavors a version may use: its bound flavors, or every flavor when none is
    /// bound (`GET /datastores/{ds}/versions/{v}/flavors`). Catalog order.
    pub fn flavors_for(&self, version: &DatastoreVersion) -> Vec<&Flavor> {
        match &version.allowed_flavors {
            None => self.flavors.iter().collect(),
            Some(ids) => self
                .flavors
                .iter()
                .filter(|f| ids.contains(&f.id))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog exactly as the code built it before the file existed: the built-in
    /// file must reproduce it field for field, ids included.
    fn legacy_builtin() -> (Vec<Flavor>, Vec<Datastore>) {
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
        (
            vec![
                flavor("1", "m1.tiny", 512, 1, 1),
                flavor("2", "m1.small", 2048, 1, 20),
                flavor("3", "m1.medium", 4096, 2, 40),
                flavor("4", "m1.large", 8192, 4, 80),
                flavor("5", "m1.xlarge", 16384, 8, 160),
                flavor("6", "ds1G", 1024, 1, 10),
            ],
            vec![
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
        )
    }

    #[test]
    fn builtin_file_reproduces_the_legacy_catalog_exactly() {
        let c = StaticCatalog::builtin(Limits::default());
        let (flavors, datastores) = legacy_builtin();
        assert_eq!(c.flavors, flavors);
        assert_eq!(c.datastores, datastores);
        assert_eq!(c.default_datastore, None);
        assert_eq!(c.version_extras.len(), 9);
    }

    #[test]
    fn builtin_ids_are_pinned_forever() {
        // Literal values: a change of namespace or naming scheme must fail here.
        let pinned = [
            ("mysql", "c1c2d803-764f-5091-92c4-2dd30361b9b7"),
            ("mysql/5.7", "177a55ae-7eff-5736-96ae-7201280fd9eb"),
            ("mysql/8.0", "a6c53a4f-e7f0-5718-99c5-967acf357e5c"),
            ("mysql/5.6", "aaf899d4-e1a4-5e7e-836d-900c64f55b54"),
            ("mariadb", "2e43539a-0732-5c38-a6d5-47b13019e2e0"),
            ("mariadb/10.6", "88cae39d-86cc-5e06-acc3-be43884addda"),
            ("mariadb/10.11", "9a16c86c-a8ab-52c9-83d1-570cc40370db"),
            ("mariadb/10.3", "4973d477-a2b2-5b64-a731-f99796f2768a"),
            ("postgresql", "43c84029-b0da-5e0d-98ca-c653e91882d4"),
            ("postgresql/13", "0ce24bc6-5d15-5ef9-a78c-9a7298f43d37"),
            ("postgresql/16", "b96d70a9-dea9-5d7e-8adf-c64f829167f3"),
            ("postgresql/12", "9a983b9b-7921-582e-a9fb-f27b1a9296e7"),
        ];
        let c = StaticCatalog::builtin(Limits::default());
        for (key, id) in pinned {
            let actual = match key.split_once('/') {
                None => c.datastore(key).unwrap().id,
                Some((ds, v)) => {
                    let ds = c.datastore(ds).unwrap();
                    ds.versions.iter().find(|x| x.name == v).unwrap().id
                }
            };
            assert_eq!(actual.to_string(), id, "{key}");
        }
    }

    #[test]
    fn lookups_find_by_id_and_name() {
        let c = StaticCatalog::builtin(Limits::default());
        let mysql = c.datastore("mysql").unwrap();
        assert_eq!(c.datastore(&mysql.id.to_string()).unwrap().name, "mysql");
        let v = &mysql.versions[1];
        let (ds, found) = c.version(v.id).unwrap();
        assert_eq!((ds.name.as_str(), found.name.as_str()), ("mysql", "8.0"));
        assert_eq!(c.flavor("6").unwrap().name, "ds1G");
        assert_eq!(c.flavors_for(v).len(), 6);
        assert_eq!(c.version_extras(v.id).image_tags, vec!["trove".to_string()]);
        assert!(c.version_extras(v.id).registry_ext.contains("mysql"));
    }

    #[test]
    fn load_reports_the_path_of_a_missing_or_invalid_file() {
        let e = StaticCatalog::load(Some(Path::new("/nonexistent/cat.toml")), Limits::default())
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cat.toml"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[[flavors]]\nid = 1\n").unwrap();
        let e = StaticCatalog::load(Some(&p), Limits::default()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("c.toml") && msg.contains("missing field `name`"),
            "{msg}"
        );
    }
}
