//! Configuration values a real server refuses, with `troved serve --provider local`: a
//! value the parameter catalogue accepts (a string) but PostgreSQL or MariaDB does not
//! must leave the running server running, answering, with its previous values in force;
//! a value that passes every check and still stops the server from starting is rolled
//! back and the server started again on its previous values.
//!
//! Each test runs its own troved on its own data directory and ports (31800-31899); the
//! shared `Guard` kills every server under its local root even when an assertion fails.
//! A datastore whose binaries are absent is skipped with a `SKIPPED:` line.

mod common;

use common::local::app_query as query;

use std::path::Path;

use std::time::{Duration, Instant};

use common::local::LocalTroved;
use common::local::{alive, installation, local_list, reads, wait_until};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::{Datastore, Installation};

type Fixture = LocalTroved;

/// Heartbeats every second, saga polls every 50 ms.
const FAST: &[&str] = &["--heartbeat-secs", "1", "--sim-latency-ms", "50"];

/// Creates an instance with user `app` on database `orders`, waits until it is
/// ACTIVE/HEALTHY; its id and port.
async fn create_healthy(s: &TestServer, name: &str, install: &Installation) -> (String, u16) {
    let body = json!({"instance": {
        "name": name,
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": install.datastore.manager(), "version": install.series},
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
    (id, common::local::endpoint(&inst, "private").1)
}

/// The pid of the only database server troved runs (`troved local list`).
fn server_pid(data_dir: &Path) -> Option<u32> {
    let list = local_list(data_dir);
    let servers = list["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{list}");
    servers[0]["pid"].as_u64().map(|p| p as u32)
}

/// Creates a group with `values` for `install` and attaches it to `id`; the group id.
async fn attach(s: &TestServer, id: &str, install: &Installation, values: Value) -> String {
    let group = json!({"configuration": {
        "name": "refused", "values": values,
        "datastore": {"type": install.datastore.manager(), "version": install.series},
    }});
    let (status, group) = s.post("u", "p1", "/configurations", &group).await;
    assert_eq!(status, 200, "the catalogue takes the values: {group}");
    let gid = group["configuration"]["id"].as_str().unwrap().to_string();
    let body = json!({"instance": {"configuration": gid}});
    let (status, body) = s.put("u", "p1", &format!("/instances/{id}"), &body).await;
    assert_eq!(status, 202, "{body}");
    gid
}

/// For `secs`, every half second: the server process is `pid` and answers `sql` with
/// `expect`, and the instance is not in ERROR. The saga applies (and retries) the
/// attached group meanwhile.
async fn keeps_running(
    s: &TestServer,
    id: &str,
    data_dir: &Path,
    (install, port): (&Installation, u16),
    pid: u32,
    (sql, expect): (&str, &str),
    secs: u64,
) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        assert_eq!(server_pid(data_dir), Some(pid), "the server was stopped");
        assert!(alive(pid));
        assert_eq!(query(install, port, sql).as_deref(), Ok(expect));
        let inst = common::local::show(s, id).await;
        assert_ne!(inst["status"], "ERROR", "{inst}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The instance tells its owner why: ACTIVE, with a fault naming the refused value
/// (`GuestConfigurationRefused`), within `secs`.
async fn shows_refusal(s: &TestServer, id: &str, value: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let inst = common::local::show(s, id).await;
        let message = inst["fault"]["message"].as_str().unwrap_or_default();
        if message.contains("Failed to apply the configuration") {
            assert!(message.contains(value), "the fault names {value}: {inst}");
            assert_eq!(inst["status"], "ACTIVE", "{inst}");
            return;
        }
        assert!(Instant::now() < deadline, "no fault shown: {inst}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `shared_buffers = 'lots'`: PostgreSQL's `pg_file_settings` flags it like a value
/// that needs a restart; before, troved restarted for it, the start failed and the
/// server stayed down. Now `postgres -C` finds the value invalid: refused, the file put
/// back, the server never stopped.
#[tokio::test]
async fn postgresql_refuses_an_invalid_value_and_keeps_running() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = Fixture::start("31800-31819", FAST).await;
    let s = &f.server;
    let (id, port) = create_healthy(s, "pg-lots", &install).await;
    let before = query(&install, port, "SHOW shared_buffers").unwrap();
    let pid = server_pid(&f.data_dir()).expect("a running server");
    attach(s, &id, &install, json!({"shared_buffers": "lots"})).await;
    keeps_running(
        s,
        &id,
        &f.data_dir(),
        (&install, port),
        pid,
        ("SHOW shared_buffers", &before),
        12,
    )
    .await;
    shows_refusal(s, &id, "lots", 30).await;
}

/// `shared_buffers = '1TB'` is a valid value, but no start gets that much shared
/// memory: the restart fails, the previous file is put back and the server started
/// again with its previous value, and the same value is not restarted for again.
#[tokio::test]
async fn postgresql_rolls_back_a_value_it_cannot_start_with() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let f = Fixture::start("31820-31839", FAST).await;
    let s = &f.server;
    let (id, port) = create_healthy(s, "pg-huge", &install).await;
    let before = query(&install, port, "SHOW shared_buffers").unwrap();
    let pid = server_pid(&f.data_dir()).expect("a running server");
    attach(s, &id, &install, json!({"shared_buffers": "1TB"})).await;
    // The failed restart: a new server process, on the previous value.
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        if let Some(p) = server_pid(&f.data_dir()).filter(|p| *p != pid) {
            if query(&install, port, "SHOW shared_buffers").as_deref() == Ok(&before) {
                break p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the server is not back on its previous values: {}",
            local_list(&f.data_dir())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Then it stays up: the saga's retries of the same values do not restart it.
    keeps_running(
        s,
        &id,
        &f.data_dir(),
        (&install, port),
        restarted,
        ("SHOW shared_buffers", &before),
        10,
    )
    .await;
}

/// `character_set_server = 'bogus'`: `SET GLOBAL` answers 1115 (unknown character
/// set), which troved took for "needs a restart": it wrote the value to `my.cnf` and
/// restarted, and mariadbd did not start. Now the value is refused, nothing is written,
/// and `auto_increment_increment`, set just before it, is set back.
#[tokio::test]
async fn mariadb_refuses_a_bad_value_and_keeps_running_on_its_previous_values() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let f = Fixture::start("31840-31859", FAST).await;
    let s = &f.server;
    let (id, port) = create_healthy(s, "maria-bogus", &install).await;
    let charset = "SELECT @@global.character_set_server";
    let increment = "SELECT @@global.auto_increment_increment";
    let before = query(&install, port, charset).unwrap();
    assert_eq!(query(&install, port, increment).as_deref(), Ok("1"));
    let pid = server_pid(&f.data_dir()).expect("a running server");
    let values = json!({"auto_increment_increment": 2, "character_set_server": "bogus"});
    attach(s, &id, &install, values).await;
    keeps_running(
        s,
        &id,
        &f.data_dir(),
        (&install, port),
        pid,
        (charset, &before),
        12,
    )
    .await;
    shows_refusal(s, &id, "bogus", 30).await;
    // Set back once refused (and not tried again): it reads 1, not 2.
    let deadline = Instant::now() + Duration::from_secs(10);
    while query(&install, port, increment).as_deref() != Ok("1") {
        assert!(
            Instant::now() < deadline,
            "auto_increment_increment not set back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `long_query_time = 2.5`: MariaDB refuses `SET GLOBAL long_query_time = '2.5'`
/// (1232, wrong type), so troved restarted the server for it; sent as a number, it is
/// in force at once, the server not restarted.
#[tokio::test]
async fn mariadb_takes_a_fractional_value_without_a_restart() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let f = Fixture::start("31860-31879", FAST).await;
    let s = &f.server;
    let (id, port) = create_healthy(s, "maria-float", &install).await;
    let pid = server_pid(&f.data_dir()).expect("a running server");
    attach(s, &id, &install, json!({"long_query_time": 2.5})).await;
    let sql = "SELECT @@global.long_query_time";
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&install, port, sql).as_deref() != Ok("2.500000") {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            query(&install, port, sql)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server_pid(&f.data_dir()), Some(pid), "restarted for it");
    wait_until(
        s,
        &id,
        Duration::from_secs(30),
        "ACTIVE/HEALTHY",
        reads("ACTIVE", "HEALTHY"),
    )
    .await;
}
