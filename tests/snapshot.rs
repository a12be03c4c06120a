//! Read-model snapshots end to end (`src/runtime/snapshot.rs`): a clean shutdown (SIGTERM)
//! writes `read-models.snapshot` (mode 0600); the next start loads it and serves the same
//! models; a damaged snapshot, or `--no-snapshot`, replays the log instead and still
//! serves the same models.

mod common;

use std::path::Path;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::Serve;

/// `GET /instances/detail` of p1.
async fn detail(s: &Serve) -> Value {
    let (status, body) = common::send(s.req(reqwest::Method::GET, "/instances/detail")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Started with no simulated latency, and a public URL: links do not depend on the
/// port, which changes between the restarts.
async fn start(dir: &Path, extra: &[&str]) -> Serve {
    let mut args = vec![
        "--sim-latency-ms",
        "0",
        "--public-url",
        "https://troved.test",
    ];
    args.extend_from_slice(extra);
    Serve::start(dir, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_the_same_models_from_a_snapshot_or_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("read-models.snapshot");
    let server = start(dir.path(), &[]).await;
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let (status, body) = common::send(
            server
                .req(reqwest::Method::POST, "/instances")
                .json(&common::create_body(name)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["instance"]["id"].as_str().unwrap().to_string());
    }
    let (status, body) = common::send(
        server
            .req(reqwest::Method::PATCH, &format!("/instances/{}", ids[0]))
            .json(&serde_json::json!({"instance": {"name": "renamed"}})),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    // Wait until every saga is done, so the log does not move between the restarts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let detail = detail(&server).await;
        let all_active = detail["instances"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|i| i["status"] == "ACTIVE"));
        if all_active {
            break detail;
        }
        assert!(Instant::now() < deadline, "not ACTIVE: {detail}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(before.to_string().contains("renamed"));
    server.terminate();
    assert!(snapshot.is_file(), "a clean shutdown writes the snapshot");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&snapshot).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // From the snapshot.
    let server = start(dir.path(), &[]).await;
    assert_eq!(detail(&server).await, before);
    server.terminate();

    // From the log, ignoring the snapshot.
    let server = start(dir.path(), &["--no-snapshot"]).await;
    assert_eq!(detail(&server).await, before);
    server.terminate();

    // A damaged snapshot is ignored (with a warning in the log), never a crash.
    let bytes = std::fs::read(&snapshot).unwrap();
    std::fs::write(&snapshot, &bytes[..bytes.len() / 2]).unwrap();
    let server = start(dir.path(), &[]).await;
    assert_eq!(detail(&server).await, before);
    server.terminate();
}
