//! `promote_to_replica_source` with `troved serve --provider local` (issue #15): a real
//! PostgreSQL standby or MariaDB GTID replica becomes the writable source of its set
//! with every row the old source committed; the old source and the sibling follow it,
//! and the old source refuses writes.
//!
//! Each test runs its own troved on its own data directory and port range; a `Drop`
//! guard kills every database server under its local root and unmounts its volumes, even
//! when an assertion failed. A datastore whose binaries are absent is skipped with a
//! `SKIPPED:` line.

mod common;

use std::time::{Duration, Instant};

use common::local::app_query as query;
use common::local::{delete_and_wait, installation, local_list, LocalTroved};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

/// The private port of a shown instance.
fn port_of(inst: &Value) -> u16 {
    common::local::endpoint(inst, "private").1
}

/// Polls until table `t` on `port` holds exactly `want` (replication is asynchronous).
async fn wait_rows(install: &Installation, port: u16, want: &str) {
    common::local::wait_rows(install, port, want, Duration::from_secs(60)).await;
}

/// Polls show until the instance is ACTIVE and `done` holds.
async fn wait_active(s: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    common::local::wait_active_for(s, id, Duration::from_secs(180), done).await
}

/// Primary with rows → two replicas (`replica_count` 2) → a row written just before the
/// promote of the first replica → it is the source, with every row; it takes writes,
/// which the old source and the sibling receive; the old source refuses writes → the
/// old source is promoted back, and the set follows it again.
async fn promote_switches_the_set(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = LocalTroved::start(ports, &[]).await;
    let s = &f.server;
    let body = json!({"instance": {
        "name": "primary", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let old = created["instance"]["id"].as_str().unwrap().to_string();
    let old_port = port_of(&wait_active(s, &old, |_| true).await);
    query(&install, old_port, "CREATE TABLE t (i integer PRIMARY KEY)").unwrap();
    query(&install, old_port, "INSERT INTO t VALUES (1), (2)").unwrap();

    let body = json!({"instance": {"name": "rep", "replica_of": old, "replica_count": 2}});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let (_, list) = s.get("u", "p1", "/instances").await;
    let id_of = |name: &str| {
        list["instances"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == name))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("no instance {name} in {list}"))
            .to_string()
    };
    let (new, sibling) = (id_of("rep-1"), id_of("rep-2"));
    let new_port = port_of(&wait_active(s, &new, |_| true).await);
    let sibling_port = port_of(&wait_active(s, &sibling, |_| true).await);
    wait_rows(&install, new_port, "1,2").await;
    wait_rows(&install, sibling_port, "1,2").await;

    // Committed on the old source just before the promote: it must not be lost.
    query(&install, old_port, "INSERT INTO t VALUES (3)").unwrap();
    let asked = Instant::now();
    let path = format!("/instances/{new}/action");
    let (status, body) = s
        .post("u", "p1", &path, &json!({"promote_to_replica_source": {}}))
        .await;
    assert_eq!(status, 202, "{body}");
    let shown = wait_active(s, &new, |i| i.get("replica_of").is_none()).await;
    println!(
        "{} promoted after {:?}",
        datastore.manager(),
        asked.elapsed()
    );
    let mut replicas: Vec<&str> = shown["replicas"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
        .unwrap_or_default();
    replicas.sort();
    let mut want = vec![old.as_str(), sibling.as_str()];
    want.sort();
    assert_eq!(replicas, want, "{shown}");
    for id in [&old, &sibling] {
        let shown = wait_active(s, id, |i| i["replica_of"]["id"] == json!(new)).await;
        assert_eq!(
            port_of(&shown),
            if *id == old { old_port } else { sibling_port }
        );
    }

    assert_eq!(
        query(&install, new_port, "SELECT i FROM t ORDER BY i")
            .map(|o| o.lines().collect::<Vec<_>>().join(",")),
        Ok("1,2,3".to_string()),
        "every row committed on the old source"
    );
    query(&install, new_port, "INSERT INTO t VALUES (4)").unwrap();
    wait_rows(&install, old_port, "1,2,3,4").await;
    wait_rows(&install, sibling_port, "1,2,3,4").await;
    let refused = query(&install, old_port, "INSERT INTO t VALUES (99)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");

    // And back: the old source is promoted again, from its life as a replica.
    let path = format!("/instances/{old}/action");
    let (status, body) = s
        .post("u", "p1", &path, &json!({"promote_to_replica_source": {}}))
        .await;
    assert_eq!(status, 202, "{body}");
    wait_active(s, &old, |i| i.get("replica_of").is_none()).await;
    for id in [&new, &sibling] {
        wait_active(s, id, |i| i["replica_of"]["id"] == json!(old)).await;
    }
    query(&install, old_port, "INSERT INTO t VALUES (5)").unwrap();
    wait_rows(&install, new_port, "1,2,3,4,5").await;
    wait_rows(&install, sibling_port, "1,2,3,4,5").await;
    let refused = query(&install, new_port, "INSERT INTO t VALUES (99)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");

    for id in [&new, &sibling, &old] {
        delete_and_wait(s, id).await;
    }
    assert_eq!(
        local_list(&f.data_dir()),
        json!({"servers": [], "volumes": []})
    );
}

/// The server record of instance `id` (`troved local list`): its directory and pid.
fn server_of(data_dir: &std::path::Path, id: &str) -> (std::path::PathBuf, u32) {
    let list = local_list(data_dir);
    let server = list["servers"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["instance_id"] == json!(id)).cloned())
        .unwrap_or_else(|| panic!("no server of {id} in {list}"));
    let path = server["path"].as_str().expect("a path").into();
    let pid = server["pid"].as_u64().expect("a running server") as u32;
    (path, pid)
}

/// Primary with rows → two replicas → the primary's server dies for good (its data
/// directory moved away, killed) → eject: one replica is the source with every row, the
/// other follows it, the old source stands alone.
async fn eject_elects_a_replica(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = LocalTroved::start(ports, &["--heartbeat-secs", "1"]).await;
    let s = &f.server;
    let body = json!({"instance": {
        "name": "primary", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let old = created["instance"]["id"].as_str().unwrap().to_string();
    let old_port = port_of(&wait_active(s, &old, |_| true).await);
    query(&install, old_port, "CREATE TABLE t (i integer PRIMARY KEY)").unwrap();
    query(&install, old_port, "INSERT INTO t VALUES (1), (2)").unwrap();
    let body = json!({"instance": {"name": "rep", "replica_of": old, "replica_count": 2}});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let (_, list) = s.get("u", "p1", "/instances").await;
    let replicas: Vec<String> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with("rep-")))
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replicas.len(), 2, "{list}");
    let mut ports = Vec::new();
    for r in &replicas {
        let port = port_of(&wait_active(s, r, |_| true).await);
        wait_rows(&install, port, "1,2").await;
        ports.push(port);
    }

    // A healthy source is not ejected.
    let path = format!("/instances/{old}/action");
    let eject = json!({"eject_replica_source": {}});
    let (status, body) = s.post("u", "p1", &path, &eject).await;
    assert_eq!(status, 400, "{body}");
    // The source dies and cannot come back: its data is gone from where it was.
    let (dir, pid) = server_of(&f.data_dir(), &old);
    std::fs::rename(dir.join("data"), dir.join("data.lost")).unwrap();
    for target in [format!("-{pid}"), pid.to_string()] {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &target])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = s.post("u", "p1", &path, &eject).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 400, "{body}");
        assert!(Instant::now() < deadline, "never ejectable: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let elected = loop {
        let mut found = None;
        for (r, port) in replicas.iter().zip(&ports) {
            let (_, shown) = s.get("u", "p1", &format!("/instances/{r}")).await;
            let inst = &shown["instance"];
            assert_ne!(inst["status"], "ERROR", "{inst}");
            if inst["status"] == "ACTIVE" && inst.get("replica_of").is_none() {
                found = Some((r.clone(), *port));
            }
        }
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no replica elected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (other, other_port) = replicas
        .iter()
        .zip(&ports)
        .find(|(r, _)| **r != elected.0)
        .map(|(r, p)| (r.clone(), *p))
        .unwrap();
    wait_active(s, &other, |i| i["replica_of"]["id"] == json!(elected.0)).await;
    let (_, shown) = s.get("u", "p1", &format!("/instances/{old}")).await;
    assert!(shown["instance"].get("replica_of").is_none(), "{shown}");
    assert!(shown["instance"].get("replicas").is_none(), "{shown}");
    assert_eq!(
        query(&install, elected.1, "SELECT i FROM t ORDER BY i")
            .map(|o| o.lines().collect::<Vec<_>>().join(",")),
        Ok("1,2".to_string())
    );
    query(&install, elected.1, "INSERT INTO t VALUES (3)").unwrap();
    wait_rows(&install, other_port, "1,2,3").await;
    let refused = query(&install, other_port, "INSERT INTO t VALUES (99)").unwrap_err();
    assert!(refused.contains("read-only"), "{refused}");

    for id in [&other, &elected.0, &old] {
        delete_and_wait(s, id).await;
    }
}

#[tokio::test]
async fn postgresql_eject_elects_a_replica_the_other_follows() {
    eject_elects_a_replica(Datastore::Postgresql, "32075-32086").await;
}

#[tokio::test]
async fn mariadb_eject_elects_a_replica_the_other_follows() {
    eject_elects_a_replica(Datastore::Mariadb, "32087-32099").await;
}

#[tokio::test]
async fn postgresql_promote_keeps_every_row_and_the_old_source_follows_read_only() {
    promote_switches_the_set(Datastore::Postgresql, "32050-32061").await;
}

#[tokio::test]
async fn mariadb_promote_keeps_every_row_and_the_old_source_follows_read_only() {
    promote_switches_the_set(Datastore::Mariadb, "32062-32074").await;
}
