//! The catalog file: its TOML format, parsing and validation.
//!
//! Responsibility: turn a text into flavors, datastores and versions that are known to
//! be consistent (unique ids, default versions that exist and are active, allowed
//! flavors that exist), or into one error saying exactly what is wrong and where. A
//! bad file must stop startup: serving with half a catalog would answer creates with
//! misleading 400s. What this module must not do: read anything but the text it is
//! given (the caller reads the file) or keep state.
//!
//! Format (every key below is the complete set; unknown keys are errors, so a typo
//! cannot silently fall back to a default):
//!
//! ```toml
//! default_datastore = "mysql"          # optional: name or id of a datastore
//!
//! [[flavors]]
//! id = "1"                             # string or integer; unique
//! name = "m1.tiny"
//! ram = 512                            # MB
//! vcpus = 1
//! disk = 1                             # root disk, GB
//! ephemeral = 0                        # optional, GB
//!
//! [[datastores]]
//! name = "mysql"                       # unique
//! id = "…uuid…"                        # optional; default UUIDv5 of the name
//! default_version = "8.0"              # optional: name or id of one of its versions
//!
//! [[datastores.versions]]
//! name = "8.0"
//! version = "8.0.36"                   # optional, default = name
//! manager = "mysql"                    # optional, default = datastore name
//! active = true                        # optional, default true
//! id = "…uuid…"                        # optional; default UUIDv5 of ds/name/version
//! allowed_flavors = ["2", 3]           # optional; absent or empty = every flavor
//! allowed_volume_types = ["ssd"]       # optional; absent = any volume type
//! volume_support = true                # optional, default true
//! replication = true                   # optional, default: manager supports it
//! root_on_create = false               # optional, default false
//! packages = ""                        # optional, admin view only
//! image = "…image id…"                 # optional, admin view only
//! image_tags = ["trove"]               # optional, admin view only
//! registry_ext = "…"                   # optional, default per manager
//! repl_strategy = "…"                  # optional, default per manager
//! bin_dir = "/usr/lib/postgresql/15/bin" # optional: the local provider's binaries
//! ```
//!
//! `bin_dir` matters only with `--provider local` (`super::installed`): the version runs
//! the server found there instead of the one discovery finds for its name.

use std::collections::{HashMap, HashSet};

use aggregates::catalog::{Datastore, DatastoreVersion, Flavor};
use serde::Deserialize;
use uuid::Uuid;

use super::{VersionExtras, CATALOG_NS};

/// The validated content of a catalog file.
#[derive(Debug)]
pub(super) struct Parsed {
    pub flavors: Vec<Flavor>,
    pub datastores: Vec<Datastore>,
    pub default_datastore: Option<String>,
    pub version_extras: HashMap<Uuid, VersionExtras>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCatalog {
    #[serde(default)]
    default_datastore: Option<String>,
    #[serde(default)]
    flavors: Vec<FileFlavor>,
    #[serde(default)]
    datastores: Vec<FileDatastore>,
}

/// Operators write flavor ids either way; Nova's are strings, the CLI sends integers.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or an integer")]
enum FlavorId {
    Int(i64),
    Str(String),
}

impl FlavorId {
    fn into_string(self) -> String {
        match self {
            FlavorId::Int(n) => n.to_string(),
            FlavorId::Str(s) => s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFlavor {
    id: FlavorId,
    name: String,
    ram: u32,
    vcpus: u32,
    disk: u32,
    #[serde(default)]
    ephemeral: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatastore {
    name: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    default_version: Option<String>,
    #[serde(default)]
    versions: Vec<FileVersion>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVersion {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    manager: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    allowed_flavors: Option<Vec<FlavorId>>,
    #[serde(default)]
    allowed_volume_types: Option<Vec<String>>,
    #[serde(default = "yes")]
    volume_support: bool,
    #[serde(default)]
    replication: Option<bool>,
    #[serde(default)]
    root_on_create: bool,
    #[serde(default)]
    packages: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    image_tags: Vec<String>,
    #[serde(default)]
    registry_ext: Option<String>,
    #[serde(default)]
    repl_strategy: Option<String>,
    #[serde(default)]
    bin_dir: Option<std::path::PathBuf>,
}

/// What upstream's per-manager configuration says, for the managers we know: the guest
/// manager class (`registry_ext`) and the replication strategy class.
pub(super) fn manager_defaults(manager: &str) -> (String, Option<&'static str>) {
    match manager {
        "mysql" => (
            "trove.guestagent.datastore.mysql.manager.Manager".into(),
            Some("trove.guestagent.strategies.replication.mysql_gtid.MysqlGTIDReplication"),
        ),
        "mariadb" => (
            "trove.guestagent.datastore.mariadb.manager.Manager".into(),
            Some("trove.guestagent.strategies.replication.mariadb_gtid.MariaDBGTIDReplication"),
        ),
        "postgresql" => (
            "trove.guestagent.datastore.postgres.manager.PostgresManager".into(),
            Some(
                "trove.guestagent.strategies.replication.postgresql.PostgresqlReplicationStreaming",
            ),
        ),
        other => (
            format!("trove.guestagent.datastore.{other}.manager.Manager"),
            None,
        ),
    }
}

/// Parses and validates a catalog text. The error is a one-line message naming the
/// offending entry (`datastore 'mysql' version '8.0': ...`) or the TOML position.
pub(super) fn parse(text: &str) -> Result<Parsed, String> {
    let file: FileCatalog = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let flavors = flavors(file.flavors)?;
    let flavor_ids: HashSet<&str> = flavors.iter().map(|f| f.id.as_str()).collect();
    let mut version_extras = HashMap::new();
    let mut datastores = Vec::with_capacity(file.datastores.len());
    let mut seen_names = HashSet::new();
    let mut seen_ids = HashSet::new();
    let mut seen_version_ids = HashSet::new();
    for fd in file.datastores {
        let ds = datastore(fd, &flavor_ids, &mut version_extras)?;
        if !seen_names.insert(ds.name.clone()) {
            return Err(format!("datastore '{}' is defined twice", ds.name));
        }
        if !seen_ids.insert(ds.id) {
            return Err(format!(
                "datastore '{}': id {} is already used by another datastore",
                ds.name, ds.id
            ));
        }
        for v in &ds.versions {
            // `GET /datastores/versions/{uuid}` looks versions up across datastores.
            if !seen_version_ids.insert(v.id) {
                return Err(format!(
                    "datastore '{}' version '{}': id {} is already used by another version",
                    ds.name, v.name, v.id
                ));
            }
        }
        datastores.push(ds);
    }
    if let Some(d) = &file.default_datastore {
        let by_id = Uuid::parse_str(d).ok();
        if !datastores
            .iter()
            .any(|ds| Some(ds.id) == by_id || &ds.name == d)
        {
            return Err(format!(
                "default_datastore '{d}' is not one of the datastores"
            ));
        }
    }
    Ok(Parsed {
        flavors,
        datastores,
        default_datastore: file.default_datastore,
        version_extras,
    })
}

/// A TOML error on one line: `line L, column C: <what>` (the library's own rendering
/// spans several lines with a source excerpt, which reads badly in a log line).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

fn flavors(file: Vec<FileFlavor>) -> Result<Vec<Flavor>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(file.len());
    for f in file {
        let id = f.id.into_string();
        // The id is a path segment (`/flavors/{id}`) and the last segment of a
        // `flavorRef` href, so it can contain neither `/` nor be empty.
        if id.trim().is_empty() || id.contains('/') {
            return Err(format!(
                "flavor '{}': id '{id}' must be non-empty and contain no '/'",
                f.name
            ));
        }
        if f.name.trim().is_empty() {
            return Err(format!("flavor '{id}': name must not be empty"));
        }
        if !seen.insert(id.clone()) {
            return Err(format!("flavor id '{id}' is defined twice"));
        }
        out.push(Flavor {
            id,
            name: f.name,
            ram: f.ram,
            vcpus: f.vcpus,
            disk: f.disk,
            ephemeral: f.ephemeral,
        });
    }
    Ok(out)
}

fn explicit_id(what: &str, raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|_| format!("{what}: id '{raw}' is not a UUID"))
}

fn datastore(
    fd: FileDatastore,
    flavor_ids: &HashSet<&str>,
    extras: &mut HashMap<Uuid, VersionExtras>,
) -> Result<Datastore, String> {
    let name = fd.name;
    if name.trim().is_empty() || name.contains('/') {
        return Err(format!(
            "datastore '{name}': name must be non-empty and contain no '/'"
        ));
    }
    let what = format!("datastore '{name}'");
    let id = match &fd.id {
        Some(raw) => explicit_id(&what, raw)?,
        // The ids troved has always used: events reference them.
        None => Uuid::new_v5(&CATALOG_NS, name.as_bytes()),
    };
    let mut versions: Vec<DatastoreVersion> = Vec::with_capacity(fd.versions.len());
    for fv in fd.versions {
        let (v, extra) = version(&name, fv, flavor_ids)?;
        if versions
            .iter()
            .any(|o| o.name == v.name && o.version == v.version)
        {
            return Err(format!(
                "{what}: version '{}' with number '{}' is defined twice",
                v.name, v.version
            ));
        }
        extras.insert(v.id, extra);
        versions.push(v);
    }
    let default_version_id = match &fd.default_version {
        None => None,
        Some(key) => Some(default_version(&what, key, &versions)?),
    };
    Ok(Datastore {
        id,
        name,
        default_version_id,
        versions,
    })
}

/// The default version must be one the CLI can see: `datastore show` crashes when
/// `default_version` matches none of the (active) versions listed.
fn default_version(what: &str, key: &str, versions: &[DatastoreVersion]) -> Result<Uuid, String> {
    let by_id = Uuid::parse_str(key).ok();
    let found: Vec<&DatastoreVersion> = match versions.iter().find(|v| Some(v.id) == by_id) {
        Some(v) => vec![v],
        None => versions.iter().filter(|v| v.name == key).collect(),
    };
    match found.as_slice() {
        [v] if v.active => Ok(v.id),
        [v] => Err(format!(
            "{what}: default_version '{}' is not active",
            v.name
        )),
        [] => Err(format!(
            "{what}: default_version '{key}' is not one of its versions"
        )),
        _ => Err(format!(
            "{what}: default_version '{key}' names several versions; use the version's id"
        )),
    }
}

fn version(
    ds: &str,
    fv: FileVersion,
    flavor_ids: &HashSet<&str>,
) -> Result<(DatastoreVersion, VersionExtras), String> {
    let what = format!("datastore '{ds}' version '{}'", fv.name);
    // Version names are path segments (`/datastores/mysql/versions/8.0`).
    if fv.name.trim().is_empty() || fv.name.contains('/') {
        return Err(format!("{what}: name must be non-empty and contain no '/'"));
    }
    let number = fv.version.unwrap_or_else(|| fv.name.clone());
    let manager = fv.manager.unwrap_or_else(|| ds.to_string());
    if manager.trim().is_empty() {
        return Err(format!("{what}: manager must not be empty"));
    }
    let id = match &fv.id {
        Some(raw) => explicit_id(&what, raw)?,
        None => Uuid::new_v5(&CATALOG_NS, format!("{ds}/{}/{number}", fv.name).as_bytes()),
    };
    let allowed_flavors = match fv.allowed_flavors {
        None => None,
        Some(list) => {
            let ids: Vec<String> = list.into_iter().map(FlavorId::into_string).collect();
            if let Some(unknown) = ids.iter().find(|f| !flavor_ids.contains(f.as_str())) {
                return Err(format!(
                    "{what}: allowed flavor '{unknown}' is not one of the flavors"
                ));
            }
            // Upstream: a version with no flavor bound accepts every flavor.
            (!ids.is_empty()).then_some(ids)
        }
    };
    let known_replication = matches!(manager.as_str(), "mysql" | "mariadb" | "postgresql");
    let replication = fv.replication.unwrap_or(known_replication);
    let (registry_ext, repl_strategy) = manager_defaults(&manager);
    let extras = VersionExtras {
        packages: fv.packages.unwrap_or_default(),
        image: fv.image,
        image_tags: fv.image_tags,
        registry_ext: fv.registry_ext.unwrap_or(registry_ext),
        repl_strategy: fv.repl_strategy.or_else(|| {
            replication
                .then(|| repl_strategy.map(String::from))
                .flatten()
        }),
        bin_dir: fv.bin_dir,
    };
    let version = DatastoreVersion {
        id,
        name: fv.name,
        version: number,
        manager,
        active: fv.active,
        allowed_flavors,
        allowed_volume_types: fv.allowed_volume_types,
        volume_support: fv.volume_support,
        replication,
        root_on_create: fv.root_on_create,
    };
    Ok((version, extras))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[flavors]]
        id = 7
        name = "small"
        ram = 1024
        vcpus = 1
        disk = 5

        [[datastores]]
        name = "mysql"
        default_version = "8.0"

        [[datastores.versions]]
        name = "8.0"
        version = "8.0.36"
    "#;

    fn err(text: &str) -> String {
        parse(text).expect_err("must be rejected")
    }

    #[test]
    fn minimal_file_gets_defaults_and_name_derived_ids() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.flavors[0].id, "7");
        assert_eq!(p.flavors[0].ephemeral, 0);
        let ds = &p.datastores[0];
        assert_eq!(ds.id, Uuid::new_v5(&CATALOG_NS, b"mysql"));
        let v = &ds.versions[0];
        assert_eq!(v.id, Uuid::new_v5(&CATALOG_NS, b"mysql/8.0/8.0.36"));
        assert_eq!(ds.default_version_id, Some(v.id));
        assert_eq!(v.manager, "mysql");
        assert!(v.active && v.volume_support && v.replication && !v.root_on_create);
        let x = &p.version_extras[&v.id];
        assert_eq!(x.image_tags, Vec::<String>::new());
        assert_eq!(x.packages, "");
        assert!(x.repl_strategy.as_deref().unwrap().contains("MysqlGTID"));
    }

    #[test]
    fn version_number_defaults_to_the_name_and_explicit_ids_are_kept() {
        let p = parse(
            r#"
            [[datastores]]
            name = "redis"
            id = "11111111-2222-3333-4444-555555555555"
            [[datastores.versions]]
            name = "7"
            id = "aaaaaaaa-2222-3333-4444-555555555555"
        "#,
        )
        .unwrap();
        let ds = &p.datastores[0];
        assert_eq!(ds.id.to_string(), "11111111-2222-3333-4444-555555555555");
        assert_eq!(ds.versions[0].version, "7");
        assert!(
            !ds.versions[0].replication,
            "unknown managers do not replicate"
        );
        assert_eq!(ds.default_version_id, None);
    }

    #[test]
    fn empty_allowed_flavors_means_every_flavor() {
        let text = MINIMAL.replace(
            "version = \"8.0.36\"",
            "version = \"8.0.36\"\nallowed_flavors = []",
        );
        assert_eq!(
            parse(&text).unwrap().datastores[0].versions[0].allowed_flavors,
            None
        );
        let text = MINIMAL.replace(
            "version = \"8.0.36\"",
            "version = \"8.0.36\"\nallowed_flavors = [7]",
        );
        assert_eq!(
            parse(&text).unwrap().datastores[0].versions[0].allowed_flavors,
            Some(vec!["7".to_string()])
        );
    }

    #[test]
    fn invalid_files_are_rejected_with_a_precise_message() {
        let cases: Vec<(String, &str)> = vec![
            ("flavors = 3".into(), "invalid type"),
            (format!("{MINIMAL}\nbogus = 1"), "unknown field `bogus`"),
            (
                MINIMAL.replace("disk = 5", "disk = 5\n[[flavors]]\nid = \"7\"\nname = \"x\"\nram = 1\nvcpus = 1\ndisk = 1"),
                "flavor id '7' is defined twice",
            ),
            (
                MINIMAL.replace("default_version = \"8.0\"", "default_version = \"9.9\""),
                "datastore 'mysql': default_version '9.9' is not one of its versions",
            ),
            (
                MINIMAL.replace("version = \"8.0.36\"", "version = \"8.0.36\"\nactive = false"),
                "default_version '8.0' is not active",
            ),
            (
                MINIMAL.replace("version = \"8.0.36\"", "version = \"8.0.36\"\nallowed_flavors = [\"9\"]"),
                "allowed flavor '9' is not one of the flavors",
            ),
            (
                format!("default_datastore = \"oracle\"\n{MINIMAL}"),
                "default_datastore 'oracle' is not one of the datastores",
            ),
            (
                format!("{MINIMAL}\n[[datastores.versions]]\nname = \"8.0\"\nversion = \"8.0.36\""),
                "version '8.0' with number '8.0.36' is defined twice",
            ),
            (
                format!("{MINIMAL}\n[[datastores]]\nname = \"mysql\""),
                "datastore 'mysql' is defined twice",
            ),
            (
                MINIMAL.replace("name = \"mysql\"", "name = \"mysql\"\nid = \"nope\""),
                "datastore 'mysql': id 'nope' is not a UUID",
            ),
            (
                format!(
                    "{MINIMAL}\n[[datastores]]\nname = \"other\"\n[[datastores.versions]]\nname = \"1\"\nid = \"{}\"",
                    Uuid::new_v5(&CATALOG_NS, b"mysql/8.0/8.0.36")
                ),
                "is already used by another version",
            ),
            (
                MINIMAL.replace("id = 7", "id = \"a/b\""),
                "must be non-empty and contain no '/'",
            ),
            (
                MINIMAL.replace("id = 7", "id = 7.5"),
                "a string or an integer",
            ),
        ];
        for (text, expected) in cases {
            let e = err(&text);
            assert!(e.contains(expected), "expected {expected:?} in {e:?}");
        }
    }

    #[test]
    fn toml_errors_are_one_line_with_a_position() {
        let e = err("[[flavors]]\nid = 1\nname = \"x\"\n");
        assert_eq!(e, "line 1, column 1: missing field `ram`");
        let e = err("[[flavors]]\nid = 1\nname = \"x\"\nram = \"big\"\n");
        assert!(e.starts_with("line 4, column 7: invalid type"), "{e}");
    }

    #[test]
    fn ambiguous_default_version_name_is_rejected() {
        let text =
            format!("{MINIMAL}\n[[datastores.versions]]\nname = \"8.0\"\nversion = \"8.0.40\"");
        assert!(err(&text).contains("names several versions"));
    }
}
