//! Faults and bad input with `troved serve --provider local` (issue #13): the real binary,
//! real PostgreSQL and MariaDB servers, and what a user sees when the machine runs out of
//! ports or disk, when a volume fills up, when a MariaDB server is killed, and when a
//! configuration value needs a restart.
//!
//! Each test runs its own troved on its own data directory and its own ports (within
//! 31600-31799); a `Drop` guard kills every database server under its local root,
//! unmounts its volumes and detaches its loop devices, even when an assertion failed.
//! A datastore whose binaries are absent, or a machine where the test cannot mount (not
//! root, no loop devices), is skipped with a `SKIPPED:` line.

mod common;

use common::local::app_query as query;

use common::local::{alive, installation, local_list, reads, wait_until};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::{loops_under, mounts_under, Guard};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

/// A troved with the local provider on a fresh data directory, and its reaper.
struct Fixture {
    // Dropped in this order: troved first, then what it left (servers, mounts, loop
    // devices), then the tmpfs (if any), then the files.
    server: TestServer,
    _guard: Guard,
    _tmpfs: Option<Tmpfs>,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start(ports: &str) -> Fixture {
        Fixture::start_with(ports, None).await
    }

    /// With `--local-root` on `tmpfs` when given.
    async fn start_with(ports: &str, tmpfs: Option<Tmpfs>) -> Fixture {
        let dir = traversable_tempdir();
        // Canonical: the guard matches command lines and the mount table, which have no
        // symlinks.
        let data_dir = dir.path().canonicalize().unwrap().join("data");
        let root = match &tmpfs {
            Some(t) => t.dir.path().canonicalize().unwrap().join("local"),
            None => data_dir.join("local"),
        };
        let root_arg = root.to_string_lossy().into_owned();
        let server = TestServer::start(
            &data_dir,
            &[
                "--provider",
                "local",
                "--local-ports",
                ports,
                "--local-root",
                &root_arg,
                "--heartbeat-secs",
                "1",
                "--sim-latency-ms",
                "50",
            ],
        )
        .await;
        Fixture {
            server,
            _guard: Guard { root },
            _tmpfs: tmpfs,
            dir,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn root(&self) -> &Path {
        &self._guard.root
    }
}

/// A tempdir the database user can traverse (a tempdir is 0700).
fn traversable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// A small tmpfs on a fresh directory (a file system whose free space is known);
/// unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) where this machine does not let us mount.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = traversable_tempdir();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0711")])
            .arg("tmpfs")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                println!(
                    "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// `troved local list` with `--local-root`.
fn local_list_root(data_dir: &Path, root: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["local", "list", "--data-dir"])
        .arg(data_dir)
        .arg("--local-root")
        .arg(root)
        .output()
        .expect("run troved local list");
    assert!(
        out.status.success(),
        "troved local list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("local list prints JSON")
}

/// The names in `<root>/volumes` (images, mount points, quotas, partial files).
fn volume_files(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("volumes")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn create_body(name: &str, install: &Installation, size: u64) -> Value {
    json!({"instance": {
        "name": name,
        "flavorRef": "1",
        "volume": {"size": size},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }})
}

/// Posts a create; returns the new instance's id.
async fn create(s: &TestServer, name: &str, install: &Installation, size: u64) -> String {
    let (status, created) = s
        .post("u", "p1", "/instances", &create_body(name, install, size))
        .await;
    assert_eq!(status, 200, "{created}");
    created["instance"]["id"].as_str().unwrap().to_string()
}

/// Waits until `id` is ACTIVE/HEALTHY (a failed build fails the test); returns its port.
async fn wait_healthy(s: &TestServer, id: &str) -> u16 {
    let inst = wait_until(s, id, Duration::from_secs(90), "ACTIVE/HEALTHY", |i| {
        assert_ne!(i["status"], "ERROR", "the build failed: {i}");
        reads("ACTIVE", "HEALTHY")(i)
    })
    .await;
    common::local::endpoint(&inst, "private").1
}

async fn wait_error(s: &TestServer, id: &str) -> Value {
    wait_until(s, id, Duration::from_secs(90), "ERROR", |i| {
        i["status"] == "ERROR"
    })
    .await
}

async fn delete(s: &TestServer, id: &str) {
    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("u", "p1", &format!("/instances/{id}")).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "instance {id} not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `sql` until it answers `expect` (at most `within`).
async fn wait_answer(install: &Installation, port: u16, sql: &str, expect: &str, within: u64) {
    let deadline = Instant::now() + Duration::from_secs(within);
    loop {
        let got = query(install, port, sql);
        if got.as_deref() == Ok(expect) {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {got:?}, not {expect}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- an exhausted port range ----------------------------------------------------------

/// Two ports, two instances: a third create is accepted (the API does not know the
/// machine's ports, as upstream's does not know a cloud's capacity) and fails with a
/// fault that names the cause; nothing of it is left (no volume image, loop device,
/// mount or directory, no port held). Once an instance is deleted, a create works again.
#[tokio::test]
async fn an_exhausted_port_range_fails_the_create_with_a_fault_and_leaves_nothing() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = Fixture::start("31600-31601").await;
    let s = &f.server;
    let a = create(s, "first", &install, 1).await;
    let b = create(s, "second", &install, 1).await;
    wait_healthy(s, &a).await;
    wait_healthy(s, &b).await;
    let before = (volume_files(f.root()), loops_under(f.root()));

    let c = create(s, "third", &install, 1).await;
    let failed = wait_error(s, &c).await;
    let message = failed["fault"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no free port left in --local-ports 31600-31601"),
        "{failed}"
    );
    // Compensation releases its volume: the same files and loop devices as before, and
    // the two servers and volumes of the two instances only.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = local_list(&f.data_dir());
        let counts = (list["servers"].as_array().map(Vec::len))
            .zip(list["volumes"].as_array().map(Vec::len));
        let now = (volume_files(f.root()), loops_under(f.root()));
        if now == before && counts == Some((2, 2)) {
            break;
        }
        assert!(Instant::now() < deadline, "{now:?} {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mounts_under(f.root()).len(), 2);

    // A port comes free with a delete; the ERROR instance deletes too.
    delete(s, &a).await;
    delete(s, &c).await;
    let d = create(s, "fourth", &install, 1).await;
    let port = wait_healthy(s, &d).await;
    assert_eq!(query(&install, port, "select 1").as_deref(), Ok("1"));
    delete(s, &b).await;
    delete(s, &d).await;
    assert_eq!(
        local_list(&f.data_dir()),
        json!({"servers": [], "volumes": []})
    );
}

// ---- a volume larger than the free disk -----------------------------------------------

/// `--local-root` on a 300 MiB tmpfs: a 1 GB volume does not fit. The create fails with
/// a fault that says so, and leaves no image, no partial image, no loop device, no mount
/// and no directory behind.
#[tokio::test]
async fn a_volume_larger_than_the_free_disk_fails_with_a_fault_and_leaves_nothing() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let Some(tmpfs) = Tmpfs::mount("300m") else {
        return;
    };
    let f = Fixture::start_with("31610-31619", Some(tmpfs)).await;
    let s = &f.server;
    let id = create(s, "too-big", &install, 1).await;
    let failed = wait_error(s, &id).await;
    let message = failed["fault"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("1.0 GiB more is needed but only 0.3 GiB is free"),
        "{failed}"
    );
    // Compensation ran (the volume record is released) and nothing is on the disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = local_list_root(&f.data_dir(), f.root());
        if list == json!({"servers": [], "volumes": []}) {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(volume_files(f.root()), Vec::<String>::new());
    assert_eq!(loops_under(f.root()), Vec::<String>::new());
    assert_eq!(mounts_under(f.root()), Vec::<String>::new());
    delete(s, &id).await;
}

// ---- a full volume --------------------------------------------------------------------

/// How one datastore is filled and relieved.
struct Filling {
    datastore: Datastore,
    ports: &'static str,
    /// Makes the table `filler`.
    setup: &'static str,
    /// Adds about 100 MB to `filler`.
    fill: &'static str,
    /// What a write on the full volume answers.
    refusal: &'static str,
    /// Gives space back, and whether the volume's usage drops with it (InnoDB keeps the
    /// freed pages in its tablespace; on a full file system MariaDB refuses DDL, whose
    /// recovery log it cannot write).
    relief: &'static str,
    shrinks: bool,
}

/// A 1 GB loop volume filled by its database until the server refuses writes for lack
/// of space: the instance stays ACTIVE/HEALTHY (the server runs and answers; writes fail,
/// as upstream's would), `volume.used` shows the volume full, and nothing else is
/// harmed: another instance takes writes, troved records new instances, space given
/// back takes writes again, and the full instance deletes.
async fn a_full_volume_is_shown_full_and_harms_nothing_else(fill: Filling) {
    let Some(install) = installation(fill.datastore).await else {
        return;
    };
    let f = Fixture::start(fill.ports).await;
    let s = &f.server;
    let full = create(s, "full", &install, 1).await;
    let other = create(s, "other", &install, 1).await;
    let port = wait_healthy(s, &full).await;
    let other_port = wait_healthy(s, &other).await;
    if mounts_under(f.root()).is_empty() {
        println!("SKIPPED: volumes are directories here (not root, or no loop devices)");
        delete(s, &full).await;
        delete(s, &other).await;
        return;
    }
    query(&install, port, fill.setup).unwrap();
    let refused = (0..40).find_map(|_| query(&install, port, fill.fill).err());
    let refused = refused.expect("1 GB filled without an error");
    assert!(
        refused.contains(fill.refusal) || refused.contains("terminated"),
        "{refused}"
    );

    // The heartbeat measures the volume: used close to the size.
    let inst = wait_until(s, &full, Duration::from_secs(30), "shown full", |i| {
        i["volume"]["used"].as_f64().unwrap_or(0.0) > 0.85
    })
    .await;
    assert_eq!(inst["volume"]["size"], 1, "{inst}");
    wait_until(
        s,
        &full,
        Duration::from_secs(30),
        "ACTIVE/HEALTHY",
        reads("ACTIVE", "HEALTHY"),
    )
    .await;
    let err = query(&install, port, fill.fill).unwrap_err();
    assert!(err.contains(fill.refusal), "{err}");
    assert_eq!(query(&install, port, "select 1").as_deref(), Ok("1"));

    // Nothing else is harmed.
    let sql = "create table t (v int); insert into t values (7)";
    query(&install, other_port, sql).unwrap();
    assert_eq!(
        query(&install, other_port, "select v from t").as_deref(),
        Ok("7")
    );
    let third = create(s, "third", &install, 1).await;
    let third_port = wait_healthy(s, &third).await;
    assert_eq!(query(&install, third_port, "select 1").as_deref(), Ok("1"));

    // Space given back takes writes again.
    query(&install, port, fill.relief).unwrap();
    if fill.shrinks {
        wait_until(s, &full, Duration::from_secs(30), "emptier", |i| {
            i["volume"]["used"].as_f64().unwrap_or(1.0) < 0.7
        })
        .await;
    }
    let small = "insert into filler select 'y' from filler limit 10";
    query(&install, port, small).unwrap();
    let started = Instant::now();
    delete(s, &full).await;
    println!("the full instance deleted in {:?}", started.elapsed());
    for id in [&other, &third] {
        delete(s, id).await;
    }
}

#[tokio::test]
async fn a_full_postgresql_volume_is_shown_full_and_harms_nothing_else() {
    a_full_volume_is_shown_full_and_harms_nothing_else(Filling {
        datastore: Datastore::Postgresql,
        ports: "31620-31629",
        setup: "create table filler (v text)",
        fill: "insert into filler select repeat('x', 1000) from generate_series(1, 100000)",
        refusal: "No space left on device",
        relief: "drop table filler; create table filler (v text)",
        shrinks: true,
    })
    .await;
}

#[tokio::test]
async fn a_full_mariadb_volume_is_shown_full_and_harms_nothing_else() {
    a_full_volume_is_shown_full_and_harms_nothing_else(Filling {
        datastore: Datastore::Mariadb,
        ports: "31630-31639",
        setup: "create table filler (v text) engine=InnoDB",
        fill: "insert into filler select repeat('x', 1000) from seq_1_to_100000",
        refusal: "is full",
        relief: "delete from filler limit 300000",
        shrinks: false,
    })
    .await;
}

// ---- a killed MariaDB -----------------------------------------------------------------

/// The pid of the only server `troved local list` reports.
fn only_server_pid(data_dir: &Path) -> u32 {
    let list = local_list(data_dir);
    let servers = list["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{list}");
    servers[0]["pid"]
        .as_u64()
        .expect("a running server has a pid") as u32
}

/// kill -9 of mariadbd: SHUTDOWN within a heartbeat or two, restarted by the
/// supervisor, HEALTHY again with its committed rows.
#[tokio::test]
async fn a_killed_mariadb_reads_shutdown_then_comes_back_healthy_with_its_data() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let f = Fixture::start("31640-31659").await;
    let s = &f.server;
    let id = create(s, "beat-maria", &install, 1).await;
    let port = wait_healthy(s, &id).await;
    query(
        &install,
        port,
        "create table kept (v int) engine=InnoDB; insert into kept values (42)",
    )
    .unwrap();
    let pid = only_server_pid(&f.data_dir());
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until(
        s,
        &id,
        Duration::from_secs(15),
        "SHUTDOWN",
        reads("ACTIVE", "SHUTDOWN"),
    )
    .await;
    wait_until(
        s,
        &id,
        Duration::from_secs(60),
        "HEALTHY again",
        reads("ACTIVE", "HEALTHY"),
    )
    .await;
    assert_eq!(
        query(&install, port, "select v from kept").as_deref(),
        Ok("42")
    );
    let restarted = only_server_pid(&f.data_dir());
    assert!(restarted != pid && alive(restarted), "a new mariadbd runs");
    delete(s, &id).await;
    assert!(!alive(restarted), "the server outlived its instance");
}

// ---- a value that needs a restart -----------------------------------------------------

/// Attaching a group whose value the running server cannot take (PostgreSQL's
/// `max_connections`, MariaDB's `query_cache_type`): the provider restarts the server,
/// the value is in force, and the instance is ACTIVE (not left in RESTART_REQUIRED,
/// which the API offers no restart to leave). Detaching puts the default back the same
/// way. The restarted server is supervised as before.
async fn a_restart_only_value_is_put_in_force(
    datastore: Datastore,
    ports: &str,
    (key, value): (&str, Value),
    sql: &str,
    (expect, default): (&str, &str),
) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports).await;
    let s = &f.server;
    let id = create(s, "restarted", &install, 1).await;
    let port = wait_healthy(s, &id).await;
    assert_eq!(query(&install, port, sql).as_deref(), Ok(default));

    let group = json!({"configuration": {
        "name": "restart-only", "values": {key: value},
        "datastore": {"type": datastore.manager(), "version": install.series},
    }});
    let (status, group) = s.post("u", "p1", "/configurations", &group).await;
    assert_eq!(status, 200, "{group}");
    let gid = group["configuration"]["id"].as_str().unwrap().to_string();
    let attach = json!({"instance": {"configuration": gid}});
    let (status, body) = s.put("u", "p1", &format!("/instances/{id}"), &attach).await;
    assert_eq!(status, 202, "{body}");
    wait_until(s, &id, Duration::from_secs(60), "ACTIVE again", |i| {
        assert_ne!(i["status"], "ERROR", "{i}");
        reads("ACTIVE", "HEALTHY")(i)
    })
    .await;
    wait_answer(&install, port, sql, expect, 30).await;

    let detach = json!({"instance": {"configuration": null}});
    let (status, body) = s.put("u", "p1", &format!("/instances/{id}"), &detach).await;
    assert_eq!(status, 202, "{body}");
    wait_answer(&install, port, sql, default, 60).await;
    wait_until(
        s,
        &id,
        Duration::from_secs(60),
        "ACTIVE after the detach",
        reads("ACTIVE", "HEALTHY"),
    )
    .await;

    // Supervised again: a killed server comes back.
    let pid = only_server_pid(&f.data_dir());
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_until(
        s,
        &id,
        Duration::from_secs(15),
        "SHUTDOWN",
        reads("ACTIVE", "SHUTDOWN"),
    )
    .await;
    wait_until(
        s,
        &id,
        Duration::from_secs(60),
        "HEALTHY",
        reads("ACTIVE", "HEALTHY"),
    )
    .await;
    delete(s, &id).await;
}

#[tokio::test]
async fn postgresql_max_connections_is_put_in_force_by_a_restart() {
    a_restart_only_value_is_put_in_force(
        Datastore::Postgresql,
        "31660-31679",
        ("max_connections", json!(42)),
        "SHOW max_connections",
        ("42", "100"),
    )
    .await;
}

#[tokio::test]
async fn mariadb_query_cache_type_is_put_in_force_by_a_restart() {
    a_restart_only_value_is_put_in_force(
        Datastore::Mariadb,
        "31680-31699",
        ("query_cache_type", json!(1)),
        "SELECT @@global.query_cache_type",
        ("ON", "OFF"),
    )
    .await;
}

// ---- a server that does not stop ------------------------------------------------------

/// A server frozen with SIGSTOP ignores its shutdown signal: the delete waits out the
/// shutdown grace (60 s), kills it and completes, although each saga call gives up
/// after 30 s (the stop runs in its own task, the retry waits for it). Before, every
/// retry sent the signal again and was cut short before the SIGKILL: the instance stayed
/// DELETING and the server ran on.
#[tokio::test]
async fn a_frozen_server_is_killed_and_its_instance_deleted() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = Fixture::start("31700-31709").await;
    let s = &f.server;
    let id = create(s, "frozen", &install, 1).await;
    wait_healthy(s, &id).await;
    let pid = only_server_pid(&f.data_dir());
    assert!(Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(150);
    while s.get("u", "p1", &format!("/instances/{id}")).await.0 != 404 {
        assert!(
            Instant::now() < deadline,
            "instance {id} not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!alive(pid), "the frozen server outlived its instance");
    assert_eq!(
        local_list(&f.data_dir()),
        json!({"servers": [], "volumes": []})
    );
}
