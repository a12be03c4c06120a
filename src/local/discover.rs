//! Discovery: which database servers are installed on this machine, where, and which
//! version each is.
//!
//! It only looks and asks binaries for `--version`; it starts nothing and writes nothing.
//! PostgreSQL majors live in `/usr/lib/postgresql/<major>/bin` (Debian's layout, one
//! directory per major); MariaDB's `mariadbd` is on `PATH` or in `/usr/sbin`, its tools in
//! the same places. A `mysqld` counts as MySQL only if its version does not say MariaDB:
//! Debian's `mysqld` is often MariaDB under another name, and presenting MariaDB as MySQL
//! would be a lie to the user who picked the datastore.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A datastore family troved knows how to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Datastore {
    Postgresql,
    Mariadb,
    /// Found and reported, but no engine runs it yet.
    Mysql,
}

impl Datastore {
    /// Trove's manager name (`postgresql`, `mariadb`, `mysql`).
    pub fn manager(self) -> &'static str {
        match self {
            Datastore::Postgresql => "postgresql",
            Datastore::Mariadb => "mariadb",
            Datastore::Mysql => "mysql",
        }
    }
}

/// One installed server: a datastore at one version, with the paths of its tools.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Installation {
    pub datastore: Datastore,
    /// The full version the server reports (`15.18`, `10.11.14`).
    pub version: String,
    /// The release series a catalog version names (`15`; `10.11`).
    pub series: String,
    /// The directory of the server binary (`/usr/lib/postgresql/15/bin`, `/usr/sbin`).
    pub bin_dir: PathBuf,
    /// Each tool the engine uses, by name (`postgres`, `initdb`, `mariadbd`, `mariadb`…).
    pub tools: BTreeMap<String, PathBuf>,
}

impl Installation {
    /// The path of `tool`; discovery only reports installations that have all their tools.
    pub fn tool(&self, tool: &str) -> PathBuf {
        self.tools
            .get(tool)
            .cloned()
            .unwrap_or_else(|| self.bin_dir.join(tool))
    }
}

/// The tools a PostgreSQL major needs, all in its `bin` directory.
pub const POSTGRES_TOOLS: &[&str] = &["postgres", "initdb", "pg_ctl", "pg_isready", "psql"];
/// The tools MariaDB needs (server in `sbin`, the rest in `bin` on Debian).
pub const MARIADB_TOOLS: &[&str] = &["mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb"];

/// Where to look. [`SearchPaths::system`] is the machine's; tests point it elsewhere.
#[derive(Clone, Debug)]
pub struct SearchPaths {
    /// Parent of the per-major PostgreSQL directories (`/usr/lib/postgresql`).
    pub postgres_root: PathBuf,
    /// Directories searched for MariaDB and MySQL binaries, in order.
    pub path: Vec<PathBuf>,
}

impl SearchPaths {
    /// `/usr/lib/postgresql`, then `PATH` followed by `/usr/sbin` and `/usr/bin` (a
    /// non-root `PATH` often lacks `sbin`, where Debian puts `mariadbd`).
    pub fn system() -> SearchPaths {
        let mut path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        for extra in ["/usr/sbin", "/usr/bin"] {
            if !path.iter().any(|p| p == Path::new(extra)) {
                path.push(PathBuf::from(extra));
            }
        }
        SearchPaths {
            postgres_root: PathBuf::from("/usr/lib/postgresql"),
            path,
        }
    }
}

/// The version in `postgres --version` output: `postgres (PostgreSQL) 15.18 (Debian …)`
/// gives `("15.18", "15")`. Majors before 10 had two parts (`9.6`).
pub fn parse_postgres_version(out: &str) -> Option<(String, String)> {
    let rest = out.split("(PostgreSQL)").nth(1)?;
    let version = rest.split_whitespace().next()?.to_string();
    let mut parts = version.split('.');
    let first = parts.next()?;
    first.parse::<u32>().ok()?;
    let series = match first.parse::<u32>() {
        Ok(n) if n < 10 => format!("{first}.{}", parts.next()?),
        _ => first.to_string(),
    };
    Some((version, series))
}

/// The version in `mariadbd --version` / `mysqld --version` output and whether it is
/// MariaDB: `mariadbd  Ver 10.11.14-MariaDB-0+deb12u2 for …` gives
/// `("10.11.14", "10.11", true)`; `mysqld  Ver 8.0.35 for Linux …` gives
/// `("8.0.35", "8.0", false)`.
pub fn parse_mysql_family_version(out: &str) -> Option<(String, String, bool)> {
    let rest = out.split(" Ver ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let version = word.split('-').next()?.to_string();
    let mut parts = version.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    major.parse::<u32>().ok()?;
    minor.parse::<u32>().ok()?;
    let mariadb = out.contains("MariaDB");
    Some((version.clone(), format!("{major}.{minor}"), mariadb))
}

/// Everything installed under `paths`, PostgreSQL majors in ascending order first.
pub async fn installed_in(paths: &SearchPaths) -> Vec<Installation> {
    let mut found = postgres_majors(&paths.postgres_root).await;
    found.extend(mariadb(&paths.path).await);
    found.extend(mysql(&paths.path).await);
    found
}

/// Everything installed on this machine ([`SearchPaths::system`]).
pub async fn installed() -> Vec<Installation> {
    installed_in(&SearchPaths::system()).await
}

async fn postgres_majors(root: &Path) -> Vec<Installation> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .collect(),
        Err(_) => return Vec::new(),
    };
    dirs.sort();
    let mut found = Vec::new();
    for bin in dirs {
        let Some(tools) = all_in(&bin, POSTGRES_TOOLS) else {
            continue;
        };
        let Some(out) = version_output(&tools["postgres"]).await else {
            continue;
        };
        if let Some((version, series)) = parse_postgres_version(&out) {
            found.push(Installation {
                datastore: Datastore::Postgresql,
                version,
                series,
                bin_dir: bin,
                tools,
            });
        }
    }
    // Directory order is lexical ("10" < "9"); the catalog wants numeric order.
    let key = |i: &Installation| i.series.parse::<f64>().unwrap_or(0.0);
    found.sort_by(|a, b| key(a).total_cmp(&key(b)));
    found
}

async fn mariadb(path: &[PathBuf]) -> Option<Installation> {
    let mut tools = BTreeMap::new();
    for tool in MARIADB_TOOLS {
        tools.insert(tool.to_string(), which(path, tool)?);
    }
    let out = version_output(&tools["mariadbd"]).await?;
    let (version, series, is_mariadb) = parse_mysql_family_version(&out)?;
    is_mariadb.then(|| Installation {
        datastore: Datastore::Mariadb,
        version,
        series,
        bin_dir: tools["mariadbd"].parent().unwrap_or(Path::new("/")).into(),
        tools,
    })
}

/// A real MySQL server: a `mysqld` whose version does not say MariaDB.
async fn mysql(path: &[PathBuf]) -> Option<Installation> {
    let server = which(path, "mysqld")?;
    let out = version_output(&server).await?;
    let (version, series, is_mariadb) = parse_mysql_family_version(&out)?;
    (!is_mariadb).then(|| Installation {
        datastore: Datastore::Mysql,
        version,
        series,
        bin_dir: server.parent().unwrap_or(Path::new("/")).into(),
        tools: BTreeMap::from([("mysqld".to_string(), server)]),
    })
}

fn all_in(dir: &Path, names: &[&str]) -> Option<BTreeMap<String, PathBuf>> {
    names
        .iter()
        .map(|n| {
            let p = dir.join(n);
            is_executable(&p).then(|| (n.to_string(), p))
        })
        .collect()
}

fn which(path: &[PathBuf], name: &str) -> Option<PathBuf> {
    path.iter().map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `<binary> --version`, bounded: a binary that hangs is not an installation.
async fn version_output(binary: &Path) -> Option<String> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_versions_parse_to_version_and_major() {
        let out = "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n";
        assert_eq!(
            parse_postgres_version(out),
            Some(("15.18".into(), "15".into()))
        );
        assert_eq!(
            parse_postgres_version("postgres (PostgreSQL) 17.2\n"),
            Some(("17.2".into(), "17".into()))
        );
        assert_eq!(
            parse_postgres_version("postgres (PostgreSQL) 9.6.24\n"),
            Some(("9.6.24".into(), "9.6".into()))
        );
        assert_eq!(parse_postgres_version("postgres 15.1"), None);
        assert_eq!(parse_postgres_version(""), None);
    }

    #[test]
    fn mariadb_and_mysql_versions_are_told_apart() {
        let maria =
            "mariadbd  Ver 10.11.14-MariaDB-0+deb12u2 for debian-linux-gnu on x86_64 (Debian 12)\n";
        assert_eq!(
            parse_mysql_family_version(maria),
            Some(("10.11.14".into(), "10.11".into(), true))
        );
        let mysql =
            "/usr/sbin/mysqld  Ver 8.0.35 for Linux on x86_64 (MySQL Community Server - GPL)\n";
        assert_eq!(
            parse_mysql_family_version(mysql),
            Some(("8.0.35".into(), "8.0".into(), false))
        );
        assert_eq!(parse_mysql_family_version("mysqld Ver x.y"), None);
        assert_eq!(parse_mysql_family_version("garbage"), None);
    }

    #[tokio::test]
    async fn an_empty_machine_has_nothing_installed() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SearchPaths {
            postgres_root: dir.path().join("postgresql"),
            path: vec![dir.path().to_path_buf()],
        };
        assert!(installed_in(&paths).await.is_empty());
    }

    #[tokio::test]
    async fn a_major_without_all_its_tools_is_not_installed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("15/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let postgres = bin.join("postgres");
        std::fs::write(&postgres, "#!/bin/sh\necho 'postgres (PostgreSQL) 15.3'\n").unwrap();
        std::fs::set_permissions(&postgres, std::fs::Permissions::from_mode(0o755)).unwrap();
        let paths = SearchPaths {
            postgres_root: dir.path().to_path_buf(),
            path: vec![],
        };
        assert!(installed_in(&paths).await.is_empty(), "initdb etc. missing");
        for tool in POSTGRES_TOOLS.iter().filter(|t| **t != "postgres") {
            std::fs::copy(&postgres, bin.join(tool)).unwrap();
        }
        let found = installed_in(&paths).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].datastore, Datastore::Postgresql);
        assert_eq!(
            (found[0].version.as_str(), found[0].series.as_str()),
            ("15.3", "15")
        );
        assert_eq!(found[0].bin_dir, bin);
    }
}
