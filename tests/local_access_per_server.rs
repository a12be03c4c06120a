//! Access (`allowed_cidrs`) with `troved serve --provider local` is each server's own:
//! a replica gets the rules of its own create and access updates, the primary's rules
//! never cut its replicas off, and an update reaching a server that is down is applied
//! (the server started first), not dropped.
//!
//! A login from 127.0.0.1 to a private server (bound on 127.0.0.1) comes from
//! 127.0.0.1: `allowed_cidrs` ["127.0.0.2/32"] refuses it, ["127.0.0.1/32"] or none
//! let it in. Each test runs its own troved on its own data directory and ports
//! (31900-31969); a `Drop` guard kills every database server under its local root and
//! unmounts its volumes, even when an assertion failed. A datastore whose binaries are
//! absent is skipped with a `SKIPPED:` line.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::local::LocalTroved;
use common::local::{installation, local_list, show};

use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

type Fixture = LocalTroved;

impl LocalTroved {
    /// Polls show until the instance is ACTIVE and `done` holds.
    async fn wait_active(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let inst = show(&self.server, id).await;
            match inst["status"].as_str() {
                Some("ACTIVE") if done(&inst) => return inst,
                Some("ERROR") => panic!("instance {id} failed: {inst}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "not ACTIVE in time: {inst}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates an instance; its id once ACTIVE.
    async fn create(&self, body: Value) -> String {
        let (status, created) = self.server.post("u", "p1", "/instances", &body).await;
        assert_eq!(status, 200, "{created}");
        let id = created["instance"]["id"].as_str().unwrap().to_string();
        self.wait_active(&id, |_| true).await;
        id
    }

    /// An access update, waited for until the instance shows it, ACTIVE.
    async fn update_access(&self, id: &str, access: Value) {
        let body = json!({"instance": {"access": access.clone()}});
        let (status, answer) = self
            .server
            .put("u", "p1", &format!("/instances/{id}"), &body)
            .await;
        assert_eq!(status, 202, "{answer}");
        let cidrs = access["allowed_cidrs"].clone();
        self.wait_active(id, |i| {
            i["access"]["allowed_cidrs"] == cidrs && i["access"]["is_public"] == access["is_public"]
        })
        .await;
    }

    /// The instance's server in `troved local list`.
    fn server_of(&self, id: &str) -> Value {
        let list = local_list(&self.data_dir());
        list["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["instance_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no server of {id} in {list}"))
    }
}

/// The private port of a shown instance (beside `127.0.0.1`).
fn port_of(inst: &Value) -> u16 {
    common::local::endpoint(inst, "private").1
}

/// A primary with database `orders` and user `app`, private, with `cidrs`.
fn primary_body(install: &Installation, cidrs: Value) -> Value {
    json!({"instance": {
        "name": "primary", "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
        "access": {"is_public": false, "allowed_cidrs": cidrs},
    }})
}

/// Runs `sql` as `app` on `orders` over TCP at `host`; Ok(stdout) or Err(stderr).
fn query(install: &Installation, (host, port): (&str, u16), sql: &str) -> Result<String, String> {
    let port = port.to_string();
    let out = match install.datastore {
        Datastore::Postgresql => Command::new(install.tool("psql"))
            .arg(format!(
                "postgresql://app:s3cret-pw@{host}:{port}/orders?connect_timeout=5"
            ))
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .output(),
        _ => Command::new(install.tool("mariadb"))
            .args(["--no-defaults", "--protocol=TCP", "-h", host, "-P", &port])
            .args(["--connect-timeout=5", "-u", "app", "-D", "orders"])
            .args(["-N", "-e", sql])
            .env("MYSQL_PWD", "s3cret-pw")
            .output(),
    }
    .expect("run the client");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `app`'s login from 127.0.0.1 to the server on `port` is refused by its rules (the
/// server answers: no connection error).
fn assert_refused(install: &Installation, port: u16, what: &str) {
    let err = query(install, ("127.0.0.1", port), "SELECT 1").unwrap_err();
    let by_rules = match install.datastore {
        Datastore::Postgresql => err.contains("no pg_hba.conf entry"),
        _ => err.contains("Access denied") || err.contains("account is locked"),
    };
    assert!(by_rules, "{what}: not refused by the access rules: {err}");
}

/// Polls until table `t` on `port` holds exactly `want` (replication is asynchronous).
async fn wait_rows(install: &Installation, port: u16, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = query(install, ("127.0.0.1", port), "SELECT i FROM t ORDER BY i")
            .map(|o| o.lines().collect::<Vec<_>>().join(","));
        if now.as_deref() == Ok(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {port} holds {now:?}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A replica created with its own `allowed_cidrs` applies them (the primary keeps its
/// own); an access update of the replica changes the replica only, one of the primary
/// the primary only; the replica follows throughout.
async fn a_replica_has_its_own_access(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = Fixture::start(ports, &[]).await;
    let pid = f.create(primary_body(&install, json!([]))).await;
    let primary = port_of(&show(&f.server, &pid).await);
    let at_primary = ("127.0.0.1", primary);
    query(
        &install,
        at_primary,
        "CREATE TABLE t (i integer PRIMARY KEY)",
    )
    .unwrap();
    query(&install, at_primary, "INSERT INTO t VALUES (1)").unwrap();

    let rid = f
        .create(json!({"instance": {
            "name": "replica", "replica_of": pid,
            "access": {"is_public": false, "allowed_cidrs": ["127.0.0.2/32"]},
        }}))
        .await;
    let replica = port_of(&show(&f.server, &rid).await);
    assert_refused(&install, replica, "the replica created with 127.0.0.2/32");
    assert_eq!(query(&install, at_primary, "SELECT i FROM t").unwrap(), "1");

    // The replica's own update opens it, and a second one closes it again (every
    // account of the primary's users is the replica's to restrict).
    let only_1 = json!({"is_public": false, "allowed_cidrs": ["127.0.0.1/32"]});
    let only_2 = json!({"is_public": false, "allowed_cidrs": ["127.0.0.2/32"]});
    f.update_access(&rid, only_1.clone()).await;
    wait_rows(&install, replica, "1").await;
    f.update_access(&rid, only_2.clone()).await;
    assert_refused(&install, replica, "the replica updated to 127.0.0.2/32");
    f.update_access(&rid, only_1.clone()).await;

    // The primary's rules stay on the primary; replication goes on.
    f.update_access(&pid, only_2).await;
    assert_refused(&install, primary, "the primary updated to 127.0.0.2/32");
    wait_rows(&install, replica, "1").await;
    f.update_access(&pid, only_1).await;
    query(&install, at_primary, "INSERT INTO t VALUES (2)").unwrap();
    wait_rows(&install, replica, "1,2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_replica_has_its_own_access() {
    a_replica_has_its_own_access(Datastore::Postgresql, "31900-31919").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_replica_has_its_own_access() {
    a_replica_has_its_own_access(Datastore::Mariadb, "31920-31939").await;
}

/// An access update of a PostgreSQL primary rewrites its `pg_hba.conf`; a restart of
/// the primary after it (here: public, then private again, each a restart) must not
/// leave its replica unable to connect again: rows written after still reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_replica_follows_again_after_access_updates_and_restarts_of_its_primary() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = Fixture::start("31940-31959", &["--local-public-bind", "127.0.0.2"]).await;
    let pid = f.create(primary_body(&install, json!([]))).await;
    let primary = port_of(&show(&f.server, &pid).await);
    query(
        &install,
        ("127.0.0.1", primary),
        "CREATE TABLE t (i integer PRIMARY KEY); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    let rid = f
        .create(json!({"instance": {"name": "replica", "replica_of": pid}}))
        .await;
    let replica = port_of(&show(&f.server, &rid).await);
    wait_rows(&install, replica, "1").await;

    let restarts = |f: &Fixture| f.server_of(&pid)["pid"].clone();
    let before = restarts(&f);
    f.update_access(&pid, json!({"is_public": true, "allowed_cidrs": []}))
        .await;
    f.update_access(&pid, json!({"is_public": false, "allowed_cidrs": []}))
        .await;
    assert_ne!(restarts(&f), before, "the primary was not restarted");
    query(&install, ("127.0.0.1", primary), "INSERT INTO t VALUES (2)").unwrap();
    wait_rows(&install, replica, "1,2").await;
}

/// An access update reaching a MariaDB server that is down (killed; no heartbeat in the
/// test's time to start it again) is applied: troved starts the server and changes its
/// accounts, where it used to record the CIDRs and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_access_update_of_a_stopped_server_is_applied() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let f = Fixture::start("31960-31969", &["--heartbeat-secs", "3600"]).await;
    let id = f.create(primary_body(&install, json!([]))).await;
    let port = port_of(&show(&f.server, &id).await);
    query(&install, ("127.0.0.1", port), "SELECT 1").unwrap();
    let pid = f.server_of(&id)["pid"].as_u64().expect("a running server") as u32;
    assert!(Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f.server_of(&id)["pid"].is_null() {
        assert!(Instant::now() < deadline, "mariadbd {pid} still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    f.update_access(
        &id,
        json!({"is_public": false, "allowed_cidrs": ["127.0.0.2/32"]}),
    )
    .await;
    assert_refused(
        &install,
        port,
        "the server updated to 127.0.0.2/32 while down",
    );
    f.update_access(&id, json!({"is_public": false, "allowed_cidrs": []}))
        .await;
    query(&install, ("127.0.0.1", port), "SELECT 1").unwrap();
}
