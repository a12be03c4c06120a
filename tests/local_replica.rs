//! Replicas and detach-replica with `troved serve --provider local` (issue #13): a real
//! PostgreSQL standby or MariaDB GTID replica follows its primary, refuses writes, and
//! after the detach takes them with everything written before.
//!
//! Each test runs its own troved on its own data directory and port range; a `Drop`
//! guard kills every database server under its local root and unmounts its volumes, even
//! when an assertion failed. A datastore whose binaries are absent is skipped with a
//! `SKIPPED:` line.

mod common;

use common::local::app_query as query;

use common::local::{delete_and_wait, installation, local_list};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::LocalTroved;
use common::local::{processes_under, servers_by_data_dir};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

type Fixture = LocalTroved;

/// The private port of a shown instance (beside `127.0.0.1`).
fn port_of(inst: &Value) -> u16 {
    common::local::endpoint(inst, "private").1
}

/// The ids in table `t`, in order, comma-separated.
fn ids(install: &Installation, port: u16) -> String {
    query(install, port, "SELECT i FROM t ORDER BY i")
        .unwrap_or_else(|e| panic!("read t on port {port}: {e}"))
        .lines()
        .collect::<Vec<_>>()
        .join(",")
}

/// Polls until table `t` on `port` holds exactly `want` (replication is asynchronous).
async fn wait_rows(install: &Installation, port: u16, want: &str) {
    common::local::wait_rows(install, port, want, Duration::from_secs(30)).await;
}

/// Polls show until the instance is ACTIVE and `done` holds.
async fn wait_active(s: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    common::local::wait_active_for(s, id, Duration::from_secs(120), done).await
}

/// Primary with a database and a user → rows → replica (`replica_of`) → the rows are
/// there, a write on the replica fails, a new row follows → detach → the former replica
/// takes writes and keeps every row of before; it no longer follows → delete both:
/// processes and files gone.
async fn replica_follows_then_detaches(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, &[]).await;
    let s = &f.server;
    let body = json!({"instance": {
        "name": "primary", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    let asked = Instant::now();
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let pid = created["instance"]["id"].as_str().unwrap().to_string();
    let primary = port_of(&wait_active(s, &pid, |_| true).await);
    let name = datastore.manager();
    println!("{name} primary ACTIVE after {:?}", asked.elapsed());
    query(&install, primary, "CREATE TABLE t (i integer PRIMARY KEY)").unwrap();
    query(&install, primary, "INSERT INTO t VALUES (1), (2)").unwrap();

    let body = json!({"instance": {"name": "replica", "replica_of": pid}});
    let asked = Instant::now();
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let rid = created["instance"]["id"].as_str().unwrap().to_string();
    let shown = wait_active(s, &rid, |_| true).await;
    println!("{name} replica ACTIVE after {:?}", asked.elapsed());
    assert_eq!(shown["replica_of"]["id"], json!(pid), "{shown}");
    let replica = port_of(&shown);
    assert_ne!(replica, primary);

    // The user, its password and the rows came from the primary.
    wait_rows(&install, replica, "1,2").await;
    let refused = query(&install, replica, "INSERT INTO t VALUES (99)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");
    query(&install, primary, "INSERT INTO t VALUES (3)").unwrap();
    wait_rows(&install, replica, "1,2,3").await;

    let detach = json!({"instance": {"replica_of": null}});
    let (status, body) = s
        .put("u", "p1", &format!("/instances/{rid}"), &detach)
        .await;
    assert_eq!(status, 202, "{body}");
    wait_active(s, &rid, |i| i.get("replica_of").is_none()).await;
    assert_eq!(ids(&install, replica), "1,2,3");
    query(&install, replica, "INSERT INTO t VALUES (10)").unwrap();
    assert_eq!(ids(&install, replica), "1,2,3,10");
    // Detached: a row written on the primary now stays there.
    query(&install, primary, "INSERT INTO t VALUES (4)").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&install, replica), "1,2,3,10");
    assert_eq!(ids(&install, primary), "1,2,3,4");

    delete_and_wait(s, &rid).await;
    delete_and_wait(s, &pid).await;
    assert_eq!(
        local_list(&f.data_dir()),
        json!({"servers": [], "volumes": []})
    );
    let left = processes_under(&f.data_dir().join("local"));
    assert!(left.is_empty(), "processes left: {left:?}");
    let volumes = f.data_dir().join("local/volumes");
    let files: Vec<_> = std::fs::read_dir(&volumes)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "files left: {files:?}");
}

#[tokio::test]
async fn postgresql_replica_follows_refuses_writes_and_takes_them_after_detach() {
    replica_follows_then_detaches(Datastore::Postgresql, "31000-31039").await;
}

#[tokio::test]
async fn mariadb_replica_follows_refuses_writes_and_takes_them_after_detach() {
    replica_follows_then_detaches(Datastore::Mariadb, "31040-31079").await;
}

/// The pid of the running server of instance `id` (`troved local list`).
fn server_pid(data_dir: &Path, id: &str) -> Option<u32> {
    let list = local_list(data_dir);
    let servers = list["servers"].as_array()?.clone();
    let server = servers.iter().find(|s| s["instance_id"] == json!(id))?;
    server["pid"].as_u64().map(|p| p as u32)
}

/// `kill -9` of instance `id`'s server; returns once the supervisor has started another
/// one and `port` answers.
async fn kill_and_wait_restarted(f: &Fixture, install: &Installation, id: &str, port: u16) {
    let pid = server_pid(&f.data_dir(), id).expect("a running server");
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = server_pid(&f.data_dir(), id);
        if now.is_some_and(|p| p != pid) && query(install, port, "SELECT 1").is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "server of {id} not restarted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `replica_count` 2: both replicas follow; a replica restarted after `kill -9` is still
/// a read-only follower; a detached one restarted after `kill -9` still takes writes and
/// follows nothing (the promotion is persistent).
async fn two_replicas_survive_restarts(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, &["--heartbeat-secs", "1"]).await;
    let s = &f.server;
    let body = json!({"instance": {
        "name": "primary", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let pid = created["instance"]["id"].as_str().unwrap().to_string();
    let primary = port_of(&wait_active(s, &pid, |_| true).await);
    query(&install, primary, "CREATE TABLE t (i integer PRIMARY KEY)").unwrap();
    query(&install, primary, "INSERT INTO t VALUES (1)").unwrap();

    let body = json!({"instance": {"name": "rep", "replica_of": pid, "replica_count": 2}});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let (status, list) = s.get("u", "p1", "/instances").await;
    assert_eq!(status, 200, "{list}");
    let id_of = |name: &str| {
        list["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == name))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("no instance {name} in {list}"))
            .to_string()
    };
    let (kept, detached) = (id_of("rep-1"), id_of("rep-2"));
    let kept_port = port_of(&wait_active(s, &kept, |_| true).await);
    let detached_port = port_of(&wait_active(s, &detached, |_| true).await);
    query(&install, primary, "INSERT INTO t VALUES (2)").unwrap();
    wait_rows(&install, kept_port, "1,2").await;
    wait_rows(&install, detached_port, "1,2").await;

    kill_and_wait_restarted(&f, &install, &kept, kept_port).await;
    let refused = query(&install, kept_port, "INSERT INTO t VALUES (99)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");
    query(&install, primary, "INSERT INTO t VALUES (3)").unwrap();
    wait_rows(&install, kept_port, "1,2,3").await;
    wait_rows(&install, detached_port, "1,2,3").await;

    let detach = json!({"instance": {"replica_of": null}});
    let path = format!("/instances/{detached}");
    let (status, body) = s.put("u", "p1", &path, &detach).await;
    assert_eq!(status, 202, "{body}");
    wait_active(s, &detached, |i| i.get("replica_of").is_none()).await;
    kill_and_wait_restarted(&f, &install, &detached, detached_port).await;
    query(&install, detached_port, "INSERT INTO t VALUES (10)").unwrap();
    query(&install, primary, "INSERT INTO t VALUES (4)").unwrap();
    wait_rows(&install, kept_port, "1,2,3,4").await;
    assert_eq!(ids(&install, detached_port), "1,2,3,10");

    for id in [&kept, &detached, &pid] {
        delete_and_wait(s, id).await;
    }
    assert_eq!(
        local_list(&f.data_dir()),
        json!({"servers": [], "volumes": []})
    );
}

#[tokio::test]
async fn postgresql_replicas_stay_replicas_and_a_detached_one_stays_primary_across_restarts() {
    two_replicas_survive_restarts(Datastore::Postgresql, "31080-31119").await;
}

#[tokio::test]
async fn mariadb_replicas_stay_replicas_and_a_detached_one_stays_primary_across_restarts() {
    two_replicas_survive_restarts(Datastore::Mariadb, "31120-31159").await;
}

/// The directory of instance `id`'s server (`troved local list`), once it is listed.
fn server_path(data_dir: &Path, id: &str) -> Option<PathBuf> {
    let list = local_list(data_dir);
    let servers = list["servers"].as_array()?.clone();
    let server = servers.iter().find(|s| s["instance_id"] == json!(id))?;
    server["path"].as_str().map(PathBuf::from)
}

/// Whether the replica's copy of the primary is under way in `dir`: a base backup into
/// a scratch directory (PostgreSQL), or the dump being written or loaded (MariaDB).
fn copying(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(".data.") || name == "primary.sql"
    })
}

/// troved is killed (-9) while it copies the primary into a new replica, and restarted:
/// the replica ends ACTIVE, following, read-only, with one server process per data
/// directory.
async fn a_replica_build_survives_a_troved_kill(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let mut f = Fixture::start(ports, &[]).await;
    let body = json!({"instance": {
        "name": "primary", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    let (status, created) = f.server.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let pid = created["instance"]["id"].as_str().unwrap().to_string();
    let primary = port_of(&wait_active(&f.server, &pid, |_| true).await);
    query(&install, primary, "CREATE TABLE t (i integer PRIMARY KEY)").unwrap();
    // Enough rows that the copy takes a moment.
    let fill = match datastore {
        Datastore::Postgresql => "INSERT INTO t SELECT generate_series(1, 20000)",
        _ => {
            "SET SESSION max_recursive_iterations = 30000; INSERT INTO t WITH RECURSIVE \
             n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) SELECT i FROM n"
        }
    };
    query(&install, primary, fill).unwrap();

    let body = json!({"instance": {"name": "replica", "replica_of": pid}});
    let (status, created) = f.server.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let rid = created["instance"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut caught = false;
    while Instant::now() < deadline {
        if let Some(dir) = server_path(&f.data_dir(), &rid) {
            if copying(&dir) {
                caught = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("killed troved mid-copy: {caught}");
    f.server.kill_and_restart().await;

    let replica = port_of(&wait_active(&f.server, &rid, |_| true).await);
    let count = "SELECT count(*) FROM t";
    let want = "20000".to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&install, replica, count).ok() != Some(want.clone()) {
        assert!(
            Instant::now() < deadline,
            "the replica does not have the rows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    query(&install, primary, "INSERT INTO t VALUES (20001)").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&install, replica, count).ok().as_deref() != Some("20001") {
        assert!(Instant::now() < deadline, "the replica does not follow");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = query(&install, replica, "INSERT INTO t VALUES (0)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");
    for (dir, pids) in servers_by_data_dir(&f.data_dir().join("local")) {
        // PostgreSQL children keep their parent's command line for a moment after fork.
        let leaders: Vec<_> = pids
            .iter()
            .filter(|p| {
                let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
                let ppid: u32 = stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                !pids.contains(&ppid)
            })
            .collect();
        assert_eq!(leaders.len(), 1, "servers on {dir}: {pids:?}");
    }
    delete_and_wait(&f.server, &rid).await;
    delete_and_wait(&f.server, &pid).await;
    assert_eq!(
        local_list(&f.data_dir()),
        json!({"servers": [], "volumes": []})
    );
}

#[tokio::test]
async fn postgresql_replica_build_survives_a_troved_kill_mid_copy() {
    a_replica_build_survives_a_troved_kill(Datastore::Postgresql, "31160-31179").await;
}

#[tokio::test]
async fn mariadb_replica_build_survives_a_troved_kill_mid_copy() {
    a_replica_build_survives_a_troved_kill(Datastore::Mariadb, "31180-31199").await;
}
