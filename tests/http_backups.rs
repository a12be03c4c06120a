//! Backups over HTTP against the simulated cloud (issue #14): create, the instance's
//! BACKUP status, completion with a real artifact in the backup store, restore,
//! delete, every refusal, injected faults and a kill -9 in the middle of a copy. The
//! real copies of PostgreSQL and MariaDB data are `tests/local_backup_http.rs`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Polls `GET /backups/{id}` until `pred` holds (bounded); the backup, or `Null` for a 404.
async fn wait_backup(
    s: &TestServer,
    project: &str,
    id: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = s.get("u", project, &format!("/backups/{id}")).await;
        let b = if status == 404 {
            Value::Null
        } else {
            body["backup"].clone()
        };
        if (status == 200 || status == 404) && pred(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "backup condition not reached: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn create_backup(s: &TestServer, project: &str, body: Value) -> (u16, Value) {
    s.post("u", project, "/backups", &json!({ "backup": body }))
        .await
}

/// The file behind a `file://` location.
fn artifact_path(location: &Value) -> PathBuf {
    PathBuf::from(
        location
            .as_str()
            .expect("a location")
            .strip_prefix("file://")
            .expect("a file:// location"),
    )
}

fn sha256_of(path: &PathBuf) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("the artifact")))
}

/// The names in a directory, sorted (none if it does not exist).
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn message(body: &Value) -> String {
    body.as_object()
        .and_then(|o| o.values().next())
        .and_then(|f| f["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_backup_runs_completes_with_a_verifiable_artifact_restores_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "400"]).await;
    let id = s.create_active("u", "p1", "db1").await;

    let (status, body) = create_backup(
        &s,
        "p1",
        json!({"name": "nightly", "instance": id, "description": "d"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let b = &body["backup"];
    assert_eq!(b["status"], "NEW");
    assert_eq!(b["instance_id"], id.as_str());
    assert_eq!(b["datastore"]["type"], "mysql");
    assert_eq!(b["locationRef"], Value::Null);
    let bid = b["id"].as_str().unwrap().to_string();

    // While it runs, the instance is in BACKUP and refuses actions and another backup.
    let (_, inst) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_eq!(inst["instance"]["status"], "BACKUP");
    let (status, body) = create_backup(&s, "p1", json!({"name": "second", "instance": id})).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        message(&body).contains("(instance status was BACKUP)"),
        "{body}"
    );

    let done = wait_backup(&s, "p1", &bid, |b| b["status"] == "COMPLETED").await;
    let path = artifact_path(&done["locationRef"]);
    assert!(path.starts_with(dir.path().join("backups")), "{path:?}");
    assert_eq!(done["checksum"], sha256_of(&path).as_str());
    assert!(done["size"].as_f64().unwrap() > 0.0);
    s.wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    for list in ["/backups", &format!("/instances/{id}/backups")] {
        let (_, body) = s.get("u", "p1", list).await;
        assert_eq!(body["backups"][0]["id"], bid.as_str(), "{list}");
    }

    // Restore into a new instance.
    let mut create = common::create_body("restored");
    create["instance"]["restorePoint"] = json!({"backupRef": bid});
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 200, "{body}");
    let restored = body["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("u", "p1", &restored, |i| i["status"] == "ACTIVE")
        .await;

    // Delete: gone at once, the artifact removed next.
    let (status, _) = s.delete("u", "p1", &format!("/backups/{bid}")).await;
    assert_eq!(status, 202);
    let (status, _) = s.get("u", "p1", &format!("/backups/{bid}")).await;
    assert_eq!(status, 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(Instant::now() < deadline, "the artifact was not removed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (status, _) = s.delete("u", "p1", &format!("/backups/{bid}")).await;
    assert_eq!(status, 404);
    // A restore from the deleted backup is refused.
    let (status, _) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_requests_get_trove_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--quota-backups", "2"]).await;
    let id = s.create_active("u", "p1", "db1").await;
    let other = s.create_active("u", "p1", "db2").await;
    let nowhere = uuid::Uuid::new_v4().to_string();
    let cases = [
        (
            json!({"name": "b", "instance": nowhere}),
            404,
            "itemNotFound",
        ),
        (json!({"name": "b"}), 400, "badRequest"),
        (json!({"name": "", "instance": id}), 400, "badRequest"),
        (
            json!({"name": "b", "instance": "not-a-uuid"}),
            400,
            "badRequest",
        ),
        (
            json!({"name": "b", "instance": id, "incremental": 2}),
            400,
            "badRequest",
        ),
        (
            json!({"name": "b", "instance": id, "swift_container": "../etc"}),
            400,
            "badRequest",
        ),
        (
            json!({"name": "b", "instance": id, "parent_id": nowhere}),
            404,
            "itemNotFound",
        ),
    ];
    for (body, code, key) in cases {
        let (status, got) = create_backup(&s, "p1", body.clone()).await;
        assert_eq!(
            (status, got.get(key).is_some()),
            (code, true),
            "{body} -> {got}"
        );
        assert_eq!(got[key]["code"], code);
    }
    // Another project's instance: 404, as if it did not exist.
    let (status, _) = create_backup(&s, "p2", json!({"name": "b", "instance": id})).await;
    assert_eq!(status, 404);
    // A parent taken of another instance.
    let (_, body) = create_backup(&s, "p1", json!({"name": "b", "instance": other})).await;
    let parent = body["backup"]["id"].as_str().unwrap().to_string();
    wait_backup(&s, "p1", &parent, |b| b["status"] == "COMPLETED").await;
    let (status, body) = create_backup(
        &s,
        "p1",
        json!({"name": "b", "instance": id, "parent_id": parent}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Nothing was made by any of them: one backup, in every list.
    let (_, list) = s.get("u", "p1", "/backups").await;
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list}");
    // Quota: 2 live backups per project.
    let (_, body) = create_backup(&s, "p1", json!({"name": "b2", "instance": id})).await;
    wait_backup(&s, "p1", body["backup"]["id"].as_str().unwrap(), |b| {
        b["status"] == "COMPLETED"
    })
    .await;
    let (status, body) = create_backup(&s, "p1", json!({"name": "b3", "instance": id})).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(message(&body), "Quota exceeded for resources: ['backups'].");
    // An unknown backupRef.
    let mut create = common::create_body("restored");
    create["instance"]["restorePoint"] = json!({"backupRef": nowhere});
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 404, "{body}");
    // Deleting what does not exist, or another project's.
    let (status, _) = s.delete("u", "p1", &format!("/backups/{nowhere}")).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete("u", "p2", &format!("/backups/{parent}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_building_instance_cannot_be_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-latency-ms", "1500"]).await;
    let id = s.create("u", "p1", "slow").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = create_backup(&s, "p1", json!({"name": "b", "instance": id})).await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn increments_chain_and_a_parent_with_children_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db1").await;
    let (_, body) = create_backup(&s, "p1", json!({"name": "full", "instance": id})).await;
    let full = body["backup"]["id"].as_str().unwrap().to_string();
    wait_backup(&s, "p1", &full, |b| b["status"] == "COMPLETED").await;
    // `incremental: 1` takes the last completed backup as its parent.
    let (status, body) = create_backup(
        &s,
        "p1",
        json!({"name": "inc", "instance": id, "incremental": 1}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["backup"]["parent_id"], full.as_str());
    let inc = body["backup"]["id"].as_str().unwrap().to_string();
    wait_backup(&s, "p1", &inc, |b| b["status"] == "COMPLETED").await;
    // A restore of the increment reads the whole chain.
    let mut create = common::create_body("restored");
    create["instance"]["restorePoint"] = json!({"backupRef": inc});
    let (_, body) = s.post("u", "p1", "/instances", &create).await;
    let restored = body["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("u", "p1", &restored, |i| i["status"] == "ACTIVE")
        .await;
    // The parent is kept while an increment depends on it.
    let (status, body) = s.delete("u", "p1", &format!("/backups/{full}")).await;
    assert_eq!(status, 422, "{body}");
    assert!(message(&body).contains(&inc), "{body}");
    assert_eq!(s.delete("u", "p1", &format!("/backups/{inc}")).await.0, 202);
    assert_eq!(
        s.delete("u", "p1", &format!("/backups/{full}")).await.0,
        202
    );
}

#[tokio::test]
async fn a_failed_backup_leaves_no_artifact_and_the_instance_active() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &["--sim-fault", "backup:permanent:name=doomed*"],
    )
    .await;
    let id = s.create_active("u", "p1", "doomed-1").await;
    let (_, body) = create_backup(&s, "p1", json!({"name": "b", "instance": id})).await;
    let bid = body["backup"]["id"].as_str().unwrap().to_string();
    let failed = wait_backup(&s, "p1", &bid, |b| b["status"] == "FAILED").await;
    assert_eq!(failed["locationRef"], Value::Null);
    s.wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    let container = dir.path().join("backups/database_backups");
    let left: Vec<_> = std::fs::read_dir(&container)
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // A failed backup may be deleted.
    assert_eq!(s.delete("u", "p1", &format!("/backups/{bid}")).await.0, 202);
}

/// Upstream's `reset_status` fails the instance's running backups
/// (`fail_for_instance`): a backup whose copy never answers no longer keeps the instance
/// in BACKUP with its actions refused once an admin reset it.
#[tokio::test]
async fn reset_status_fails_a_hung_backup_and_frees_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &["--sim-fault", "backup:hang:name=stuck*"]).await;
    let id = s.create_active("u", "p1", "stuck-1").await;
    let (status, body) = create_backup(&s, "p1", json!({"name": "b", "instance": id})).await;
    assert_eq!(status, 202, "{body}");
    let bid = body["backup"]["id"].as_str().unwrap().to_string();
    wait_backup(&s, "p1", &bid, |b| b["status"] == "BUILDING").await;
    let restart = json!({"restart": {}});
    let action = format!("/instances/{id}/action");
    let (status, body) = s.post("u", "p1", &action, &restart).await;
    assert_eq!(status, 422, "refused while the backup hangs: {body}");

    let (status, body) = s
        .post("admin", "p1", &action, &json!({"reset_status": {}}))
        .await;
    assert_eq!(status, 202, "{body}");
    let failed = wait_backup(&s, "p1", &bid, |b| b["status"] == "FAILED").await;
    assert_eq!(failed["locationRef"], Value::Null);
    let (_, inst) = s.get("u", "p1", &format!("/instances/{id}")).await;
    assert_ne!(inst["instance"]["status"], "BACKUP", "{inst}");
    s.wait_for("u", "p1", &id, |i| i["operating_status"] == "HEALTHY")
        .await;
    let (status, body) = s.post("u", "p1", &action, &restart).await;
    assert_eq!(status, 202, "a restart after the reset: {body}");
    // The failed backup left nothing in the store and stays FAILED.
    let container = dir.path().join("backups/database_backups");
    assert!(listing(&container).is_empty(), "{:?}", listing(&container));
    let (_, body) = s.get("u", "p1", &format!("/backups/{bid}")).await;
    assert_eq!(body["backup"]["status"], "FAILED", "{body}");
}

#[tokio::test]
async fn a_kill_9_during_a_copy_ends_completed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "3000"]).await;
    let id = {
        // A fast cloud for the build, a slow one for the copy.
        s.terminate(Duration::from_secs(10));
        let mut fast = TestServer::start(dir.path(), &[]).await;
        let id = fast.create_active("u", "p1", "db1").await;
        fast.terminate(Duration::from_secs(10));
        id
    };
    s.restart().await;
    let (_, body) = create_backup(&s, "p1", json!({"name": "b", "instance": id})).await;
    let bid = body["backup"]["id"].as_str().unwrap().to_string();
    wait_backup(&s, "p1", &bid, |b| b["status"] == "BUILDING").await;
    // The copy pauses half way through its artifact: a partial file is on disk.
    let container = dir.path().join("backups/database_backups");
    let deadline = Instant::now() + Duration::from_secs(10);
    while listing(&container).is_empty() {
        assert!(Instant::now() < deadline, "no partial artifact appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        listing(&container)[0].contains(".partial-"),
        "{:?}",
        listing(&container)
    );
    s.kill();
    let mut after = TestServer::start(dir.path(), &[]).await;
    let done = wait_backup(&after, "p1", &bid, |b| b["status"] == "COMPLETED").await;
    assert_eq!(
        done["checksum"],
        sha256_of(&artifact_path(&done["locationRef"])).as_str()
    );
    assert_eq!(
        listing(&container),
        [bid.as_str()],
        "only the complete artifact is left"
    );
    after
        .wait_for("u", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    after.terminate(Duration::from_secs(10));
    // The log says the copy was started twice: the interrupted attempt, then the one
    // that completed.
    let log = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
    let types: Vec<String> = log
        .prepare("SELECT event_type FROM events WHERE stream = ?1 ORDER BY revision")
        .unwrap()
        .query_map([format!("backup-{bid}")], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        types,
        [
            "BackupCreated",
            "BackupStarted",
            "BackupStarted",
            "BackupCompleted"
        ]
    );
}

#[tokio::test]
async fn a_restore_into_a_volume_smaller_than_the_backup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A simulated artifact of 1.05 GiB (streamed to the store, never held in memory).
    let s = TestServer::start(dir.path(), &["--sim-backup-kb", "1100000"]).await;
    let id = s.create_active("u", "p1", "db1").await;
    let (_, body) = create_backup(&s, "p1", json!({"name": "big", "instance": id})).await;
    let bid = body["backup"]["id"].as_str().unwrap().to_string();
    let done = wait_backup(&s, "p1", &bid, |b| b["status"] == "COMPLETED").await;
    assert!(done["size"].as_f64().unwrap() > 1.0, "{done}");
    let mut create = common::create_body("too-small");
    create["instance"]["restorePoint"] = json!({"backupRef": bid});
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        message(&body).starts_with("Backup is too large for given flavor or volume."),
        "{body}"
    );
    let (_, list) = s.get("u", "p1", "/instances").await;
    assert_eq!(
        list["instances"].as_array().unwrap().len(),
        1,
        "nothing half-made: {list}"
    );
    create["instance"]["volume"]["size"] = json!(2);
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_copy_stored_but_never_confirmed_is_removed_when_the_backup_fails() {
    let dir = tempfile::tempdir().unwrap();
    // Every copy is stored, then its answer is lost: after the retries the backup fails,
    // and the artifact the copies left must not outlive it.
    let s = TestServer::start(dir.path(), &["--sim-fault", "backup:lost:times=10"]).await;
    let id = s.create_active("u", "p1", "db1").await;
    let (_, body) = create_backup(&s, "p1", json!({"name": "b", "instance": id})).await;
    let bid = body["backup"]["id"].as_str().unwrap().to_string();
    let failed = wait_backup(&s, "p1", &bid, |b| b["status"] == "FAILED").await;
    assert_eq!(failed["locationRef"], Value::Null);
    assert!(listing(&dir.path().join("backups/database_backups")).is_empty());
}

#[tokio::test]
async fn a_restore_needs_the_same_version_and_the_stored_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db1").await; // mysql 8.0
    let (_, body) = create_backup(&s, "p1", json!({"name": "b", "instance": id})).await;
    let bid = body["backup"]["id"].as_str().unwrap().to_string();
    let done = wait_backup(&s, "p1", &bid, |b| b["status"] == "COMPLETED").await;
    let mut create = common::create_body("copy");
    create["instance"]["restorePoint"] = json!({"backupRef": bid});
    create["instance"]["datastore"]["version"] = json!("5.7");
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("datastore version 8.0"), "{body}");
    // The artifact vanished from the store behind troved's back: 404, nothing made.
    create["instance"]["datastore"]["version"] = json!("8.0");
    std::fs::remove_file(artifact_path(&done["locationRef"])).unwrap();
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        message(&body).starts_with("Backup file in file://"),
        "{body}"
    );
    // A changed artifact: 409.
    std::fs::write(artifact_path(&done["locationRef"]), b"not the backup").unwrap();
    let (status, body) = s.post("u", "p1", "/instances", &create).await;
    assert_eq!(status, 409, "{body}");
    let (_, list) = s.get("u", "p1", "/instances").await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 1, "{list}");
}

/// `troved backups verify --data-dir DIR [ID…]`: its exit status and standard output.
fn verify(data_dir: &std::path::Path, ids: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_troved"))
        .args(["backups", "verify", "--data-dir"])
        .arg(data_dir)
        .args(ids)
        .output()
        .expect("run troved backups verify");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn troved_backups_verify_reads_every_artifact_back_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path(), &[]).await;
    let id = s.create_active("u", "p1", "db1").await;
    let mut done = Vec::new();
    for name in ["one", "two"] {
        let (_, body) = create_backup(&s, "p1", json!({"name": name, "instance": id})).await;
        let bid = body["backup"]["id"].as_str().unwrap().to_string();
        done.push(wait_backup(&s, "p1", &bid, |b| b["status"] == "COMPLETED").await);
    }
    // Beside the running server: it reads the log without a lock.
    let (ok, out, err) = verify(dir.path(), &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" OK")).count(),
        2,
        "{out}"
    );
    // One artifact changed on disk: named, and the command fails.
    let changed = done[1]["id"].as_str().unwrap();
    std::fs::write(artifact_path(&done[1]["locationRef"]), b"tampered").unwrap();
    let (ok, out, err) = verify(dir.path(), &[]);
    assert!(!ok, "{out}");
    let line = out.lines().find(|l| l.starts_with(changed)).unwrap();
    assert!(!line.ends_with(" OK"), "{line}");
    assert!(err.contains("1 of 2 backup(s)"), "{err}");
    // Only the one asked for.
    let fine = done[0]["id"].as_str().unwrap();
    let (ok, out, _) = verify(dir.path(), &[fine]);
    assert!(ok && out.lines().count() == 1, "{out}");
}
