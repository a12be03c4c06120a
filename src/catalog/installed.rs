//! The catalog with `--provider local`: which versions can run is what is installed.
//!
//! Responsibility: given the database servers found on this machine (as plain data, so
//! that the catalog does not depend on the provider), mark each catalog version active
//! only if a server for it is installed, name its binary directory, and add the
//! installed series the catalog does not list. A version whose `bin_dir` the catalog
//! file sets runs the server found in that directory. What it must not do: look at the
//! machine itself (the caller discovers), or change the simulated cloud's catalog
//! (sim mode never calls it).
//!
//! Ids stay stable: a listed version keeps its id (events reference it forever) even
//! though its number becomes the installed one (`10.11.14`); an added series gets the
//! UUIDv5 of `<datastore>/<series>/local`, which a minor upgrade of the package does not
//! change.

use std::path::{Path, PathBuf};

use aggregates::catalog::{Datastore, DatastoreVersion};
use uuid::Uuid;

use super::{file::manager_defaults, StaticCatalog, VersionExtras, CATALOG_NS};

/// One installed database server the local provider can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledVersion {
    /// Trove's manager name: `postgresql`, `mariadb`.
    pub manager: String,
    /// The series a catalog version names: `15`, `10.11`.
    pub series: String,
    /// The full version the server reports: `15.18`, `10.11.14`.
    pub version: String,
    /// The directory of its server binary.
    pub bin_dir: PathBuf,
}

impl StaticCatalog {
    /// The binary directories the catalog file names (`bin_dir`), for discovery to
    /// look there too.
    pub fn named_bin_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .version_extras
            .values()
            .filter_map(|e| e.bin_dir.clone())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// This catalog as the local provider serves it (see the module docs).
    pub fn localized(mut self, installed: &[InstalledVersion]) -> StaticCatalog {
        let mut used = vec![false; installed.len()];
        for ds in &mut self.datastores {
            for v in &mut ds.versions {
                let extras = self.version_extras.entry(v.id).or_default();
                let found = match_installation(v, extras, installed);
                match found {
                    Some(i) => {
                        used[i] = true;
                        v.version = installed[i].version.clone();
                        extras.bin_dir = Some(installed[i].bin_dir.clone());
                    }
                    None => v.active = false,
                }
            }
        }
        for (i, inst) in installed.iter().enumerate() {
            if !used[i] {
                self.add_version(inst);
            }
        }
        for ds in &mut self.datastores {
            pick_default(ds);
        }
        self
    }

    /// Adds `inst` as an active version of the datastore named after its manager
    /// (created if the catalog has none).
    fn add_version(&mut self, inst: &InstalledVersion) {
        let name = inst.manager.clone();
        if !self.datastores.iter().any(|d| d.name == name) {
            self.datastores.push(Datastore {
                id: Uuid::new_v5(&CATALOG_NS, name.as_bytes()),
                name: name.clone(),
                default_version_id: None,
                versions: Vec::new(),
            });
        }
        let key = format!("{name}/{}/local", inst.series);
        let version = DatastoreVersion {
            id: Uuid::new_v5(&CATALOG_NS, key.as_bytes()),
            name: inst.series.clone(),
            version: inst.version.clone(),
            manager: inst.manager.clone(),
            active: true,
            allowed_flavors: None,
            allowed_volume_types: None,
            volume_support: true,
            replication: true,
            root_on_create: false,
        };
        let (registry_ext, repl) = manager_defaults(&inst.manager);
        self.version_extras.insert(
            version.id,
            VersionExtras {
                registry_ext,
                repl_strategy: repl.map(String::from),
                bin_dir: Some(inst.bin_dir.clone()),
                ..VersionExtras::default()
            },
        );
        if let Some(ds) = self.datastores.iter_mut().find(|d| d.name == name) {
            ds.versions.push(version);
        }
    }
}

/// The installation a version runs: the one in its `bin_dir` when the file names one,
/// else the one of its manager whose series is the version's name.
fn match_installation(
    v: &DatastoreVersion,
    extras: &VersionExtras,
    installed: &[InstalledVersion],
) -> Option<usize> {
    installed.iter().position(|i| {
        i.manager == v.manager
            && match &extras.bin_dir {
                Some(dir) => same_dir(dir, &i.bin_dir),
                None => i.series == v.name,
            }
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Keeps the default version if it can run, else the newest that can, else none (a
/// default that is not active would be listed nowhere, which breaks clients).
fn pick_default(ds: &mut Datastore) {
    let active = |id: Uuid| ds.versions.iter().any(|v| v.id == id && v.active);
    if ds.default_version_id.is_some_and(active) {
        return;
    }
    let series = |v: &&DatastoreVersion| {
        v.name
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    ds.default_version_id = ds
        .versions
        .iter()
        .filter(|v| v.active)
        .max_by_key(series)
        .map(|v| v.id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Limits;

    fn installed(manager: &str, series: &str, version: &str, dir: &str) -> InstalledVersion {
        InstalledVersion {
            manager: manager.into(),
            series: series.into(),
            version: version.into(),
            bin_dir: dir.into(),
        }
    }

    fn version<'c>(c: &'c StaticCatalog, ds: &str, name: &str) -> &'c DatastoreVersion {
        let ds = c.datastore(ds).unwrap();
        ds.versions.iter().find(|v| v.name == name).unwrap()
    }

    #[test]
    fn only_installed_versions_are_active_and_new_series_are_added() {
        let builtin = StaticCatalog::builtin(Limits::default());
        let maria_id = version(&builtin, "mariadb", "10.11").id;
        let c = builtin.localized(&[
            installed("postgresql", "15", "15.18", "/usr/lib/postgresql/15/bin"),
            installed("mariadb", "10.11", "10.11.14", "/usr/sbin"),
        ]);
        let pg15 = version(&c, "postgresql", "15");
        assert!(pg15.active);
        assert_eq!(pg15.version, "15.18");
        assert_eq!(
            c.version_extras(pg15.id).bin_dir.as_deref(),
            Some(Path::new("/usr/lib/postgresql/15/bin"))
        );
        assert!(!version(&c, "postgresql", "16").active);
        let pg = c.datastore("postgresql").unwrap();
        assert_eq!(pg.default_version_id, Some(pg15.id));
        let maria = version(&c, "mariadb", "10.11");
        assert!(maria.active);
        assert_eq!(maria.id, maria_id, "a listed version keeps its id");
        assert_eq!(maria.version, "10.11.14");
        assert!(!version(&c, "mariadb", "10.6").active);
        let mysql = c.datastore("mysql").unwrap();
        assert!(mysql.versions.iter().all(|v| !v.active));
        assert_eq!(mysql.default_version_id, None);
    }

    #[test]
    fn a_bin_dir_named_in_the_file_selects_that_installation() {
        let text = r#"
[[flavors]]
id = 1
name = "tiny"
ram = 512
vcpus = 1
disk = 1

[[datastores]]
name = "postgresql"
default_version = "main"

[[datastores.versions]]
name = "main"
bin_dir = "/opt/pg/bin"

[[datastores.versions]]
name = "other"
bin_dir = "/nowhere/bin"
"#;
        let c = StaticCatalog::from_toml(text, "test", Limits::default()).unwrap();
        assert_eq!(c.named_bin_dirs().len(), 2);
        let c = c.localized(&[installed("postgresql", "17", "17.2", "/opt/pg/bin")]);
        let main = version(&c, "postgresql", "main");
        assert!(main.active);
        assert_eq!(main.version, "17.2");
        assert!(!version(&c, "postgresql", "other").active);
        assert_eq!(c.datastore("postgresql").unwrap().versions.len(), 2);
    }

    #[test]
    fn added_series_have_ids_stable_across_minor_upgrades() {
        let a = StaticCatalog::builtin(Limits::default()).localized(&[installed(
            "postgresql",
            "15",
            "15.18",
            "/a",
        )]);
        let b = StaticCatalog::builtin(Limits::default()).localized(&[installed(
            "postgresql",
            "15",
            "15.19",
            "/a",
        )]);
        assert_eq!(
            version(&a, "postgresql", "15").id,
            version(&b, "postgresql", "15").id
        );
    }
}
