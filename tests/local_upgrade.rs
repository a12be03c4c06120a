//! Upgrade (`PATCH /instances/{id}` with `datastore_version`) with `--provider local`
//! (issue #13): the instance's server restarts on the target version's binaries with
//! its data, and a target whose binaries are missing is refused before anything is
//! touched.
//!
//! Each test writes a catalog whose versions name their binary directories (`bin_dir`),
//! runs its own troved on its own ports, and a `Drop` guard kills whatever server is
//! left under its local root. The PostgreSQL upgrade needs a second binary directory of
//! the installed major: `TROVED_TEST_PG_OLD_BIN` names one (`.ci/run` extracts Debian's
//! previous `postgresql-15` package); without it that test is skipped with a `SKIPPED:`
//! line, as are tests whose datastore is not installed.

mod common;

use common::local::installation;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::{servers_by_data_dir, Guard};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::discover::{self, SearchPaths};
use troved::local::{Datastore, Installation};

/// A troved with the local provider, serving `catalog`, on a fresh data directory.
struct Fixture {
    // Dropped in this order: troved, then what it left (servers, mounts), then files.
    server: TestServer,
    _guard: Guard,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(ports: &str, catalog: &str) -> Fixture {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The database user must traverse to the data directory (a tempdir is 0700).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let root = dir.path().canonicalize().unwrap();
        let catalog_path = root.join("catalog.toml");
        std::fs::write(&catalog_path, catalog).unwrap();
        let data_dir = root.join("data");
        let server = TestServer::start(
            &data_dir,
            &[
                "--provider",
                "local",
                "--local-ports",
                ports,
                "--catalog",
                catalog_path.to_str().unwrap(),
                "--sim-latency-ms",
                "50",
            ],
        )
        .await;
        Fixture {
            server,
            _guard: Guard {
                root: data_dir.join("local"),
            },
            dir,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// A catalog of one tiny flavor and one datastore whose versions are (name, bin_dir).
fn catalog(datastore: &str, versions: &[(&str, &Path)]) -> String {
    let mut text = format!(
        "[[flavors]]\nid = \"1\"\nname = \"m1.tiny\"\nram = 512\nvcpus = 1\ndisk = 1\n\n\
         [[datastores]]\nname = \"{datastore}\"\ndefault_version = \"{}\"\n",
        versions[0].0
    );
    for (name, dir) in versions {
        text.push_str(&format!(
            "\n[[datastores.versions]]\nname = \"{name}\"\nbin_dir = \"{}\"\n",
            dir.display()
        ));
    }
    text
}

/// The PostgreSQL installation in `TROVED_TEST_PG_OLD_BIN` (a `bin` directory, e.g. of
/// an extracted Debian package: `DIR/usr/lib/postgresql/15/bin`).
async fn old_postgres() -> Option<Installation> {
    let Some(bin) = std::env::var_os("TROVED_TEST_PG_OLD_BIN").map(PathBuf::from) else {
        println!(
            "SKIPPED: TROVED_TEST_PG_OLD_BIN is not set (a second PostgreSQL bin directory \
             of the installed major; .ci/run extracts one)"
        );
        return None;
    };
    let root = bin.parent().and_then(Path::parent).unwrap_or(&bin);
    let paths = SearchPaths {
        postgres_root: root.to_path_buf(),
        path: vec![],
    };
    let found = discover::installed_in(&paths)
        .await
        .into_iter()
        .find(|i| i.bin_dir == bin);
    if found.is_none() {
        println!("SKIPPED: no runnable PostgreSQL in {}", bin.display());
    }
    found
}

fn create_body(name: &str, datastore: &str, version: &str) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": datastore, "version": version},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }})
}

/// The private address and port of a shown instance.
fn private_address(inst: &Value) -> (String, u16) {
    common::local::endpoint(inst, "private")
}

/// Runs `sql` as `app` on `orders` over TCP with the datastore's client; Ok(stdout).
fn query(
    install: &Installation,
    (host, port): &(String, u16),
    sql: &str,
) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!("postgresql://app:s3cret-pw@{host}:{port}/orders"))
            .args(["-X", "-w", "-A", "-t", "-c", sql])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args(["--no-defaults", "--protocol=TCP", "-h", host, "-P", &port])
            .args(["-u", "app", "-ps3cret-pw", "orders", "-N", "-e", sql])
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Polls show until the instance is ACTIVE (an ERROR fails the test with its fault).
async fn wait_active(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let inst = body["instance"].clone();
        match inst["status"].as_str() {
            Some("ACTIVE") => return inst,
            Some("ERROR") => panic!("the instance failed: {inst}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not ACTIVE in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `troved local list` of `data_dir`: the one server's entry.
fn listed_server(data_dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["local", "list", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run troved local list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list["servers"].as_array().map(Vec::len), Some(1), "{list}");
    list["servers"][0].clone()
}

/// Creates an instance on `version`, waits for it, and writes three rows as `app`.
async fn create_with_rows(
    s: &TestServer,
    install: &Installation,
    version: &str,
) -> (String, (String, u16)) {
    let body = create_body("orders-db", install.datastore.manager(), version);
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let inst = wait_active(s, &id).await;
    let addr = private_address(&inst);
    let sql = "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2), (3);";
    query(install, &addr, sql).expect("write rows");
    (id, addr)
}

async fn patch_version(s: &TestServer, id: &str, version: &str) -> (u16, Value) {
    let body = json!({"instance": {"datastore_version": version}});
    s.patch("u", "p1", &format!("/instances/{id}"), &body).await
}

#[tokio::test]
async fn postgresql_upgrade_to_other_binaries_keeps_the_rows_and_runs_the_new_version() {
    let (Some(new), Some(old)) = (
        installation(Datastore::Postgresql).await,
        old_postgres().await,
    ) else {
        return;
    };
    if old.version == new.version || old.series != new.series {
        println!(
            "SKIPPED: {} in TROVED_TEST_PG_OLD_BIN is not another version of {}'s major",
            old.version, new.version
        );
        return;
    }
    let text = catalog(
        "postgresql",
        &[(&old.version, &old.bin_dir), (&new.version, &new.bin_dir)],
    );
    let f = Fixture::start("31200-31249", &text).await;
    let s = &f.server;
    let (id, addr) = create_with_rows(s, &new, &old.version).await;
    let before = query(&new, &addr, "SELECT version()").unwrap();
    assert!(
        before.contains(&format!("PostgreSQL {} ", old.version)),
        "{before}"
    );
    let pid_before = listed_server(&f.data_dir())["pid"].clone();

    let (status, body) = patch_version(s, &id, &new.version).await;
    assert_eq!(status, 202, "{body}");
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "UPGRADE", "{shown}");
    let inst = wait_active(s, &id).await;

    assert_eq!(inst["datastore"]["version"], json!(new.version));
    assert_eq!(private_address(&inst), addr, "same address and port");
    let after = query(&new, &addr, "SELECT version()").unwrap();
    assert!(
        after.contains(&format!("PostgreSQL {} ", new.version)),
        "{after}"
    );
    assert_eq!(
        query(&new, &addr, "SELECT sum(n) FROM t").as_deref(),
        Ok("6")
    );
    let server = listed_server(&f.data_dir());
    assert_ne!(server["pid"], pid_before, "a new server process: {server}");
    assert_eq!(server["version"], json!(new.version), "{server}");
}

#[tokio::test]
async fn upgrade_to_a_version_without_binaries_is_refused_and_the_instance_is_untouched() {
    let Some(pg) = installation(Datastore::Postgresql).await else {
        return;
    };
    let gone = tempfile::tempdir().unwrap();
    let missing = gone.path().join("postgresql/15/bin");
    let text = catalog("postgresql", &[("15", &pg.bin_dir), ("15-gone", &missing)]);
    let f = Fixture::start("31250-31274", &text).await;
    let s = &f.server;
    let (status, v) = s
        .get("admin", "p1", "/datastores/postgresql/versions/15-gone")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"]["active"], false, "listed inactive: {v}");
    let (id, addr) = create_with_rows(s, &pg, "15").await;
    let pid_before = listed_server(&f.data_dir())["pid"].clone();

    let (status, body) = patch_version(s, &id, "15-gone").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body,
        json!({"badRequest": {"code": 400, "message": "Datastore version '15-gone' is not active."}})
    );
    let (_, shown) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(shown["instance"]["status"], "ACTIVE", "{shown}");
    assert_eq!(shown["instance"]["datastore"]["version"], "15", "{shown}");
    assert_eq!(
        query(&pg, &addr, "SELECT sum(n) FROM t").as_deref(),
        Ok("6")
    );
    assert_eq!(
        listed_server(&f.data_dir())["pid"],
        pid_before,
        "not restarted"
    );
}

/// Only one MariaDB version exists on Debian 12: this is a **binary-directory switch**
/// between two catalog versions naming the same binaries. It still goes through the
/// whole upgrade (stop, switch, start, `mariadb-upgrade`).
#[tokio::test]
async fn mariadb_binary_directory_switch_restarts_keeps_rows_and_runs_mariadb_upgrade() {
    let Some(maria) = installation(Datastore::Mariadb).await else {
        return;
    };
    let text = catalog(
        "mariadb",
        &[("10.11", &maria.bin_dir), ("10.11-switch", &maria.bin_dir)],
    );
    let f = Fixture::start("31300-31349", &text).await;
    let s = &f.server;
    let (id, addr) = create_with_rows(s, &maria, "10.11").await;
    let before = listed_server(&f.data_dir());
    let data_dir = PathBuf::from(before["data_dir"].as_str().unwrap());
    let upgrade_info = data_dir.join("mysql_upgrade_info");
    let _ = std::fs::remove_file(&upgrade_info);

    let (status, body) = patch_version(s, &id, "10.11-switch").await;
    assert_eq!(status, 202, "{body}");
    let inst = wait_active(s, &id).await;

    assert_eq!(inst["datastore"]["version"], "10.11-switch");
    let version = query(&maria, &addr, "SELECT @@version").unwrap();
    assert!(version.starts_with(&maria.version), "{version}");
    assert_eq!(
        query(&maria, &addr, "SELECT sum(n) FROM t").as_deref(),
        Ok("6")
    );
    let after = listed_server(&f.data_dir());
    assert_ne!(after["pid"], before["pid"], "restarted: {after}");
    let info = std::fs::read_to_string(&upgrade_info).expect("mariadb-upgrade ran");
    assert!(info.starts_with(&maria.version), "{info}");
    let log =
        std::fs::read_to_string(Path::new(after["path"].as_str().unwrap()).join("server.log"))
            .unwrap_or_default();
    assert!(log.contains("troved: mariadb-upgrade"), "{log}");
}

/// troved killed with -9 shortly after the upgrade is accepted (while it stops, switches,
/// starts or runs `mariadb-upgrade`): the restarted troved resumes the upgrade, which
/// ends ACTIVE on the target with the rows kept and one server on the data directory.
#[tokio::test]
async fn troved_killed_during_an_upgrade_resumes_it_after_a_restart() {
    let Some(maria) = installation(Datastore::Mariadb).await else {
        return;
    };
    let text = catalog(
        "mariadb",
        &[("10.11", &maria.bin_dir), ("10.11-switch", &maria.bin_dir)],
    );
    let mut f = Fixture::start("31350-31399", &text).await;
    let (id, addr) = create_with_rows(&f.server, &maria, "10.11").await;
    let data_dir = listed_server(&f.data_dir())["data_dir"].clone();

    let (status, body) = patch_version(&f.server, &id, "10.11-switch").await;
    assert_eq!(status, 202, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.server.kill_and_restart().await;
    let inst = wait_active(&f.server, &id).await;

    assert_eq!(inst["datastore"]["version"], "10.11-switch");
    assert_eq!(
        query(&maria, &addr, "SELECT sum(n) FROM t").as_deref(),
        Ok("6")
    );
    let server = listed_server(&f.data_dir());
    assert_eq!(server["status"], "running", "{server}");
    let servers = servers_by_data_dir(&f.data_dir().join("local"));
    let on_data = &servers[data_dir.as_str().unwrap()];
    assert_eq!(
        on_data.len(),
        1,
        "one server on the data directory: {servers:?}"
    );
}

/// A fake PostgreSQL bin directory under `root` (as `<root>/lib/postgresql/<major>/bin`)
/// whose tools report `version` and refuse to do anything else: discovery lists it, but
/// no server ever starts from it.
fn fake_postgres(root: &Path, major: &str, version: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = root.join(format!("lib/postgresql/{major}/bin"));
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'postgres (PostgreSQL) {version}'; exit 0; fi\n\
         echo 'fake binaries: not starting' >&2\nexit 1\n"
    );
    for tool in discover::POSTGRES_TOOLS {
        let path = bin.join(tool);
        std::fs::write(&path, &script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for dir in [root.to_path_buf(), bin.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// Waits for status ERROR and returns the instance as an admin sees it (with the fault).
async fn wait_error(s: &TestServer, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = s.get("admin", "p1", &format!("/instances/{id}")).await;
        let inst = body["instance"].clone();
        if inst["status"] == "ERROR" {
            return inst;
        }
        assert!(Instant::now() < deadline, "not ERROR in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Targets the API accepts (active: their binaries were found) that the data or the
/// binaries cannot run fail with a fault, and the old server keeps answering with its
/// rows: a PostgreSQL major upgrade is refused before the server is touched; binaries
/// that do not start make the provider start the old ones again.
#[tokio::test]
async fn upgrades_that_cannot_run_fail_with_a_fault_and_the_old_server_keeps_answering() {
    let Some(pg) = installation(Datastore::Postgresql).await else {
        return;
    };
    let fakes = tempfile::tempdir().unwrap();
    let root = fakes.path().canonicalize().unwrap();
    let major = fake_postgres(&root.join("major"), "99", "99.1");
    let broken = fake_postgres(
        &root.join("broken"),
        &pg.series,
        &format!("{}.999", pg.series),
    );
    let text = catalog(
        "postgresql",
        &[
            ("current", &pg.bin_dir),
            ("next-major", &major),
            ("broken", &broken),
        ],
    );
    let f = Fixture::start("31275-31299", &text).await;
    let s = &f.server;

    // A major upgrade: refused by the provider before the server is stopped.
    let (id, addr) = create_with_rows(s, &pg, "current").await;
    let pid = listed_server(&f.data_dir())["pid"].clone();
    let (status, body) = patch_version(s, &id, "next-major").await;
    assert_eq!(status, 202, "{body}");
    let inst = wait_error(s, &id).await;
    let fault = inst["fault"]["message"].as_str().unwrap_or_default();
    assert!(fault.contains("major upgrade"), "{inst}");
    assert_eq!(
        query(&pg, &addr, "SELECT sum(n) FROM t").as_deref(),
        Ok("6")
    );
    let server = listed_server(&f.data_dir());
    assert_eq!(server["pid"], pid, "untouched: {server}");
    let (status, _) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202);

    // Binaries that do not start: back on the old ones, with the rows.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("u", "p1", &format!("/instances/{id}")).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "the first instance is not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (id, addr) = create_with_rows(s, &pg, "current").await;
    let (status, body) = patch_version(s, &id, "broken").await;
    assert_eq!(status, 202, "{body}");
    let inst = wait_error(s, &id).await;
    let fault = inst["fault"]["message"].as_str().unwrap_or_default();
    assert!(
        fault.contains(&format!("runs version {} again", pg.version)),
        "{inst}"
    );
    assert_eq!(
        query(&pg, &addr, "SELECT sum(n) FROM t").as_deref(),
        Ok("6")
    );
    let server = listed_server(&f.data_dir());
    assert_eq!(server["status"], "running", "{server}");
    assert_eq!(server["version"], "current", "{server}");
}
