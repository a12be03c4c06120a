//! Invariants under concurrency and crashes, against the real binary: quotas, replicas
//! against their primary's deletion, key shredding after a crash, one process per data
//! directory.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{create_body, TestServer};
use serde_json::json;

#[tokio::test]
async fn concurrent_creates_never_exceed_the_instance_quota() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        TestServer::start(
            dir.path(),
            &["--quota-instances", "3", "--sim-latency-ms", "600000"],
        )
        .await,
    );
    let mut tasks = Vec::new();
    for n in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.post("alice", "p1", "/instances", &create_body(&format!("q{n}")))
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            413 => assert_eq!(
                body["overLimit"]["message"],
                "Quota exceeded for resources: ['instances']."
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 3);
    let (_, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(list["instances"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_replica_batch_over_quota_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        dir.path(),
        &["--quota-instances", "3", "--sim-latency-ms", "0"],
    )
    .await;
    let primary = s.create("alice", "p1", "primary").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for("alice", "p1", &primary, |i| i["status"] == "ACTIVE")
        .await;
    let body = json!({"instance": {"name": "r", "replica_of": primary, "replica_count": 3}});
    let (status, err) = s.post("alice", "p1", "/instances", &body).await;
    assert_eq!(status, 413, "{err}");
    let (_, list) = s.get("alice", "p1", "/instances").await;
    assert_eq!(
        list["instances"].as_array().unwrap().len(),
        1,
        "no replica of the batch was kept"
    );
    let body = json!({"instance": {"name": "r", "replica_of": primary, "replica_count": 2}});
    let (status, created) = s.post("alice", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["instance"]["name"], "r-2");
}

#[tokio::test]
async fn a_replica_never_outlives_a_primary_deleted_at_the_same_moment() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(
        TestServer::start(
            dir.path(),
            &[
                "--quota-instances",
                "-1",
                "--quota-volumes",
                "-1",
                "--sim-latency-ms",
                "0",
            ],
        )
        .await,
    );
    for trial in 0..8 {
        let primary = s.create("alice", "p1", &format!("p{trial}")).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        s.wait_for("alice", "p1", &primary, |i| i["status"] == "ACTIVE")
            .await;
        let (s1, s2, p1, p2) = (s.clone(), s.clone(), primary.clone(), primary.clone());
        let replica = tokio::spawn(async move {
            s1.post(
                "alice",
                "p1",
                "/instances",
                &json!({"instance": {"name": "r", "replica_of": p1}}),
            )
            .await
        });
        let delete =
            tokio::spawn(
                async move { s2.delete("alice", "p1", &format!("/instances/{p2}")).await },
            );
        let ((rs, rb), (ds, db)) = (replica.await.unwrap(), delete.await.unwrap());
        assert!(
            !(rs == 200 && ds == 202),
            "trial {trial}: both the replica ({rb}) and the primary's delete ({db}) were accepted"
        );
        assert!(rs < 500 && ds < 500, "{rs} {rb} / {ds} {db}");
    }
}

fn keys_of(secrets: &std::path::Path, id: &str) -> i64 {
    let conn = rusqlite::Connection::open(secrets).unwrap();
    conn.query_row(
        "SELECT count(*) FROM keys WHERE instance_id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn keys_of_deleted_instances_are_shredded_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.db");
    let mut s = TestServer::start(dir.path(), &["--sim-latency-ms", "0"]).await;
    let mut body = create_body("keyed");
    body["instance"]["databases"] = json!([{"name": "d"}]);
    body["instance"]["users"] =
        json!([{"name": "u", "password": "pw-to-shred-1", "databases": [{"name": "d"}]}]);
    let (status, created) = s.post("alice", "p1", "/instances", &body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["instance"]["id"].as_str().unwrap().to_string();
    s.wait_for("alice", "p1", &id, |i| i["status"] == "ACTIVE")
        .await;
    s.kill();
    assert_eq!(keys_of(&secrets, &id), 1);
    let saved = std::fs::read(&secrets).unwrap();

    s.kill_and_restart().await;
    let (status, _) = s.delete("alice", "p1", &format!("/instances/{id}")).await;
    assert_eq!(status, 202);
    s.wait_for("alice", "p1", &id, |i| i.is_null()).await;
    // The saga shreds right after recording the deletion, which the read above can
    // already show: give it a moment (bounded) before stopping the process.
    for _ in 0..100 {
        if keys_of(&secrets, &id) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.kill();
    assert_eq!(
        keys_of(&secrets, &id),
        0,
        "shredded when the deletion finished"
    );

    // As if the process had died between recording the deletion and the shred.
    std::fs::write(&secrets, saved).unwrap();
    assert_eq!(keys_of(&secrets, &id), 1);
    s.kill_and_restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while keys_of(&secrets, &id) != 0 {
        assert!(
            Instant::now() < deadline,
            "the key of a deleted instance survived a restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_second_process_cannot_open_a_data_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _s = TestServer::start(dir.path(), &[]).await;
    let out = Command::new(env!("CARGO_BIN_EXE_troved"))
        .args([
            "serve",
            "--provider",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another troved process"),
        "{stderr}"
    );
}
