//! Backups and restores of real PostgreSQL and MariaDB servers through the HTTP API
//! (issue #14): a row written before the backup is in the restored instance, one written
//! after is not; MariaDB increments chain; the instance shows BACKUP during the copy; a
//! kill -9 of troved during a copy ends in a complete backup after the restart.
//!
//! Black box: the real troved with `--provider local`. Every test has its own data
//! directory and ports (31950-31999) and a `Drop` guard (`common::local::Guard`) that
//! kills, unmounts and detaches what it leaves. A datastore whose binaries are absent is
//! skipped with a `SKIPPED:` line.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::local::{app_query, endpoint, installation, reads, wait_until, LocalTroved};
use common::TestServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use troved::local::{Datastore, Installation};

const BUILD: Duration = Duration::from_secs(120);

fn create_body(name: &str, datastore: Datastore, restore: Option<&str>) -> Value {
    let (ds, version) = match datastore {
        Datastore::Postgresql => ("postgresql", "15"),
        _ => ("mariadb", "10.11"),
    };
    let mut body = json!({"instance": {
        "name": name, "flavorRef": "1", "volume": {"size": 1},
        "datastore": {"type": ds, "version": version},
        "databases": [{"name": "orders"}],
        "users": [{"name": "app", "password": "s3cret-pw", "databases": [{"name": "orders"}]}],
    }});
    if let Some(b) = restore {
        body["instance"]["restorePoint"] = json!({ "backupRef": b });
    }
    body
}

/// Creates an instance and waits until it is ACTIVE and HEALTHY; its id and port.
async fn create_healthy(s: &TestServer, body: &Value) -> (String, u16) {
    let (status, created) = s.post("u", "p1", "/instances", body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let inst = wait_until(s, &id, BUILD, "ACTIVE/HEALTHY", reads("ACTIVE", "HEALTHY")).await;
    (id, endpoint(&inst, "private").1)
}

async fn backup(s: &TestServer, body: Value) -> String {
    let (status, created) = s
        .post("u", "p1", "/backups", &json!({ "backup": body }))
        .await;
    assert_eq!(status, 202, "{created}");
    created["backup"]["id"].as_str().unwrap().to_string()
}

async fn wait_backup(s: &TestServer, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + BUILD;
    loop {
        let (status, body) = s.get("u", "p1", &format!("/backups/{id}")).await;
        assert_eq!(status, 200, "{body}");
        if pred(&body["backup"]) {
            return body["backup"].clone();
        }
        assert_ne!(body["backup"]["status"], "FAILED", "{body}");
        assert!(
            Instant::now() < deadline,
            "backup not there in time: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn completed(b: &Value) -> bool {
    b["status"] == "COMPLETED"
}

fn artifact(b: &Value) -> PathBuf {
    PathBuf::from(
        b["locationRef"]
            .as_str()
            .unwrap()
            .strip_prefix("file://")
            .unwrap(),
    )
}

/// The artifact's SHA-256 is the recorded checksum.
fn assert_verifiable(b: &Value) {
    let bytes = std::fs::read(artifact(b)).expect("the artifact");
    assert_eq!(
        b["checksum"],
        hex::encode(Sha256::digest(&bytes)).as_str(),
        "{b}"
    );
}

fn rows(install: &Installation, port: u16) -> String {
    app_query(install, port, "SELECT v FROM t ORDER BY v")
        .unwrap()
        .replace('\n', ",")
}

fn exec(install: &Installation, port: u16, sql: &str) {
    app_query(install, port, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Full backup → restore for one engine: the restore has the rows of the backup only,
/// and the user logs in with the create's password.
async fn backup_and_restore(datastore: Datastore, ports: &str) {
    let Some(install) = installation(datastore).await else {
        return;
    };
    let t = LocalTroved::start(ports, &[]).await;
    let s = &t.server;
    let (id, port) = create_healthy(s, &create_body("src", datastore, None)).await;
    exec(
        &install,
        port,
        "CREATE TABLE t (v INT); INSERT INTO t VALUES (1)",
    );
    let bid = backup(s, json!({"name": "full", "instance": id})).await;
    let (_, inst) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(inst["instance"]["status"], "BACKUP", "{inst}");
    let b = wait_backup(s, &bid, completed).await;
    assert_verifiable(&b);
    exec(&install, port, "INSERT INTO t VALUES (2)");
    wait_until(s, &id, BUILD, "ACTIVE", reads("ACTIVE", "HEALTHY")).await;

    let (restored, rport) = create_healthy(s, &create_body("copy", datastore, Some(&bid))).await;
    assert_ne!(rport, port);
    assert_eq!(
        rows(&install, rport),
        "1",
        "the restore has the rows of the backup only"
    );
    assert_eq!(rows(&install, port), "1,2", "the source is untouched");
    // The copy is its own server.
    exec(&install, rport, "INSERT INTO t VALUES (9)");
    assert_eq!(rows(&install, port), "1,2");

    // Delete: gone, artifact removed; the restored instance lives on.
    assert_eq!(s.delete("u", "p1", &format!("/backups/{bid}")).await.0, 202);
    let deadline = Instant::now() + Duration::from_secs(20);
    while artifact(&b).exists() {
        assert!(Instant::now() < deadline, "artifact not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&install, rport), "1,9");
    let _ = restored;
}

#[tokio::test]
async fn postgresql_backup_restores_the_rows_written_before_it() {
    backup_and_restore(Datastore::Postgresql, "31950-31959").await;
}

#[tokio::test]
async fn mariadb_backup_restores_the_rows_written_before_it() {
    backup_and_restore(Datastore::Mariadb, "31960-31969").await;
}

#[tokio::test]
async fn mariadb_increments_chain_and_keep_their_parent() {
    let Some(install) = installation(Datastore::Mariadb).await else {
        return;
    };
    let t = LocalTroved::start("31970-31979", &[]).await;
    let s = &t.server;
    let (id, port) = create_healthy(s, &create_body("src", Datastore::Mariadb, None)).await;
    exec(
        &install,
        port,
        "CREATE TABLE t (v INT); INSERT INTO t VALUES (1)",
    );
    let full = backup(s, json!({"name": "full", "instance": id})).await;
    let full_b = wait_backup(s, &full, completed).await;
    exec(&install, port, "INSERT INTO t VALUES (2)");
    let inc = backup(s, json!({"name": "inc", "instance": id, "incremental": 1})).await;
    let inc_b = wait_backup(s, &inc, completed).await;
    assert_eq!(inc_b["parent_id"], full.as_str());
    assert_verifiable(&inc_b);
    assert!(
        std::fs::metadata(artifact(&inc_b)).unwrap().len()
            < std::fs::metadata(artifact(&full_b)).unwrap().len(),
        "an increment holds the changes only"
    );
    exec(&install, port, "INSERT INTO t VALUES (3)");

    let (_, rport) = create_healthy(s, &create_body("copy", Datastore::Mariadb, Some(&inc))).await;
    assert_eq!(rows(&install, rport), "1,2");
    let (status, body) = s.delete("u", "p1", &format!("/backups/{full}")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(s.delete("u", "p1", &format!("/backups/{inc}")).await.0, 202);
    assert_eq!(
        s.delete("u", "p1", &format!("/backups/{full}")).await.0,
        202
    );
}

#[tokio::test]
async fn postgresql_refuses_increments_and_backups_of_a_building_instance() {
    if installation(Datastore::Postgresql).await.is_none() {
        return;
    }
    let t = LocalTroved::start("31980-31984", &[]).await;
    let s = &t.server;
    let (status, created) = s
        .post(
            "u",
            "p1",
            "/instances",
            &create_body("src", Datastore::Postgresql, None),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    let (status, body) = s
        .post(
            "u",
            "p1",
            "/backups",
            &json!({"backup": {"name": "b", "instance": id}}),
        )
        .await;
    assert_eq!(status, 422, "a building instance: {body}");
    wait_until(s, &id, BUILD, "ACTIVE", reads("ACTIVE", "HEALTHY")).await;
    let (status, body) = s
        .post(
            "u",
            "p1",
            "/backups",
            &json!({"backup": {"name": "b", "instance": id, "incremental": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["badRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Incremental backups are not supported"),
        "{body}"
    );
}

#[tokio::test]
async fn a_kill_9_during_a_postgresql_backup_ends_in_a_complete_backup() {
    let Some(install) = installation(Datastore::Postgresql).await else {
        return;
    };
    let mut t = LocalTroved::start("31985-31994", &[]).await;
    let (id, port) =
        create_healthy(&t.server, &create_body("src", Datastore::Postgresql, None)).await;
    // Enough data that the copy takes a moment.
    exec(
        &install,
        port,
        "CREATE TABLE t (v INT); INSERT INTO t VALUES (1); \
         CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 2000000) g",
    );
    let bid = backup(&t.server, json!({"name": "b", "instance": id})).await;
    wait_backup(&t.server, &bid, |b| b["status"] == "BUILDING").await;
    t.server.kill_and_restart().await;
    let s = &t.server;
    let b = wait_backup(s, &bid, completed).await;
    assert_verifiable(&b);
    let container = artifact(&b).parent().unwrap().to_path_buf();
    let names: Vec<String> = std::fs::read_dir(&container)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [bid.as_str()], "only the complete artifact is left");
    // The copy was interrupted, then started again: two starts in the log.
    let log = rusqlite::Connection::open(t.data_dir().join("events.db")).unwrap();
    let starts: i64 = log
        .query_row(
            "SELECT count(*) FROM events WHERE stream = ?1 AND event_type = 'BackupStarted'",
            [format!("backup-{bid}")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(starts, 2);
    wait_until(s, &id, BUILD, "ACTIVE", reads("ACTIVE", "HEALTHY")).await;
    let (_, rport) =
        create_healthy(s, &create_body("copy", Datastore::Postgresql, Some(&bid))).await;
    assert_eq!(rows(&install, rport), "1");
}
