//! Instance actions with `--provider local` (issue #15): `restart` really restarts the
//! database server and keeps committed rows; a flavor resize restarts it with the
//! memory settings of the new flavor's RAM; a volume resize grows the volume and its
//! file system, so the server has more space. A real client checks each.
//!
//! Each test runs its own troved on its own ports (32000-32049), and a `Drop` guard
//! kills every server under its local root and unmounts its volumes, even when an
//! assertion failed. A datastore whose binaries are absent is skipped (`SKIPPED:`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::local::{app_query, installation, local_list, mounts_under, LocalTroved};
use common::TestServer;
use serde_json::{json, Value};
use troved::local::Datastore;

/// The saga polls every 50 ms.
const FAST: &[&str] = &["--sim-latency-ms", "50"];

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

/// Polls show until the instance reads ACTIVE with `pred` (90 s: a real start).
async fn wait_active(s: &TestServer, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = s.get("u", "p1", &format!("/instances/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let inst = body["instance"].clone();
        match inst["status"].as_str() {
            Some("ACTIVE") if pred(&inst) => return inst,
            Some("ERROR") => panic!("the instance failed: {inst}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not ACTIVE in time: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn act(s: &TestServer, id: &str, body: Value) {
    let (status, answer) = s
        .post("u", "p1", &format!("/instances/{id}/action"), &body)
        .await;
    assert_eq!(status, 202, "{body}: {answer}");
}

/// The server process's pid (`troved local list`).
fn server_pid(f: &LocalTroved) -> u64 {
    let list = local_list(&f.data_dir());
    list["servers"][0]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no running server: {list}"))
}

/// Bytes of the file system the database server writes to, as it sees it (`df` of its
/// volume's mount point). `None` where volumes are plain directories (no loop devices
/// here): the limit is then a quota troved keeps, and what `df` shows is the host's
/// file system, which a resize does not change, so nothing the server sees can be
/// checked (troved's own record of the size would only check troved).
fn volume_bytes(f: &LocalTroved) -> Option<u64> {
    let list = local_list(&f.data_dir());
    let path = list["volumes"][0]["path"].as_str().unwrap().to_string();
    if !mounts_under(&f.data_dir()).contains(&path) {
        return None;
    }
    let out = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(&path)
        .output()
        .expect("df");
    assert!(out.status.success(), "df {path}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().nth(1).unwrap().trim().parse().unwrap())
}

/// The memory setting the flavor's RAM decides, and its value for 512 MB and 1 GB.
fn memory_setting(datastore: Datastore) -> (&'static str, &'static str, &'static str) {
    match datastore {
        Datastore::Postgresql => ("SHOW shared_buffers", "128MB", "256MB"),
        _ => ("SELECT @@innodb_buffer_pool_size", "268435456", "536870912"),
    }
}

/// Create → insert a row → restart (a new server process; the row is there) → flavor
/// resize 512 MB → 1 GB (the memory setting follows) → volume resize 1 → 2 GB (more
/// space) → delete.
async fn restart_and_resize(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let f = LocalTroved::start(ports, FAST).await;
    let s = &f.server;
    let body = create_body("acted", datastore.manager(), &install.series);
    let (status, created) = s.post("u", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let inst = wait_active(s, &id, |_| true).await;
    let (_, port) = common::local::endpoint(&inst, "private");
    let sql = |q: &str| app_query(&install, port, q);
    sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);").unwrap();

    let pid = server_pid(&f);
    act(s, &id, json!({"restart": {}})).await;
    wait_active(s, &id, |_| true).await;
    assert_ne!(server_pid(&f), pid, "a new server process");
    assert_eq!(sql("SELECT n FROM kept").as_deref(), Ok("42"));

    let (show, small, large) = memory_setting(datastore);
    assert_eq!(sql(show).as_deref(), Ok(small));
    act(s, &id, json!({"resize": {"flavorRef": "6"}})).await;
    wait_active(s, &id, |i| i["flavor"]["id"] == "6").await;
    assert_eq!(sql(show).as_deref(), Ok(large));
    assert_eq!(sql("SELECT n FROM kept").as_deref(), Ok("42"));

    let before = volume_bytes(&f);
    act(s, &id, json!({"resize": {"volume": {"size": 2}}})).await;
    wait_active(s, &id, |i| i["volume"]["size"] == 2).await;
    match (before, volume_bytes(&f)) {
        (Some(before), Some(after)) => assert!(
            after > before + (900 << 20),
            "{before} -> {after} bytes: the volume did not grow by ~1 GB"
        ),
        _ => eprintln!(
            "SKIPPED: the growth as the server sees it (volumes are plain directories \
             here, not mounted file systems)"
        ),
    }
    assert_eq!(sql("SELECT n FROM kept").as_deref(), Ok("42"));
    assert_eq!(
        sql("INSERT INTO kept VALUES (43)").map(|_| ()),
        Ok(()),
        "the server writes after the growth"
    );

    let (status, body) = s.delete("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202, "{body}");
    s.wait_for("u", "p1", &id, |i| i.is_null()).await;
}

#[tokio::test]
async fn postgresql_restart_and_resize_keep_data_and_take_effect() {
    restart_and_resize(Datastore::Postgresql, "32000-32019").await;
}

#[tokio::test]
async fn mariadb_restart_and_resize_keep_data_and_take_effect() {
    restart_and_resize(Datastore::Mariadb, "32020-32039").await;
}
