//! Heartbeats and the supervisor of `troved serve --provider local` (issue #13): the real
//! binary with `--heartbeat-secs 1` and a real PostgreSQL server that gets `kill -9`ed.
//!
//! Each test runs its own troved on its own data directory and its own port range
//! (32400-32499, apart from the other local tests); a `Drop` guard kills every
//! database server under its local root and unmounts its volumes, even when an
//! assertion failed.
//! Without PostgreSQL the tests print `SKIPPED:` and pass.

mod common;

use common::local::{alive, reads, show, wait_until};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::local::LocalTroved;
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{discover, Datastore, Installation};

type Fixture = LocalTroved;

/// Heartbeats every second, saga polls every 50 ms.
const FAST: &[&str] = &["--heartbeat-secs", "1", "--sim-latency-ms", "50"];

/// The servers `troved local list` reports (empty if it fails).
fn servers(data_dir: &Path) -> Vec<Value> {
    let Ok(out) = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["local", "list", "--data-dir"])
        .arg(data_dir)
        .output()
    else {
        return Vec::new();
    };
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["servers"].as_array().cloned().unwrap_or_default()
}

/// The pid of the only server, and its instance directory.
fn only_server(data_dir: &Path) -> (u32, PathBuf) {
    let list = servers(data_dir);
    assert_eq!(list.len(), 1, "{list:?}");
    let pid = list[0]["pid"].as_u64().expect("a running server has a pid") as u32;
    (pid, PathBuf::from(list[0]["path"].as_str().unwrap()))
}

async fn postgresql() -> Option<Installation> {
    let found = discover::installed()
        .await
        .into_iter()
        .find(|i| i.datastore == Datastore::Postgresql);
    if found.is_none() {
        println!("SKIPPED: no postgresql server installed");
    }
    found
}

/// Runs `sql` as `app` on `orders` over TCP; Ok(stdout) or Err(stderr).
fn psql(install: &Installation, port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new(install.tool("psql"))
        .arg(format!(
            "postgresql://app:s3cret-pw@127.0.0.1:{port}/orders"
        ))
        .args(["-X", "-w", "-A", "-t", "-c", sql])
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The instance's events (type and summary), oldest first.
async fn history(s: &TestServer, id: &str) -> Vec<(String, String)> {
    let (status, body) = s
        .get("u", "p1", &format!("/instances/{id}/history?limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["summary"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Creates a PostgreSQL instance with database `orders` and user `app`; waits until it
/// reads ACTIVE/HEALTHY; returns its id and port.
async fn create_healthy(s: &TestServer, install: &Installation) -> (String, u16) {
    let body = json!({"instance": {
        "name": "beat-db",
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": "postgresql", "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let inst = wait_until(s, &id, Duration::from_secs(90), "ACTIVE/HEALTHY", |i| {
        assert_ne!(i["status"], "ERROR", "the build failed: {i}");
        reads("ACTIVE", "HEALTHY")(i)
    })
    .await;
    let (_, port) = common::local::endpoint(&inst, "private");
    (id, port)
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

#[tokio::test]
async fn a_killed_postgresql_reads_shutdown_then_comes_back_healthy_with_its_data() {
    let Some(install) = postgresql().await else {
        return;
    };
    let f = Fixture::start("32400-32449", FAST).await;
    let s = &f.server;
    let (id, port) = create_healthy(s, &install).await;
    psql(
        &install,
        port,
        "create table kept (v int); insert into kept values (42)",
    )
    .unwrap();

    // Ten heartbeats without a change: no event, but service_status_updated moves.
    let before = history(s, &id).await;
    let updated_before = show(s, &id).await["service_status_updated"].clone();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let inst = show(s, &id).await;
    assert_eq!(history(s, &id).await, before, "heartbeats grew the log");
    assert!(
        inst["service_status_updated"].as_str() > updated_before.as_str(),
        "the last heartbeat is shown: {inst} (was {updated_before})"
    );
    assert_eq!(inst["operating_status"], "HEALTHY");

    let (pid, _) = only_server(&f.data_dir());
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
        psql(&install, port, "select v from kept").as_deref(),
        Ok("42")
    );
    let (restarted, _) = only_server(&f.data_dir());
    assert!(
        restarted != pid && alive(restarted),
        "a new server process runs"
    );

    // The log grew by the two changes only.
    let after = history(s, &id).await;
    let added: Vec<&str> = after[before.len()..]
        .iter()
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(
        added,
        ["guest status SHUTDOWN", "guest status HEALTHY"],
        "{after:?}"
    );
    delete(s, &id).await;
    assert!(!alive(restarted), "the server outlived its instance");
}

#[tokio::test]
async fn a_postgresql_that_cannot_restart_goes_to_error_with_a_fault_and_recovers_when_repaired() {
    let Some(install) = postgresql().await else {
        return;
    };
    let f = Fixture::start("32450-32499", FAST).await;
    let s = &f.server;
    let (id, port) = create_healthy(s, &install).await;
    let (pid, dir) = only_server(&f.data_dir());
    // A configuration the server refuses to start with.
    let conf = dir.join("data").join("postgresql.conf");
    let good = std::fs::read(&conf).unwrap();
    let mut bad = good.clone();
    bad.extend_from_slice(b"\nthis line is not a setting\n");
    std::fs::write(&conf, &bad).unwrap();
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();

    // 5 restarts at 1, 2, 3, 3, 3 s apart: ERROR with a fault well within a minute.
    let inst = wait_until(s, &id, Duration::from_secs(60), "ERROR", |i| {
        i["status"] == "ERROR"
    })
    .await;
    assert_eq!(inst["operating_status"], "", "{inst}");
    let message = inst["fault"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("keeps stopping"), "{inst}");
    let kinds: Vec<String> = history(s, &id).await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        kinds.iter().filter(|t| *t == "GuestFailed").count(),
        1,
        "{kinds:?}"
    );

    // Repaired, it comes back by itself (the restarts go on at the capped delay).
    std::fs::write(&conf, &good).unwrap();
    wait_until(
        s,
        &id,
        Duration::from_secs(30),
        "back",
        reads("ACTIVE", "HEALTHY"),
    )
    .await;
    assert_eq!(psql(&install, port, "select 1").as_deref(), Ok("1"));
    delete(s, &id).await;
}
